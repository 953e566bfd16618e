"""Tests for beau_tf.common.files."""

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
