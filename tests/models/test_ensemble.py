"""Tests for beau_tf.models.ensemble."""

import os

import keras
import numpy as np
import tensorflow as tf

from beau_tf.models import ensemble
from beau_tf.models import extractor as extractor_lib


def tiny_extractor(embedding_dim: int, image_size: int = 64, seed: int = 0):
    keras.utils.set_random_seed(seed)
    return extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone="tiny",
            backbone_weights="none",
            image_size=image_size,
            embedding_dim=embedding_dim,
        )
    )


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class EnsembleTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.members = [tiny_extractor(8, seed=1), tiny_extractor(4, seed=2)]
        self.images = (
            np.random.default_rng(0)
            .uniform(0, 255, (2, 64, 64, 3))
            .astype(np.float32)
        )
        self.outputs = [member(self.images) for member in self.members]

    def test_weighted_concatenation_is_renormalised(self):
        model = ensemble.build_ensemble(self.members, weights=[2.0, 0.5])
        outputs = model(self.images)
        expected = normalize(
            np.concatenate(
                [
                    2.0 * np.asarray(self.outputs[0]["embedding"]),
                    0.5 * np.asarray(self.outputs[1]["embedding"]),
                ],
                axis=-1,
            )
        )
        self.assertAllClose(outputs["embedding"], expected, atol=1e-6)
        self.assertAllClose(
            outputs["mask"],
            (self.outputs[0]["mask"] + self.outputs[1]["mask"]) / 2,
            atol=1e-6,
        )
        self.assertEqual(
            [layer.name for layer in model.layers[1:3]],
            ["member_0", "member_1"],
        )

    def test_the_mask_is_the_named_members_mean(self):
        model = ensemble.build_ensemble(self.members, mask_members=[1])
        self.assertAllClose(
            model(self.images)["mask"], self.outputs[1]["mask"], atol=1e-6
        )
        for bad in ([], [2]):
            with self.assertRaisesRegex(ValueError, "mask_members"):
                ensemble.build_ensemble(self.members, mask_members=bad)

    def test_one_member_is_that_member(self):
        model = ensemble.build_ensemble(self.members[:1], weights=[3.0])
        outputs = model(self.images)
        self.assertAllClose(
            outputs["embedding"], self.outputs[0]["embedding"], atol=1e-6
        )
        self.assertAllClose(outputs["mask"], self.outputs[0]["mask"])

    def test_whitening_matches_numpy(self):
        catalog = normalize(
            np.random.default_rng(1).normal(size=(20, 12))
        ).astype(np.float32)
        mean, projection = ensemble.fit_pca_whitening(catalog, dim=5)
        self.assertEqual(projection.shape, (12, 5))
        whitened = (catalog - mean) @ projection
        # Unit variance along each kept direction, uncorrelated.
        self.assertAllClose(np.cov(whitened.T), np.eye(5), atol=1e-3)

        model = ensemble.build_ensemble(
            self.members, whitening=(mean, projection)
        )
        concatenated = normalize(
            np.concatenate(
                [np.asarray(o["embedding"]) for o in self.outputs], axis=-1
            )
        )
        expected = normalize((concatenated - mean) @ projection)
        self.assertAllClose(
            model(self.images)["embedding"], expected, atol=1e-5
        )

    def test_keras_round_trip(self):
        catalog = np.random.default_rng(2).normal(size=(16, 12))
        model = ensemble.build_ensemble(
            self.members,
            weights=[1.0, 2.0],
            whitening=ensemble.fit_pca_whitening(catalog, dim=6),
        )
        path = os.path.join(self.get_temp_dir(), "ensemble.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        expected = model(self.images)
        actual = loaded(self.images)
        self.assertAllClose(actual["embedding"], expected["embedding"])
        self.assertAllClose(actual["mask"], expected["mask"])

    def test_layer_configs_round_trip(self):
        for layer in (
            ensemble.WeightedConcat([1.0, 0.5], name="concat"),
            ensemble.PCAWhitening(3, name="whiten"),
        ):
            clone = layer.__class__.from_config(layer.get_config())
            self.assertEqual(clone.get_config(), layer.get_config())

    def test_mismatched_image_sizes_are_refused(self):
        with self.assertRaisesRegex(ValueError, "same image_size"):
            ensemble.build_ensemble(
                [self.members[0], tiny_extractor(4, image_size=32)]
            )

    def test_bad_weights_and_whitening_are_refused(self):
        with self.assertRaisesRegex(ValueError, "one weight per member"):
            ensemble.build_ensemble(self.members, weights=[1.0])
        with self.assertRaisesRegex(ValueError, "positive weight"):
            ensemble.build_ensemble(self.members, weights=[1.0, 0.0])
        with self.assertRaisesRegex(ValueError, "embedding size 12"):
            ensemble.build_ensemble(
                self.members,
                whitening=(np.zeros(8), np.zeros((8, 2))),
            )

    def test_pca_dim_out_of_range_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, r"min\(N - 1, D\) = 4"):
            ensemble.fit_pca_whitening(np.zeros((5, 12)), dim=5)
        with self.assertRaisesRegex(ValueError, "finite"):
            ensemble.fit_pca_whitening(np.full((5, 2), np.nan), dim=1)


if __name__ == "__main__":
    tf.test.main()
