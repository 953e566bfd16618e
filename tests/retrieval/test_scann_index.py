"""Tests for beau_tf.scann_index against a NumPy brute-force oracle."""

import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.retrieval import scann_index

NUM_ITEMS, DIM, NUM_QUERIES, K = 2000, 32, 100, 10
IDENTITY = {
    "model_name": "beau",
    "model_version": 3,
    "signature_fingerprint": "abc123def456abc123",
    "embedding_dim": DIM,
}
PARAMS = {
    "brute_force": scann_index.IndexParams("brute_force", K),
    "ah": scann_index.IndexParams("ah", K, reorder=100),
    "tree_ah": scann_index.IndexParams(
        "tree_ah", K, num_leaves=20, num_leaves_to_search=5, reorder=100
    ),
}


def _normalised(rng, rows, dim=DIM):
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng, rows, centres, spread=0.7):
    """Normalised points around `centres`, clustered as embeddings are."""
    picked = centres[rng.integers(len(centres), size=rows)]
    noise = _normalised(rng, rows, centres.shape[1]) * spread
    return _normalised_rows(picked + noise)


def _normalised_rows(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _oracle(embeddings, queries, k):
    scores = queries @ embeddings.T  # (Q, N)
    rows = np.argsort(-scores, axis=1)[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


def _recall(found_ids, true_rows, ids):
    hits = sum(
        len(set(found) & {ids[r] for r in rows})
        for found, rows in zip(found_ids, true_rows)
    )
    return hits / true_rows.size


class ScannIndexTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        centres = _normalised(rng, 40)
        cls.embeddings = _clustered(rng, NUM_ITEMS, centres)
        cls.queries = _clustered(rng, NUM_QUERIES, centres)
        cls.ids = [f"item-{i:05d}" for i in range(NUM_ITEMS)]
        cls.indexes = {
            mode: scann_index.build_index(
                cls.embeddings, cls.ids, IDENTITY, params
            )
            for mode, params in PARAMS.items()
        }
        cls.true_rows, cls.true_scores = _oracle(cls.embeddings, cls.queries, K)

    def setUp(self):
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.root = directory.name

    def test_brute_force_equals_the_oracle(self):
        ids, scores = self.indexes["brute_force"].search(self.queries, K)
        self.assertEqual(
            ids, [[self.ids[r] for r in rows] for rows in self.true_rows]
        )
        self.assertEqual(scores.dtype, np.float32)
        np.testing.assert_allclose(scores, self.true_scores, atol=1e-5)

    @parameterized.parameters("ah", "tree_ah")
    def test_approximate_modes_reach_recall(self, mode):
        ids, scores = self.indexes[mode].search(self.queries, K)
        self.assertGreaterEqual(_recall(ids, self.true_rows, self.ids), 0.9)
        # Rescored, so scores are the exact inner products of the ids found.
        rows = np.array([[int(i[5:]) for i in row] for row in ids])
        exact = np.einsum("qd,qkd->qk", self.queries, self.embeddings[rows])
        np.testing.assert_allclose(scores, exact, atol=1e-5)

    def test_tree_returns_k_even_beyond_the_searched_leaves(self):
        index = self.indexes["tree_ah"]
        ids, scores = index.search(self.queries[:3], 500, leaves_to_search=1)
        self.assertEqual([len(row) for row in ids], [500] * 3)
        self.assertEqual([len(set(row)) for row in ids], [500] * 3)
        self.assertFalse(np.isnan(scores).any())

    @parameterized.parameters("brute_force", "ah", "tree_ah")
    def test_save_rename_load_gives_the_same_results(self, mode):
        index = self.indexes[mode]
        saved = os.path.join(self.root, "saved")
        self.assertEqual(index.save(saved), saved)
        self.assertEqual(os.listdir(self.root), ["saved"])
        moved = os.path.join(self.root, "moved")
        os.rename(saved, moved)  # ScaNN must not have recorded the path.
        loaded = scann_index.CatalogIndex.load(moved)
        self.assertEqual(loaded.directory, moved)
        self.assertEqual(loaded.item_ids, self.ids)
        self.assertEqual(loaded.manifest, index.manifest)
        self.assertIn("scann/dataset.npy", loaded.manifest["files"])
        want_ids, want_scores = index.search(self.queries, K)
        got_ids, got_scores = loaded.search(self.queries, K)
        self.assertEqual(got_ids, want_ids)
        np.testing.assert_array_equal(got_scores, want_scores)

    def test_manifest(self):
        index = self.indexes["tree_ah"]
        index.save(self.root)  # An empty directory is fine.
        with open(os.path.join(self.root, "manifest.json")) as stream:
            manifest = json.load(stream)
        self.assertEqual(manifest["model_identity"], IDENTITY)
        self.assertEqual(manifest["num_items"], NUM_ITEMS)
        self.assertEqual(manifest["embedding_dim"], DIM)
        self.assertEqual(manifest["params"]["mode"], "tree_ah")
        self.assertEqual(manifest["params"]["num_leaves"], 20)
        self.assertEqual(manifest["format_version"], 1)
        self.assertEqual(manifest["scann_version"], "1.4.2")
        self.assertRegex(manifest["created"], r"^\d{4}-\d\d-\d\dT.*\+00:00$")
        with open(os.path.join(self.root, "item_ids.json")) as stream:
            self.assertEqual(json.load(stream), self.ids)

    def test_save_refuses_to_overwrite_unless_asked(self):
        target = os.path.join(self.root, "index")
        self.indexes["brute_force"].save(target)
        with self.assertRaisesRegex(FileExistsError, "index.*overwrite=True"):
            self.indexes["ah"].save(target)
        loaded = scann_index.CatalogIndex.load(target)
        self.assertEqual(loaded.params.mode, "brute_force")
        self.indexes["ah"].save(target, overwrite=True)
        self.assertEqual(
            scann_index.CatalogIndex.load(target).params.mode, "ah"
        )
        self.assertEqual(os.listdir(self.root), ["index"])

    def test_load_names_a_missing_directory(self):
        missing = os.path.join(self.root, "nowhere")
        with self.assertRaisesRegex(FileNotFoundError, "nowhere"):
            scann_index.CatalogIndex.load(missing)

    @parameterized.parameters("manifest.json", "item_ids.json", "scann")
    def test_load_names_a_missing_part(self, part):
        target = os.path.join(self.root, "index")
        self.indexes["ah"].save(target)
        path = os.path.join(target, part)
        if os.path.isdir(path):
            for name in os.listdir(path):
                os.remove(os.path.join(path, name))
            os.rmdir(path)
        else:
            os.remove(path)
        with self.assertRaisesRegex(FileNotFoundError, f"{target}.*{part}"):
            scann_index.CatalogIndex.load(target)

    @parameterized.named_parameters(
        ("manifest", "manifest.json", b"{not json", "manifest.json"),
        ("ids", "item_ids.json", b'["a", "b"]', "item_ids.json"),
        ("truncated", "scann/dataset.npy", b"garbage", "dataset.npy.*bytes"),
        ("flipped", "scann/hashed_dataset.npy", None, "hashed.*SHA-256"),
    )
    def test_load_names_a_corrupt_part(self, part, content, message):
        # ScaNN itself would crash the process on these; the manifest's
        # checksums must catch them first.
        target = os.path.join(self.root, "index")
        self.indexes["tree_ah"].save(target)
        path = os.path.join(target, part)
        if content is None:
            with open(path, "rb") as stream:
                content = bytearray(stream.read())
            content[-1] ^= 0xFF
        with open(path, "wb") as stream:
            stream.write(content)
        with self.assertRaisesRegex(ValueError, f"{target}.*{message}"):
            scann_index.CatalogIndex.load(target)

    def test_check_compatible(self):
        index = self.indexes["brute_force"]
        index.check_compatible(dict(IDENTITY))
        newer = dict(IDENTITY, model_version=4, signature_fingerprint="def")
        with self.assertRaises(ValueError) as caught:
            index.check_compatible(newer)
        message = str(caught.exception)
        self.assertIn("built with model beau version 3", message)
        self.assertIn("signature abc123def456…", message)
        self.assertIn("the model is model beau version 4", message)
        self.assertIn("signature def", message)
        self.assertIn("model_version, signature_fingerprint", message)
        self.assertIn("python -m beau_tf.index", message)

    def test_check_compatible_catches_embedding_size(self):
        with self.assertRaisesRegex(ValueError, "64-d.*embedding_dim"):
            self.indexes["ah"].check_compatible(
                dict(IDENTITY, embedding_dim=64)
            )

    def test_search_rejects_bad_queries_and_k(self):
        index = self.indexes["brute_force"]
        with self.assertRaisesRegex(ValueError, r"\(Q, 32\)"):
            index.search(self.queries[:, :16], K)
        with self.assertRaisesRegex(ValueError, "k=2001"):
            index.search(self.queries, NUM_ITEMS + 1)
        with self.assertRaisesRegex(ValueError, "NaN"):
            index.search(np.full((1, DIM), np.nan, np.float32), K)


class BuildValidationTest(parameterized.TestCase):

    def _build(self, embeddings=None, ids=None, identity=None, params=None):
        rng = np.random.default_rng(1)
        embeddings = _normalised(rng, 5) if embeddings is None else embeddings
        ids = [f"{i}" for i in range(len(embeddings))] if ids is None else ids
        return scann_index.build_index(
            embeddings, ids, identity or IDENTITY, params
        )

    def test_small_catalogue_defaults_to_brute_force(self):
        self.assertEqual(self._build().params.mode, "brute_force")

    def test_rejects_non_finite(self):
        x = _normalised(np.random.default_rng(2), 5)
        x[3, 0] = np.nan
        with self.assertRaisesRegex(ValueError, "row 3, item '3'"):
            self._build(x)

    def test_rejects_unnormalised(self):
        x = _normalised(np.random.default_rng(2), 5) * 2
        with self.assertRaisesRegex(ValueError, "not L2-normalised"):
            self._build(x)

    def test_rejects_empty(self):
        with self.assertRaisesRegex(ValueError, r"\(0, 32\)"):
            self._build(np.zeros((0, DIM), np.float32), [])

    def test_rejects_id_count(self):
        with self.assertRaisesRegex(ValueError, "4 item ids for 5"):
            self._build(ids=["a", "b", "c", "d"])

    def test_rejects_duplicate_ids(self):
        with self.assertRaisesRegex(ValueError, "'b' appears more than once"):
            self._build(ids=["a", "b", "c", "b", "e"])

    def test_rejects_identity_of_another_size(self):
        with self.assertRaisesRegex(ValueError, "embedding_dim=64.*32-d"):
            self._build(identity=dict(IDENTITY, embedding_dim=64))

    def test_rejects_identity_without_fingerprint(self):
        identity = {k: v for k, v in IDENTITY.items() if k != "model_name"}
        with self.assertRaisesRegex(ValueError, "model_name"):
            self._build(identity=identity)

    def test_params_are_checked(self):
        with self.assertRaisesRegex(ValueError, "mode='hnsw'"):
            scann_index.IndexParams("hnsw", K)
        with self.assertRaisesRegex(ValueError, "reorder=0"):
            scann_index.IndexParams("ah", K)
        with self.assertRaisesRegex(ValueError, "num_leaves_to_search=30"):
            scann_index.IndexParams(
                "tree_ah", K, num_leaves=20, num_leaves_to_search=30, reorder=50
            )


class ChooseIndexParamsTest(parameterized.TestCase):

    @parameterized.parameters(
        (1, "brute_force", 0),
        (19_999, "brute_force", 0),
        (20_000, "ah", 0),
        (99_999, "ah", 0),
        (100_000, "tree_ah", 316),
        (1_000_000, "tree_ah", 1000),
    )
    def test_mode_by_size(self, num_items, mode, num_leaves):
        params = scann_index.choose_index_params(num_items, 256)
        self.assertEqual(params.mode, mode)
        self.assertEqual(params.num_leaves, num_leaves)
        self.assertEqual(params.num_neighbors, 10)
        if mode != "brute_force":
            self.assertEqual(params.dimensions_per_block, 2)
            self.assertGreaterEqual(params.reorder, 100)
        if mode == "tree_ah":
            fraction = params.num_leaves_to_search / params.num_leaves
            self.assertBetween(fraction, 0.02, 0.15)

    def test_rejects_nonpositive_sizes(self):
        with self.assertRaisesRegex(ValueError, "num_items=0"):
            scann_index.choose_index_params(0, 256)


if __name__ == "__main__":
    absltest.main()
