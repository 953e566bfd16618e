"""Tests for beau_tf.search_service.limits: the service under slow, many and
hostile clients (issue 21, findings 1-3 and 6).

The deadlines are seconds long in the service; here they are fractions of a
second, and each test checks what the client gets (a status, a closed
connection), never how long it took. Every server listens on 127.0.0.1 and
every read gives up after 10 s.
"""

import concurrent.futures
import os
import threading

from absl.testing import absltest
from fastapi import testclient
import httpx

from beau_tf.search_service import app as app_lib
from beau_tf.search_service import embedders
from beau_tf.search_service import limits
from beau_tf.search_service import searcher as searcher_lib
from tests.fixtures import bad_inputs
from tests.fixtures import fakes
from tests.fixtures import http_server

LOCAL_URL = "http://127.0.0.1"
SHORT = 0.5  # seconds: every deadline of the real-server tests


def upload(data: bytes, name: str = "photo.png") -> dict:
    return {"image": (name, data, "image/png")}


class AllowedHostsTest(absltest.TestCase):

    def test_a_local_service_answers_local_names_only(self):
        self.assertEqual(
            limits.allowed_hosts_for("127.0.0.1"), limits.LOCAL_HOSTS
        )
        self.assertEqual(
            limits.allowed_hosts_for("localhost", ["shop.example"]),
            (*limits.LOCAL_HOSTS, "shop.example"),
        )

    def test_every_network_answers_any_name_unless_told(self):
        self.assertEqual(limits.allowed_hosts_for("0.0.0.0"), ("*",))
        self.assertEqual(
            limits.allowed_hosts_for("0.0.0.0", ["Search.Example:443"]),
            ("search.example",),
        )
        self.assertEqual(limits.allowed_hosts_for("10.1.2.3"), ("10.1.2.3",))

    def test_host_name_drops_the_port(self):
        for header, name in [
            ("127.0.0.1:8080", "127.0.0.1"),
            ("LocalHost", "localhost"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
        ]:
            self.assertEqual(limits.host_name(header), name)


class RequestGuardTest(absltest.TestCase):
    """Host, Origin, docs and the concurrency limit, in-process."""

    def setUp(self):
        super().setUp()
        self.config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1, max_concurrent_searches=1
        )
        self.searcher, self.model, self.catalogue, self.index = (
            fakes.make_searcher(self, self.config)
        )
        self.client = testclient.TestClient(
            app_lib.make_app(self.searcher), base_url=LOCAL_URL
        )
        self.client.__enter__()  # one event loop for every request
        self.addCleanup(self.client.__exit__, None, None, None)

    def test_another_host_name_is_refused(self):
        # A name that resolves here (DNS rebinding) is not this service's.
        for host in ("evil.example", "evil.example:8080", "127.0.0.1.nip.io"):
            response = self.client.post(
                "/search",
                files=upload(self.catalogue[0]),
                headers={"host": host},
            )
            self.assertEqual(response.status_code, 400, host)
            self.assertRegex(response.json()["error"], "does not answer")
        self.assertEqual(self.model.calls, [])
        for host in ("localhost:8080", "[::1]:8080", "127.0.0.1"):
            response = self.client.get("/healthz", headers={"host": host})
            self.assertEqual(response.status_code, 200, host)

    def test_a_post_from_another_sites_page_is_refused(self):
        response = self.client.post(
            "/search",
            files=upload(self.catalogue[0]),
            headers={"origin": "https://evil.example"},
        )
        self.assertEqual(response.status_code, 403)
        self.assertRegex(response.json()["error"], "evil.example")
        self.assertEqual(self.model.calls, [])
        # The service's own page posts with its own origin.
        response = self.client.post(
            "/search",
            files=upload(self.catalogue[0]),
            headers={"origin": LOCAL_URL},
        )
        self.assertEqual(response.status_code, 200, response.text)

    def test_no_page_loads_code_from_a_cdn(self):
        self.assertEqual(self.client.get("/docs").status_code, 404)
        self.assertEqual(self.client.get("/redoc").status_code, 404)
        self.assertEqual(self.client.get("/openapi.json").status_code, 200)
        page = self.client.get("/").text
        self.assertNotRegex(page, r"<script[^>]+src=\"https?:")

    def test_searches_over_the_limit_get_503_and_thumbnails_still_answer(self):
        self.model.hold = threading.Event()
        self.addCleanup(self.model.hold.set)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                self.client.post, "/search", files=upload(self.catalogue[0])
            )
            self.assertTrue(self.model.entered.wait(30))
            second = self.client.post(
                "/search", files=upload(self.catalogue[1])
            )
            self.assertEqual(second.status_code, 503)
            self.assertEqual(
                second.headers["retry-after"],
                str(self.config.retry_after_seconds),
            )
            self.assertRegex(second.json()["error"], "1 searches in progress")
            # The page's thumbnails run on other threads than searches.
            thumbnail = self.client.get("/items/brand/item-3/image")
            self.assertEqual(thumbnail.status_code, 200)
            self.model.hold.set()
            self.assertEqual(first.result(30).status_code, 200)
        third = self.client.post("/search", files=upload(self.catalogue[2]))
        self.assertEqual(third.status_code, 200)

    def test_uploads_over_their_limit_get_503_unread(self):
        config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1, max_concurrent_uploads=1
        )
        searcher, model, catalogue, _ = fakes.make_searcher(self, config)
        model.hold = threading.Event()
        self.addCleanup(model.hold.set)
        with (
            testclient.TestClient(
                app_lib.make_app(searcher), base_url=LOCAL_URL
            ) as client,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            first = pool.submit(
                client.post, "/search", files=upload(catalogue[0])
            )
            self.assertTrue(model.entered.wait(30))
            second = client.post("/search", files=upload(catalogue[1]))
            self.assertEqual(second.status_code, 503)
            self.assertIn("retry-after", second.headers)
            self.assertRegex(second.json()["error"], "1 uploads in progress")
            self.assertEqual(second.headers["connection"], "close")
            model.hold.set()
            self.assertEqual(first.result(30).status_code, 200)

    def test_uploads_waiting_too_long_for_a_decode_get_503(self):
        config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1,
            max_concurrent_decodes=1,
            answer_timeout_seconds=0.05,
        )
        searcher, model, catalogue, _ = fakes.make_searcher(self, config)
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        slots = searcher._decode_slots  # pylint: disable=protected-access
        self.assertTrue(slots.acquire(timeout=1))  # a decode in progress
        try:
            response = client.post("/search", files=upload(catalogue[0]))
        finally:
            slots.release()
        self.assertEqual(response.status_code, 503)
        self.assertIn("retry-after", response.headers)
        self.assertEqual(model.calls, [])
        response = client.post("/search", files=upload(catalogue[0]))
        self.assertEqual(response.status_code, 200)


class HostileUploadsTest(absltest.TestCase):
    """Uploads made to cost a decoder far more than their size (findings 1
    and 2): refused from the header, or stopped by the CPU budget."""

    def setUp(self):
        super().setUp()
        self.config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1,
            max_decode_bytes=32 * 2**20,
        )
        self.searcher, self.model, self.catalogue, _ = fakes.make_searcher(
            self, self.config
        )
        self.client = testclient.TestClient(
            app_lib.make_app(self.searcher), base_url=LOCAL_URL
        )

    def assert_refused(self, data: bytes, name: str, pattern: str):
        response = self.client.post("/search", files=upload(data, name))
        self.assertEqual(response.status_code, 400, response.text)
        self.assertRegex(response.json()["error"], pattern)
        self.assertEqual(self.model.calls, [])

    def test_a_tiny_lossless_webp_of_many_pixels_is_refused_unread(self):
        data = bad_inputs.lossless_webp(2000)  # 61 MiB of work
        self.assertLess(len(data), 1000)
        self.assert_refused(
            data, "bomb.webp", r"2000×2000 WEBP image.*more than the 32 MiB"
        )

    def test_a_sixteen_bit_png_of_many_pixels_is_refused_unread(self):
        self.assert_refused(
            bad_inputs.sixteen_bit_png(2000),
            "bomb.png",
            r"2000×2000 PNG image \(I;16 pixels\)",
        )

    def test_a_jpeg_of_a_thousand_scans_is_refused_unread(self):
        self.assert_refused(
            bad_inputs.repeated_scan_jpeg(256, 1000),
            "scans.jpg",
            "JPEG of 100[0-9] scans; at most 100",
        )

    def test_a_decode_over_its_cpu_budget_is_stopped(self):
        # 16 MB of pixels inflated from 16 KB take more than 0.002 s.
        self.config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1, decode_cpu_seconds=0.002
        )
        searcher, model, _, _ = fakes.make_searcher(self, self.config)
        response = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        ).post("/search", files=upload(bad_inputs.grey_png(4000), "slow.png"))
        self.assertEqual(response.status_code, 400, response.text)
        self.assertRegex(
            response.json()["error"], r"took more than 0.002 s of CPU"
        )
        self.assertEqual(model.calls, [])

    def test_a_jpeg_cut_short_and_closed_is_refused(self):
        # Finding 7: answered 200 with grey fill before.
        self.assert_refused(
            bad_inputs.truncated_jpeg(2000, 11_000),
            "cut.jpg",
            "'cut.jpg' is truncated",
        )

    def test_a_large_jpeg_is_decoded_at_reduced_size_within_the_limit(self):
        # 6000² would take 172 MiB whole; drafted to 1500² it takes 11.
        response = self.client.post(
            "/search", files=upload(bad_inputs.grey_jpeg(6000), "big.jpg")
        )
        self.assertEqual(response.status_code, 200, response.text)


class SlowClientsTest(absltest.TestCase):
    """Slow and stalled clients against a real server (finding 3)."""

    def setUp(self):
        super().setUp()
        self.config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1,
            header_timeout_seconds=SHORT,
            body_timeout_seconds=SHORT,
            answer_timeout_seconds=SHORT,
            max_connections=4,
        )
        self.searcher, self.model, self.catalogue, _ = fakes.make_searcher(
            self, self.config
        )
        serving = http_server.serving(
            app_lib.make_app(self.searcher), self.config
        )
        self.address = serving.__enter__()
        self.addCleanup(serving.__exit__, None, None, None)

    def connect(self):
        sock = http_server.connect(self.address)
        self.addCleanup(sock.close)
        return sock

    def test_headers_that_stop_coming_end_the_connection(self):
        sock = self.connect()
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = http_server.read_until_closed(sock)
        self.assertTrue(answer.startswith(b"HTTP/1.1 408"), answer)

    def test_headers_sent_a_byte_at_a_time_end_the_connection(self):
        sock = self.connect()
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
        request += b"a" * 400
        closed = False
        for byte in request:  # at most 400 x 20 ms
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            threading.Event().wait(0.02)
        self.assertTrue(closed or http_server.is_closed(sock))

    def test_a_body_shorter_than_declared_gets_408_and_the_close(self):
        sock = self.connect()
        sock.sendall(
            b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 100000\r\n\r\n--x\r\n"
        )
        answer = http_server.read_until_closed(sock)
        self.assertTrue(answer.startswith(b"HTTP/1.1 408"), answer)
        self.assertIn(b"did not arrive within 0.5 s", answer)

    def test_an_idle_keep_alive_connection_is_closed(self):
        sock = self.connect()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(4096)
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and no more
        self.assertIn(b"408", http_server.read_until_closed(sock))

    def test_an_answer_over_its_deadline_is_503_with_retry_after(self):
        self.model.hold = threading.Event()
        self.addCleanup(self.model.hold.set)
        response = httpx.post(
            f"http://{self.address}/search",
            files=upload(self.catalogue[0]),
            timeout=10,
        )
        self.assertEqual(response.status_code, 503, response.text)
        self.assertIn("retry-after", response.headers)
        self.assertRegex(response.json()["error"], "within 0.5 s")
        self.model.hold.set()


class ConnectionCapTest(absltest.TestCase):

    def test_connections_over_the_cap_are_closed_at_once(self):
        config = searcher_lib.ServiceConfig(
            batch_timeout_ms=1, max_connections=3
        )
        searcher, _, _, _ = fakes.make_searcher(self, config)
        with http_server.serving(app_lib.make_app(searcher), config) as address:
            kept = [http_server.connect(address) for _ in range(3)]
            extra = http_server.connect(address)
            try:
                self.assertEqual(http_server.read_until_closed(extra), b"")
                for sock in kept:  # each is open and served
                    sock.sendall(
                        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    )
                    self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 200"))
            finally:
                for sock in [*kept, extra]:
                    sock.close()


class NoPathsInAnswersTest(absltest.TestCase):
    """No answer names a file or folder of the machine (finding 6)."""

    def test_answers_and_errors_hold_no_paths(self):
        config = searcher_lib.ServiceConfig(batch_timeout_ms=1)
        searcher, model, catalogue, index = fakes.make_searcher(self, config)
        root = os.path.dirname(index)
        os.remove(os.path.join(root, "catalogue", "item4.png"))
        client = testclient.TestClient(
            app_lib.make_app(searcher), base_url=LOCAL_URL
        )
        answers = [
            client.post("/search", files=upload(catalogue[0])),
            client.get("/readyz"),
            client.get("/stats"),
            client.get("/items/brand/item-0/image"),
            client.get("/items/brand/item-4/image"),  # its file is gone
            client.get("/items/nothing/image"),
            client.post("/search", files=upload(b"not an image")),
        ]
        model.fail_with = embedders.EmbeddingUnavailableError(
            f"the model in {root} failed"
        )
        answers.append(client.post("/search", files=upload(catalogue[1])))
        self.assertEqual(
            [answer.status_code for answer in answers],
            [200, 200, 200, 200, 404, 404, 400, 503],
        )
        for answer in answers:
            if answer.headers["content-type"].startswith("application/json"):
                self.assertNotIn(root, answer.text)


if __name__ == "__main__":
    absltest.main()
