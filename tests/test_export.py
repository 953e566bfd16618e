"""Tests for the export command line (python -m beau_tf.export): its own
checks, and an export of a trained workdir with whitening. The whole chain is
tested end to end in tests/test_end_to_end.py."""

import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import pytest
import tensorflow as tf

from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.serving import contract
from tests.fixtures import testing
from tests.fixtures import tiny_export
from tests.fixtures import training

ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.mark.slow  # trains a workdir, then four export commands (~30 s)
class ExportCommandTest(tf.test.TestCase):

    def test_ensemble_with_whitening_from_a_trained_workdir(self):
        root = self.get_temp_dir()
        catalog = synthetic.write_synthetic_catalog(
            os.path.join(root, "synthetic"),
            num_products=4,
            queries_per_product=0,
            num_backgrounds=2,
            image_size=64,
        )
        workdir = training.trained_workdir(catalog, os.path.join(root, "run"))
        export_dir = os.path.join(root, "exported")
        command = [
            sys.executable,
            "-m",
            "beau_tf.export",
            f"--workdirs={workdir},{workdir}",
            "--member_weights=1,2",
            "--pca_dim=3",
            f"--pca_catalog={catalog.catalog_csv}",
            f"--export_dir={export_dir}",
            "--model_name=beau_tf",
            "--query_zooms=1.0,0.6",
        ]
        done = subprocess.run(
            command,
            cwd=testing.REPO,
            env=ENVIRONMENT,
            capture_output=True,
            text=True,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        version_dir = os.path.join(export_dir, "beau_tf", "1")
        identity = contract.model_identity(version_dir)
        self.assertEqual(identity["embedding_dim"], 3)
        self.assertEqual(identity["query_zooms"], [1.0, 0.6])
        self.assertEqual(
            [member["weight"] for member in identity["members"]], [1.0, 2.0]
        )
        served = tf.saved_model.load(version_dir).signatures["serving_default"](
            images=tiny_export.real_image_bytes()
        )
        self.assertEqual(served["embedding"].shape, (2, 3))
        self.assertAllClose(
            np.linalg.norm(served["embedding"], axis=-1), [1.0, 1.0]
        )

        # A user error is one line, without a traceback.
        again = subprocess.run(
            command + ["--version=1"],
            cwd=testing.REPO,
            env=ENVIRONMENT,
            capture_output=True,
            text=True,
        )
        self.assertEqual(again.returncode, 1)
        self.assertRegex(again.stderr, r"error: .*1 exists")
        self.assertNotIn("Traceback", again.stderr)
        self.assertEqual(os.listdir(os.path.join(export_dir, "beau_tf")), ["1"])

        for zooms, message in [
            ("1.0,big", r"--query_zooms=1.0,big; numbers in \(0, 1\] expected"),
            ("1.0,2", r"zooms=\[1.0, 2.0\] is invalid"),
        ]:
            bad = subprocess.run(
                command + [f"--query_zooms={zooms}"],
                cwd=testing.REPO,
                env=ENVIRONMENT,
                capture_output=True,
                text=True,
            )
            self.assertEqual(bad.returncode, 1)
            self.assertRegex(bad.stderr, "error: " + message)
            self.assertNotIn("Traceback", bad.stderr)


if __name__ == "__main__":
    absltest.main()
