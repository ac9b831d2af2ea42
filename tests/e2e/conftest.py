"""Browser-test fixtures: the app served from a temp data dir holding a tiny real study."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))  # tiny_study

from server import free_port, launch_chromium, start_app, stop_app, wait_healthy  # noqa: E402
from tiny_study import build_tiny_study  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, TinyStudy): the app running on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("arena")
    tiny = build_tiny_study(data_dir, n_comparisons=2, n_prompts=3)
    port = free_port()
    process = start_app(data_dir, port)
    try:
        wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}", tiny
    finally:
        stop_app(process)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
