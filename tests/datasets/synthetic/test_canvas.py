"""Tests for beau_tf.datasets.synthetic.canvas: masks, paint, shading, text."""

from unittest import mock

from absl.testing import absltest
import numpy as np
from PIL import ImageFont

from beau_tf.datasets.synthetic import canvas

_N = 64


class CanvasTest(absltest.TestCase):

    def test_rect_and_ellipse_land_in_their_box(self):
        cv = canvas.Canvas(_N)
        rect = cv.rect((0.25, 0.5, 0.75, 1.0))
        self.assertEqual(rect.shape, (_N, _N))
        self.assertAlmostEqual(float(rect.mean()), 0.25, delta=0.02)
        self.assertEqual(float(rect[: _N // 2 - 1].max()), 0.0)
        ellipse = cv.ellipse((0.0, 0.0, 1.0, 1.0))
        self.assertAlmostEqual(float(ellipse.mean()), np.pi / 4, delta=0.02)
        self.assertEqual(float(ellipse[0, 0]), 0.0)

    def test_paint_is_opaque_inside_the_mask_only(self):
        cv = canvas.Canvas(_N)
        mask = cv.rect((0.25, 0.25, 0.75, 0.75))
        cv.paint(mask, (200, 100, 50))
        inside = _N // 2
        np.testing.assert_allclose(cv.rgb[inside, inside], [200, 100, 50])
        self.assertEqual(float(cv.alpha[inside, inside]), 1.0)
        self.assertEqual(float(cv.alpha[0, 0]), 0.0)
        np.testing.assert_array_equal(cv.rgb[0, 0], [0, 0, 0])

    def test_cylinder_is_lit_from_the_left(self):
        cv = canvas.Canvas(_N)
        diffuse, specular = cv.cylinder(0.0, 1.0, gloss=0.5)
        self.assertEqual(diffuse.shape, (1, _N, 1))
        self.assertGreater(
            specular[0, : _N // 2].max(), specular[0, _N // 2 :].max()
        )

    def test_text_fits_its_box_and_turns_in_tall_boxes(self):
        cv = canvas.Canvas(_N)
        box = (0.1, 0.4, 0.9, 0.6)
        wide = cv.text("BRAND", box)
        self.assertGreater(wide.sum(), 0)
        rows, cols = np.nonzero(wide)
        self.assertGreaterEqual(rows.min(), int(0.4 * _N) - 1)
        self.assertLessEqual(rows.max(), int(0.6 * _N) + 1)
        tall = cv.text("BRAND", (0.4, 0.1, 0.6, 0.9))
        rows, cols = np.nonzero(tall)
        self.assertGreater(np.ptp(rows), np.ptp(cols))

    def test_text_without_a_scalable_font(self):
        bitmap = getattr(ImageFont, "load_default_imagefont", None)
        if bitmap is None:
            self.skipTest("this Pillow cannot load its bitmap font alone")
        with mock.patch.object(canvas, "load_font", lambda size: bitmap()):
            mask = canvas.Canvas(_N).text("BRAND", (0.1, 0.4, 0.9, 0.6))
        self.assertGreater(mask.sum(), 0)

    def test_too_small_a_box_draws_no_text(self):
        mask = canvas.Canvas(_N).text("BRAND", (0.5, 0.5, 0.52, 0.52))
        self.assertEqual(float(mask.sum()), 0.0)

    def test_frac(self):
        np.testing.assert_allclose(
            canvas.frac(np.array([-0.25, 0.0, 1.5])), [0.75, 0.0, 0.5]
        )


if __name__ == "__main__":
    absltest.main()
