"""The quick start in a real browser: fresh data dir -> console admin link -> demo -> vote page."""

import re
import time

import pytest
from server import IMAGES_READY_JS, free_port, start_app, stop_app, wait_healthy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_fresh_install_console_link_demo_button_then_vote(tmp_path, page):
    """The console prints an admin link; its welcome page builds the demo; voting starts."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    process = start_app(tmp_path, port, log=log)
    try:
        wait_healthy(port, process)
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_text("admin login link").wait_for()
        deadline = time.monotonic() + 30
        while "?token=" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        link = re.search(r"http://\S+\?token=\S+", log.read_text()).group(0)
        page.goto(link.replace("localhost", "127.0.0.1"))
        page.get_by_role("button", name="Build the demo study").click()
        page.get_by_text("Demo study demo ready").wait_for(timeout=600_000)
        page.get_by_role("link", name="Vote now").click()
        page.wait_for_function(IMAGES_READY_JS, arg=[2, []], timeout=30_000)
        assert page.get_by_text("0 judged").count() == 1
    finally:
        stop_app(process)
