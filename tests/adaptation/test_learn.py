"""Tests for beau_tf.adaptation.learn and `python -m beau_tf.export
--adapt_photos` on the synthetic catalogue and a tiny model."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from beau_tf.adaptation import learn
from beau_tf.adaptation import self_training
from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.models import extractor as extractor_lib
from beau_tf.serving import contract
from tests.fixtures import testing
from tests.fixtures import training

ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


class AdaptationTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = cls.enterClassContext(tempfile.TemporaryDirectory())
        cls.catalog = synthetic.write_synthetic_catalog(
            os.path.join(cls.root, "synthetic"),
            num_products=5,
            queries_per_product=3,
            num_backgrounds=2,
            image_size=64,
        )
        cls.catalogue_paths = [
            item.path
            for item in catalog_lib.list_catalog(cls.catalog.catalog_csv)
        ]
        cls.photo_paths = catalog_lib.list_photos(cls.catalog.queries_csv)

    def test_learn_projection_records_what_it_learned_from(self):
        model = extractor_lib.build_extractor(
            extractor_lib.ExtractorConfig(
                backbone="tiny", backbone_weights="none", image_size=64
            )
        )
        config = self_training.SelfTrainingConfig(dim=3, rounds=2)
        projection, record = learn.learn_projection(
            model, (1.0, 0.5), self.catalogue_paths, self.photo_paths, config
        )
        dim = model.output["embedding"].shape[-1]
        self.assertEqual(projection.matrix.shape, (dim, 3))
        self.assertEqual(record["num_photos"], 15)
        self.assertEqual(record["num_catalogue"], 5)
        self.assertEqual(record["config"]["dim"], 3)
        self.assertLen(record["rounds"], 2)
        self.assertEqual(record["photos"], os.path.dirname(self.photo_paths[0]))

    @pytest.mark.slow
    def test_export_with_adapt_photos(self):
        workdir = training.trained_workdir(
            self.catalog, os.path.join(self.root, "run")
        )
        export_dir = os.path.join(self.root, "exported")
        command = [
            sys.executable,
            "-m",
            "beau_tf.export",
            f"--workdirs={workdir}",
            f"--export_dir={export_dir}",
            f"--adapt_photos={self.catalog.queries_csv}",
            "--adapt_dim=2",
        ]

        def run(*extra):
            return subprocess.run(
                command + list(extra),
                cwd=testing.REPO,
                env=ENVIRONMENT,
                capture_output=True,
                text=True,
            )

        no_members = subprocess.run(
            [sys.executable, "-m", "beau_tf.export", "--export_dir=x"],
            cwd=testing.REPO,
            env=ENVIRONMENT,
            capture_output=True,
            text=True,
        )
        self.assertEqual(no_members.returncode, 1)
        self.assertRegex(
            no_members.stderr, "error: Pass --workdirs, --backbones or both"
        )

        missing = run()
        self.assertEqual(missing.returncode, 1)
        self.assertRegex(
            missing.stderr, "error: --adapt_photos needs --adapt_catalog"
        )
        self.assertNotIn("Traceback", missing.stderr)
        self.assertFalse(os.path.exists(export_dir))

        done = run(f"--adapt_catalog={self.catalog.catalog_csv}")
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        version_dir = os.path.join(export_dir, "beau_tf", "1")
        identity = contract.model_identity(version_dir)
        self.assertEqual(identity["embedding_dim"], 2)
        self.assertEqual(identity["adaptation"]["num_photos"], 15)
        self.assertEqual(
            identity["adaptation"]["photos"],
            os.path.abspath(self.catalog.queries_csv),
        )
        served = tf.saved_model.load(version_dir).signatures[
            "query_multiscale"
        ](images=tf.constant([open(self.photo_paths[0], "rb").read()]))
        self.assertEqual(served["embedding"].shape, (1, 2))
        self.assertAllClose(np.linalg.norm(served["embedding"], axis=1), [1.0])
