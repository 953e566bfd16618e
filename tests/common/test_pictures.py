"""Tests for beau_tf.common.pictures."""

import os
import tempfile
import unittest

import numpy as np
from PIL import Image
from PIL import ImageFont

from beau_tf.common import pictures


class OverlayMaskTest(unittest.TestCase):

    def test_tints_inside_outlines_the_edge_and_leaves_outside(self):
        image = np.full((10, 10, 3), 100, np.uint8)
        mask = np.zeros((10, 10, 1), np.float32)
        mask[2:8, 2:8] = 1.0
        out = pictures.overlay_mask(image, mask, colour=(255, 0, 0))
        np.testing.assert_array_equal(out[0, 0], (100, 100, 100))
        np.testing.assert_array_equal(out[2, 5], (255, 0, 0))  # boundary
        self.assertGreater(out[5, 5, 0], 100)  # tinted interior
        self.assertLess(out[5, 5, 0], 255)


class DrawBoxesTest(unittest.TestCase):

    def test_the_outline_lands_on_the_box_and_past_the_edge_is_clipped(self):
        image = np.zeros((21, 41, 3), np.uint8)
        drawn = pictures.draw_boxes(
            image,
            np.array([[0.25, 0.25, 0.75, 0.75], [-0.5, 0.5, 0.5, 1.5]]),
            colour=(255, 0, 0),
            width=1,
        )
        self.assertTrue(np.all(drawn[5, 10:31] == (255, 0, 0)))  # top side
        self.assertTrue(np.all(drawn[5:16, 10] == (255, 0, 0)))  # left side
        self.assertTrue(np.all(drawn[10, 11:20] == 0))  # inside, untouched
        self.assertTrue(np.all(drawn[0, 20:41] == (255, 0, 0)))  # clipped top
        self.assertTrue(np.all(image == 0))  # a copy


class ImageGridTest(unittest.TestCase):

    def test_grid_size_and_png_round_trip(self):
        cells = [np.full((8, 12, 3), i * 40, np.uint8) for i in range(5)]
        grid = pictures.image_grid(cells, [f"c{i}" for i in range(5)], 2)
        # 2 columns x 3 rows of 12x(8 + caption) cells with 4 px gaps.
        self.assertEqual(grid.size, (2 * (12 + 4) + 4, 3 * (8 + 14 + 4) + 4))
        with tempfile.TemporaryDirectory() as root:
            path = pictures.save_png(grid, os.path.join(root, "g.png"))
            self.assertEqual(Image.open(path).size, grid.size)

    def test_long_captions_are_cut_to_the_cell_width(self):
        font = ImageFont.load_default()
        short = pictures.fit_text("ok", 100, font)
        text = "0.512 Arla-Ecological-Medium-Fat-Milk"
        cut = pictures.fit_text(text, 60, font)
        self.assertEqual(short, "ok")
        self.assertTrue(cut.endswith("..."))
        self.assertLessEqual(font.getlength(cut), 60)
        self.assertTrue(text.startswith(cut[:-3]))
        self.assertGreater(len(cut), 3)

    def test_no_cells_is_an_error(self):
        with self.assertRaises(ValueError):
            pictures.image_grid([])
