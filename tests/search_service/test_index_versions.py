"""Tests for beau_tf.search_service.index_versions: hot swap of index versions."""

import json
import os
import shutil
import time

from absl.testing import absltest

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.search_service import index_versions
from tests.fixtures import fakes
from tests.fixtures import testing


def check_fake_model(bundle):
    bundle.index.check_compatible(fakes.identity())


class CountingLoader:
    def __init__(self):
        self.loaded = []

    def __call__(self, folder):
        self.loaded.append(os.path.basename(folder))
        return index_dir_lib.load_index(folder)


class IndexVersionsTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.root = testing.make_tempdir(self)
        self.base = os.path.join(self.root, "indexes")
        self.catalogue = os.path.join(self.root, "catalogue")

    def add_version(self, version, model_identity=None, count=fakes.NUM_ITEMS):
        folder = os.path.join(self.base, str(version))
        fakes.write_index(folder, self.catalogue, model_identity, count)
        return folder

    def test_a_lone_index_folder_is_served_without_a_version(self):
        folder = self.add_version(1)
        versions = index_versions.IndexVersions(folder, check_fake_model)
        served = versions.load_initial()
        self.assertIsNone(served.version)
        self.assertEqual(served.bundle.directory, folder)
        self.assertFalse(versions.poll())
        self.assertEqual(
            served.summary(),
            {
                "version": None,
                "directory": os.path.basename(folder),
                "items": fakes.NUM_ITEMS,
            },
        )

    def test_the_highest_version_is_served_and_a_newer_one_swapped_in(self):
        self.add_version(1)
        self.add_version(2, count=5)
        os.makedirs(os.path.join(self.base, ".3.tmp-abc"))  # staging
        os.makedirs(os.path.join(self.base, "4"))  # no manifest yet
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        self.assertEqual(versions.load_initial().version, 2)
        self.assertFalse(versions.poll())
        self.add_version(5, count=7)
        self.assertTrue(versions.poll())
        self.assertEqual(versions.current.version, 5)
        self.assertEqual(versions.current.bundle.index.num_items, 7)

    def test_polling_thread_swaps_in_a_new_version(self):
        self.add_version(1)
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        versions.load_initial()
        versions.start_polling(0.05)
        self.addCleanup(versions.stop)
        self.add_version(2)
        deadline = time.monotonic() + 10
        while versions.current.version != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(versions.current.version, 2)

    def test_an_index_of_another_model_is_refused_once_and_old_one_serves(self):
        self.add_version(1)
        loader = CountingLoader()
        versions = index_versions.IndexVersions(
            self.base, check_fake_model, loader
        )
        versions.load_initial()
        self.add_version(2, fakes.identity(version=2))
        with self.assertLogs(level="ERROR") as logs:
            self.assertFalse(versions.poll())
        self.assertIn("Refused index version 2", logs.output[0])
        self.assertIn("model_version", logs.output[0])
        self.assertEqual(versions.current.version, 1)
        self.assertFalse(versions.poll())  # unchanged: not loaded again
        self.assertEqual(loader.loaded, ["1", "2"])

    def test_a_corrupt_version_is_refused_then_retried_once_repaired(self):
        self.add_version(1)
        folder = self.add_version(2)
        embeddings = os.path.join(folder, index_dir_lib.EMBEDDINGS_FILE)
        with open(embeddings, "rb") as stream:
            intact = stream.read()
        with open(embeddings, "wb") as stream:
            stream.write(intact[:-4] + b"\x00\x00\x80\x7f")  # a flipped value
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        with self.assertLogs(level="ERROR"):
            self.assertEqual(versions.load_initial().version, 1)
        with open(embeddings, "wb") as stream:  # the copy finished
            stream.write(intact)
        self.assertTrue(versions.poll())
        self.assertEqual(versions.current.version, 2)

    def test_a_manifest_without_model_identity_is_refused_once(self):
        # Issue 21, finding 9: it escaped the loader's error handling, was
        # re-hashed on every poll and ended the service at start-up.
        self.add_version(1)
        self.add_version(2)
        manifest_path = os.path.join(
            self.base, "2", index_dir_lib.MANIFEST_FILE
        )
        with open(manifest_path) as stream:
            manifest = json.load(stream)
        del manifest["model_identity"]
        with open(manifest_path, "w") as stream:
            json.dump(manifest, stream)
        loader = CountingLoader()
        versions = index_versions.IndexVersions(
            self.base, check_fake_model, loader
        )
        with self.assertLogs(level="ERROR") as logs:
            self.assertEqual(versions.load_initial().version, 1)
        self.assertIn("Refused index version 2", logs.output[0])
        self.assertIn("model_identity", logs.output[0])
        self.assertFalse(versions.poll())
        self.assertEqual(loader.loaded, ["2", "1"])  # not loaded again

    def test_any_failure_to_load_a_version_is_a_refusal(self):
        self.add_version(1)
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        versions.load_initial()
        self.add_version(2)

        def broken(bundle):
            raise KeyError("a bug in a check")

        versions._check_fn = broken  # pylint: disable=protected-access
        with self.assertLogs(level="ERROR"):
            self.assertFalse(versions.poll())
        self.assertEqual(versions.current.version, 1)

    def test_folders_named_by_other_digits_are_ignored(self):
        self.add_version(1)
        self.add_version(2)
        os.rename(os.path.join(self.base, "2"), os.path.join(self.base, "²"))
        self.assertEqual(index_versions.list_versions(self.base), [1])
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        self.assertEqual(versions.load_initial().version, 1)
        self.assertFalse(versions.poll())

    def test_removing_the_served_version_rolls_back(self):
        self.add_version(1)
        self.add_version(2, count=5)
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        self.assertEqual(versions.load_initial().version, 2)
        shutil.rmtree(os.path.join(self.base, "2"))
        with self.assertLogs(level="WARNING") as logs:
            self.assertTrue(versions.poll())
        self.assertIn("rolled back to version 1", logs.output[0])
        self.assertEqual(versions.current.version, 1)
        self.assertEqual(versions.current.bundle.index.num_items, 12)
        shutil.rmtree(os.path.join(self.base, "1"))
        with self.assertLogs(level="ERROR") as logs:
            self.assertFalse(versions.poll())  # nothing left: keeps serving
        self.assertIn("still serving it from memory", logs.output[0])
        self.assertEqual(versions.current.version, 1)

    def test_the_previous_versions_images_stay_known_after_a_swap(self):
        self.add_version(1)
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        versions.load_initial()
        self.add_version(2, count=5)
        self.assertTrue(versions.poll())
        # item-9 was answered by version 1; a page may still ask for it.
        self.assertEqual(
            versions.image_path("brand/item-9"),
            os.path.join(self.catalogue, "item9.png"),
        )
        self.assertIsNone(versions.image_path("brand/item-99"))

    def test_no_servable_version_is_an_error_naming_the_reason(self):
        self.add_version(1, fakes.identity(weights="other"))
        versions = index_versions.IndexVersions(self.base, check_fake_model)
        with self.assertLogs(level="ERROR"):
            with self.assertRaisesRegex(
                ValueError, "No index version.*model_fingerprint"
            ):
                versions.load_initial()

    def test_a_path_that_is_no_index_is_named(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            index_versions.check_index_path(os.path.join(self.root, "none"))
        os.makedirs(os.path.join(self.base, "1"))
        with self.assertRaisesRegex(
            FileNotFoundError, "neither an index folder.*numbered"
        ):
            index_versions.IndexVersions(self.base, check_fake_model)

    def test_newest_model_identity_reads_the_newest_manifest(self):
        self.add_version(1)
        self.add_version(2, fakes.identity(version=2))
        self.assertEqual(
            index_versions.newest_model_identity(self.base),
            fakes.identity(version=2),
        )
        self.assertEqual(
            index_versions.newest_model_identity(os.path.join(self.base, "1")),
            fakes.identity(version=1),
        )


if __name__ == "__main__":
    absltest.main()
