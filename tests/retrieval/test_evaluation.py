"""Tests for beau_tf.retrieval.evaluation and beau_tf.retrieval.query on an
in-memory index: fast, no model, no subprocess."""

import os
import tempfile
import unittest

import numpy as np

from beau_tf.retrieval import evaluation
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import query
from beau_tf.retrieval import scann_index

IDENTITY = {
    "model_name": "m",
    "model_version": 1,
    "signature_fingerprint": "f",
    "embedding_dim": 3,
}


def _bundle() -> index_dir_lib.IndexBundle:
    """Three catalogue items on the axes."""
    embeddings = np.eye(3, dtype=np.float32)
    ids = ["a", "b", "c"]
    index = scann_index.ScannIndex.build(embeddings, ids, IDENTITY)
    paths = {i: f"/cat/{i}.jpg" for i in ids}
    return index_dir_lib.IndexBundle(index, embeddings, paths, "(memory)")


def _unit(*rows) -> np.ndarray:
    x = np.array(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class SearchTest(unittest.TestCase):

    def test_exact_and_scann_agree_and_k_is_clipped(self):
        bundle = _bundle()
        queries = _unit([0.9, 0.3, 0.1], [0.0, 0.2, 1.0])
        for exact in (True, False):
            ids, scores = query.search(bundle, queries, k=10, exact=exact)
            self.assertEqual(ids, [["a", "b", "c"], ["c", "b", "a"]])
            self.assertEqual(scores.shape, (2, 3))
            self.assertTrue(np.all(np.diff(scores, axis=1) <= 0))

    def test_results_as_json_and_text(self):
        scores = np.array([[0.9, 0.5]], np.float32)
        as_json = query.results_as_json(["q.jpg"], [["a", "b"]], scores)
        self.assertEqual(
            as_json,
            [
                {
                    "query": "q.jpg",
                    "results": [
                        {"item_id": "a", "score": 0.9},
                        {"item_id": "b", "score": 0.5},
                    ],
                }
            ],
        )
        text = query.results_as_text(["q.jpg"], [["a", "b"]], scores)
        self.assertEqual(text.splitlines()[1], "   1. 0.9000  a")


class ListQueryPathsTest(unittest.TestCase):

    def test_a_folder_passed_as_a_query_says_use_query_dir(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(IsADirectoryError, "--query_dir"):
                query.list_query_paths([root], [])
            with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
                query.list_query_paths([os.path.join(root, "x.jpg")], [])


class EvaluateTest(unittest.TestCase):

    def test_hand_computed_metrics(self):
        # q1 finds a first (AP 1); q2's product b comes second (AP 1/2).
        queries = _unit([1.0, 0.1, 0.0], [0.0, 0.5, 0.6])
        rows = evaluation.evaluate(
            _bundle(), queries, ["a", "b"], ["g1", "g2"], k=3
        )
        self.assertEqual([row["method"] for row in rows], ["exact", "scann"])
        for row in rows:
            self.assertAlmostEqual(row["map@3_hits"], 0.75)
            self.assertAlmostEqual(row["recall@1"], 0.5)
        self.assertEqual(rows[1]["scann_recall@3_vs_exact"], 1.0)
        self.assertAlmostEqual(rows[0]["by_group"]["g2"]["map@3_hits"], 0.5)

    def test_unusable_queries_are_misses(self):
        # Issue 21, finding 13: 8 queries, 4 unusable, scored MAP 1.0.
        queries = _unit(*np.eye(3)[[0, 1, 2, 0]])
        rows = evaluation.evaluate(
            _bundle(),
            queries,
            ["a", "b", "c", "a"],
            ["g1", "g1", "g2", "g2"],
            k=3,
            missed_ids=["a", "b", "c", "a"],
            missed_groups=["g1", "g1", "g2", "g3"],
        )
        for row in rows:
            self.assertEqual(row["num_queries"], 8)
            self.assertEqual(row["unusable_queries"], 4)
            self.assertAlmostEqual(row["map@3_hits"], 0.5)
            self.assertAlmostEqual(row["recall@1"], 0.5)
        self.assertAlmostEqual(rows[0]["by_group"]["g3"]["recall@3"], 0.0)
        self.assertEqual(rows[0]["by_group"]["g1"]["num_queries"], 4)

    def test_unknown_products_are_refused_unless_allowed(self):
        with self.assertRaisesRegex(
            ValueError, r"q.csv: 2 of 3 queries .* \(e.g. x, y\).*--allow"
        ):
            evaluation.check_known_ids(
                ["a", "y", "x"], ["a", "b"], "q.csv", False
            )
        self.assertEqual(
            evaluation.check_known_ids(["a", "y"], ["a", "b"], "q.csv", True), 1
        )
        self.assertEqual(
            evaluation.check_known_ids(["a", "b"], ["a", "b"], "q.csv", False),
            0,
        )

    def test_table_rows_indent_each_group_below_its_method(self):
        rows = [{"method": "exact", "x": 1, "by_group": {"g": {"x": 2}}}]
        self.assertEqual(
            evaluation.table_rows(rows),
            [rows[0], {"x": 2, "method": "  exact [g]"}],
        )

    def test_read_groups(self):
        with tempfile.TemporaryDirectory() as root:
            good = os.path.join(root, "groups.csv")
            with open(good, "w") as stream:
                stream.write("item_id,group\na,fruit\n")
            self.assertEqual(evaluation.read_groups(good), {"a": "fruit"})
            bad = os.path.join(root, "bad.csv")
            with open(bad, "w") as stream:
                stream.write("id,kind\na,fruit\n")
            with self.assertRaisesRegex(ValueError, "bad.csv.*item_id,group"):
                evaluation.read_groups(bad)
