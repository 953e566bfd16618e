"""Tests for beau_tf.retrieval.query: queries embedded locally and served
alike, held to the index's model (the checks themselves are
tests/serving/test_models.py's), and the contact sheet's captions."""

import os
import tempfile
import unittest
from unittest import mock

import numpy as np

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import query
from beau_tf.serving import contract
from beau_tf.serving import prediction_service
from beau_tf.serving import embedding as embedding_lib
from tests.fixtures import tiny_export


def _build_index(model_dir: str, paths: list[str], index_dir: str, **identity):
    """An index of `paths` embedded by `model_dir`, its identity updated
    with `identity` (a key set to None is dropped)."""
    embeddings, kept = embedding_lib.embed_files(
        embedding_lib.load_embed_fn(model_dir), paths
    )
    model_identity = dict(contract.model_identity(model_dir), **identity)
    model_identity = {k: v for k, v in model_identity.items() if v is not None}
    index_dir_lib.build_and_save(
        index_dir_lib.EmbeddedCatalog(
            embeddings,
            [f"item-{i}" for i in kept],
            [paths[i] for i in kept],
            model_identity,
        ),
        index_dir,
    )
    return index_dir_lib.load_index(index_dir)


class ServedModelCheckTest(unittest.TestCase):
    """Two exports of one name and version, with different weights."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._directory = tempfile.TemporaryDirectory()
        root = cls._directory.name
        cls.indexed = tiny_export.export_tiny(os.path.join(root, "a"), seed=0)
        cls.other = tiny_export.export_tiny(os.path.join(root, "b"), seed=1)
        cls.paths, cls.bad = tiny_export.write_files(os.path.join(root, "img"))
        good = [p for p in cls.paths if p not in cls.bad]
        cls.bundle = _build_index(
            cls.indexed, good, os.path.join(root, "index")
        )
        cls.servers = {}
        for name, model_dir in [("indexed", cls.indexed), ("other", cls.other)]:
            server, address = prediction_service.start_server(
                model_dir, "beau_tf", 1
            )
            cls.servers[name] = (server, address)

    @classmethod
    def tearDownClass(cls):
        for server, _ in cls.servers.values():
            server.stop(0)
        cls._directory.cleanup()
        super().tearDownClass()

    def test_the_same_model_embeds_alike_locally_and_served(self):
        with self.assertLogs(level="WARNING") as local_logs:
            local = query.embed_locally(
                self.indexed, self.bundle, self.paths, multiscale=True
            )
        with self.assertLogs(level="WARNING") as served_logs:
            served = query.embed_queries(
                self.bundle,
                self.paths,
                server=self.servers["indexed"][1],
                timeout_seconds=10.0,
                multiscale=True,
            )
        good = [p for p in self.paths if p not in self.bad]
        self.assertEqual(local.paths, good)
        self.assertEqual(served.paths, good)
        self.assertTrue(np.allclose(local.embeddings, served.embeddings))
        for logs in (local_logs, served_logs):
            skipped = [line for line in logs.output if "Skipped: " in line]
            self.assertEqual(len(skipped), len(self.bad))

    def test_a_server_with_other_weights_is_refused(self):
        address = self.servers["other"][1]
        with self.assertRaises(contract.IncompatibleModelError) as caught:
            query.embed_queries(self.bundle, self.paths, server=address)
        message = str(caught.exception)
        self.assertIn(f"TF Serving at {address}", message)
        self.assertIn(self.bundle.directory, message)
        self.assertIn("model fingerprint", message)
        self.assertIn("rebuild the index", message)

    def test_a_local_model_with_other_weights_is_refused(self):
        with self.assertRaisesRegex(ValueError, "differs in model_fingerprint"):
            query.embed_locally(self.other, self.bundle, self.paths)

    def test_an_index_without_a_model_fingerprint_is_refused_over_grpc(self):
        with tempfile.TemporaryDirectory() as root:
            old = _build_index(
                self.indexed,
                self.paths[:1],
                os.path.join(root, "index"),
                model_fingerprint=None,
            )
            with self.assertRaisesRegex(
                contract.IncompatibleModelError,
                "without a model fingerprint.*rebuild the index",
            ):
                query.embed_queries(
                    old, self.paths, server=self.servers["indexed"][1]
                )

    def test_embed_queries_takes_exactly_one_source(self):
        for model_dir, server in [(None, None), (self.indexed, "x:1")]:
            with self.assertRaisesRegex(ValueError, "exactly one"):
                query.embed_queries(
                    self.bundle, self.paths, model_dir=model_dir, server=server
                )
        with self.assertRaisesRegex(
            ValueError, "'localhost' is not 'host:port'"
        ):
            query.embed_queries(self.bundle, self.paths, server="localhost")


class ContactSheetTest(unittest.TestCase):

    def test_query_captions_name_the_folder(self):
        bundle = mock.Mock(paths={})
        paths = ["photos/shelf/x.jpg", "photos/fridge/x.jpg", "y.jpg"]
        ids = [["a"], ["a"], ["a"]]
        with mock.patch.object(query.pictures, "image_grid") as grid:
            query.contact_sheet(bundle, paths, ids, np.ones((3, 1)))
        captions = grid.call_args.args[1]
        self.assertEqual(
            captions[::2],
            ["query shelf/x.jpg", "query fridge/x.jpg", "query y.jpg"],
        )

    def test_a_miss_shows_the_product_it_should_have_found(self):
        # Issue 21, finding 14.
        bundle = mock.Mock(paths={"a": "a.jpg", "b": "b.jpg"})
        ids = [["a"], ["b"]]
        with mock.patch.object(query.pictures, "image_grid") as grid:
            with mock.patch.object(query, "_thumbnail") as thumbnail:
                query.contact_sheet(
                    bundle,
                    ["hit.jpg", "miss.jpg"],
                    ids,
                    np.ones((2, 1)),
                    relevant=[{"a"}, {"a"}],
                )
        self.assertEqual(
            grid.call_args.args[1],
            ["query hit.jpg", "1.000 a OK", "", "query miss.jpg", "1.000 b",
             "missed a"],
        )  # fmt: skip
        self.assertEqual(grid.call_args.kwargs["columns"], 3)
        shown = [call.args[0] for call in thumbnail.call_args_list]
        self.assertEqual(
            shown, ["hit.jpg", "a.jpg", None, "miss.jpg", "b.jpg", "a.jpg"]
        )


if __name__ == "__main__":
    unittest.main()
