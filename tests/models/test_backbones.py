"""Tests for beau_tf.models.backbones: registry, preprocessing, weights, freezing."""

import os
from unittest import mock

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from beau_tf.models import backbones

B = 2  # batch size of every test
S = 64  # image side of every test
_MODELS = {}


def _backbone(name):
    """Builds each registry backbone once per test session (random init)."""
    if name not in _MODELS:
        _MODELS[name] = backbones.build_backbone(name, None, S)
    return _MODELS[name]


def _images(seed=0, dtype="float32"):
    return (
        np.random.default_rng(seed).uniform(0, 255, (B, S, S, 3)).astype(dtype)
    )


class RegistryTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(
        ("resnet50", "resnet50"),
        ("efficientnet_lite0", "efficientnet_lite0"),
        ("efficientnet_lite2", "efficientnet_lite2"),
        ("tiny", "tiny"),
    )
    def test_feature_maps_have_registry_strides_and_channels(self, name):
        self._check_feature_maps(name)

    @pytest.mark.slow  # Same code path as lite0, another ~2 s build.
    def test_efficientnet_lite1_feature_maps(self):
        self._check_feature_maps("efficientnet_lite1")

    def _check_feature_maps(self, name):
        spec = backbones.BACKBONES[name]
        model = _backbone(name)

        features = model(_images(), training=False)

        self.assertEqual(model.name, name)
        self.assertEqual(
            sorted(features), ["stride_16", "stride_32", "stride_8"]
        )
        for stride, channels in spec.feature_channels.items():
            feature = features[backbones.feature_key(stride)]
            self.assertEqual(
                tuple(feature.shape), (B, S // stride, S // stride, channels)
            )
            self.assertEqual(feature.dtype, tf.float32)
            self.assertTrue(
                np.isfinite(keras.ops.convert_to_numpy(feature)).all()
            )
        self.assertEqual(sorted(spec.feature_layers), [8, 16, 32])
        for layer in spec.feature_layers.values():
            model.get_layer(layer)  # Raises if the named layer is missing.

    def test_resnet50_preprocesses_inside_a_flat_model(self):
        model = _backbone("resnet50")

        names = [layer.name for layer in model.layers]

        self.assertEqual(names[:3], ["image", "preprocessing", "conv1_pad"])
        self.assertIsInstance(
            model.get_layer("preprocessing"), backbones.CaffePreprocessing
        )
        self.assertIn("conv5_block3_out", names)  # No nested ResNet50 model.

    def test_uint8_pixels_equal_float_pixels(self):
        model = _backbone("tiny")
        images = _images(dtype="uint8")

        from_uint8 = model(images, training=False)
        from_float = model(images.astype("float32"), training=False)

        self.assertAllClose(from_uint8["stride_32"], from_float["stride_32"])

    def test_unknown_name_lists_the_known_ones(self):
        with self.assertRaisesRegex(
            ValueError, r"backbone='vgg16' is unknown.*'resnet50'.*'tiny'"
        ):
            backbones.build_backbone("vgg16", None, S)

    @parameterized.parameters(16, 64.0, True)
    def test_bad_image_size(self, image_size):
        with self.assertRaisesRegex(
            ValueError, f"image_size={image_size!r} is invalid"
        ):
            backbones.build_backbone("tiny", None, image_size)

    def test_model_name(self):
        model = backbones.build_backbone(
            "tiny", "none", 32, model_name="backbone"
        )
        self.assertEqual(model.name, "backbone")


class CaffePreprocessingTest(tf.test.TestCase):

    def test_matches_keras_resnet_preprocess_input(self):
        images = _images()
        expected = keras.applications.resnet.preprocess_input(images.copy())

        got = backbones.CaffePreprocessing()(images)

        self.assertAllClose(got, expected, atol=1e-4)
        self.assertAllClose(
            backbones.CaffePreprocessing()(images.astype("uint8")),
            keras.applications.resnet.preprocess_input(
                images.astype("uint8").astype("float32")
            ),
            atol=1e-4,
        )

    def test_get_config_round_trip(self):
        layer = backbones.CaffePreprocessing(mean=(1.0, 2.0, 3.0), name="pre")

        clone = backbones.CaffePreprocessing.from_config(layer.get_config())

        self.assertEqual(clone.mean, (1.0, 2.0, 3.0))
        self.assertEqual(clone.name, "pre")
        self.assertAllClose(clone(_images()), layer(_images()))
        revived = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        self.assertIsInstance(revived, backbones.CaffePreprocessing)

    def test_float32_under_mixed_precision(self):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            layer = backbones.CaffePreprocessing()
            self.assertEqual(layer(_images()).dtype, tf.float32)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def test_bad_mean(self):
        with self.assertRaisesRegex(
            ValueError, r"mean=\(1.0, 2.0\) is invalid"
        ):
            backbones.CaffePreprocessing(mean=(1.0, 2.0))


class WeightsTest(tf.test.TestCase):

    def test_resnet50_imagenet_without_network_names_the_alternatives(self):
        offline = Exception(
            "URL fetch failure on https://storage.googleapis.com/...: "
            "None -- [Errno -3] Temporary failure in name resolution"
        )
        with mock.patch.object(
            keras.utils, "get_file", side_effect=offline
        ) as get_file:
            with self.assertRaises(OSError) as caught:
                backbones.build_backbone("resnet50", "imagenet", S)
        message = str(caught.exception)
        self.assertEqual(
            get_file.call_args.args[0], backbones.RESNET50_WEIGHTS_FILE
        )
        self.assertIn("download", message.lower())
        self.assertIn("Temporary failure in name resolution", message)
        self.assertIn("--backbone_weights=none", message)
        self.assertIn(backbones.RESNET50_WEIGHTS_FILE, message)
        self.assertIs(caught.exception.__cause__, offline)

    def test_tiny_has_no_imagenet_weights(self):
        with self.assertRaisesRegex(
            ValueError, "'tiny' has no ImageNet weights"
        ):
            backbones.build_backbone("tiny", "imagenet", S)

    def test_missing_path_names_it(self):
        path = os.path.join(self.get_temp_dir(), "nowhere.weights.h5")
        for name in ("tiny", "resnet50"):
            with self.assertRaisesRegex(
                FileNotFoundError, f"file {path} does not exist"
            ):
                backbones.build_backbone(name, path, S)

    def test_wrong_file_kind(self):
        path = os.path.join(self.get_temp_dir(), "weights.npz")
        open(path, "wb").close()
        with self.assertRaisesRegex(
            ValueError, r"weights.npz has an unsupported name.*\.weights\.h5"
        ):
            backbones.build_backbone("tiny", path, S)

    def test_path_round_trip(self):
        keras.utils.set_random_seed(1)
        saved = backbones.build_backbone("tiny", "none", S)
        path = os.path.join(self.get_temp_dir(), "tiny.weights.h5")
        saved.save_weights(path)
        keras.utils.set_random_seed(2)
        fresh = backbones.build_backbone("tiny", None, S)
        images = _images()
        self.assertNotAllClose(
            fresh(images)["stride_32"], saved(images)["stride_32"]
        )

        loaded = backbones.build_backbone("tiny", path, S)

        for key, feature in saved(images).items():
            self.assertAllClose(loaded(images)[key], feature)

    @pytest.mark.slow  # Writes a 94 MB legacy .h5 file.
    def test_resnet50_loads_a_keras_applications_h5(self):
        from keras.src.legacy.saving import (
            legacy_h5_format,
        )  # pylint: disable=g-import-not-at-top

        # A file laid out like keras-applications' notop download.
        reference = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(S, S, 3)
        )
        path = os.path.join(
            self.get_temp_dir(), backbones.RESNET50_WEIGHTS_FILE
        )
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, reference)

        model = backbones.build_backbone("resnet50", path, S)

        images = _images()
        expected = reference(
            keras.applications.resnet.preprocess_input(images.copy())
        )
        self.assertAllClose(model(images)["stride_32"], expected, atol=1e-4)


class SetTrainableFromTest(tf.test.TestCase, parameterized.TestCase):

    def _trainable_layers(self, model):
        return [
            layer.name
            for layer in model.layers
            if layer.trainable and layer.weights
        ]

    def test_freezes_the_layers_before(self):
        model = backbones.build_backbone("tiny", None, S)

        backbones.set_trainable_from(model, "stage3_conv")

        self.assertEqual(
            self._trainable_layers(model),
            ["stage3_conv", "stage3_bn", "stage4_conv", "stage4_bn"],
        )
        self.assertLen(
            model.trainable_weights, 6
        )  # 2 kernels + 2 x (gamma, beta).
        self.assertFalse(model.get_layer("stage2_bn").trainable)

    @parameterized.parameters(None, "")
    def test_empty_trains_everything(self, layer_name):
        model = backbones.build_backbone("tiny", None, S)
        backbones.set_trainable_from(model, "none")

        backbones.set_trainable_from(model, layer_name)

        self.assertTrue(all(layer.trainable for layer in model.layers))
        self.assertLen(
            model.trainable_weights, 15
        )  # 5 x (kernel, gamma, beta).

    def test_none_freezes_everything(self):
        model = backbones.build_backbone("tiny", None, S)

        backbones.set_trainable_from(model, "none")

        self.assertEqual(model.trainable_weights, [])

    def test_frozen_batch_norm_stays_in_inference_mode(self):
        model = backbones.build_backbone("tiny", None, S)
        backbones.set_trainable_from(model, "stage3_conv")
        frozen_mean = keras.ops.convert_to_numpy(
            model.get_layer("stage2_bn").moving_mean
        )
        trained_mean = keras.ops.convert_to_numpy(
            model.get_layer("stage3_bn").moving_mean
        )
        images = _images()

        training = model(images, training=True)
        inference = model(images, training=False)

        self.assertAllClose(training["stride_8"], inference["stride_8"])
        self.assertAllEqual(
            model.get_layer("stage2_bn").moving_mean, frozen_mean
        )
        self.assertNotAllClose(
            model.get_layer("stage3_bn").moving_mean, trained_mean
        )

    def test_frozen_batchnorm_keeps_pretrained_statistics(self):
        model = backbones.build_backbone("tiny", None, S)
        backbones.set_trainable_from(model, "", train_batchnorm=False)
        pretrained_mean = keras.ops.convert_to_numpy(
            model.get_layer("stage3_bn").moving_mean
        )

        model(_images(), training=True)

        self.assertTrue(model.get_layer("stage3_conv").trainable)
        self.assertFalse(model.get_layer("stage3_bn").trainable)
        self.assertLen(model.trainable_weights, 5)  # the 5 kernels only.
        self.assertAllEqual(
            model.get_layer("stage3_bn").moving_mean, pretrained_mean
        )

    def test_unknown_layer_suggests_names(self):
        model = backbones.build_backbone("tiny", None, S)
        with self.assertRaisesRegex(
            ValueError,
            r"trainable_from='stage3_cnv' is not a layer of tiny; did you "
            r"mean \['stage3_conv'.*17 layers: \['image', 'normalization'",
        ):
            backbones.set_trainable_from(model, "stage3_cnv")


if __name__ == "__main__":
    tf.test.main()
