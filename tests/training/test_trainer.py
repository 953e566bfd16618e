"""Tests for beau_tf.training.trainer: runs that write, resume and distil,
and a killed `python -m beau_tf.train` that resumes."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from absl.testing import absltest
import keras
import numpy as np
import pytest
import tensorflow as tf

from beau_tf.data import augment
from beau_tf.data import backgrounds as backgrounds_lib
from beau_tf.data import catalog as catalog_lib
from beau_tf.data import pipelines
from beau_tf.data import products as products_lib
from beau_tf.exporting import assemble
from beau_tf.models import extractor as extractor_lib
from beau_tf.training import config as config_lib
from beau_tf.training import photo_targets
from beau_tf.training import trainer
from tests.fixtures import testing
from tests.fixtures import training


class TrainTest(tf.test.TestCase):

    @pytest.mark.slow  # 4 steps, then 4 more (~11 s)
    def test_run_writes_a_complete_workdir_and_resumes(self):
        root = testing.make_tempdir(self)
        catalog = training.tiny_catalog(root)
        workdir = os.path.join(root, "run")
        config = training.tiny_config(catalog)
        path = trainer.train(config, workdir)

        self.assertEqual(config_lib.load_train_config(workdir), config)
        self.assertTrue(os.path.exists(os.path.join(workdir, "flags.txt")))
        self.assertEqual(training.trained_steps(workdir), 4)
        self.assertContainsSubset(
            {
                "loss/loss",
                "loss/mask_loss",
                "loss/logits_loss",
                "learning_rate",
                "input",
                "mask/true",
                "mask/predicted",
            },
            training.summary_tags(os.path.join(workdir, "tensorboard")),
        )
        extractor = keras.saving.load_model(path)
        outputs = extractor(np.zeros((1, 64, 64, 3), np.uint8))
        self.assertEqual(outputs["embedding"].shape[0], 1)
        self.assertEqual(outputs["mask"].shape, (1, 64, 64, 1))

        # The same workdir with more steps goes on from step 4.
        with self.assertLogs(logger="absl", level="INFO") as logs:
            trainer.train(training.tiny_config(catalog, steps=8), workdir)
        self.assertTrue(any("at step 4" in line for line in logs.output))
        self.assertEqual(training.trained_steps(workdir), 8)

    def test_fit_gets_the_first_batches_of_the_run_stream(self):
        # Iterating the training dataset (for the TensorBoard sample, say)
        # would move on the shuffle state later iterators share, by as much
        # as prefetching got to: fit's batches would change from run to run.
        config = training.tiny_config(
            training.tiny_catalog(testing.make_tempdir(self))
        )
        items = catalog_lib.list_catalog(config.catalog)
        dataset, sample = trainer.load_training_data(config, items)
        products, _ = products_lib.prepare_products(items, 64)
        backgrounds, _ = backgrounds_lib.load_backgrounds(
            config.background_dir, backgrounds_lib.stored_size(64)
        )
        stream = pipelines.make_train_dataset(
            products,
            augment.AugmentConfig(image_size=64),
            config.batch_size,
            backgrounds=backgrounds,
        )
        for (inputs, targets), expected in zip(dataset.take(3), stream.take(3)):
            self.assertAllEqual(inputs["label"], expected["label"])
            self.assertAllEqual(inputs["image"], expected["image"])
            self.assertAllEqual(targets["mask"], expected["mask"])
        self.assertEqual(len(sample["image"]), trainer.SUMMARY_IMAGES)

    def test_failed_start_leaves_no_workdir_config(self):
        root = testing.make_tempdir(self)
        config = training.tiny_config(
            training.tiny_catalog(root),
            extractor=extractor_lib.ExtractorConfig(
                backbone="tiny",
                backbone_weights=os.path.join(root, "missing.weights.h5"),
                image_size=64,
            ),
        )
        workdir = os.path.join(root, "run")
        with self.assertRaisesRegex(FileNotFoundError, "missing.weights.h5"):
            trainer.train(config, workdir)
        self.assertFalse(
            os.path.exists(os.path.join(workdir, config_lib.CONFIG_FILE))
        )

    def test_mirrored_strategy_trains(self):
        root = testing.make_tempdir(self)
        config = training.tiny_config(
            training.tiny_catalog(root), strategy="mirrored", steps=2
        )
        trainer.train(config, os.path.join(root, "run"))
        self.assertEqual(training.trained_steps(os.path.join(root, "run")), 2)

    def test_paper_config_trains_the_mask_alone(self):
        root = testing.make_tempdir(self)
        config = training.tiny_config(
            training.tiny_catalog(root), identity_loss_weight=0.0, steps=2
        )
        trainer.train(config, os.path.join(root, "run"))
        tags = training.summary_tags(os.path.join(root, "run", "tensorboard"))
        self.assertIn("loss/loss", tags)
        self.assertNotIn("loss/logits_loss", tags)


@pytest.mark.slow  # a teacher export and two runs (~16 s)
class DistillationRunTest(tf.test.TestCase):

    def test_run_distils_and_resumes_without_the_teacher(self):
        root = testing.make_tempdir(self)
        catalog, photos = training.catalogue_and_photos(root)
        teacher = training.export_teacher(root)
        workdir = os.path.join(root, "run")
        values = dict(
            photos=photos,
            teacher=teacher,
            photo_loss_weight=1.0,
            photo_mask_loss_weight=1.0,
            identity_loss_weight=0.3,
            extractor=extractor_lib.ExtractorConfig(
                backbone="tiny",
                backbone_weights="none",
                image_size=training.IMAGE_SIZE,
                embedding_dim=8,
            ),
        )
        config = training.tiny_config(catalog, steps=2, **values)
        trainer.train(config, workdir)
        self.assertEqual(training.trained_steps(workdir), 2)
        tags = training.summary_tags(os.path.join(workdir, "tensorboard"))
        self.assertIn("loss/photo_logits_loss", tags)
        self.assertIn("loss/photo_mask_loss", tags)
        with np.load(os.path.join(workdir, photo_targets.TARGETS_FILE)) as kept:
            self.assertEqual(kept["targets"].shape, (12, 4))
        # The targets stay with the run: resuming needs no teacher.
        shutil.rmtree(os.path.dirname(teacher))
        trainer.train(training.tiny_config(catalog, steps=4, **values), workdir)
        self.assertEqual(training.trained_steps(workdir), 4)
        self.assertEmpty(glob.glob(os.path.join(workdir, "*.tmp*")))
        # An export of the run says what it was distilled from.
        _, members = assemble.build_export_model([workdir])
        self.assertEqual(
            members[0]["distilled_from"],
            {"teacher": os.path.abspath(teacher), "photos": photos},
        )

    def test_run_distils_from_each_view_with_colour_changes(self):
        root = testing.make_tempdir(self)
        catalog, photos = training.catalogue_and_photos(root)
        teacher = training.export_teacher(root, query_zooms=(1.0, 0.5))
        workdir = os.path.join(root, "run")
        config = training.tiny_config(
            catalog,
            steps=2,
            photos=photos,
            teacher=teacher,
            photo_loss_weight=1.0,
            teacher_per_view=True,
            photo_photometric=True,
        )
        trainer.train(config, workdir)
        self.assertEqual(training.trained_steps(workdir), 2)
        with np.load(os.path.join(workdir, photo_targets.TARGETS_FILE)) as kept:
            self.assertEqual(kept["targets"].shape, (12, 2, 4))
            self.assertAllEqual(kept["zooms"], [1.0, 0.5])


@pytest.mark.slow
class KillAndResumeTest(tf.test.TestCase):

    def test_sigkill_then_same_command_continues(self):
        root = testing.make_tempdir(self)
        catalog = training.tiny_catalog(root)
        workdir = os.path.join(root, "run")
        command = [
            sys.executable,
            "-m",
            "beau_tf.train",
            f"--workdir={workdir}",
            f"--catalog={catalog.catalog_csv}",
            f"--background_dir={catalog.backgrounds_dir}",
            "--backbone=tiny",
            "--backbone_weights=none",
            "--image_size=64",
            "--batch_size=2",
            "--steps=300",
            "--checkpoint_every=10",
            "--warmup_steps=1",
            "--identity_loss_weight=1.0",
        ]
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        process = subprocess.Popen(
            command,
            cwd=testing.REPO,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        checkpoints = os.path.join(workdir, "checkpoints")
        deadline = time.monotonic() + 240
        # A checkpoint counts once the state file names it: a kill between
        # writing its files and naming it leaves a run that starts afresh.
        while tf.train.latest_checkpoint(checkpoints) is None:
            self.assertIsNone(
                process.poll(), "training ended before a checkpoint"
            )
            self.assertLess(
                time.monotonic(), deadline, "no checkpoint in 240 s"
            )
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = training.trained_steps(workdir)
        self.assertLess(killed_at, 300, "training finished before the kill")

        resumed = subprocess.run(
            command,
            cwd=testing.REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
        match = re.search(r"Resuming from .* at step (\d+)", resumed.stderr)
        self.assertIsNotNone(match, resumed.stderr[-3000:])
        self.assertEqual(int(match.group(1)), killed_at)
        self.assertEqual(training.trained_steps(workdir), 300)
        self.assertTrue(
            os.path.exists(os.path.join(workdir, "extractor.keras"))
        )


class UnfinishedCheckpointTest(absltest.TestCase):

    def test_only_temp_folders_are_removed(self):
        checkpoints = os.path.join(
            testing.make_tempdir(self, "beau_tf_ckpt_"), "checkpoints"
        )
        os.makedirs(os.path.join(checkpoints, "ckpt-4_temp"))
        for name in ("checkpoint", "ckpt-2.index"):
            with open(os.path.join(checkpoints, name), "w") as stream:
                stream.write("kept")
        trainer.remove_unfinished_checkpoints(checkpoints)
        self.assertEqual(
            sorted(os.listdir(checkpoints)), ["checkpoint", "ckpt-2.index"]
        )
        trainer.remove_unfinished_checkpoints(
            os.path.join(checkpoints, "missing")
        )
