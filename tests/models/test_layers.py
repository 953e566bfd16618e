"""Tests for beau_tf.models.layers against NumPy oracles."""

import math
import os
import re

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from beau_tf.models import layers

B = 2  # batch size of every test


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _conv1x1(layer, features):
    """NumPy 1x1 conv of a Conv2D(1, 1) sublayer: (B, h, w, C) -> (B, h, w, 1)."""
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    return np.einsum("bhwc,co->bhwo", features, kernel[0, 0]) + bias


def _attention_pool(features, attention, epsilon=1e-6):
    """NumPy oracle: (B, h, w, C), (B, h, w, 1) -> (B, C)."""
    return (attention * features).sum((1, 2)) / (
        attention.sum((1, 2)) + epsilon
    )


def _l2n(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def _random(shape, seed, low=-1.0, high=1.0):
    return (
        np.random.default_rng(seed).uniform(low, high, shape).astype("float32")
    )


def _layer_case(case):
    """Returns (layer, inputs as a list of keras.Input, numpy inputs) for `case`."""
    f8 = _random((B, 8, 8, 6), 0, 0.0, 2.0)
    if case == "mask_decoder":
        f4 = _random((B, 4, 4, 8), 1)
        return (
            layers.MaskDecoder((16, 16), num_inputs=2, name="mask_decoder"),
            [f8, f4],
        )
    if case == "attention_pooling":
        return layers.AttentionPooling(name="pool"), [
            f8,
            _random((B, 16, 16, 1), 2, 0, 1),
        ]
    if case == "gem":
        return layers.GlobalGeMPooling(p=3.0, trainable_p=True, name="pool"), [
            f8
        ]
    if case == "l2_normalize":
        return layers.L2Normalize(name="l2"), [_random((B, 5), 3)]
    if case == "classifier":
        labels = np.array([1, 3], "int32")
        return (
            layers.CosineMarginClassifier(4, name="classifier"),
            [_random((B, 5), 4), labels],
        )
    raise ValueError(case)


_CASES = (
    "mask_decoder",
    "attention_pooling",
    "gem",
    "l2_normalize",
    "classifier",
)


def _call(layer, arrays, **kwargs):
    return layer(arrays if len(arrays) > 1 else arrays[0], **kwargs)


class SerializationTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*_CASES)
    def test_get_config_round_trip(self, case):
        layer, arrays = _layer_case(case)
        restored = layer.__class__.from_config(layer.get_config())
        self.assertEqual(restored.get_config(), layer.get_config())

    @parameterized.parameters(*_CASES)
    def test_keras_file_round_trip(self, case):
        layer, arrays = _layer_case(case)
        inputs = [
            keras.Input(a.shape[1:], dtype=a.dtype, name=f"in{i}")
            for i, a in enumerate(arrays)
        ]
        model = keras.Model(inputs, _call(layer, inputs))
        path = os.path.join(self.get_temp_dir(), f"{case}.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        self.assertAllClose(restored(arrays), model(arrays), atol=1e-6)
        self.assertIsInstance(restored.get_layer(layer.name), layer.__class__)

    @parameterized.parameters(*_CASES)
    def test_gradients_reach_inputs_and_weights(self, case):
        layer, arrays = _layer_case(case)
        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            float_inputs = [t for t in tensors if t.dtype.is_floating]
            tape.watch(float_inputs)
            out = _call(layer, tensors, training=True)
            loss = tf.reduce_sum(out * _random(out.shape, 9))
        grads = tape.gradient(loss, float_inputs + layer.trainable_weights)
        for g in grads:
            self.assertIsNotNone(g)
            self.assertTrue(np.all(np.isfinite(g)))
            self.assertGreater(float(tf.reduce_max(tf.abs(g))), 0.0)


class MaskDecoderTest(tf.test.TestCase, parameterized.TestCase):

    def test_single_input_is_sigmoid_of_conv(self):
        features = _random((B, 8, 8, 4), 0)
        layer = layers.MaskDecoder((8, 8))
        mask = layer(features)
        self.assertEqual(mask.shape, (B, 8, 8, 1))
        expected = _sigmoid(_conv1x1(layer.logit_convs[0], features))
        self.assertAllClose(mask, expected, atol=1e-6)

    @parameterized.parameters(False, True)
    def test_multi_stage_sums_logits_at_finest_resolution(self, coarse_first):
        fine, coarse = _random((B, 8, 8, 4), 0), _random((B, 4, 4, 6), 1)
        inputs = [coarse, fine] if coarse_first else [fine, coarse]
        layer = layers.MaskDecoder(
            (16, 16), num_inputs=2, interpolation="nearest"
        )
        mask = layer(inputs)
        self.assertEqual(mask.shape, (B, 16, 16, 1))
        logits = [_conv1x1(c, f) for c, f in zip(layer.logit_convs, inputs)]
        # Nearest upsampling by 2 with half-pixel centres repeats each pixel.
        up = lambda x: x.repeat(2, axis=1).repeat(2, axis=2)  # noqa: E731
        if coarse_first:
            logits[0] = up(logits[0])
        else:
            logits[1] = up(logits[1])
        self.assertAllClose(
            mask, up(_sigmoid(logits[0] + logits[1])), atol=1e-6
        )

    def test_bilinear_mask_is_a_probability(self):
        layer = layers.MaskDecoder((20, 12))
        mask = layer(_random((B, 5, 3, 4), 0, -20, 20))
        self.assertEqual(mask.shape, (B, 20, 12, 1))
        self.assertAllInRange(mask, 0.0, 1.0)
        self.assertEqual(
            layer.compute_output_shape((None, 5, 3, 4)), (None, 20, 12, 1)
        )

    def test_mixed_float16(self):
        features = _random((B, 4, 4, 8), 0, -50, 50)
        layer = layers.MaskDecoder((8, 8), dtype="mixed_float16")
        mask = layer(features)
        self.assertEqual(mask.dtype, tf.float16)
        self.assertAllInRange(tf.cast(mask, tf.float32), 0.0, 1.0)

    @parameterized.parameters(
        dict(kwargs=dict(mask_size=(0, 8)), bad="mask_size"),
        dict(kwargs=dict(mask_size=8), bad="mask_size"),
        dict(kwargs=dict(mask_size=(8, 8), num_inputs=0), bad="num_inputs=0"),
        dict(
            kwargs=dict(mask_size=(8, 8), interpolation="bicubic"),
            bad="bicubic",
        ),
    )
    def test_invalid_arguments(self, kwargs, bad):
        with self.assertRaisesRegex(ValueError, bad):
            layers.MaskDecoder(**kwargs)

    def test_wrong_number_of_inputs(self):
        with self.assertRaisesRegex(ValueError, "num_inputs=2"):
            layers.MaskDecoder((8, 8), num_inputs=2)(_random((B, 4, 4, 3), 0))


class AttentionPoolingTest(tf.test.TestCase, parameterized.TestCase):

    def test_matches_numpy(self):
        features, attention = _random((B, 6, 6, 8), 0), _random(
            (B, 6, 6, 1), 1, 0, 1
        )
        out = layers.AttentionPooling()([features, attention])
        self.assertEqual(out.shape, (B, 8))
        self.assertAllClose(
            out, _attention_pool(features, attention), atol=1e-6
        )

    def test_all_ones_attention_is_global_average(self):
        features = _random((B, 4, 6, 8), 0)
        out = layers.AttentionPooling()(
            [features, np.ones((B, 4, 6, 1), "float32")]
        )
        self.assertAllClose(out, features.mean((1, 2)), atol=1e-5)

    def test_one_pixel_attention_returns_that_pixel(self):
        features = _random((B, 5, 5, 4), 0)
        attention = np.zeros((B, 5, 5, 1), "float32")
        attention[0, 1, 3], attention[1, 4, 0] = 1.0, 1.0
        out = layers.AttentionPooling(epsilon=1e-9)([features, attention])
        self.assertAllClose(
            out, np.stack([features[0, 1, 3], features[1, 4, 0]]), atol=1e-6
        )

    def test_full_size_attention_is_resized_to_the_features(self):
        features, attention = _random((B, 4, 4, 8), 0), _random(
            (B, 16, 16, 1), 1, 0, 1
        )
        out = layers.AttentionPooling()([features, attention])
        resized = tf.image.resize(
            attention, (4, 4), "bilinear", antialias=True
        ).numpy()
        self.assertAllClose(out, _attention_pool(features, resized), atol=1e-6)
        ones = layers.AttentionPooling()(
            [features, np.ones((B, 16, 16, 1), "float32")]
        )
        self.assertAllClose(ones, features.mean((1, 2)), atol=1e-5)

    def test_mixed_float16(self):
        # 8x8 pixels of 3000: the float16 sum (192000) would overflow.
        features = _random((B, 8, 8, 4), 0, 2900, 3000)
        attention = _random((B, 8, 8, 1), 1, 0.5, 1)
        out = layers.AttentionPooling(dtype="mixed_float16")(
            [features, attention]
        )
        self.assertEqual(out.dtype, tf.float16)
        expected = _attention_pool(
            features.astype("float16").astype("float32"),
            attention.astype("float16").astype("float32"),
        )
        self.assertAllClose(tf.cast(out, tf.float32), expected, rtol=1e-3)

    def test_output_shape_and_bad_inputs(self):
        layer = layers.AttentionPooling()
        self.assertEqual(
            layer.compute_output_shape([(None, 4, 4, 8), (None, 16, 16, 1)]),
            (None, 8),
        )
        with self.assertRaisesRegex(ValueError, "one-channel"):
            layer([_random((B, 4, 4, 8), 0), _random((B, 4, 4, 2), 1)])
        with self.assertRaisesRegex(ValueError, "epsilon=0"):
            layers.AttentionPooling(epsilon=0)


class GlobalGeMPoolingTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(1.0, 3.0, 6.5)
    def test_matches_numpy(self, p):
        features = _random((B, 4, 4, 8), 0)  # Negative values get clamped.
        out = layers.GlobalGeMPooling(p=p)(features)
        self.assertEqual(out.shape, (B, 8))
        expected = (np.maximum(features, 1e-6) ** p).mean((1, 2)) ** (1 / p)
        self.assertAllClose(out, expected, rtol=1e-5)

    @parameterized.parameters(False, True)
    def test_p_is_a_weight(self, trainable_p):
        layer = layers.GlobalGeMPooling(trainable_p=trainable_p)
        layer.build((None, 4, 4, 8))
        self.assertLen(layer.trainable_weights, int(trainable_p))
        self.assertEqual(layer.weights[0].path, f"{layer.name}/p")

    def test_mixed_float16(self):
        # f ** 3 for f ~ 100 is 1e6, beyond float16's 65504.
        features = _random((B, 4, 4, 8), 0, 90, 110)
        out = layers.GlobalGeMPooling(dtype="mixed_float16")(features)
        self.assertEqual(out.dtype, tf.float16)
        f16 = features.astype("float16").astype("float32")
        expected = (f16**3).mean((1, 2)) ** (1 / 3)
        self.assertAllClose(tf.cast(out, tf.float32), expected, rtol=1e-3)

    @parameterized.parameters(dict(p=0.5), dict(p=True), dict(epsilon=-1.0))
    def test_invalid_arguments(self, **kwargs):
        with self.assertRaisesRegex(
            ValueError, "=" + repr(list(kwargs.values())[0])
        ):
            layers.GlobalGeMPooling(**kwargs)


class PoolingRegistryTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(
        ("gap", keras.layers.GlobalAveragePooling2D, False),
        ("gem", layers.GlobalGeMPooling, False),
        ("mac", keras.layers.GlobalMaxPooling2D, False),
        ("attention", layers.AttentionPooling, True),
    )
    def test_existing_names_are_unchanged(self, name, cls, takes_mask):
        layer = layers.build_pooling(name, name="pool")
        self.assertIsInstance(layer, cls)
        self.assertEqual(layer.name, "pool")
        self.assertEqual(layers.get_pooling_spec(name).takes_mask, takes_mask)

    @parameterized.parameters(*layers.POOLING_NAMES)
    def test_builds_runs_and_round_trips_config(self, name):
        spec = layers.get_pooling_spec(name)
        self.assertEqual(spec.name, name)
        features = _random((B, 4, 4, 3), 0, 0.0, 2.0)  # (B, h, w, C)
        # The full-size mask (B, S, S, 1) of MaskDecoder, S > h.
        arrays = [features, _random((B, 8, 8, 1), 1, 0, 1)]
        if not spec.takes_mask:
            arrays = arrays[:1]
        layer = layers.build_pooling(name, name="pool")
        out = _call(layer, arrays)
        self.assertEqual(out.shape, (B, 3))
        self.assertTrue(np.all(np.isfinite(out)))

        restored = layer.__class__.from_config(layer.get_config())
        self.assertEqual(restored.get_config(), layer.get_config())
        self.assertAllClose(_call(restored, arrays), out, atol=1e-6)

    @parameterized.parameters("max", "GAP", None)
    def test_unknown_name_lists_the_choices(self, name):
        with self.assertRaisesRegex(
            ValueError,
            f"pooling={re.escape(repr(name))} is unknown; expected one of "
            + re.escape(str(layers.POOLING_NAMES)),
        ):
            layers.build_pooling(name)


class L2NormalizeTest(tf.test.TestCase):

    def test_matches_numpy_in_float32(self):
        x = _random((B, 5), 0)
        out = layers.L2Normalize()(tf.constant(x, tf.float16))
        self.assertEqual(out.dtype, tf.float32)
        self.assertAllClose(
            out, _l2n(x.astype("float16").astype("float32"), -1), atol=1e-6
        )

    def test_axis_and_zero_vector(self):
        x = _random((B, 3, 4), 0)
        self.assertAllClose(
            layers.L2Normalize(axis=1)(x), _l2n(x, 1), atol=1e-6
        )
        self.assertAllEqual(
            layers.L2Normalize()(np.zeros((B, 4), "float32")), np.zeros((B, 4))
        )

    def test_float32_under_a_mixed_global_policy(self):
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        try:
            layer = layers.L2Normalize()
            inputs = keras.Input((4,))
            symbolic = layer(inputs)
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        self.assertEqual(layer.compute_dtype, "float32")
        self.assertEqual(symbolic.dtype, "float32")
        explicit = layers.L2Normalize(dtype="mixed_float16")
        self.assertEqual(explicit(keras.Input((4,))).dtype, "float32")
        self.assertEqual(explicit(np.ones((B, 4), "float32")).dtype, tf.float32)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "epsilon=0"):
            layers.L2Normalize(epsilon=0)
        with self.assertRaisesRegex(ValueError, "axis=None"):
            layers.L2Normalize(axis=None)


class CosineMarginClassifierTest(tf.test.TestCase, parameterized.TestCase):

    def _layer_and_cos(self, num_classes=4, dim=5, **kwargs):
        embedding = _l2n(_random((B, dim), 0), -1)
        kernel = _random((dim, num_classes), 1)
        # Class 2 of example 1 points opposite the embedding: theta = pi.
        kernel[:, 2] = -embedding[1]
        layer = layers.CosineMarginClassifier(num_classes, **kwargs)
        layer.build((None, dim))
        layer.kernel.assign(kernel)
        cos = np.clip(embedding @ _l2n(kernel, 0), -1, 1)
        return layer, embedding, cos

    @parameterized.parameters(
        dict(labels=[1, 3], margin=0.2),
        dict(labels=[0, 2], margin=0.5),  # theta + m > pi for example 1.
    )
    def test_arcface_target_logit(self, labels, margin):
        s = 30.0
        layer, embedding, cos = self._layer_and_cos(scale=s, margin=margin)
        labels = np.array(labels, "int32")
        logits = layer([embedding, labels], training=True)
        self.assertEqual(logits.shape, (B, 4))
        self.assertEqual(logits.dtype, tf.float32)
        theta = np.arccos(cos)
        target = np.where(
            theta + margin < math.pi,
            np.cos(theta + margin),
            cos - margin * math.sin(margin),
        )
        expected = s * cos
        expected[np.arange(B), labels] = s * target[np.arange(B), labels]
        self.assertAllClose(logits, expected, atol=1e-4)

    def test_arcface_easy_margin(self):
        layer, embedding, cos = self._layer_and_cos(easy_margin=True)
        labels = np.array([1, 2], "int32")
        logits = layer([embedding, labels], training=True).numpy()
        self.assertAllClose(
            logits[1, 2], 30.0 * cos[1, 2], atol=1e-4
        )  # cos <= 0 kept.
        if cos[0, 1] > 0:
            self.assertAllClose(
                logits[0, 1],
                30.0 * np.cos(np.arccos(cos[0, 1]) + 0.2),
                atol=1e-4,
            )

    def test_cosface_target_logit(self):
        layer, embedding, cos = self._layer_and_cos(
            scale=10.0, margin=0.35, margin_type="cosface"
        )
        labels = np.array([[3], [0]], "int32")  # (B, 1) labels are accepted.
        logits = layer([embedding, labels], training=True)
        expected = 10.0 * cos
        expected[0, 3] -= 10.0 * 0.35
        expected[1, 0] -= 10.0 * 0.35
        self.assertAllClose(logits, expected, atol=1e-4)

    def test_inference_has_no_margin(self):
        layer, embedding, cos = self._layer_and_cos()
        labels = np.array([1, 3], "int32")
        self.assertAllClose(
            layer([embedding, labels], training=False), 30.0 * cos, atol=1e-4
        )
        self.assertAllClose(layer([embedding, labels]), 30.0 * cos, atol=1e-4)
        self.assertAllClose(
            layer(embedding, training=True), 30.0 * cos, atol=1e-4
        )
        self.assertEqual(
            layer.compute_output_shape([(None, 5), (None,)]), (None, 4)
        )

    @parameterized.parameters(
        dict(num_classes=0),
        dict(num_classes=3, scale=0.0),
        dict(num_classes=3, margin=-0.1),
        dict(num_classes=3, margin_type="sphereface"),
    )
    def test_invalid_arguments(self, **kwargs):
        bad_key, bad = list(kwargs.items())[-1]
        with self.assertRaisesRegex(ValueError, f"{bad_key}={bad!r}"):
            layers.CosineMarginClassifier(**kwargs)


if __name__ == "__main__":
    tf.test.main()
