"""Tests for beau_tf.serving.runtimes through `models.open_model`: a tiny
export's copies converted for OpenVINO answer as its SavedModel does (bad
images included), carry its identity, and are refused when they are not its
copies; without OpenVINO the SavedModel runs, after one warning."""

import concurrent.futures
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import query
from beau_tf.retrieval import shards
from beau_tf.search_service import embedders
from beau_tf.serving import contract
from beau_tf.serving import conversion
from beau_tf.serving import models
from beau_tf.serving import runtimes
from beau_tf.serving import saved_model
from tests.fixtures import converted
from tests.fixtures import tiny_export


def export_with_everything(export_base: str, seed: int = 0) -> str:
    """A tiny export with zooms, a mask view and a projection: every step
    the signatures take around the model call."""
    rng = np.random.default_rng(seed)
    dim = tiny_export.DIM
    return saved_model.export_saved_model(
        tiny_export.tiny_model(seed, mask_of_white=True),
        export_base,
        "beau_tf",
        version=1,
        query_zooms=(1.0, 0.5),
        query_mask_views=(0.25,),
        projection=(
            rng.standard_normal(dim).astype(np.float32) * 0.1,
            rng.standard_normal((dim, 4)).astype(np.float32),
        ),
    )


def all_bytes() -> list[bytes]:
    """Usable images, the white product photo and every kind of bad bytes."""
    return [
        *tiny_export.good_bytes(),
        tiny_export.white_product_photo(),
        *tiny_export.bad_bytes().values(),
    ]


class NamesTest(tf.test.TestCase):

    def test_an_unknown_runtime_is_refused(self):
        with self.assertRaisesRegex(ValueError, "runtime='onnx' is unknown"):
            models.open_model("exported/beau_tf/1", runtime="onnx")

    def test_a_server_runs_the_saved_model_only(self):
        identity = {"model_name": "m", "model_version": 1}
        with self.assertRaisesRegex(ValueError, "runs a local export"):
            models.open_model(
                "localhost:8500", identity, runtime="openvino-int8"
            )


class WithoutOpenVinoTest(tf.test.TestCase):
    """What a user without the extra gets (simulated where it is
    installed)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tempdir = tempfile.TemporaryDirectory()
        cls.model_dir = tiny_export.export_tiny(cls.tempdir.name)

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()
        super().tearDownClass()

    def test_the_saved_model_runs_after_one_warning(self):
        images = tiny_export.good_bytes()
        with models.open_model(self.model_dir) as reference:
            want = reference.embed_fns[contract.SIGNATURE_NAME](images)
        with mock.patch.object(runtimes, "installed", return_value=False):
            with self.assertLogs(level="WARNING") as logs:
                model = models.open_model(
                    self.model_dir, runtime="openvino-int8"
                )
        (line,) = logs.output
        self.assertIn("pip install 'beau_tf[openvino]'", line)
        self.assertIn("running the SavedModel on TensorFlow", line)
        self.assertStartsWith(model.source, "the SavedModel")
        got = model.embed_fns[contract.SIGNATURE_NAME](images)
        self.assertAllClose(got.embeddings, want.embeddings)

    def test_converting_says_how_to_install(self):
        with mock.patch.object(runtimes, "installed", return_value=False):
            with self.assertRaisesRegex(
                runtimes.RuntimeNotInstalledError,
                r"needs OpenVINO, which is not installed: pip install "
                r"'beau_tf\[openvino\]'",
            ):
                conversion.convert(self.model_dir, "openvino", ["a.jpg"])


@pytest.mark.slow  # three conversions, each checked
class ConvertedTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        converted.require_openvino()
        cls.tempdir = tempfile.TemporaryDirectory()
        root = cls.tempdir.name
        cls.model_dir = export_with_everything(os.path.join(root, "a"))
        cls.images = converted.write_images(os.path.join(root, "images"))
        converted.convert_all(cls.model_dir, cls.images)
        cls.identity = contract.model_identity(cls.model_dir)

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()
        super().tearDownClass()

    def test_each_runtime_answers_as_the_saved_model(self):
        images = all_bytes()
        reference = models.open_model(self.model_dir)
        for runtime, settings in runtimes.RUNTIMES.items():
            model = models.open_model(
                self.model_dir, self.identity, runtime=runtime
            )
            self.assertIn(settings.description, model.source)
            self.assertEqual(model.identity, reference.identity)
            self.assertEqual(model.summary(), reference.summary())
            for name in contract.QUERY_SIGNATURES:
                want = reference.embed_fns[name](images)
                got = model.embed_fns[name](images)
                # Bad images are refused in the same words: the decoding is
                # the SavedModel's own.
                self.assertEqual(got.statuses, want.statuses)
                usable = np.array(want.statuses) == contract.STATUS_OK
                self.assertTrue(np.all(got.embeddings[~usable] == 0.0))
                cosines = np.sum(
                    got.embeddings[usable] * want.embeddings[usable], axis=1
                )
                self.assertGreaterEqual(cosines.min(), settings.least_cosine)
                self.assertGreaterEqual(cosines.mean(), settings.mean_cosine)
                if settings.weights == "float32":
                    self.assertAllClose(
                        got.embeddings,
                        want.embeddings,
                        atol=1e-5 if runtime == "openvino" else 0.05,
                    )
            masks = model.mask_fn(images)
            self.assertEqual(masks.shape, reference.mask_fn(images).shape)
            if settings.weights == "float32":
                self.assertAllClose(
                    masks,
                    reference.mask_fn(images),
                    atol=1e-5 if runtime == "openvino" else 0.05,
                )

    def test_concurrent_calls_answer_as_one_call(self):
        model = models.open_model(self.model_dir, runtime="openvino")
        embed = model.embed_fns[contract.MULTISCALE_SIGNATURE_NAME]
        images = all_bytes()
        want = embed(images).embeddings
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: embed(images), range(8)))
        for answer in answers:
            self.assertAllClose(answer.embeddings, want, atol=1e-6)

    def test_an_index_built_with_one_runtime_is_searched_with_another(self):
        items = catalog_lib.list_catalog(os.path.dirname(self.images[0]))
        root = tempfile.mkdtemp(dir=self.tempdir.name)
        for built_with, searched_with in [
            ("openvino-int8", runtimes.TENSORFLOW),
            (runtimes.TENSORFLOW, "openvino-bf16"),
        ]:
            embedded = shards.embed_catalog_shard(
                self.model_dir, self.identity, items, runtime=built_with
            )
            folder = index_dir_lib.build_and_save(
                embedded,
                os.path.join(root, built_with),
                index_type="brute_force",
            )
            bundle = index_dir_lib.load_index(folder)
            queries = query.embed_queries(
                bundle,
                self.images,
                model_dir=self.model_dir,
                multiscale=True,
                runtime=searched_with,
            )
            self.assertLen(queries.paths, len(self.images))

    def test_the_service_runs_a_copy(self):
        model = embedders.load_local_model(self.model_dir, "openvino-int8")
        embedders.warm_up(model)  # every signature and the masks
        self.assertIn("OpenVINO int8", model.source)
        batch = model.embed_fns[contract.MULTISCALE_SIGNATURE_NAME](
            list(tiny_export.bad_bytes().values())
        )
        self.assertEqual(
            batch.statuses, list(tiny_export.BAD_BYTES_STATUS.values())
        )

    def test_a_copy_of_another_export_is_refused(self):
        other = export_with_everything(
            tempfile.mkdtemp(dir=self.tempdir.name), seed=1
        )
        shutil.copytree(
            runtimes.converted_dir(self.model_dir, "openvino"),
            runtimes.converted_dir(other, "openvino"),
        )
        with self.assertRaisesRegex(
            runtimes.ConvertedModelError,
            "converted from another model than .*model_fingerprint.*"
            "python -m beau_tf.convert",
        ):
            models.open_model(other, runtime="openvino")

    def test_a_changed_file_is_refused(self):
        copy = os.path.join(tempfile.mkdtemp(dir=self.tempdir.name), "1")
        shutil.copytree(self.model_dir, copy)
        weights = os.path.join(
            runtimes.converted_dir(copy, "openvino"), runtimes.WEIGHTS_FILE
        )
        with open(weights, "r+b") as stream:
            first = stream.read(1)
            stream.seek(0)
            stream.write(bytes([first[0] ^ 1]))
        with self.assertRaisesRegex(
            runtimes.ConvertedModelError, "model.bin is not the file converted"
        ):
            models.open_model(copy, runtime="openvino")

    def test_a_missing_copy_says_how_to_convert(self):
        other = tiny_export.export_tiny(tempfile.mkdtemp(dir=self.tempdir.name))
        with self.assertRaisesRegex(
            runtimes.ConvertedModelError,
            "has no copy converted for openvino-int8 .* python -m "
            "beau_tf.convert",
        ):
            models.open_model(other, runtime="openvino-int8")


if __name__ == "__main__":
    tf.test.main()
