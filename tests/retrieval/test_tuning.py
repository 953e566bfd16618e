"""Tests for beau_tf.retrieval.tuning: recall-targeted search settings."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.retrieval import brute_force_index
from beau_tf.retrieval import metrics
from beau_tf.retrieval import scann_index
from beau_tf.retrieval import tuning
from tests.fixtures import vectors

DIM, K = 32, 10
IDENTITY = dict(vectors.IDENTITY, embedding_dim=DIM)


class TuneSearchTest(parameterized.TestCase):
    """`tune_search` on 30K clustered vectors forced to AH and tree-AH."""

    TUNE_ITEMS, TUNE_DIM, TUNE_QUERIES, TARGET = 30_000, 32, 500, 0.95

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(3)
        centres = vectors.unit_rows(rng, 200, cls.TUNE_DIM)
        cls.embeddings = vectors.clustered_rows(rng, cls.TUNE_ITEMS, centres)
        # Fresh queries from the same distribution, never used for tuning.
        cls.fresh = vectors.clustered_rows(rng, cls.TUNE_QUERIES, centres)
        cls.true_rows, _ = metrics.rank_exact(cls.fresh, cls.embeddings, K)
        cls.ids = vectors.item_ids(cls.TUNE_ITEMS)
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
            mode: scann_index.ScannIndex.build(
                cls.embeddings, cls.ids, identity, p
            )
            for mode, p in cls.params.items()
        }
        cls.tuned = {
            mode: cls._tune(index, cls.TARGET)
            for mode, index in cls.built.items()
        }

    @classmethod
    def _tune(cls, index, target, **kwargs):
        return tuning.tune_search(
            index,
            cls.embeddings,
            target,
            num_queries=cls.TUNE_QUERIES,
            **kwargs,
        )

    def _fresh_recall(self, index, **overrides):
        ids, _ = index.search(self.fresh, K, **overrides)
        return metrics.recall_against_exact(
            vectors.rows_of(ids), self.true_rows, K
        )

    @parameterized.parameters("ah", "tree_ah")
    def test_tuned_index_reaches_the_target_on_fresh_queries(self, mode):
        tuned = self.tuned[mode]
        self.assertGreaterEqual(self._fresh_recall(tuned), self.TARGET)
        record = tuned.manifest["tuning"]
        self.assertEqual(record["target_recall"], self.TARGET)
        self.assertEqual(record["k"], K)
        self.assertEqual(record["num_queries"], self.TUNE_QUERIES)
        self.assertTrue(record["met"])
        self.assertGreaterEqual(record["recall"], self.TARGET)
        # The chosen setting becomes the index's default search.
        self.assertEqual(tuned.params.reorder, record["reorder"])
        self.assertEqual(
            tuned.params.num_leaves_to_search, record["num_leaves_to_search"]
        )
        self.assertEqual(tuned.manifest["params"]["reorder"], record["reorder"])
        # The index it was given is left as it was.
        self.assertEqual(self.built[mode].params, self.params[mode])
        self.assertNotIn("tuning", self.built[mode].manifest)

    @parameterized.parameters("ah", "tree_ah")
    def test_the_first_setting_meeting_the_target_is_taken(self, mode):
        record = self.tuned[mode].manifest["tuning"]
        grid = tuning.tuning_grid(self.params[mode], self.TUNE_ITEMS)
        # It stopped at the first setting (cheapest first) that met it ...
        self.assertEqual(
            grid[record["settings_tried"] - 1],
            (
                record["num_leaves_to_search"] if mode == "tree_ah" else 0,
                record["reorder"],
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
        record = tuned.manifest["tuning"]
        self.assertFalse(record["met"])
        self.assertEqual(record["settings_tried"], 3)
        self.assertLess(record["recall"], 0.99)
        # reorder=2k rescoring beats k on the same leaf.
        self.assertEqual(
            (record["num_leaves_to_search"], record["reorder"]), (1, 2 * K)
        )
        message = "\n".join(logs.output)
        self.assertIn("recall@10 0.990", message)
        self.assertIn(f"reaches {record['recall']:.4f}", message)

    def test_brute_force_is_exact_and_measures_nothing(self):
        rng = np.random.default_rng(4)
        embeddings = vectors.unit_rows(rng, 50, DIM)
        ids = [str(i) for i in range(50)]
        index = scann_index.ScannIndex.build(embeddings, ids, IDENTITY)
        tuned = tuning.tune_search(index, embeddings, 0.95)
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
            tuning.tune_search(index, self.embeddings[:10], 0.9)


class OtherIndexTypesTest(absltest.TestCase):

    def test_a_brute_force_index_has_nothing_to_tune(self):
        embeddings = vectors.unit_rows(np.random.default_rng(4), 50, DIM)
        index = brute_force_index.BruteForceIndex.build(
            embeddings, vectors.item_ids(50), IDENTITY
        )
        with self.assertRaisesRegex(
            ValueError, "a brute_force index has no search setting to tune"
        ):
            tuning.tune_search(index, embeddings, 0.95)


class TuningHelpersTest(parameterized.TestCase):

    def test_grid_is_ordered_by_estimated_cost(self):
        params = scann_index.choose_index_params(1_000_000, 256)
        grid = tuning.tuning_grid(params, 1_000_000)
        self.assertLen(grid, (3 + 7) * 6)  # 1-3 leaves, then 7 fractions
        self.assertEqual(grid[0], (1, 10))  # one leaf of 1000, k
        self.assertEqual(grid[-1], (500, 500))
        costs = [
            leaves * 1000 + tuning.RESCORE_COST_IN_POINTS * reorder
            for leaves, reorder in grid
        ]
        self.assertEqual(costs, sorted(costs))

    def test_grid_fits_a_small_catalogue(self):
        params = scann_index.IndexParams("ah", K, reorder=100)
        self.assertEqual(
            tuning.tuning_grid(params, 150),
            [(0, 10), (0, 20), (0, 50), (0, 100), (0, 150)],
        )

    def test_own_row_is_left_out(self):
        rows = np.array([[5, 1, 2], [3, 4, 9]])  # query 2's row 7 not found
        np.testing.assert_array_equal(
            tuning._without_own_row(rows, np.array([5, 7])),
            [[1, 2], [3, 4]],
        )


if __name__ == "__main__":
    absltest.main()
