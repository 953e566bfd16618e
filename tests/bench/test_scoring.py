"""Tests for bench.scoring's exact-search scores, on hand-made embeddings."""

import os
import tempfile

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


class PairedDifferencesTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        # Four photos, two groups; "other" ranks photo 1 higher, photo 3
        # lower and ties the rest.
        self.aps = {
            "reference": np.array([1.0, 0.5, 0.0, 1.0]),
            "other": np.array([1.0, 1.0, 0.0, 0.5]),
        }
        self.coarse = {
            "a": ("Apple", "fruit_vegetables"),
            "b": ("Milk", "packages"),
        }
        self.members = scoring.photo_groups(
            np.array(["a", "a", "b", "b"]), self.coarse
        )

    def test_groups_are_all_photos_then_each_group(self):
        self.assertEqual(
            list(self.members), [scoring.ALL, "fruit_vegetables", "packages"]
        )
        np.testing.assert_array_equal(
            self.members["packages"], [False, False, True, True]
        )

    def test_rows_give_each_difference_from_the_first(self):
        rows = scoring.difference_rows(
            self.aps,
            "val",
            self.members,
            dict(confidence=0.95, resamples=200, seed=0),
            name_column="pooling",
        )
        by_name = {(r["pooling"], r["group"]): r for r in rows}
        self.assertLen(rows, 6)
        self.assertNotIn("difference", by_name["reference", scoring.ALL])
        everything = by_name["other", scoring.ALL]
        self.assertAlmostEqual(everything["MAP@7"], 0.625)
        self.assertAlmostEqual(everything["difference"], 0.0)
        self.assertEqual(
            (everything["photos up"], everything["photos down"]), (1, 1)
        )
        self.assertLessEqual(everything["interval low"], 0.0)
        self.assertGreaterEqual(everything["interval high"], 0.0)
        fruit = by_name["other", "fruit_vegetables"]
        self.assertAlmostEqual(fruit["difference"], 0.25)
        self.assertEqual(fruit["photos"], 2)
        self.assertEqual(by_name["other", "packages"]["difference"], -0.25)

    def test_read_coarse_names_the_file_it_cannot_read(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "coarse.csv")
            with open(path, "w") as stream:
                stream.write("item_id,group\n1,fruit\n")
            with self.assertRaisesRegex(ValueError, "coarse.csv: a CSV"):
                scoring.read_coarse(path)


if __name__ == "__main__":
    absltest.main()
