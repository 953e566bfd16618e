"""Every command line's flag mistakes end in one `error:` line, and asking
for help succeeds (issue 21, findings 11 and 12)."""

import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import pytest

from tests.fixtures import testing

pytestmark = pytest.mark.slow  # one interpreter importing TensorFlow each

# Each command with required flags, and the first of them absl checks.
REQUIRED = {
    "beau_tf.train": "catalog|workdir",
    "beau_tf.search": "index",
    "beau_tf.evaluate": "index|queries",
    "beau_tf.serve": "index",
    "beau_tf.dev_server": "model_base",
    "beau_tf.preview": "catalog",
    "beau_tf.convert_grocery": "dataset_dir|out_dir",
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=testing.REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


class CommandLinesTest(parameterized.TestCase):

    @parameterized.parameters(*REQUIRED.items())
    def test_a_missing_required_flag_is_one_line(self, module, flag):
        done = run(module)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertNotIn("FATAL", done.stderr)
        self.assertRegex(
            done.stderr.strip().splitlines()[-1],
            f"^error: --({flag}) is required \\(--helpfull lists every flag\\)$",
        )

    @parameterized.parameters(*REQUIRED)
    def test_help_succeeds(self, module):
        done = run(module, "--help")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("--helpfull", done.stdout)

    @parameterized.parameters("beau_tf.serve", "beau_tf.dev_server")
    def test_a_port_out_of_range_is_one_line(self, module):
        if module == "beau_tf.serve":
            done = run(module, "--index=i", "--port=99999")
        else:
            done = run(module, "--model_base=m", "--port=99999")
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertNotIn("Traceback", done.stderr)
        self.assertRegex(
            done.stderr.strip().splitlines()[-1],
            r"^error: flag --port=99999: .*65535",
        )


if __name__ == "__main__":
    absltest.main()
