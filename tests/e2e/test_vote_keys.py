"""The vote page in Chromium: Both bad and reason tags by key, keys that keep working (after a
view option, on the all-done screen) and none that vote blind, layout at 1440x900 and on a
390x844 phone, no request leaving the machine, text from links shown verbatim."""

import re

import pytest
from server import APP_IDLE_JS, IMAGES_READY_JS, free_port, start_app, stop_app, wait_healthy
from sqlalchemy import select
from sqlalchemy.orm import Session
from tiny_study import build_tiny_study

from db.engine import make_engine
from db.models import Study, Vote

pytestmark = pytest.mark.e2e
TAGS = ["follows the prompt", "fewer artefacts", "nicer"]
FLIP = "Flip view: one image at a time, same place"
INSPECT = "Inspect: zoom, flicker (hold X), swipe"
# Streamlit scrolls its main block, not the window: back to the top, as on arrival
SCROLL_TO_TOP_JS = "() => document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; })"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, TinyStudy): 6 pairs of 512 px images, 3 reason tags, 6 voters."""
    data_dir = tmp_path_factory.mktemp("arena")
    tiny = build_tiny_study(data_dir, n_comparisons=2, n_prompts=3, image_size=512, voters=6)
    engine = make_engine(f"sqlite:///{data_dir / 'arena.sqlite3'}")
    with Session(engine) as s:
        s.get(Study, tiny.study_id).reason_tags = TAGS
        s.commit()
    engine.dispose()
    port = free_port()
    process = start_app(data_dir, port)
    try:
        wait_healthy(port, process)
        yield f"http://127.0.0.1:{port}", tiny
    finally:
        stop_app(process)


def live_votes(tiny, annotator: str) -> list[Vote]:
    from db.models import Annotator

    engine = make_engine(f"sqlite:///{tiny.data_dir / 'arena.sqlite3'}")
    with Session(engine) as s:
        rows = list(
            s.scalars(
                select(Vote)
                .join(Annotator, Vote.annotator_id == Annotator.id)
                .where(Annotator.name == annotator, Vote.superseded_at.is_(None))
                .order_by(Vote.id)
            )
        )
    engine.dispose()
    return rows


def open_vote(page, base: str, token: str) -> list[str]:
    """Open the vote page by its link; wait until app.py has run around it and the pair is in."""
    page.goto(f"{base}/vote?token={token}")
    page.locator('[data-testid="stSidebar"]').get_by_text("Signed in as").wait_for()
    return wait_for_pair(page, 2)


def wait_for_pair(page, images: int, previous: list[str] | None = None) -> list[str]:
    page.wait_for_function(IMAGES_READY_JS, arg=[images, previous or []])
    page.wait_for_function(APP_IDLE_JS)
    return page.eval_on_selector_all('[data-testid="stImage"] img', "els => els.map(e => e.src)")


def wait_for_judged(page, judged: int) -> None:
    page.locator('[data-testid="stProgress"]').get_by_text(f"{judged} judged").wait_for()
    page.wait_for_function(APP_IDLE_JS)


def in_view(page, locator) -> bool:
    """The element lies entirely inside the window (no scrolling needed)."""
    box = locator.bounding_box()
    size = page.viewport_size
    return (
        box is not None
        and box["y"] >= 0
        and box["x"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] + box["width"] <= size["width"]
    )


def test_up_key_stores_both_bad_and_number_keys_store_reason_tags(served, page):
    """Keys 1 and 3 toggle two tags (3 twice: off again, then 2 on), Up votes Both bad: the vote
    row has choice both_bad and exactly the tags left on; the next pair starts with none."""
    base, tiny = served
    shown = open_vote(page, base, tiny.extra_voter_tokens[0])
    for key, label in [
        ("1", "✓ follows the prompt"),
        ("3", "✓ nicer"),
        ("3", "nicer"),  # off again
        ("2", "✓ fewer artefacts"),
    ]:
        page.keyboard.press(key)
        page.get_by_role("button", name=re.compile(f"^{re.escape(label)}")).wait_for()
        page.wait_for_function(APP_IDLE_JS)
    assert page.get_by_role("button", name=re.compile("^✓ ")).count() == 2
    page.keyboard.press("ArrowUp")
    wait_for_judged(page, 1)
    wait_for_pair(page, 2, shown)
    page.keyboard.press("ArrowLeft")
    wait_for_judged(page, 2)
    first, second = live_votes(tiny, "voter-1")
    assert (first.choice, sorted(first.tags)) == ("both_bad", sorted(TAGS[:2]))
    assert (second.choice, second.tags) == ("left", [])


def test_keys_keep_working_after_a_view_option_is_clicked(served, page):
    """After clicking the flip-view option, F flips, an arrow votes and Backspace undoes."""
    base, tiny = served
    open_vote(page, base, tiny.extra_voter_tokens[1])
    page.get_by_role("button", name=FLIP).click()
    page.get_by_text("showing the left image").wait_for()
    page.wait_for_function(APP_IDLE_JS)
    page.keyboard.press("f")
    page.get_by_text("showing the right image").wait_for()
    page.wait_for_function(APP_IDLE_JS)
    page.keyboard.press("ArrowRight")
    wait_for_judged(page, 1)
    page.keyboard.press("Backspace")
    wait_for_judged(page, 0)
    assert live_votes(tiny, "voter-2") == []


def test_inspect_view_zooms_both_images_blind_and_the_arrow_keys_still_vote(served, page):
    """The inspector shows the pair labelled Left/Right only; after using its zoom button the
    arrow keys still vote, and the next pair opens in the inspector too."""
    base, tiny = served
    open_vote(page, base, tiny.extra_voter_tokens[4])
    page.get_by_role("button", name=INSPECT).click()
    images = page.locator(".pane img")  # inside the component's shadow root
    images.first.wait_for()
    assert page.locator(".pane .label").all_inner_texts() == ["Left", "Right"]
    page.locator("button[data-act=in]").click()
    transforms = images.evaluate_all("imgs => imgs.map(i => i.style.transform)")
    assert transforms[0] == transforms[1] and "scale(1.5)" in transforms[0]
    html = page.content()
    assert f"{tiny.study_name}-v" not in html  # no variant name (<study>-vN) on the page

    page.wait_for_function(APP_IDLE_JS)
    page.keyboard.press("ArrowLeft")
    wait_for_judged(page, 1)
    assert [v.choice for v in live_votes(tiny, "voter-5")] == ["left"]
    images.first.wait_for()
    assert page.locator(".pane .label").all_inner_texts() == ["Left", "Right"]


def test_backspace_undoes_on_the_all_done_screen(served, page):
    """After the last pair, Backspace brings it back."""
    base, tiny = served
    open_vote(page, base, tiny.extra_voter_tokens[2])
    for judged in range(1, tiny.n_pairs + 1):
        page.keyboard.press("ArrowDown")
        if judged < tiny.n_pairs:
            wait_for_judged(page, judged)
    page.get_by_text("All done").wait_for()
    page.wait_for_function(APP_IDLE_JS)
    page.keyboard.press("Backspace")
    wait_for_judged(page, tiny.n_pairs - 1)
    assert len(live_votes(tiny, "voter-3")) == tiny.n_pairs - 1


def test_no_fullscreen_view_in_which_keys_would_vote_on_a_hidden_pair(served, page):
    """Vote images offer no fullscreen button (keys there would judge a pair the voter cannot
    see); the flip view and actual size take its place."""
    base, tiny = served
    open_vote(page, base, tiny.extra_voter_tokens[3])
    page.hover('[data-testid="stImage"] img >> nth=0')
    page.wait_for_timeout(300)  # the toolbar's hover transition
    assert page.locator('[data-testid="stElementToolbarButton"]:visible').count() == 0


@pytest.mark.parametrize("viewport", [(1440, 900), (390, 844)])
def test_both_images_and_every_vote_button_fit_one_screen(served, browser, viewport):
    """At 1440x900 (side by side and flip view) and on a 390x844 phone, the images and the
    vote buttons are all on screen without scrolling."""
    base, tiny = served
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        open_vote(page, base, tiny.voter_token)
        buttons = ["Left better", "Right better", "Same", "Both bad", "Undo"]
        for image in page.locator('[data-testid="stImage"] img').all():
            assert in_view(page, image)
        for name in buttons:
            assert in_view(page, page.get_by_role("button", name=name, exact=False).first)
        page.get_by_role("button", name=FLIP).click()
        wait_for_pair(page, 1)
        page.evaluate(SCROLL_TO_TOP_JS)  # the click scrolled the button into view
        assert in_view(page, page.locator('[data-testid="stImage"] img'))
        for name in [*buttons, "Flip: showing"]:
            assert in_view(page, page.get_by_role("button", name=name, exact=False).first)
    finally:
        context.close()


def test_no_request_leaves_the_machine_and_links_keep_the_sign_in(served, browser):
    """Across every page an admin opens, each request goes to the app itself (favicon included);
    a sidebar link opened in a new tab is still signed in."""
    base, tiny = served
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{base}/?token={tiny.admin_token}")
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Signed in as alice").wait_for()
        sidebar.get_by_role("link", name="Annotators").wait_for()  # the admin's menu is in
        page.wait_for_function(APP_IDLE_JS)
        links = sidebar.locator("a").evaluate_all("els => els.map(e => e.href)")
        assert len(links) == 6 and all(f"token={tiny.admin_token}" in link for link in links)
        for link in links:
            page.goto(link)
            page.wait_for_function(APP_IDLE_JS)
            page.wait_for_timeout(500)  # late requests: images, icons
        tab = context.new_page()
        tab.goto(links[2])  # Results, in a fresh tab
        tab.locator('[data-testid="stSidebar"]').get_by_text("Signed in as alice").wait_for()
    finally:
        context.close()
    # data: and blob: URLs are objects inside the page itself, not requests to any host
    local = (
        "http://127.0.0.1",
        "http://localhost",
        "ws://127.0.0.1",
        "data:",
        "blob:http://127.0.0.1",
    )
    outside = [u for u in requests if not u.startswith(local)]
    assert outside == [] and any("/media/" in u for u in requests)


def test_the_study_named_in_the_link_is_plain_text_in_the_page(served, page):
    """?study=**bold**[x](http://evil) shows those characters; no bold text, no link."""
    base, tiny = served
    page.goto(f"{base}/vote?token={tiny.voter_token}&study=**bold**[x](http://evil)")
    alert = page.locator('[data-testid="stAlertContentWarning"]')
    alert.get_by_text("**bold**[x](http://evil)").wait_for()
    assert alert.locator("strong, a").count() == 0


def test_a_deep_link_as_a_fresh_servers_first_request_gets_the_whole_app(tmp_path, browser, page):
    """The very first request of a new server is /vote?token=...: the page comes with app.py's
    sidebar and the pair (streamlit/streamlit#9624, worked around in one place)."""
    tiny = build_tiny_study(tmp_path, n_comparisons=1, n_prompts=2)
    port = free_port()
    process = start_app(tmp_path, port)
    try:
        wait_healthy(port, process)
        open_vote(page, f"http://127.0.0.1:{port}", tiny.voter_token)
        assert page.get_by_text("Page not found").count() == 0
    finally:
        stop_app(process)
