"""Tests for beau_tf.data.catalog."""

import os

from absl.testing import absltest

from beau_tf.data import catalog
from tests.fixtures import testing


def _touch(root, relative, content=b"not decoded"):
    """Creates a file; its bytes are no image, which listing must not notice."""
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


def _write_text(root, relative, text):
    return _touch(root, relative, text.encode("utf-8"))


class DirectoryCatalogTest(absltest.TestCase):

    def test_nested_directory(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        for name in (
            "shoes/red.JPG",
            "bags/tote.png",
            "bags/deep/mini.webp",
            "readme.txt",
            ".thumbs/x.jpg",
        ):
            _touch(root, name)
        items = catalog.list_catalog(root)
        self.assertEqual(
            [i.item_id for i in items],
            ["bags/deep/mini", "bags/tote", "shoes/red"],
        )
        self.assertEqual([i.label for i in items], [0, 1, 2])
        self.assertEqual(
            items[2].path, os.path.abspath(os.path.join(root, "shoes/red.JPG"))
        )
        for item in items:
            self.assertTrue(os.path.isabs(item.path))

    def test_flat_perfect_500k_layout(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        for item_id in ("1000017", "0000042", "999"):
            _touch(root, f"{item_id}.jpg")
        items = catalog.list_catalog(root)
        self.assertEqual(
            [(i.item_id, i.label) for i in items],
            [("0000042", 0), ("1000017", 1), ("999", 2)],
        )

    def test_two_files_for_one_id(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        _touch(root, "a.jpg")
        _touch(root, "a.png")
        with self.assertRaisesRegex(
            ValueError, r"a\.jpg and .*a\.png both map to item_id 'a'"
        ):
            catalog.list_catalog(root)

    def test_empty_directory(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        _touch(root, "notes.txt")
        with self.assertRaisesRegex(
            ValueError, r"no images found under .*\(\.jpg, \.jpeg"
        ):
            catalog.list_catalog(root)

    def test_missing_source(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            catalog.list_catalog(
                os.path.join(
                    testing.make_tempdir(self, "beau_tf_catalog_"), "nope"
                )
            )

    def test_source_is_neither_directory_nor_csv(self):
        path = _touch(
            testing.make_tempdir(self, "beau_tf_catalog_"), "list.txt"
        )
        with self.assertRaisesRegex(ValueError, "neither a directory"):
            catalog.list_catalog(path)


class CsvCatalogTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.root = testing.make_tempdir(self, "beau_tf_catalog_")
        self.elsewhere = _touch(
            testing.make_tempdir(self, "beau_tf_catalog_"), "abs.jpg"
        )
        _touch(self.root, "img/b.jpg")
        _touch(self.root, "img/a.png")

    def _csv(self, text, name="catalog.csv"):
        return _write_text(self.root, name, text)

    def test_relative_and_absolute_paths_sorted_and_labelled(self):
        path = self._csv(
            "item_id,path,notes\n"
            "zeta,img/b.jpg,\n"
            f"alpha,{self.elsewhere},extra columns are ignored\n"
            "mid , img/a.png \n"
            "\n"
        )
        items = catalog.list_catalog(path)
        self.assertEqual(
            items,
            [
                catalog.CatalogItem("alpha", self.elsewhere, 0),
                catalog.CatalogItem(
                    "mid", os.path.join(self.root, "img/a.png"), 1
                ),
                catalog.CatalogItem(
                    "zeta", os.path.join(self.root, "img/b.jpg"), 2
                ),
            ],
        )

    def test_byte_order_mark_and_column_order(self):
        path = self._csv("\ufeffpath,item_id\nimg/b.jpg,b\n")
        self.assertEqual([i.item_id for i in catalog.list_catalog(path)], ["b"])

    def test_missing_column(self):
        path = self._csv("id,path\nb,img/b.jpg\n")
        with self.assertRaisesRegex(
            ValueError,
            r"catalog\.csv, line 1: header id,path lacks column\(s\) "
            r"item_id \(header item_id,path expected\)",
        ):
            catalog.list_catalog(path)

    def test_short_row(self):
        path = self._csv("item_id,path\nb,img/b.jpg\nonly-an-id\n")
        with self.assertRaisesRegex(
            ValueError, r"catalog\.csv, line 3: empty or missing path"
        ):
            catalog.list_catalog(path)

    def test_too_many_values(self):
        path = self._csv("item_id,path\nb,img/b.jpg,oops\n")
        with self.assertRaisesRegex(ValueError, r"line 2: more values"):
            catalog.list_catalog(path)

    def test_empty_id(self):
        path = self._csv("item_id,path\nb,img/b.jpg\n  ,img/a.png\n")
        with self.assertRaisesRegex(
            ValueError, r"catalog\.csv, line 3: empty or missing item_id"
        ):
            catalog.list_catalog(path)

    def test_ids_with_dot_segments_are_refused(self):
        # Issue 21, finding 8: the page's thumbnail URL of "lips/../b" is
        # item "b"'s.
        for item_id, segment in [
            ("lips/../b", "'..'"),
            ("./b", "'.'"),
            ("lips//b", "''"),
            ("b/", "''"),
            ("lips\\b", "a backslash"),
        ]:
            path = self._csv(
                f"item_id,path\nb,img/b.jpg\n{item_id},img/a.png\n"
            )
            with self.assertRaisesRegex(
                ValueError,
                f"line 3: item_id .* has {segment} as a path segment",
            ):
                catalog.list_catalog(path)
        path = self._csv("item_id,path\nlips/ruby-01.v2,img/a.png\n")
        self.assertEqual(
            [item.item_id for item in catalog.list_catalog(path)],
            ["lips/ruby-01.v2"],
        )

    def test_duplicate_id(self):
        path = self._csv(
            "item_id,path\nb,img/b.jpg\nx,img/a.png\nb,img/a.png\n"
        )
        with self.assertRaisesRegex(
            ValueError,
            r"line 4: item_id 'b' is already listed on line 2; "
            "a catalogue has one image per product",
        ):
            catalog.list_catalog(path)

    def test_missing_image(self):
        path = self._csv("item_id,path\nb,img/b.jpg\nc,img/gone.jpg\n")
        with self.assertRaisesRegex(
            FileNotFoundError,
            r"lists 1 image file\(s\) that do not exist or are folders "
            r"\(line 3: .*img/gone\.jpg\)",
        ):
            catalog.list_catalog(path)

    def test_folder_listed_as_image(self):
        os.makedirs(os.path.join(self.root, "img", "shelf"))
        path = self._csv("item_id,path\nb,img/b.jpg\nc,img/shelf\n")
        with self.assertRaisesRegex(
            FileNotFoundError, r"line 3: .*img/shelf \(a folder\)"
        ):
            catalog.list_catalog(path)

    def test_empty_file_and_header_only(self):
        with self.assertRaisesRegex(ValueError, r"empty\.csv is empty"):
            catalog.list_catalog(self._csv("", name="empty.csv"))
        with self.assertRaisesRegex(ValueError, "lists no catalogue images"):
            catalog.list_catalog(self._csv("item_id,path\n", name="header.csv"))

    def test_written_csv_reads_back(self):
        path = os.path.join(self.root, "out.csv")
        catalog.write_csv(
            path,
            catalog.CATALOG_COLUMNS,
            [("a, with comma", "img/a.png"), ("b", "img/b.jpg")],
        )
        self.assertEqual(
            [i.item_id for i in catalog.list_catalog(path)],
            ["a, with comma", "b"],
        )


class QueriesTest(absltest.TestCase):

    def test_read_queries(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        _touch(root, "photos/1.jpg")
        _touch(root, "photos/2.jpg")
        path = _write_text(
            root, "q.csv", "path,item_id\nphotos/2.jpg,b\nphotos/1.jpg,a\n"
        )
        self.assertEqual(
            catalog.read_queries(path),
            [
                catalog.Query(os.path.join(root, "photos/2.jpg"), "b"),
                catalog.Query(os.path.join(root, "photos/1.jpg"), "a"),
            ],
        )

    def test_errors(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        _touch(root, "1.jpg")
        cases = (
            ("image,item_id\n1.jpg,a\n", ValueError, "lacks column.*path"),
            (
                "path,item_id\n1.jpg,\n",
                ValueError,
                "line 2: empty or missing item",
            ),
            (
                "path,item_id\n1.jpg,a\n1.jpg,b\n",
                ValueError,
                "line 3: .*already listed on line 2",
            ),
            ("path,item_id\n2.jpg,a\n", FileNotFoundError, "line 2: .*2.jpg"),
            ("path,item_id\n", ValueError, "lists no queries"),
        )
        for text, error, pattern in cases:
            with self.subTest(text=text):
                path = _write_text(root, "q.csv", text)
                with self.assertRaisesRegex(error, pattern):
                    catalog.read_queries(path)


class PhotosTest(absltest.TestCase):

    def test_a_folder_is_searched_recursively(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        _touch(root, "shop/a/1.jpg")
        _touch(root, "shop/b/2.png")
        _touch(root, "shop/notes.txt")
        self.assertEqual(
            catalog.list_photos(os.path.join(root, "shop")),
            [
                os.path.join(root, "shop", "a", "1.jpg"),
                os.path.join(root, "shop", "b", "2.png"),
            ],
        )

    def test_a_csv_lists_paths_and_ignores_other_columns(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        _touch(root, "photos/1.jpg")
        path = _write_text(root, "p.csv", "path,item_id\nphotos/1.jpg,a\n")
        self.assertEqual(
            catalog.list_photos(path), [os.path.join(root, "photos/1.jpg")]
        )

    def test_errors(self):
        root = testing.make_tempdir(self, "beau_tf_catalog_")
        os.makedirs(os.path.join(root, "empty"))
        cases = (
            (
                _write_text(root, "a.csv", "image\n1.jpg\n"),
                ValueError,
                "lacks column.*path",
            ),
            (
                _write_text(root, "b.csv", "path\n2.jpg\n"),
                FileNotFoundError,
                "line 2: .*2.jpg",
            ),
            (
                _write_text(root, "c.csv", "path\n"),
                ValueError,
                "holds no photos",
            ),
            (os.path.join(root, "empty"), ValueError, "holds no photos"),
            (os.path.join(root, "nowhere"), FileNotFoundError, "nowhere"),
        )
        for source, error, pattern in cases:
            with self.subTest(source=source):
                with self.assertRaisesRegex(error, pattern):
                    catalog.list_photos(source)


class WriteCsvTest(absltest.TestCase):

    def test_round_trip(self):
        path = os.path.join(
            testing.make_tempdir(self, "beau_tf_catalog_"), "x.csv"
        )
        catalog.write_csv(path, ["a", "b"], [(1, "x"), (2, 'say "hi", twice')])
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), 'a,b\n1,x\n2,"say ""hi"", twice"\n')

    def test_failure_keeps_previous_file_and_leaves_no_temp(self):
        directory = testing.make_tempdir(self, "beau_tf_catalog_")
        path = os.path.join(directory, "x.csv")
        catalog.write_csv(path, ["a", "b"], [(1, 2)])
        with self.assertRaisesRegex(ValueError, r"row 1 has 1 values"):
            catalog.write_csv(path, ["a", "b"], [(3, 4), (5,)])
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "a,b\n1,2\n")
        self.assertEqual(os.listdir(directory), ["x.csv"])

    def test_missing_directory(self):
        path = os.path.join(
            testing.make_tempdir(self, "beau_tf_catalog_"), "no", "x.csv"
        )
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            catalog.write_csv(path, ["a"], [])


if __name__ == "__main__":
    absltest.main()
