"""Tests for bench.errors: where retrieval errors and teacher targets go,
on hand-made rankings and targets."""

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np

from beau_tf.training import photo_targets
from bench import errors

# Two apples and a carton: "gala" and "granny" share the coarse class.
COARSE = {
    "gala": ("apple", "fruit_vegetables"),
    "granny": ("apple", "fruit_vegetables"),
    "milk": ("milk", "packages"),
}
ITEM_IDS = np.array(["gala", "granny", "milk"])


class ConfusionsTest(absltest.TestCase):

    def test_same_coarse_class_compares_each_prediction_with_its_photo(self):
        np.testing.assert_array_equal(
            errors.same_coarse_class(
                np.array(["granny", "milk", "gala"]),
                np.array(["gala", "gala", "gala"]),
                COARSE,
            ),
            [True, False, True],
        )

    def test_most_frequent_confusions_counts_pairs_commonest_first(self):
        self.assertEqual(
            errors.most_frequent_confusions(
                np.array(["milk", "granny", "milk", "gala"]),
                np.array(["gala", "gala", "gala", "milk"]),
                shown=2,
            ),
            "gala -> milk ×2; gala -> granny ×1",
        )
        self.assertEqual(
            errors.most_frequent_confusions(np.array([]), np.array([]), 3), ""
        )


class ErrorRowsTest(absltest.TestCase):

    def test_counts_errors_of_the_same_kind_and_those_the_reference_made(self):
        true_ids = np.array(["gala", "gala", "granny", "milk"])
        ranked = {
            # Wrong on photo 0 (milk) and photo 2 (gala).
            "teacher": np.array([["milk"], ["gala"], ["gala"], ["milk"]]),
            # Wrong on photos 0 and 2 as the teacher, and on 1 and 3 alone.
            "student": np.array([["milk"], ["granny"], ["gala"], ["gala"]]),
        }
        members = {
            "all": np.ones(4, bool),
            "packages": np.array([False, False, False, True]),
        }
        rows = errors.error_rows(ranked, true_ids, "val", members, COARSE)
        by_name = {(r["export"], r["group"]): r for r in rows}
        teacher = by_name["teacher", "all"]
        self.assertEqual(teacher["top-1 errors"], 2)
        self.assertAlmostEqual(teacher["share within the coarse class"], 0.5)
        self.assertNotIn("share the reference's error", teacher)
        student = by_name["student", "all"]
        self.assertEqual(student["top-1 errors"], 4)
        self.assertAlmostEqual(student["share within the coarse class"], 0.5)
        self.assertAlmostEqual(student["share the reference's error"], 0.5)
        packages = by_name["student", "packages"]
        self.assertEqual(packages["top-1 errors"], 1)
        self.assertEqual(packages["share the reference's error"], 0.0)
        self.assertEqual(packages["most frequent"], "milk -> gala ×1")


class TargetRowsTest(absltest.TestCase):

    def test_counts_right_top_k_and_confusions_of_the_same_kind(self):
        # Photo 0 (gala) right; photo 1 (granny) taken for gala, another
        # apple; photo 2 (gala) taken for milk; photo 3 (milk) right.
        targets = np.array(
            [
                [0.8, 0.1, 0.1],
                [0.6, 0.3, 0.1],
                [0.2, 0.1, 0.7],
                [0.0, 0.1, 0.9],
            ]
        )
        true_ids = np.array(["gala", "granny", "gala", "milk"])
        rows = {
            row["group"]: row
            for row in errors.target_rows(targets, true_ids, ITEM_IDS, COARSE)
        }
        self.assertEqual(list(rows), ["all", "fruit_vegetables", "packages"])
        every = rows["all"]
        self.assertEqual(every["photos"], 4)
        self.assertAlmostEqual(every["top target right"], 0.5)
        self.assertAlmostEqual(every["top 5 hold it"], 1.0)
        self.assertAlmostEqual(every["wrong, same kind"], 0.5)
        self.assertAlmostEqual(every["mean top target: right"], 0.85)
        self.assertAlmostEqual(every["mean top target: wrong"], 0.65)
        fruit = rows["fruit_vegetables"]
        self.assertAlmostEqual(fruit["top target right"], 1 / 3)
        self.assertEqual(
            fruit["most frequent"], "granny -> gala ×1; gala -> milk ×1"
        )
        packages = rows["packages"]
        self.assertAlmostEqual(packages["top target right"], 1.0)
        self.assertEqual(packages["wrong, same kind"], 0.0)
        self.assertTrue(np.isnan(packages["mean top target: wrong"]))
        self.assertEqual(packages["most frequent"], "")


class ReadTargetsTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        temporary = tempfile.TemporaryDirectory()
        self.addCleanup(temporary.cleanup)
        self.folder = temporary.name
        self.catalogue = os.path.join(self.folder, "catalog.csv")
        with open(self.catalogue, "w") as stream:
            stream.write("item_id,path\n")
            for item in ITEM_IDS:
                image = os.path.join(self.folder, f"{item}.png")
                open(image, "wb").close()
                stream.write(f"{item},{image}\n")
        self.run_dir = os.path.join(self.folder, "run")
        os.makedirs(self.run_dir)

    def write_targets(self, targets):
        np.savez(
            os.path.join(self.run_dir, photo_targets.TARGETS_FILE),
            targets=targets,
            paths=np.array([f"p{i}.jpg" for i in range(len(targets))]),
            teacher=np.array("teachers/1"),
        )

    def test_per_view_targets_are_read_as_their_views_mean(self):
        self.write_targets(
            np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)
        )
        run = errors.read_targets(self.run_dir, self.catalogue)
        np.testing.assert_allclose(run.targets, [[0.5, 0.0, 0.5]])
        self.assertEqual(run.paths, ["p0.jpg"])
        np.testing.assert_array_equal(run.item_ids, ITEM_IDS)
        self.assertEqual(run.teacher, "teachers/1")

    def test_targets_over_another_catalogue_size_are_refused(self):
        self.write_targets(np.full((2, 4), 0.25, np.float32))
        with self.assertRaisesRegex(ValueError, "4 products.*lists 3"):
            errors.read_targets(self.run_dir, self.catalogue)

    def test_a_run_trained_on_another_catalogue_is_refused(self):
        self.write_targets(np.full((2, 3), 1 / 3, np.float32))
        with open(os.path.join(self.run_dir, "train_config.json"), "w") as f:
            json.dump({"catalog": "/elsewhere/catalog.csv"}, f)
        with self.assertRaisesRegex(ValueError, "/elsewhere/catalog.csv"):
            errors.read_targets(self.run_dir, self.catalogue)

    def test_a_folder_without_targets_says_what_it_must_be(self):
        with self.assertRaisesRegex(FileNotFoundError, "distillation run"):
            errors.read_targets(self.run_dir, self.catalogue)


if __name__ == "__main__":
    absltest.main()
