"""The vote page (AppTest): blind pairs, what a click stores, undo, double submission, summary."""

from pathlib import Path

from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from arena_ui.ballot import BALLOT_KEY
from db.models import Study, Variant, Vote

VOTE_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "vote.py")


def open_vote_page(token: str | None) -> AppTest:
    at = AppTest.from_file(VOTE_PAGE, default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def on_screen(at: AppTest):
    """The ScheduledPair the page is showing."""
    return at.session_state[BALLOT_KEY][1]


def live_votes(db) -> list[Vote]:
    db.commit()  # a fresh snapshot
    return list(db.scalars(select(Vote).where(Vote.superseded_at.is_(None)).order_by(Vote.id)))


def test_vote_page_refuses_a_visitor_without_a_token(tiny):
    """No personal link: no images, no buttons, a refusal."""
    at = open_vote_page(None)
    assert not at.exception
    assert "not signed in" in at.error[0].value
    assert not at.get("image") and not at.button


def test_vote_page_refuses_a_revoked_token(tiny, db):
    """A disabled annotator's link stops working at the next page run."""
    from db.auth import revoke

    revoke(db, tiny.voter_id)
    db.commit()
    at = open_vote_page(tiny.voter_token)
    assert "not signed in" in at.error[0].value


def test_pair_is_shown_blind_with_prompt_progress_and_three_choices(tiny, db):
    """Two images, the prompt, votes done/left; no variant name anywhere on the page."""
    at = open_vote_page(tiny.voter_token)
    assert not at.exception
    pair = on_screen(at)
    assert [img.proto.imgs[0].caption for img in at.get("image")] == ["Left", "Right"]
    assert any(pair.prompt in m.value for m in at.markdown)
    assert at.get("progress")[0].proto.text == f"0 judged · {tiny.n_pairs} left"
    shortcuts = {b.label: b.proto.shortcut for b in at.button}
    assert shortcuts == {
        "⬅ Left better": "left",
        "Same ⬇": "down",
        "Right better ➡": "right",
        "↶ Undo": "backspace",
    }
    variant_names = set(db.scalars(select(Variant.name)))
    page_text = " ".join(
        str(getattr(e, "value", "")) for e in [*at.markdown, *at.caption, *at.button]
    )
    assert not any(name in page_text for name in variant_names)


def test_click_stores_choice_left_image_and_both_times(tiny, db):
    """Left better stores choice 'left', the image shown on the left, shown_at <= voted_at."""
    at = open_vote_page(tiny.voter_token)
    pair = on_screen(at)
    at.button(key="vote_left").click().run()
    (vote,) = live_votes(db)
    assert (vote.pair_id, vote.annotator_id, vote.choice) == (pair.pair_id, tiny.voter_id, "left")
    assert (vote.left_image_id, vote.left_side) == (pair.left_image_id, pair.left_side)
    assert vote.shown_at <= vote.voted_at
    assert on_screen(at).pair_id != pair.pair_id
    assert at.get("progress")[0].proto.text == f"1 judged · {tiny.n_pairs - 1} left"


def test_same_and_right_store_tie_and_right(tiny, db):
    """The Same and Right better buttons store 'tie' and 'right'."""
    at = open_vote_page(tiny.voter_token)
    at.button(key="vote_tie").click().run()
    at.button(key="vote_right").click().run()
    assert [v.choice for v in live_votes(db)] == ["tie", "right"]


def test_a_stale_second_click_on_the_same_pair_records_one_vote(tiny, db):
    """A double click (the page still showing the judged pair) leaves exactly one vote."""
    at = open_vote_page(tiny.voter_token)
    stale = at.session_state[BALLOT_KEY]
    at.button(key="vote_left").click().run()
    at.session_state[BALLOT_KEY] = stale  # the browser still shows the judged pair
    at.run()
    at.button(key="vote_right").click().run()
    votes = live_votes(db)
    assert [(v.pair_id, v.choice) for v in votes] == [(stale[1].pair_id, "left")]
    assert len(list(db.scalars(select(Vote)))) == 1


def test_undo_supersedes_the_last_vote_and_shows_that_pair_again(tiny, db):
    """Undo keeps the old vote as superseded and puts the same pair, same sides, back."""
    at = open_vote_page(tiny.voter_token)
    first = on_screen(at)
    at.button(key="vote_left").click().run()
    at.button(key="vote_undo").click().run()
    again = on_screen(at)
    assert (again.pair_id, again.left_image_id) == (first.pair_id, first.left_image_id)
    assert live_votes(db) == []
    at.button(key="vote_right").click().run()
    db.commit()  # a fresh snapshot
    old, new = db.scalars(select(Vote).order_by(Vote.id)).all()
    assert old.superseded_at is not None and old.superseded_by_id == new.id
    assert (new.pair_id, new.choice) == (first.pair_id, "right")


def test_flip_view_shows_one_image_and_flips_in_place(tiny):
    """The flip toggle shows one image at a time; the Flip button (key F) swaps it; a new pair
    starts on its left image."""
    at = open_vote_page(tiny.voter_token)
    at.toggle(key="vote_flip").set_value(True).run()
    assert [img.proto.imgs[0].caption for img in at.get("image")] == ["Left image"]
    assert at.button(key="vote_flip_button").proto.shortcut == "f"
    at.button(key="vote_flip_button").click().run()
    assert [img.proto.imgs[0].caption for img in at.get("image")] == ["Right image"]
    at.button(key="vote_tie").click().run()  # the next pair starts on its left image
    assert [img.proto.imgs[0].caption for img in at.get("image")] == ["Left image"]


def test_finished_voter_gets_a_summary_and_own_results_only_if_allowed(tiny, db):
    """After the last pair: 'All done'; own results appear once the study allows it."""
    at = open_vote_page(tiny.voter_token)
    for _ in range(tiny.n_pairs):
        at.button(key="vote_left").click().run()
    assert len(live_votes(db)) == tiny.n_pairs
    assert "All done" in at.success[0].value
    assert not at.dataframe

    db.get(Study, tiny.study_id).results_visible_to_voters = True
    db.commit()
    at = open_vote_page(tiny.voter_token)
    table = at.dataframe[0].value
    assert len(table) == 2 and set(table["Wins (x side)"] + table["Wins (y side)"]) == {2}


def test_pairs_still_rendering_are_announced_not_called_done(tiny, db):
    """With images still missing, a voter who judged the rest is told more are coming."""
    from db.models import Image

    for image in db.scalars(select(Image).where(Image.id % 2 == 0)):
        image.path = None  # not rendered yet
    db.commit()
    at = open_vote_page(tiny.voter_token)
    while any(b.key == "vote_left" for b in at.button):
        at.button(key="vote_left").click().run()
    assert "still being generated" in at.info[0].value
    assert not at.success
