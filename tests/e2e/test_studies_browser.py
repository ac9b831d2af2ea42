"""The Studies page in Chromium: the study file downloads, and the life-cycle buttons work on a
phone-sized screen."""

import tomllib
from pathlib import Path

from server import APP_IDLE_JS
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import make_engine
from db.models import Study


def study_status(tiny) -> str:
    engine = make_engine(f"sqlite:///{tiny.data_dir / 'arena.sqlite3'}")
    with Session(engine) as s:
        status = s.scalar(select(Study.status).where(Study.id == tiny.study_id))
    engine.dispose()
    return status


def test_download_as_file_gives_the_study_file(served, page):
    """'Download as file' saves `<name>.toml`: the study's TOML file with its settings."""
    base, tiny = served
    page.goto(f"{base}/studies?token={tiny.admin_token}")
    button = page.get_by_role("button", name="Download as file")
    page.get_by_text(f"{tiny.study_name} · open").click()  # open the study's panel
    button.scroll_into_view_if_needed()
    with page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == f"{tiny.study_name}.toml"
    study = tomllib.loads(Path(download.value.path()).read_text())
    assert study["name"] == tiny.study_name
    assert "stop_when_settled" in study["allocation"]


def test_admin_closes_and_reopens_a_study_on_a_phone(served, browser):
    """At 390 x 844 the Close study and Reopen buttons are reachable and change the status."""
    base, tiny = served
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{base}/studies?token={tiny.admin_token}")
        page.get_by_text(f"{tiny.study_name} · open").click()
        page.get_by_role("button", name="Close study").click()
        page.get_by_test_id("stAlertContentSuccess").get_by_text(
            f"{tiny.study_name} is now closed"
        ).wait_for()
        assert study_status(tiny) == "closed"
        page.get_by_text(f"{tiny.study_name} · closed").click()
        page.get_by_role("button", name="Reopen").click()
        page.get_by_test_id("stAlertContentSuccess").get_by_text(
            f"{tiny.study_name} is now open"
        ).wait_for()
        page.wait_for_function(APP_IDLE_JS)
        assert study_status(tiny) == "open"
    finally:
        context.close()
