"""Tests for beau_tf.serving.prediction_service and the beau_tf.dev_server command."""

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.serving import contract
from beau_tf.serving import grpc_client
from beau_tf.serving import prediction_service
from beau_tf.serving import embedding as embedding_lib
from tests.fixtures import bad_inputs
from tests.fixtures import images
from tests.fixtures import testing
from tests.fixtures import tiny_export

ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


class LatestVersionTest(unittest.TestCase):

    def test_the_highest_numbered_saved_model_is_served(self):
        with tempfile.TemporaryDirectory() as base:
            tiny_export.export_tiny(base, version=2)
            tiny_export.export_tiny(base, version=10)
            model_base = os.path.join(base, "beau_tf")
            # Neither an empty numbered folder nor an unnumbered one counts.
            os.makedirs(os.path.join(model_base, "11"))
            os.makedirs(os.path.join(model_base, ".tmp-12"))
            # Digits, but not a number int() reads (issue 21, finding 9).
            os.makedirs(os.path.join(model_base, "²"))
            self.assertEqual(
                prediction_service.latest_version(model_base),
                (10, os.path.join(model_base, "10")),
            )

    def test_a_folder_without_versions_is_named(self):
        with tempfile.TemporaryDirectory() as base:
            with self.assertRaisesRegex(FileNotFoundError, "no numbered"):
                prediction_service.latest_version(base)
            with self.assertRaisesRegex(FileNotFoundError, "not a folder"):
                prediction_service.latest_version(os.path.join(base, "missing"))


class ServerTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._directory = tempfile.TemporaryDirectory()
        cls.model_dir = tiny_export.export_tiny(cls._directory.name)
        cls.server, cls.address = prediction_service.start_server(
            cls.model_dir, "beau_tf", 1
        )

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(0)
        cls._directory.cleanup()
        super().tearDownClass()

    def _metadata(self, *fields):
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = "beau_tf"
        request.metadata_field.extend(fields)
        with grpc.insecure_channel(self.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            return stub.GetModelMetadata(request, timeout=10)

    def test_metadata_gives_the_signatures(self):
        response = self._metadata("signature_def")
        self.assertEqual(response.model_spec.version.value, 1)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        default = signatures.signature_def[contract.SIGNATURE_NAME]
        self.assertEqual(
            set(default.outputs),
            {"embedding", "mask", "status", "model_fingerprint"},
        )
        self.assertIn(
            contract.MULTISCALE_SIGNATURE_NAME, signatures.signature_def
        )

    def test_other_metadata_is_refused(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self._metadata("other")
        self.assertEqual(
            caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT
        )

    def test_a_taken_port_is_named(self):
        port = int(self.address.rsplit(":", 1)[1])
        with self.assertRaisesRegex(OSError, f"127.0.0.1:{port}.*taken"):
            prediction_service.start_server(
                self.model_dir, "beau_tf", 1, port=port
            )


def _predict_request(images=None, shape=None, dtype=None):
    """A Predict request for `serving_default`: `images` as a string tensor,
    its declared `shape` (default [len(images)])."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "beau_tf"
    request.model_spec.signature_name = contract.SIGNATURE_NAME
    proto = request.inputs[contract.INPUT_NAME]
    proto.dtype = dtype if dtype is not None else types_pb2.DT_STRING
    images = list(images or [])
    proto.string_val.extend(images)
    for size in shape if shape is not None else [len(images)]:
        proto.tensor_shape.dim.add(size=size)
    request.output_filter.extend(contract.QUERY_OUTPUTS)
    return request


class LimitsTest(unittest.TestCase):
    """Every request is bounded before anything is decoded (issue 21,
    finding 4)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._directory = tempfile.TemporaryDirectory()
        cls.model_dir = tiny_export.export_tiny(cls._directory.name)
        cls.server, cls.address = prediction_service.start_server(
            cls.model_dir,
            "beau_tf",
            1,
            max_request_bytes=64 * 1024,
            max_batch=4,
            max_request_pixels=100 * 100,
        )
        cls.image = images.encode(np.zeros((40, 40, 3), np.uint8), "PNG")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(0)
        cls._directory.cleanup()
        super().tearDownClass()

    def predict(self, request):
        with grpc.insecure_channel(self.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            return stub.Predict(request, timeout=30)

    def assert_refused(self, request, code, pattern):
        before = len(self.server.servicer.requests)
        with self.assertRaises(grpc.RpcError) as caught:
            self.predict(request)
        self.assertEqual(caught.exception.code(), code)
        self.assertRegex(caught.exception.details(), pattern)
        return before

    def test_a_request_within_the_limits_is_answered(self):
        response = self.predict(_predict_request([self.image] * 4))
        self.assertEqual(
            list(response.outputs["status"].string_val), [b"ok"] * 4
        )

    def test_a_request_over_the_size_limit(self):
        self.assert_refused(
            _predict_request([b"x" * 70_000]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",
        )

    def test_a_small_request_declaring_a_large_tensor(self):
        # 11 bytes that `tf.make_ndarray` would pad out to 40000 strings.
        self.assert_refused(
            _predict_request([self.image], shape=[40000, 1]),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"shape \[40000, 1\] with 1 string values; .*shape \[B\]",
        )
        self.assert_refused(
            _predict_request(dtype=types_pb2.DT_FLOAT, shape=[3]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "DT_FLOAT tensor",
        )

    def test_too_many_images(self):
        self.assert_refused(
            _predict_request([self.image] * 5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "5 images in one request; .* at most 4",
        )

    def test_images_claiming_too_many_pixels(self):
        self.assert_refused(
            _predict_request([bad_inputs.grey_jpeg(120)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "decodes at most 0 per request",
        )

    def test_a_jpeg_of_too_many_scans(self):
        self.assert_refused(
            _predict_request([bad_inputs.repeated_scan_jpeg(16, 200)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image 0 is a JPEG of 20[0-9] scans",
        )

    def test_the_client_splits_what_one_request_cannot_hold(self):
        noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8)
        photo = images.encode(noise, "PNG")  # ~7 KB
        with grpc_client.PredictionClient(
            self.address, max_request_bytes=3 * len(photo) // 2
        ) as client:
            before = len(self.server.servicer.requests)
            batch = client([photo, self.image, photo])
        self.assertEqual(len(self.server.servicer.requests) - before, 2)
        self.assertEqual(batch.statuses, ["ok"] * 3)
        # The two copies went in requests of different sizes, whose batched
        # kernels may round differently (seen: 3e-8 on a CPU without AVX-512).
        np.testing.assert_allclose(
            batch.embeddings[0], batch.embeddings[2], rtol=1e-5, atol=1e-6
        )


def _read_line(stream, timeout_seconds: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_seconds)
    return stream.readline() if ready else ""


@pytest.mark.slow  # an export, the dev_server and search commands (~15 s)
class CommandTest(unittest.TestCase):

    def test_search_through_the_command_then_ctrl_c(self):
        root = testing.make_tempdir(self)
        base = os.path.join(root, "exported")
        tiny_export.export_tiny(base, seed=0, version=1)
        served = tiny_export.export_tiny(base, seed=1, version=2)
        paths, bad = tiny_export.write_files(os.path.join(root, "images"))
        good = [p for p in paths if p not in bad]
        embeddings, _ = embedding_lib.embed_files(
            embedding_lib.load_embed_fn(served), good
        )
        index_dir = os.path.join(root, "index")
        index_dir_lib.build_and_save(
            index_dir_lib.EmbeddedCatalog(
                embeddings,
                [os.path.basename(p) for p in good],
                good,
                contract.model_identity(served),
            ),
            index_dir,
        )

        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "beau_tf.dev_server",
                f"--model_base={os.path.join(base, 'beau_tf')}",
                "--port=0",
            ],
            cwd=testing.REPO,
            env=ENVIRONMENT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(server.kill)
        line = _read_line(server.stdout, 120)
        self.assertRegex(
            line,
            r"^development stand-in for TF Serving, not for production: "
            r"serving model 'beau_tf' version 2 from .*exported/beau_tf/2 at "
            r"127\.0\.0\.1:\d+ \(Ctrl-C stops\)$",
        )
        address = re.search(r"at (127\.0\.0\.1:\d+)", line).group(1)

        search = subprocess.run(
            [
                sys.executable,
                "-m",
                "beau_tf.search",
                f"--index={index_dir}",
                f"--server={address}",
                f"--query={good[1]}",
                f"--query={bad[0]}",
                "--k=2",
                "--nomultiscale",  # as the catalogue was embedded: score 1
                "--json",
            ],
            cwd=testing.REPO,
            env=ENVIRONMENT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(search.returncode, 0, search.stderr[-3000:])
        answers = json.loads(search.stdout)
        self.assertEqual([a["query"] for a in answers], [good[1]])
        top = answers[0]["results"][0]
        self.assertEqual(top["item_id"], os.path.basename(good[1]))
        self.assertAlmostEqual(top["score"], 1.0, places=4)
        self.assertIn(f"Skipped: {bad[0]}", search.stderr)

        # Damaged JPEGs sent as they are get their status, and the server's
        # terminal no libjpeg line per upload (issue 21, finding 14).
        with grpc_client.PredictionClient(address, version=2) as client:
            statuses = client(
                [
                    bad_inputs.truncated_jpeg(64, 600),
                    bad_inputs.truncated_jpeg(64, 600)[:-2],
                ]
            ).statuses
        # TensorFlow fills a JPEG cut short but closed with grey (and only
        # warns; beau_tf's clients refuse it before sending:
        # serving/preprocess.py); one cut without its end fails.
        self.assertEqual(statuses[0], contract.STATUS_OK)
        self.assertRegex(statuses[1], "probably truncated")

        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
        self.assertEqual(server.returncode, 0, stderr[-3000:])
        self.assertNotIn("Traceback", stderr)
        self.assertNotIn("Premature end of JPEG", stderr)
        self.assertNotIn("Corrupt JPEG data", stderr)


if __name__ == "__main__":
    unittest.main()
