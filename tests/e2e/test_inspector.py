"""The pair inspector in Chromium: zoom and pan move both images together, holding X flickers
in place, the swipe slider wipes between them, labels stay blind, no request leaves the machine."""

from urllib.parse import urlparse

import pytest
from server import ROOT, free_port, launch_chromium, start_app, stop_app, wait_healthy

pytestmark = pytest.mark.e2e

# The component lives in a shadow root: locators pierce it, document.querySelector does not.
TRANSFORMS_JS = "imgs => imgs.map(i => i.style.transform)"
LOADED_JS = "imgs => imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def inspector_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspector")
    port = free_port()
    env = {"INSPECTOR_IMAGES": str(folder), "PYTHONPATH": str(ROOT)}
    process = start_app(folder, port, script=ROOT / "tests/e2e/inspector_app.py", env=env)
    try:
        wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_app(process)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.requests = requests
        yield page
        browser.close()


def _open(page, url):
    page.goto(url)
    images = page.locator(".pane img")
    images.first.wait_for()
    for _ in range(100):  # the second image may decode a moment after the first
        if images.evaluate_all(LOADED_JS):
            break
        page.wait_for_timeout(100)
    assert images.evaluate_all(LOADED_JS)


def test_zoom_and_pan_move_both_images_together(page, inspector_url):
    """A wheel zoom and a drag on the left image apply the same transform to the right one."""
    _open(page, inspector_url)
    box = page.locator(".pane").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -600)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 25)
    page.mouse.up()

    left, right = page.locator(".pane img").evaluate_all(TRANSFORMS_JS)
    assert left == right
    assert "scale(1)" not in left
    assert page.locator(".zoom").inner_text() != "100%"
    assert page.locator(".pane .label").all_inner_texts() == ["Left", "Right"]


def test_holding_x_flickers_to_the_other_image_in_place(page, inspector_url):
    """In flicker mode the pane shows the first image, the second while X is held."""
    _open(page, inspector_url)
    page.get_by_role("button", name="Flicker (hold X)").click()
    pane = page.locator(".pane")
    assert pane.count() == 1
    assert pane.get_attribute("data-showing") == "a"

    page.keyboard.down("x")
    assert pane.get_attribute("data-showing") == "b"
    assert page.locator(".pane .label").inner_text() == "Right"
    page.keyboard.up("x")
    assert pane.get_attribute("data-showing") == "a"
    assert page.locator(".pane .label").inner_text() == "Left"


def test_swipe_slider_wipes_between_the_images(page, inspector_url):
    """The slider sets how much of the second image covers the first."""
    _open(page, inspector_url)
    page.get_by_role("button", name="Swipe").click()
    page.locator("input.swipe").fill("20")
    clip = page.locator(".pane .layer.b").evaluate("layer => layer.style.clipPath")
    assert clip == "inset(0px 0px 0px 20%)"


def test_no_request_leaves_the_machine(page, inspector_url):
    """Everything the inspector needs is served by the app itself (images as data URIs)."""
    _open(page, inspector_url)
    network = [urlparse(url) for url in page.requests]
    network = [u for u in network if u.scheme in ("http", "https", "ws", "wss")]  # not data:/blob:
    assert network and {u.hostname for u in network} <= {"127.0.0.1", "localhost"}
