"""Tests for beau_tf.serving.conversion: what is converted, and that a copy
is written only after it embeds as the SavedModel does."""

import json
import os
import tempfile
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from beau_tf.common import files
from beau_tf.serving import contract
from beau_tf.serving import conversion
from beau_tf.serving import runtimes
from tests.fixtures import converted
from tests.fixtures import tiny_export


class SplitImagesTest(tf.test.TestCase):

    def test_check_and_calibration_images_are_disjoint_when_there_are_enough(
        self,
    ):
        catalogue = [f"{i}.jpg" for i in range(10)]
        photos = [f"p{i}.jpg" for i in range(20)]
        check, calibration = conversion.split_images([catalogue, photos], 3, 5)
        self.assertLen(check, 6)
        self.assertLen(calibration, 10)
        self.assertEmpty(set(check) & set(calibration))
        self.assertLen(set(check) & set(photos), 3)
        self.assertEqual(
            (check, calibration),
            conversion.split_images([catalogue, photos], 3, 5),
        )

    def test_a_small_catalogue_checks_on_calibration_images(self):
        paths = [f"{i}.jpg" for i in range(4)]
        check, calibration = conversion.split_images([paths], 3, 5)
        self.assertCountEqual(calibration, paths)
        self.assertLen(check, 3)
        check, calibration = conversion.split_images([paths], 10, 0)
        self.assertCountEqual(check, paths)
        self.assertEmpty(calibration)


class PixelsFunctionTest(tf.test.TestCase):

    def test_an_export_without_the_model_call_is_refused(self):
        with self.assertRaisesRegex(
            ValueError, "m/1 has no embed_pixels function.*older beau_tf"
        ):
            conversion.pixels_function(object(), "m/1")


class ScaleAndTranslateTest(tf.test.TestCase):
    """The one TensorFlow op OpenVINO's front end lacks, as beau_tf's
    models use it (`tf.image.resize(..., antialias=True)`)."""

    @pytest.mark.slow  # converts six small graphs
    def test_antialiased_resizing_matches_tensorflow(self):
        converted.require_openvino()
        import openvino  # pylint: disable=g-import-not-at-top
        from openvino.frontend import ConversionExtension

        rng = np.random.default_rng(0)
        for source, target in [(7, 32), (32, 7), (20, 13)]:
            for antialias in (True, False):
                resize = tf.function(
                    lambda x, t=target, a=antialias: tf.image.resize(
                        x, [t, t], antialias=a
                    ),
                    input_signature=[
                        tf.TensorSpec([None, source, source, 2], tf.float32)
                    ],
                ).get_concrete_function()
                model = openvino.convert_model(
                    resize,
                    extension=[
                        ConversionExtension(
                            "ScaleAndTranslate",
                            conversion._scale_and_translate,
                        )
                    ],
                )
                compiled = runtimes.compile_model(model, "openvino")
                pixels = rng.uniform(0, 1, (2, source, source, 2))
                pixels = pixels.astype(np.float32)
                self.assertAllClose(
                    compiled(pixels)[0],
                    resize(tf.constant(pixels)),
                    atol=1e-5,
                    msg=f"{source} -> {target}, antialias={antialias}",
                )


@pytest.mark.slow  # converts tiny exports
class ConvertTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        converted.require_openvino()
        cls.tempdir = tempfile.TemporaryDirectory()
        root = cls.tempdir.name
        cls.images = converted.write_images(os.path.join(root, "images"))
        cls.model_dir = tiny_export.export_tiny(
            os.path.join(root, "a"), query_mask_views=(0.25,)
        )
        cls.other_dir = tiny_export.export_tiny(os.path.join(root, "b"), seed=1)

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()
        super().tearDownClass()

    def test_the_manifest_names_the_export_and_what_was_checked(self):
        folder = conversion.convert(
            self.model_dir, "openvino", self.images, source="images/"
        )
        self.assertEqual(
            folder, runtimes.converted_dir(self.model_dir, "openvino")
        )
        with open(os.path.join(folder, runtimes.MANIFEST_FILE)) as stream:
            manifest = json.load(stream)
        identity = contract.model_identity(self.model_dir)
        self.assertEqual(manifest["runtime"], "openvino")
        self.assertEqual(
            manifest["source"]["model_fingerprint"],
            identity["model_fingerprint"],
        )
        self.assertEqual(manifest["check"]["num_images"], len(self.images))
        self.assertEqual(manifest["check"]["least_cosine_required"], 0.9999)
        self.assertGreater(
            min(manifest["check"]["min_cosine"].values()), 0.9999
        )
        self.assertEqual(
            manifest["files"][runtimes.WEIGHTS_FILE],
            files.file_sha256(os.path.join(folder, runtimes.WEIGHTS_FILE)),
        )
        with self.assertRaisesRegex(FileExistsError, "never overwritten"):
            conversion.convert(self.model_dir, "openvino", self.images)

    def test_a_copy_that_embeds_otherwise_is_refused_and_not_written(self):
        # Another model's call stands in for a conversion gone wrong.
        other_model = conversion.to_openvino(self.other_dir)
        with mock.patch.object(
            conversion, "to_openvino", return_value=other_model
        ):
            with self.assertRaisesRegex(
                conversion.ConversionCheckError,
                r"cosine similarities to the SavedModel's of serving_default: "
                r"least .* below the least 0.99 or the mean 0.995 required; "
                r"nothing was written",
            ):
                conversion.convert(self.model_dir, "openvino-bf16", self.images)
        self.assertFalse(
            os.path.exists(
                runtimes.converted_dir(self.model_dir, "openvino-bf16")
            )
        )

    def test_int8_needs_calibration_images(self):
        with self.assertRaisesRegex(ValueError, "needs calibration images"):
            conversion.convert(self.other_dir, "openvino-int8", self.images)


if __name__ == "__main__":
    tf.test.main()
