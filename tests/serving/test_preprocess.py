"""Tests for beau_tf.preprocess."""

import io
import os

from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf

from beau_tf.serving import preprocess


def encode(array: np.ndarray, image_format: str) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format=image_format)
    return stream.getvalue()


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


class DecodeAndResizeTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters("PNG", "JPEG", "GIF", "BMP", "WEBP")
    def test_formats_give_square_float_pixels(self, image_format):
        data = encode(random_rgb(40, 24), image_format)
        image = preprocess.decode_and_resize(tf.constant(data), 32)
        self.assertEqual(image.shape, (32, 32, 3))
        self.assertEqual(image.dtype, tf.float32)
        self.assertAllInRange(image, 0.0, 255.0)

    def test_grayscale_becomes_three_equal_channels(self):
        gray = random_rgb(20, 20)[..., 0]
        image = preprocess.decode_and_resize(
            tf.constant(encode(gray, "PNG")), 20
        )
        self.assertAllEqual(image[..., 0], gray.astype(np.float32))
        self.assertAllEqual(image[..., 1], image[..., 0])
        self.assertAllEqual(image[..., 2], image[..., 0])

    def test_tall_image_keeps_its_aspect_and_is_padded_grey(self):
        red = np.zeros((40, 20, 3), np.uint8)
        red[..., 0] = 255
        image = preprocess.decode_and_resize(
            tf.constant(encode(red, "PNG")), 20
        ).numpy()
        # 40 x 20 -> 20 x 10, centred: columns 5..14 red, the rest grey.
        self.assertAllClose(
            image[:, 5:15], np.broadcast_to(red[:20, :10], (20, 10, 3))
        )
        self.assertAllEqual(
            image[:, :5], np.full((20, 5, 3), preprocess.PAD_VALUE)
        )
        self.assertAllEqual(
            image[:, 15:], np.full((20, 5, 3), preprocess.PAD_VALUE)
        )

    def test_undecodable_bytes_are_an_error(self):
        with self.assertRaises(tf.errors.InvalidArgumentError):
            preprocess.decode_and_resize(tf.constant(b"not an image"), 32)

    def test_batch_equals_one_by_one_in_a_graph(self):
        data = tf.constant(
            [
                encode(random_rgb(30, 50, 1), "JPEG"),
                encode(random_rgb(9, 7, 2), "PNG"),
            ]
        )
        batch = tf.function(lambda x: preprocess.decode_batch(x, 32))(data)
        self.assertEqual(batch.shape, (2, 32, 32, 3))
        for index in range(2):
            self.assertAllEqual(
                batch[index], preprocess.decode_and_resize(data[index], 32)
            )


class DecodeZoomedTest(tf.test.TestCase):

    def test_zoom_one_is_decode_and_resize(self):
        data = tf.constant(encode(random_rgb(30, 50), "PNG"))
        views = preprocess.decode_zoomed(data, 32, (1.0,))
        self.assertEqual(views.shape, (1, 32, 32, 3))
        self.assertAllEqual(views[0], preprocess.decode_and_resize(data, 32))

    def test_a_zoom_is_the_central_crop_fitted(self):
        pixels = random_rgb(40, 60)
        data = tf.constant(encode(pixels, "PNG"))
        views = preprocess.decode_zoomed(data, 24, (1.0, 0.5))
        # Central half of each side: rows 10..29, columns 15..44.
        crop = tf.constant(encode(pixels[10:30, 15:45], "PNG"))
        self.assertAllEqual(views[1], preprocess.decode_and_resize(crop, 24))
        self.assertNotAllClose(views[0], views[1])

    def test_batch_in_a_graph_equals_one_by_one(self):
        data = tf.constant(
            [
                encode(random_rgb(30, 50, 1), "JPEG"),
                encode(random_rgb(9, 7, 2), "PNG"),
            ]
        )
        batch = tf.function(
            lambda x: preprocess.decode_batch_zoomed(x, 16, (1.0, 0.6))
        )(data)
        self.assertEqual(batch.shape, (2, 2, 16, 16, 3))
        for index in range(2):
            self.assertAllEqual(
                batch[index],
                preprocess.decode_zoomed(data[index], 16, (1.0, 0.6)),
            )

    def test_bad_zooms_are_rejected(self):
        image = encode(np.zeros((8, 8, 3), np.uint8), "PNG")
        with self.assertRaisesRegex(ValueError, r"\(0, 1\]"):
            preprocess.decode_zoomed(image, 8, (1.0, 1.5))


class MakeImageDatasetTest(tf.test.TestCase):

    def test_dataset_equals_eager_and_skips_bad_files_by_name(self):
        folder = self.get_temp_dir()
        paths = []
        for index, image_format in enumerate(("PNG", "JPEG", "BMP")):
            path = os.path.join(folder, f"image{index}.{image_format.lower()}")
            with open(path, "wb") as stream:
                stream.write(
                    encode(random_rgb(20 + 10 * index, 30, index), image_format)
                )
            paths.append(path)
        bad = os.path.join(folder, "bad.jpg")
        with open(bad, "wb") as stream:
            stream.write(b"truncated")
        paths.insert(1, bad)

        with self.assertLogs(level="WARNING") as logs:
            batches = list(preprocess.make_image_dataset(paths, 32, 2))
        self.assertTrue(any(bad in line for line in logs.output))
        self.assertEqual([len(batch["path"]) for batch in batches], [2, 1])
        images = np.concatenate([batch["image"] for batch in batches])
        embedded = [p.decode() for b in batches for p in b["path"].numpy()]
        self.assertEqual(embedded, [paths[0], paths[2], paths[3]])
        for image, path in zip(images, embedded):
            with open(path, "rb") as stream:
                eager = preprocess.decode_and_resize(
                    tf.constant(stream.read()), 32
                )
            self.assertAllEqual(image, eager)

    def test_no_paths_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "nothing to embed"):
            preprocess.make_image_dataset([], 32, 2)


if __name__ == "__main__":
    tf.test.main()
