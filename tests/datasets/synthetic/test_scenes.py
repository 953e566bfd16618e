"""Tests for beau_tf.datasets.synthetic.scenes: queries and backgrounds, at 64 px."""

import ast

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
