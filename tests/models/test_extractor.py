"""Tests for beau_tf.models.extractor: config, extractor wiring, training model."""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from beau_tf.models import extractor
from beau_tf.models import layers
from beau_tf.models import losses

B = 2  # batch size of every test
S = 64  # image side of every test (stride-32 features are 2 x 2)
K = 3  # identities of the training model


def _config(**kwargs):
    values = dict(backbone="tiny", backbone_weights="none", image_size=S)
    values.update(kwargs)
    return extractor.ExtractorConfig(**values)


def _images(seed=0, dtype="float32"):
    return (
        np.random.default_rng(seed).uniform(0, 255, (B, S, S, 3)).astype(dtype)
    )


def _squares():
    """Two uint8 images with a bright square on a dark background, and its mask."""
    images = np.full((B, S, S, 3), 20, np.uint8)
    masks = np.zeros((B, S, S, 1), np.float32)
    side = S // 2
    for b, (top, left) in enumerate([(S // 8, S // 8), (S // 3, S // 4)]):
        images[b, top : top + side, left : left + side] = (
            230,
            180 - 100 * b,
            40 + 150 * b,
        )
        masks[b, top : top + side, left : left + side] = 1.0
    return images, masks


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


class ExtractorConfigTest(tf.test.TestCase, parameterized.TestCase):

    def test_json_round_trip(self):
        config = _config(
            pooling="gem",
            mask_strides=(8, 32),
            embedding_dim=16,
            trainable_from="stage2_conv",
            train_batchnorm=False,
        )

        restored = extractor.ExtractorConfig.from_dict(
            json.loads(json.dumps(config.to_dict()))
        )

        self.assertEqual(restored, config)
        self.assertEqual(restored.mask_strides, (8, 32))
        self.assertEqual(config.to_dict()["mask_strides"], [8, 32])

    def test_defaults_are_the_paper(self):
        config = extractor.ExtractorConfig()
        self.assertEqual(
            (config.backbone, config.backbone_weights, config.pooling),
            ("resnet50", "imagenet", "attention"),
        )
        self.assertEqual(extractor.ExtractorConfig.from_dict({}), config)

    def test_none_weights_mean_random_init(self):
        self.assertEqual(
            _config(backbone_weights=None).backbone_weights, "none"
        )

    @parameterized.named_parameters(
        ("pooling", dict(pooling="avg"), "pooling='avg' is unknown"),
        (
            "stride",
            dict(mask_strides=(4, 32)),
            r"mask stride 4 .* not a feature stride of tiny",
        ),
        (
            "empty_strides",
            dict(mask_strides=()),
            r"mask_strides=\(\) is invalid",
        ),
        ("int_strides", dict(mask_strides=32), "mask_strides=32 is invalid"),
        ("repeated", dict(mask_strides=(32, 32)), "repeats a stride"),
        ("backbone", dict(backbone="vgg16"), "backbone='vgg16' is unknown"),
        (
            "tiny_imagenet",
            dict(backbone_weights="imagenet"),
            "'imagenet' is unavailable",
        ),
        ("image_size", dict(image_size=16), "image_size=16 is invalid"),
        (
            "embedding_dim",
            dict(embedding_dim=-1),
            "embedding_dim=-1 is invalid",
        ),
        (
            "trainable_from",
            dict(trainable_from=3),
            "trainable_from=3 is invalid",
        ),
        (
            "train_batchnorm",
            dict(train_batchnorm="no"),
            "train_batchnorm='no' is invalid",
        ),
    )
    def test_bad_values_are_named(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            _config(**kwargs)

    def test_from_dict_rejects_unknown_keys(self):
        with self.assertRaisesRegex(ValueError, r"no field\(s\) \['poolng'\]"):
            extractor.ExtractorConfig.from_dict({"poolng": "gap"})


class ExtractorTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(
        ("attention", dict(pooling="attention"), 64),
        (
            "attention_multi_stride",
            dict(pooling="attention", mask_strides=(8, 16, 32)),
            64,
        ),
        ("gap_projected", dict(pooling="gap", embedding_dim=8), 8),
        ("gem", dict(pooling="gem"), 64),
        ("mac_projected", dict(pooling="mac", embedding_dim=16), 16),
    )
    def test_outputs(self, kwargs, dim):
        model = extractor.build_extractor(_config(**kwargs))

        outputs = model(_images(), training=False)

        self.assertEqual(sorted(outputs), ["embedding", "mask"])
        self.assertEqual(tuple(outputs["embedding"].shape), (B, dim))
        self.assertEqual(tuple(outputs["mask"].shape), (B, S, S, 1))
        self.assertEqual(outputs["embedding"].dtype, tf.float32)
        self.assertEqual(outputs["mask"].dtype, tf.float32)
        self.assertAllClose(
            np.linalg.norm(_numpy(outputs["embedding"]), axis=-1), [1.0, 1.0]
        )
        mask = _numpy(outputs["mask"])
        self.assertTrue(((mask >= 0) & (mask <= 1)).all())

    def test_named_layers(self):
        projected = extractor.build_extractor(_config(embedding_dim=8))
        plain = extractor.build_extractor(_config())

        self.assertEqual(projected.name, "extractor")
        self.assertEqual(
            [layer.name for layer in projected.layers],
            [
                "image",
                "backbone",
                "mask_decoder",
                "pooling",
                "projection",
                "embedding",
            ],
        )
        self.assertIsInstance(
            projected.get_layer("pooling"), layers.AttentionPooling
        )
        self.assertIsInstance(
            projected.get_layer("mask_decoder"), layers.MaskDecoder
        )
        self.assertNotIn("projection", [layer.name for layer in plain.layers])
        self.assertEqual(projected.get_layer("projection").units, 8)

    def test_uint8_pixels_equal_float_pixels(self):
        model = extractor.build_extractor(_config())
        images = _images(dtype="uint8")

        from_uint8 = model(images, training=False)
        from_float = model(images.astype("float32"), training=False)

        self.assertAllClose(from_uint8["embedding"], from_float["embedding"])

    @parameterized.parameters(*layers.POOLING_NAMES)
    def test_embedding_depends_on_the_mask_iff_pooling_takes_it(self, pooling):
        depends = layers.get_pooling_spec(pooling).takes_mask
        model = extractor.build_extractor(_config(pooling=pooling))
        images = _images()
        before = model(images, training=False)
        decoder = model.get_layer("mask_decoder")
        rng = np.random.default_rng(3)
        decoder.set_weights(
            [
                rng.normal(0, 1, w.shape).astype("float32")
                for w in decoder.get_weights()
            ]
        )

        after = model(images, training=False)

        self.assertNotAllClose(before["mask"], after["mask"])
        if depends:
            self.assertNotAllClose(before["embedding"], after["embedding"])
        else:
            self.assertAllClose(before["embedding"], after["embedding"])

    def test_keras_file_round_trip(self):
        model = extractor.build_extractor(
            _config(
                mask_strides=(16, 32),
                embedding_dim=8,
                trainable_from="stage3_conv",
            )
        )
        path = os.path.join(self.get_temp_dir(), "extractor.keras")
        images = _images()

        model.save(path)
        loaded = keras.models.load_model(path)

        expected, got = model(images, training=False), loaded(
            images, training=False
        )
        for key in ("embedding", "mask"):
            self.assertAllEqual(got[key], expected[key])
        self.assertEqual(
            len(loaded.trainable_weights), len(model.trainable_weights)
        )
        self.assertFalse(
            loaded.get_layer("backbone").get_layer("stage2_conv").trainable
        )

    def test_trainable_from(self):
        model = extractor.build_extractor(_config(trainable_from="none"))
        self.assertEqual(model.get_layer("backbone").trainable_weights, [])
        self.assertLen(model.get_layer("mask_decoder").trainable_weights, 2)

        with self.assertRaisesRegex(
            ValueError, "trainable_from='conv5' is not a layer of backbone"
        ):
            extractor.build_extractor(_config(trainable_from="conv5"))

    def test_mixed_precision_outputs_float32(self):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = extractor.build_extractor(_config(embedding_dim=8))
            training_model = extractor.build_training_model(model, K)
            outputs = model(_images(), training=False)
            logits = training_model(
                {"image": _images(), "label": np.zeros(B, np.int32)},
                training=True,
            )["logits"]
        finally:
            keras.mixed_precision.set_global_policy("float32")

        self.assertEqual(
            model.get_layer("backbone").get_layer("stage4_conv").compute_dtype,
            "float16",
        )
        self.assertEqual(outputs["embedding"].dtype, tf.float32)
        self.assertEqual(outputs["mask"].dtype, tf.float32)
        self.assertEqual(logits.dtype, tf.float32)
        self.assertAllClose(
            np.linalg.norm(_numpy(outputs["embedding"]), axis=-1),
            [1.0, 1.0],
            atol=1e-3,
        )


class TrainingModelTest(tf.test.TestCase):

    def test_outputs_and_margin_only_in_training(self):
        # A frozen backbone keeps BatchNorm in inference mode, so training=True
        # changes nothing but the margin on the label logits.
        model = extractor.build_training_model(
            extractor.build_extractor(
                _config(embedding_dim=8, trainable_from="none")
            ),
            K,
            identity_margin=0.3,
            identity_scale=10.0,
        )
        inputs = {"image": _images(), "label": np.array([0, 2], np.int32)}

        train, infer = model(inputs, training=True), model(
            inputs, training=False
        )

        self.assertEqual(sorted(model.input), ["image", "label"])
        self.assertEqual(tuple(train["logits"].shape), (B, K))
        self.assertEqual(tuple(train["mask"].shape), (B, S, S, 1))
        head = model.get_layer("identity_head")
        self.assertEqual(
            (head.num_classes, head.margin, head.scale), (K, 0.3, 10.0)
        )
        changed = ~np.isclose(_numpy(train["logits"]), _numpy(infer["logits"]))
        self.assertAllEqual(
            changed, [[True, False, False], [False, False, True]]
        )

    def test_shares_the_extractor(self):
        features = extractor.build_extractor(_config())
        model = extractor.build_training_model(features, K)
        self.assertIs(model.get_layer("extractor"), features)

    def test_no_identity_head(self):
        model = extractor.build_training_model(
            extractor.build_extractor(_config()), 0
        )

        outputs = model({"image": _images(), "label": np.zeros(B, np.int32)})

        self.assertEqual(sorted(outputs), ["mask"])

    def test_bad_arguments(self):
        features = extractor.build_extractor(_config())
        with self.assertRaisesRegex(ValueError, "num_classes=-1 is invalid"):
            extractor.build_training_model(features, -1)
        with self.assertRaisesRegex(
            ValueError, "margin_type='sphere' is invalid"
        ):
            extractor.build_training_model(features, K, margin_type="sphere")
        backbone = features.get_layer("backbone")
        with self.assertRaisesRegex(
            ValueError, "must output a dict with 'embedding' and 'mask'"
        ):
            extractor.build_training_model(backbone, K)

    def test_fit_with_dict_dataset_lowers_both_losses(self):
        keras.utils.set_random_seed(0)
        model = extractor.build_training_model(
            extractor.build_extractor(_config(embedding_dim=8)), K
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss={
                "mask": losses.mask_mse,
                "logits": losses.build_identity_loss(),
            },
            loss_weights={"mask": 1.0, "logits": 0.1},
        )
        images, masks = _squares()
        labels = np.array([0, 2], np.int32)
        # The documented element: ({"image", "label"}, {"mask", "logits"}).
        dataset = tf.data.Dataset.from_tensors(
            (
                {"image": images, "label": labels},
                {"mask": masks, "logits": labels},
            )
        )

        # One batch per epoch: history[i] is the loss on that batch after i steps.
        history = model.fit(
            dataset, epochs=15, shuffle=False, verbose=0
        ).history

        for key in ("loss", "mask_loss", "logits_loss"):
            self.assertLess(
                history[key][-1],
                0.7 * history[key][0],
                f"{key}: {history[key]}",
            )

    def test_fit_mask_only(self):
        keras.utils.set_random_seed(0)
        model = extractor.build_training_model(
            extractor.build_extractor(_config()), 0
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss={"mask": losses.mask_mse},
        )
        images, masks = _squares()
        dataset = tf.data.Dataset.from_tensors(
            ({"image": images, "label": np.zeros(B, np.int32)}, {"mask": masks})
        )

        history = model.fit(
            dataset, epochs=10, shuffle=False, verbose=0
        ).history

        self.assertLess(
            history["loss"][-1], 0.7 * history["loss"][0], history["loss"]
        )


class PhotoLogitsTest(tf.test.TestCase):

    def test_photo_logits_are_the_head_without_margin(self):
        tf.keras.utils.set_random_seed(1)
        features = extractor.build_extractor(_config())
        model = extractor.build_training_model(
            features,
            3,
            identity_margin=0.5,
            identity_logits=True,
            photo_logits=True,
        )
        images = np.random.default_rng(0).integers(0, 255, (2, S, S, 3))
        inputs = {
            "image": images.astype(np.float32),
            "label": np.array([0, 1], np.int32),
            "photo": images.astype(np.float32),
        }
        outputs = model(inputs, training=True)
        head = model.get_layer("identity_head")
        plain = head(features(inputs["photo"], training=True)["embedding"])
        self.assertAllClose(outputs["photo_logits"], plain, atol=1e-5)
        # The same images as catalogue scenes get the margin on their label.
        self.assertLess(outputs["logits"][0, 0], plain[0, 0] - 1e-3)

    def test_photo_mask_is_every_cells_logits_then_the_small_mask(self):
        tf.keras.utils.set_random_seed(2)
        features = extractor.build_extractor(_config(embedding_dim=8))
        model = extractor.build_training_model(
            features, 3, photo_logits=True, photo_masks=True
        )
        photos = np.random.default_rng(1).uniform(0, 255, (2, S, S, 3))
        inputs = {
            "image": photos.astype(np.float32),
            "label": np.array([0, 1], np.int32),
            "photo": photos.astype(np.float32),
        }
        packed = model(inputs, training=False)["photo_mask"]
        featured = extractor.with_feature_map(features)(inputs["photo"])
        height, width = featured["features"].shape[1:3]
        self.assertEqual(packed.shape, (2, height, width, 3 + 1))
        cells = model.get_layer("identity_head")(
            features.get_layer("projection")(featured["features"])
        )
        self.assertAllClose(packed[..., :3], cells, atol=1e-5)
        small = tf.image.resize(
            featured["mask"], (height, width), antialias=True
        )
        self.assertAllClose(packed[..., 3:], small, atol=1e-5)
        # The cells pooled with the mask are what the embedding pools.
        self.assertAllClose(
            featured["embedding"], features(inputs["photo"])["embedding"]
        )

    def test_photo_masks_need_photo_logits(self):
        with self.assertRaisesRegex(ValueError, "photo_masks needs"):
            extractor.build_training_model(
                extractor.build_extractor(_config()), 3, photo_masks=True
            )

    def test_photo_logits_need_the_head(self):
        with self.assertRaisesRegex(ValueError, "identity head"):
            extractor.build_training_model(
                extractor.build_extractor(_config()), 0, photo_logits=True
            )


if __name__ == "__main__":
    tf.test.main()
