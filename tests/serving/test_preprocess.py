"""Tests for beau_tf.serving.preprocess: the decoding and resizing inside the
SavedModel's signatures."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from beau_tf.serving import preprocess
from tests.fixtures import images as images_lib
from tests.fixtures import tiny_export


class DecodeAndResizeTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters("PNG", "JPEG", "GIF", "BMP", "WEBP")
    def test_formats_give_square_float_pixels(self, image_format):
        data = images_lib.encode(images_lib.random_rgb(40, 24), image_format)
        image = preprocess.decode_and_resize(tf.constant(data), 32)
        self.assertEqual(image.shape, (32, 32, 3))
        self.assertEqual(image.dtype, tf.float32)
        self.assertAllInRange(image, 0.0, 255.0)

    def test_grayscale_becomes_three_equal_channels(self):
        gray = images_lib.random_rgb(20, 20)[..., 0]
        image = preprocess.decode_and_resize(
            tf.constant(images_lib.encode(gray, "PNG")), 20
        )
        self.assertAllEqual(image[..., 0], gray.astype(np.float32))
        self.assertAllEqual(image[..., 1], image[..., 0])
        self.assertAllEqual(image[..., 2], image[..., 0])

    def test_tall_image_keeps_its_aspect_and_is_padded_grey(self):
        red = np.zeros((40, 20, 3), np.uint8)
        red[..., 0] = 255
        image = preprocess.decode_and_resize(
            tf.constant(images_lib.encode(red, "PNG")), 20
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
                images_lib.encode(images_lib.random_rgb(30, 50, 1), "JPEG"),
                images_lib.encode(images_lib.random_rgb(12, 9, 2), "PNG"),
            ]
        )
        batch, status = tf.function(lambda x: preprocess.decode_batch(x, 32))(
            data
        )
        self.assertEqual(batch.shape, (2, 32, 32, 3))
        self.assertAllEqual(status, [b"ok", b"ok"])
        for index in range(2):
            self.assertAllEqual(
                batch[index], preprocess.decode_and_resize(data[index], 32)
            )


class StatusTest(tf.test.TestCase):
    """A bad image gets grey pixels and a reason; it never fails its batch."""

    def test_each_bad_image_is_named_and_the_good_ones_decode(self):
        good = images_lib.encode(images_lib.random_rgb(30, 50, 1), "JPEG")
        bad = tiny_export.bad_bytes()
        narrow = images_lib.encode(images_lib.random_rgb(20, 7, 2), "PNG")
        images = tf.constant([good, *bad.values(), narrow, good])
        decode = tf.function(lambda x: preprocess.decode_batch(x, 16))
        pixels, status = decode(images)
        want = (
            [b"ok"]
            + [tiny_export.BAD_BYTES_STATUS[k].encode() for k in bad]
            + ["7×20 pixels; at least 8 px per side expected".encode(), b"ok"]
        )
        self.assertAllEqual(status, want)
        expected = preprocess.decode_and_resize(tf.constant(good), 16)
        self.assertAllEqual(pixels[0], expected)
        self.assertAllEqual(pixels[-1], expected)
        self.assertAllEqual(
            pixels[1 : 1 + len(bad)],
            np.full((len(bad), 16, 16, 3), preprocess.PAD_VALUE),
        )

    def test_zoomed_batch_has_the_same_statuses(self):
        images = tf.constant(
            [
                images_lib.encode(images_lib.random_rgb(30, 50, 1), "PNG"),
                *tiny_export.bad_bytes().values(),
            ]
        )
        views, status = tf.function(
            lambda x: preprocess.decode_batch_zoomed(x, 16, (1.0, 0.5))
        )(images)
        plain = tf.function(lambda x: preprocess.decode_batch(x, 16))(images)[1]
        self.assertEqual(views.shape, (5, 2, 16, 16, 3))
        self.assertAllEqual(status, plain)
        self.assertAllEqual(status[0], b"ok")

    def test_a_damaged_file_of_each_format_is_told_from_a_non_image(self):
        reasons = {}
        for image_format in ("PNG", "GIF", "BMP", "WEBP"):
            data = images_lib.encode(
                images_lib.random_rgb(40, 40, 3), image_format
            )
            reasons[image_format] = data[:40]
        _, status = preprocess.decode_batch(
            tf.constant(list(reasons.values())), 16
        )
        for name, reason in zip(["PNG", "GIF", "BMP", "WebP"], status.numpy()):
            self.assertEqual(
                reason.decode(),
                f"a {name} file that cannot be decoded (probably truncated "
                "or corrupt)",
            )


class DecodeZoomedTest(tf.test.TestCase):

    def test_zoom_one_is_decode_and_resize(self):
        data = tf.constant(
            images_lib.encode(images_lib.random_rgb(30, 50), "PNG")
        )
        views = preprocess.decode_zoomed(data, 32, (1.0,))
        self.assertEqual(views.shape, (1, 32, 32, 3))
        self.assertAllEqual(views[0], preprocess.decode_and_resize(data, 32))

    def test_a_zoom_is_the_central_crop_fitted(self):
        pixels = images_lib.random_rgb(40, 60)
        data = tf.constant(images_lib.encode(pixels, "PNG"))
        views = preprocess.decode_zoomed(data, 24, (1.0, 0.5))
        # Central half of each side: rows 10..29, columns 15..44.
        crop = tf.constant(images_lib.encode(pixels[10:30, 15:45], "PNG"))
        self.assertAllEqual(views[1], preprocess.decode_and_resize(crop, 24))
        self.assertNotAllClose(views[0], views[1])

    def test_batch_in_a_graph_equals_one_by_one(self):
        data = tf.constant(
            [
                images_lib.encode(images_lib.random_rgb(30, 50, 1), "JPEG"),
                images_lib.encode(images_lib.random_rgb(12, 9, 2), "PNG"),
            ]
        )
        batch, _ = tf.function(
            lambda x: preprocess.decode_batch_zoomed(x, 16, (1.0, 0.6))
        )(data)
        self.assertEqual(batch.shape, (2, 2, 16, 16, 3))
        for index in range(2):
            self.assertAllEqual(
                batch[index],
                preprocess.decode_zoomed(data[index], 16, (1.0, 0.6)),
            )

    def test_bad_zooms_are_rejected(self):
        image = images_lib.encode(np.zeros((8, 8, 3), np.uint8), "PNG")
        with self.assertRaisesRegex(ValueError, r"\(0, 1\]"):
            preprocess.decode_zoomed(image, 8, (1.0, 1.5))


class MaskViewsTest(tf.test.TestCase, parameterized.TestCase):

    def test_decode_gives_the_zooms_and_a_larger_source_with_statuses(self):
        images = tf.constant(
            [
                images_lib.encode(images_lib.random_rgb(30, 50, 1), "PNG"),
                *tiny_export.bad_bytes().values(),
            ]
        )
        views, sources, status = tf.function(
            lambda x: preprocess.decode_batch_for_mask_views(
                x, 16, (1.0, 0.5), 40
            )
        )(images)
        zoomed, zoomed_status = preprocess.decode_batch_zoomed(
            images, 16, (1.0, 0.5)
        )
        self.assertAllEqual(views, zoomed)
        self.assertAllEqual(status, zoomed_status)
        self.assertEqual(sources.shape, (len(status), 40, 40, 3))
        self.assertAllEqual(
            sources[0], preprocess.decode_and_resize(images[0], 40)
        )
        self.assertAllEqual(
            sources[1:], np.full(sources[1:].shape, preprocess.PAD_VALUE)
        )

    def test_a_box_is_the_square_around_the_mask_widened_by_each_pad(self):
        masks = np.zeros((1, 64, 64, 1), np.float32)
        masks[0, 16:32, 8:40] = 0.9  # 16 rows by 32 columns
        masks[0, 33, 50] = 0.3  # below half the peak: not the product
        boxes = preprocess.mask_boxes(tf.constant(masks), (0.0, 0.5))
        # Centre (0.375, 0.375); side 0.5, then 0.75.
        self.assertAllClose(
            boxes[0],
            [[0.125, 0.125, 0.625, 0.625], [0.0, 0.0, 0.75, 0.75]],
        )

    def test_a_tiny_mark_gets_the_smallest_box_and_no_mark_the_whole(self):
        masks = np.zeros((2, 40, 40), np.float32)
        masks[0, 20, 20] = 1.0
        masks[1] = 0.01  # below the least peak that counts as a product
        boxes = preprocess.mask_boxes(tf.constant(masks), (0.0,)).numpy()
        side = boxes[0, 0, 2] - boxes[0, 0, 0]
        self.assertAlmostEqual(side, 0.25, places=6)
        self.assertAllClose(boxes[1, 0], [0.0, 0.0, 1.0, 1.0])

    def test_no_pads_give_no_boxes(self):
        boxes = preprocess.mask_boxes(tf.zeros((3, 8, 8)), ())
        self.assertEqual(boxes.shape, (3, 0, 4))

    def test_a_view_shows_what_lies_inside_its_box(self):
        sources = np.full((2, 80, 80, 3), preprocess.PAD_VALUE, np.float32)
        sources[0, 20:40, 40:60] = 255.0  # a white square
        boxes = np.array(
            [
                [[20 / 79, 40 / 79, 39 / 79, 59 / 79]],  # exactly the square
                [[-0.5, -0.5, 0.5, 0.5]],  # reaches past the top left
            ],
            np.float32,
        )
        views = preprocess.crop_views(
            tf.constant(sources), tf.constant(boxes), 16
        ).numpy()
        self.assertEqual(views.shape, (2, 1, 16, 16, 3))
        self.assertAllClose(views[0, 0], np.full((16, 16, 3), 255.0))
        self.assertAllClose(
            views[1, 0], np.full((16, 16, 3), preprocess.PAD_VALUE)
        )


if __name__ == "__main__":
    tf.test.main()
