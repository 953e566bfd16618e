"""Tests for beau_tf.data.products.

Bad catalogue files never stop preparation: each kind is either decoded or
skipped with a warning that names the file, and counted in the report.
"""

import contextlib
import os

from absl.testing import parameterized
import numpy as np
from PIL import Image

from beau_tf.data import catalog as catalog_lib
from beau_tf.data import products as products_lib
from tests.fixtures import images
from tests.fixtures import testing

SPRITE = 32


def product_on_white(
    height=48, width=40, box=(10, 12, 38, 28), colour=(200, 30, 60)
) -> np.ndarray:
    image = np.full((height, width, 3), 255, np.uint8)
    top, left, bottom, right = box
    image[top:bottom, left:right] = colour
    return image


def _write_good(path):
    images.save(path, product_on_white())


def _write_bytes(data: bytes):
    def write(path):
        with open(path, "wb") as stream:
            stream.write(data)

    return write


def _write_truncated(path):
    images.save(path, product_on_white(120, 120), quality=95)
    with open(path, "rb") as stream:
        data = stream.read()
    with open(path, "wb") as stream:
        stream.write(data[: len(data) // 2])


def _write_grayscale(path):
    images.save(path, product_on_white(), mode="L")


def _write_cmyk(path):
    images.save(path, product_on_white(), mode="CMYK")


def _write_16_bit(path):
    grey = product_on_white()[..., 1].astype(np.uint16) * 257
    Image.fromarray(grey).save(path)  # mode I;16


def _write_alpha(path):
    rgba = np.zeros((48, 40, 4), np.uint8)
    rgba[10:38, 12:28] = (30, 200, 60, 255)  # colour under alpha 0 is black
    images.save(path, rgba)


def _write_huge(path):
    Image.new("RGB", (12000, 12000), "white").save(path, quality=50)


def _write_one_pixel(path):
    images.save(path, np.zeros((1, 1, 3), np.uint8))


# (file name, writer, expected outcome: None = prepared, else the problem kind)
BAD_INPUTS = (
    (
        "corrupt.jpg",
        _write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 3),
        "undecodable",
    ),
    ("truncated.jpg", _write_truncated, "undecodable"),
    ("zero_byte.png", _write_bytes(b""), "undecodable"),
    (
        "not_an_image.jpg",
        _write_bytes(b"item_id,path\nthis is text\n"),
        "undecodable",
    ),
    ("one_pixel.png", _write_one_pixel, "undecodable"),
    ("grayscale.png", _write_grayscale, None),
    ("cmyk.jpg", _write_cmyk, None),
    ("sixteen_bit.png", _write_16_bit, None),
    ("alpha.png", _write_alpha, None),
    ("huge_12000.jpg", _write_huge, "empty_mask"),  # plain white: no product
)


class PrepareProductsTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.root = testing.make_tempdir(self)

    def _catalog(self, writers: dict) -> list[catalog_lib.CatalogItem]:
        for name, write in writers.items():
            write(os.path.join(self.root, name))
        return catalog_lib.list_catalog(self.root)

    @parameterized.named_parameters(
        *[(name, name, write, outcome) for name, write, outcome in BAD_INPUTS]
    )
    def test_bad_input_kind(self, name, write, outcome):
        items = self._catalog({"good.png": _write_good, name: write})
        expect_warning = (
            self.assertLogs(level="WARNING")
            if outcome
            else (contextlib.nullcontext())
        )
        with expect_warning as logs:
            products, report = products_lib.prepare_products(items, SPRITE)
        if outcome is None:
            self.assertLen(products, 2)
            self.assertEqual(report.counts(), {})
        else:
            self.assertEqual(list(products.item_ids), ["good"])
            self.assertEqual(report.counts(), {outcome: 1})
            self.assertIn(name, report.skipped[0].path)
            self.assertTrue(any(name in line for line in logs.output))
        self.assertEqual(report.total, 2)

    def test_alpha_channel_is_the_mask(self):
        items = self._catalog({"alpha.png": _write_alpha})
        products, _ = products_lib.prepare_products(items, SPRITE)
        sprite = products.sprites[0]
        opaque = sprite[..., 3] == 255
        # 28x16 product scaled to 32 px tall: 32 x ~18, centred.
        self.assertEqual(opaque.any(axis=1).sum(), SPRITE)
        self.assertAlmostEqual(opaque.any(axis=0).sum(), 18, delta=1)
        self.assertTrue(np.all(sprite[opaque][:, :3] == (30, 200, 60)))

    def test_labels_and_ids_come_from_the_catalogue(self):
        items = self._catalog(
            {
                "a.png": _write_good,
                "b.png": _write_bytes(b""),
                "c.png": _write_good,
            }
        )
        products, _ = products_lib.prepare_products(items, SPRITE)
        self.assertEqual(list(products.item_ids), ["a", "c"])
        self.assertEqual(
            list(products.labels), [0, 2]
        )  # b's label stays unused

    def test_full_frame_policy(self):
        def full_frame(path):
            images.save(
                path,
                np.random.default_rng(0).integers(
                    0, 200, (40, 40, 3), dtype=np.uint8
                ),
            )

        items = self._catalog(
            {"scene.png": full_frame, "good.png": _write_good}
        )
        _, report = products_lib.prepare_products(items, SPRITE)
        self.assertEqual(report.counts(), {"full_mask": 1})
        products, report = products_lib.prepare_products(
            items, SPRITE, bad_mask_policy="full_frame"
        )
        self.assertLen(products, 2)
        self.assertLen(report.kept_full_frame, 1)
        self.assertIn("kept as full frame", report.summary())

    def test_empty_catalogue_after_skipping_is_a_clear_error(self):
        items = self._catalog(
            {"x.jpg": _write_bytes(b"nope"), "y.png": _write_bytes(b"")}
        )
        with self.assertRaisesRegex(
            ValueError, "None of the 2 catalogue images.*x.jpg"
        ):
            products_lib.prepare_products(items, SPRITE)

    def test_bad_policy(self):
        with self.assertRaisesRegex(ValueError, "bad_mask_policy='maybe'"):
            products_lib.prepare_products([], SPRITE, bad_mask_policy="maybe")


class MakeSpriteTest(parameterized.TestCase):

    def test_product_is_centred_and_spans_the_sprite(self):
        image = product_on_white(box=(10, 12, 38, 28))  # 28 tall, 16 wide
        mask = np.all(image != 255, axis=-1)
        sprite = products_lib.make_sprite(image, mask, SPRITE)
        self.assertEqual(sprite.shape, (SPRITE, SPRITE, 4))
        columns = np.flatnonzero(sprite[..., 3].any(axis=0))
        self.assertTrue(sprite[..., 3].any(axis=1).all())  # full height
        self.assertAlmostEqual(
            (columns[0] + columns[-1]) / 2, (SPRITE - 1) / 2, delta=1
        )
        self.assertTrue(
            np.all(sprite[sprite[..., 3] == 255][:, :3] == (200, 30, 60))
        )

    def test_empty_mask_is_refused(self):
        with self.assertRaisesRegex(ValueError, "non-empty"):
            products_lib.make_sprite(
                product_on_white(), np.zeros((48, 40), bool), SPRITE
            )
