"""Tests for bench.scoring's exact-search scores, on hand-made embeddings."""

from absl.testing import absltest
import numpy as np

from bench import scoring


class ScoringTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        # Ten catalogue products along the axes of a 10-d space, ids 100-109.
        self.catalogue = np.eye(10, dtype=np.float32)
        self.catalogue_ids = np.arange(100, 110)
        # Photo 0 is product 100; photo 1 sits nearest product 101, then 102;
        # photo 2 is nearest products 103..109 in turn, its own (100) last.
        self.queries = np.zeros((3, 10), np.float32)
        self.queries[0, 0] = 1.0
        self.queries[1, [1, 2]] = [1.0, 0.9]
        self.queries[2] = [0.0, 0.0, 0.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
        self.true_ids = np.array([100, 102, 100])

    def test_ranked_ids_are_catalogue_ids_best_first(self):
        ranked = scoring.ranked_ids(
            self.queries, self.catalogue, self.catalogue_ids
        )
        self.assertEqual(ranked.shape, (3, scoring.K))
        np.testing.assert_array_equal(ranked[0, :1], [100])
        np.testing.assert_array_equal(ranked[1, :2], [101, 102])
        np.testing.assert_array_equal(ranked[2], np.arange(103, 110))

    def test_average_precision_is_one_over_the_rank(self):
        ranked = scoring.ranked_ids(
            self.queries, self.catalogue, self.catalogue_ids
        )
        np.testing.assert_allclose(
            scoring.average_precisions(ranked, self.true_ids), [1.0, 0.5, 0.0]
        )
        self.assertAlmostEqual(
            scoring.map_at_k(
                self.queries, self.true_ids, self.catalogue, self.catalogue_ids
            ),
            0.5,
        )


if __name__ == "__main__":
    absltest.main()
