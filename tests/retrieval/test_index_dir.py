"""Tests for beau_tf.retrieval.index_dir: one atomic writer, one manifest,
every index type."""

import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from beau_tf.retrieval import brute_force_index
from beau_tf.common import files
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.retrieval import indexes
from beau_tf.retrieval import scann_index
from tests.fixtures import vectors

NUM_ITEMS, DIM, K = 300, 16, 5
IDENTITY = {
    "model_name": "beau",
    "model_version": 3,
    "signature_fingerprint": "abc123",
    "embedding_dim": DIM,
}
PARAMS = {
    "brute_force": scann_index.IndexParams("brute_force", K),
    "ah": scann_index.IndexParams("ah", K, reorder=50),
    "tree_ah": scann_index.IndexParams(
        "tree_ah", K, num_leaves=10, num_leaves_to_search=3, reorder=50
    ),
}


def _catalog(seed: int = 0) -> index_dir_lib.EmbeddedCatalog:
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((NUM_ITEMS, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    ids = [f"item-{i:04d}" for i in range(NUM_ITEMS)]
    paths = [f"/catalogue/{i}.jpg" for i in ids]
    return index_dir_lib.EmbeddedCatalog(embeddings, ids, paths, IDENTITY)


class IndexDirTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.catalog = _catalog()
        cls.queries = _catalog(seed=1).embeddings[:20]

    def setUp(self):
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.root = directory.name
        self.target = os.path.join(self.root, "index")

    def _build(self, mode: str = "tree_ah") -> str:
        return index_dir_lib.build_and_save(
            self.catalog, self.target, PARAMS[mode]
        )

    def _manifest(self) -> dict:
        with open(os.path.join(self.target, "manifest.json")) as stream:
            return json.load(stream)

    @parameterized.named_parameters(
        ("scann_brute_force", "scann", PARAMS["brute_force"]),
        ("scann_ah", "scann", PARAMS["ah"]),
        ("scann_tree_ah", "scann", PARAMS["tree_ah"]),
        ("brute_force", "brute_force", None),
    )
    def test_write_move_load_gives_the_same_results(self, kind, settings):
        built = indexes.index_type(kind).build(
            self.catalog.embeddings,
            self.catalog.item_ids,
            IDENTITY,
            settings,
        )
        written = index_dir_lib.write_index(
            built, self.catalog.embeddings, self.catalog.paths, self.target
        )
        self.assertEqual(written, self.target)
        self.assertEqual(os.listdir(self.root), ["index"])  # no leftovers
        moved = os.path.join(self.root, "moved")
        os.rename(self.target, moved)  # ScaNN must not record the path.
        bundle = index_dir_lib.load_index(moved)
        self.assertEqual(bundle.directory, moved)
        self.assertIsInstance(bundle.index, type(built))
        self.assertEqual(bundle.index.directory, moved)
        self.assertEqual(bundle.index.item_ids, self.catalog.item_ids)
        np.testing.assert_array_equal(
            bundle.embeddings, self.catalog.embeddings
        )
        self.assertEqual(bundle.paths["item-0007"], "/catalogue/item-0007.jpg")
        want_ids, want_scores = built.search(self.queries, K)
        got_ids, got_scores = bundle.index.search(self.queries, K)
        self.assertEqual(got_ids, want_ids)
        np.testing.assert_array_equal(got_scores, want_scores)

    def test_one_manifest_covers_every_file(self):
        self._build()
        manifest = self._manifest()
        self.assertEqual(manifest["format_version"], 2)
        self.assertEqual(manifest["kind"], "scann")
        self.assertEqual(manifest["model_identity"], IDENTITY)
        self.assertEqual(manifest["num_items"], NUM_ITEMS)
        self.assertEqual(manifest["params"]["mode"], "tree_ah")
        self.assertEqual(manifest["scann_version"], "1.4.2")
        self.assertNotIn("tuning", manifest)  # built without a target
        on_disk = {
            os.path.relpath(os.path.join(folder, name), self.target)
            for folder, _, names in os.walk(self.target)
            for name in names
        }
        self.assertEqual(set(manifest["files"]), on_disk - {"manifest.json"})
        self.assertIn("embeddings.npy", manifest["files"])
        self.assertIn("items.csv", manifest["files"])
        self.assertIn("scann/dataset.npy", manifest["files"])
        # One copy of the ids, no nested folders.
        self.assertNotIn("item_ids.json", on_disk)
        self.assertFalse(
            os.path.exists(os.path.join(self.target, "scann/scann"))
        )

    def test_the_manifest_records_the_tuning(self):
        index_dir_lib.build_and_save(
            self.catalog, self.target, PARAMS["tree_ah"], target_recall=0.9
        )
        bundle = index_dir_lib.load_index(self.target)
        tuning = bundle.manifest["tuning"]
        self.assertEqual(tuning["target_recall"], 0.9)
        self.assertEqual(tuning["k"], K)
        self.assertEqual(tuning["num_queries"], NUM_ITEMS)  # all 300 rows
        self.assertEqual(tuning["met"], tuning["recall"] >= 0.9)
        params = bundle.index.params
        self.assertEqual(
            (params.num_leaves_to_search, params.reorder),
            (tuning["num_leaves_to_search"], tuning["reorder"]),
        )
        # The loaded index searches with the tuned setting by default.
        want_ids, _ = bundle.index.search(
            self.queries,
            K,
            leaves_to_search=params.num_leaves_to_search,
            reorder=params.reorder,
        )
        self.assertEqual(bundle.index.search(self.queries, K)[0], want_ids)

    def test_a_non_empty_folder_is_never_overwritten(self):
        self._build("brute_force")
        before = open(os.path.join(self.target, "manifest.json")).read()
        with self.assertRaisesRegex(FileExistsError, "not empty"):
            self._build("ah")
        after = open(os.path.join(self.target, "manifest.json")).read()
        self.assertEqual(after, before)
        self.assertEqual(os.listdir(self.root), ["index"])

    def test_an_empty_folder_is_filled(self):
        os.makedirs(self.target)
        self._build()
        self.assertEqual(
            index_dir_lib.load_index(self.target).index.num_items, NUM_ITEMS
        )

    def test_check_free_refuses_a_file(self):
        with open(self.target, "w") as stream:
            stream.write("x")
        with self.assertRaisesRegex(FileExistsError, "is a file"):
            index_dir_lib.check_free(self.target)

    def test_load_names_a_missing_folder(self):
        with self.assertRaisesRegex(
            FileNotFoundError, "nowhere.*does not exist"
        ):
            index_dir_lib.load_index(os.path.join(self.root, "nowhere"))

    @parameterized.parameters(
        "manifest.json", "items.csv", "embeddings.npy", "scann/dataset.npy"
    )
    def test_load_names_a_missing_file(self, part):
        self._build()
        os.remove(os.path.join(self.target, part))
        with self.assertRaisesRegex(FileNotFoundError, f"index.*{part}"):
            index_dir_lib.load_index(self.target)

    @parameterized.parameters(
        "items.csv",
        "embeddings.npy",
        "scann/dataset.npy",
        "scann/hashed_dataset.npy",
    )
    def test_load_refuses_a_flipped_byte(self, part):
        # ScaNN itself would crash the process on some of these; the
        # manifest's checksums must catch every one first.
        self._build()
        path = os.path.join(self.target, part)
        with open(path, "rb") as stream:
            content = bytearray(stream.read())
        content[len(content) // 2] ^= 0x01
        with open(path, "wb") as stream:
            stream.write(content)
        with self.assertRaisesRegex(ValueError, f"index.*{part}.*SHA-256"):
            index_dir_lib.load_index(self.target)

    def test_load_refuses_a_truncated_file(self):
        self._build()
        with open(os.path.join(self.target, "embeddings.npy"), "wb") as stream:
            stream.write(b"short")
        with self.assertRaisesRegex(ValueError, "embeddings.npy.*bytes"):
            index_dir_lib.load_index(self.target)

    def test_embeddings_are_memory_mapped_read_only(self):
        embeddings = index_dir_lib.load_index(self._build()).embeddings
        self.assertIsInstance(embeddings, np.memmap)
        self.assertFalse(embeddings.flags.writeable)

    def test_load_refuses_items_without_their_header(self):
        self._build()
        items = os.path.join(self.target, "items.csv")
        with open(items) as stream:
            lines = stream.read().splitlines()[1:]
        with open(items, "w") as stream:
            stream.write("\n".join(lines) + "\n")
        manifest = self._manifest()  # the checksums say the file is whole
        manifest["files"]["items.csv"] = {
            "bytes": os.path.getsize(items),
            "sha256": files.file_sha256(items),
        }
        with open(os.path.join(self.target, "manifest.json"), "w") as stream:
            json.dump(manifest, stream)
        with self.assertRaisesRegex(ValueError, "without the header"):
            index_dir_lib.load_index(self.target)

    def test_load_refuses_a_corrupt_manifest(self):
        self._build()
        with open(os.path.join(self.target, "manifest.json"), "w") as stream:
            stream.write("{not json")
        with self.assertRaisesRegex(ValueError, "corrupt manifest.json"):
            index_dir_lib.load_index(self.target)

    def test_brute_force_keeps_no_files_of_its_own(self):
        index_dir_lib.build_and_save(
            self.catalog, self.target, index_type="brute_force"
        )
        manifest = self._manifest()
        self.assertEqual(manifest["kind"], "brute_force")
        self.assertEqual(
            set(manifest["files"]), {"embeddings.npy", "items.csv"}
        )
        self.assertNotIn("params", manifest)
        self.assertEqual(
            sorted(os.listdir(self.target)),
            ["embeddings.npy", "items.csv", "manifest.json"],
        )
        bundle = index_dir_lib.load_index(self.target)
        self.assertIsInstance(bundle.index, brute_force_index.BruteForceIndex)
        # Against the ScaNN-free NumPy oracle.
        rows, scores = vectors.argsort_oracle(
            self.catalog.embeddings, self.queries, K
        )
        ids, got_scores = bundle.index.search(self.queries, K)
        self.assertEqual(
            ids, [[self.catalog.item_ids[r] for r in row] for row in rows]
        )
        np.testing.assert_allclose(got_scores, scores, atol=1e-6)

    def test_a_manifest_without_a_kind_loads_as_scann(self):
        # Index folders written before index types were recorded.
        self._build("tree_ah")
        manifest = self._manifest()
        del manifest["kind"]
        with open(os.path.join(self.target, "manifest.json"), "w") as stream:
            json.dump(manifest, stream)
        bundle = index_dir_lib.load_index(self.target)
        self.assertIsInstance(bundle.index, scann_index.ScannIndex)
        self.assertEqual(bundle.index.params, PARAMS["tree_ah"])
        self.assertLen(bundle.index.search(self.queries, K)[0], 20)

    def test_load_refuses_an_unknown_kind(self):
        self._build("brute_force")
        manifest = dict(self._manifest(), kind="faiss")
        with open(os.path.join(self.target, "manifest.json"), "w") as stream:
            json.dump(manifest, stream)
        with self.assertRaisesRegex(
            ValueError,
            r"index is a 'faiss' index, a kind this beau_tf does not know "
            r"\(brute_force, milvus, scann\); rebuild",
        ):
            index_dir_lib.load_index(self.target)

    def test_load_refuses_corrupt_scann_params(self):
        self._build("ah")
        manifest = self._manifest()
        manifest["params"]["mode"] = "hnsw"
        with open(os.path.join(self.target, "manifest.json"), "w") as stream:
            json.dump(manifest, stream)
        with self.assertRaisesRegex(
            ValueError, "corrupt manifest.json: IndexParams mode='hnsw'"
        ):
            index_dir_lib.load_index(self.target)

    def test_a_target_recall_tunes_scann_only(self):
        with self.assertRaisesRegex(ValueError, "brute_force index has no"):
            index_dir_lib.build_and_save(
                self.catalog,
                self.target,
                target_recall=0.9,
                index_type="brute_force",
            )
        self.assertFalse(os.path.exists(self.target))

    def test_write_refuses_rows_that_do_not_match(self):
        index = scann_index.ScannIndex.build(
            self.catalog.embeddings, self.catalog.item_ids, IDENTITY
        )
        with self.assertRaisesRegex(ValueError, "paths for an index"):
            index_dir_lib.write_index(
                index, self.catalog.embeddings, ["x.jpg"], self.target
            )
        self.assertFalse(os.path.exists(self.target))


if __name__ == "__main__":
    absltest.main()
