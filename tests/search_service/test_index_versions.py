"""Tests for beau_tf.search_service.index_versions: hot swap of index versions."""

import os
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
