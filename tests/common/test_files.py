"""Tests for beau_tf.common.files."""

import json
import os
import shutil
import tempfile
import unittest

from beau_tf.common import files


class AtomicPathTest(unittest.TestCase):

    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.root = directory.name

    def test_file_appears_complete_and_nothing_is_left_behind(self):
        path = os.path.join(self.root, "new", "out.txt")
        with files.atomic_path(path, ".txt") as temporary:
            self.assertTrue(temporary.endswith(".txt"))
            with open(temporary, "w") as stream:
                stream.write("done")
            self.assertFalse(os.path.exists(path))
        with open(path) as stream:
            self.assertEqual(stream.read(), "done")
        self.assertEqual(os.listdir(os.path.dirname(path)), ["out.txt"])

    def test_failure_keeps_the_old_file(self):
        path = os.path.join(self.root, "out.txt")
        with open(path, "w") as stream:
            stream.write("old")
        with self.assertRaises(RuntimeError):
            with files.atomic_path(path) as temporary:
                with open(temporary, "w") as stream:
                    stream.write("half")
                raise RuntimeError("writer died")
        with open(path) as stream:
            self.assertEqual(stream.read(), "old")
        self.assertEqual(os.listdir(self.root), ["out.txt"])


class CheckWritableTest(unittest.TestCase):

    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="beau_tf_files_")
        self.addCleanup(shutil.rmtree, self.folder)
        self.file = os.path.join(self.folder, "taken.txt")
        with open(self.file, "w") as stream:
            stream.write("x")

    def test_new_paths_under_existing_or_missing_folders_pass(self):
        files.check_writable(os.path.join(self.folder, "a.png"), "--out")
        files.check_writable(
            os.path.join(self.folder, "new", "deeper", "a.png"), "--out"
        )
        files.check_writable(self.file, "--out")  # replaced atomically
        files.check_writable(self.folder, "--dir", folder=True)

    def test_each_mistake_names_the_flag_and_the_path(self):
        with self.assertRaisesRegex(IsADirectoryError, "--out=.* is a folder"):
            files.check_writable(self.folder, "--out")
        with self.assertRaisesRegex(NotADirectoryError, "--dir=.* is a file"):
            files.check_writable(self.file, "--dir", folder=True)
        with self.assertRaisesRegex(
            NotADirectoryError, "taken.txt is a file, not a folder"
        ):
            files.check_writable(os.path.join(self.file, "a.png"), "--out")

    @unittest.skipIf(os.geteuid() == 0, "root may write anywhere")
    def test_read_only_folder(self):
        os.chmod(self.folder, 0o500)
        self.addCleanup(os.chmod, self.folder, 0o700)
        with self.assertRaisesRegex(PermissionError, "no permission"):
            files.check_writable(os.path.join(self.folder, "a"), "--out")


class StagedFolderTest(unittest.TestCase):

    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.root = directory.name
        self.path = os.path.join(self.root, "out")

    def _write(self, folder: str, text: str) -> None:
        with open(os.path.join(folder, "a.txt"), "w") as stream:
            stream.write(text)

    def _read(self) -> str:
        with open(os.path.join(self.path, "a.txt")) as stream:
            return stream.read()

    def test_folder_appears_whole_and_nothing_is_left_behind(self):
        with files.staged_folder(self.path) as staging:
            self._write(staging, "new")
            self.assertFalse(os.path.exists(self.path))
            self.assertTrue(os.path.basename(staging).startswith("."))
        self.assertEqual(self._read(), "new")
        self.assertEqual(os.listdir(self.root), ["out"])

    def test_an_empty_folder_is_replaced(self):
        os.makedirs(self.path)
        with files.staged_folder(self.path) as staging:
            self._write(staging, "new")
        self.assertEqual(self._read(), "new")

    def test_failure_leaves_nothing(self):
        with self.assertRaises(RuntimeError):
            with files.staged_folder(self.path) as staging:
                self._write(staging, "half")
                raise RuntimeError("writer died")
        self.assertEqual(os.listdir(self.root), [])

    def test_a_non_empty_folder_is_never_overwritten(self):
        os.makedirs(self.path)
        self._write(self.path, "old")
        with self.assertRaisesRegex(FileExistsError, "never overwritten"):
            with files.staged_folder(self.path):
                pass
        self.assertEqual(self._read(), "old")

    def test_a_folder_taken_meanwhile_is_kept(self):
        with self.assertRaisesRegex(FileExistsError, "never overwritten"):
            with files.staged_folder(self.path) as staging:
                self._write(staging, "mine")
                os.makedirs(self.path)
                self._write(self.path, "theirs")
        self.assertEqual(self._read(), "theirs")
        self.assertEqual(os.listdir(self.root), ["out"])

    def test_replace_swaps_a_non_empty_folder(self):
        os.makedirs(self.path)
        self._write(self.path, "old")
        with files.staged_folder(self.path, replace=True) as staging:
            self._write(staging, "new")
        self.assertEqual(self._read(), "new")
        self.assertEqual(os.listdir(self.root), ["out"])


class WriteJsonAtomicallyTest(unittest.TestCase):

    def test_round_trip(self):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "sub", "a.json")
            files.write_json_atomically(path, {"b": [1, 2]})
            with open(path) as stream:
                self.assertEqual(json.load(stream), {"b": [1, 2]})
            self.assertEqual(os.listdir(os.path.dirname(path)), ["a.json"])
