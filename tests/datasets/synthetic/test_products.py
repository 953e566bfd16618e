"""Tests for beau_tf.datasets.synthetic.products: rendering on white, at 64 px."""

import itertools
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import ImageFont
from scipy import ndimage

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import products

_SIZE = 64
# Products 0, 2, ..., 12 cycle through all seven shapes.
_ONE_OF_EACH_SHAPE = tuple(range(0, 14, 2))


def _clear_caches():
    """Makes the next call render again instead of recalling a cached layer."""
    products._product_layer.cache_clear()
    products.product_sprite.cache_clear()


def _non_white_fraction(image: np.ndarray) -> float:
    return float(np.mean(np.any(image < 250, axis=-1)))


class RenderProductTest(parameterized.TestCase):

    @parameterized.parameters(*_ONE_OF_EACH_SHAPE)
    def test_product_on_white(self, index):
        image = products.render_product(index, _SIZE)
        self.assertEqual(image.shape, (_SIZE, _SIZE, 3))
        self.assertEqual(image.dtype, np.uint8)
        for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
            np.testing.assert_array_equal(corner, [255, 255, 255])
        self.assertBetween(_non_white_fraction(image), 0.1, 0.8)

    def test_deterministic(self):
        first = products.render_product(5, _SIZE, seed=3)
        _clear_caches()
        np.testing.assert_array_equal(
            first, products.render_product(5, _SIZE, seed=3)
        )

    def test_seed_changes_the_catalogue(self):
        self.assertGreater(
            np.mean(
                np.abs(
                    products.render_product(0, _SIZE, seed=0).astype(int)
                    - products.render_product(0, _SIZE, seed=1)
                )
            ),
            2.0,
        )

    def test_products_differ(self):
        images = [
            products.render_product(i, _SIZE).astype(np.float32)
            for i in range(14)
        ]
        for (i, a), (j, b) in itertools.combinations(enumerate(images), 2):
            with self.subTest(pair=(i, j)):
                # Variants of one line differ only in label or colour: a few grey
                # levels on average over the frame, far above 0.
                self.assertGreater(np.mean(np.abs(a - b)), 2.0)

    def test_some_white_print_inside_products(self):
        # Mask extraction must keep white inside the product as foreground: the
        # catalogue holds such white regions not connected to the background.
        with_white_inside = 0
        for i in range(14):
            white = np.all(products.render_product(i, 128) >= 250, axis=-1)
            labels, _ = ndimage.label(white)
            background = labels[0, 0]
            inside = (labels > 0) & (labels != background)
            with_white_inside += inside.sum() >= 10
        self.assertGreaterEqual(with_white_inside, 3)

    def test_without_a_scalable_font(self):
        # Pillow built without FreeType only has the fixed-size bitmap font.
        bitmap = getattr(ImageFont, "load_default_imagefont", None)
        if bitmap is None:
            self.skipTest("this Pillow cannot load its bitmap font alone")
        _clear_caches()
        self.addCleanup(_clear_caches)
        with mock.patch.object(canvas, "load_font", lambda size: bitmap()):
            image = products.render_product(0, 128)
        self.assertBetween(_non_white_fraction(image), 0.1, 0.8)

    def test_rejects_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "product_index=-1"):
            products.render_product(-1)
        with self.assertRaisesRegex(ValueError, "size=8"):
            products.render_product(0, size=8)


if __name__ == "__main__":
    absltest.main()
