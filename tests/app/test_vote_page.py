"""The vote page (AppTest): blind pairs, what a click stores, undo, double submission, summary."""

from pathlib import Path

from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from arena_ui.ballot import BALLOT_KEY
from arena_ui.selection import plain
from db.models import Study, Variant, Vote

VOTE_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "vote.py")
APP = str(Path(__file__).resolve().parents[2] / "app.py")


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


def test_pair_is_shown_blind_with_prompt_progress_and_four_choices(tiny, db):
    """Two images, the prompt, votes done/left, four answers and undo on their keys (the key is
    the label's only arrow); no variant name anywhere on the page."""
    at = open_vote_page(tiny.voter_token)
    assert not at.exception
    pair = on_screen(at)
    assert [img.proto.imgs[0].caption for img in at.get("image")] == ["Left", "Right"]
    assert any(plain(pair.prompt) in m.value for m in at.markdown)
    assert at.get("progress")[0].proto.text == f"0 judged · {tiny.n_pairs} left"
    shortcuts = {b.label: b.proto.shortcut for b in at.button if b.proto.shortcut}
    assert shortcuts == {
        "Left better": "left",
        "Same": "down",
        "Both bad": "up",
        "Right better": "right",
        "Undo": "backspace",
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
    """The flip view shows one image at a time; the Flip button (key F) swaps it; a new pair
    starts on its left image."""
    at = open_vote_page(tiny.voter_token)
    at.button(key="vote_flip_option").click().run()
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
    assert len(table) == 2 and set(table["Setting 1 wins"] + table["Setting 2 wins"]) == {2}


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


def test_both_bad_stores_its_own_choice(tiny, db):
    """Both bad (Up) is stored as 'both_bad', not as a plain tie."""
    at = open_vote_page(tiny.voter_token)
    at.button(key="vote_both_bad").click().run()
    at.button(key="vote_tie").click().run()
    assert [v.choice for v in live_votes(db)] == ["both_bad", "tie"]


def test_reason_tags_toggle_are_stored_with_the_vote_and_reset_for_the_next_pair(tiny, db):
    """The study's tags are buttons on keys 1..; toggled ones are stored with the vote and a new
    pair starts with none."""
    db.get(Study, tiny.study_id).reason_tags = ["follows the prompt", "fewer artefacts", "nicer"]
    db.commit()
    at = open_vote_page(tiny.voter_token)
    tags = [at.button(key=f"vote_tag_{k}") for k in (1, 2, 3)]
    assert [(b.label, b.proto.shortcut) for b in tags] == [
        ("follows the prompt", "1"),
        ("fewer artefacts", "2"),
        ("nicer", "3"),
    ]
    at.button(key="vote_tag_1").click().run()
    at.button(key="vote_tag_3").click().run()
    at.button(key="vote_tag_3").click().run()  # toggled off again
    at.button(key="vote_tag_2").click().run()
    assert at.button(key="vote_tag_1").label == "✓ follows the prompt"
    at.button(key="vote_left").click().run()
    assert at.button(key="vote_tag_1").label == "follows the prompt"  # the next pair: none on
    at.button(key="vote_right").click().run()
    assert [v.tags for v in live_votes(db)] == [["fewer artefacts", "follows the prompt"], []]


def test_a_study_without_reason_tags_shows_no_tag_buttons(tiny):
    """No tags defined by the admin: no tag row."""
    at = open_vote_page(tiny.voter_token)
    assert not [b for b in at.button if b.key.startswith("vote_tag_")]


def test_state_line_shows_comparisons_settled_open_and_votes_needed(tiny, db):
    """While voting, one caption gives settled / open comparisons and the votes still needed."""
    at = open_vote_page(tiny.voter_token)
    assert any(
        "Study: 0 comparisons settled · 2 open · votes still needed: not estimated yet" in c.value
        for c in at.caption
    )


def vote_on_every_pair(db, study_id: int, annotator_ids, choice: str = "left") -> None:
    """Each annotator votes `choice` (side A on the left) on every regular pair of the study."""
    from datetime import UTC, datetime

    from db.queries import record_vote, study_pairs

    for pair in study_pairs(db, study_id, include_qc=False):
        for annotator_id in annotator_ids:
            record_vote(db, pair.id, annotator_id, "a", choice, datetime.now(UTC))
    db.commit()


def test_a_settled_study_says_so_and_offers_the_results(tiny, db):
    """When every comparison is decided, nothing more is served and the page says the study is
    settled (not 'all done') and links to the results."""
    from db.auth import create_annotator

    others = [create_annotator(db, f"judge-{k}", "voter")[0] for k in range(4)]
    db.flush()
    vote_on_every_pair(db, tiny.study_id, [a.id for a in others])  # 8 wins per comparison
    study = db.get(Study, tiny.study_id)
    study.results_visible_to_voters = study.stop_when_settled = True
    db.commit()
    at = open_vote_page(tiny.voter_token)
    assert on_screen(at) is None  # bob has judged nothing, yet nothing is served
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)  # the results link needs app.py's pages
    at.query_params["token"] = tiny.voter_token
    at.run().switch_page("pages/vote.py").run()
    assert "is settled" in at.success[0].value and "All done" not in at.success[0].value
    assert at.get("page_link")[0].proto.page == "results"


def add_study(db, name: str, rendered: bool = True) -> Study:
    """A second study in the same database (its image files are not needed to pick it)."""
    from db.models import Comparison, Image, ImagePair
    from db.synthetic import create_synthetic_study

    study = create_synthetic_study(db, name, n_comparisons=1, n_prompts=2, labels=("epoch-8",))
    db.flush()
    if not rendered:
        pairs = select(ImagePair).join(Comparison).where(Comparison.study_id == study.id)
        for pair in db.scalars(pairs):
            db.get(Image, pair.image_b_id).path = None
    db.commit()
    return study


def test_a_voter_lands_on_a_study_where_they_still_have_pairs(tiny, db):
    """The newest study is fully judged by this voter: the page opens the older one with pairs
    left instead of an 'all done' screen."""
    newer = add_study(db, "newer")
    vote_on_every_pair(db, newer.id, [tiny.voter_id])
    at = open_vote_page(tiny.voter_token)
    assert on_screen(at) is not None
    assert at.session_state["arena_study_id"] == tiny.study_id


def test_a_study_without_a_rendered_pair_is_never_offered_and_says_no_pairs_ready(tiny, db):
    """A generating study with no rendered pair is not offered; alone, it reads 'no pairs ready
    yet'."""
    add_study(db, "pending", rendered=False)
    at = open_vote_page(tiny.voter_token)
    assert at.session_state["arena_study_id"] == tiny.study_id  # not the newer, empty one
    db.get(Study, tiny.study_id).status = "closed"
    db.commit()
    at = open_vote_page(tiny.voter_token)
    assert "No pairs ready yet" in at.info[0].value and "pending" in at.info[0].value
    assert not at.get("image")


def test_the_study_named_in_the_link_is_shown_as_plain_text(tiny):
    """?study= with Markdown in it is echoed verbatim: no bold, no link."""
    at = AppTest.from_file(VOTE_PAGE, default_timeout=TIMEOUT)
    at.query_params["token"] = tiny.voter_token
    at.query_params["study"] = "**bold**[x](http://evil)"
    at.run()
    warning = at.warning[0].value
    assert plain("**bold**[x](http://evil)") in warning
    assert "\\*\\*bold\\*\\*\\[x\\]\\(http://evil\\)" in warning.replace("\\:", ":")


def test_a_vote_records_why_the_scheduler_served_its_pair_also_after_undo(tiny, db):
    """The vote row keeps the scheduler's rule and the comparison's status for the pair on
    screen; a pair put back by undo keeps those of the undone vote."""
    at = open_vote_page(tiny.voter_token)
    pair = on_screen(at)
    at.button(key="vote_left").click().run()
    at.button(key="vote_undo").click().run()
    at.button(key="vote_right").click().run()
    db.commit()
    undone, vote = db.scalars(select(Vote).order_by(Vote.id)).all()
    for row in (undone, vote):
        assert (row.allocation_rule, row.comparison_status) == (pair.rule, pair.status)
    assert vote.allocation_rule is not None
