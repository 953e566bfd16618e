"""Tests for beau_tf.datasets.grocery, on a tiny fake layout and on the real data."""

import csv
import os
import subprocess
import sys

from absl.testing import absltest

from beau_tf.data import catalog
from beau_tf.datasets import grocery
from tests.fixtures import shared_data
from tests.fixtures import testing

_CLASSES = """\
Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),\
Iconic Image Path (str),Product Description Path (str)
Granny-Smith,0,Apple,0,/iconic-images-and-descriptions/Fruit/Apple/\
Granny-Smith/Granny-Smith_Iconic.jpg,/unused.txt
Pink-Lady,1,Apple,0,/iconic-images-and-descriptions/Fruit/Apple/\
Pink-Lady/Pink-Lady_Iconic.jpg,/unused.txt
Oatly-Milk,2,Oat-Milk,1,/iconic-images-and-descriptions/Packages/Oat-Milk/\
Oatly-Milk_Iconic.jpg,/unused.txt"""


def _write(root, relative, text="x"):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _fake_dataset(root):
    """Writes a three-product dataset/ folder; pixels are never decoded."""
    dataset = os.path.join(root, "dataset")
    _write(dataset, "classes.csv", _CLASSES)
    for line in _CLASSES.splitlines()[1:]:
        _write(dataset, line.split(",")[4].lstrip("/"))
    val = [
        "val/Fruit/Apple/Pink-Lady/Pink-Lady_001.jpg, 1, 0",
        "val/Packages/Oat-Milk/Oatly-Milk/Oatly-Milk_001.jpg, 2, 1",
    ]
    train = ["train/Fruit/Apple/Granny-Smith/Granny-Smith_001.jpg, 0, 0"]
    for relative in val + train:
        _write(dataset, relative.split(",")[0])
    _write(dataset, "val.txt", "\n".join(val) + "\n")
    _write(dataset, "train.txt", "\n".join(train) + "\n\n")
    return dataset


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


class FakeLayoutTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.root = testing.make_tempdir(self, "beau_tf_grocery_")
        self.dataset = _fake_dataset(self.root)
        self.out = os.path.join(self.root, "out", "grocery")

    def test_writes_all_files(self):
        written = grocery.convert_grocery_store(self.dataset, self.out)
        self.assertEqual(
            written,
            {
                name: os.path.join(self.out, f"{name}.csv")
                for name in (
                    "catalog",
                    "queries_val",
                    "queries_train",
                    "queries_dev2",
                    "photos_unlabelled",
                    "coarse",
                )
            },
        )
        iconic = os.path.join(self.dataset, grocery._ICONIC_DIR)
        self.assertEqual(
            _read(written["catalog"]),
            [
                ["item_id", "path"],
                [
                    "Granny-Smith",
                    f"{iconic}/Fruit/Apple/Granny-Smith/Granny-Smith_Iconic.jpg",
                ],
                [
                    "Oatly-Milk",
                    f"{iconic}/Packages/Oat-Milk/Oatly-Milk_Iconic.jpg",
                ],
                [
                    "Pink-Lady",
                    f"{iconic}/Fruit/Apple/Pink-Lady/Pink-Lady_Iconic.jpg",
                ],
            ],
        )
        self.assertEqual(
            _read(written["coarse"]),
            [
                ["item_id", "coarse_class_name", "group"],
                ["Granny-Smith", "Apple", "fruit_vegetables"],
                ["Oatly-Milk", "Oat-Milk", "packages"],
                ["Pink-Lady", "Apple", "fruit_vegetables"],
            ],
        )
        self.assertEqual(
            [
                (os.path.relpath(q.path, self.dataset), q.item_id)
                for q in catalog.read_queries(written["queries_val"])
            ],
            [
                ("val/Fruit/Apple/Pink-Lady/Pink-Lady_001.jpg", "Pink-Lady"),
                (
                    "val/Packages/Oat-Milk/Oatly-Milk/Oatly-Milk_001.jpg",
                    "Oatly-Milk",
                ),
            ],
        )
        self.assertEqual(
            [q.item_id for q in catalog.read_queries(written["queries_train"])],
            ["Granny-Smith"],
        )
        items = catalog.list_catalog(written["catalog"])
        self.assertEqual(
            [(i.item_id, i.label) for i in items],
            [("Granny-Smith", 0), ("Oatly-Milk", 1), ("Pink-Lady", 2)],
        )

    def test_dev2_is_every_eighth_train_photo_and_the_rest_unlabelled(self):
        train = [
            f"train/Fruit/Apple/Granny-Smith/Granny-Smith_{i:03d}.jpg, 0, 0"
            for i in range(17)
        ]
        for line in train:
            _write(self.dataset, line.split(",")[0])
        _write(self.dataset, "train.txt", "\n".join(train) + "\n")
        written = grocery.convert_grocery_store(self.dataset, self.out)
        dev2 = catalog.read_queries(written["queries_dev2"])
        self.assertEqual(
            [os.path.basename(q.path) for q in dev2],
            [
                "Granny-Smith_000.jpg",
                "Granny-Smith_008.jpg",
                "Granny-Smith_016.jpg",
            ],
        )
        unlabelled = _read(written["photos_unlabelled"])
        self.assertEqual(unlabelled[0], ["path"])
        self.assertLen(unlabelled, 1 + 14)
        self.assertNotIn(dev2[1].path, [row[0] for row in unlabelled])

    def test_optional_test_split(self):
        _write(self.dataset, "test/Pink-Lady_9.jpg")
        _write(self.dataset, "test.txt", "test/Pink-Lady_9.jpg, 1, 0\n")
        written = grocery.convert_grocery_store(self.dataset, self.out)
        self.assertEqual(
            [q.item_id for q in catalog.read_queries(written["queries_test"])],
            ["Pink-Lady"],
        )

    def test_parent_folder_is_refused_with_a_hint(self):
        with self.assertRaisesRegex(
            ValueError,
            r"is not GroceryStoreDataset's dataset/ folder: it lacks "
            r"classes\.csv.*did you mean .*/dataset\?",
        ):
            grocery.convert_grocery_store(self.root, self.out)

    def test_missing_folder(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            grocery.convert_grocery_store(
                os.path.join(self.root, "nope"), self.out
            )

    def test_bad_split_line_writes_nothing(self):
        cases = (
            (
                "val/x.jpg, 7, 0\n",
                ValueError,
                r"val\.txt, line 1: fine class id 7 is not in classes.csv",
            ),
            (
                "val/x.jpg, 1, 5\n",
                ValueError,
                "line 1: coarse class id 5 contradicts",
            ),
            (
                "val/x.jpg, 1\n",
                ValueError,
                "line 1: expected 'path, fine_id, coarse_id'",
            ),
            ("\nval/gone.jpg, 1, 0\n", FileNotFoundError, "line 2: .*gone.jpg"),
        )
        for text, error, pattern in cases:
            with self.subTest(text=text):
                _write(self.dataset, "val.txt", text)
                with self.assertRaisesRegex(error, pattern):
                    grocery.convert_grocery_store(self.dataset, self.out)
                self.assertFalse(os.path.exists(self.out))

    def test_missing_iconic_image(self):
        os.remove(
            os.path.join(
                self.dataset,
                grocery._ICONIC_DIR,
                "Packages/Oat-Milk/Oatly-Milk_Iconic.jpg",
            )
        )
        with self.assertRaisesRegex(
            FileNotFoundError,
            r"classes\.csv, line 4: iconic image .*"
            r"Oatly-Milk_Iconic\.jpg does not exist",
        ):
            grocery.convert_grocery_store(self.dataset, self.out)

    def test_command_line(self):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "beau_tf.convert_grocery",
                f"--dataset_dir={self.dataset}",
                f"--out_dir={self.out}",
            ],
            cwd=testing.REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLen(_read(os.path.join(self.out, "catalog.csv")), 4)


class RealDatasetTest(absltest.TestCase):
    """On ../shared/data/grocery-store (or $BEAU_TF_SHARED_DATA); skips without."""

    def test_convert(self):
        dataset = shared_data.grocery_dataset_dir()
        out = testing.make_tempdir(self, "beau_tf_grocery_")
        written = grocery.convert_grocery_store(str(dataset), out)

        items = catalog.list_catalog(written["catalog"])
        self.assertLen(items, 81)
        self.assertEqual(items[0].item_id, "Alpro-Blueberry-Soyghurt")
        catalogue_ids = {item.item_id for item in items}
        self.assertIn("Golden-Delicious", catalogue_ids)

        val = catalog.read_queries(written["queries_val"])
        self.assertLen(val, 296)
        self.assertContainsSubset({q.item_id for q in val}, catalogue_ids)
        self.assertLen({q.item_id for q in val}, 60)
        train = catalog.read_queries(written["queries_train"])
        self.assertLen(train, 2640)
        self.assertEqual({q.item_id for q in train}, catalogue_ids)
        # dev2 is train.txt's lines 1, 9, 17, ...; the rest is unlabelled.
        dev2 = catalog.read_queries(written["queries_dev2"])
        self.assertLen(dev2, 330)
        self.assertEqual(dev2[:2], [train[0], train[8]])
        unlabelled = catalog.list_photos(written["photos_unlabelled"])
        self.assertLen(unlabelled, 2310)
        self.assertEqual(_read(written["photos_unlabelled"])[0], ["path"])
        self.assertEqual(
            set(unlabelled) | {q.path for q in dev2}, {q.path for q in train}
        )

        groups = [row[2] for row in _read(written["coarse"])[1:]]
        self.assertEqual(
            (groups.count("packages"), groups.count("fruit_vegetables")),
            (31, 50),
        )


if __name__ == "__main__":
    absltest.main()
