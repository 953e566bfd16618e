"""Tests for beau_tf.retrieval.brute_force_index against a NumPy oracle."""

import os

from absl.testing import absltest
import numpy as np

from beau_tf.retrieval import brute_force_index
from beau_tf.retrieval import scann_index
from tests.fixtures import testing
from tests.fixtures import vectors

NUM_ITEMS, DIM, NUM_QUERIES, K = 300, 16, 20, 10
IDENTITY = dict(vectors.IDENTITY, embedding_dim=DIM)


class BruteForceIndexTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        cls.embeddings = vectors.unit_rows(rng, NUM_ITEMS, DIM)
        cls.queries = vectors.unit_rows(rng, NUM_QUERIES, DIM)
        cls.ids = vectors.item_ids(NUM_ITEMS)
        cls.index = brute_force_index.BruteForceIndex.build(
            cls.embeddings, cls.ids, IDENTITY
        )

    def test_equals_the_argsort_oracle(self):
        rows, scores = vectors.argsort_oracle(self.embeddings, self.queries, K)
        got_ids, got_scores = self.index.search(self.queries, K)
        self.assertEqual(got_ids, [[self.ids[r] for r in row] for row in rows])
        self.assertEqual(got_scores.dtype, np.float32)
        np.testing.assert_allclose(got_scores, scores, atol=1e-6)

    def test_equal_scores_go_to_the_lower_row(self):
        embeddings = np.array([[0, 1], [1, 0], [1, 0], [0, 1]], np.float32)
        identity = dict(IDENTITY, embedding_dim=2)
        index = brute_force_index.BruteForceIndex.build(
            embeddings, list("abcd"), identity
        )
        ids, scores = index.search(np.array([[1, 0]], np.float32), 3)
        self.assertEqual(ids, [["b", "c", "a"]])
        np.testing.assert_array_equal(scores, [[1, 1, 0]])

    def test_agrees_with_scann_brute_force(self):
        scann = scann_index.ScannIndex.build(
            self.embeddings,
            self.ids,
            IDENTITY,
            scann_index.IndexParams("brute_force", K),
        )
        want_ids, want_scores = scann.search(self.queries, K)
        got_ids, got_scores = self.index.search(self.queries, K)
        self.assertEqual(got_ids, want_ids)
        np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)

    def test_the_manifest_holds_the_identity_and_nothing_to_configure(self):
        self.assertEqual(
            set(self.index.manifest),
            {"kind", "model_identity", "num_items", "embedding_dim", "created"},
        )
        self.assertEqual(self.index.manifest["kind"], "brute_force")
        self.assertEqual(self.index.summary, "brute_force")

    def test_save_writes_nothing_and_load_searches_the_embeddings(self):
        folder = os.path.join(testing.make_tempdir(self), "brute_force")
        self.index.save(folder)
        self.assertFalse(os.path.exists(folder))
        loaded = brute_force_index.BruteForceIndex.load(
            folder, self.ids, self.embeddings, self.index.manifest, "idx"
        )
        self.assertEqual(loaded.directory, "idx")
        want_ids, want_scores = self.index.search(self.queries, K)
        got_ids, got_scores = loaded.search(self.queries, K)
        self.assertEqual(got_ids, want_ids)
        np.testing.assert_array_equal(got_scores, want_scores)

    def test_load_refuses_embeddings_that_do_not_fit(self):
        with self.assertRaisesRegex(ValueError, r"idx has float64.*\(2, 16\)"):
            brute_force_index.BruteForceIndex.load(
                "unused", ["a", "b"], np.zeros((2, DIM)), {}, "idx"
            )

    def test_rejects_settings(self):
        with self.assertRaisesRegex(ValueError, "no settings"):
            brute_force_index.BruteForceIndex.build(
                self.embeddings,
                self.ids,
                IDENTITY,
                scann_index.IndexParams("brute_force", K),
            )


if __name__ == "__main__":
    absltest.main()
