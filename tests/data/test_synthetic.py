"""Tests for the synthetic catalogue, at 64 px and a handful of products."""

import ast
import csv
import hashlib
import itertools
import json
import os
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
from PIL import ImageFont
from scipy import ndimage

from beau_tf.data import synthetic
from tests import testing

_SIZE = 64
# Products 0, 2, ..., 12 cycle through all seven shapes.
_ONE_OF_EACH_SHAPE = tuple(range(0, 14, 2))


def _clear_caches():
    """Makes the next call render again instead of recalling a cached layer."""
    synthetic._product_layer.cache_clear()
    synthetic._product_sprite.cache_clear()


def _non_white_fraction(image: np.ndarray) -> float:
    return float(np.mean(np.any(image < 250, axis=-1)))


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


class RenderProductTest(parameterized.TestCase):

    @parameterized.parameters(*_ONE_OF_EACH_SHAPE)
    def test_product_on_white(self, index):
        image = synthetic.render_product(index, _SIZE)
        self.assertEqual(image.shape, (_SIZE, _SIZE, 3))
        self.assertEqual(image.dtype, np.uint8)
        for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
            np.testing.assert_array_equal(corner, [255, 255, 255])
        self.assertBetween(_non_white_fraction(image), 0.1, 0.8)

    def test_deterministic(self):
        first = synthetic.render_product(5, _SIZE, seed=3)
        _clear_caches()
        np.testing.assert_array_equal(
            first, synthetic.render_product(5, _SIZE, seed=3)
        )

    def test_seed_changes_the_catalogue(self):
        self.assertGreater(
            np.mean(
                np.abs(
                    synthetic.render_product(0, _SIZE, seed=0).astype(int)
                    - synthetic.render_product(0, _SIZE, seed=1)
                )
            ),
            2.0,
        )

    def test_products_differ(self):
        images = [
            synthetic.render_product(i, _SIZE).astype(np.float32)
            for i in range(14)
        ]
        for (i, a), (j, b) in itertools.combinations(enumerate(images), 2):
            with self.subTest(pair=(i, j)):
                # Variants of one line differ only in label or colour: a few grey
                # levels on average over the frame, far above 0.
                self.assertGreater(np.mean(np.abs(a - b)), 2.0)

    def test_some_white_print_inside_products(self):
        # Mask extraction must keep white inside the product as foreground: the
        # catalogue holds such white regions not connected to the background.
        with_white_inside = 0
        for i in range(14):
            white = np.all(synthetic.render_product(i, 128) >= 250, axis=-1)
            labels, _ = ndimage.label(white)
            background = labels[0, 0]
            inside = (labels > 0) & (labels != background)
            with_white_inside += inside.sum() >= 10
        self.assertGreaterEqual(with_white_inside, 3)

    def test_without_a_scalable_font(self):
        # Pillow built without FreeType only has the fixed-size bitmap font.
        bitmap = getattr(ImageFont, "load_default_imagefont", None)
        if bitmap is None:
            self.skipTest("this Pillow cannot load its bitmap font alone")
        _clear_caches()
        self.addCleanup(_clear_caches)
        with mock.patch.object(synthetic, "_font", lambda size: bitmap()):
            image = synthetic.render_product(0, 128)
        self.assertBetween(_non_white_fraction(image), 0.1, 0.8)

    def test_rejects_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "product_index=-1"):
            synthetic.render_product(-1)
        with self.assertRaisesRegex(ValueError, "size=8"):
            synthetic.render_product(0, size=8)


class RenderQueryTest(parameterized.TestCase):

    @parameterized.parameters(*_ONE_OF_EACH_SHAPE)
    def test_query_is_a_photo_not_the_catalogue_image(self, index):
        query = synthetic.render_query(index, 14, 0, _SIZE)
        self.assertEqual(query.shape, (_SIZE, _SIZE, 3))
        self.assertEqual(query.dtype, np.uint8)
        catalogue = synthetic.render_product(index, _SIZE)
        self.assertGreater(np.mean(np.abs(query.astype(int) - catalogue)), 20)
        self.assertLess(np.mean(np.all(query > 245, axis=-1)), 0.5)

    def test_deterministic_and_distinct_per_query_index(self):
        first = synthetic.render_query(3, 6, 1, _SIZE, seed=2)
        _clear_caches()
        np.testing.assert_array_equal(
            first, synthetic.render_query(3, 6, 1, _SIZE, seed=2)
        )
        other = synthetic.render_query(3, 6, 0, _SIZE, seed=2)
        self.assertGreater(np.mean(np.abs(first.astype(int) - other)), 10)

    def test_single_product_catalogue(self):
        query = synthetic.render_query(0, 1, 0, _SIZE)  # No distractors exist.
        self.assertEqual(query.shape, (_SIZE, _SIZE, 3))

    def test_rejects_index_outside_catalogue(self):
        with self.assertRaisesRegex(ValueError, r"product_index=4.*\[0, 4\)"):
            synthetic.render_query(4, 4, 0, _SIZE)

    def test_background_has_texture(self):
        background = synthetic.render_background(0, _SIZE)
        self.assertEqual(background.shape, (_SIZE, _SIZE, 3))
        self.assertGreater(background.astype(np.float32).std(), 5)

    def test_independent_of_training_augmentation(self):
        # Queries drawn by the training augmentation would make evaluation
        # circular; the renderer must stay separate.
        with open(synthetic.__file__) as f:
            tree = ast.parse(f.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
                imported.update(
                    f"{node.module}.{alias.name}" for alias in node.names
                )
        self.assertFalse(
            [name for name in imported if name.startswith("beau_tf")]
        )


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
        repo = os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "beau_tf.data.make_synthetic",
                f"--out_dir={out_dir}",
                "--num_products=2",
                "--queries_per_product=1",
                "--num_backgrounds=1",
                "--image_size=32",
            ],
            check=True,
            cwd=repo,
            capture_output=True,
            timeout=120,
        )
        self.assertLen(_read_csv(os.path.join(out_dir, "queries.csv")), 2)


if __name__ == "__main__":
    absltest.main()
