"""Tests for the preview command line (python -m beau_tf.preview)."""

import os
import subprocess
import sys
import tempfile
import unittest

from PIL import Image
import pytest

from beau_tf.datasets.synthetic import catalogue as synthetic
from tests.fixtures import testing


class PreviewCommandTest(unittest.TestCase):

    @pytest.mark.slow  # a catalogue, then the command (~7 s)
    def test_writes_a_grid_of_pairs(self):
        with tempfile.TemporaryDirectory() as root:
            catalog = synthetic.write_synthetic_catalog(
                os.path.join(root, "synthetic"),
                num_products=3,
                queries_per_product=0,
                num_backgrounds=2,
                image_size=64,
            )
            out = os.path.join(root, "preview.png")
            subprocess.run(
                [
                    sys.executable, "-m", "beau_tf.preview",
                    f"--catalog={catalog.catalog_csv}",
                    f"--background_dir={catalog.backgrounds_dir}",
                    f"--out={out}", "--image_size=48", "--num_images=4",
                    "--columns=2",
                ],
                check=True, cwd=testing.REPO, capture_output=True, timeout=300,
            )  # fmt: skip
            width, height = Image.open(out).size
            # 2 columns of (image | overlay) pairs, 2 rows.
            self.assertEqual(width, 2 * (2 * 48 + 4) + 4)
            self.assertEqual(height, 2 * (48 + 14 + 4) + 4)

    def test_missing_catalogue_fails_with_its_name(self):
        result = subprocess.run(
            [sys.executable, "-m", "beau_tf.preview",
             "--catalog=/nonexistent/catalog.csv", "--out=/tmp/x.png"],
            cwd=testing.REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("/nonexistent/catalog.csv", result.stderr)
