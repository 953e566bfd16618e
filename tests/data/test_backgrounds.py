"""Tests for beau_tf.data.backgrounds: background photos decoded once, bad
files skipped by name."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.data import backgrounds as backgrounds_lib
from tests.fixtures import images
from tests.fixtures import testing


class LoadBackgroundsTest(parameterized.TestCase):

    def test_photos_are_fitted_and_bad_files_skipped(self):
        root = testing.make_tempdir(self)
        os.makedirs(os.path.join(root, "shelf"))
        images.save(
            os.path.join(root, "shelf", "wide.jpg"),
            np.full((30, 90, 3), 90, np.uint8),
        )
        images.save(
            os.path.join(root, "tall.png"), np.full((80, 40, 3), 20, np.uint8)
        )
        images.write_bytes(os.path.join(root, "empty.jpg"), b"")
        with self.assertLogs(level="WARNING") as logs:
            photos, report = backgrounds_lib.load_backgrounds(root, 24)
        self.assertEqual(photos.shape, (2, 24, 24, 3))
        self.assertEqual(report.counts(), {"undecodable": 1})
        self.assertTrue(any("empty.jpg" in line for line in logs.output))

    def test_a_csv_of_paths_picks_the_photos(self):
        root = testing.make_tempdir(self)
        for name, value in [("kept.png", 50), ("left_out.png", 200)]:
            images.save(
                os.path.join(root, name), np.full((16, 16, 3), value, np.uint8)
            )
        listing = os.path.join(root, "backgrounds.csv")
        with open(listing, "w") as stream:
            stream.write("path\nkept.png\n")
        photos, _ = backgrounds_lib.load_backgrounds(listing, 16)
        self.assertEqual(photos.shape, (1, 16, 16, 3))
        self.assertEqual(int(photos.mean()), 50)

    def test_max_count_takes_a_seeded_subset(self):
        root = testing.make_tempdir(self)
        for i in range(5):
            images.save(
                os.path.join(root, f"{i}.png"),
                np.full((16, 16, 3), i * 40, np.uint8),
            )
        first, _ = backgrounds_lib.load_backgrounds(
            root, 16, max_count=2, seed=3
        )
        again, _ = backgrounds_lib.load_backgrounds(
            root, 16, max_count=2, seed=3
        )
        self.assertEqual(first.shape[0], 2)
        np.testing.assert_array_equal(first, again)

    def test_folder_without_images_is_a_clear_error(self):
        root = testing.make_tempdir(self)
        images.write_bytes(os.path.join(root, "broken.png"), b"")
        with self.assertRaisesRegex(ValueError, "No usable background image"):
            backgrounds_lib.load_backgrounds(root, 16)

    def test_load_photos_names_the_photos_it_kept_in_order(self):
        root = testing.make_tempdir(self)
        paths = [os.path.join(root, f"{name}.png") for name in "abc"]
        for i, path in enumerate(paths):
            images.save(path, np.full((16, 20, 3), 60 * i, np.uint8))
        images.write_bytes(paths[1], b"")
        with self.assertLogs(level="WARNING"):
            photos, kept, report = backgrounds_lib.load_photos(paths, 8)
        self.assertEqual(kept, [paths[0], paths[2]])
        self.assertEqual(photos.shape, (2, 8, 8, 3))
        self.assertEqual([int(p.mean()) for p in photos], [0, 120])
        self.assertEqual(report.counts(), {"undecodable": 1})
        # Nothing usable is an empty array, for the caller to judge.
        empty, kept, _ = backgrounds_lib.load_photos([], 8)
        self.assertEqual((empty.shape, kept), ((0, 8, 8, 3), []))


if __name__ == "__main__":
    absltest.main()
