"""Tests for beau_tf.retrieval.beam_embedding: on two DirectRunner worker
processes the pipeline builds the index the local path builds, and counts
and names the file it skipped.

Apache Beam is an optional extra (it pins protobuf<7), so these tests skip in
the core install; scripts/test.sh runs them in .venv-beam. Without Beam, the
command line's one-line answer to --runner is tested instead.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import pytest

from beau_tf.data import catalog as catalog_lib
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import shards
from beau_tf.serving import contract
from tests.fixtures import testing
from tests.fixtures import tiny_export

TWO_WORKERS = [
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
]


def _write_catalogue(folder: str) -> str:
    """Four good images and one that is not an image; returns the bad one."""
    os.makedirs(folder)
    good = tiny_export.good_bytes()
    for name, data in zip(["a.jpg", "b.png", "d.png", "e.jpg"], good):
        with open(os.path.join(folder, name), "wb") as stream:
            stream.write(data)
    bad = os.path.join(folder, "c.png")
    with open(bad, "wb") as stream:
        stream.write(tiny_export.bad_bytes()["text"])
    return bad


def _run_index_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beau_tf.index", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


class BeamEmbeddingTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        pytest.importorskip("apache_beam")
        from beau_tf.retrieval import beam_embedding

        cls.beam_embedding = beam_embedding
        directory = tempfile.TemporaryDirectory(prefix="beau_tf_")
        cls.addClassCleanup(directory.cleanup)
        cls.root = directory.name
        cls.model = tiny_export.export_tiny(os.path.join(cls.root, "export"))
        cls.identity = contract.model_identity(cls.model)
        cls.bad = _write_catalogue(os.path.join(cls.root, "catalogue"))
        cls.items = catalog_lib.list_catalog(
            os.path.join(cls.root, "catalogue")
        )

    def _local_index(self) -> index_dir_lib.IndexBundle:
        embedded = shards.embed_catalog_shard(
            self.model, self.identity, self.items, batch_size=2
        )
        folder = os.path.join(testing.make_tempdir(self), "local")
        return index_dir_lib.load_index(
            index_dir_lib.build_and_save(embedded, folder)
        )

    def test_two_workers_build_the_local_index_and_name_the_bad_file(self):
        shard_dir = testing.make_tempdir(self)
        result = self.beam_embedding.embed_catalog(
            self.model,
            self.identity,
            self.items,
            self.beam_embedding.pipeline_options("DirectRunner", TWO_WORKERS),
            shard_dir=shard_dir,
            batch_size=2,
            items_per_shard=2,  # 3 shards, joined back in catalogue order
        )
        folder = os.path.join(testing.make_tempdir(self), "beam")
        beam = index_dir_lib.load_index(
            index_dir_lib.build_and_save(result.embedded, folder)
        )
        local = self._local_index()

        self.assertEqual(beam.index.item_ids, ["a", "b", "d", "e"])
        self.assertEqual(beam.index.item_ids, local.index.item_ids)
        self.assertEqual(beam.paths, local.paths)
        np.testing.assert_allclose(beam.embeddings, local.embeddings, atol=1e-6)
        beam.index.check_compatible(self.identity)
        self.assertEqual(len(result.skipped), 1)
        path, reason = result.skipped[0]
        self.assertEqual(path, self.bad)
        self.assertIn(self.bad, reason)
        self.assertIn("not a decodable image", reason)
        self.assertEqual(
            result.counters,
            {
                self.beam_embedding.EMBEDDED_COUNTER: 4,
                self.beam_embedding.SKIPPED_COUNTER: 1,
            },
        )
        self.assertEqual(
            len(
                [
                    n
                    for n in os.listdir(shard_dir)
                    if n.endswith("-of-00003.npz")
                ]
            ),
            3,
        )

    def test_a_shard_dir_holding_shards_is_refused_before_any_work(self):
        shard_dir = testing.make_tempdir(self)
        with open(os.path.join(shard_dir, "shard-00000-of-00001.npz"), "w"):
            pass
        options = self.beam_embedding.pipeline_options("DirectRunner", [])
        with self.assertRaisesRegex(FileExistsError, "already holds shards"):
            self.beam_embedding.embed_catalog(
                self.model, self.identity, self.items, options, shard_dir
            )

    def test_an_unknown_beam_option_is_named(self):
        with self.assertRaisesRegex(ValueError, "--direct_num_wokers"):
            self.beam_embedding.pipeline_options(
                "DirectRunner", ["--direct_num_wokers=2"]
            )
        with self.assertRaisesRegex(ValueError, "before --"):
            self.beam_embedding.pipeline_options(
                "DirectRunner", ["--runner=FlinkRunner"]
            )

    def test_the_command_line_hands_what_follows_double_dash_to_beam(self):
        done = _run_index_cli(
            f"--model={self.model}",
            f"--catalog={os.path.join(self.root, 'catalogue')}",
            f"--index_dir={testing.make_tempdir(self)}/index",
            "--runner=DirectRunner",
            "--",
            "--direct_num_wokers=2",
        )
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("--direct_num_wokers", done.stderr.splitlines()[-1])
        self.assertNotIn("Traceback", done.stderr)


@pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is not None,
    reason="Apache Beam is installed",
)
class WithoutBeamTest(unittest.TestCase):

    def test_runner_asks_for_the_beam_extra_in_one_line(self):
        done = _run_index_cli(
            "--model=exported/beau_tf/1",
            "--catalog=catalogue",
            f"--index_dir={testing.make_tempdir(self)}/index",
            "--runner=DirectRunner",
            "--",
            "--direct_num_workers=2",
        )
        self.assertEqual(done.returncode, 1, done.stderr)
        # Its own venv, as the README says (issue 21, finding 14): Beam
        # pins protobuf<7.
        self.assertIn(
            "python3.11 -m venv .venv-beam && .venv-beam/bin/pip install -e "
            "'.[beam]'",
            done.stderr,
        )
        self.assertNotIn("Traceback", done.stderr)

    def test_help_sends_the_beam_extra_to_its_own_venv(self):
        done = subprocess.run(
            [sys.executable, "-m", "beau_tf.index", "--helpfull"],
            cwd=testing.REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("pip install 'beau_tf[beam]'", done.stdout)
        self.assertIn(".venv-beam", done.stdout)
