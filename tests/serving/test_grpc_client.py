"""Tests for beau_tf.serving.grpc_client against an in-process PredictionService."""

import socket
import tempfile
import time

import numpy as np
import tensorflow as tf

from beau_tf.serving import grpc_client
from tests.serving import prediction_server

_MODEL_NAME = "beau_tf"
_VERSION = 7
_SIZE = 16


class _TinyEmbedder(tf.Module):
    """Encoded bytes → (B, 4) L2-normalised mean colour + bias, and a mask."""

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="images")]
    )
    def serve(self, images):
        def decode(data):
            image = tf.io.decode_image(
                data, channels=3, expand_animations=False
            )  # (H, W, 3)
            image = tf.image.convert_image_dtype(image, tf.float32)
            return tf.image.resize(image, (_SIZE, _SIZE))  # (16, 16, 3)

        pixels = tf.map_fn(
            decode,
            images,
            fn_output_signature=tf.TensorSpec([_SIZE, _SIZE, 3], tf.float32),
        )  # (B, 16, 16, 3)
        colour = tf.reduce_mean(pixels, axis=[1, 2])  # (B, 3)
        features = tf.concat([colour, tf.ones_like(colour[:, :1])], -1)
        embedding = tf.math.l2_normalize(features, axis=-1)  # (B, 4)
        mask = tf.reduce_mean(pixels, axis=-1, keepdims=True)  # (B, 16, 16, 1)
        return {"embedding": embedding, "mask": mask}


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
        cls.model_dir = cls._directory.name
        module = _TinyEmbedder()
        tf.saved_model.save(
            module, cls.model_dir, signatures={"serving_default": module.serve}
        )
        cls.server, cls.address = prediction_server.start_server(
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
        server, address = prediction_server.start_server(
            self.model_dir, _MODEL_NAME, _VERSION, **kwargs
        )
        self.addCleanup(server.stop, 0)
        return server, address

    def test_embeddings_equal_the_saved_model_and_report_the_version(self):
        embeddings, info = grpc_client.embed_with_server(
            self.address, self.images[:3]
        )
        self.assertEqual(embeddings.dtype, np.float32)
        self.assertAllClose(embeddings, self._direct(self.images[:3]))
        self.assertAllClose(np.linalg.norm(embeddings, axis=1), np.ones(3))
        self.assertEqual(
            info, {"model_name": _MODEL_NAME, "model_version": _VERSION}
        )

    def test_batches_keep_the_order_of_the_images(self):
        server, address = self._start()
        embeddings, _ = grpc_client.embed_with_server(
            address, self.images, batch_size=2
        )
        requests = server.servicer.requests
        self.assertEqual(
            [len(r.inputs["images"].string_val) for r in requests], [2, 2, 1]
        )
        # Only the embedding crosses the network, and batches after the first
        # are pinned to the version that answered it.
        self.assertEqual(
            [list(r.output_filter) for r in requests], [["embedding"]] * 3
        )
        self.assertFalse(requests[0].model_spec.HasField("version"))
        self.assertEqual(
            [r.model_spec.version.value for r in requests[1:]], [_VERSION] * 2
        )
        self.assertEqual(embeddings.shape, (5, 4))
        self.assertAllClose(embeddings, self._direct(self.images))
        # The images differ, so a reordering would show.
        self.assertLen(np.unique(embeddings.round(4), axis=0), 5)

    def test_explicit_version(self):
        _, info = grpc_client.embed_with_server(
            self.address, self.images[:1], version=_VERSION
        )
        self.assertEqual(info["model_version"], _VERSION)
        with self.assertRaisesRegex(
            grpc_client.ServingError, r"does not serve.*version 8"
        ):
            grpc_client.embed_with_server(
                self.address, self.images[:1], version=8
            )

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
                grpc_client.embed_with_server(
                    address, self.images[:1], timeout_seconds=2.0
                )
        self.assertLess(time.monotonic() - start, 2.0)

    def test_slow_server_times_out(self):
        _, address = self._start(delay_seconds=3.0)
        start = time.monotonic()
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            f"no answer from TF Serving at {address} within 0.3 s",
        ):
            grpc_client.embed_with_server(
                address, self.images[:1], timeout_seconds=0.3
            )
        self.assertLess(time.monotonic() - start, 2.0)

    def test_undecodable_bytes_are_rejected_with_the_server_detail(self):
        images = self.images[:2] + [b"not an image"]
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            r"rejected the request for images 2\.\.2(.|\n)*"
            r"(?i:unknown image file format|decode)",
        ):
            grpc_client.embed_with_server(self.address, images, batch_size=2)

    def test_wrong_model_name_is_not_found(self):
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            r"does not serve model 'other'.*Servable not found",
        ):
            grpc_client.embed_with_server(
                self.address, self.images[:1], model_name="other"
            )

    def test_wrong_signature_is_not_found(self):
        with self.assertRaisesRegex(
            grpc_client.ServingError,
            r"does not serve .*signature 'embed'.*\"embed\" not found",
        ):
            grpc_client.embed_with_server(
                self.address, self.images[:1], signature_name="embed"
            )

    def test_bad_arguments_name_the_value(self):
        for address in ["localhost", "localhost:0", "http://x:8500", ""]:
            with self.subTest(address=address):
                with self.assertRaisesRegex(ValueError, "host:port"):
                    grpc_client.embed_with_server(address, self.images[:1])
        with self.assertRaisesRegex(ValueError, "batch_size=0"):
            grpc_client.embed_with_server(
                self.address, self.images[:1], batch_size=0
            )
        with self.assertRaisesRegex(ValueError, "images is empty"):
            grpc_client.embed_with_server(self.address, [])
        with self.assertRaisesRegex(TypeError, r"images\[1\] is a str"):
            grpc_client.embed_with_server(self.address, [b"x", "y.jpg"])


if __name__ == "__main__":
    tf.test.main()
