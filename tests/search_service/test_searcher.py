"""Tests for beau_tf.search_service.searcher: uploads in, catalogue items out."""

import concurrent.futures
import dataclasses
import io
import os
import struct
import threading
import time
import zlib

from absl.testing import absltest
import numpy as np
from PIL import Image

from beau_tf.search_service import searcher as searcher_lib
from beau_tf.serving import contract
from beau_tf.serving import models
from tests.fixtures import fakes
from tests.fixtures import testing


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height whose pixel data stops at once."""
    fields = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + fields
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(fields))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 100)
        + b"IDAT"
    )


class UploadChecksTest(absltest.TestCase):

    def test_too_many_bytes_is_413(self):
        config = searcher_lib.ServiceConfig(max_upload_bytes=100)
        with self.assertRaisesRegex(
            searcher_lib.RequestError, "x.png is 1.2 KiB.*at most 100 bytes"
        ) as raised:
            searcher_lib.check_upload(bytes(1234), "x.png", config)
        self.assertEqual(raised.exception.status_code, 413)

    def test_too_many_pixels_is_refused_from_the_header_alone(self):
        config = searcher_lib.ServiceConfig(max_pixels=50_000_000)
        with self.assertRaisesRegex(
            searcher_lib.RequestError,
            "x.png is 9000×9000 pixels \\(81 megapixels\\); at most 50",
        ) as raised:
            searcher_lib.prepare_upload(
                png_header_only(9000, 9000), "x.png", config
            )
        self.assertEqual(raised.exception.status_code, 400)
        with self.assertRaisesRegex(
            searcher_lib.RequestError, "too many pixels"
        ):
            searcher_lib.check_upload(
                png_header_only(30000, 30000), "x.png", config
            )

    def test_unusable_images_are_400_with_the_decoders_reason(self):
        config = searcher_lib.ServiceConfig()
        for data, reason in [
            (b"not an image at all", "not a decodable image"),
            (fakes.encode_png(np.zeros((1, 1, 3), np.uint8)), "1×1 pixels"),
            (fakes.photo(0)[:60], "truncated|corrupt"),
            (b"", "empty"),
        ]:
            with self.assertRaisesRegex(
                searcher_lib.RequestError, f"upload.*({reason})"
            ):
                searcher_lib.prepare_upload(data, "upload", config)

    def test_bad_settings_are_named(self):
        with self.assertRaisesRegex(ValueError, "max_batch=0"):
            searcher_lib.ServiceConfig(max_batch=0)
        with self.assertRaisesRegex(ValueError, "index_poll_seconds=0"):
            searcher_lib.ServiceConfig(index_poll_seconds=0)


class MaskTest(absltest.TestCase):

    def test_the_padding_of_a_tall_image_is_cropped(self):
        mask = np.zeros((16, 16), np.float32)
        mask[:, 4:12] = 1.0  # where a 1:2 image lands in the square
        cropped = searcher_lib.crop_mask_to_image(mask, width=20, height=40)
        self.assertEqual(cropped.shape, (16, 8))
        self.assertTrue(np.all(cropped == 1.0))

    def test_boxes_on_the_square_of_a_tall_image_become_image_fractions(self):
        # 20 x 40 in a 16 x 16 square: 8 x 16 pixels at columns 4..12.
        boxes = np.array(
            [[0.25, 0.25, 0.75, 0.75], [-0.125, 0.0, 0.5, 1.0]], np.float32
        )
        np.testing.assert_allclose(
            searcher_lib.square_boxes_to_image(
                boxes, width=20, height=40, side=16
            ),
            [
                [4 / 16, (4 - 4) / 8, 12 / 16, (12 - 4) / 8],
                [-2 / 16, (0 - 4) / 8, 8 / 16, (16 - 4) / 8],  # past it
            ],
            atol=1e-6,
        )

    def test_boxes_on_the_square_of_a_wide_image_become_image_fractions(self):
        # 40 x 32 in a 16 x 16 square: 16 x 13 pixels (12.8 rounded) at
        # rows 1..14.
        boxes = np.array([[0.25, 0.25, 0.75, 0.75], [0, 0, 1, 1]], np.float32)
        np.testing.assert_allclose(
            searcher_lib.square_boxes_to_image(
                boxes, width=40, height=32, side=16
            ),
            [
                [(4 - 1) / 13, 0.25, (12 - 1) / 13, 0.75],
                [(0 - 1) / 13, 0.0, (16 - 1) / 13, 1.0],  # the whole square
            ],
            atol=1e-6,
        )

    def test_mask_views_are_the_export_rules_boxes_on_the_image(self):
        mask = np.zeros((16, 16), np.float32)
        mask[1:9, 4:8] = 1.0  # 8 rows x 4 columns: an 8-pixel square box
        views = searcher_lib.mask_views(
            mask, (0.0, 0.5), fakes.photo(0, width=40, height=32)
        )
        self.assertEqual([view.pad for view in views], [0.0, 0.5])
        # The box: rows 1..9, columns 2..10 (8 wide around column 6); 12
        # wide with the padding of 0.5; the image lies in rows 1..14.
        for view, (top, left, bottom, right) in zip(
            views, [(1, 2, 9, 10), (-1, 0, 11, 12)]
        ):
            self.assertAlmostEqual(view.top, (top - 1) / 13, places=6)
            self.assertAlmostEqual(view.bottom, (bottom - 1) / 13, places=6)
            self.assertAlmostEqual(view.left, left / 16, places=6)
            self.assertAlmostEqual(view.right, right / 16, places=6)

    def test_mask_png_is_grey_and_as_wide_as_the_image(self):
        mask = np.full((16, 16), 0.5, np.float32)
        png = searcher_lib.mask_as_png(
            mask, fakes.photo(0, width=40, height=20)
        )
        image = Image.open(io.BytesIO(png))
        self.assertEqual((image.mode, image.size), ("L", (16, 8)))
        self.assertEqual(image.getpixel((3, 3)), 128)


class SearcherTest(absltest.TestCase):

    def test_a_catalogue_image_finds_itself_first(self):
        searcher, _, catalogue, index = fakes.make_searcher(self)
        answer = searcher.search(catalogue[3], "query.png", k=4)
        self.assertEqual(answer.item_ids[0], "brand/item-3")
        self.assertLen(answer.item_ids, 4)
        self.assertAlmostEqual(answer.scores[0], 1.0, places=5)
        self.assertEqual(answer.scores, sorted(answer.scores, reverse=True))
        self.assertEqual(
            answer.model,
            {"name": "fake", "version": 1, "fingerprint": "weights-1"},
        )
        self.assertEqual(answer.index["directory"], os.path.basename(index))
        self.assertEqual(set(answer.timings_ms), {"decode", "embed", "search"})
        self.assertIsNone(answer.mask_png)

    def test_k_is_checked_and_clipped_to_the_catalogue(self):
        searcher, _, catalogue, _ = fakes.make_searcher(self)
        self.assertLen(searcher.search(catalogue[0], "q", k=100).item_ids, 12)
        for k in (0, 101):
            with self.assertRaisesRegex(searcher_lib.RequestError, f"k={k}"):
                searcher.search(catalogue[0], "q", k=k)

    def test_an_image_the_model_refuses_is_a_request_error(self):
        searcher, _, _, _ = fakes.make_searcher(self)
        refused = fakes.encode_png(np.zeros((13, 13, 3), np.uint8))
        with self.assertRaisesRegex(
            searcher_lib.RequestError, f"query.png is {fakes.REFUSED_STATUS}"
        ):
            searcher.search(refused, "query.png")

    def test_multiscale_picks_the_signature(self):
        model = fakes.FakeModel()
        used = []
        embedding_model = model.as_embedding_model()
        model.as_embedding_model = lambda: models.EmbeddingModel(
            embedding_model.identity,
            {
                name: (
                    lambda images, name=name: used.append(name)
                    or model.embed(images)
                )
                for name in contract.QUERY_SIGNATURES
            },
            None,
            "the fake model",
        )
        searcher, _, catalogue, _ = fakes.make_searcher(self, model=model)
        used.clear()
        searcher.search(catalogue[0], "q", multiscale=True)
        searcher.search(catalogue[0], "q", multiscale=False)
        self.assertEqual(used, ["query_multiscale", "serving_default"])
        with self.assertRaisesRegex(searcher_lib.RequestError, "mask=true"):
            searcher.search(catalogue[0], "q", mask=True)

    def test_the_mask_is_returned_when_asked(self):
        searcher, _, catalogue, _ = fakes.make_searcher(self)
        answer = searcher.search(catalogue[0], "q", mask=True)
        mask = Image.open(io.BytesIO(answer.mask_png))
        self.assertEqual(mask.size, (16, 13))  # 40 x 32 in a 16 x 16 square
        self.assertIn("mask", answer.timings_ms)
        self.assertIsNone(answer.views)  # the fake's identity has no views

    def test_a_model_with_mask_views_gives_the_views_with_the_mask(self):
        model = fakes.FakeModel(
            {**fakes.identity(), "query_mask_views": [0.25, 1.0]}
        )
        searcher, _, catalogue, _ = fakes.make_searcher(self, model=model)
        answer = searcher.search(catalogue[0], "q", mask=True)
        # The fake mask covers rows and columns 4..12 of 16: with a padding
        # of 0.25, 3..13; with 1.0, the whole square. The 40 x 32 photo lies
        # in rows 1..14 of the square.
        np.testing.assert_allclose(
            [dataclasses.astuple(view) for view in answer.views],
            [
                (0.25, 2 / 13, 3 / 16, 12 / 13, 13 / 16),
                (1.0, -1 / 13, 0.0, 15 / 13, 1.0),
            ],
            atol=1e-6,
        )
        self.assertIn("mask", answer.timings_ms)
        # Only a multiscale search embeds the views; only the mask shows them.
        self.assertIsNone(
            searcher.search(
                catalogue[0], "q", mask=True, multiscale=False
            ).views
        )
        self.assertIsNone(searcher.search(catalogue[0], "q").views)

    def test_concurrent_searches_share_model_calls(self):
        model = fakes.FakeModel()
        config = searcher_lib.ServiceConfig(max_batch=8, batch_timeout_ms=200)
        searcher, model, catalogue, _ = fakes.make_searcher(self, config, model)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda n: searcher.search(catalogue[n], "q"), range(8))
            )
        self.assertEqual(
            [answer.item_ids[0] for answer in answers],
            [f"brand/item-{n}" for n in range(8)],
        )
        self.assertEqual(model.calls, [8])
        stats = searcher.batching_stats()
        self.assertEqual(
            stats["model_calls"]["query_multiscale"], {"calls": 1, "images": 8}
        )
        self.assertEqual(stats["max_batch"], 8)

    def test_searches_during_index_swaps_all_succeed(self):
        config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1, index_poll_seconds=0.02
        )
        searcher, _, catalogue, index = fakes.make_searcher(
            self, config, versioned=True
        )
        stop = threading.Event()
        seen_versions, errors = set(), []

        def search_until_stopped():
            while not stop.is_set():
                try:
                    answer = searcher.search(catalogue[2], "q", k=3)
                    assert answer.item_ids[0] == "brand/item-2", answer
                    seen_versions.add(answer.index["version"])
                except Exception as error:  # pylint: disable=broad-except
                    errors.append(error)

        threads = [
            threading.Thread(target=search_until_stopped) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for version in (2, 3):
            fakes.write_index(
                os.path.join(index, str(version)),
                os.path.join(index, f"catalogue{version}"),
            )
            deadline = time.monotonic() + 10
            while (
                searcher.status()["index"]["version"] != version
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
        time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(seen_versions, {1, 2, 3})

    def test_an_answers_thumbnails_survive_a_swap(self):
        # Issue 21, finding 9: a search answered by version 1 had its
        # thumbnails looked up in version 2 once swapped in.
        searcher, _, catalogue, index = fakes.make_searcher(
            self, searcher_lib.ServiceConfig(batch_timeout_ms=1), versioned=True
        )
        answer = searcher.search(catalogue[9], "q", k=1)
        self.assertEqual(answer.item_ids, ["brand/item-9"])
        fakes.write_index(
            os.path.join(index, "2"), os.path.join(index, "catalogue2"), count=5
        )
        self.assertTrue(searcher._require_loaded().versions.poll())
        self.assertEqual(searcher.status()["index"]["version"], 2)
        self.assertTrue(
            searcher.thumbnail("brand/item-9").startswith(b"\xff\xd8")
        )

    def test_thumbnails_only_for_indexed_items(self):
        config = searcher_lib.ServiceConfig(thumbnail_side=16)
        searcher, _, _, _ = fakes.make_searcher(self, config)
        thumbnail = Image.open(io.BytesIO(searcher.thumbnail("brand/item-1")))
        self.assertEqual((thumbnail.format, thumbnail.size), ("JPEG", (16, 13)))
        for item_id in ("brand/item-99", "../catalogue/item1.png", ""):
            with self.assertRaisesRegex(
                searcher_lib.RequestError, "no item"
            ) as raised:
                searcher.thumbnail(item_id)
            self.assertEqual(raised.exception.status_code, 404)

    def test_a_missing_catalogue_image_is_404(self):
        searcher, _, _, index = fakes.make_searcher(self)
        os.remove(
            os.path.join(os.path.dirname(index), "catalogue", "item2.png")
        )
        with self.assertRaisesRegex(
            searcher_lib.RequestError, "item 'brand/item-2' cannot be read"
        ) as raised:
            searcher.thumbnail("brand/item-2")
        self.assertEqual(raised.exception.status_code, 404)

    def test_not_ready_until_loaded_and_a_failed_load_is_reported(self):
        root = testing.make_tempdir(self)
        fakes.write_index(os.path.join(root, "index"), root)
        model = fakes.FakeModel(fakes.identity(version=7))
        searcher = searcher_lib.Searcher(
            model.as_embedding_model, os.path.join(root, "index")
        )
        self.assertFalse(searcher.status()["ready"])
        with self.assertRaises(searcher_lib.NotReadyError):
            searcher.search(fakes.photo(0), "q")
        failures = []
        searcher.start(on_failure=failures.append).join(10)
        self.assertLen(failures, 1)
        status = searcher.status()
        self.assertFalse(status["ready"])
        # What failed, without the details that name folders of the machine
        # (the log has them).
        self.assertRegex(
            status["error"], "failed \\(IncompatibleModelError\\).*log says why"
        )
        self.assertNotIn(root, status["error"])
        self.assertIsInstance(failures[0], ValueError)
        with self.assertRaisesRegex(
            searcher_lib.NotReadyError, "IncompatibleModelError"
        ):
            searcher.search(fakes.photo(0), "q")


if __name__ == "__main__":
    absltest.main()
