"""Real-browser tests (Chromium via Playwright): vote by mouse and keyboard, undo, results."""

import re
from pathlib import Path

import pytest
from server import APP_IDLE_JS, IMAGES_READY_JS
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.engine import make_engine
from db.models import ImagePair, Study, Variant, Vote

pytestmark = pytest.mark.e2e


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where this test's screenshots go (a temp dir: a look after a failure; the README's
    pictures come from scripts/screenshots.py)."""
    return tmp_path


def progress_text(page) -> str:
    return page.locator('[data-testid="stProgress"]').inner_text()


def wait_for_pair(page, judged: int, total: int, previous: list[str] | None = None) -> list[str]:
    """Wait until the page shows `judged` votes done and two loaded images other than
    `previous`; returns their URLs."""
    page.get_by_text(f"{judged} judged · {total - judged} left").wait_for()
    page.wait_for_function(IMAGES_READY_JS, arg=[2, previous or []])
    page.wait_for_function(APP_IDLE_JS)  # the buttons now belong to this pair
    return page.eval_on_selector_all('[data-testid="stImage"] img', "els => els.map(e => e.src)")


def votes(tiny) -> list[Vote]:
    engine = make_engine(f"sqlite:///{tiny.data_dir / 'arena.sqlite3'}")
    with Session(engine) as s:
        rows = list(s.scalars(select(Vote).order_by(Vote.id)))
        for vote in rows:
            vote.pair_side_images = (
                s.get(ImagePair, vote.pair_id).image_a_id,
                s.get(ImagePair, vote.pair_id).image_b_id,
            )
    engine.dispose()
    return rows


def test_vote_with_mouse_and_keys_undo_then_see_the_tally(served, page, screenshots):
    """Mouse and Left/Right/Down keys each store one vote; Backspace undoes; results tally it."""
    base, tiny = served
    page.goto(f"{base}/vote?token={tiny.voter_token}")
    first = wait_for_pair(page, 0, tiny.n_pairs)
    page.get_by_text("Signed in as bob (voter)").wait_for()  # app.py ran around the deep link
    assert first[0] != first[1]
    assert page.get_by_text("Prompt:").count() == 1
    page.screenshot(path=str(screenshots / "vote.png"))

    # 1. Mouse, then the three keys
    page.get_by_role("button", name="Left better").click()
    shown = wait_for_pair(page, 1, tiny.n_pairs, first)
    page.keyboard.press("ArrowRight")
    shown = wait_for_pair(page, 2, tiny.n_pairs, shown)
    page.keyboard.press("ArrowDown")
    before_undo = wait_for_pair(page, 3, tiny.n_pairs, shown)
    page.keyboard.press("ArrowLeft")
    shown = wait_for_pair(page, 4, tiny.n_pairs, before_undo)

    # 2. Backspace puts the last pair back, same sides
    page.keyboard.press("Backspace")
    shown = wait_for_pair(page, 3, tiny.n_pairs, shown)
    assert shown == before_undo

    rows = votes(tiny)
    assert [v.choice for v in rows] == ["left", "right", "tie", "left"]
    assert [v.superseded_at is not None for v in rows] == [False, False, False, True]
    for vote in rows:
        a, b = vote.pair_side_images
        assert vote.annotator_id == tiny.voter_id
        assert vote.left_image_id == (a if vote.left_side == "a" else b)
        assert vote.shown_at < vote.voted_at

    # 3. A held key records one vote (the browser repeats keydown; Streamlit ignores repeats)
    page.keyboard.down("ArrowLeft")
    page.wait_for_timeout(600)
    page.keyboard.up("ArrowLeft")
    wait_for_pair(page, 4, tiny.n_pairs, shown)
    page.wait_for_timeout(500)
    assert len([v for v in votes(tiny) if v.superseded_at is None]) == 4


def test_results_page_shows_the_tally_and_voters_are_refused_admin_pages(served, page, screenshots):
    """The admin finds the article's table with 組数/点数; a voter typing /variants is refused."""
    base, tiny = served
    page.goto(f"{base}/variants?token={tiny.voter_token}")
    page.get_by_text("admins only").wait_for()

    engine = make_engine(f"sqlite:///{tiny.data_dir / 'arena.sqlite3'}")
    with Session(engine) as s, s.begin():
        s.get(Study, tiny.study_id).results_visible_to_voters = True
    engine.dispose()
    page.goto(f"{base}/results?token={tiny.admin_token}")
    page.get_by_role("heading", name="The article's tables").wait_for()
    page.get_by_text("decided by").first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')].every(i => i.complete)"
    )
    page.wait_for_timeout(1000)  # charts finish drawing
    # The tables are canvas-drawn; the page's text carries the tally and the article's terms.
    live = len([v for v in votes(tiny) if v.superseded_at is None])
    assert page.get_by_text(f"{live} live votes by 1 annotator.").count() == 1
    verdicts = page.get_by_text(re.compile(r"(wins, decided by|Draw: sets and points)")).all()
    assert len(verdicts) == 2  # one per hyperparameter group (h1, h2)
    assert page.get_by_text("sets won (組数)", exact=False).count() >= 1
    page.screenshot(path=str(screenshots / "results.png"), full_page=False)
    page.get_by_role("heading", name="Bradley-Terry leaderboard").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "results-leaderboard.png"))


def test_votes_csv_downloads_from_the_results_page(served, page):
    """The Votes CSV button downloads the interchange file with every live vote."""
    base, tiny = served
    page.goto(f"{base}/results?token={tiny.admin_token}")
    button = page.get_by_role("button", name="Votes CSV")
    button.scroll_into_view_if_needed()
    with page.expect_download() as download:
        button.click()
    text = Path(download.value.path()).read_text()
    header, *rows = text.strip().splitlines()
    assert header.startswith("study,group,comparison,variant_a,variant_b")
    live = [v for v in votes(tiny) if v.superseded_at is None]
    assert len(rows) == len(live) > 0


def test_admin_uploads_a_checkpoint_in_the_browser(served, page, tmp_path):
    """Upload model.safetensors + config.json on the Variants page: validated, stored, listed."""
    import torch

    from deprojector.checkpoint import save_checkpoint
    from deprojector.model import VTDeprojector, vt_config

    base, tiny = served
    torch.set_num_threads(1)
    folder = save_checkpoint(
        VTDeprojector(vt_config("vt-final", 16, 4), num_members=1, seed=0), tmp_path / "ck", {}
    )
    page.goto(f"{base}/variants?token={tiny.admin_token}")
    page.get_by_text("Weights (.safetensors, at most").wait_for()
    uploaders = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploaders.nth(0).set_input_files(str(folder / "model.safetensors"))
    uploaders.nth(1).set_input_files(str(folder / "config.json"))
    form = page.locator('[data-testid="stForm"]').first
    form.get_by_label("Variant name").fill("uploaded-vt")
    form.get_by_label("Checkpoint label").fill("epoch-3")
    form.get_by_role("button", name="Upload and validate").click()
    page.get_by_text("Added uploaded-vt / epoch-3").wait_for(timeout=60_000)

    engine = make_engine(f"sqlite:///{tiny.data_dir / 'arena.sqlite3'}")
    with Session(engine) as s:
        variant = s.scalar(select(Variant).where(Variant.name == "uploaded-vt"))
        (checkpoint,) = variant.checkpoints
        assert checkpoint.path.startswith("checkpoints/upload-")
        assert (tiny.data_dir / checkpoint.path / "model.safetensors").is_file()
    engine.dispose()
