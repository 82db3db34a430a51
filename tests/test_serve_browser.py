"""The price-estimate page in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``)
driven by Playwright's Python package, against ``airbnb-dl serve``'s application on 127.0.0.1.

Fills the form, clicks the map, uploads a synthetic JPEG and reads a price and a range off the
page; then uploads a file that is not an image and reads the error. Skipped without Chromium,
without Playwright, or without ``$AIRBNB_DATA_DIR`` (the smoke models are trained on it). A
screenshot goes to ``test-artifacts/`` (gitignored); ``AIRBNB_DL_SCREENSHOT=path`` writes one
there too (how ``docs/price-estimate.png`` is made: no listing photo in it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from serve_support import estimator_for, live_server, photo_bytes

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
PRICE = re.compile(r"€\s?(\d+\.\d{2}) / night")
RANGE = re.compile(r"80% range €\s?(\d+\.\d{2}) – €\s?(\d+\.\d{2})")

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} not found: apt-get install -y chromium fonts-dejavu-core"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright's Python package is not installed")


@pytest.fixture(scope="module")
def page_url(real_data_dir):
    from shared.cli.serve.app import create_app

    with live_server(create_app(estimator_for(str(real_data_dir)))) as url:
        yield url


@pytest.fixture
def page(page_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            tab.goto(page_url)
            tab.wait_for_selector("body[data-ready=true]", timeout=30_000)
            yield tab
        finally:
            browser.close()


def _text(page, selector: str) -> str:
    return " ".join((page.text_content(selector) or "").split())


def test_fill_the_form_click_the_map_upload_a_jpeg_and_read_the_price(page, tmp_path):
    photo = tmp_path / "room.jpg"
    photo.write_bytes(photo_bytes("JPEG", (480, 320)))
    page.fill("#f-Accommodates", "4")
    page.fill("#f-Bedrooms", "2")
    page.select_option("#f-Room\\ Type", "Entire home/apt")
    before = page.input_value("#f-Latitude"), page.input_value("#f-Longitude")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.4)
    after = page.input_value("#f-Latitude"), page.input_value("#f-Longitude")
    assert after != before and 40.2 < float(after[0]) < 40.7 and -4.0 < float(after[1]) < -3.4
    page.set_input_files("#photo", str(photo))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)

    price = PRICE.search(_text(page, "#fusion-price"))
    low, high = map(float, RANGE.search(_text(page, "#fusion-range")).groups())
    assert price and low <= float(price.group(1)) <= high
    assert PRICE.search(_text(page, "#tabular-price")) and RANGE.search(_text(page, "#tabular-range"))
    assert "The photo changed the estimate by" in _text(page, "#change")
    assert page.locator("#similar tbody tr").count() == 5
    assert page.is_hidden("#error")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
    if os.environ.get("AIRBNB_DL_SCREENSHOT"):
        page.screenshot(path=os.environ["AIRBNB_DL_SCREENSHOT"], full_page=True)


def test_a_file_that_is_not_an_image_shows_the_error_on_the_page(page, tmp_path):
    bogus = tmp_path / "notes.jpg"
    bogus.write_bytes(b"these are my notes, not a photo\n" * 50)
    page.set_input_files("#photo", str(bogus))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "Photo: not an image" in _text(page, "#error")
    assert page.get_attribute("#photo", "aria-invalid") == "true"
    page.fill("#f-Accommodates", "40")  # the page names the field of a number out of range
    page.set_input_files("#photo", [])
    page.click("#submit")
    # (the page's Content-Security-Policy forbids eval, so the wait is a locator's, not a script)
    sync_api.expect(page.locator("#error")).to_have_text(
        "Guests: must be a whole number from 1 to 16, got 40", timeout=60_000)
    assert page.get_attribute("#f-Accommodates", "aria-invalid") == "true"
