"""Tests for beau_tf.retrieval.scann_index against a NumPy brute-force oracle."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.retrieval import metrics
from beau_tf.retrieval import scann_index

NUM_ITEMS, DIM, NUM_QUERIES, K = 2000, 32, 100, 10
IDENTITY = {
    "model_name": "beau",
    "model_version": 3,
    "signature_fingerprint": "abc123def456abc123",
    "embedding_dim": DIM,
}
PARAMS = {
    "brute_force": scann_index.IndexParams("brute_force", K),
    "ah": scann_index.IndexParams("ah", K, reorder=100),
    "tree_ah": scann_index.IndexParams(
        "tree_ah", K, num_leaves=20, num_leaves_to_search=5, reorder=100
    ),
}


def _normalised(rng, rows, dim=DIM):
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng, rows, centres, spread=0.7):
    """Normalised points around `centres`, clustered as embeddings are."""
    picked = centres[rng.integers(len(centres), size=rows)]
    noise = _normalised(rng, rows, centres.shape[1]) * spread
    return _normalised_rows(picked + noise)


def _normalised_rows(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _oracle(embeddings, queries, k):
    scores = queries @ embeddings.T  # (Q, N)
    rows = np.argsort(-scores, axis=1)[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


def _recall(found_ids, true_rows, ids):
    hits = sum(
        len(set(found) & {ids[r] for r in rows})
        for found, rows in zip(found_ids, true_rows)
    )
    return hits / true_rows.size


class ScannIndexTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        centres = _normalised(rng, 40)
        cls.embeddings = _clustered(rng, NUM_ITEMS, centres)
        cls.queries = _clustered(rng, NUM_QUERIES, centres)
        cls.ids = [f"item-{i:05d}" for i in range(NUM_ITEMS)]
        cls.indexes = {
            mode: scann_index.build_index(
                cls.embeddings, cls.ids, IDENTITY, params
            )
            for mode, params in PARAMS.items()
        }
        cls.true_rows, cls.true_scores = _oracle(cls.embeddings, cls.queries, K)

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
        self.assertGreaterEqual(_recall(ids, self.true_rows, self.ids), 0.9)
        # Rescored, so scores are the exact inner products of the ids found.
        rows = np.array([[int(i[5:]) for i in row] for row in ids])
        exact = np.einsum("qd,qkd->qk", self.queries, self.embeddings[rows])
        np.testing.assert_allclose(scores, exact, atol=1e-5)

    def test_tree_returns_k_even_beyond_the_searched_leaves(self):
        index = self.indexes["tree_ah"]
        ids, scores = index.search(self.queries[:3], 500, leaves_to_search=1)
        self.assertEqual([len(row) for row in ids], [500] * 3)
        self.assertEqual([len(set(row)) for row in ids], [500] * 3)
        self.assertFalse(np.isnan(scores).any())

    def test_check_compatible(self):
        index = self.indexes["brute_force"]
        index.check_compatible(dict(IDENTITY))
        newer = dict(IDENTITY, model_version=4, signature_fingerprint="def")
        with self.assertRaises(ValueError) as caught:
            index.check_compatible(newer)
        message = str(caught.exception)
        self.assertIn("built with model beau version 3", message)
        self.assertIn("signature abc123def456…", message)
        self.assertIn("the model given is model beau version 4", message)
        self.assertIn("signature def", message)
        self.assertIn("model_version, signature_fingerprint", message)
        self.assertIn("python -m beau_tf.index", message)

    def test_check_compatible_catches_other_weights(self):
        # The index was built without a model fingerprint (an older export):
        # it accepts only a model without one.
        index = self.indexes["brute_force"]
        with self.assertRaisesRegex(
            ValueError,
            r"no model fingerprint.*model fingerprint 0123456789ab….*"
            r"differs in model_fingerprint",
        ):
            index.check_compatible(
                dict(IDENTITY, model_fingerprint="0123456789abcdef")
            )

    def test_check_compatible_catches_embedding_size(self):
        with self.assertRaisesRegex(ValueError, "64-d.*embedding_dim"):
            self.indexes["ah"].check_compatible(
                dict(IDENTITY, embedding_dim=64)
            )

    def test_search_rejects_bad_queries_and_k(self):
        index = self.indexes["brute_force"]
        with self.assertRaisesRegex(ValueError, r"\(Q, 32\)"):
            index.search(self.queries[:, :16], K)
        with self.assertRaisesRegex(ValueError, "k=2001"):
            index.search(self.queries, NUM_ITEMS + 1)
        with self.assertRaisesRegex(ValueError, "NaN"):
            index.search(np.full((1, DIM), np.nan, np.float32), K)


class BuildValidationTest(parameterized.TestCase):

    def _build(self, embeddings=None, ids=None, identity=None, params=None):
        rng = np.random.default_rng(1)
        embeddings = _normalised(rng, 5) if embeddings is None else embeddings
        ids = [f"{i}" for i in range(len(embeddings))] if ids is None else ids
        return scann_index.build_index(
            embeddings, ids, identity or IDENTITY, params
        )

    def test_small_catalogue_defaults_to_brute_force(self):
        self.assertEqual(self._build().params.mode, "brute_force")

    def test_rejects_non_finite(self):
        x = _normalised(np.random.default_rng(2), 5)
        x[3, 0] = np.nan
        with self.assertRaisesRegex(ValueError, "row 3, item '3'"):
            self._build(x)

    def test_rejects_unnormalised(self):
        x = _normalised(np.random.default_rng(2), 5) * 2
        with self.assertRaisesRegex(ValueError, "not L2-normalised"):
            self._build(x)

    def test_rejects_empty(self):
        with self.assertRaisesRegex(ValueError, r"\(0, 32\)"):
            self._build(np.zeros((0, DIM), np.float32), [])

    def test_rejects_id_count(self):
        with self.assertRaisesRegex(ValueError, "4 item ids for 5"):
            self._build(ids=["a", "b", "c", "d"])

    def test_rejects_duplicate_ids(self):
        with self.assertRaisesRegex(ValueError, "'b' appears more than once"):
            self._build(ids=["a", "b", "c", "b", "e"])

    def test_rejects_identity_of_another_size(self):
        with self.assertRaisesRegex(ValueError, "embedding_dim=64.*32-d"):
            self._build(identity=dict(IDENTITY, embedding_dim=64))

    def test_rejects_identity_without_fingerprint(self):
        identity = {k: v for k, v in IDENTITY.items() if k != "model_name"}
        with self.assertRaisesRegex(ValueError, "model_name"):
            self._build(identity=identity)

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


class TuneSearchTest(parameterized.TestCase):
    """`tune_search` on 30K clustered vectors forced to AH and tree-AH."""

    TUNE_ITEMS, TUNE_DIM, TUNE_QUERIES, TARGET = 30_000, 32, 500, 0.95

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(3)
        centres = _normalised(rng, 200, cls.TUNE_DIM)
        cls.embeddings = _clustered(rng, cls.TUNE_ITEMS, centres)
        # Fresh queries from the same distribution, never used for tuning.
        cls.fresh = _clustered(rng, cls.TUNE_QUERIES, centres)
        cls.true_rows, _ = metrics.rank_exact(cls.fresh, cls.embeddings, K)
        cls.ids = [f"item-{i:05d}" for i in range(cls.TUNE_ITEMS)]
        identity = dict(IDENTITY, embedding_dim=cls.TUNE_DIM)
        cls.params = {
            "ah": scann_index.IndexParams("ah", K, reorder=100),
            "tree_ah": scann_index.IndexParams(
                "tree_ah",
                K,
                num_leaves=173,
                num_leaves_to_search=9,
                reorder=100,
            ),
        }
        cls.built = {
            mode: scann_index.build_index(cls.embeddings, cls.ids, identity, p)
            for mode, p in cls.params.items()
        }
        cls.tuned = {
            mode: cls._tune(index, cls.TARGET)
            for mode, index in cls.built.items()
        }

    @classmethod
    def _tune(cls, index, target, **kwargs):
        return scann_index.tune_search(
            index,
            cls.embeddings,
            target,
            num_queries=cls.TUNE_QUERIES,
            **kwargs,
        )

    def _fresh_recall(self, index, **overrides):
        ids, _ = index.search(self.fresh, K, **overrides)
        return _recall(ids, self.true_rows, self.ids)

    @parameterized.parameters("ah", "tree_ah")
    def test_tuned_index_reaches_the_target_on_fresh_queries(self, mode):
        tuned = self.tuned[mode]
        self.assertGreaterEqual(self._fresh_recall(tuned), self.TARGET)
        tuning = tuned.manifest["tuning"]
        self.assertEqual(tuning["target_recall"], self.TARGET)
        self.assertEqual(tuning["k"], K)
        self.assertEqual(tuning["num_queries"], self.TUNE_QUERIES)
        self.assertTrue(tuning["met"])
        self.assertGreaterEqual(tuning["recall"], self.TARGET)
        # The chosen setting becomes the index's default search.
        self.assertEqual(tuned.params.reorder, tuning["reorder"])
        self.assertEqual(
            tuned.params.num_leaves_to_search, tuning["num_leaves_to_search"]
        )
        self.assertEqual(tuned.manifest["params"]["reorder"], tuning["reorder"])
        # The index it was given is left as it was.
        self.assertEqual(self.built[mode].params, self.params[mode])
        self.assertNotIn("tuning", self.built[mode].manifest)

    @parameterized.parameters("ah", "tree_ah")
    def test_the_first_setting_meeting_the_target_is_taken(self, mode):
        tuning = self.tuned[mode].manifest["tuning"]
        grid = scann_index.tuning_grid(self.params[mode], self.TUNE_ITEMS)
        # It stopped at the first setting (cheapest first) that met it ...
        self.assertEqual(
            grid[tuning["settings_tried"] - 1],
            (
                tuning["num_leaves_to_search"] if mode == "tree_ah" else 0,
                tuning["reorder"],
            ),
        )
        # ... so the same grid, expensive first, takes its first setting.
        reverse = self._tune(self.built[mode], 0.5, grid=grid[::-1])
        self.assertEqual(reverse.manifest["tuning"]["settings_tried"], 1)
        self.assertEqual(reverse.params.reorder, grid[-1][1])

    @parameterized.parameters("ah", "tree_ah")
    def test_a_lower_target_takes_a_cheaper_setting(self, mode):
        high = self.tuned[mode].manifest["tuning"]
        low = self._tune(self.built[mode], 0.7).manifest["tuning"]
        # Earlier in the grid, which is ordered cheapest first.
        self.assertLess(low["settings_tried"], high["settings_tried"])
        self.assertBetween(low["recall"], 0.7, high["recall"])
        self.assertLessEqual(low["reorder"], high["reorder"])

    def test_an_unreachable_target_warns_and_takes_the_best(self):
        index = self.built["tree_ah"]
        grid = [(1, K), (3, K), (1, 2 * K)]
        with self.assertLogs("absl", "WARNING") as logs:
            tuned = self._tune(index, 0.99, grid=grid)
        tuning = tuned.manifest["tuning"]
        self.assertFalse(tuning["met"])
        self.assertEqual(tuning["settings_tried"], 3)
        self.assertLess(tuning["recall"], 0.99)
        # reorder=2k rescoring beats k on the same leaf.
        self.assertEqual(
            (tuning["num_leaves_to_search"], tuning["reorder"]), (1, 2 * K)
        )
        message = "\n".join(logs.output)
        self.assertIn("recall@10 0.990", message)
        self.assertIn(f"reaches {tuning['recall']:.4f}", message)

    def test_brute_force_is_exact_and_measures_nothing(self):
        rng = np.random.default_rng(4)
        embeddings = _normalised(rng, 50)
        ids = [str(i) for i in range(50)]
        index = scann_index.build_index(embeddings, ids, IDENTITY)
        tuned = scann_index.tune_search(index, embeddings, 0.95)
        self.assertEqual(tuned.params, index.params)
        self.assertEqual(
            tuned.manifest["tuning"],
            {
                "target_recall": 0.95,
                "k": K,
                "num_queries": 0,
                "recall": 1.0,
                "met": True,
                "num_leaves_to_search": 0,
                "reorder": 0,
                "settings_tried": 0,
            },
        )

    def test_rejects_bad_arguments(self):
        index = self.built["ah"]
        for target in (-0.1, 1.5):
            with self.assertRaisesRegex(ValueError, f"target_recall={target}"):
                self._tune(index, target)
        with self.assertRaisesRegex(ValueError, r"shape \(10, 32\)"):
            scann_index.tune_search(index, self.embeddings[:10], 0.9)


class TuningHelpersTest(parameterized.TestCase):

    def test_grid_is_ordered_by_estimated_cost(self):
        params = scann_index.choose_index_params(1_000_000, 256)
        grid = scann_index.tuning_grid(params, 1_000_000)
        self.assertLen(grid, 7 * 6)
        self.assertEqual(grid[0], (5, 10))  # 0.5% of 1000 leaves, k
        self.assertEqual(grid[-1], (500, 500))
        costs = [
            leaves * 1000 + scann_index.RESCORE_COST_IN_POINTS * reorder
            for leaves, reorder in grid
        ]
        self.assertEqual(costs, sorted(costs))

    def test_grid_fits_a_small_catalogue(self):
        params = scann_index.IndexParams("ah", K, reorder=100)
        self.assertEqual(
            scann_index.tuning_grid(params, 150),
            [(0, 10), (0, 20), (0, 50), (0, 100), (0, 150)],
        )

    def test_own_row_is_left_out(self):
        rows = np.array([[5, 1, 2], [3, 4, 9]])  # query 2's row 7 not found
        np.testing.assert_array_equal(
            scann_index._without_own_row(rows, np.array([5, 7])),
            [[1, 2], [3, 4]],
        )


if __name__ == "__main__":
    absltest.main()
