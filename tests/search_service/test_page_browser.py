"""The service's web page in a real browser: headless Chromium via Selenium.

The real service (a tiny exported model with mask views, an index of a small
synthetic catalogue) runs on a free 127.0.0.1 port; the page is opened, a
photo uploaded, and what it shows (results, mask, the views' boxes) is
checked against the JSON API. Chromium and
chromedriver come from the system (Debian: apt-get install chromium
chromium-driver; scripts/test.sh installs them); without them the test is
skipped, except in CI (CI=true), where it fails. A screenshot of the page is
kept in the test's temporary folder and, when BEAU_TF_SCREENSHOT_DIR is set,
in that folder too.
"""

import functools
import os
import shutil
import tempfile
import threading
import time
import unittest

from absl.testing import absltest
import httpx
import pytest
import uvicorn

from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.retrieval import index_dir
from beau_tf.retrieval import shards
from beau_tf.search_service import app as app_lib
from beau_tf.search_service import embedders
from beau_tf.search_service import searcher as searcher_lib
from beau_tf.serving import contract
from tests.fixtures import ports
from tests.fixtures import testing
from tests.fixtures import tiny_export

try:
    from selenium import webdriver
    from selenium.webdriver.chrome import service as chrome_service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the test extra is not installed
    webdriver = None

SCREENSHOT_DIR_VARIABLE = "BEAU_TF_SCREENSHOT_DIR"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
WAIT_SECONDS = 60
MASK_VIEWS = (0.25, 1.0)
# The page's colour and line width for the views' boxes (VIEW_RGB, VIEW_LINE).
VIEW_RGBA = [255, 176, 0, 255]
VIEW_LINE = 3


def find_browser() -> tuple[str | None, str | None, str]:
    """`(chromium, chromedriver, why not)`: the two paths, or a reason."""
    if webdriver is None:
        return (
            None,
            None,
            'selenium is not installed (pip install -e ".[test]")',
        )
    browser = next(filter(None, map(shutil.which, BROWSER_NAMES)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return (
            None,
            None,
            "Chromium or chromedriver is not installed (Debian: apt-get "
            "install chromium chromium-driver; scripts/test.sh does it)",
        )
    return browser, driver, ""


def start_chromium(browser: str, driver: str):
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root
        "--disable-dev-shm-usage",  # containers have a small /dev/shm
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(
        service=chrome_service.Service(executable_path=driver), options=options
    )


def start_service(searcher: searcher_lib.Searcher) -> tuple:
    """Serves the app on a free port in a thread; returns (server, thread,
    url)."""
    port = ports.free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app_lib.make_app(searcher),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the service did not start on port {port}")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.mark.slow  # exports a tiny model, starts the service and Chromium (~20 s)
class SearchPageTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        browser, driver, why_not = find_browser()
        if why_not and testing.running_in_ci():
            # CI installs Chromium (scripts/test.sh): missing, it is a fault.
            raise AssertionError(
                f"CI=true, yet the page test cannot run: {why_not}"
            )
        if why_not:
            raise unittest.SkipTest(why_not)
        cls.tempdir = tempfile.TemporaryDirectory(prefix="beau_tf_page_")
        cls.addClassCleanup(cls.tempdir.cleanup)
        root = cls.tempdir.name
        cls.catalogue = synthetic.write_synthetic_catalog(
            os.path.join(root, "synthetic"),
            num_products=6,
            queries_per_product=1,
            num_backgrounds=0,
            image_size=128,
        )
        model_dir = tiny_export.export_tiny(
            os.path.join(root, "exported"),
            query_mask_views=MASK_VIEWS,
            mask_of_white=True,
        )
        index = os.path.join(root, "index")
        index_dir.build_and_save(
            shards.embed_catalog_shard(
                model_dir,
                contract.model_identity(model_dir),
                catalog_lib.list_catalog(cls.catalogue.catalog_csv),
            ),
            index,
        )
        searcher = searcher_lib.Searcher(
            functools.partial(embedders.load_local_model, model_dir),
            index,
            searcher_lib.ServiceConfig(batch_timeout_ms=1),
        )
        searcher.load()
        cls.addClassCleanup(searcher.close)
        server, thread, cls.url = start_service(searcher)

        def stop_service():
            server.should_exit = True
            thread.join(10)

        cls.addClassCleanup(stop_service)
        cls.browser = start_chromium(browser, driver)
        cls.addClassCleanup(cls.browser.quit)
        cls.photo = os.path.join(
            os.path.dirname(cls.catalogue.queries_csv), "queries", "q0000.jpg"
        )
        cls.product_photo = os.path.join(root, "white_product.png")
        with open(cls.product_photo, "wb") as stream:
            stream.write(tiny_export.white_product_photo())

    def setUp(self):
        super().setUp()
        self.browser.get(self.url + "/")
        self.wait = WebDriverWait(self.browser, WAIT_SECONDS)

    def api_search(self, path: str, **params) -> httpx.Response:
        with open(path, "rb") as stream:
            return httpx.post(
                f"{self.url}/search",
                params=params,
                files={"image": (os.path.basename(path), stream.read())},
                timeout=WAIT_SECONDS,
            )

    def upload(self, path: str) -> None:
        self.browser.find_element(By.ID, "file").send_keys(path)

    def cards(self) -> list:
        return self.browser.find_elements(By.CSS_SELECTOR, "#results .result")

    def wait_for_cards(self, count: int) -> list:
        self.wait.until(lambda _: len(self.cards()) == count)
        return self.cards()

    def save_screenshot(self, name: str) -> str:
        path = os.path.join(self.tempdir.name, name)
        self.assertTrue(self.browser.save_screenshot(path))
        wanted = os.environ.get(SCREENSHOT_DIR_VARIABLE)
        if wanted:
            os.makedirs(wanted, exist_ok=True)
            shutil.copy(path, wanted)
        return path

    def test_a_photo_shows_its_mask_and_the_results_the_api_gives(self):
        self.wait.until(
            lambda browser: "ready"
            in browser.find_element(By.ID, "service-status").text
        )
        # Set without a change event, so the upload makes the only search.
        self.browser.execute_script("document.getElementById('k').value = 4")
        self.upload(self.photo)
        self.wait.until(
            lambda browser: browser.find_element(
                By.ID, "mask-canvas"
            ).get_attribute("data-drawn")
            == "true"
        )
        cards = self.wait_for_cards(4)

        expected = self.api_search(self.photo, k=4, multiscale="true")
        self.assertEqual(expected.status_code, 200, expected.text)
        expected = expected.json()["results"]
        self.assertEqual(
            [card.get_attribute("data-item-id") for card in cards],
            [result["item_id"] for result in expected],
        )
        for card, result in zip(cards, expected):
            self.assertEqual(
                card.find_element(By.CLASS_NAME, "result-id").text,
                result["item_id"],
            )
            self.assertEqual(
                card.find_element(By.CLASS_NAME, "result-score").text,
                f"{result['score']:.3f}",
            )
            self.assertAlmostEqual(
                float(card.get_attribute("data-score")),
                result["score"],
                places=4,
            )
        self.assertEqual(self.browser.find_element(By.ID, "error").text, "")

        # The mask is drawn over the photo, as large as it, and not empty.
        photo_size, mask_size, tinted = self.browser.execute_script("""
            const photo = document.getElementById("photo-canvas");
            const mask = document.getElementById("mask-canvas");
            const pixels = mask.getContext("2d").getImageData(
                0, 0, mask.width, mask.height).data;
            let tinted = 0;
            for (let i = 3; i < pixels.length; i += 4) tinted += pixels[i] > 0;
            return [[photo.width, photo.height], [mask.width, mask.height],
                    tinted];
            """)
        self.assertEqual(mask_size, photo_size)
        self.assertGreater(photo_size[0], 1)
        self.assertGreater(tinted, 0)
        # Every thumbnail came from /items/{id}/image.
        self.wait.until(
            lambda browser: browser.execute_script(
                "return [...document.querySelectorAll('.result-image')]"
                ".every((image) => image.complete && image.naturalWidth > 0)"
            )
        )
        self.assertGreater(
            os.path.getsize(self.save_screenshot("search_page.png")), 0
        )

        # Another k searches again.
        k_field = self.browser.find_element(By.ID, "k")
        k_field.clear()
        k_field.send_keys("2", Keys.ENTER)
        cards = self.wait_for_cards(2)
        self.assertEqual(
            [card.get_attribute("data-item-id") for card in cards],
            [result["item_id"] for result in expected[:2]],
        )

    def test_the_views_boxes_are_drawn_over_the_photo(self):
        self.wait.until(
            lambda browser: "ready"
            in browser.find_element(By.ID, "service-status").text
        )
        self.upload(self.product_photo)
        expected = self.api_search(
            self.product_photo, k=5, multiscale="true", mask="true"
        )
        self.assertEqual(expected.status_code, 200, expected.text)
        views = expected.json()["views"]
        self.assertEqual([view["pad"] for view in views], list(MASK_VIEWS))
        self.assertLess(views[1]["top"], 0.0)  # past the photo: clipped
        canvas = self.browser.find_element(By.ID, "mask-canvas")
        self.wait.until(
            lambda _: canvas.get_attribute("data-views") == str(len(views))
        )
        self.assertEqual(
            self.browser.find_element(By.ID, "views-text").text,
            "views the search used: 2 around the product (padded 25%, 100%)",
        )

        # The middle of each side of each box, clipped to the photo and a
        # half line inside, has the boxes' colour; the product's middle,
        # inside every box, has the mask's.
        sides, inside = self.browser.execute_script(
            """
            const [views, line] = arguments;
            const canvas = document.getElementById("mask-canvas");
            const context = canvas.getContext("2d");
            const pixel = (x, y) => [...context.getImageData(
                Math.floor(x), Math.floor(y), 1, 1).data];
            const clip = (side) => Math.max(0, Math.min(1, side));
            const sides = views.map((view) => {
              const left = clip(view.left) * canvas.width;
              const right = clip(view.right) * canvas.width;
              const top = clip(view.top) * canvas.height;
              const bottom = clip(view.bottom) * canvas.height;
              const [x, y] = [(left + right) / 2, (top + bottom) / 2];
              return [pixel(left + line / 2, y), pixel(right - line / 2, y),
                      pixel(x, top + line / 2), pixel(x, bottom - line / 2)];
            });
            const box = views[0];
            return [sides, pixel(
                (box.left + box.right) / 2 * canvas.width,
                (box.top + box.bottom) / 2 * canvas.height)];
            """,
            views,
            VIEW_LINE,
        )
        self.assertEqual(sides, [[VIEW_RGBA] * 4] * len(views))
        # MASK_RGB, give or take the canvas's premultiplied alpha.
        self.assertSequenceAlmostEqual(inside[:3], [255, 64, 129], delta=3)
        self.assertGreater(inside[3], 0)
        self.assertGreater(
            os.path.getsize(self.save_screenshot("search_page_views.png")), 0
        )

        # Unticking "mask" hides the boxes with the mask.
        self.browser.find_element(By.ID, "show-mask").click()
        self.assertFalse(canvas.is_displayed())

    def test_a_bad_upload_shows_the_services_error(self):
        bad = os.path.join(self.tempdir.name, "not_a_photo.png")
        with open(bad, "w") as stream:
            stream.write("this is text, not a photo")
        expected = self.api_search(bad, k=5)
        self.assertEqual(expected.status_code, 400, expected.text)

        self.upload(bad)
        error = self.browser.find_element(By.ID, "error")
        self.wait.until(lambda _: error.is_displayed())
        self.assertEqual(error.text, expected.json()["error"])
        self.assertEqual(self.cards(), [])


if __name__ == "__main__":
    absltest.main()
