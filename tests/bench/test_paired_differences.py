"""Tests for bench.paired_differences' tables, on hand-made AP@7s."""

from absl.testing import absltest
import numpy as np

from bench import paired_differences


class RecipeTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        # Two seeds of each of two recipes over four photos.
        self.aps = {
            "gap_s0": np.array([1.0, 0.5, 0.0, 0.0]),
            "gap_s1": np.array([1.0, 0.0, 0.0, 0.5]),
            "paper_s0": np.array([1.0, 1.0, 0.5, 0.0]),
            "paper_s1": np.array([1.0, 0.5, 1.0, 0.5]),
        }

    def test_a_recipe_is_the_mean_of_its_runs(self):
        recipes = paired_differences.recipe_aps(self.aps, 2)
        self.assertEqual(list(recipes), ["gap_s0+gap_s1", "paper_s0+paper_s1"])
        np.testing.assert_allclose(
            recipes["gap_s0+gap_s1"], [1.0, 0.25, 0.0, 0.25]
        )
        np.testing.assert_allclose(
            recipes["paper_s0+paper_s1"], [1.0, 0.75, 0.75, 0.25]
        )

    def test_one_run_per_recipe_keeps_each_run(self):
        recipes = paired_differences.recipe_aps(self.aps, 1)
        self.assertEqual(list(recipes), list(self.aps))
        for name, aps in self.aps.items():
            np.testing.assert_array_equal(recipes[name], aps)

    def test_the_difference_is_the_seed_averaged_one(self):
        rows = paired_differences.difference_rows(
            paired_differences.recipe_aps(self.aps, 2),
            "val",
            {paired_differences.ALL: np.ones(4, bool)},
            dict(confidence=0.95, resamples=200, seed=0),
        )
        reference, other = rows
        self.assertNotIn("difference", reference)
        self.assertAlmostEqual(reference["MAP@7"], 0.375)
        self.assertAlmostEqual(other["MAP@7"], 0.6875)
        # Per photo: 0, +0.5, +0.75, 0; the mean of the two seeds'
        # differences, (0.375 + 0.25) / 2.
        self.assertAlmostEqual(other["difference"], 0.3125)
        self.assertEqual((other["photos up"], other["photos down"]), (2, 0))
        self.assertLessEqual(other["interval low"], other["difference"])
        self.assertGreaterEqual(other["interval high"], other["difference"])


if __name__ == "__main__":
    absltest.main()
