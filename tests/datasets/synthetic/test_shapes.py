"""Tests for beau_tf.datasets.synthetic.shapes: one drawer per package shape."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import shapes

_N = 64
# Products 0, 2, ..., 12 cycle through all seven shapes.
_ONE_OF_EACH_SHAPE = tuple(range(0, 14, 2))


class DrawPackageTest(parameterized.TestCase):

    @parameterized.parameters(*_ONE_OF_EACH_SHAPE)
    def test_package_is_opaque_centred_and_inside_the_frame(self, index):
        spec = designs.product_spec(index, 0)
        cv = canvas.Canvas(_N)
        shapes.draw_package(cv, spec.form, spec.label)
        self.assertBetween(float(cv.alpha.mean()), 0.1, 0.8)
        self.assertEqual(float(cv.alpha.max()), 1.0)
        # Nothing touches the border.
        for edge in (
            cv.alpha[0],
            cv.alpha[-1],
            cv.alpha[:, 0],
            cv.alpha[:, -1],
        ):
            self.assertEqual(float(edge.max()), 0.0)
        cols = np.flatnonzero(cv.alpha.any(axis=0))
        self.assertAlmostEqual((cols[0] + cols[-1]) / 2 / _N, 0.5, delta=0.1)

    @parameterized.parameters("screw", "dome", "dropper", "flat")
    def test_every_cap_style_changes_the_bottle(self, cap_style):
        spec = designs.product_spec(0, 0)  # A bottle.
        self.assertEqual(spec.form.shape, "bottle")

        def draw(form):
            cv = canvas.Canvas(_N)
            shapes.draw_package(cv, form, spec.label)
            return cv.rgb

        others = [
            s for s in ("screw", "dome", "dropper", "flat") if s != cap_style
        ]
        drawn = draw(dataclasses.replace(spec.form, cap_style=cap_style))
        for other in others:
            self.assertFalse(
                np.array_equal(
                    drawn, draw(dataclasses.replace(spec.form, cap_style=other))
                )
            )


if __name__ == "__main__":
    absltest.main()
