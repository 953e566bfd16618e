"""Tests for beau_tf.datasets.synthetic.catalogue, at 64 px and a few products."""

import csv
import hashlib
import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
from PIL import Image

from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.datasets.synthetic import products
from beau_tf.datasets.synthetic import scenes
from tests.fixtures import testing

_SIZE = 64


def _clear_caches():
    """Makes the next call render again instead of recalling a cached layer."""
    products._product_layer.cache_clear()
    products.product_sprite.cache_clear()


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _digest_tree(root: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, root)] = hashlib.sha256(
                    f.read()
                ).hexdigest()
    return digests


class WriteSyntheticCatalogTest(absltest.TestCase):

    def _write(self, out_dir, **kwargs):
        params = dict(
            num_products=3,
            queries_per_product=2,
            num_backgrounds=2,
            image_size=_SIZE,
            seed=0,
        )
        params.update(kwargs)
        return synthetic.write_synthetic_catalog(out_dir, **params)

    def test_files_and_csvs_are_consistent(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "synthetic"
        )
        catalog = self._write(out_dir)
        self.assertEqual((catalog.num_products, catalog.num_queries), (3, 6))
        self.assertEqual(catalog.catalog_dir, os.path.join(out_dir, "catalog"))
        catalogue_rows = _read_csv(catalog.catalog_csv)
        self.assertEqual(
            [r["item_id"] for r in catalogue_rows], ["p000", "p001", "p002"]
        )
        self.assertCountEqual(
            os.listdir(catalog.catalog_dir),
            ["p000.png", "p001.png", "p002.png"],
        )
        for row in catalogue_rows:
            path = os.path.join(
                os.path.dirname(catalog.catalog_csv), row["path"]
            )
            self.assertEqual(os.path.dirname(path), catalog.catalog_dir)
            with Image.open(path) as image:
                self.assertEqual(
                    (image.size, image.mode), ((_SIZE, _SIZE), "RGB")
                )
        query_rows = _read_csv(catalog.queries_csv)
        self.assertLen(query_rows, 6)
        ids = {r["item_id"] for r in catalogue_rows}
        for row in query_rows:
            self.assertIn(row["item_id"], ids)
            self.assertNotIn(
                row["item_id"], row["path"]
            )  # Names leak no label.
            with Image.open(os.path.join(out_dir, row["path"])) as image:
                self.assertEqual(image.size, (_SIZE, _SIZE))
            with Image.open(os.path.join(out_dir, row["mask_path"])) as mask:
                self.assertEqual((mask.size, mask.mode), ((_SIZE, _SIZE), "L"))
                values = np.unique(np.asarray(mask))
            self.assertEqual(values.tolist(), [0, 255])
        self.assertEqual(
            synthetic.read_query_masks(catalog.queries_csv),
            {
                os.path.join(out_dir, row["path"]): os.path.join(
                    out_dir, row["mask_path"]
                )
                for row in query_rows
            },
        )
        # The photo folder holds photos only (it serves as one elsewhere).
        self.assertLen(os.listdir(os.path.join(out_dir, "queries")), 6)
        self.assertLen(os.listdir(catalog.backgrounds_dir), 2)
        self.assertTrue(
            all(
                name.endswith(".jpg")
                for name in os.listdir(catalog.backgrounds_dir)
            )
        )
        with open(os.path.join(out_dir, "manifest.json")) as f:
            self.assertEqual(json.load(f)["num_products"], 3)
        # Nothing temporary is left beside the catalogue.
        self.assertEqual(os.listdir(os.path.dirname(out_dir)), ["synthetic"])

    def test_same_seed_same_bytes(self):
        root = testing.make_tempdir(self, "beau_tf_synthetic_")
        self._write(os.path.join(root, "a"))
        _clear_caches()
        self._write(os.path.join(root, "b"))
        self._write(os.path.join(root, "c"), seed=1)
        a = _digest_tree(os.path.join(root, "a"))
        self.assertEqual(a, _digest_tree(os.path.join(root, "b")))
        c = _digest_tree(os.path.join(root, "c"))
        self.assertNotEqual(a["catalog/p000.png"], c["catalog/p000.png"])

    def test_reuses_a_complete_catalogue(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "synthetic"
        )
        first = self._write(out_dir)
        probe = os.path.join(out_dir, "catalog", "p000.png")
        before = os.stat(probe)
        self.assertEqual(self._write(out_dir), first)
        after = os.stat(probe)
        self.assertEqual(
            (before.st_ino, before.st_mtime_ns),
            (after.st_ino, after.st_mtime_ns),
        )

    def test_replaces_its_own_catalogue_with_other_parameters(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "synthetic"
        )
        self._write(out_dir)
        catalog = self._write(out_dir, num_products=2, queries_per_product=1)
        self.assertEqual((catalog.num_products, catalog.num_queries), (2, 2))
        self.assertLen(_read_csv(catalog.queries_csv), 2)
        self.assertLen(os.listdir(catalog.catalog_dir), 2)

    def test_masks_are_those_of_the_photos(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "synthetic"
        )
        catalog = self._write(out_dir, num_products=2, queries_per_product=1)
        rows = _read_csv(catalog.queries_csv)
        for index, row in enumerate(rows):
            _, expected = scenes.render_query_and_mask(index, 2, 0, _SIZE)
            with Image.open(os.path.join(out_dir, row["mask_path"])) as mask:
                np.testing.assert_array_equal(np.asarray(mask) > 0, expected)

    def test_replaces_a_catalogue_of_an_older_format(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "synthetic"
        )
        self._write(out_dir)
        manifest_path = os.path.join(out_dir, "manifest.json")
        with open(manifest_path) as f:
            manifest = json.load(f)
        manifest["format_version"] = 1  # before the query masks
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        os.remove(os.path.join(out_dir, "query_masks", "q0000.png"))
        catalog = self._write(out_dir)
        self.assertLen(synthetic.read_query_masks(catalog.queries_csv), 6)
        self.assertLen(os.listdir(os.path.join(out_dir, "query_masks")), 6)

    def test_read_query_masks_names_a_catalogue_without_masks(self):
        folder = testing.make_tempdir(self, "beau_tf_synthetic_")
        path = os.path.join(folder, "queries.csv")
        with open(path, "w") as f:
            f.write("path,item_id\nqueries/q0000.jpg,p000\n")
        with self.assertRaisesRegex(ValueError, "no mask_path column"):
            synthetic.read_query_masks(path)

    def test_writes_into_an_empty_directory(self):
        out_dir = testing.make_tempdir(self, "beau_tf_synthetic_")
        catalog = self._write(out_dir)
        self.assertTrue(os.path.isfile(catalog.catalog_csv))

    def test_refuses_a_foreign_directory(self):
        out_dir = testing.make_tempdir(self, "beau_tf_synthetic_")
        with open(os.path.join(out_dir, "notes.txt"), "w") as f:
            f.write("mine")
        with self.assertRaisesRegex(FileExistsError, "not empty.*notes.txt"):
            self._write(out_dir)
        self.assertEqual(os.listdir(out_dir), ["notes.txt"])

    def test_refuses_our_catalogue_with_foreign_files_added(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "synthetic"
        )
        self._write(out_dir)
        with open(os.path.join(out_dir, "results.txt"), "w") as f:
            f.write("keep me")
        with self.assertRaises(FileExistsError):
            self._write(out_dir, seed=1)
        self.assertTrue(os.path.isfile(os.path.join(out_dir, "results.txt")))

    def test_command_line(self):
        out_dir = os.path.join(
            testing.make_tempdir(self, "beau_tf_synthetic_"), "cli"
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "beau_tf.make_synthetic",
                f"--out_dir={out_dir}",
                "--num_products=2",
                "--queries_per_product=1",
                "--num_backgrounds=1",
                "--image_size=32",
            ],
            check=True,
            cwd=testing.REPO,
            capture_output=True,
            timeout=120,
        )
        self.assertLen(_read_csv(os.path.join(out_dir, "queries.csv")), 2)


if __name__ == "__main__":
    absltest.main()
