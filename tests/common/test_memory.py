"""Tests for beau_tf.common.memory."""

import subprocess
import sys
import unittest

import numpy as np

from beau_tf.common import memory


class MemoryTest(unittest.TestCase):

    def test_available_memory_is_some_of_the_machine(self):
        self.assertGreater(memory.available_bytes(), 0)

    def test_anonymous_memory_grows_with_an_array_and_is_part_of_rss(self):
        rss, anon = memory.process_bytes()
        self.assertGreater(anon, 0)
        self.assertLessEqual(anon, rss)
        block = np.ones(64 * 2**20, np.uint8)  # touched: resident
        self.assertGreater(memory.process_bytes()[1], anon + 32 * 2**20)
        del block

    def test_a_process_that_is_gone_has_none(self):
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        self.assertEqual(memory.process_bytes(int(child.stdout)), (0, 0))


if __name__ == "__main__":
    unittest.main()
