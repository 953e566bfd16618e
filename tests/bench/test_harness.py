"""Tests for bench.harness, for what every bench module must have, and for
how the tests run a bench (`tests.fixtures.processes`)."""

import ast
import os
import pathlib
import subprocess
import sys
import time

from absl.testing import absltest

from beau_tf.datasets import grocery
import bench
from bench import harness
from tests.fixtures import processes
from tests.fixtures import testing

_BENCH_DIR = pathlib.Path(harness.__file__).parent


# A parent that starts a child which would sleep for a minute, writes the
# child's pid to argv[1] and sleeps too: a bench and its service. The child
# holds none of the parent's pipes, so only the group's kill can end it.
_PARENT_OF_A_SLEEPER = """
import pathlib, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
pathlib.Path(sys.argv[1]).write_text(str(child.pid))
time.sleep(60)
"""


def _running(pid: int) -> bool:
    """Whether `pid` is alive (a zombie, killed but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class RunWholeGroupTest(absltest.TestCase):

    def test_a_command_past_its_timeout_is_killed_with_its_children(self):
        pid_file = os.path.join(testing.make_tempdir(self), "child.pid")
        with self.assertRaises(subprocess.TimeoutExpired):
            processes.run_whole_group(
                [sys.executable, "-c", _PARENT_OF_A_SLEEPER, pid_file],
                timeout=5,
            )
        child = int(pathlib.Path(pid_file).read_text())
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(_running(child), f"child {child} still runs")

    def test_a_command_within_its_timeout_gives_its_output(self):
        result = processes.run_whole_group(
            [sys.executable, "-c", "import sys; print('out'); sys.exit(3)"],
            timeout=30,
        )
        self.assertEqual((result.returncode, result.stdout), (3, "out\n"))


class SideBySideTest(absltest.TestCase):

    def test_contenders_alternate_round_by_round(self):
        calls = []

        def contender(name, values):
            values = iter(values)

            def measure():
                calls.append(name)
                return next(values)

            return measure

        measured = harness.side_by_side(
            {
                "a": contender("a", [1.0, 3.0, 2.0]),
                "b": contender("b", [4.0] * 3),
            },
            rounds=3,
        )
        self.assertEqual(calls, ["a", "b"] * 3)
        self.assertEqual(
            measured.values, {"a": [1.0, 3.0, 2.0], "b": [4.0] * 3}
        )
        self.assertEqual(measured.median("a"), 2.0)
        self.assertEqual(measured.ratio("a", "b"), 0.5)
        self.assertEqual(
            measured.rows("x/s", {"a": "A"})[0],
            {"contender": "A", "median x/s": 2.0, "rounds": [1.0, 3.0, 2.0]},
        )

    def test_warmup_calls_each_contender_once_unrecorded(self):
        calls = []
        measured = harness.side_by_side(
            {"a": lambda: calls.append("a") or 1.0}, rounds=2, warmup=True
        )
        self.assertLen(calls, 3)
        self.assertEqual(measured.values["a"], [1.0, 1.0])


class ResultsRecordTest(absltest.TestCase):

    def test_record_says_how_and_where_it_was_measured(self):
        record = harness.results_record("some_bench", [{"x": 1}], extra=2)
        self.assertEqual(record["bench"], "some_bench")
        self.assertTrue(
            record["command"].startswith("python -m bench.some_bench")
        )
        self.assertRegex(record["commit"], r"^[0-9a-f]{40}(-dirty)?$")
        self.assertRegex(record["date"], r"^\d{4}-\d\d-\d\dT")
        self.assertGreaterEqual(record["machine"]["cores"], 1)
        self.assertEqual(record["extra"], 2)
        self.assertEqual(record["rows"], [{"x": 1}])


class GroceryLikeTest(absltest.TestCase):

    def test_the_converter_reads_it_as_groceries(self):
        root = testing.make_tempdir(self, "beau_tf_grocery_like_")
        dataset = harness.write_grocery_like(root, num_products=9)
        csvs = grocery.convert_grocery_store(dataset, f"{root}/csv")
        with open(csvs["catalog"]) as stream:
            self.assertLen(stream.read().splitlines(), 1 + 9)
        with open(csvs["queries_val"]) as stream:
            self.assertLen(stream.read().splitlines(), 1 + 3)  # every 3rd
        with open(csvs["coarse"]) as stream:
            groups = {line.split(",")[2] for line in stream.read().split()[1:]}
        self.assertEqual(groups, {"packages", "fruit_vegetables"})


class FullTrainingModelTest(absltest.TestCase):

    def _trainable_weights(self, **depth) -> int:
        model = harness.full_training_model("tiny", 32, 3, **depth)
        return harness.trainable_weight_count(model)

    def test_depth_sets_what_trains(self):
        frozen = self._trainable_weights(trainable_from="none")
        last_stage = self._trainable_weights(trainable_from="stage4_conv")
        every_layer = self._trainable_weights(trainable_from="")
        but_batchnorm = self._trainable_weights(
            trainable_from="", train_batchnorm=False
        )
        self.assertLess(frozen, last_stage)
        self.assertLess(last_stage, every_layer)
        self.assertLess(but_batchnorm, every_layer)
        self.assertLess(last_stage, but_batchnorm)


class BenchModulesTest(absltest.TestCase):
    """Each bench names its command, runs through the harness, has a smoke."""

    def test_every_bench_is_a_harness_module(self):
        benches = sorted(
            p
            for p in _BENCH_DIR.glob("*.py")
            if p.stem not in bench.SHARED_MODULES
        )
        self.assertNotEmpty(benches)
        for path in benches:
            with self.subTest(path.stem):
                source = path.read_text()
                tree = ast.parse(source)
                self.assertIn(
                    f"python -m bench.{path.stem}", ast.get_docstring(tree)
                )
                assigned = {
                    target.id
                    for node in tree.body
                    if isinstance(node, ast.Assign)
                    for target in node.targets
                    if isinstance(target, ast.Name)
                }
                self.assertIn("SMOKE", assigned)
                self.assertIn("harness.run(main, smoke=SMOKE)", source)
                self.assertNotIn("sys.path", source)


if __name__ == "__main__":
    absltest.main()
