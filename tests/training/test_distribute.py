"""Tests for beau_tf.training.distribute: training on two workers of 127.0.0.1.

The multi-worker tests run `python -m beau_tf.train` as two processes, as users
launch it, against a four-product catalogue on procedural scenes: the stream of
training examples depends on its position only (`pipelines.endless_shuffle`),
so two workers must compute what one process computes.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import pytest
import tensorflow as tf

from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.models import extractor as extractor_lib
from beau_tf.training import config as config_lib
from beau_tf.training import distribute
from beau_tf.training import trainer
from tests.fixtures import ports
from tests.fixtures import testing
from tests.fixtures import training


class StrategyTest(tf.test.TestCase):

    def test_unknown_strategy_is_named(self):
        with self.assertRaisesRegex(ValueError, "strategy='cloud'"):
            distribute.build_strategy("cloud")

    def test_one_process_writes_the_workdir_itself(self):
        workdir = testing.make_tempdir(self)
        strategy = distribute.build_strategy("default")
        self.assertTrue(distribute.is_chief(strategy))
        with distribute.output_dir(workdir, strategy) as output_dir:
            self.assertEqual(output_dir, workdir)
        self.assertEqual(os.listdir(workdir), [])

    def test_reduce_takes_what_keras_fit_passes(self):
        # One worker (no TF_CONFIG): the values come back as they are.
        strategy = distribute.KerasMultiWorkerMirroredStrategy()
        batch = {
            "image": tf.fill([2, 4, 4, 3], tf.constant(7, tf.uint8)),
            "label": tf.constant([1, 2]),
        }
        reduced = strategy.reduce("MEAN", batch, axis=None)
        self.assertEqual(reduced["image"].dtype, tf.uint8)
        self.assertAllEqual(reduced["image"], batch["image"])
        self.assertAllEqual(reduced["label"], batch["label"])
        self.assertAllClose(
            strategy.reduce("MEAN", tf.constant(0.25), axis=0), 0.25
        )


def frozen_backbone_config(root: str, **overrides) -> config_lib.TrainConfig:
    catalog = synthetic.write_synthetic_catalog(
        os.path.join(root, "synthetic"),
        num_products=4,
        queries_per_product=0,
        num_backgrounds=1,
        image_size=64,
    )
    values = dict(
        # A frozen backbone keeps BatchNorm on its moving statistics: trained,
        # it would normalise each worker's half batch on its own.
        extractor=extractor_lib.ExtractorConfig(
            backbone="tiny",
            backbone_weights="none",
            image_size=64,
            trainable_from="none",
        ),
        catalog=catalog.catalog_csv,
        batch_size=4,
        steps=4,
        checkpoint_every=2,
        warmup_steps=1,
        summary_every=1,
    )
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def command_line(config: config_lib.TrainConfig, workdir: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "beau_tf.train",
        f"--workdir={workdir}",
        f"--catalog={config.catalog}",
        "--backbone=tiny",
        "--backbone_weights=none",
        f"--image_size={config.extractor.image_size}",
        "--trainable_from=none",
        f"--batch_size={config.batch_size}",
        f"--steps={config.steps}",
        f"--checkpoint_every={config.checkpoint_every}",
        f"--warmup_steps={config.warmup_steps}",
        f"--summary_every={config.summary_every}",
        "--strategy=multi_worker",
    ]


class Workers:
    """N `beau_tf.train` processes on 127.0.0.1, one TF_CONFIG task each."""

    def __init__(self, command, count: int, log_dir: str, temp_dir: str):
        cluster = {
            "worker": [f"127.0.0.1:{port}" for port in ports.free_ports(count)]
        }
        self.logs = [
            os.path.join(log_dir, f"worker{index}.log")
            for index in range(count)
        ]
        self.processes = []
        for index, log in enumerate(self.logs):
            task = {"type": "worker", "index": index}
            environment = dict(
                os.environ,
                TF_CONFIG=json.dumps({"cluster": cluster, "task": task}),
                TF_CPP_MIN_LOG_LEVEL="2",
                TMPDIR=temp_dir,
            )
            with open(log, "w") as stream:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        cwd=testing.REPO,
                        env=environment,
                        stdout=stream,
                        stderr=subprocess.STDOUT,
                    )
                )

    def log(self, index: int) -> str:
        with open(self.logs[index]) as stream:
            return stream.read()

    def wait(self, test: tf.test.TestCase, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for index, process in enumerate(self.processes):
            try:
                process.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                test.fail(f"worker {index} ran over {timeout} s")
            test.assertEqual(process.returncode, 0, self.log(index)[-3000:])

    def kill(self) -> None:
        # Every signal before any wait, the other workers' before the
        # chief's: a worker that outlives the chief sees its connection
        # reset, ends on its own and removes its temporary folder.
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.wait()


def loss_summaries(workdir: str) -> dict[int, float]:
    """`{step: loss}` from the TensorBoard events of a workdir (all runs)."""
    losses = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "loss/loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def listing(workdir: str) -> list[str]:
    """The workdir's files, with the events file's host-and-pid name masked."""
    paths = []
    for folder, _, names in os.walk(workdir):
        for name in names:
            path = os.path.relpath(os.path.join(folder, name), workdir)
            paths.append(re.sub(r"events\.out\.tfevents\..*", "EVENTS", path))
    return sorted(paths)


@pytest.mark.slow
class MultiWorkerTrainingTest(tf.test.TestCase):

    def start_workers(self, config, workdir, name) -> Workers:
        log_dir = os.path.join(self.root, name)
        os.makedirs(log_dir)
        # Autograph's files go to TMPDIR, and a killed worker leaves them.
        workers = Workers(command_line(config, workdir), 2, log_dir, self.root)
        self.addCleanup(workers.kill)
        return workers

    def test_two_workers_killed_and_rerun_end_where_one_process_ends(self):
        self.root = testing.make_tempdir(self)
        config = frozen_backbone_config(
            self.root, steps=100, checkpoint_every=10
        )
        one_process = os.path.join(self.root, "one_process")
        trainer.train(config, one_process)

        workdir = os.path.join(self.root, "two_workers")
        workers = self.start_workers(config, workdir, "killed")
        checkpoints = os.path.join(workdir, "checkpoints")
        worker1_temp = os.path.join(workdir, "worker1_temp")
        deadline = time.monotonic() + 240
        # Killed once the chief has a checkpoint and worker 1 its folder.
        while not (
            tf.train.latest_checkpoint(checkpoints)
            and os.path.isdir(worker1_temp)
        ):
            for index, process in enumerate(workers.processes):
                self.assertIsNone(process.poll(), workers.log(index)[-3000:])
            self.assertLess(
                time.monotonic(),
                deadline,
                "no checkpoint and worker folder in 240 s",
            )
            time.sleep(0.05)
        # Both still training when killed (a worker that ended on its own
        # would have removed its temporary folder: its log says why).
        for index, process in enumerate(workers.processes):
            self.assertIsNone(process.poll(), workers.log(index)[-3000:])
        workers.kill()
        killed_at = training.trained_steps(workdir)
        self.assertLess(killed_at, 100, "training finished before the kill")
        self.assertTrue(os.path.isdir(worker1_temp), workers.log(1)[-3000:])

        resumed = self.start_workers(config, workdir, "resumed")
        resumed.wait(self)
        self.assertIn("Not the chief", resumed.log(1))
        for index in range(2):
            match = re.search(
                r"Resuming from (\S+) at step (\d+)", resumed.log(index)
            )
            self.assertIsNotNone(match, resumed.log(index)[-3000:])
            # Every worker restores the chief's checkpoint.
            self.assertEqual(os.path.dirname(match.group(1)), checkpoints)
            self.assertEqual(int(match.group(2)), killed_at)
        self.assertEqual(training.trained_steps(workdir), 100)

        # The losses of every step (both runs' events) and the final weights
        # are those of one process with the same global batch.
        expected = loss_summaries(one_process)
        self.assertEqual(sorted(expected), list(range(1, 101)))
        self.assertAllClose(
            loss_summaries(workdir), expected, rtol=1e-5, atol=1e-6
        )
        trained = keras.saving.load_model(
            os.path.join(workdir, config_lib.EXTRACTOR_FILE)
        ).get_weights()
        reference = keras.saving.load_model(
            os.path.join(one_process, config_lib.EXTRACTOR_FILE)
        ).get_weights()
        for weight, expected_weight in zip(trained, reference):
            self.assertAllClose(weight, expected_weight, atol=1e-5)

        # One set of outputs, the chief's (an events file per run); worker 1
        # removed its temporary folder, the killed run's included.
        self.assertEqual(
            sorted(set(listing(workdir))), sorted(set(listing(one_process)))
        )


if __name__ == "__main__":
    tf.test.main()
