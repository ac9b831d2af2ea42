"""The results page in Chromium: it fits the screen, and a voter sees it only after their queue."""

import pytest
from server import APP_IDLE_JS
from sqlalchemy.orm import Session

from db.engine import make_engine
from db.models import Study, utcnow
from db.queries import record_vote, study_pairs

pytestmark = pytest.mark.e2e

# In the page: elements of the main column whose right edge passes the window's, and tables
# (canvas grids) whose content scrolls sideways inside them.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const main = document.querySelector('[data-testid="stMain"]');
  const wide = [...main.querySelectorAll('[data-testid]')]
    .filter(e => e.getBoundingClientRect().right > width + 1)
    .map(e => e.getAttribute('data-testid'));
  const scrolling = [...main.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).length;
  const tables = main.querySelectorAll('[data-testid="stDataFrame"]').length;
  return {wide, scrolling, tables};
}"""


@pytest.fixture(scope="module")
def voted(served):
    """Bob judges every pair but one, with a mix of left, right and same; results are open
    to voters."""
    base, tiny = served
    vote_all_but(tiny, keep=1)
    return base, tiny


def vote_all_but(tiny, keep: int) -> None:
    engine = make_engine(f"sqlite:///{tiny.data_dir / 'arena.sqlite3'}")
    with Session(engine) as s, s.begin():
        pairs = study_pairs(s, tiny.study_id, include_qc=False)
        for k, pair in enumerate(pairs[: len(pairs) - keep]):
            choice = ("left", "right", "tie")[k % 3]
            record_vote(s, pair.id, tiny.voter_id, "a" if k % 2 else "b", choice, utcnow())
        s.get(Study, tiny.study_id).results_visible_to_voters = True
    engine.dispose()


def settle(page) -> None:
    page.wait_for_function(APP_IDLE_JS)
    page.wait_for_timeout(1500)  # the canvas tables and charts finish drawing


def test_no_table_or_chart_is_wider_than_the_page_at_1440(voted, browser):
    """At 1440x900 every table, chart and image of the admin's results page fits the window,
    and no table scrolls sideways."""
    base, tiny = voted
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/results?token={tiny.admin_token}")
    page.get_by_role("heading", name="Summary").wait_for()
    page.get_by_role("heading", name="Downloads").wait_for()
    settle(page)
    # Tables draw only once on screen: make the window as tall as the page, same width.
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": min(height + 100, 20_000)})
    settle(page)
    found = page.evaluate(OVERFLOW_JS)
    context.close()
    assert found["tables"] >= 8
    assert found["wide"] == [] and found["scrolling"] == 0, found


def test_voter_with_pairs_left_sees_no_results_in_the_browser(voted, page):
    """A voter with a pair left gets the explanation and not a single table, chart or image."""
    base, tiny = voted
    page.goto(f"{base}/results?token={tiny.voter_token}")
    page.get_by_text("once you have judged all its pairs (1 pair left)").wait_for()
    settle(page)
    shown = page.locator(
        '[data-testid="stDataFrame"], [data-testid="stVegaLiteChart"], [data-testid="stImage"]'
    )
    assert shown.count() == 0
