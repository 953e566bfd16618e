"""Tests for beau_tf.data.decode: every bad or unusual file is built here."""

import concurrent.futures
import io
import os
import struct
from unittest import mock
import zlib

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import ExifTags
from PIL import Image
from PIL import ImageOps
from PIL import JpegImagePlugin

from beau_tf.data import decode
from tests.fixtures import bad_inputs
from tests.fixtures import testing


def _save(directory, filename, image, **kwargs):
    path = os.path.join(directory, filename)
    image.save(path, **kwargs)
    return path


def _stored(path, attribute):
    """An attribute of the file as PIL opens it (its mode, n_frames...)."""
    with Image.open(path) as im:
        return getattr(im, attribute)


def _write_bytes(directory, filename, data):
    path = os.path.join(directory, filename)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _noise(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_header_only(width, height):
    """A PNG that declares a size but carries (almost) no pixel data."""

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey.
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


class BadFilesTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = testing.make_tempdir(self, "beau_tf_decode_")

    def test_zero_byte_file(self):
        path = _write_bytes(self.dir, "empty.jpg", b"")
        with self.assertRaisesRegex(
            decode.ImageDecodeError, r"empty\.jpg is empty \(0 bytes\)"
        ):
            decode.load_image(path)

    def test_text_file_named_jpg(self):
        path = _write_bytes(
            self.dir, "notes.jpg", b"this is a shopping list\n" * 8
        )
        with self.assertRaisesRegex(
            decode.ImageDecodeError,
            r"notes\.jpg is not a decodable image \(JPEG, PNG, BMP, GIF, WebP or "
            r"TIFF expected\)",
        ):
            decode.load_image(path)

    def test_random_bytes(self):
        data = (
            np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes()
        )
        path = _write_bytes(self.dir, "noise.png", data)
        with self.assertRaisesRegex(
            decode.ImageDecodeError, "noise.png is not a decodable image"
        ):
            decode.load_image(path)

    @parameterized.parameters("jpg", "png")
    def test_truncated_file(self, ext):
        path = _save(self.dir, f"full.{ext}", Image.fromarray(_noise(128, 128)))
        with open(path, "rb") as f:
            data = f.read()
        cut = _write_bytes(self.dir, f"cut.{ext}", data[: len(data) // 2])
        with self.assertRaisesRegex(
            decode.ImageDecodeError, rf"cut\.{ext} is truncated"
        ):
            decode.load_image(cut)

    def test_corrupt_pixel_data(self):
        path = _save(self.dir, "full.png", Image.fromarray(_noise(64, 64)))
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[100:140] = b"\x00" * 40  # Inside the IDAT chunk: breaks its CRC.
        bad = _write_bytes(self.dir, "bad.png", bytes(data))
        with self.assertRaisesRegex(decode.ImageDecodeError, r"bad\.png"):
            decode.load_image(bad)

    def test_header_of_a_known_format_only(self):
        path = _write_bytes(self.dir, "stub.jpg", b"\xff\xd8\xff\xe0\x00")
        with self.assertRaisesRegex(
            decode.ImageDecodeError, r"stub\.jpg starts like a JPEG file"
        ):
            decode.load_image(path)

    def test_missing_file(self):
        with self.assertRaisesRegex(
            FileNotFoundError, "nowhere.jpg does not exist"
        ):
            decode.load_image(os.path.join(self.dir, "nowhere.jpg"))

    def test_bytes_use_name_in_errors(self):
        with self.assertRaisesRegex(
            decode.ImageDecodeError, r"upload-7 is empty"
        ):
            decode.decode_image_bytes(b"", "upload-7")
        with self.assertRaisesRegex(
            decode.ImageDecodeError, "upload-8 is not a decodable image"
        ):
            decode.decode_image_bytes(b"hello world", "upload-8")

    def test_one_pixel_image(self):
        path = _save(self.dir, "dot.png", Image.new("RGB", (1, 1)))
        with self.assertRaisesRegex(
            decode.ImageDecodeError,
            r"dot\.png is 1×1 pixels; at least 8 px per side expected",
        ):
            decode.load_image(path)
        self.assertEqual(
            decode.load_image(path, min_side=1).rgb.shape, (1, 1, 3)
        )

    def test_thin_image(self):
        path = _save(self.dir, "line.png", Image.new("RGB", (100, 7)))
        with self.assertRaisesRegex(decode.ImageDecodeError, "is 100×7 pixels"):
            decode.load_image(path)
        self.assertEqual(
            decode.load_image(path, min_side=7).rgb.shape, (7, 100, 3)
        )

    @parameterized.parameters(
        dict(max_side=0, min_side=8),
        dict(max_side=-3, min_side=8),
        dict(max_side=None, min_side=0),
    )
    def test_bad_arguments(self, max_side, min_side):
        path = _save(self.dir, "ok.png", Image.new("RGB", (16, 16)))
        with self.assertRaises(ValueError):
            decode.load_image(path, max_side=max_side, min_side=min_side)


class ModesTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = testing.make_tempdir(self, "beau_tf_decode_")

    @parameterized.parameters("png", "bmp", "tif", "webp")
    def test_rgb_lossless_round_trip(self, ext):
        pixels = _noise(20, 30)
        kwargs = {"lossless": True} if ext == "webp" else {}
        path = _save(self.dir, f"rgb.{ext}", Image.fromarray(pixels), **kwargs)
        image = decode.load_image(path)
        self.assertEqual(image.rgb.dtype, np.uint8)
        np.testing.assert_array_equal(image.rgb, pixels)
        self.assertIsNone(image.alpha)
        self.assertTrue(image.rgb.flags.writeable)
        self.assertTrue(image.rgb.flags.c_contiguous)

    def test_jpeg(self):
        path = _save(
            self.dir, "flat.jpg", Image.new("RGB", (40, 24), (200, 30, 90))
        )
        image = decode.load_image(path)
        self.assertEqual(image.rgb.shape, (24, 40, 3))
        np.testing.assert_allclose(image.rgb[12, 20], (200, 30, 90), atol=4)

    def test_bytes_match_file(self):
        path = _save(self.dir, "rgb.png", Image.fromarray(_noise(16, 16)))
        with open(path, "rb") as f:
            from_bytes = decode.decode_image_bytes(f.read(), path)
        np.testing.assert_array_equal(
            from_bytes.rgb, decode.load_image(path).rgb
        )

    def test_grayscale(self):
        grey = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
        path = _save(self.dir, "l.png", Image.fromarray(grey, mode="L"))
        image = decode.load_image(path)
        self.assertEqual(image.rgb.shape, (16, 16, 3))
        for channel in range(3):
            np.testing.assert_array_equal(image.rgb[..., channel], grey)
        self.assertIsNone(image.alpha)

    def test_grayscale_with_alpha(self):
        grey = np.full((16, 16), 90, np.uint8)
        alpha = np.zeros((16, 16), np.uint8)
        alpha[4:12, 4:12] = 255
        la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])
        image = decode.load_image(_save(self.dir, "la.png", la))
        np.testing.assert_array_equal(image.rgb[8, 8], (90, 90, 90))
        np.testing.assert_array_equal(image.alpha, alpha)

    def test_one_bit(self):
        bits = np.zeros((16, 16), bool)
        bits[:, 8:] = True
        image = decode.load_image(
            _save(self.dir, "bits.png", Image.fromarray(bits).convert("1"))
        )
        np.testing.assert_array_equal(image.rgb[:, :8], 0)
        np.testing.assert_array_equal(image.rgb[:, 8:], 255)

    def _palette_image(self):
        indices = np.zeros((16, 16), np.uint8)
        indices[:, 8:] = 1
        im = Image.fromarray(indices, mode="P")
        im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
        return im

    def test_palette(self):
        image = decode.load_image(
            _save(self.dir, "p.png", self._palette_image())
        )
        np.testing.assert_array_equal(image.rgb[0, 0], (255, 0, 0))
        np.testing.assert_array_equal(image.rgb[0, 15], (0, 0, 255))
        self.assertIsNone(image.alpha)

    @parameterized.parameters("png", "gif")
    def test_palette_with_transparency(self, ext):
        path = _save(
            self.dir, f"pt.{ext}", self._palette_image(), transparency=0
        )
        image = decode.load_image(path)
        np.testing.assert_array_equal(image.alpha[:, :8], 0)
        np.testing.assert_array_equal(image.alpha[:, 8:], 255)
        np.testing.assert_array_equal(image.rgb[0, 15], (0, 0, 255))

    def test_rgba(self):
        rgba = np.concatenate(
            [_noise(16, 16), np.zeros((16, 16, 1), np.uint8)], axis=-1
        )
        rgba[2:10, 3:7, 3] = 200
        image = decode.load_image(
            _save(self.dir, "a.png", Image.fromarray(rgba))
        )
        np.testing.assert_array_equal(image.rgb, rgba[..., :3])
        np.testing.assert_array_equal(image.alpha, rgba[..., 3])

    def test_opaque_alpha_is_dropped(self):
        im = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
        image = decode.load_image(_save(self.dir, "opaque.png", im))
        self.assertIsNone(image.alpha)
        np.testing.assert_array_equal(image.rgb[0, 0], (10, 20, 30))

    def test_rgb_with_transparent_colour(self):
        pixels = np.zeros((16, 16, 3), np.uint8)
        pixels[:8] = (255, 255, 255)
        path = _save(
            self.dir,
            "trns.png",
            Image.fromarray(pixels),
            transparency=(255, 255, 255),
        )
        image = decode.load_image(path)
        np.testing.assert_array_equal(image.alpha[:8], 0)
        np.testing.assert_array_equal(image.alpha[8:], 255)

    def test_cmyk_jpeg(self):
        # Pure orange in CMYK: no cyan, half magenta, full yellow, no black.
        im = Image.new("CMYK", (32, 32), (0, 128, 255, 0))
        path = _save(self.dir, "cmyk.jpg", im, quality=95)
        self.assertEqual(_stored(path, "mode"), "CMYK")
        image = decode.load_image(path)
        self.assertEqual(image.rgb.shape, (32, 32, 3))
        np.testing.assert_allclose(image.rgb[16, 16], (255, 127, 0), atol=6)

    @parameterized.parameters("png", "tif")
    def test_16_bit_grey_is_scaled_not_clipped(self, ext):
        values = (
            np.linspace(0, 65535, 64 * 16).astype(np.uint16).reshape(16, 64)
        )
        path = _save(self.dir, f"g16.{ext}", Image.fromarray(values))
        self.assertTrue(_stored(path, "mode").startswith("I"))
        image = decode.load_image(path)
        expected = np.round(values / 257.0).astype(np.uint8)
        np.testing.assert_array_equal(image.rgb[..., 0], expected)
        self.assertEqual(image.rgb[0, 0, 0], 0)
        self.assertEqual(image.rgb[-1, -1, 0], 255)

    @parameterized.named_parameters(
        ("unit_range", 0.0, 1.0, 255.0),
        ("byte_range", 0.0, 255.0, 1.0),
        ("other_range", -3.0, 5.0, 255.0 / 8.0),
    )
    def test_float_tiff(self, low, high, gain):
        values = np.linspace(low, high, 8 * 32, dtype=np.float32).reshape(8, 32)
        path = _save(self.dir, "f.tif", Image.fromarray(values, mode="F"))
        self.assertEqual(_stored(path, "mode"), "F")
        image = decode.load_image(path)
        expected = np.clip(np.rint((values - min(low, 0.0)) * gain), 0, 255)
        np.testing.assert_allclose(image.rgb[..., 1], expected, atol=1)
        self.assertEqual(image.rgb[-1, -1, 1], 255)

    def test_int32_tiff_in_16_bit_range(self):
        values = np.linspace(0, 65535, 8 * 32).astype(np.int32).reshape(8, 32)
        path = _save(self.dir, "i.tif", Image.fromarray(values, mode="I"))
        self.assertEqual(_stored(path, "mode"), "I")
        image = decode.load_image(path)
        np.testing.assert_array_equal(
            image.rgb[..., 2], np.round(values / 257.0).astype(np.uint8)
        )

    def test_animated_gif_gives_first_frame(self):
        frames = [
            Image.new("RGB", (16, 16), colour)
            for colour in ((255, 0, 0), (0, 0, 255))
        ]
        path = _save(
            self.dir,
            "anim.gif",
            frames[0],
            save_all=True,
            append_images=frames[1:],
            duration=100,
            loop=0,
        )
        self.assertEqual(_stored(path, "n_frames"), 2)
        np.testing.assert_array_equal(
            decode.load_image(path).rgb[8, 8], (255, 0, 0)
        )


class OrientationTest(parameterized.TestCase):

    @parameterized.parameters(range(1, 9))
    def test_matches_exif_transpose(self, orientation):
        directory = testing.make_tempdir(self, "beau_tf_decode_")
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        path = _save(
            directory, "o.png", Image.fromarray(_noise(12, 20)), exif=exif
        )
        with Image.open(path) as stored:
            expected = ImageOps.exif_transpose(stored).convert("RGB")
        np.testing.assert_array_equal(
            decode.load_image(path).rgb, np.asarray(expected)
        )

    def test_jpeg_rotated_and_downscaled(self):
        directory = testing.make_tempdir(self, "beau_tf_decode_")
        pixels = np.zeros((100, 200, 3), np.uint8)
        pixels[:, :100] = (255, 255, 255)  # Left half white.
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = (
            6  # Stored rotated; display turns 90° CW.
        )
        path = _save(directory, "o.jpg", Image.fromarray(pixels), exif=exif)
        image = decode.load_image(path, max_side=50)
        self.assertEqual(image.rgb.shape, (50, 25, 3))
        # The stored left half ends up at the top once displayed upright.
        self.assertGreater(image.rgb[5, 12].mean(), 200)
        self.assertLess(image.rgb[45, 12].mean(), 50)


class SizeTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = testing.make_tempdir(self, "beau_tf_decode_")

    @parameterized.parameters(
        dict(size=(300, 100), max_side=64, shape=(21, 64, 3)),
        dict(size=(100, 300), max_side=64, shape=(64, 21, 3)),
        dict(size=(90, 90), max_side=64, shape=(64, 64, 3)),
        dict(size=(40, 30), max_side=64, shape=(30, 40, 3)),  # Not upscaled.
        dict(size=(40, 30), max_side=None, shape=(30, 40, 3)),
    )
    def test_max_side(self, size, max_side, shape):
        for ext in ("png", "jpg"):
            path = _save(
                self.dir, f"s.{ext}", Image.new("RGB", size, (9, 99, 199))
            )
            image = decode.load_image(path, max_side=max_side)
            self.assertEqual(image.rgb.shape, shape)
            np.testing.assert_allclose(
                image.rgb[shape[0] // 2, shape[1] // 2], (9, 99, 199), atol=4
            )

    def test_alpha_is_downscaled_with_rgb(self):
        im = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
        im.paste((255, 0, 0, 255), (100, 0, 200, 100))
        image = decode.load_image(_save(self.dir, "a.png", im), max_side=50)
        self.assertEqual(image.alpha.shape, (25, 50))
        self.assertEqual(image.alpha[12, 5], 0)
        self.assertEqual(image.alpha[12, 45], 255)
        # Premultiplied resampling keeps transparent black out of the red.
        np.testing.assert_array_equal(image.rgb[12, 30], (255, 0, 0))

    @parameterized.parameters(
        dict(ext="jpg", kwargs={"quality": 90}),
        dict(ext="png", kwargs={"compress_level": 1}),
    )
    def test_12000_by_12000_image(self, ext, kwargs):
        # 144M pixels: above PIL's default limit, below MAX_PIXELS. About 1 s for
        # the JPEG (decoded at 1/8 scale) and 3 s for the PNG on one core.
        before = Image.MAX_IMAGE_PIXELS
        huge = Image.new("L", (12000, 12000), 0)
        huge.paste(255, (0, 6000, 12000, 12000))  # Bottom half white.
        path = _save(self.dir, f"huge.{ext}", huge, **kwargs)
        del huge
        image = decode.load_image(path, max_side=256)
        self.assertEqual(image.rgb.shape, (256, 256, 3))
        self.assertLess(image.rgb[:120].max(), 10)
        self.assertGreater(image.rgb[136:].min(), 245)
        self.assertEqual(Image.MAX_IMAGE_PIXELS, before)

    def test_jpeg_is_decoded_at_reduced_dct_scale(self):
        path = _save(self.dir, "big.jpg", Image.new("RGB", (2000, 1000), "red"))
        draft = JpegImagePlugin.JpegImageFile.draft
        with mock.patch.object(
            JpegImagePlugin.JpegImageFile,
            "draft",
            autospec=True,
            side_effect=draft,
        ) as spy:
            image = decode.load_image(path, max_side=200)
        spy.assert_called_once_with(mock.ANY, "RGB", (200, 100))
        self.assertEqual(image.rgb.shape, (100, 200, 3))

    def test_over_pixel_limit_is_refused(self):
        path = _write_bytes(
            self.dir, "bomb.png", _png_header_only(20001, 20000)
        )
        with self.assertRaisesRegex(
            decode.ImageDecodeError, r"bomb\.png is 20001×20000 pixels"
        ):
            decode.load_image(path)

    def test_far_over_pixel_limit_is_refused(self):
        path = _write_bytes(
            self.dir, "bomb.png", _png_header_only(50000, 50000)
        )
        with self.assertRaisesRegex(decode.ImageDecodeError, r"bomb\.png"):
            decode.load_image(path)

    def test_within_pixel_limit_beyond_pil_default_is_opened(self):
        # 225M pixels: PIL's default refuses this in Image.open; the policy here
        # opens it, so the error is about the missing pixel data, not the size.
        before = Image.MAX_IMAGE_PIXELS
        path = _write_bytes(self.dir, "big.png", _png_header_only(15000, 15000))
        with self.assertRaisesRegex(
            decode.ImageDecodeError, r"big\.png is truncated"
        ):
            decode.load_image(path)
        self.assertEqual(Image.MAX_IMAGE_PIXELS, before)

    def test_concurrent_calls_restore_pil_limit(self):
        before = Image.MAX_IMAGE_PIXELS
        path = _save(self.dir, "c.png", Image.fromarray(_noise(32, 32)))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(lambda _: decode.load_image(path), range(16))
            )
        self.assertLen(results, 16)
        self.assertEqual(Image.MAX_IMAGE_PIXELS, before)


class ListImageFilesTest(absltest.TestCase):

    def test_recursive_sorted_filtered(self):
        root = testing.make_tempdir(self, "beau_tf_decode_")
        for name in (
            "b.JPG",
            "a.png",
            "sub/c.webp",
            "sub/deep/d.TIFF",
            "notes.txt",
            ".hidden.jpg",
            ".cache/e.jpg",
            "sub/f.jpeg.txt",
        ):
            os.makedirs(
                os.path.dirname(os.path.join(root, name)), exist_ok=True
            )
            _write_bytes(root, name, b"x")
        files = decode.list_image_files(root)
        relative = [os.path.relpath(f, root) for f in files]
        self.assertEqual(
            relative, ["a.png", "b.JPG", "sub/c.webp", "sub/deep/d.TIFF"]
        )

    def test_missing_directory(self):
        missing = os.path.join(
            testing.make_tempdir(self, "beau_tf_decode_"), "nope"
        )
        with self.assertRaisesRegex(FileNotFoundError, "nope does not exist"):
            decode.list_image_files(missing)

    def test_file_instead_of_directory(self):
        path = _write_bytes(
            testing.make_tempdir(self, "beau_tf_decode_"), "x.jpg", b"x"
        )
        with self.assertRaisesRegex(NotADirectoryError, "is not a directory"):
            decode.list_image_files(path)


if __name__ == "__main__":
    absltest.main()


class ReadForModelTest(parameterized.TestCase):
    """The bytes the query path sends a model: the training contract's pixels."""

    def setUp(self):
        super().setUp()
        self.dir = testing.make_tempdir(self, "beau_tf_decode_")

    def _sent_pixels(self, path, **kwargs):
        data = decode.read_for_model(path, **kwargs)
        return data, decode.decode_image_bytes(data, "sent").rgb

    @parameterized.parameters("jpg", "png")
    def test_plain_file_is_sent_as_is(self, ext):
        path = _save(self.dir, f"p.{ext}", Image.fromarray(_noise(30, 40)))
        data, _ = self._sent_pixels(path)
        with open(path, "rb") as stream:
            self.assertEqual(data, stream.read())

    @parameterized.parameters(
        dict(filename="t.tif", mode="RGB"),  # TIFF: the model cannot decode it.
        dict(filename="g.png", mode="I;16"),  # 16-bit: scaled, not clipped.
        dict(filename="c.jpg", mode="CMYK"),
    )
    def test_other_files_are_sent_as_training_decodes_them(
        self, filename, mode
    ):
        if mode == "I;16":
            image = Image.fromarray(
                (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)
            )
        else:
            image = Image.fromarray(_noise(30, 40)).convert(mode)
        path = _save(self.dir, filename, image)
        data, sent = self._sent_pixels(path)
        self.assertTrue(data.startswith(b"\x89PNG"))
        np.testing.assert_array_equal(sent, decode.load_image(path).rgb)

    def test_exif_rotation_is_applied(self):
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = 6
        path = _save(
            self.dir, "o.jpg", Image.fromarray(_noise(20, 40)), exif=exif
        )
        _, sent = self._sent_pixels(path)
        self.assertEqual(sent.shape, (40, 20, 3))

    def test_transparency_is_composited_over_white(self):
        image = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
        image.paste((200, 0, 0, 255), (10, 0, 20, 10))
        _, sent = self._sent_pixels(_save(self.dir, "a.png", image))
        np.testing.assert_array_equal(sent[5, 2], (255, 255, 255))
        np.testing.assert_array_equal(sent[5, 15], (200, 0, 0))

    def test_large_image_is_sent_at_reduced_size(self):
        path = _save(self.dir, "big.jpg", Image.new("RGB", (3000, 1500), "red"))
        _, sent = self._sent_pixels(path, max_side=500)
        self.assertEqual(sent.shape, (250, 500, 3))

    @parameterized.parameters(
        dict(data=b"", reason="is empty"),
        dict(data=b"hello", reason="not a decodable image"),
    )
    def test_bad_bytes_give_the_training_reason(self, data, reason):
        path = _write_bytes(self.dir, "bad.png", data)
        with self.assertRaisesRegex(decode.ImageDecodeError, reason):
            decode.read_for_model(path)

    def test_too_small_gives_the_training_reason(self):
        path = _save(self.dir, "tiny.png", Image.new("RGB", (1, 1)))
        with self.assertRaisesRegex(
            decode.ImageDecodeError, f"at least {decode.MIN_SIDE} px per side"
        ):
            decode.read_for_model(path)

    def test_folder_and_missing_file(self):
        with self.assertRaisesRegex(IsADirectoryError, "is a folder"):
            decode.read_for_model(self.dir)
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            decode.read_for_model(os.path.join(self.dir, "missing.jpg"))


class DecodeLimitsTest(parameterized.TestCase):
    """Bounds on decoding untrusted bytes (issue 21, findings 1 and 2)."""

    def setUp(self):
        super().setUp()
        self.dir = testing.make_tempdir(self, "beau_tf_decode_")

    def test_limits_change_no_pixel_of_a_usable_file(self):
        # Read 4 KiB at a time, the decoders must give the same pixels.
        cases = bad_inputs.write_corpus(self.dir, with_huge=False)
        for case in cases:
            if case.reason is not None:
                continue
            with open(os.path.join(self.dir, case.filename), "rb") as stream:
                data = stream.read()
            self.assertEqual(
                decode.encode_for_model(data, case.filename),
                decode.encode_for_model(
                    data, case.filename, limits=decode.DecodeLimits()
                ),
                case.filename,
            )

    @parameterized.named_parameters(
        ("webp", lambda: bad_inputs.lossless_webp(1000), "15 MiB"),
        ("png16", lambda: bad_inputs.sixteen_bit_png(1000), "14 MiB"),
    )
    def test_memory_is_estimated_from_the_header(self, make, cost):
        data = make()
        limits = decode.DecodeLimits(max_bytes=8 * 2**20)
        with self.assertRaisesRegex(
            decode.DecodeLimitError, f"take {cost}, more than the 8 MiB"
        ):
            decode.encode_for_model(data, "upload", limits=limits)
        decode.encode_for_model(data, "upload")  # no limits: decoded

    def test_a_jpeg_is_costed_at_its_reduced_scale(self):
        data = bad_inputs.grey_jpeg(4096)  # drafted to 1024²: 5 MiB
        limits = decode.DecodeLimits(max_bytes=8 * 2**20)
        sent = decode.encode_for_model(data, "big", limits=limits)
        self.assertEqual(
            Image.open(io.BytesIO(sent)).size,
            (decode.MODEL_INPUT_MAX_SIDE, decode.MODEL_INPUT_MAX_SIDE),
        )
        with self.assertRaisesRegex(decode.DecodeLimitError, "4096×4096"):
            decode.encode_for_model(data, "big", max_side=4096, limits=limits)

    def test_too_many_scans(self):
        data = bad_inputs.repeated_scan_jpeg(64, 200)
        with self.assertRaisesRegex(
            decode.DecodeLimitError, "JPEG of 20[0-9] scans; at most 100"
        ):
            decode.encode_for_model(data, "scans", limits=decode.DecodeLimits())

    def test_the_cpu_budget_stops_a_slow_decode(self):
        # 16 MB of pixels inflated from 16 KB: far more than 0.5 ms of CPU.
        data = bad_inputs.grey_png(4000)
        limits = decode.DecodeLimits(cpu_seconds=0.0005)
        with self.assertRaisesRegex(
            decode.DecodeLimitError, "took more than 0.0005 s of CPU"
        ):
            decode.encode_for_model(data, "slow", limits=limits)
        decode.encode_for_model(data, "slow", limits=decode.DecodeLimits())

    def test_a_jpeg_cut_short_and_closed_is_truncated(self):
        # Issue 21, finding 7: libjpeg fills the rest with grey and only
        # warns, so PIL accepted it.
        data = bad_inputs.truncated_jpeg(600, 11_000)
        with self.assertRaisesRegex(
            decode.ImageDecodeError, "cut.jpg is truncated .*premature end"
        ):
            decode.decode_image_bytes(data, "cut.jpg")
        path = _write_bytes(self.dir, "cut.jpg", data)
        with self.assertRaisesRegex(decode.ImageDecodeError, "truncated"):
            decode.read_for_model(path)

    @parameterized.parameters(
        dict(size=(3000, 2000), max_side=1024),  # drafted to 1/2
        dict(size=(4100, 999), max_side=512),  # 1/8
        dict(size=(200, 120), max_side=None),
    )
    def test_jpegs_decode_as_pil_decodes_them(self, size, max_side):
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), np.uint8)
        image = Image.fromarray(pixels).resize(size)
        for mode in ("RGB", "L"):
            path = _save(self.dir, f"p_{mode}.jpg", image.convert(mode))
            with Image.open(path) as expected:
                if max_side:
                    expected.draft(mode, decode._fit_within(size, max_side))
                expected = expected.convert(mode)
                if max_side:
                    expected = expected.resize(
                        decode._fit_within(size, max_side),
                        Image.Resampling.LANCZOS,
                        reducing_gap=3.0,
                    )
            decoded = decode.load_image(path, max_side=max_side).rgb
            np.testing.assert_array_equal(
                decoded, np.asarray(expected.convert("RGB"))
            )

    @parameterized.parameters(
        dict(max_bytes=0), dict(max_jpeg_scans=True), dict(cpu_seconds=0)
    )
    def test_bad_limits(self, **kwargs):
        with self.assertRaises(ValueError):
            decode.DecodeLimits(**kwargs)
