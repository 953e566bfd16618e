"""Tests for beau_tf.search_service.app: the endpoints, through FastAPI's TestClient."""

import base64
import functools
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
from fastapi import testclient
import httpx
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from beau_tf.retrieval import index_dir
from beau_tf.retrieval import scann_index
from beau_tf.search_service import app as app_lib
from beau_tf.search_service import embedders
from beau_tf.search_service import index_versions
from beau_tf.search_service import searcher as searcher_lib
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import prediction_service
from tests.fixtures import fakes
from tests.fixtures import ports
from tests.fixtures import testing
from tests.fixtures import tiny_export

LIMIT_BYTES = 20_000
# The service answers only the names of the address it listens on.
LOCAL_URL = "http://127.0.0.1"


def upload(data: bytes, name: str = "photo.png") -> dict:
    return {"image": (name, data, "image/png")}


class AppTest(absltest.TestCase):

    def setUp(self):
        super().setUp()
        self.searcher, self.model, self.catalogue, self.index = (
            fakes.make_searcher(
                self,
                searcher_lib.ServiceConfig(
                    batch_timeout_ms=1, max_upload_bytes=LIMIT_BYTES
                ),
            )
        )
        self.client = testclient.TestClient(
            app_lib.make_app(self.searcher), base_url=LOCAL_URL
        )

    def assert_error(self, response, status_code, pattern):
        self.assertEqual(response.status_code, status_code, response.text)
        self.assertEqual(set(response.json()), {"error"})
        self.assertRegex(response.json()["error"], pattern)

    def test_search_answers_items_model_index_and_timings(self):
        response = self.client.post(
            "/search", params={"k": 3}, files=upload(self.catalogue[5])
        )
        self.assertEqual(response.status_code, 200, response.text)
        body = response.json()
        self.assertEqual(set(body), {"results", "model", "index", "timings_ms"})
        self.assertLen(body["results"], 3)
        self.assertEqual(
            body["results"][0], {"item_id": "brand/item-5", "score": 1.0}
        )
        self.assertEqual(
            body["model"],
            {"name": "fake", "version": 1, "fingerprint": "weights-1"},
        )
        self.assertEqual(
            body["index"],
            {
                "version": None,
                "directory": os.path.basename(self.index),
                "items": 12,
            },
        )
        self.assertEqual(set(body["timings_ms"]), {"decode", "embed", "search"})

    def test_search_with_mask_adds_a_base64_png(self):
        response = self.client.post(
            "/search",
            params={"mask": "true", "multiscale": "false"},
            files=upload(self.catalogue[0]),
        )
        self.assertEqual(response.status_code, 200, response.text)
        png = base64.b64decode(response.json()["mask_png_base64"])
        self.assertEqual(Image.open(io.BytesIO(png)).size, (16, 13))

    def test_views_come_with_the_mask_only_from_a_model_with_mask_views(self):
        response = self.client.post(
            "/search", params={"mask": "true"}, files=upload(self.catalogue[0])
        )
        self.assertEqual(response.status_code, 200, response.text)
        self.assertNotIn("views", response.json())  # the fake has none

        model = fakes.FakeModel(
            {**fakes.identity(), "query_mask_views": [0.25]}
        )
        searcher, _, catalogue, _ = fakes.make_searcher(self, model=model)
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        response = client.post(
            "/search", params={"mask": "true"}, files=upload(catalogue[0])
        )
        self.assertEqual(response.status_code, 200, response.text)
        # The fake mask's box, rows and columns 4..12 of 16, padded to
        # 3..13; the 40 x 32 photo lies in rows 1..14 of the square.
        self.assertEqual(
            response.json()["views"],
            [
                {
                    "pad": 0.25,
                    "top": round(2 / 13, 6),
                    "left": 0.1875,
                    "bottom": round(12 / 13, 6),
                    "right": 0.8125,
                }
            ],
        )
        response = client.post(
            "/search",
            params={"mask": "true", "multiscale": "false"},
            files=upload(catalogue[0]),
        )
        self.assertNotIn("views", response.json())

    def test_k_out_of_range_or_not_a_number_is_400(self):
        for k, pattern in [
            (0, "k=0 is out of range"),
            (101, "k=101"),
            ("many", "k: .*integer"),
        ]:
            response = self.client.post(
                "/search", params={"k": k}, files=upload(self.catalogue[0])
            )
            self.assert_error(response, 400, pattern)

    def test_a_missing_file_or_wrong_field_is_400(self):
        self.assert_error(
            self.client.post("/search"), 400, "no image uploaded.*'image'"
        )
        self.assert_error(
            self.client.post(
                "/search", files={"photo": ("p.png", self.catalogue[0])}
            ),
            400,
            "no image uploaded",
        )
        self.assert_error(
            self.client.post("/search", data={"image": "not a file"}),
            400,
            "image",
        )
        self.assert_error(
            self.client.post(
                "/search",
                content=b"--x\r\nbroken",
                headers={"content-type": "multipart/form-data; boundary=x"},
            ),
            400,
            ".",
        )

    def test_unusable_images_are_400_with_the_reason(self):
        cases = [
            (b"\x00garbage" * 10, "'photo.png' is not a decodable image"),
            (
                fakes.encode_png(np.zeros((1, 1, 3), np.uint8)),
                "1×1 pixels; at least 8 px",
            ),
            (
                fakes.encode_png(np.zeros((13, 13, 3), np.uint8)),
                "the fake model refuses",
            ),
        ]
        for data, pattern in cases:
            self.assert_error(
                self.client.post("/search", files=upload(data)), 400, pattern
            )
        # The service lives on.
        ok = self.client.post("/search", files=upload(self.catalogue[1]))
        self.assertEqual(ok.status_code, 200)

    def test_too_large_uploads_are_413(self):
        just_over = bytes(LIMIT_BYTES + 1)
        self.assert_error(
            self.client.post("/search", files=upload(just_over)),
            413,
            "at most 19.5 KiB",
        )
        huge = bytes(10 * LIMIT_BYTES)  # refused by its Content-Length
        self.assert_error(
            self.client.post("/search", files=upload(huge)),
            413,
            "request is too large",
        )

        def chunks():  # no Content-Length: counted as it arrives
            yield b'--x\r\nContent-Disposition: form-data; name="image"; '
            yield b'filename="a.png"\r\n\r\n'
            for _ in range(100):
                yield bytes(LIMIT_BYTES)

        self.assert_error(
            self.client.post(
                "/search",
                content=chunks(),
                headers={"content-type": "multipart/form-data; boundary=x"},
            ),
            413,
            "request is too large",
        )

    def test_model_failure_is_503_and_the_next_request_works(self):
        self.model.fail_with = embedders.EmbeddingUnavailableError(
            "could not reach TF Serving"
        )
        with self.assertLogs(level="ERROR") as logs:
            self.assert_error(
                self.client.post("/search", files=upload(self.catalogue[0])),
                503,
                "the model could not embed the image; the service's log",
            )
        # The details (which name the model's folder or server) are logged.
        self.assertIn("could not reach TF Serving", "\n".join(logs.output))
        self.model.fail_with = None
        ok = self.client.post("/search", files=upload(self.catalogue[0]))
        self.assertEqual(ok.status_code, 200)

    def test_a_bug_is_a_json_500_and_the_service_lives_on(self):
        self.model.fail_with = KeyError("a bug")
        client = testclient.TestClient(
            app_lib.make_app(self.searcher),
            base_url=LOCAL_URL,
            raise_server_exceptions=False,
        )
        self.assert_error(
            client.post("/search", files=upload(self.catalogue[0])),
            500,
            "internal error \\(KeyError\\)",
        )
        self.model.fail_with = None
        ok = client.post("/search", files=upload(self.catalogue[0]))
        self.assertEqual(ok.status_code, 200)

    def test_item_images_are_thumbnails_of_indexed_items_only(self):
        response = self.client.get("/items/brand/item-4/image")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["content-type"], "image/jpeg")
        self.assertEqual(
            Image.open(io.BytesIO(response.content)).size, (40, 32)
        )
        for path in (
            "/items/brand/item-404/image",
            "/items/%2E%2E/%2E%2E/catalogue/item4.png/image",
            "/items/..%2F..%2Fetc%2Fpasswd/image",
            "/items" + self.catalogue_path(4) + "/image",
        ):
            self.assert_error(self.client.get(path), 404, "no item|Not Found")

    def catalogue_path(self, number):
        folder = os.path.join(os.path.dirname(self.index), "catalogue")
        return os.path.join(folder, f"item{number}.png")

    def test_health_readiness_page_and_unknown_routes(self):
        self.assertEqual(self.client.get("/healthz").json(), {"alive": True})
        ready = self.client.get("/readyz")
        self.assertEqual(ready.status_code, 200)
        self.assertTrue(ready.json()["ready"])
        self.assertEqual(
            ready.json()["index"]["directory"], os.path.basename(self.index)
        )
        page = self.client.get("/")
        self.assertEqual(page.status_code, 200)
        self.assertIn("<form", page.text)
        stats = self.client.get("/stats").json()
        self.assertEqual(stats["max_batch"], 16)
        self.assertEqual(
            set(stats["model_calls"]),
            {"serving_default", "query_multiscale", "mask"},
        )
        self.assert_error(self.client.get("/nowhere"), 404, "Not Found")
        self.assert_error(self.client.get("/search"), 405, "Method Not Allowed")


class NotReadyAppTest(absltest.TestCase):

    def test_alive_but_not_ready_while_loading(self):
        root = testing.make_tempdir(self)
        fakes.write_index(os.path.join(root, "index"), root)
        searcher = searcher_lib.Searcher(
            fakes.FakeModel().as_embedding_model, os.path.join(root, "index")
        )
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        self.assertEqual(client.get("/healthz").status_code, 200)
        ready = client.get("/readyz")
        self.assertEqual(ready.status_code, 503)
        self.assertFalse(ready.json()["ready"])
        response = client.post("/search", files=upload(fakes.photo(0)))
        self.assertEqual(response.status_code, 503)
        self.assertRegex(response.json()["error"], "still loading")
        self.assertEqual(
            client.get("/items/brand/item-1/image").status_code, 503
        )


def distinct_photo(number: int) -> bytes:
    """A 40 x 32 PNG of its own colour and pattern, for a real model to
    tell apart."""
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[...] = (number * 37 % 256, number * 91 % 256, number * 151 % 256)
    rgb[4 + number : 12 + number, 2 * number : 2 * number + 10] = 255
    return fakes.encode_png(rgb)


def index_distinct_photos(model_dir: str, root: str) -> tuple:
    """Writes a catalogue of `distinct_photo`s under `root` and indexes it
    with the export as version 1 of a base folder; returns (base folder,
    catalogue images)."""
    model = embedders.load_local_model(model_dir)
    ids, paths, catalogue = fakes.write_catalogue(
        os.path.join(root, "catalogue"), make_image=distinct_photo
    )
    batch = model.embed_fns["serving_default"](catalogue)
    assert set(batch.statuses) == {"ok"}, batch.statuses
    index = os.path.join(root, "indexes")
    index_dir.build_and_save(
        index_dir.EmbeddedCatalog(
            batch.embeddings, ids, paths, contract.model_identity(model_dir)
        ),
        os.path.join(index, "1"),
        scann_index.IndexParams("brute_force", 5),
    )
    return index, catalogue


@pytest.mark.slow  # exports a tiny model and starts the service (~20 s)
class RealExportTest(absltest.TestCase):
    """The real app over a tiny exported model, locally and over gRPC."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tempdir = tempfile.TemporaryDirectory()
        root = cls.tempdir.name
        cls.model_dir = tiny_export.export_tiny(os.path.join(root, "exported"))
        cls.index, cls.catalogue = index_distinct_photos(cls.model_dir, root)

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()
        super().tearDownClass()

    def search_all_ways(self, load_model) -> list:
        searcher = searcher_lib.Searcher(load_model, self.index)
        searcher.load()
        self.addCleanup(searcher.close)
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        self.assertEqual(client.get("/readyz").json()["index"]["version"], 1)
        bodies = []
        for multiscale in ("false", "true"):
            response = client.post(
                "/search",
                params={"multiscale": multiscale, "k": 3},
                files=upload(self.catalogue[3]),
            )
            self.assertEqual(response.status_code, 200, response.text)
            bodies.append(response.json())
        garbage = client.post("/search", files=upload(b"GIF89a garbage"))
        self.assertEqual(garbage.status_code, 400)
        self.assertRegex(
            garbage.json()["error"], "'photo.png' starts like a GIF"
        )
        return bodies

    def test_local_and_remote_models_find_the_same_items(self):
        local = self.search_all_ways(
            functools.partial(embedders.load_local_model, self.model_dir)
        )
        single_view = local[0]["results"]
        self.assertEqual(single_view[0]["item_id"], "brand/item-3")
        self.assertAlmostEqual(single_view[0]["score"], 1.0, places=4)
        self.assertEqual(local[0]["model"]["name"], "beau_tf")

        server, address = prediction_service.start_server(
            self.model_dir, "beau_tf", 1
        )
        self.addCleanup(server.stop, 0)
        remote = self.search_all_ways(
            lambda: embedders.connect_to_server(
                address, index_versions.newest_model_identity(self.index)
            )
        )
        for local_body, remote_body in zip(local, remote):
            self.assertEqual(
                [r["item_id"] for r in remote_body["results"]],
                [r["item_id"] for r in local_body["results"]],
            )

    def test_the_mask_covers_the_upload(self):
        searcher = searcher_lib.Searcher(
            functools.partial(embedders.load_local_model, self.model_dir),
            self.index,
        )
        searcher.load()
        self.addCleanup(searcher.close)
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        response = client.post(
            "/search", params={"mask": "true"}, files=upload(self.catalogue[0])
        )
        self.assertEqual(response.status_code, 200, response.text)
        mask = Image.open(
            io.BytesIO(base64.b64decode(response.json()["mask_png_base64"]))
        )
        # 40 x 32 pixels fitted into the model's 16 x 16 square.
        self.assertEqual((mask.mode, mask.size), ("L", (16, 13)))

    def test_the_command_line_serves_until_stopped(self):
        port = ports.free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "beau_tf.serve",
                f"--index={self.index}",
                f"--model={self.model_dir}",
                f"--port={port}",
            ],
            cwd=testing.REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(process.kill)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            self.assertIsNone(process.poll(), "the service exited")
            time.sleep(0.5)
        response = httpx.post(
            f"{url}/search",
            params={"multiscale": "false"},
            files=upload(self.catalogue[2]),
        )
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(
            response.json()["results"][0]["item_id"], "brand/item-2"
        )
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        # A server stopped by Ctrl-C shuts down in order and ends cleanly,
        # not as an interrupted command (cli.run's 130).
        output = output.decode()
        self.assertIn("Finished server process", output)
        self.assertEqual(output.splitlines()[-1], "stopped", output)
        self.assertEqual(process.returncode, 0, output)

    def test_the_command_line_refuses_a_model_that_is_no_export(self):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "beau_tf.serve",
                f"--index={self.index}",
                f"--model={os.path.dirname(self.model_dir)}",  # no version
                f"--port={ports.free_port()}",
            ],
            cwd=testing.REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        # Said at once, before anything listens or loads (issue 21,
        # finding 11).
        self.assertRegex(
            result.stderr.splitlines()[-1],
            "^error: .*beau_tf.json not found: .* is not a SavedModel version",
        )
        self.assertNotIn("Started server process", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_the_command_line_names_a_taken_port(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "beau_tf.serve",
                    f"--index={self.index}",
                    f"--model={self.model_dir}",
                    f"--port={port}",
                ],
                cwd=testing.REPO,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                capture_output=True,
                text=True,
                timeout=120,
            )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertRegex(
            result.stderr.splitlines()[-1],
            f"^error: cannot listen on 127.0.0.1:{port} .*Pick another --port",
        )
        self.assertNotIn("Ready in", result.stderr)  # refused before loading


@pytest.mark.slow  # exports a tiny model (~10 s)
class MaskViewsTest(absltest.TestCase):
    """The views the service reports are the crops `query_multiscale`
    embedded: the signature's own `view_boxes`, placed on the upload."""

    def test_the_views_are_the_signatures_view_boxes_on_the_upload(self):
        root = testing.make_tempdir(self)
        pads = (0.25, 1.0)
        model_dir = tiny_export.export_tiny(
            os.path.join(root, "exported"),
            query_mask_views=pads,
            mask_of_white=True,
        )
        index, _ = index_distinct_photos(model_dir, root)
        searcher = searcher_lib.Searcher(
            functools.partial(embedders.load_local_model, model_dir), index
        )
        searcher.load()
        self.addCleanup(searcher.close)
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        photo = tiny_export.white_product_photo()
        response = client.post(
            "/search", params={"mask": "true"}, files=upload(photo)
        )
        self.assertEqual(response.status_code, 200, response.text)
        views = response.json()["views"]

        signature = embedding_lib.load_signatures(
            model_dir, [contract.MULTISCALE_SIGNATURE_NAME]
        )[contract.MULTISCALE_SIGNATURE_NAME]
        prepared = searcher_lib.prepare_upload(
            photo, "photo", searcher_lib.ServiceConfig()
        )
        boxes = signature(images=tf.constant([prepared]))[
            contract.VIEW_BOXES_OUTPUT
        ].numpy()[
            0
        ]  # (1, P, 4) -> (P, 4)
        width, height = tiny_export.WHITE_PRODUCT_PHOTO_SIZE
        expected = searcher_lib.square_boxes_to_image(
            boxes, width, height, tiny_export.IMAGE_SIZE
        )
        self.assertEqual([view["pad"] for view in views], list(pads))
        np.testing.assert_allclose(
            [
                [view[side] for side in ("top", "left", "bottom", "right")]
                for view in views
            ],
            expected,
            atol=1e-5,
        )
        # Around the product (rows 4..20, columns 36..52 of 64 x 40): the
        # wider view reaches past the photo's top.
        top, left, bottom, right = tiny_export.WHITE_PRODUCT_BOX
        for view in views:
            self.assertLessEqual(view["top"], top / height)
            self.assertLessEqual(view["left"], left / width)
            self.assertGreaterEqual(view["bottom"], bottom / height)
            self.assertGreaterEqual(view["right"], right / width)
        self.assertLess(views[1]["top"], 0.0)


if __name__ == "__main__":
    absltest.main()
