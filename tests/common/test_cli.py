"""Tests for beau_tf.common.cli: one-line errors and Ctrl-C, a quiet start."""

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

from beau_tf.common import cli

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


_WITH_FLAGS = textwrap.dedent("""
    from absl import flags
    from beau_tf.common import cli

    _INDEX = flags.DEFINE_string("index", None, "An index.", required=True)
    _PORT = flags.DEFINE_integer(
        "port", 8080, "A port.", lower_bound=0, upper_bound=65535
    )

    def main(argv):
        print("ran", _INDEX.value, _PORT.value)

    cli.run(main)
    """)


class FlagsTest(unittest.TestCase):
    """Issue 21, findings 11 and 12: flag mistakes are one `error:` line,
    and asking for help succeeds."""

    def run_with(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", _WITH_FLAGS, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_a_missing_required_flag_is_one_line(self):
        done = self.run_with()
        self.assertEqual(done.returncode, 1)
        self.assertEqual(
            done.stderr.strip().splitlines(),
            ["error: --index is required (--helpfull lists every flag)"],
        )

    def test_a_value_out_of_range_is_one_line(self):
        done = self.run_with("--index=i", "--port=99999")
        self.assertEqual(done.returncode, 1)
        lines = done.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        self.assertRegex(lines[0], r"^error: flag --port=99999: .*65535")
        self.assertNotIn("FATAL", done.stderr)

    def test_an_unknown_flag_is_one_line(self):
        done = self.run_with("--index=i", "--prot=1")
        self.assertEqual(done.returncode, 1)
        self.assertRegex(done.stderr.strip(), r"^error: .*prot")

    def test_help_succeeds(self):
        for flag in ("--help", "--helpfull", "--helpshort"):
            done = self.run_with(flag)
            self.assertEqual(done.returncode, 0, (flag, done.stderr))
            self.assertIn("--index", done.stdout + done.stderr)
            self.assertNotIn("ran i", done.stdout)

    def test_good_flags_run(self):
        done = self.run_with("--index=i", "--port=0")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "ran i 0")


_FILTERED = textwrap.dedent("""
    import os, sys
    from beau_tf.common import cli

    with cli.stderr_lines_without(b"Premature end"):
        os.write(2, b"kept at once\\n")
        sys.stdin.readline()  # until the parent has seen it
        os.write(2, b"Premature end of JPEG data\\n")
        sys.stderr.write("kept from Python\\n")
    sys.stderr.write("kept after\\n")
    """)


class StderrLinesWithoutTest(unittest.TestCase):

    def test_lines_are_dropped_and_the_rest_pass_as_they_come(self):
        running = subprocess.Popen(
            [sys.executable, "-c", _FILTERED],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(running.kill)
        ready, _, _ = select.select([running.stderr], [], [], 60)
        self.assertTrue(ready, "no line before the block ended")
        self.assertEqual(running.stderr.readline(), "kept at once\n")
        _, rest = running.communicate("go\n", timeout=60)
        self.assertEqual(rest, "kept from Python\nkept after\n")
        self.assertEqual(running.returncode, 0)


_INTERRUPTIBLE = textwrap.dedent("""
    import os, signal, sys, time
    from beau_tf.common import cli, files, progress

    # A parent that ignores SIGINT (nohup, CI) would pass that on.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def main(argv):
        with files.atomic_path(sys.argv[1]) as temporary:
            with open(temporary, "w") as stream:
                stream.write("half")
            try:
                for _ in progress.track(range(1000), 1000, "Working"):
                    print("ready", flush=True)
                    time.sleep(0.01)
            except KeyboardInterrupt:
                if sys.argv[2] == "other error":
                    raise RuntimeError("Objects/listobject.c: bad argument")
                raise

    cli.run(main)
    """)


class CtrlCTest(unittest.TestCase):

    def _interrupt(self, how: str) -> tuple[subprocess.Popen, str, str]:
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        output = os.path.join(folder, "out.txt")
        running = subprocess.Popen(
            [sys.executable, "-c", _INTERRUPTIBLE, output, how],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.assertEqual(running.stdout.readline(), "ready\n")
        running.send_signal(signal.SIGINT)
        _, stderr = running.communicate(timeout=60)
        return running, stderr, folder

    def test_ctrl_c_is_one_line_and_status_130(self):
        running, stderr, folder = self._interrupt("plain")
        self.assertEqual(running.returncode, 130)
        lines = stderr.strip().splitlines()
        self.assertEqual(lines[-1], cli.INTERRUPTED)
        # Before it, only the progress made so far (logged: not a terminal).
        self.assertTrue(all("Working: " in line for line in lines[:-1]))
        self.assertEqual(os.listdir(folder), [])  # nothing half-written

    def test_an_error_raised_by_the_interruption_is_the_interruption(self):
        running, stderr, _ = self._interrupt("other error")
        self.assertEqual(running.returncode, 130)
        self.assertEqual(stderr.strip().splitlines()[-1], cli.INTERRUPTED)
        self.assertNotIn("Traceback", stderr)


_WRITES_TO_STDERR = textwrap.dedent("""
    import os, sys
    from beau_tf.common import cli

    with cli.stderr_without(b"failed call to cuInit"):
        os.write(2, b"E a real error\\n")
        os.write(2, b"E cuda_platform.cc:51] failed call to cuInit: (303)\\n")
        sys.stderr.write("from Python\\n")
    """)

# A line TensorFlow's C++ logs at INFO level ("2026-12-07 04:19:45.934249: I
# external/...").
_CPP_INFO_LINE = re.compile(r"^\S+ \S+: I ", re.M)

# Imports beau_tf first, as `python -m beau_tf.<command>` does.
_USES_TENSORFLOW = textwrap.dedent("""
    from beau_tf.common import cli
    import tensorflow as tf

    def main(argv):
        tf.constant(1) + 1
        try:
            tf.io.read_file("/no/such/file")
        except tf.errors.NotFoundError:
            pass  # TensorFlow has logged a warning about it

    cli.run(main)
    """)


def _start_with_log_level(level: str | None) -> subprocess.Popen:
    environment = dict(os.environ)
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if level is not None:
        environment["TF_CPP_MIN_LOG_LEVEL"] = level
    return subprocess.Popen(
        [sys.executable, "-c", _USES_TENSORFLOW],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


class TensorFlowStartTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # Both at once: each spends seconds importing TensorFlow.
        default, everything = _start_with_log_level(
            None
        ), _start_with_log_level("0")
        cls.default = default.communicate(timeout=120)[1], default.returncode
        cls.everything = (
            everything.communicate(timeout=120)[1],
            everything.returncode,
        )

    def test_only_the_named_line_is_dropped(self):
        done = subprocess.run(
            [sys.executable, "-c", _WRITES_TO_STDERR],
            capture_output=True,
            text=True,
        )
        self.assertEqual(done.stderr, "E a real error\nfrom Python\n")

    def test_no_cuinit_error_and_tensorflow_warnings_still_show(self):
        stderr, status = self.default
        self.assertEqual(status, 0, stderr)
        self.assertNotIn("cuInit", stderr)
        self.assertNotRegex(stderr, _CPP_INFO_LINE)
        self.assertIn("OP_REQUIRES failed", stderr)  # a warning

    def test_the_users_log_level_wins(self):
        stderr, status = self.everything
        self.assertEqual(status, 0, stderr)
        # Which INFO lines TensorFlow writes depends on the machine (oneDNN's
        # notice only on the CPUs it turns oneDNN on for; seen absent on one
        # without AVX-512; "Could not find cuda drivers" only without a
        # GPU), so any one of them will do.
        self.assertRegex(stderr, _CPP_INFO_LINE)
        if not cli.has_nvidia_driver():
            self.assertIn("failed call to cuInit", stderr)
