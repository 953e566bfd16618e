"""Tests for beau_tf.common.files.atomic_path."""

import os
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
