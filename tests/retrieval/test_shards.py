"""Tests for beau_tf.retrieval.shards: bounds, writing and joining shards."""

import os
import tempfile
import unittest

import numpy as np

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import shards

IDENTITY = {"model_name": "m", "model_version": 1}


def _shard(rows: range, identity=IDENTITY) -> index_dir_lib.EmbeddedCatalog:
    embeddings = np.array([[float(i), 1.0] for i in rows], np.float32)
    ids = [f"item-{i}" for i in rows]
    return index_dir_lib.EmbeddedCatalog(
        embeddings, ids, [f"{i}.jpg" for i in ids], identity
    )


class ShardBoundsTest(unittest.TestCase):

    def test_shards_cover_the_catalogue_once_in_order(self):
        for num_items, num_shards in [(10, 3), (7, 7), (2, 5), (0, 2)]:
            bounds = [
                shards.shard_bounds(num_items, num_shards, i)
                for i in range(num_shards)
            ]
            covered = [n for start, stop in bounds for n in range(start, stop)]
            self.assertEqual(covered, list(range(num_items)))

    def test_bad_shard_index_is_named(self):
        for count, index in [(3, 3), (3, -1), (0, 0)]:
            with self.assertRaisesRegex(ValueError, f"shard_index={index}"):
                shards.shard_bounds(10, count, index)


class SaveAndMergeTest(unittest.TestCase):

    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.root = directory.name

    def test_merge_restores_the_catalogue_order(self):
        # Written out of order; merged in shard order.
        shards.save_shard(_shard(range(5, 10)), self.root, 2, 1)
        shards.save_shard(_shard(range(0, 5)), self.root, 2, 0)
        merged = shards.merge_shards(self.root)
        self.assertEqual(merged.item_ids, [f"item-{i}" for i in range(10)])
        np.testing.assert_array_equal(merged.embeddings[:, 0], np.arange(10))
        self.assertEqual(merged.model_identity, IDENTITY)

    def test_merge_into_a_memory_mapped_file(self):
        shards.save_shard(_shard(range(0, 4)), self.root, 2, 0)
        shards.save_shard(_shard(range(4, 7)), self.root, 2, 1)
        path = os.path.join(self.root, "joined.npy")
        merged = shards.merge_shards(self.root, path)
        self.assertIsInstance(merged.embeddings, np.memmap)
        merged.embeddings.flush()
        np.testing.assert_array_equal(np.load(path)[:, 0], np.arange(7))
        self.assertEqual(merged.item_ids, [f"item-{i}" for i in range(7)])

    def test_skipped_files_are_read_back_in_shard_order(self):
        shards.save_shard(
            _shard(range(5, 10)), self.root, 2, 1, [("x.jpg", "x.jpg is bad")]
        )
        shards.save_shard(_shard(range(0, 5)), self.root, 2, 0)
        self.assertEqual(
            shards.read_skipped(self.root), [("x.jpg", "x.jpg is bad")]
        )
        self.assertEqual(len(shards.merge_shards(self.root).item_ids), 10)

    def test_a_missing_shard_is_named(self):
        shards.save_shard(_shard(range(3)), self.root, 3, 0)
        shards.save_shard(_shard(range(6, 9)), self.root, 3, 2)
        with self.assertRaisesRegex(FileNotFoundError, "shard-00001-of-00003"):
            shards.merge_shards(self.root)

    def test_shards_of_two_models_are_refused(self):
        shards.save_shard(_shard(range(3)), self.root, 2, 0)
        other = dict(IDENTITY, model_version=2)
        shards.save_shard(_shard(range(3, 6), other), self.root, 2, 1)
        with self.assertRaisesRegex(ValueError, "different models"):
            shards.merge_shards(self.root)

    def test_an_empty_folder_says_how_to_make_shards(self):
        with self.assertRaisesRegex(FileNotFoundError, "--num_shards"):
            shards.merge_shards(self.root)
        self.assertEqual(os.listdir(self.root), [])
