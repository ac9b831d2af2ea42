"""The welcome page's photo-demo button in a real browser: it builds the study `photo-demo`
from real photographs and the admin can vote on it at once."""

import pytest
from server import IMAGES_READY_JS

pytestmark = pytest.mark.e2e


def test_photo_demo_button_builds_a_study_to_vote_on(served, page):
    """Admin clicks "Build the photo demo": the success names the study, and "Vote now" shows
    two loaded images."""
    base, tiny = served
    page.goto(f"{base}/?token={tiny.admin_token}")
    page.get_by_role("button", name="Build the photo demo").click()
    page.get_by_text("Photo demo study photo-demo ready").wait_for(timeout=120_000)
    page.get_by_role("link", name="Vote now").click()
    page.wait_for_function(IMAGES_READY_JS, arg=[2, []], timeout=30_000)
