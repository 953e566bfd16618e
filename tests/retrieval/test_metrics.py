"""Tests for beau_tf.retrieval.metrics: hand-computed tables and NumPy oracles."""

import unittest
from unittest import mock

import numpy as np
from absl.testing import parameterized

from beau_tf.retrieval import metrics

# Filler ids that are never relevant.
_MISS = [f"miss{i}" for i in range(10)]


def _ranking(hits: dict[int, str], length: int = 10) -> list[str]:
    """A ranked list with `hits[position]` (1-based) and misses elsewhere."""
    return [hits.get(p, _MISS[p - 1]) for p in range(1, length + 1)]


def _brute_force_rank(queries, database, k):
    """Double loop: score every pair, sort by (-score, index)."""
    indices, scores = [], []
    for q in queries:
        pairs = []
        for j, d in enumerate(database):
            pairs.append((-float(np.dot(q, d)), j))
        pairs.sort()
        indices.append([j for _, j in pairs[:k]])
        scores.append([-s for s, _ in pairs[:k]])
    return np.array(indices), np.array(scores)


class AveragePrecisionTest(parameterized.TestCase):

    # AP@7 = Σ precision@i over hit positions i <= 7, then divided by
    #   "hits": the number of hits in the top 7,
    #   "min_relevant": min(|relevant|, 7).
    @parameterized.named_parameters(
        # One relevant id, the beau_tf case: both conventions give 1 / rank.
        # Hit at 1: P@1 = 1/1 -> 1 / 1 = 1.
        ("one_relevant_hit_at_1", {1: "a"}, {"a"}, 1.0, 1.0),
        # Hit at 3: P@3 = 1/3 -> (1/3) / 1.
        ("one_relevant_hit_at_3", {3: "a"}, {"a"}, 1 / 3, 1 / 3),
        # Hit at 7: P@7 = 1/7 -> (1/7) / 1.
        ("one_relevant_hit_at_7", {7: "a"}, {"a"}, 1 / 7, 1 / 7),
        # Hit at 8 is past the cut-off: no hit in the top 7 -> 0.
        ("one_relevant_hit_at_8", {8: "a"}, {"a"}, 0.0, 0.0),
        # No hit at all -> 0 (hits: 0 hits gives 0, not 0/0).
        ("no_hit", {}, {"a"}, 0.0, 0.0),
        # Hits at 1, 3, 7 out of 3 relevant:
        #   P@1 + P@3 + P@7 = 1/1 + 2/3 + 3/7 = 44/21;
        #   hits: (44/21) / 3 = 44/63;
        #   min_relevant: (44/21) / min(3, 7) = 44/63.
        (
            "three_relevant_hits_at_1_3_7",
            {1: "a", 3: "b", 7: "c"},
            {"a", "b", "c"},
            44 / 63,
            44 / 63,
        ),
        # Same hits, but a 4th relevant id is never retrieved:
        #   hits: (44/21) / 3 = 44/63; min_relevant: (44/21) / 4 = 11/21.
        (
            "four_relevant_hits_at_1_3_7",
            {1: "a", 3: "b", 7: "c"},
            {"a", "b", "c", "d"},
            44 / 63,
            11 / 21,
        ),
        # 2 relevant, hits at 2 and 5: P@2 + P@5 = 1/2 + 2/5 = 9/10;
        #   hits: (9/10) / 2 = 9/20; min_relevant: (9/10) / 2 = 9/20.
        ("two_relevant_hits_at_2_5", {2: "a", 5: "b"}, {"a", "b"}, 0.45, 0.45),
        # 9 relevant, hits at 1 and 2 only: P@1 + P@2 = 1 + 1 = 2;
        #   hits: 2 / 2 = 1; min_relevant: 2 / min(9, 7) = 2/7.
        (
            "nine_relevant_hits_at_1_2",
            {1: "a", 2: "b"},
            set("abcdefghi"),
            1.0,
            2 / 7,
        ),
        # 2 relevant, hits at 3 and 9 (9 is past 7): P@3 = 1/3;
        #   hits: (1/3) / 1 = 1/3; min_relevant: (1/3) / 2 = 1/6.
        (
            "two_relevant_hits_at_3_9",
            {3: "a", 9: "b"},
            {"a", "b"},
            1 / 3,
            1 / 6,
        ),
    )
    def test_hand_computed_table(self, hits, relevant, want_hits, want_min):
        ranked = _ranking(hits)
        self.assertAlmostEqual(
            metrics.average_precision_at_k(ranked, relevant, 7, "hits"),
            want_hits,
        )
        self.assertAlmostEqual(
            metrics.average_precision_at_k(ranked, relevant, 7, "min_relevant"),
            want_min,
        )

    def test_repeated_id_counts_once(self):
        # "a" at 1 is a hit, "a" again at 2 is a miss, "b" at 3 is the second
        # hit: P@1 + P@3 = 1 + 2/3 = 5/3; over 2 hits or min(2, 7) = 5/6.
        ranked = ["a", "a", "b"]
        for convention in metrics.CONVENTIONS:
            self.assertAlmostEqual(
                metrics.average_precision_at_k(
                    ranked, {"a", "b"}, 7, convention
                ),
                5 / 6,
            )

    def test_short_list_and_small_k(self):
        # k = 2 cuts [miss, a, b] to [miss, a]: P@2 = 1/2;
        #   hits: (1/2) / 1; min_relevant: (1/2) / min(2, 2) = 1/4.
        ranked = ["x", "a", "b"]
        self.assertAlmostEqual(
            metrics.average_precision_at_k(ranked, {"a", "b"}, 2, "hits"),
            0.5,
        )
        self.assertAlmostEqual(
            metrics.average_precision_at_k(
                ranked, {"a", "b"}, 2, "min_relevant"
            ),
            0.25,
        )
        self.assertEqual(
            metrics.average_precision_at_k([], {"a"}, 7, "hits"), 0.0
        )

    def test_empty_relevant_set_scores_zero(self):
        for convention in metrics.CONVENTIONS:
            self.assertEqual(
                metrics.average_precision_at_k(["a"], set(), 7, convention),
                0.0,
            )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "k must be at least 1"):
            metrics.average_precision_at_k(["a"], {"a"}, 0, "hits")
        with self.assertRaisesRegex(ValueError, "Unknown AP convention 'map'"):
            metrics.average_precision_at_k(["a"], {"a"}, 7, "map")
        with self.assertRaisesRegex(TypeError, "sequence of ids"):
            metrics.average_precision_at_k("abc", {"a"}, 7, "hits")
        with self.assertRaisesRegex(TypeError, "set of ids"):
            metrics.average_precision_at_k(["a"], "a", 7, "hits")


class EvaluateRankingsTest(unittest.TestCase):

    def setUp(self):
        super().setUp()
        # query  group  relevant     hits at  AP hits        AP min_relevant
        # q1     shoes  {p1}         1        1              1
        # q2     shoes  {p2}         3        1/3            1/3
        # q3     bags   {p3}         -        0              0
        # q4     bags   {p4,p5,p6}   2, 4     (1/2+2/4)/2    (1/2+2/4)/3
        #                                     = 1/2          = 1/3
        self.ranked = [
            _ranking({1: "p1"}),
            _ranking({3: "p2"}),
            _ranking({}),
            _ranking({2: "p4", 4: "p5"}),
        ]
        self.relevant = [{"p1"}, {"p2"}, {"p3"}, {"p4", "p5", "p6"}]
        self.groups = ["shoes", "shoes", "bags", "bags"]

    def assert_metrics(self, got, want):
        self.assertEqual(set(got), set(want))
        self.assertEqual(got["num_queries"], want["num_queries"])
        for key in want:
            if key not in ("num_queries", "by_group"):
                self.assertAlmostEqual(got[key], want[key], msg=key)

    def test_overall_and_by_group(self):
        got = metrics.evaluate_rankings(
            self.ranked, self.relevant, self.groups, k=7
        )
        # mAP hits = (1 + 1/3 + 0 + 1/2) / 4 = 11/24;
        # mAP min_relevant = (1 + 1/3 + 0 + 1/3) / 4 = 5/12;
        # recall@1: only q1 -> 1/4; recall@7: q1, q2, q4 -> 3/4.
        overall = {
            "num_queries": 4,
            "map@7_hits": 11 / 24,
            "map@7_min_relevant": 5 / 12,
            "recall@1": 0.25,
            "recall@7": 0.75,
        }
        self.assert_metrics(
            {k: v for k, v in got.items() if k != "by_group"}, overall
        )
        self.assertEqual(list(got["by_group"]), ["bags", "shoes"])
        # shoes: hits (1 + 1/3) / 2 = 2/3, min_relevant the same;
        #   recall@1 1/2, recall@7 2/2.
        self.assert_metrics(
            got["by_group"]["shoes"],
            {
                "num_queries": 2,
                "map@7_hits": 2 / 3,
                "map@7_min_relevant": 2 / 3,
                "recall@1": 0.5,
                "recall@7": 1.0,
            },
        )
        # bags: hits (0 + 1/2) / 2 = 1/4, min_relevant (0 + 1/3) / 2 = 1/6;
        #   recall@1 0, recall@7 1/2.
        self.assert_metrics(
            got["by_group"]["bags"],
            {
                "num_queries": 2,
                "map@7_hits": 0.25,
                "map@7_min_relevant": 1 / 6,
                "recall@1": 0.0,
                "recall@7": 0.5,
            },
        )
        self.assertIsInstance(got["map@7_hits"], float)

    def test_k_names_the_keys(self):
        got = metrics.evaluate_rankings(self.ranked, self.relevant, k=3)
        # k = 3: q4's second hit (at 4) drops out: hits (1/2) / 1 = 1/2,
        # min_relevant (1/2) / 3 = 1/6; q2's hit at 3 stays.
        # mAP hits = (1 + 1/3 + 0 + 1/2) / 4 = 11/24;
        # mAP min_relevant = (1 + 1/3 + 0 + 1/6) / 4 = 3/8.
        self.assert_metrics(
            got,
            {
                "num_queries": 4,
                "map@3_hits": 11 / 24,
                "map@3_min_relevant": 3 / 8,
                "recall@1": 0.25,
                "recall@3": 0.75,
            },
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "4 ranked lists but 3"):
            metrics.evaluate_rankings(self.ranked, self.relevant[:3])
        with self.assertRaisesRegex(ValueError, "3 groups for 4 queries"):
            metrics.evaluate_rankings(
                self.ranked, self.relevant, self.groups[:3]
            )
        with self.assertRaisesRegex(ValueError, "empty"):
            metrics.evaluate_rankings([], [])
        with self.assertRaisesRegex(ValueError, "k must be at least 1"):
            metrics.evaluate_rankings(self.ranked, self.relevant, k=0)


class RankExactTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("top_k", 5, None),
        ("whole_database", 30, None),
        ("clipped_k", 99, None),
        ("one_query_per_block", 5, 30),
    )
    def test_matches_brute_force_with_ties(self, k, block_elements):
        # Small integer vectors: float32 products are exact, so many scores
        # tie and the lower index must win.
        rng = np.random.default_rng(0)
        queries = rng.integers(-1, 2, size=(6, 3)).astype(np.float32)
        database = rng.integers(-1, 2, size=(30, 3)).astype(np.float32)
        want_indices, want_scores = _brute_force_rank(queries, database, k)
        with mock.patch.object(
            metrics,
            "_SCORE_BLOCK_ELEMENTS",
            block_elements or metrics._SCORE_BLOCK_ELEMENTS,
        ):
            indices, scores = metrics.rank_exact(queries, database, k)
        self.assertEqual(indices.shape, (6, min(k, 30)))
        self.assertEqual(indices.dtype, np.int64)
        self.assertEqual(scores.dtype, np.float32)
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_array_equal(scores, want_scores)

    @parameterized.parameters(1, 4, 7, 30)
    def test_database_slices_keep_the_top_k_and_its_ties(self, k):
        # Two queries at a time against slices of 7 rows (30 = 2 x 15):
        # every slice's top-k is merged with the best so far.
        rng = np.random.default_rng(3)
        queries = rng.integers(-1, 2, size=(5, 3)).astype(np.float32)
        database = rng.integers(-1, 2, size=(30, 3)).astype(np.float32)
        want_indices, want_scores = _brute_force_rank(queries, database, k)
        with mock.patch.multiple(
            metrics, _SCORE_BLOCK_ELEMENTS=14, _MIN_QUERY_BLOCK=2
        ):
            indices, scores = metrics.rank_exact(queries, database, k)
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_array_equal(scores, want_scores)

    def test_all_finite_checks_every_slice(self):
        database = np.ones((10, 2), np.float32)
        with mock.patch.object(metrics, "_FINITE_CHECK_ROWS", 3):
            self.assertTrue(metrics.all_finite(database))
            database[9, 1] = np.inf  # in the last, partial slice
            self.assertFalse(metrics.all_finite(database))

    def test_every_k_with_heavy_ties(self):
        # Only 4 distinct vectors in 0/1 x 0/1, so most places are ties.
        rng = np.random.default_rng(2)
        queries = rng.integers(0, 2, size=(8, 2)).astype(np.float32)
        database = rng.integers(0, 2, size=(12, 2)).astype(np.float32)
        for k in range(1, 13):
            want_indices, _ = _brute_force_rank(queries, database, k)
            indices, _ = metrics.rank_exact(queries, database, k)
            np.testing.assert_array_equal(indices, want_indices, err_msg=k)

    def test_ties_go_to_lower_index(self):
        database = np.array([[0, 1], [1, 0], [1, 0], [0, 1], [1, 0]], "f4")
        indices, scores = metrics.rank_exact([[1.0, 0.0]], database, 4)
        np.testing.assert_array_equal(indices, [[1, 2, 4, 0]])
        np.testing.assert_array_equal(scores, [[1, 1, 1, 0]])

    def test_is_the_argsort_oracle_on_unit_vectors(self):
        # The catalogue index's ground truth: random unit vectors, no ties.
        rng = np.random.default_rng(5)
        database, queries = (
            x / np.linalg.norm(x, axis=1, keepdims=True)
            for x in rng.standard_normal((2, 300, 32)).astype(np.float32)
        )
        queries = queries[:7]
        want = np.argsort(-(queries @ database.T), axis=1)[:, :10]
        indices, _ = metrics.rank_exact(queries, database, 10)
        np.testing.assert_array_equal(indices, want)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, r"\(2, 3\).*\(4, 5\)"):
            metrics.rank_exact(np.zeros((2, 3)), np.zeros((4, 5)), 1)
        with self.assertRaisesRegex(ValueError, r"2-D.*\(3,\)"):
            metrics.rank_exact(np.zeros(3), np.zeros((4, 3)), 1)
        with self.assertRaisesRegex(ValueError, "k must be at least 1"):
            metrics.rank_exact(np.zeros((2, 3)), np.zeros((4, 3)), 0)
        with self.assertRaisesRegex(ValueError, "database .* NaN"):
            metrics.rank_exact(np.zeros((2, 3)), np.full((4, 3), np.nan), 1)


class RecallAgainstExactTest(unittest.TestCase):

    def test_simple_cases(self):
        exact = np.array([[0, 1, 2], [0, 1, 2]])
        # Order does not matter: {2, 1, 0} ∩ {0, 1, 2} = 3 of 3.
        self.assertEqual(
            metrics.recall_against_exact([[2, 1, 0], [1, 0, 2]], exact, 3),
            1.0,
        )
        # Row 1: {0} of 3; row 2: {} of 3 -> (1/3 + 0) / 2 = 1/6.
        self.assertAlmostEqual(
            metrics.recall_against_exact([[0, 5, 6], [7, 8, 9]], exact, 3),
            1 / 6,
        )
        # k = 2 compares only the first two columns:
        # row 1 {0, 5} vs {0, 1}: 1/2; row 2 {1, 0} vs {0, 1}: 2/2 -> 3/4.
        self.assertAlmostEqual(
            metrics.recall_against_exact([[0, 5, 1], [1, 0, 9]], exact, 2),
            0.75,
        )
        # Hits anywhere in the row count: {3, 2} of 3, then {4} of 3.
        self.assertAlmostEqual(
            metrics.recall_against_exact(
                np.array([[1, 2, 3], [4, 5, 6]]),
                np.array([[3, 2, 9], [7, 8, 4]]),
                3,
            ),
            3 / 6,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "different numbers of queries"):
            metrics.recall_against_exact(np.zeros((2, 3)), np.zeros((3, 3)), 3)
        with self.assertRaisesRegex(ValueError, r"\(2, 2\), fewer than k=3"):
            metrics.recall_against_exact(np.zeros((2, 2)), np.zeros((2, 3)), 3)
        with self.assertRaisesRegex(ValueError, "k must be at least 1"):
            metrics.recall_against_exact(np.zeros((2, 3)), np.zeros((2, 3)), 0)


class QueryExpansionTest(unittest.TestCase):

    def setUp(self):
        super().setUp()
        self.query = np.array([[1.0, 0.0]], np.float32)
        # Scores against q = (1, 0): 0.6, 0.8, 0.
        self.database = np.array([[0.6, 0.8], [0.8, -0.6], [0.0, 1.0]], "f4")

    def test_matches_formula_by_hand(self):
        # k = 2 neighbours: d1 (s = 0.8), d0 (s = 0.6); alpha = 2:
        # q + 0.8^2 d1 + 0.6^2 d0
        #   = (1, 0) + 0.64 (0.8, -0.6) + 0.36 (0.6, 0.8)
        #   = (1 + 0.512 + 0.216, -0.384 + 0.288) = (1.728, -0.096).
        got = metrics.alpha_query_expansion(
            self.query, self.database, k=2, alpha=2.0
        )
        want = np.array([[1.728, -0.096]]) / np.hypot(1.728, -0.096)
        self.assertEqual(got.dtype, np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, rtol=1e-6)

    def test_degenerate_settings_return_the_query(self):
        # k = 0: no neighbours, q / |q|.
        unnormalised = 3 * self.query
        np.testing.assert_allclose(
            metrics.alpha_query_expansion(unnormalised, self.database, k=0),
            self.query,
        )
        # alpha = 1000: 0.8^1000 ~ 1e-97, so only q is left.
        np.testing.assert_allclose(
            metrics.alpha_query_expansion(
                self.query, self.database, k=2, alpha=1000.0
            ),
            self.query,
            atol=1e-7,
        )

    def test_negative_scores_get_no_weight(self):
        # d = (-1, 0) scores -1; with alpha = 2, (-1)^2 would add +1 · d and
        # cancel q; max(-1, 0)^2 = 0 leaves q.
        database = np.array([[-1.0, 0.0]], np.float32)
        np.testing.assert_allclose(
            metrics.alpha_query_expansion(self.query, database, k=1, alpha=2.0),
            self.query,
        )

    def test_unit_norm_on_random_data(self):
        rng = np.random.default_rng(1)
        queries = rng.normal(size=(5, 8))
        database = rng.normal(size=(20, 8))
        database /= np.linalg.norm(database, axis=1, keepdims=True)
        got = metrics.alpha_query_expansion(queries, database, k=3)
        self.assertEqual(got.shape, (5, 8))
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, rtol=1e-6)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "k must be at least 0"):
            metrics.alpha_query_expansion(self.query, self.database, k=-1)
        with self.assertRaisesRegex(ValueError, "alpha must be"):
            metrics.alpha_query_expansion(self.query, self.database, alpha=-1.0)
        with self.assertRaisesRegex(ValueError, r"\(1, 2\).*\(3, 3\)"):
            metrics.alpha_query_expansion(self.query, np.zeros((3, 3)))


class DatabaseSideAugmentationTest(unittest.TestCase):

    def test_matches_formula_by_hand(self):
        database = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)
        # Pairwise scores: d0·d1 = 0.6, d0·d2 = 0, d1·d2 = 0.8.
        # k = 1, alpha = 1:
        # d0' ∝ d0 + 0.6 d1 = (1 + 0.36, 0.48) = (1.36, 0.48)
        # d1' ∝ d1 + 0.8 d2 = (0.6, 0.8 + 0.8) = (0.6, 1.6)
        # d2' ∝ d2 + 0.8 d1 = (0.48, 1 + 0.64) = (0.48, 1.64)
        want = np.array([[1.36, 0.48], [0.6, 1.6], [0.48, 1.64]])
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        got = metrics.database_side_augmentation(database, k=1, alpha=1.0)
        self.assertEqual(got.dtype, np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, rtol=1e-6)

    def test_excludes_itself_even_behind_a_duplicate(self):
        # d0 = d1 = d2: for d2 the top 2 by score are d0 and d1 (lower index
        # wins the tie), so d2 is not among them; each row still gets one
        # other neighbour with weight 1^alpha = 1: (2, 0) / 2 = (1, 0).
        # d3 = (0, 1) scores 0 with all, weight 0^3 = 0, stays (0, 1).
        database = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)
        got = metrics.database_side_augmentation(database, k=1)
        np.testing.assert_allclose(got, database, atol=1e-7)

    def test_degenerate_settings(self):
        database = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
        normalised = database / np.linalg.norm(database, axis=1, keepdims=True)
        # k = 0: renormalised only.
        np.testing.assert_allclose(
            metrics.database_side_augmentation(database, k=0), normalised
        )
        # alpha = 1000: unit vectors score (0.6, 0.8)·(0, 1) = 0.8 and
        # 0.8^1000 ~ 1e-97, so neighbours vanish.
        np.testing.assert_allclose(
            metrics.database_side_augmentation(normalised, k=5, alpha=1000.0),
            normalised,
            atol=1e-7,
        )
        # A single item has no neighbours.
        np.testing.assert_allclose(
            metrics.database_side_augmentation(database[:1], k=3),
            normalised[:1],
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "k must be at least 0"):
            metrics.database_side_augmentation(np.eye(2), k=-1)
        with self.assertRaisesRegex(ValueError, r"2-D.*\(2,\)"):
            metrics.database_side_augmentation(np.ones(2))


class PairedBootstrapIntervalTest(unittest.TestCase):

    def test_equal_differences_give_a_point(self):
        low, high = metrics.paired_bootstrap_interval(np.full(30, 0.25))
        self.assertAlmostEqual(low, 0.25)
        self.assertAlmostEqual(high, 0.25)

    def test_interval_matches_the_normal_approximation(self):
        # 400 draws, mean 0.1, sd 1: the mean's 95 % interval is about
        # mean ± 1.96 / sqrt(400) = ± 0.098 around the sample mean.
        differences = np.random.default_rng(1).normal(0.1, 1.0, 400)
        low, high = metrics.paired_bootstrap_interval(
            differences, resamples=4000
        )
        half = 1.96 * differences.std() / np.sqrt(differences.size)
        self.assertAlmostEqual(low, differences.mean() - half, delta=0.015)
        self.assertAlmostEqual(high, differences.mean() + half, delta=0.015)

    def test_wider_for_more_confidence_and_repeatable(self):
        differences = np.random.default_rng(2).normal(0.0, 1.0, 100)
        narrow = metrics.paired_bootstrap_interval(differences, 0.5)
        wide = metrics.paired_bootstrap_interval(differences, 0.99)
        self.assertLess(wide[0], narrow[0])
        self.assertGreater(wide[1], narrow[1])
        self.assertEqual(
            metrics.paired_bootstrap_interval(differences, 0.99, seed=0), wide
        )

    def test_blocks_give_the_same_as_one_draw(self):
        # 2**22 // 2**17 = 32 resamples per block: 100 resamples take 4.
        differences = np.random.default_rng(3).normal(0.0, 1.0, 2**17)
        rng = np.random.default_rng(0)
        means = [
            differences[rng.integers(0, 2**17, (count, 2**17))].mean(axis=1)
            for count in (32, 32, 32, 4)
        ]
        want = np.percentile(np.concatenate(means), [2.5, 97.5])
        np.testing.assert_allclose(
            metrics.paired_bootstrap_interval(differences, resamples=100), want
        )

    def test_bad_input_is_refused(self):
        for differences, confidence, resamples, message in [
            ([], 0.95, 10, "non-empty"),
            ([[0.1]], 0.95, 10, "non-empty"),
            ([0.1, np.nan], 0.95, 10, "NaN"),
            ([0.1], 1.0, 10, "confidence"),
            ([0.1], 0.95, 0, "resamples"),
        ]:
            with self.assertRaisesRegex(ValueError, message):
                metrics.paired_bootstrap_interval(
                    differences, confidence, resamples
                )


class FormatTableTest(unittest.TestCase):

    def setUp(self):
        super().setUp()
        self.rows = [
            {"model": "r50", "map@7_hits": 0.41234, "num_queries": 120},
            {"model": "effnet|b0", "map@7_hits": 0.5, "num_queries": 8},
            {"model": "vit", "num_queries": None},
        ]
        self.columns = ["model", "map@7_hits", "num_queries"]

    def test_plain_text(self):
        want = "\n".join(
            [
                "model      map@7_hits  num_queries",
                "---------  ----------  -----------",
                "r50            0.4123          120",
                "effnet|b0      0.5000            8",
                "vit                 -            -",
            ]
        )
        self.assertEqual(metrics.format_table(self.rows, self.columns), want)

    def test_markdown(self):
        want = "\n".join(
            [
                "| model      | map@7_hits | num_queries |",
                "| ---------- | ---------: | ----------: |",
                "| r50        |     0.4123 |         120 |",
                "| effnet\\|b0 |     0.5000 |           8 |",
                "| vit        |          - |           - |",
            ]
        )
        self.assertEqual(
            metrics.format_table(self.rows, self.columns, markdown=True),
            want,
        )

    def test_float_format_and_empty_columns(self):
        table = metrics.format_table([{"x": 0.5}], ["x"], float_format=".1%")
        self.assertEqual(table.splitlines()[-1], "50.0%")
        with self.assertRaisesRegex(ValueError, "at least one column"):
            metrics.format_table(self.rows, [])


if __name__ == "__main__":
    unittest.main()
