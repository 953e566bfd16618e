"""Tests for beau_tf.datasets.synthetic.scenes: queries and backgrounds, at 64 px."""

import ast
import hashlib
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.datasets.synthetic import canvas
from beau_tf.datasets.synthetic import designs
from beau_tf.datasets.synthetic import labels
from beau_tf.datasets.synthetic import products
from beau_tf.datasets.synthetic import randomness
from beau_tf.datasets.synthetic import scenes
from beau_tf.datasets.synthetic import shapes

_SIZE = 64
# Products 0, 2, ..., 12 cycle through all seven shapes.
_ONE_OF_EACH_SHAPE = tuple(range(0, 14, 2))
# The renderer may import its own package and nothing else of beau_tf.
_RENDERER_PACKAGE = "beau_tf.datasets.synthetic"


def _clear_caches():
    """Makes the next call render again instead of recalling a cached layer."""
    products._product_layer.cache_clear()
    products.product_sprite.cache_clear()


# SHA-256 of render_query(product, 6, query, 64, seed) as drawn before the
# masks were added: the masks must not change a byte of any photo. A deliberate
# change of the drawing updates these and bumps the catalogue's format version.
_QUERY_DIGESTS = {
    (
        0,
        0,
        0,
    ): "3c2eb752c5d0f6c25a8af7ead6689d56a3cf6415978df2959667d2dee8ad2014",
    (
        0,
        1,
        0,
    ): "9c2fcf47b2efbc646e700077b4d139d297c7b6182074034682d7e0c295352b11",
    (
        5,
        3,
        0,
    ): "da21bfac34a03b20b44f05c8fe821d87c7968956421dcc14526703d5db7364fe",
    (
        5,
        2,
        3,
    ): "a98bdcf46a79fe9a51d8e201747ad5fd77f34996cfe5c4ac8c2b51a3dbc3f425",
}


def _painted_scene(product_index, query_index, colour):
    """`scenes._compose_query` for a 6-product catalogue at 64 px, seed 0,
    with the shown product painted one flat colour (its shape kept).

    Returns:
      `(image (n, n, 3), visibility (n, n), the product's placed alpha
      (n, n) before anything is drawn in front of it)`.
    """
    real_sprite, real_place = products.product_sprite, scenes._place
    state = {}

    def sprite(index, size, seed):
        out = real_sprite(index, size, seed)
        if index != product_index:
            return out
        if "sprite" not in state:  # premultiplied: colour times alpha
            alpha = out[..., 3:].astype(np.float32)
            rgb = np.round(np.asarray(colour, np.float32) * alpha / 255)
            state["sprite"] = np.concatenate([rgb, alpha], -1).astype(np.uint8)
        return state["sprite"]

    def place(crop, *args, **kwargs):
        placed = real_place(crop, *args, **kwargs)
        if crop is state.get("sprite"):
            state["alpha"] = placed.alpha
        return placed

    with mock.patch.object(products, "product_sprite", sprite):
        with mock.patch.object(scenes, "_place", place):
            rng = randomness.keyed_rng(
                0, randomness.QUERY_STREAM, product_index, query_index
            )
            image, visible = scenes._compose_query(
                rng, product_index, 6, _SIZE, 0
            )
    return image, visible, state["alpha"]


class RenderQueryTest(parameterized.TestCase):

    @parameterized.parameters(*_ONE_OF_EACH_SHAPE)
    def test_query_is_a_photo_not_the_catalogue_image(self, index):
        query = scenes.render_query(index, 14, 0, _SIZE)
        self.assertEqual(query.shape, (_SIZE, _SIZE, 3))
        self.assertEqual(query.dtype, np.uint8)
        catalogue = products.render_product(index, _SIZE)
        self.assertGreater(np.mean(np.abs(query.astype(int) - catalogue)), 20)
        self.assertLess(np.mean(np.all(query > 245, axis=-1)), 0.5)

    def test_deterministic_and_distinct_per_query_index(self):
        first = scenes.render_query(3, 6, 1, _SIZE, seed=2)
        _clear_caches()
        np.testing.assert_array_equal(
            first, scenes.render_query(3, 6, 1, _SIZE, seed=2)
        )
        other = scenes.render_query(3, 6, 0, _SIZE, seed=2)
        self.assertGreater(np.mean(np.abs(first.astype(int) - other)), 10)

    @parameterized.parameters(*_QUERY_DIGESTS)
    def test_masks_change_no_pixel(self, product, query, seed):
        image, mask = scenes.render_query_and_mask(
            product, 6, query, _SIZE, seed
        )
        self.assertEqual(
            hashlib.sha256(image.tobytes()).hexdigest(),
            _QUERY_DIGESTS[product, query, seed],
        )
        np.testing.assert_array_equal(
            image, scenes.render_query(product, 6, query, _SIZE, seed)
        )
        self.assertEqual((mask.shape, mask.dtype), ((_SIZE, _SIZE), bool))

    @parameterized.named_parameters(
        # Cases found by drawing: each has this in front of the product.
        ("hand", 1, 1),
        ("product_in_front", 0, 1),
        ("blob", 4, 3),
        ("shelf_edge", 0, 0),
    )
    def test_mask_is_where_the_product_shows(self, product, query):
        # Painted two colours, the scene differs exactly where the product
        # shows, in proportion to how much of the pixel it fills.
        magenta, visible, alpha = _painted_scene(product, query, (255, 0, 255))
        green, _, _ = _painted_scene(product, query, (0, 255, 0))
        shows = np.abs(magenta - green).sum(-1) / (3 * 255)  # (n, n)
        np.testing.assert_allclose(visible, shows, atol=0.01)
        mask = scenes.render_query_and_mask(product, 6, query, _SIZE)[1]
        np.testing.assert_array_equal(mask, visible >= 0.5)
        # The product's unmixed colour lies inside the mask, and something
        # hides part of its silhouette.
        pure = np.all(np.abs(magenta - (255, 0, 255)) < 1, axis=-1)
        self.assertGreater(pure.sum(), 100)
        self.assertTrue(np.all(mask[pure]))
        self.assertGreater(np.sum((alpha >= 0.5) & ~mask), 20)

    def test_single_product_catalogue(self):
        # No distractors exist.
        query = scenes.render_query(0, 1, 0, _SIZE)
        self.assertEqual(query.shape, (_SIZE, _SIZE, 3))

    def test_rejects_index_outside_catalogue(self):
        with self.assertRaisesRegex(ValueError, r"product_index=4.*\[0, 4\)"):
            scenes.render_query(4, 4, 0, _SIZE)

    def test_background_has_texture(self):
        background = scenes.render_background(0, _SIZE)
        self.assertEqual(background.shape, (_SIZE, _SIZE, 3))
        self.assertGreater(background.astype(np.float32).std(), 5)

    @parameterized.named_parameters(
        (module.__name__.rsplit(".", 1)[-1], module)
        for module in (
            randomness,
            designs,
            canvas,
            labels,
            shapes,
            products,
            scenes,
        )
    )
    def test_independent_of_training_augmentation(self, module):
        # Queries drawn by the training augmentation would make evaluation
        # circular; the renderer must stay separate.
        with open(module.__file__) as f:
            tree = ast.parse(f.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
                imported.update(
                    f"{node.module}.{alias.name}" for alias in node.names
                )
        self.assertFalse(
            [
                name
                for name in imported
                if name.startswith("beau_tf")
                and not name.startswith(_RENDERER_PACKAGE)
            ]
        )


if __name__ == "__main__":
    absltest.main()
