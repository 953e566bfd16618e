"""Tests for beau_tf.common.progress: count, rate and ETA, bar or log lines."""

import io
import sys
import unittest
from unittest import mock

from beau_tf.common import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _logged(test, *args, **kwargs) -> tuple[list, list[str]]:
    """Runs `track(*args, **kwargs)` off a terminal: (items, log lines)."""
    with mock.patch.object(progress, "_on_terminal", return_value=False):
        with test.assertLogs("absl", "INFO") as logs:
            items = list(progress.track(*args, **kwargs))
    return items, [record.getMessage() for record in logs.records]


class LogLinesTest(unittest.TestCase):

    def test_a_line_has_count_rate_and_eta(self):
        with mock.patch.object(progress, "_on_terminal", return_value=False):
            bar = progress.Progress(10, "Training", unit="steps", initial=4)
        bar.update(2, postfix="loss=0.5")
        # 2 steps in 2 s from step 4: 1 step/s, 4 steps left.
        self.assertEqual(
            bar.line(elapsed=2.0),
            "Training: 6/10 steps (60%) in 00:02, 1.00steps/s, ETA 00:04, "
            "loss=0.5",
        )

    def test_the_rate_counts_from_the_first_update(self):
        # Issue 21, finding 14: the first step took 30 s (the graph's
        # building), the next ones 1 s each; the ETA was 25 minutes.
        now = [0.0]
        with mock.patch.object(progress, "_on_terminal", return_value=False):
            with mock.patch.object(progress.time, "monotonic", lambda: now[0]):
                bar = progress.Progress(100, "Training", unit="steps")
                for now[0] in (30.0, 31.0, 32.0):
                    bar.update(1)
        self.assertEqual(
            bar.line(elapsed=32.0),
            "Training: 3/100 steps (3%) in 00:32, 1.00steps/s, ETA 01:37",
        )

    def test_lines_while_working_and_at_the_end(self):
        items, lines = _logged(
            self, "abcd", 4, "Embedding", log_every_seconds=0
        )
        self.assertEqual(items, list("abcd"))
        self.assertTrue(lines[0].startswith("Embedding: 1/4 images (25%)"))
        self.assertTrue(lines[-1].startswith("Embedding: 4/4 images (100%)"))
        for line in lines:
            self.assertRegex(line, r"images/s, ETA \S+$")

    def test_lines_are_spaced_in_time(self):
        _, lines = _logged(self, range(50), 50, "Embedding")
        self.assertEqual(len(lines), 1)  # only the last, within 30 s
        self.assertTrue(lines[0].startswith("Embedding: 50/50 images"))

    def test_size_counts_the_units_of_a_batch(self):
        batches = [["a", "b"], ["c", "d"], ["e"]]
        items, lines = _logged(self, batches, 5, "Embedding", size=len)
        self.assertEqual(items, batches)
        self.assertTrue(lines[-1].startswith("Embedding: 5/5 images (100%)"))

    def test_the_last_item_counts_when_the_loop_stops_first(self):
        # zip() stops at the shorter list without asking for another item.
        with mock.patch.object(progress, "_on_terminal", return_value=False):
            with self.assertLogs("absl", "INFO") as logs:
                pairs = list(zip("ab", progress.track("ab", 2, "Reading")))
        self.assertEqual(pairs, [("a", "a"), ("b", "b")])
        self.assertIn("Reading: 2/2 images", logs.records[-1].getMessage())


class TerminalTest(unittest.TestCase):

    def test_a_bar_with_count_rate_and_eta(self):
        terminal = _Terminal()
        with mock.patch.object(sys, "stderr", terminal):
            items = list(
                progress.track([[1, 2], [3]], 3, "Embedding", size=len)
            )
        self.assertEqual(items, [[1, 2], [3]])
        drawn = terminal.getvalue().split("\r")[-1]
        self.assertIn("Embedding: 100%", drawn)
        self.assertIn("3/3", drawn)
        self.assertRegex(drawn, r"\[\d\d:\d\d<\d\d:\d\d, .*images/s\]")


if __name__ == "__main__":
    unittest.main()
