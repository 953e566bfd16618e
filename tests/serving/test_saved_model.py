"""Tests for beau_tf.serving.saved_model: the SavedModel's signatures, identity
and versions."""

import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from beau_tf.models import extractor as extractor_lib
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import preprocess
from beau_tf.serving import saved_model
from beau_tf.serving import signatures as signatures_lib
from tests.fixtures import tiny_export

SAVED_MODEL_CLI = os.path.join(
    os.path.dirname(sys.executable), "saved_model_cli"
)
ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def tiny_extractor():
    return extractor_lib.build_extractor(
        extractor_lib.ExtractorConfig(
            backbone="tiny", backbone_weights="none", image_size=64
        )
    )


def describe(spec) -> list:
    return [spec.dtype.name, spec.shape.as_list()]


class ExportSavedModelTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = tiny_extractor()
        cls.tempdir = tempfile.TemporaryDirectory()
        cls.base = os.path.join(cls.tempdir.name, "exported")
        cls.version_dir = saved_model.export_saved_model(
            cls.model,
            cls.base,
            "beau_tf",
            members=[{"workdir": "runs/a", "weight": 1.0}],
            query_zooms=(1.0, 0.5),
        )

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()
        super().tearDownClass()

    def test_serving_default_equals_the_in_memory_model(self):
        images = tiny_export.real_image_bytes()
        loaded = tf.saved_model.load(self.version_dir)
        served = loaded.signatures["serving_default"](images=images)
        expected = self.model(preprocess.decode_batch(images, 64)[0])
        self.assertEqual(served["embedding"].shape, (2, 64))
        self.assertAllEqual(served["status"], [b"ok", b"ok"])
        self.assertEqual(served["mask"].shape, (2, 64, 64, 1))
        self.assertAllClose(
            served["embedding"], expected["embedding"], atol=1e-5
        )
        self.assertAllClose(served["mask"], expected["mask"], atol=1e-5)
        self.assertAllClose(
            np.linalg.norm(served["embedding"], axis=-1), [1.0, 1.0]
        )

    def test_query_multiscale_is_the_normalised_mean_over_zooms(self):
        images = tiny_export.real_image_bytes()
        loaded = tf.saved_model.load(self.version_dir)
        served = loaded.signatures["query_multiscale"](images=images)
        views, _ = preprocess.decode_batch_zoomed(images, 64, (1.0, 0.5))
        whole = self.model(views[:, 0])["embedding"].numpy()
        centre = self.model(views[:, 1])["embedding"].numpy()
        mean = whole + centre
        expected = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
        self.assertEqual(
            set(served),
            {"embedding", "status", "model_fingerprint", "view_boxes"},
        )
        self.assertEqual(served["view_boxes"].shape, (2, 0, 4))
        self.assertAllClose(served["embedding"], expected, atol=1e-5)
        self.assertEqual(
            contract.model_identity(self.version_dir)["query_zooms"],
            [1.0, 0.5],
        )

    def test_a_missing_signature_is_named_with_those_there(self):
        with self.assertRaisesRegex(
            ValueError, r"no signature 'nope'.*query_multiscale"
        ):
            embedding_lib.load_embed_fn(self.version_dir, "nope")

    def test_signature_as_tf_serving_sees_it(self):
        shown = subprocess.run(
            [
                SAVED_MODEL_CLI,
                "show",
                "--dir",
                self.version_dir,
                "--tag_set",
                "serve",
                "--signature_def",
                "serving_default",
            ],
            capture_output=True,
            text=True,
            env=ENVIRONMENT,
            check=True,
        ).stdout
        pattern = r"inputs\['{}'\] tensor_info:\s+dtype: {}\s+shape: \({}\)"
        self.assertRegex(shown, pattern.format("images", "DT_STRING", "-1"))
        shown = shown.replace("outputs[", "inputs[")  # one pattern for both
        self.assertRegex(
            shown, pattern.format("embedding", "DT_FLOAT", "-1, 64")
        )
        self.assertRegex(
            shown, pattern.format("mask", "DT_FLOAT", "-1, 64, 64, 1")
        )
        self.assertRegex(shown, pattern.format("status", "DT_STRING", "-1"))
        self.assertRegex(
            shown, pattern.format("model_fingerprint", "DT_STRING", "-1")
        )

    def test_identity_round_trip_matches_the_saved_signature(self):
        identity = contract.model_identity(self.version_dir)
        self.assertEqual(identity["model_name"], "beau_tf")
        self.assertEqual(identity["model_version"], 1)
        self.assertEqual(identity["embedding_dim"], 64)
        self.assertEqual(identity["image_size"], 64)
        self.assertEqual(
            identity["members"], [{"workdir": "runs/a", "weight": 1.0}]
        )
        serving = tf.saved_model.load(self.version_dir).signatures[
            "serving_default"
        ]
        signature = {
            "inputs": {
                name: describe(spec)
                for name, spec in serving.structured_input_signature[1].items()
            },
            "outputs": {
                name: describe(spec)
                for name, spec in serving.structured_outputs.items()
            },
        }
        self.assertEqual(
            identity["signature_fingerprint"],
            contract.signature_fingerprint(signature),
        )

    def test_bad_images_get_a_reason_and_a_zero_row_without_failing(self):
        good = tiny_export.real_image_bytes().numpy().tolist()
        bad = tiny_export.bad_bytes()
        images = tf.constant([good[0], *bad.values(), good[1]])
        signatures = tf.saved_model.load(self.version_dir).signatures
        want = (
            [b"ok"]
            + [tiny_export.BAD_BYTES_STATUS[key].encode() for key in bad]
            + [b"ok"]
        )
        alone = signatures["serving_default"](
            images=tiny_export.real_image_bytes()
        )
        for name in ("serving_default", "query_multiscale"):
            served = signatures[name](images=images)
            self.assertAllEqual(served["status"], want)
            norms = np.linalg.norm(served["embedding"], axis=-1)
            self.assertAllClose(norms, [1.0] + [0.0] * len(bad) + [1.0])
            if name == "serving_default":
                self.assertAllClose(
                    served["embedding"][:: len(bad) + 1],
                    alone["embedding"],
                    atol=1e-5,
                )
                self.assertAllEqual(
                    served["mask"][1:-1], np.zeros((len(bad), 64, 64, 1))
                )

    def test_model_fingerprint_is_served_and_in_the_identity(self):
        identity = contract.model_identity(self.version_dir)
        for signature in tf.saved_model.load(
            self.version_dir
        ).signatures.values():
            served = signature(images=tiny_export.real_image_bytes()[:2])
            self.assertEqual(
                [
                    value.decode()
                    for value in served["model_fingerprint"].numpy()
                ],
                [identity["model_fingerprint"]] * 2,
            )
        self.assertEqual(
            identity["model_fingerprint"],
            saved_model.model_fingerprint(self.model, 64, (1.0, 0.5)),
        )

    def test_model_fingerprint_follows_what_determines_embeddings(self):
        fingerprint = saved_model.model_fingerprint
        model = tiny_export.tiny_model(seed=1)
        same = tiny_export.tiny_model(seed=1)
        other = tiny_export.tiny_model(seed=2)
        projection = (np.zeros(8), np.eye(8)[:, :4])
        base = fingerprint(model, 16, (1.0, 0.5))
        self.assertEqual(fingerprint(same, 16, (1.0, 0.5)), base)
        variants = {
            fingerprint(other, 16, (1.0, 0.5)),  # other weights
            fingerprint(model, 32, (1.0, 0.5)),
            fingerprint(model, 16, (1.0,)),
            fingerprint(model, 16, (1.0, 0.5), projection),
            fingerprint(model, 16, (1.0, 0.5), mask_views=(0.25,)),
        }
        self.assertLen(variants | {base}, 6)

    @pytest.mark.slow  # four exports (~8 s)
    def test_versions_increment_and_are_never_overwritten(self):
        base = os.path.join(self.get_temp_dir(), "versions")
        model = self.model
        first = saved_model.export_saved_model(model, base, "m")
        self.assertEqual(first, os.path.join(base, "m", "1"))
        self.assertEqual(
            saved_model.export_saved_model(model, base, "m", version=7),
            os.path.join(base, "m", "7"),
        )
        self.assertEqual(
            saved_model.export_saved_model(model, base, "m"),
            os.path.join(base, "m", "8"),
        )
        before = os.path.getmtime(os.path.join(first, "saved_model.pb"))
        with self.assertRaisesRegex(FileExistsError, "never overwritten"):
            saved_model.export_saved_model(model, base, "m", version=1)
        self.assertEqual(
            os.path.getmtime(os.path.join(first, "saved_model.pb")), before
        )
        # Only integer versions remain: no temporary folder is left behind.
        self.assertCountEqual(
            os.listdir(os.path.join(base, "m")), ["1", "7", "8"]
        )

    def test_image_size_comes_from_the_model(self):
        self.assertEqual(
            contract.model_identity(self.version_dir)["image_size"], 64
        )

    def test_non_square_input_is_refused(self):
        inputs = keras.Input((64, 48, 3))
        model = keras.Model(inputs, {"embedding": inputs, "mask": inputs})
        with self.assertRaisesRegex(ValueError, "square RGB input"):
            saved_model.export_saved_model(model, self.get_temp_dir(), "m")

    def test_a_projection_is_applied_after_the_views_are_averaged(self):
        rng = np.random.default_rng(0)
        dim = self.model.output["embedding"].shape[-1]
        mean = rng.standard_normal(dim).astype(np.float32) * 0.1
        matrix = rng.standard_normal((dim, 5)).astype(np.float32)
        version_dir = saved_model.export_saved_model(
            self.model,
            self.get_temp_dir(),
            "adapted",
            query_zooms=(1.0, 0.5),
            projection=(mean, matrix),
            adaptation={"num_photos": 7},
        )
        identity = contract.model_identity(version_dir)
        self.assertEqual(identity["embedding_dim"], 5)
        self.assertEqual(identity["adaptation"], {"num_photos": 7})
        signatures = tf.saved_model.load(version_dir).signatures
        plain = saved_model.ServingModule(self.model, (1.0, 0.5))
        images = tiny_export.real_image_bytes()

        def project(embeddings):
            projected = (embeddings - mean) @ matrix
            return projected / np.linalg.norm(projected, axis=1, keepdims=True)

        for name, function in [
            ("serving_default", plain.serve),
            ("query_multiscale", plain.serve_multiscale),
        ]:
            served = signatures[name](images=images)["embedding"].numpy()
            want = project(function(images)["embedding"].numpy())
            self.assertAllClose(served, want, atol=1e-5)
        # Read back without the model, as a converted runtime reads it.
        read_mean, read_matrix = signatures_lib.read_projection(version_dir)
        self.assertAllEqual(read_mean, mean)
        self.assertAllEqual(read_matrix, matrix)
        self.assertIsNone(signatures_lib.read_projection(self.version_dir))

    def test_the_model_call_alone_is_saved_beside_the_signatures(self):
        loaded = tf.saved_model.load(self.version_dir)
        self.assertNotIn(saved_model.PIXELS_FUNCTION, loaded.signatures)
        pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3))
        pixels = tf.constant(pixels, tf.float32)
        saved = getattr(loaded, saved_model.PIXELS_FUNCTION)(pixels)
        want = self.model(pixels, training=False)
        self.assertEqual(set(saved), {"embedding", "mask"})
        for key in saved:
            self.assertAllClose(saved[key], want[key], atol=1e-5)

    def test_a_projection_of_the_wrong_size_is_refused(self):
        with self.assertRaisesRegex(ValueError, "does not fit"):
            saved_model.export_saved_model(
                self.model,
                self.get_temp_dir(),
                "m",
                projection=(np.zeros(3), np.zeros((3, 2))),
            )

    def test_missing_identity_is_a_clear_error(self):
        with self.assertRaisesRegex(FileNotFoundError, "beau_tf.export"):
            contract.model_identity(self.get_temp_dir())


class MaskViewsTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = tiny_extractor()
        cls.tempdir = tempfile.TemporaryDirectory()
        cls.version_dir = saved_model.export_saved_model(
            cls.model,
            os.path.join(cls.tempdir.name, "exported"),
            "beau_tf",
            query_zooms=(1.0, 0.5),
            query_mask_views=(0.25, 1.0),
        )

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()
        super().tearDownClass()

    def test_views_around_the_whole_photos_mask_join_the_zooms(self):
        images = tiny_export.real_image_bytes()
        served = tf.saved_model.load(self.version_dir).signatures[
            "query_multiscale"
        ](images=images)
        views, sources, _ = preprocess.decode_batch_for_mask_views(
            images, 64, (1.0, 0.5), 128
        )
        whole = self.model(views[:, 0])
        boxes = preprocess.mask_boxes(whole["mask"], (0.25, 1.0))
        crops = preprocess.crop_views(sources, boxes, 64)
        embeddings = [
            whole["embedding"],
            self.model(views[:, 1])["embedding"],
            self.model(crops[:, 0])["embedding"],
            self.model(crops[:, 1])["embedding"],
        ]
        mean = np.sum([e.numpy() for e in embeddings], axis=0)
        expected = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
        self.assertAllClose(served["embedding"], expected, atol=1e-5)
        self.assertAllClose(served["view_boxes"], boxes, atol=1e-6)
        identity = contract.model_identity(self.version_dir)
        self.assertEqual(identity["query_mask_views"], [0.25, 1.0])
        self.assertEqual(
            identity["model_fingerprint"],
            saved_model.model_fingerprint(
                self.model, 64, (1.0, 0.5), mask_views=(0.25, 1.0)
            ),
        )

    def test_mask_views_need_the_whole_photo_among_the_zooms(self):
        with self.assertRaisesRegex(ValueError, "zoom 1.0"):
            saved_model.ServingModule(self.model, (0.75, 0.5), None, (0.25,))
        with self.assertRaisesRegex(ValueError, r"\[0, 4\]"):
            saved_model.ServingModule(self.model, (1.0,), None, (-0.1,))


if __name__ == "__main__":
    tf.test.main()
