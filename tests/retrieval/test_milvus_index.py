"""Tests for beau_tf.retrieval.milvus_index against a real Milvus.

`MilvusServerTest` starts Milvus 2.3's standalone server (the `milvus`
package: SCANN); `MilvusLiteTest` uses milvus-lite's local engine (a `.db`
file, no SCANN: the fallback). Both skip where the milvus extra is not
installed, except under CI=true, where they fail.
"""

import contextlib
import importlib
import json
import os
import sys
from unittest import mock

from absl.testing import absltest
import numpy as np
import pytest

from beau_tf.retrieval import brute_force_index
from beau_tf.retrieval import evaluation
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import indexes
from beau_tf.retrieval import metrics
from beau_tf.retrieval import query
from tests.fixtures import milvus as milvus_fixture
from tests.fixtures import testing
from tests.fixtures import vectors

NUM_ITEMS, DIM, NUM_QUERIES, K = 3000, 32, 100, 10
IDENTITY = dict(vectors.IDENTITY, embedding_dim=DIM)
# Set while building: the folder must not record it.
TOKEN = "root:not-a-real-password-5k2"


def _milvus_index():
    """The module, once `require_milvus` has passed."""
    return importlib.import_module("beau_tf.retrieval.milvus_index")


def _clustered(seed: int, rows: int, queries: int):
    rng = np.random.default_rng(seed)
    centres = vectors.unit_rows(rng, 40, DIM)
    return (
        vectors.clustered_rows(rng, rows, centres),
        vectors.clustered_rows(rng, queries, centres),
    )


def _paths(ids: list[str]) -> list[str]:
    return [f"{item_id}.jpg" for item_id in ids]


@pytest.mark.slow  # starts a server (~8 s), builds an index (~10 s)
class MilvusServerTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        milvus_fixture.require_milvus()
        cls.server = contextlib.ExitStack()
        cls.uri = cls.server.enter_context(milvus_fixture.standalone_server())
        cls.embeddings, cls.queries = _clustered(0, NUM_ITEMS, NUM_QUERIES)
        cls.ids = vectors.item_ids(NUM_ITEMS)
        milvus_index = _milvus_index()
        with mock.patch.dict(os.environ, {milvus_index.TOKEN_ENV: TOKEN}):
            cls.index = milvus_index.MilvusIndex.build(
                cls.embeddings,
                cls.ids,
                IDENTITY,
                milvus_index.MilvusSettings(uri=cls.uri),
            )
        cls.true_rows, cls.true_scores = vectors.argsort_oracle(
            cls.embeddings, cls.queries, K
        )

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        super().tearDownClass()

    def _write(self, index=None) -> str:
        index = index or self.index
        folder = os.path.join(testing.make_tempdir(self), "index")
        return index_dir_lib.write_index(
            index, self.embeddings, _paths(self.ids), folder
        )

    def test_builds_scann_and_records_it(self):
        entry = self.index.manifest["milvus"]
        self.assertEqual(entry["index_type"], "SCANN")
        self.assertEqual(entry["uri"], self.uri)
        self.assertEqual(entry["build_params"], {"nlist": 55})  # ~sqrt(N)
        self.assertEqual(
            entry["search_params"], {"nprobe": 6, "reorder_k": 500}
        )
        self.assertTrue(entry["server_version"].startswith("v2.3"))
        self.assertRegex(entry["collection"], r"^beau_tf_[0-9a-f]{12}_")
        self.assertEqual(
            self.index.summary, f"milvus SCANN ({entry['collection']})"
        )

    def test_top1_equals_brute_force_and_scores_are_exact(self):
        exact = brute_force_index.BruteForceIndex.build(
            self.embeddings, self.ids, IDENTITY
        )
        want_ids, _ = exact.search(self.queries, 1)
        ids, scores = self.index.search(self.queries, K)
        self.assertEqual([row[:1] for row in ids], want_ids)
        self.assertEqual(scores.dtype, np.float32)
        self.assertEqual(scores.shape, (NUM_QUERIES, K))
        self.assertTrue(np.all(np.diff(scores, axis=1) <= 0))  # best first
        # SCANN rescores its candidates with the stored vectors.
        rows = vectors.rows_of(ids)
        found = np.einsum("qd,qkd->qk", self.queries, self.embeddings[rows])
        np.testing.assert_allclose(scores, found, atol=1e-5)

    def test_recall_at_10_against_exact(self):
        ids, _ = self.index.search(self.queries, K)
        recall = metrics.recall_against_exact(
            vectors.rows_of(ids), self.true_rows, K
        )
        self.assertGreaterEqual(recall, 0.9)

    def test_search_options_override_the_defaults(self):
        # One partition of ~55 holds fewer than 500 rows: the search widens.
        ids, scores = self.index.search(
            self.queries[:3], 500, nprobe=1, reorder_k=600
        )
        self.assertEqual([len(set(row)) for row in ids], [500] * 3)
        self.assertFalse(np.isnan(scores).any())
        with self.assertRaisesRegex(ValueError, r"\['ef'\] do not apply"):
            self.index.search(self.queries, K, ef=64)

    def test_save_load_round_trip_gives_the_same_results(self):
        folder = self._write()
        with open(os.path.join(folder, "milvus", "connection.json")) as f:
            connection = json.load(f)
        self.assertEqual(connection["collection"], self.index.collection)
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as stream:
                    self.assertNotIn(b"not-a-real-password", stream.read())
        self.assertNotIn("not-a-real-password", json.dumps(connection))

        bundle = index_dir_lib.load_index(folder)
        self.assertEqual(bundle.index.kind, "milvus")
        want_ids, want_scores = self.index.search(self.queries, K)
        ids, scores = bundle.index.search(self.queries, K)
        self.assertEqual(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
        # The query path, as search and evaluate use it.
        top, _ = query.search(bundle, self.queries, K, exact=False)
        self.assertEqual(top, want_ids)
        rows = evaluation.evaluate(
            bundle, self.queries, vectors.item_ids(NUM_QUERIES), None, k=K
        )
        self.assertGreaterEqual(rows[1][f"scann_recall@{K}_vs_exact"], 0.9)

    def test_the_uri_env_overrides_the_recorded_one(self):
        milvus_index = _milvus_index()
        folder = self._write()
        moved = {milvus_index.URI_ENV: "http://127.0.0.1:9"}
        with mock.patch.dict(os.environ, moved):
            with self.assertRaisesRegex(
                ConnectionError,
                f"Cannot reach Milvus at http://127.0.0.1:9 to load index "
                f"{folder}",
            ):
                index_dir_lib.load_index(folder)

    def test_another_model_is_refused(self):
        bundle = index_dir_lib.load_index(self._write())
        bundle.index.check_compatible(IDENTITY)
        for key, value in (
            ("model_version", 4),
            ("signature_fingerprint", "fff000"),
            ("embedding_dim", DIM + 1),
        ):
            with self.assertRaisesRegex(ValueError, "index"):
                bundle.index.check_compatible(dict(IDENTITY, **{key: value}))

    def test_a_missing_collection_is_named(self):
        milvus_index = _milvus_index()
        folder = self._write()
        own = os.path.join(folder, "milvus")
        # A folder whose own file names a collection the server lacks (the
        # checksums would refuse an edited one; `load` is called directly).
        other = os.path.join(testing.make_tempdir(self), "milvus")
        os.makedirs(other)
        with open(os.path.join(own, "connection.json")) as stream:
            connection = json.load(stream)
        connection["collection"] = "beau_tf_gone"
        with open(os.path.join(other, "connection.json"), "w") as stream:
            json.dump(connection, stream)
        with self.assertRaises(ValueError) as raised:
            milvus_index.MilvusIndex.load(
                other, self.ids, self.embeddings, self.index.manifest, folder
            )
        message = str(raised.exception)
        for part in (folder, self.uri, "beau_tf_gone", "does not exist"):
            self.assertIn(part, message)

    def test_a_row_count_mismatch_is_named(self):
        milvus_index = _milvus_index()
        folder = self._write()
        with self.assertRaises(ValueError) as raised:
            milvus_index.MilvusIndex.load(
                os.path.join(folder, "milvus"),
                self.ids[:-1],
                self.embeddings[:-1],
                self.index.manifest,
                folder,
            )
        message = str(raised.exception)
        for part in (
            folder,
            self.uri,
            self.index.collection,
            f"lists {NUM_ITEMS - 1} items",
            f"holds {NUM_ITEMS} rows",
        ):
            self.assertIn(part, message)


class MilvusLiteTest(absltest.TestCase):
    """milvus-lite's local engine: no SCANN, so the next auto type."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        milvus_fixture.require_milvus()
        cls.embeddings, cls.queries = _clustered(2, 1000, 50)
        cls.ids = vectors.item_ids(1000)

    def test_falls_back_to_hnsw_and_matches_brute_force(self):
        milvus_index = _milvus_index()
        uri = os.path.join(testing.make_tempdir(self), "catalogue.db")
        index = milvus_index.MilvusIndex.build(
            self.embeddings,
            self.ids,
            IDENTITY,
            milvus_index.MilvusSettings(uri=uri),
        )
        self.assertEqual(index.index_type, "HNSW")
        self.assertEqual(index.manifest["milvus"]["uri"], uri)
        rows, _ = vectors.argsort_oracle(self.embeddings, self.queries, K)
        ids, _ = index.search(self.queries, K)
        self.assertEqual(
            vectors.rows_of(ids)[:, 0].tolist(), rows[:, 0].tolist()
        )
        self.assertGreaterEqual(
            metrics.recall_against_exact(vectors.rows_of(ids), rows, K), 0.9
        )
        folder = os.path.join(testing.make_tempdir(self), "index")
        index_dir_lib.write_index(
            index, self.embeddings, _paths(self.ids), folder
        )
        self.assertEqual(
            index_dir_lib.load_index(folder).index.search(self.queries, K)[0],
            ids,
        )

    def test_a_dropped_collection_no_longer_loads(self):
        milvus_index = _milvus_index()
        uri = os.path.join(testing.make_tempdir(self), "dropped.db")
        index = milvus_index.MilvusIndex.build(
            self.embeddings,
            self.ids,
            IDENTITY,
            milvus_index.MilvusSettings(uri=uri, index_type="FLAT"),
        )
        folder = os.path.join(testing.make_tempdir(self), "index")
        index_dir_lib.write_index(
            index, self.embeddings, _paths(self.ids), folder
        )
        index.drop()
        with self.assertRaisesRegex(ValueError, "does not exist there"):
            index_dir_lib.load_index(folder)

    def test_equal_scores_go_to_the_lower_row(self):
        milvus_index = _milvus_index()
        embeddings = np.array([[0, 1], [1, 0], [1, 0], [0, 1]], np.float32)
        uri = os.path.join(testing.make_tempdir(self), "ties.db")
        index = milvus_index.MilvusIndex.build(
            embeddings,
            list("abcd"),
            dict(IDENTITY, embedding_dim=2),
            milvus_index.MilvusSettings(uri=uri, index_type="FLAT"),
        )
        ids, scores = index.search(np.array([[1, 0]], np.float32), 3)
        self.assertEqual(ids, [["b", "c", "a"]])
        np.testing.assert_allclose(scores, [[1, 1, 0]], atol=1e-6)


class SettingsTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        milvus_fixture.require_milvus()

    def test_a_password_in_the_uri_is_refused(self):
        with self.assertRaisesRegex(ValueError, "BEAU_TF_MILVUS_TOKEN"):
            _milvus_index().MilvusSettings(uri="http://root:secret@host:19530")

    def test_other_uris_are_refused(self):
        for uri in ("ftp://host", "catalogue.sqlite", ""):
            with self.assertRaisesRegex(ValueError, "neither a server"):
                _milvus_index().MilvusSettings(uri=uri)

    def test_building_needs_settings(self):
        embeddings, _ = _clustered(3, 5, 0)
        with self.assertRaisesRegex(ValueError, "--milvus_uri"):
            _milvus_index().MilvusIndex.build(
                embeddings, vectors.item_ids(5), IDENTITY
            )

    def test_an_unreachable_server_is_one_clear_error(self):
        milvus_index = _milvus_index()
        with mock.patch.object(milvus_index, "_CONNECT_TIMEOUT_S", 2.0):
            with self.assertRaisesRegex(
                ConnectionError, "Cannot reach Milvus at http://127.0.0.1:9 "
            ):
                milvus_index.check_server("http://127.0.0.1:9")


class NotInstalledTest(absltest.TestCase):

    def test_missing_pymilvus_is_one_line_naming_the_extra(self):
        name = "beau_tf.retrieval.milvus_index"
        # None in sys.modules makes `import pymilvus` fail as if missing.
        with mock.patch.dict(sys.modules, {"pymilvus": None}):
            sys.modules.pop(name, None)
            with self.assertRaises(ImportError) as raised:
                indexes.index_type("milvus")
        error = raised.exception
        self.assertIsInstance(error, ValueError)  # one line on the CLIs
        self.assertEqual(
            str(error),
            "The milvus index type needs pymilvus, which is not installed: "
            "pip install 'beau_tf[milvus]'",
        )


if __name__ == "__main__":
    absltest.main()
