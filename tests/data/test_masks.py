"""Tests for beau_tf.data.masks on small synthetic scenes and the grocery icons.

The module is NumPy + SciPy only, so these use absltest rather than
tf.test.TestCase and never import TensorFlow.
"""

import io

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image

from beau_tf.data import masks
from tests.fixtures import shared_data

_WHITE = (255, 255, 255)
_RED = (200, 30, 30)
_NAVY = (30, 40, 90)


def _scene(background=_WHITE, colour=_RED, box=(16, 14, 48, 50), size=64):
    """Returns a (size, size, 3) uint8 image with one box, and the box's mask."""
    image = np.empty((size, size, 3), np.uint8)
    image[...] = background
    truth = np.zeros((size, size), bool)
    top, left, bottom, right = box
    truth[top:bottom, left:right] = True
    image[truth] = colour
    return image, truth


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def _jpeg(image, quality=75):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _disc(size, centre, radius):
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


class BorderMaskTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("red", _RED),
        ("navy", _NAVY),
        ("pale_yellow", (240, 225, 120)),
        ("light_grey", (200, 200, 200)),
    )
    def test_box_on_white(self, colour):
        image, truth = _scene(colour=colour)
        result = masks.extract_foreground_mask(image)
        self.assertGreater(_iou(result.mask, truth), 0.98)
        self.assertEqual(result.status, masks.MaskStatus.OK)
        self.assertEqual(result.source, "border")
        self.assertEqual(result.background_rgb, _WHITE)
        self.assertAlmostEqual(result.coverage, truth.mean(), delta=0.01)

    @parameterized.named_parameters(
        ("light_grey", (215, 215, 215)),
        ("beige", (235, 220, 190)),
        ("black", (10, 10, 10)),
    )
    def test_plain_non_white_background(self, background):
        image, truth = _scene(background=background, colour=(60, 150, 70))
        result = masks.extract_foreground_mask(image)
        self.assertGreater(_iou(result.mask, truth), 0.98)
        np.testing.assert_allclose(result.background_rgb, background, atol=2)

    def test_vertical_gradient_background(self):
        # 240 -> 190 top to bottom: a distance of ~87 end to end, more than any
        # tolerance, so this passes only because the gradient is modelled.
        image, truth = _scene(colour=(150, 60, 160))
        grey = np.linspace(240, 190, 64)[:, None, None]
        image = np.where(truth[..., None], image, grey).astype(np.uint8)
        result = masks.extract_foreground_mask(image)
        self.assertGreater(_iou(result.mask, truth), 0.98)
        np.testing.assert_allclose(
            result.background_rgb, (215, 215, 215), atol=2
        )

    def test_noisy_background_widens_the_tolerance(self):
        image, truth = _scene(background=(200, 200, 200), colour=(60, 150, 70))
        noise = np.random.default_rng(0).normal(0.0, 15.0, image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
        result = masks.extract_foreground_mask(image)
        self.assertGreater(_iou(result.mask, truth), 0.98)

    @parameterized.named_parameters(
        ("red_on_white", _RED, _WHITE, (16, 14, 48, 50)),
        ("navy_on_white_odd_edges", _NAVY, _WHITE, (13, 17, 45, 51)),
        ("green_on_beige", (60, 150, 70), (235, 220, 190), (13, 17, 45, 51)),
    )
    def test_jpeg_compressed(self, colour, background, box):
        image, truth = _scene(background=background, colour=colour, box=box)
        result = masks.extract_foreground_mask(_jpeg(image, quality=75))
        self.assertGreater(_iou(result.mask, truth), 0.95)

    def test_white_print_inside_product_stays_foreground(self):
        image, truth = _scene(colour=_NAVY, box=(12, 12, 52, 52))
        image[20:28, 18:32] = _WHITE  # A label, 7% of the product.
        image[36:38, 16:48] = _WHITE  # A line of print.
        image[40:46, 40] = _WHITE
        result = masks.extract_foreground_mask(image)
        np.testing.assert_array_equal(result.mask, truth)

    def test_small_hole_is_filled(self):
        image, truth = _scene(colour=_NAVY, box=(12, 12, 52, 52))
        image[28:34, 28:34] = _WHITE
        np.testing.assert_array_equal(
            masks.extract_foreground_mask(image).mask, truth
        )
        # The hole really is background-coloured: without filling it stays open.
        unfilled = masks.extract_foreground_mask(
            image, config=masks.MaskConfig(max_hole_fraction=0.0)
        ).mask
        self.assertFalse(unfilled[30, 30])

    def test_large_hole_of_a_ring_stays_background(self):
        ring = _disc(64, (32, 32), 26) & ~_disc(64, (32, 32), 13)
        image = np.full((64, 64, 3), 255, np.uint8)
        image[ring] = (180, 120, 40)
        result = masks.extract_foreground_mask(image)
        self.assertFalse(result.mask[32, 32])
        self.assertGreater(_iou(result.mask, ring), 0.95)

    def test_far_speck_is_dropped(self):
        image, truth = _scene()
        image[56:58, 4:6] = _NAVY
        result = masks.extract_foreground_mask(image)
        self.assertFalse(result.mask[56:58, 4:6].any())
        self.assertGreater(_iou(result.mask, truth), 0.98)

    def test_product_touching_one_edge(self):
        image, truth = _scene(box=(10, 0, 54, 36))
        result = masks.extract_foreground_mask(image)
        self.assertEqual(result.background_rgb, _WHITE)
        self.assertGreater(_iou(result.mask, truth), 0.98)

    def test_blank_image_is_empty(self):
        result = masks.extract_foreground_mask(
            np.full((48, 48, 3), 255, np.uint8)
        )
        self.assertEqual(result.status, masks.MaskStatus.EMPTY)
        self.assertEqual(result.coverage, 0.0)
        self.assertIsNone(masks.bounding_box(result.mask))

    @parameterized.named_parameters(("fine_texture", 1), ("coarse_texture", 4))
    def test_product_filling_the_frame_is_full(self, tile):
        # Random colour tiles: the border matches no single backdrop colour.
        tiles = np.random.default_rng(0).integers(
            0, 256, (64 // tile,) * 2 + (3,), np.uint8
        )
        image = np.repeat(np.repeat(tiles, tile, axis=0), tile, axis=1)
        result = masks.extract_foreground_mask(image)
        self.assertEqual(result.status, masks.MaskStatus.FULL)
        self.assertTrue(result.mask.all())
        self.assertIsNone(result.background_rgb)

    def test_grey_input(self):
        image, truth = _scene(colour=(90, 90, 90))
        result = masks.extract_foreground_mask(image[..., 0])
        self.assertGreater(_iou(result.mask, truth), 0.98)


class AlphaMaskTest(parameterized.TestCase):

    def _alpha_scene(self):
        disc = _disc(48, (24, 24), 14)
        alpha = np.where(disc, 255, 0).astype(np.uint8)
        # Red everywhere, noise on the frame: colour alone could not find the disc.
        image = np.empty((48, 48, 3), np.uint8)
        image[...] = _RED
        image[:4] = np.random.default_rng(1).integers(0, 256, (4, 48, 3))
        return image, alpha, disc

    @parameterized.named_parameters(
        ("uint8", lambda a: a),
        ("channel_axis", lambda a: a[..., None]),
        ("float", lambda a: a.astype(np.float32) / 255.0),
    )
    def test_alpha_decides(self, convert):
        image, alpha, disc = self._alpha_scene()
        result = masks.extract_foreground_mask(image, alpha=convert(alpha))
        np.testing.assert_array_equal(result.mask, disc)
        self.assertEqual(result.source, "alpha")
        self.assertIsNone(result.background_rgb)

    def test_rgba_array(self):
        image, alpha, disc = self._alpha_scene()
        rgba = np.concatenate([image, alpha[..., None]], axis=-1)
        result = masks.extract_foreground_mask(rgba)
        np.testing.assert_array_equal(result.mask, disc)

    def test_alpha_cleanup(self):
        image, alpha, disc = self._alpha_scene()
        alpha[2:4, 2:4] = 255  # A speck.
        alpha[22:26, 22:26] = 0  # A pinhole.
        result = masks.extract_foreground_mask(image, alpha=alpha)
        np.testing.assert_array_equal(result.mask, disc)

    def test_opaque_alpha_falls_back_to_border(self):
        image, truth = _scene()
        result = masks.extract_foreground_mask(
            image, alpha=np.full(truth.shape, 255, np.uint8)
        )
        self.assertEqual(result.source, "border")
        self.assertGreater(_iou(result.mask, truth), 0.98)


class ApiTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("box", (slice(5, 12), slice(7, 20)), (5, 7, 12, 20)),
        ("pixel", (slice(0, 1), slice(31, 32)), (0, 31, 1, 32)),
        ("full", (slice(None), slice(None)), (0, 0, 24, 32)),
    )
    def test_bounding_box(self, region, expected):
        mask = np.zeros((24, 32), bool)
        mask[region] = True
        self.assertEqual(masks.bounding_box(mask), expected)

    def test_bounding_box_of_empty_mask(self):
        self.assertIsNone(masks.bounding_box(np.zeros((8, 8), bool)))

    @parameterized.named_parameters(
        ("two_channels", np.zeros((8, 8, 2), np.uint8), None),
        ("alpha_shape", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9))),
    )
    def test_bad_inputs(self, rgb, alpha):
        with self.assertRaisesRegex(ValueError, "shape"):
            masks.extract_foreground_mask(rgb, alpha=alpha)

    @parameterized.named_parameters(
        ("fraction", dict(max_hole_fraction=1.5)),
        ("tolerances", dict(min_tolerance=50.0, max_tolerance=20.0)),
        ("status", dict(empty_fraction=0.9, full_fraction=0.5)),
    )
    def test_bad_config(self, kwargs):
        with self.assertRaises(ValueError):
            masks.MaskConfig(**kwargs)


class GroceryIconsTest(absltest.TestCase):
    """The 81 studio icons of the Grocery Store dataset, mostly on white."""

    def test_icons_mostly_ok(self):
        icons = (
            shared_data.shared_data_dir()
            / "grocery-store"
            / "dataset"
            / "iconic-images-and-descriptions"
        )
        paths = sorted(icons.rglob("*_Iconic.jpg"))
        if not paths:
            self.skipTest(f"No grocery icons under {icons}.")
        results = {
            path.stem: masks.extract_foreground_mask(
                np.asarray(Image.open(path).convert("RGB"))
            )
            for path in paths
        }
        ok = {
            name: r
            for name, r in results.items()
            if r.status == masks.MaskStatus.OK
        }
        self.assertGreaterEqual(
            len(ok),
            0.95 * len(results),
            f"Not OK: {sorted(set(results) - set(ok))}",
        )
        # Products span 8% (a leek) to 64% (a grapefruit) of the frame when viewed;
        # a mask far outside that range has eaten or leaked into the background.
        for name, result in ok.items():
            self.assertBetween(result.coverage, 0.05, 0.85, name)
        near_white = [
            r
            for r in results.values()
            if r.background_rgb is not None and min(r.background_rgb) >= 245
        ]
        self.assertGreaterEqual(len(near_white), 0.95 * len(results))


if __name__ == "__main__":
    absltest.main()
