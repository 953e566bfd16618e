"""Tests for beau_tf.datasets.synthetic.designs: shapes, product lines, shades."""

import dataclasses

from absl.testing import absltest
import numpy as np

from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import randomness


class ProductSpecTest(absltest.TestCase):

    def test_deterministic(self):
        self.assertEqual(
            designs.product_spec(7, seed=2), designs.product_spec(7, seed=2)
        )
        self.assertNotEqual(
            designs.product_spec(7, seed=2), designs.product_spec(7, seed=3)
        )

    def test_even_products_cycle_through_the_seven_shapes(self):
        shapes = [
            designs.product_spec(i, 0).form.shape for i in range(0, 28, 2)
        ]
        self.assertLen(set(shapes[:7]), 7)
        self.assertEqual(shapes[:7], shapes[7:])

    def test_odd_products_include_lines_and_shades_of_their_partner(self):
        kinds = set()
        for i in range(1, 60, 2):
            spec, base = designs.product_spec(i, 0), designs.product_spec(
                i - 1, 0
            )
            if spec.form == base.form:
                # Same line: same package and brand, another print.
                self.assertEqual(spec.label.brand, base.label.brand)
                self.assertNotEqual(spec.label.pattern, base.label.pattern)
                kinds.add("line")
            elif spec.label == base.label:
                # A shade: the same print on another body colour.
                self.assertEqual(
                    dataclasses.replace(
                        spec.form, body=base.form.body, cap=base.form.cap
                    ),
                    base.form,
                )
                self.assertGreaterEqual(
                    designs.colour_distance(spec.form.body, base.form.body), 140
                )
                kinds.add("shade")
        self.assertEqual(kinds, {"line", "shade"})

    def test_random_spec_follows_its_generator(self):
        def spec(key):
            return designs.random_spec(np.random.default_rng(key))

        self.assertEqual(spec(1), spec(1))
        self.assertNotEqual(spec(1), spec(2))

    def test_random_brand_is_a_short_word(self):
        rng = randomness.keyed_rng(0, 99)
        for _ in range(50):
            brand = designs.random_brand(rng)
            self.assertBetween(len(brand), 2, 9)
            self.assertTrue(brand.replace(" ", "").isalpha(), brand)


if __name__ == "__main__":
    absltest.main()
