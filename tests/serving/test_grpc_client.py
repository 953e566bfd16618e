"""Tests for beau_tf.serving.grpc_client against the in-process stand-in
server (beau_tf.serving.prediction_service)."""

import socket
import tempfile
import time
from unittest import mock

import numpy as np
import tensorflow as tf

from beau_tf.serving import contract
from beau_tf.serving import prediction_service
from beau_tf.serving import grpc_client
from tests.fixtures import tiny_export

_MODEL_NAME = "beau_tf"
_VERSION = 7


class _EmbeddingOnly(tf.Module):
    """A signature as beau_tf exported it before per-image statuses."""

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="images")]
    )
    def serve(self, images):
        return {"embedding": tf.ones([tf.shape(images)[0], 4])}


def _encoded_images(count: int) -> list[bytes]:
    """`count` PNG and JPEG images of distinct colours and sizes."""
    images = []
    for index in range(count):
        colour = tf.constant(
            [(37 * index) % 256, (91 * index + 40) % 256, 255 - 23 * index],
            tf.uint8,
        )
        image = tf.tile(colour[None, None, :], [20 + index, 24, 1])  # (H,W,3)
        encode = tf.io.encode_png if index % 2 else tf.io.encode_jpeg
        images.append(encode(image).numpy())
    return images


class ServingClientTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._directory = tempfile.TemporaryDirectory()
        cls.model_dir = tiny_export.export_tiny(
            cls._directory.name, version=_VERSION
        )
        cls.fingerprint = contract.model_identity(cls.model_dir)[
            "model_fingerprint"
        ]
        cls.server, cls.address = prediction_service.start_server(
            cls.model_dir, _MODEL_NAME, _VERSION
        )
        cls.signature = tf.saved_model.load(cls.model_dir).signatures[
            "serving_default"
        ]
        cls.images = _encoded_images(5)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(0)
        cls._directory.cleanup()
        super().tearDownClass()

    def _direct(self, images):
        """The SavedModel's own embedding of `images`, without the server."""
        return self.signature(images=tf.constant(images))["embedding"].numpy()

    def _start(self, **kwargs):
        server, address = prediction_service.start_server(
            self.model_dir, _MODEL_NAME, _VERSION, **kwargs
        )
        self.addCleanup(server.stop, 0)
        return server, address

    def _embed(self, address=None, images=None, **kwargs):
        """One request of `images` through a new client; the batch."""
        if address is None:
            address = self.address
        with grpc_client.PredictionClient(address, **kwargs) as client:
            return client(images if images is not None else self.images[:1])

    def test_embeddings_equal_the_saved_model_and_report_the_model(self):
        with grpc_client.PredictionClient(self.address) as client:
            batch = client(self.images[:3])
        self.assertEqual(batch.embeddings.dtype, np.float32)
        self.assertAllClose(batch.embeddings, self._direct(self.images[:3]))
        self.assertAllClose(
            np.linalg.norm(batch.embeddings, axis=1), np.ones(3)
        )
        self.assertEqual(batch.statuses, ["ok"] * 3)
        self.assertEqual(
            (client.model_name, batch.model_version, batch.model_fingerprint),
            (_MODEL_NAME, _VERSION, self.fingerprint),
        )
        self.assertEqual(client.model_version, _VERSION)

    def test_calls_keep_the_order_of_the_images(self):
        server, address = self._start()
        with grpc_client.PredictionClient(address) as client:
            embeddings = np.concatenate(
                [client(self.images[i : i + 2]).embeddings for i in (0, 2, 4)]
            )
        requests = server.servicer.requests
        self.assertEqual(
            [len(r.inputs["images"].string_val) for r in requests], [2, 2, 1]
        )
        # Masks never cross the network, and calls after the first are
        # pinned to the version that answered it.
        self.assertEqual(
            [list(r.output_filter) for r in requests],
            [["embedding", "status", "model_fingerprint"]] * 3,
        )
        self.assertFalse(requests[0].model_spec.HasField("version"))
        self.assertEqual(
            [r.model_spec.version.value for r in requests[1:]], [_VERSION] * 2
        )
        self.assertEqual(embeddings.shape, (5, tiny_export.DIM))
        self.assertAllClose(embeddings, self._direct(self.images))
        # The images differ, so a reordering would show.
        self.assertLen(np.unique(embeddings.round(4), axis=0), 5)

    def test_bad_images_come_back_with_their_reasons(self):
        bad = tiny_export.bad_bytes()
        images = [self.images[0], *bad.values(), self.images[1]]
        with grpc_client.PredictionClient(self.address) as client:
            parts = [client(images[:3]), client(images[3:])]
        embeddings = np.concatenate([part.embeddings for part in parts])
        statuses = [status for part in parts for status in part.statuses]
        self.assertEqual(
            statuses,
            ["ok"] + [tiny_export.BAD_BYTES_STATUS[k] for k in bad] + ["ok"],
        )
        self.assertAllClose(
            embeddings[1:-1], np.zeros((len(bad), tiny_export.DIM))
        )
        self.assertAllClose(
            embeddings[[0, -1]], self._direct(self.images[:2]), atol=1e-6
        )

    def test_a_model_exported_without_statuses_is_named(self):
        module = _EmbeddingOnly()
        old_dir = tempfile.mkdtemp(dir=self._directory.name)
        tf.saved_model.save(
            module, old_dir, signatures={"serving_default": module.serve}
        )
        server, address = prediction_service.start_server(
            old_dir, _MODEL_NAME, 1
        )
        self.addCleanup(server.stop, 0)
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            r"rejected(.|\n)*'status'(.|\n)*re-export it",
        ):
            self._embed(address)

    def test_an_answer_without_the_outputs_is_an_older_export(self):
        with grpc_client.PredictionClient(self.address) as client:
            response = client._stub.Predict(
                grpc_client._make_request(
                    self.images[:1], _MODEL_NAME, "serving_default", None
                )
            )
            del response.outputs["status"]
            client._stub = mock.Mock(Predict=mock.Mock(return_value=response))
            with self.assertRaisesRegex(
                contract.IncompatibleModelError,
                f"TF Serving at {self.address} returns .*without "
                "\\['status'\\].*re-export it",
            ):
                client(self.images[:1])

    def test_explicit_version(self):
        batch = self._embed(version=_VERSION)
        self.assertEqual(batch.model_version, _VERSION)
        with self.assertRaisesRegex(
            grpc_client.ServingError, r"does not serve.*version 8"
        ):
            self._embed(version=8)

    def test_server_down_fails_fast_naming_the_address(self):
        # A bound socket that never listens refuses connections, and holding
        # it keeps another process from taking the port during the test.
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{unused.getsockname()[1]}"
            start = time.monotonic()
            with self.assertRaisesRegex(
                grpc_client.ServingError,
                f"could not reach TF Serving at {address}.*server running",
            ):
                self._embed(address, timeout_seconds=2.0)
        self.assertLess(time.monotonic() - start, 2.0)

    def test_slow_server_times_out_naming_the_flag_to_raise(self):
        _, address = self._start(delay_seconds=3.0)
        start = time.monotonic()
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            f"no answer from TF Serving at {address} within 0.3 s"
            ".*--timeout of python -m beau_tf.search.*batch_size",
        ):
            self._embed(address, timeout_seconds=0.3)
        self.assertLess(time.monotonic() - start, 2.0)

    def test_wrong_model_name_is_not_found(self):
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            r"does not serve model 'other'.*Servable not found",
        ):
            self._embed(model_name="other")

    def test_wrong_signature_is_not_found(self):
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            r"does not serve .*signature 'embed'.*\"embed\" not found",
        ):
            self._embed(signature_name="embed")

    def test_bad_arguments_name_the_value(self):
        addresses = ["localhost", "localhost:0", "http://x:8500", ""]
        for address in addresses:
            with self.subTest(address=address):
                with self.assertRaisesRegex(ValueError, "host:port"):
                    self._embed(address)
        # Only the shape: open_model tells an address from a folder by it.
        self.assertEqual(
            [grpc_client.is_address(a) for a in addresses + ["[::1]:8500"]],
            [False, True, False, False, True],
        )
        with self.assertRaisesRegex(ValueError, "timeout_seconds=0"):
            self._embed(timeout_seconds=0)
        with self.assertRaisesRegex(ValueError, "version=-1"):
            self._embed(version=-1)
        with self.assertRaisesRegex(ValueError, "images is empty"):
            self._embed(images=[])
        with self.assertRaisesRegex(TypeError, r"images\[1\] is a str"):
            self._embed(images=[b"x", "y.jpg"])


if __name__ == "__main__":
    tf.test.main()
