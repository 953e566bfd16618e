"""Tests for bench.scoring.recipe_aps, on hand-made AP@7s."""

from absl.testing import absltest
import numpy as np

from bench import scoring


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
        recipes = scoring.recipe_aps(self.aps, 2)
        self.assertEqual(list(recipes), ["gap_s0+gap_s1", "paper_s0+paper_s1"])
        np.testing.assert_allclose(
            recipes["gap_s0+gap_s1"], [1.0, 0.25, 0.0, 0.25]
        )
        np.testing.assert_allclose(
            recipes["paper_s0+paper_s1"], [1.0, 0.75, 0.75, 0.25]
        )

    def test_one_run_per_recipe_keeps_each_run(self):
        recipes = scoring.recipe_aps(self.aps, 1)
        self.assertEqual(list(recipes), list(self.aps))
        for name, aps in self.aps.items():
            np.testing.assert_array_equal(recipes[name], aps)


if __name__ == "__main__":
    absltest.main()
