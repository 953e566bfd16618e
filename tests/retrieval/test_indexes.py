"""Tests for beau_tf.retrieval.indexes: what every index type does alike.

The Milvus type runs on milvus-lite's local engine here (a `.db` file per
test); tests/retrieval/test_milvus_index.py runs it on a Milvus server.
"""

import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.retrieval import indexes
from tests.fixtures import milvus as milvus_fixture
from tests.fixtures import testing
from tests.fixtures import vectors

NUM_ITEMS, DIM, K = 50, 32, 5
IDENTITY = dict(vectors.IDENTITY, embedding_dim=DIM)
KINDS = tuple(sorted(indexes.INDEX_TYPES))


def _settings(test_case, kind):
    """What `kind` needs to build: for Milvus, where (exact search, so
    results are comparable); None for the others."""
    if kind != "milvus":
        return None
    milvus_fixture.require_milvus()
    # The optional extra's module: imported once it is known to be there.
    from beau_tf.retrieval import milvus_index

    uri = os.path.join(testing.make_tempdir(test_case), "catalogue.db")
    return milvus_index.MilvusSettings(uri=uri, index_type="FLAT")


class RegistryTest(parameterized.TestCase):

    def test_every_type_is_registered_under_its_kind(self):
        self.assertEqual(KINDS, ("brute_force", "milvus", "scann"))
        self.assertEqual(indexes.DEFAULT_KIND, "scann")
        milvus_fixture.require_milvus()
        for kind in KINDS:
            index_class = indexes.index_type(kind)
            self.assertTrue(issubclass(index_class, indexes.CatalogIndex))
            self.assertEqual(index_class.kind, kind)

    def test_an_unknown_kind_names_the_known_ones(self):
        with self.assertRaisesRegex(
            ValueError, "'faiss'.*one of brute_force, milvus, scann"
        ):
            indexes.index_type("faiss")


@parameterized.parameters(*KINDS)
class EveryIndexTypeTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        cls.embeddings = vectors.unit_rows(rng, NUM_ITEMS, DIM)
        cls.queries = vectors.unit_rows(rng, 4, DIM)

    def _index(self, kind):
        settings = _settings(self, kind)  # first: it skips without Milvus
        return indexes.index_type(kind).build(
            self.embeddings, vectors.item_ids(NUM_ITEMS), IDENTITY, settings
        )

    def _build(self, kind, embeddings=None, ids=None, identity=None):
        rng = np.random.default_rng(1)
        embeddings = (
            vectors.unit_rows(rng, 5, DIM) if embeddings is None else embeddings
        )
        ids = [f"{i}" for i in range(len(embeddings))] if ids is None else ids
        settings = _settings(self, kind)
        return indexes.index_type(kind).build(
            embeddings, ids, identity or IDENTITY, settings
        )

    def test_identity(self, kind):
        index = self._index(kind)
        self.assertEqual(index.kind, kind)
        self.assertEqual(index.manifest["kind"], kind)
        self.assertEqual(index.model_identity, IDENTITY)
        self.assertIsNot(index.model_identity, IDENTITY)  # a JSON copy
        self.assertEqual((index.num_items, index.embedding_dim), (50, DIM))
        self.assertEqual(index.item_ids, vectors.item_ids(NUM_ITEMS))
        self.assertIsNone(index.directory)
        self.assertIn("created", index.manifest)

    def test_search_returns_ids_and_scores_best_first(self, kind):
        ids, scores = self._index(kind).search(self.queries, K)
        self.assertLen(ids, 4)
        self.assertEqual([len(row) for row in ids], [K] * 4)
        self.assertEqual(scores.shape, (4, K))
        self.assertEqual(scores.dtype, np.float32)
        self.assertTrue(np.all(np.diff(scores, axis=1) <= 1e-6))
        empty_ids, empty_scores = self._index(kind).search(
            np.zeros((0, DIM), np.float32), K
        )
        self.assertEqual((empty_ids, empty_scores.shape), ([], (0, K)))

    def test_check_compatible(self, kind):
        index = self._index(kind)
        index.check_compatible(dict(IDENTITY))
        newer = dict(IDENTITY, model_version=4, signature_fingerprint="def")
        with self.assertRaises(ValueError) as caught:
            index.check_compatible(newer)
        message = str(caught.exception)
        self.assertIn("index (in memory) was built with", message)
        self.assertIn("built with model beau version 3", message)
        self.assertIn("signature abc123def456…", message)
        self.assertIn("the model given is model beau version 4", message)
        self.assertIn("signature def", message)
        self.assertIn("model_version, signature_fingerprint", message)
        self.assertIn("python -m beau_tf.index", message)

    def test_check_compatible_catches_other_weights(self, kind):
        # The index was built without a model fingerprint (an older export):
        # it accepts only a model without one.
        with self.assertRaisesRegex(
            ValueError,
            r"no model fingerprint.*model fingerprint 0123456789ab….*"
            r"differs in model_fingerprint",
        ):
            self._index(kind).check_compatible(
                dict(IDENTITY, model_fingerprint="0123456789abcdef")
            )

    def test_check_compatible_catches_embedding_size(self, kind):
        with self.assertRaisesRegex(ValueError, "64-d.*embedding_dim"):
            self._index(kind).check_compatible(dict(IDENTITY, embedding_dim=64))

    def test_search_rejects_bad_queries_and_k(self, kind):
        index = self._index(kind)
        with self.assertRaisesRegex(ValueError, r"\(Q, 32\)"):
            index.search(self.queries[:, :16], K)
        with self.assertRaisesRegex(ValueError, "k=51"):
            index.search(self.queries, NUM_ITEMS + 1)
        with self.assertRaisesRegex(ValueError, "NaN"):
            index.search(np.full((1, DIM), np.nan, np.float32), K)

    def test_rejects_non_finite(self, kind):
        x = vectors.unit_rows(np.random.default_rng(2), 5, DIM)
        x[3, 0] = np.nan
        with self.assertRaisesRegex(ValueError, "row 3, item '3'"):
            self._build(kind, x)

    def test_rejects_unnormalised(self, kind):
        x = vectors.unit_rows(np.random.default_rng(2), 5, DIM) * 2
        with self.assertRaisesRegex(ValueError, "not L2-normalised"):
            self._build(kind, x)

    def test_rejects_empty(self, kind):
        with self.assertRaisesRegex(ValueError, r"\(0, 32\)"):
            self._build(kind, np.zeros((0, DIM), np.float32), [])

    def test_rejects_id_count(self, kind):
        with self.assertRaisesRegex(ValueError, "4 item ids for 5"):
            self._build(kind, ids=["a", "b", "c", "d"])

    def test_rejects_duplicate_ids(self, kind):
        with self.assertRaisesRegex(ValueError, "'b' appears more than once"):
            self._build(kind, ids=["a", "b", "c", "b", "e"])

    def test_rejects_identity_of_another_size(self, kind):
        with self.assertRaisesRegex(ValueError, "embedding_dim=64.*32-d"):
            self._build(kind, identity=dict(IDENTITY, embedding_dim=64))

    def test_rejects_identity_without_model_name(self, kind):
        identity = {k: v for k, v in IDENTITY.items() if k != "model_name"}
        with self.assertRaisesRegex(ValueError, "model_name"):
            self._build(kind, identity=identity)


if __name__ == "__main__":
    absltest.main()
