"""Tests for beau_tf.models.losses against NumPy oracles."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from beau_tf.models import layers, losses

B = 2


def _random(shape, seed, low=0.0, high=1.0):
    return (
        np.random.default_rng(seed).uniform(low, high, shape).astype("float32")
    )


class MaskMseTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters((4,), (3,))
    def test_same_size_matches_numpy(self, rank):
        shape = (B, 6, 6, 1)[:rank]
        y_true = (_random(shape, 0) > 0.5).astype("float32")
        y_pred = _random(shape, 1)
        loss = losses.mask_mse(y_true, y_pred)
        self.assertEqual(loss.shape, (B,))
        axes = tuple(range(1, rank))
        self.assertAllClose(
            loss, ((y_true - y_pred) ** 2).mean(axes), atol=1e-6
        )

    def test_larger_target_is_area_averaged(self):
        y_true = (_random((B, 8, 8, 1), 0) > 0.5).astype("uint8")
        y_pred = _random((B, 4, 4, 1), 1)
        # Area downsampling by 2 is the mean of each 2x2 block.
        blocks = y_true.astype("float32").reshape(B, 4, 2, 4, 2, 1).mean((2, 4))
        expected = ((blocks - y_pred) ** 2).mean((1, 2, 3))
        self.assertAllClose(
            losses.mask_mse(y_true, y_pred), expected, atol=1e-6
        )

    def test_smaller_target_is_repeated(self):
        y_true = (_random((B, 4, 4, 1), 0) > 0.5).astype("float32")
        y_pred = _random((B, 8, 8, 1), 1)
        up = y_true.repeat(2, axis=1).repeat(2, axis=2)
        expected = ((up - y_pred) ** 2).mean((1, 2, 3))
        self.assertAllClose(
            losses.mask_mse(y_true, y_pred), expected, atol=1e-6
        )

    def test_gradient_reaches_prediction_in_half_precision(self):
        y_true = _random((B, 8, 8, 1), 0)
        y_pred = tf.constant(_random((B, 4, 4, 1), 1), tf.float16)
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            loss = losses.mask_mse(y_true, y_pred)
        self.assertEqual(loss.dtype, tf.float32)
        self.assertIsNotNone(tape.gradient(loss, y_pred))

    def test_bad_rank(self):
        with self.assertRaisesRegex(ValueError, r"\(2, 4\)"):
            losses.mask_mse(np.zeros((B, 4)), np.zeros((B, 4)))


class IdentityLossTest(tf.test.TestCase):

    def test_is_softmax_cross_entropy_from_logits(self):
        logits = _random((B, 5), 0, -3, 3)
        labels = np.array([4, 1])
        shifted = logits - logits.max(-1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        expected = -log_softmax[np.arange(B), labels].mean()
        loss = losses.build_identity_loss()(labels, logits)
        self.assertAllClose(loss, expected, atol=1e-6)


class PhotoMaskMseTest(tf.test.TestCase):

    def _packed(self):
        # Two cells of one photo, two products: the first cell looks like
        # product 0, the second like product 1.
        logits = np.array([[[[4.0, 0.0], [0.0, 4.0]]]], np.float32)
        mask = np.array([[[[0.9], [0.2]]]], np.float32)
        return np.concatenate([logits, mask], axis=-1)  # (1, 1, 2, 3)

    def test_the_mask_is_pulled_to_where_the_head_sees_the_product(self):
        packed = self._packed()
        targets = np.array([[1.0, 0.0]], np.float32)  # the teacher: product 0
        softmax = np.exp([4.0, 0.0]) / np.exp([4.0, 0.0]).sum()
        evidence = np.array([softmax[0], softmax[1]])
        expected = np.mean((np.array([0.9, 0.2]) - evidence) ** 2)
        self.assertAllClose(
            losses.photo_mask_mse(targets, packed), [expected], atol=1e-6
        )

    def test_only_the_mask_gets_a_gradient(self):
        packed = tf.constant(self._packed())
        with tf.GradientTape() as tape:
            tape.watch(packed)
            loss = losses.photo_mask_mse(tf.constant([[0.5, 0.5]]), packed)
        gradient = tape.gradient(loss, packed).numpy()
        self.assertAllEqual(gradient[..., :2], np.zeros((1, 1, 2, 2)))
        self.assertTrue(np.all(gradient[..., 2] != 0))


class TrainingWiringTest(tf.test.TestCase):
    """Both losses train a tiny mask-attention model under mixed precision."""

    def _model(self):
        images = keras.Input((16, 16, 3), name="image")
        labels = keras.Input((), dtype="int32", name="label")
        features = keras.layers.Conv2D(
            8, 3, strides=4, padding="same", name="backbone"
        )(images)
        mask = layers.MaskDecoder((16, 16), name="mask")(features)
        pooled = layers.AttentionPooling(name="pool")([features, mask])
        embedding = layers.L2Normalize(name="embedding")(
            keras.layers.Dense(4, name="proj")(pooled)
        )
        logits = layers.CosineMarginClassifier(3, name="identity")(
            [embedding, labels]
        )
        return keras.Model([images, labels], {"mask": mask, "identity": logits})

    def test_fit_save_load(self):
        images = _random((B, 16, 16, 3), 0)
        labels = np.array([0, 2], "int32")
        # Targets at twice the mask size exercise the resize in mask_mse.
        targets = {
            "mask": (_random((B, 32, 32, 1), 1) > 0.5).astype("float32"),
            "identity": labels,
        }
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        try:
            model = self._model()
            model.compile(
                optimizer="sgd",
                loss={
                    "mask": losses.mask_mse,
                    "identity": losses.build_identity_loss(),
                },
            )
            history = model.fit([images, labels], targets, epochs=1, verbose=0)
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertEqual(model.get_layer("mask").output.dtype, "float16")
        self.assertEqual(model.get_layer("embedding").output.dtype, "float32")
        self.assertEqual(model.get_layer("identity").output.dtype, "float32")

        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        for key in ("mask", "identity"):
            self.assertAllClose(
                restored([images, labels])[key],
                model([images, labels])[key],
                atol=1e-3,
            )


if __name__ == "__main__":
    tf.test.main()
