"""Tests for bench.poolings: one model's features pooled several ways, on
the tiny extractor."""

from absl.testing import absltest
import keras
import numpy as np

from beau_tf.models import extractor as extractor_lib
from bench import poolings
from tests.fixtures import training


class PoolingsTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        config = extractor_lib.ExtractorConfig(
            **dict(
                training.TINY_EXTRACTOR.to_dict(),
                pooling="attention",
                embedding_dim=8,
            )
        )
        cls.extractor = extractor_lib.build_extractor(config)
        cls.images = np.random.default_rng(0).uniform(
            0, 255, (3, training.IMAGE_SIZE, training.IMAGE_SIZE, 3)
        )
        cls.blocks = poolings.split(
            poolings.variants_model(cls.extractor)(cls.images)[
                "embedding"
            ].numpy()
        )

    def test_one_unit_block_per_pooling(self):
        self.assertLen(self.blocks, len(poolings.POOLINGS))
        for name, block in zip(poolings.POOLINGS, self.blocks):
            self.assertEqual(block.shape, (3, 8))
            norms = np.linalg.norm(block, axis=1)
            if name == "cells below half its peak":
                # The untrained decoder's mask is nearly flat: every cell
                # reaches half its peak, none is left to pool.
                np.testing.assert_allclose(norms, 0.0, atol=1e-6)
            else:
                np.testing.assert_allclose(norms, 1.0, rtol=1e-5)

    def test_the_first_pooling_is_the_models_own(self):
        own = self.extractor(self.images)["embedding"].numpy()
        np.testing.assert_allclose(self.blocks[0], own, atol=1e-5)

    def test_no_mask_is_the_mean_of_the_cells(self):
        features = extractor_lib.with_feature_map(self.extractor)(self.images)[
            "features"
        ]
        projected = self.extractor.get_layer("projection")(
            keras.ops.mean(features, axis=(1, 2))
        ).numpy()  # (B, C) -> (B, D)
        expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)
        gap = list(poolings.POOLINGS).index("no mask (GAP)")
        np.testing.assert_allclose(self.blocks[gap], expected, atol=1e-5)

    def test_half_peak_marks_the_cells_at_half_the_peak_or_more(self):
        mask = np.array([0.1, 0.4, 0.5, 0.8]).reshape(1, 2, 2, 1)
        marked = poolings.POOLINGS["mask at half its peak"](mask)
        np.testing.assert_array_equal(
            np.asarray(marked).ravel(), [0.0, 1.0, 1.0, 1.0]
        )

    def test_split_renormalises_a_mean_over_views(self):
        # Two views of one photo, two poolings of 2-d: the multiscale
        # signature normalises the whole mean; each block, renormalised, is
        # its own pooling's multiscale embedding.
        views = np.array([[0.6, 0.8, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
        mean = views.mean(axis=0, keepdims=True)
        first, second = poolings.split(mean / np.linalg.norm(mean), count=2)
        np.testing.assert_allclose(first, [[0.3, 0.9] / np.hypot(0.3, 0.9)])
        np.testing.assert_allclose(second, [[0.5, 0.5] / np.hypot(0.5, 0.5)])


if __name__ == "__main__":
    absltest.main()
