"""Tests for beau_tf.common.cli: a user's mistake is one line, no traceback."""

import subprocess
import sys
import textwrap
import unittest

_PROGRAM = textwrap.dedent('''
    """A long usage text that absl would print before a usage error."""
    import sys
    from absl import app
    from beau_tf.common import cli

    def main(argv):
        if sys.argv[-1] == "usage":
            raise app.UsageError("Pass exactly one of --model and --server.")
        if sys.argv[-1] == "value":
            raise ValueError("query.jpg is not a decodable image")
        raise RuntimeError("a bug")

    cli.run(main)
    ''')


def _run(kind: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, kind],
        capture_output=True,
        text=True,
    )


class RunTest(unittest.TestCase):

    def test_a_usage_error_is_one_line_with_a_hint(self):
        done = _run("usage")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.strip().splitlines(),
            [
                "error: Pass exactly one of --model and --server. "
                "(--helpfull lists every flag)"
            ],
        )

    def test_a_bad_value_is_one_line(self):
        done = _run("value")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.strip(), "error: query.jpg is not a decodable image"
        )

    def test_a_bug_keeps_its_traceback(self):
        done = _run("bug")
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("Traceback", done.stderr)
        self.assertIn("RuntimeError: a bug", done.stderr)
