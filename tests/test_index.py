"""Tests for the index command line (python -m beau_tf.index) on shards:
every index type, no model needed, in subprocesses as users run it."""

import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pytest

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import shards
from tests.fixtures import milvus as milvus_fixture
from tests.fixtures import testing
from tests.fixtures import vectors

NUM_ITEMS, DIM, K = 40, 8, 5
IDENTITY = dict(vectors.IDENTITY, embedding_dim=DIM)

# Each command imports TensorFlow: seconds apiece.
pytestmark = pytest.mark.slow


def _index_command(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beau_tf.index", *flags],
        cwd=testing.REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


class IndexTypeFlagTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        cls.embeddings = vectors.unit_rows(rng, NUM_ITEMS, DIM)
        cls.queries = vectors.unit_rows(rng, 3, DIM)
        cls.ids = vectors.item_ids(NUM_ITEMS)

    def _shard_dir(self) -> str:
        shard_dir = os.path.join(testing.make_tempdir(self), "shards")
        shards.save_shard(
            index_dir_lib.EmbeddedCatalog(
                self.embeddings,
                self.ids,
                [f"{i}.jpg" for i in self.ids],
                IDENTITY,
            ),
            shard_dir,
            1,
            0,
        )
        return shard_dir

    @parameterized.parameters(
        ([], "scann"),
        (["--index_type=brute_force"], "brute_force"),
    )
    def test_merged_shards_are_indexed_as_asked(self, flags, kind):
        index_dir = os.path.join(testing.make_tempdir(self), "index")
        result = _index_command(
            f"--merge_shards={self._shard_dir()}",
            f"--index_dir={index_dir}",
            *flags,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        # The shards were joined in a scratch folder beside it, now gone.
        self.assertEqual(os.listdir(os.path.dirname(index_dir)), ["index"])
        bundle = index_dir_lib.load_index(index_dir)
        self.assertEqual(bundle.manifest["kind"], kind)
        self.assertEqual(bundle.index.kind, kind)
        # 40 items: ScaNN brute force by size, so both are exact.
        rows, _ = vectors.argsort_oracle(self.embeddings, self.queries, K)
        ids, _ = bundle.index.search(self.queries, K)
        self.assertEqual(ids, [[self.ids[r] for r in row] for row in rows])

    def test_a_rescoring_type_needs_scann(self):
        index_dir = os.path.join(testing.make_tempdir(self), "index")
        result = _index_command(
            f"--merge_shards={self._shard_dir()}",
            f"--index_dir={index_dir}",
            "--index_type=brute_force",
            "--reorder_dtype=int8",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--reorder_dtype configures ScaNN", result.stderr)
        self.assertFalse(os.path.exists(index_dir))

    def test_a_target_recall_needs_scann(self):
        index_dir = os.path.join(testing.make_tempdir(self), "index")
        result = _index_command(
            f"--merge_shards={self._shard_dir()}",
            f"--index_dir={index_dir}",
            "--index_type=brute_force",
            "--target_recall=0.9",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "--target_recall tunes ScaNN's search; --index_type=brute_force "
            "has nothing to tune.",
            result.stderr,
        )
        self.assertFalse(os.path.exists(index_dir))

    def test_milvus_indexes_into_the_uri_given(self):
        milvus_fixture.require_milvus()
        index_dir = os.path.join(testing.make_tempdir(self), "index")
        # milvus-lite: a local engine in the command's process.
        uri = os.path.join(testing.make_tempdir(self), "catalogue.db")
        result = _index_command(
            f"--merge_shards={self._shard_dir()}",
            f"--index_dir={index_dir}",
            "--index_type=milvus",
            f"--milvus_uri={uri}",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        bundle = index_dir_lib.load_index(index_dir)
        self.assertEqual(bundle.index.kind, "milvus")
        self.assertEqual(bundle.manifest["milvus"]["uri"], uri)
        rows, _ = vectors.argsort_oracle(self.embeddings, self.queries, K)
        ids, _ = bundle.index.search(self.queries, K)
        self.assertEqual(ids, [[self.ids[r] for r in row] for row in rows])

    def test_milvus_needs_a_uri(self):
        index_dir = os.path.join(testing.make_tempdir(self), "index")
        result = _index_command(
            f"--merge_shards={self._shard_dir()}",
            f"--index_dir={index_dir}",
            "--index_type=milvus",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--index_type=milvus needs --milvus_uri", result.stderr)
        self.assertFalse(os.path.exists(index_dir))


if __name__ == "__main__":
    absltest.main()
