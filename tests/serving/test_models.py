"""Tests for beau_tf.serving.models: a model held to one identity (fast, with
stand-in functions), then tiny exports opened locally and over gRPC alike."""

import os
import tempfile
import unittest

import numpy as np

from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import grpc_client
from beau_tf.serving import models
from beau_tf.serving import prediction_service
from tests.fixtures import tiny_export

_IDENTITY = {
    "model_name": "fake",
    "model_version": 1,
    "signature_fingerprint": "signature-1",
    "model_fingerprint": "weights-1",
    "embedding_dim": 2,
}


def _answering(fingerprint: str, version: int | None = None):
    """An `EmbedFn` answering one unit row per image as `fingerprint`."""

    def embed(images):
        return embedding_lib.EmbeddedBatch(
            embeddings=np.tile([[1.0, 0.0]], (len(images), 1)),
            statuses=["ok"] * len(images),
            model_fingerprint=fingerprint,
            model_version=version,
        )

    return embed


def _without_fingerprint(identity) -> dict:
    return {k: v for k, v in identity.items() if k != "model_fingerprint"}


class PinTest(unittest.TestCase):

    def test_answers_of_the_expected_model_pass(self):
        for version in (None, 1):
            embed = models.pin(_answering("weights-1", version), _IDENTITY, "m")
            self.assertEqual(embed([b"x", b"y"]).statuses, ["ok", "ok"])

    def test_answers_of_another_model_are_refused(self):
        embed = models.pin(
            _answering("weights-2"), _IDENTITY, "the fake model", "index i"
        )
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            "the fake model answers as fake version 1 with model fingerprint "
            "weights-2, but index i was built .*model fingerprint weights-1",
        ):
            embed([b"x"])
        embed = models.pin(_answering("weights-1", 2), _IDENTITY, "m")
        with self.assertRaisesRegex(
            contract.IncompatibleModelError, "answered with fake version 2"
        ):
            embed([b"x"])

    def test_an_identity_without_a_fingerprint_cannot_hold_answers(self):
        with self.assertRaisesRegex(
            contract.IncompatibleModelError, "without a model fingerprint"
        ):
            models.pin(
                _answering("weights-1"), _without_fingerprint(_IDENTITY), "m"
            )


class EmbeddingModelTest(unittest.TestCase):

    def _model(self, identity, **kwargs):
        return models.EmbeddingModel(identity, {}, None, "m", **kwargs)

    def test_summary_prefers_the_model_fingerprint(self):
        self.assertEqual(
            self._model(_IDENTITY).summary(),
            {"name": "fake", "version": 1, "fingerprint": "weights-1"},
        )
        older = _without_fingerprint(_IDENTITY)
        self.assertEqual(
            self._model(older).summary()["fingerprint"], "signature-1"
        )

    def test_closing_releases_what_it_holds(self):
        closed = []
        with self._model(_IDENTITY, close_fn=lambda: closed.append(True)):
            self.assertEqual(closed, [])
        self.assertEqual(closed, [True])


class OpenModelTest(unittest.TestCase):
    """Two tiny exports of one name and version, with different weights,
    each also served over gRPC."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._directory = tempfile.TemporaryDirectory()
        root = cls._directory.name
        cls.model_dir = tiny_export.export_tiny(os.path.join(root, "a"), seed=0)
        cls.other = tiny_export.export_tiny(os.path.join(root, "b"), seed=1)
        cls.identity = contract.model_identity(cls.model_dir)
        cls.paths, cls.bad = tiny_export.write_files(os.path.join(root, "img"))
        cls.servers = {}
        for name, model_dir in [
            ("indexed", cls.model_dir),
            ("other", cls.other),
        ]:
            cls.servers[name] = prediction_service.start_server(
                model_dir, "beau_tf", 1
            )
        cls.address = cls.servers["indexed"][1]

    @classmethod
    def tearDownClass(cls):
        for server, _ in cls.servers.values():
            server.stop(0)
        cls._directory.cleanup()
        super().tearDownClass()

    def _embed_files(self, embed_fn):
        with self.assertLogs(level="WARNING") as logs:
            embeddings, kept = embedding_lib.embed_files(
                embed_fn, self.paths, batch_size=3
            )
        lines = [line for line in logs.output if "Skipped: " in line]
        self.assertEqual(len(lines), len(self.bad))
        for path, line in zip(self.bad, lines):
            self.assertIn(path, line)
        return embeddings, kept

    def test_local_and_grpc_keep_the_same_files_and_embeddings(self):
        good = [i for i, p in enumerate(self.paths) if p not in self.bad]
        with models.open_model(self.model_dir, self.identity) as local:
            with models.open_model(self.address, self.identity) as served:
                self.assertEqual(
                    set(local.embed_fns), set(contract.QUERY_SIGNATURES)
                )
                self.assertEqual(set(served.embed_fns), set(local.embed_fns))
                for signature in contract.QUERY_SIGNATURES:
                    with self.subTest(signature=signature):
                        here, here_kept = self._embed_files(
                            local.embed_fns[signature]
                        )
                        there, there_kept = self._embed_files(
                            served.embed_fns[signature]
                        )
                        self.assertEqual(here_kept, good)
                        self.assertEqual(there_kept, good)
                        self.assertTrue(np.allclose(here, there, atol=1e-6))
                        np.testing.assert_allclose(
                            np.linalg.norm(here, axis=1),
                            np.ones(len(good)),
                            rtol=1e-5,
                        )

    def test_what_each_gives_and_where_it_runs(self):
        images = tiny_export.good_bytes()[:2]
        with models.open_model(self.model_dir) as local:
            self.assertEqual(local.identity, self.identity)
            self.assertEqual(local.source, f"the SavedModel {self.model_dir}")
            masks = local.mask_fn(images)
            self.assertEqual(masks.shape, (2,) + (tiny_export.IMAGE_SIZE,) * 2)
            batch = local.embed_fns["serving_default"](images)
            self.assertEqual(batch.model_version, 1)
        with models.open_model(self.address, self.identity) as served:
            self.assertIsNone(served.mask_fn)  # masks never cross the network
            self.assertEqual(
                served.source,
                f"TF Serving at {self.address} (beau_tf version 1)",
            )
            batch = served.embed_fns["serving_default"](images)
            self.assertEqual(batch.model_version, 1)
            self.assertEqual(
                batch.model_fingerprint, self.identity["model_fingerprint"]
            )

    def test_a_server_is_asked_for_the_identity_version_and_outputs(self):
        server, address = prediction_service.start_server(
            self.model_dir, "beau_tf", 1
        )
        self.addCleanup(server.stop, 0)
        with models.open_model(
            address, self.identity, signature_names=["query_multiscale"]
        ) as served:
            served.embed_fns["query_multiscale"](tiny_export.good_bytes())
        (request,) = server.servicer.requests
        self.assertEqual(request.model_spec.name, "beau_tf")
        self.assertEqual(request.model_spec.version.value, 1)
        self.assertEqual(request.model_spec.signature_name, "query_multiscale")
        self.assertEqual(
            list(request.output_filter),
            ["embedding", "status", "model_fingerprint"],
        )
        newer = dict(self.identity, model_version=2)
        with models.open_model(address, newer) as served:
            with self.assertRaisesRegex(
                grpc_client.ServingError, r"does not serve.*version 2"
            ):
                served.embed_fns["serving_default"](tiny_export.good_bytes())

    def test_other_weights_are_refused_locally(self):
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            "index i was built with.*differs in model_fingerprint",
        ):
            models.open_model(self.other, self.identity, index_name="index i")

    def test_other_weights_are_refused_over_grpc(self):
        address = self.servers["other"][1]
        with models.open_model(
            address, self.identity, index_name="index indexes/v1"
        ) as served:
            with self.assertRaises(contract.IncompatibleModelError) as caught:
                served.embed_fns["serving_default"](tiny_export.good_bytes())
        message = str(caught.exception)
        self.assertIn(f"TF Serving at {address}", message)
        self.assertIn("index indexes/v1", message)
        self.assertIn("model fingerprint", message)
        self.assertIn("rebuild the index", message)

    def test_an_identity_without_a_model_fingerprint_is_refused(self):
        older = _without_fingerprint(self.identity)
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            "without a model fingerprint.*rebuild the index",
        ):
            models.open_model(self.address, older)
        with self.assertRaisesRegex(
            contract.IncompatibleModelError, "differs in model_fingerprint"
        ):
            models.open_model(self.model_dir, older)

    def test_bad_arguments_are_named(self):
        with self.assertRaisesRegex(ValueError, "needs the identity"):
            models.open_model(self.address)
        with self.assertRaisesRegex(ValueError, "host:port"):
            models.open_model("localhost:0", self.identity)
        with self.assertRaisesRegex(FileNotFoundError, "neither .* nor TF"):
            models.open_model(os.path.join(self.model_dir, "missing"))
        with self.assertRaisesRegex(ValueError, "no signature 'nope'"):
            models.open_model(self.model_dir, signature_names=["nope"])


if __name__ == "__main__":
    unittest.main()
