"""Tests for beau_tf.retrieval.scann_index against a NumPy brute-force oracle."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.retrieval import metrics
from beau_tf.retrieval import scann_index
from tests.fixtures import vectors

NUM_ITEMS, DIM, NUM_QUERIES, K = 2000, 32, 100, 10
IDENTITY = dict(vectors.IDENTITY, embedding_dim=DIM)
PARAMS = {
    "brute_force": scann_index.IndexParams("brute_force", K),
    "ah": scann_index.IndexParams("ah", K, reorder=100),
    "tree_ah": scann_index.IndexParams(
        "tree_ah", K, num_leaves=20, num_leaves_to_search=5, reorder=100
    ),
}


class ScannIndexTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        centres = vectors.unit_rows(rng, 40, DIM)
        cls.embeddings = vectors.clustered_rows(rng, NUM_ITEMS, centres)
        cls.queries = vectors.clustered_rows(rng, NUM_QUERIES, centres)
        cls.ids = vectors.item_ids(NUM_ITEMS)
        cls.indexes = {
            mode: scann_index.ScannIndex.build(
                cls.embeddings, cls.ids, IDENTITY, params
            )
            for mode, params in PARAMS.items()
        }
        cls.true_rows, cls.true_scores = vectors.argsort_oracle(
            cls.embeddings, cls.queries, K
        )

    def test_brute_force_equals_the_oracle(self):
        ids, scores = self.indexes["brute_force"].search(self.queries, K)
        self.assertEqual(
            ids, [[self.ids[r] for r in rows] for rows in self.true_rows]
        )
        self.assertEqual(scores.dtype, np.float32)
        np.testing.assert_allclose(scores, self.true_scores, atol=1e-5)

    @parameterized.parameters("ah", "tree_ah")
    def test_approximate_modes_reach_recall(self, mode):
        ids, scores = self.indexes[mode].search(self.queries, K)
        rows = vectors.rows_of(ids)
        self.assertGreaterEqual(
            metrics.recall_against_exact(rows, self.true_rows, K), 0.9
        )
        # Rescored, so scores are the exact inner products of the ids found.
        exact = np.einsum("qd,qkd->qk", self.queries, self.embeddings[rows])
        np.testing.assert_allclose(scores, exact, atol=1e-5)

    def test_tree_returns_k_even_beyond_the_searched_leaves(self):
        index = self.indexes["tree_ah"]
        ids, scores = index.search(self.queries[:3], 500, leaves_to_search=1)
        self.assertEqual([len(row) for row in ids], [500] * 3)
        self.assertEqual([len(set(row)) for row in ids], [500] * 3)
        self.assertFalse(np.isnan(scores).any())

    def test_the_manifest_names_the_kind_params_and_scann_version(self):
        manifest = self.indexes["tree_ah"].manifest
        self.assertEqual(manifest["kind"], "scann")
        self.assertEqual(manifest["params"]["num_leaves"], 20)
        self.assertEqual(manifest["scann_version"], "1.4.2")
        self.assertEqual(self.indexes["tree_ah"].summary, "scann tree_ah")


class BuildTest(parameterized.TestCase):

    def test_small_catalogue_defaults_to_brute_force(self):
        embeddings = vectors.unit_rows(np.random.default_rng(1), 5, DIM)
        ids = [f"{i}" for i in range(5)]
        index = scann_index.ScannIndex.build(embeddings, ids, IDENTITY)
        self.assertEqual(index.params.mode, "brute_force")

    def test_rejects_more_leaves_than_items(self):
        embeddings = vectors.unit_rows(np.random.default_rng(1), 5, DIM)
        params = scann_index.IndexParams(
            "tree_ah", K, num_leaves=6, num_leaves_to_search=1, reorder=K
        )
        with self.assertRaisesRegex(ValueError, "num_leaves=6 exceeds the 5"):
            scann_index.ScannIndex.build(
                embeddings, list("abcde"), IDENTITY, params
            )

    def test_params_are_checked(self):
        with self.assertRaisesRegex(ValueError, "mode='hnsw'"):
            scann_index.IndexParams("hnsw", K)
        with self.assertRaisesRegex(ValueError, "reorder=0"):
            scann_index.IndexParams("ah", K)
        with self.assertRaisesRegex(ValueError, "num_leaves_to_search=30"):
            scann_index.IndexParams(
                "tree_ah", K, num_leaves=20, num_leaves_to_search=30, reorder=50
            )


class ChooseIndexParamsTest(parameterized.TestCase):

    @parameterized.parameters(
        (1, "brute_force", 0),
        (19_999, "brute_force", 0),
        (20_000, "ah", 0),
        (99_999, "ah", 0),
        (100_000, "tree_ah", 316),
        (1_000_000, "tree_ah", 1000),
    )
    def test_mode_by_size(self, num_items, mode, num_leaves):
        params = scann_index.choose_index_params(num_items, 256)
        self.assertEqual(params.mode, mode)
        self.assertEqual(params.num_leaves, num_leaves)
        self.assertEqual(params.num_neighbors, 10)
        if mode != "brute_force":
            self.assertEqual(params.dimensions_per_block, 2)
            self.assertGreaterEqual(params.reorder, 100)
        if mode == "tree_ah":
            fraction = params.num_leaves_to_search / params.num_leaves
            self.assertBetween(fraction, 0.02, 0.15)

    def test_rejects_nonpositive_sizes(self):
        with self.assertRaisesRegex(ValueError, "num_items=0"):
            scann_index.choose_index_params(0, 256)


if __name__ == "__main__":
    absltest.main()
