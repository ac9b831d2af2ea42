"""The results page (AppTest): who may see it and when, the summary, the article's tables,
statistics with human column names, exclusions, grid, downloads."""

from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from db.models import Annotator, Study, utcnow
from db.queries import record_vote, study_pairs

RESULTS_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "results.py")


def table_with(at: AppTest, column: str):
    """The first table on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def open_results(token: str) -> AppTest:
    at = AppTest.from_file(RESULTS_PAGE, default_timeout=TIMEOUT)
    at.query_params["token"] = token
    return at.run()


@pytest.fixture
def voted(tiny, db):
    """Bob's votes: side A wins every pair of comparison 1, side B every pair of comparison 2."""
    for pair in study_pairs(db, tiny.study_id, include_qc=False):
        a_wins = pair.comparison.group == "h1"
        left = "a" if pair.id % 2 else "b"  # A sits left on odd pairs, right on even ones
        choice = "left" if (left == "a") == a_wins else "right"
        record_vote(db, pair.id, tiny.voter_id, left, choice, utcnow())
    db.commit()
    return tiny


def test_voter_cannot_see_results_unless_the_study_allows(voted, db):
    """Results are refused to a voter (done with their queue) until the admin opens them."""
    at = open_results(voted.voter_token)
    assert "not open to voters" in at.error[0].value and not at.dataframe
    db.get(Study, voted.study_id).results_visible_to_voters = True
    db.commit()
    assert not open_results(voted.voter_token).error


def test_voter_sees_results_only_after_their_own_queue_is_done(tiny, db):
    """Blind means blind: with results open to voters, a voter with pairs left sees no table,
    chart, drill-down image or leaderboard; after their last vote the page opens."""
    db.get(Study, tiny.study_id).results_visible_to_voters = True
    pairs = study_pairs(db, tiny.study_id, include_qc=False)
    for pair in pairs[:-1]:
        record_vote(db, pair.id, tiny.voter_id, "a", "left", utcnow())
    db.commit()
    at = open_results(tiny.voter_token)
    assert "once you have judged all its pairs (1 pair left)" in at.info[0].value
    assert not at.dataframe and not at.get("image") and not at.get("arrow_vega_lite_chart")
    record_vote(db, pairs[-1].id, tiny.voter_id, "a", "left", utcnow())
    db.commit()
    at = open_results(tiny.voter_token)
    assert not at.info and at.title[0].value == "Results: tiny"


def test_a_closed_study_opens_its_results_to_voters_who_did_not_finish(tiny, db):
    """Once the study is closed nothing can be judged any more, so an allowed voter may look."""
    study = db.get(Study, tiny.study_id)
    study.results_visible_to_voters = True
    study.status = "closed"
    db.commit()
    from evaluation.blindness import results_access

    assert results_access(db, tiny.voter_id, False, tiny.study_id).allowed
    study.status = "open"
    db.commit()
    access = results_access(db, tiny.voter_id, False, tiny.study_id)
    assert (access.allowed, access.reason, access.pairs_left) == (False, "queue_left", tiny.n_pairs)


def test_a_settled_study_stays_blind_for_a_voter_with_unjudged_pairs(tiny, db):
    """Settled (every comparison capped) serves nothing, but its unjudged pairs can come back
    if a comparison reopens: the voter is told so and sees no result."""
    study = db.get(Study, tiny.study_id)
    study.results_visible_to_voters, study.stop_when_settled, study.vote_cap = True, True, 1
    seen = set()
    for pair in study_pairs(db, tiny.study_id, include_qc=False):
        if pair.comparison_id not in seen:  # one vote per comparison reaches the cap
            seen.add(pair.comparison_id)
            record_vote(db, pair.id, tiny.voter_id, "a", "left", utcnow())
    db.commit()
    at = open_results(tiny.voter_token)
    assert "is settled: no pair is being served now" in at.info[0].value
    assert not at.dataframe and not at.get("image")


def test_admin_sees_results_while_voters_still_vote(tiny, db):
    """The admin's view does not wait for anyone's queue (nor for the study to allow voters)."""
    pair = study_pairs(db, tiny.study_id, include_qc=False)[0]
    record_vote(db, pair.id, tiny.voter_id, "a", "left", utcnow())
    db.commit()
    at = open_results(tiny.admin_token)
    assert not at.error and not at.info and at.dataframe


def test_decision_board_heads_the_page_with_status_leader_and_votes_needed(voted):
    """The board comes first: one row per comparison (status badge, leader by name, wins, ties,
    e-value, votes still needed, with the independence caveat) and one per group."""
    at = open_results(voted.admin_token)
    assert [h.value for h in at.header][:2] == ["Decision board", "Summary"]
    assert "0 of 2 comparisons settled, 2 open" in at.markdown[0].value
    comparisons, groups = at.dataframe[0].value, at.dataframe[1].value
    assert list(comparisons["Status"]) == ["○ open", "○ open"]
    assert list(comparisons["Leader"]) == ["tiny-v0", "tiny-v2"]
    assert list(comparisons["Wins, ties"]) == ["2–0, 0", "2–0, 0"]
    assert list(comparisons["e-value"]) == ["1.3", "1.3"]  # 2^2 / (3 * C(2, 2)) = 4/3
    assert list(comparisons["Votes needed"]) == ["–", "–"]  # n < 6: no estimate
    assert any("not independent" in c.value for c in at.caption)
    assert list(groups["Verdict"]) == ["h1 = 0", "h2 = 1"]
    assert list(groups["Robustness"]) == ["changes if 2 votes are removed"] * 2
    assert set(groups["Status"]) == {"○ open"}


def test_voter_checks_show_each_annotator_to_the_admin_only(tiny2, db):
    """Voter checks list each annotator (agreement, repeats, left share, seconds, outlier
    score, excluded); a voter whose queue is done does not see them."""
    two_voters(tiny2, db)
    at = open_results(tiny2.admin_token)
    checks = next(d.value for d in at.dataframe if "Agrees with the others" in d.value.columns)
    assert list(checks["Annotator"]) == ["bob", "voter-1"]
    assert list(checks["Agrees with the others"]) == ["0% of 4", "0% of 4"]
    assert list(checks["Left image chosen"]) == ["100%", "0%"]
    assert list(checks["Excluded"]) == ["", ""]
    db.get(Study, tiny2.study_id).results_visible_to_voters = True
    db.commit()
    voter = open_results(tiny2.voter_token)
    assert "Voter checks" not in [h.value for h in voter.header]
    assert not any("Agrees with the others" in d.value.columns for d in voter.dataframe)


def test_prompts_where_most_votes_are_ties_are_flagged(tiny, db):
    """Tie rates by kind (same, both bad) and per prompt; a prompt with mostly ties is named."""
    for pair in study_pairs(db, tiny.study_id, include_qc=False):
        tie = pair.prompt.text == "tiny prompt 0"
        record_vote(db, pair.id, tiny.voter_id, "a", "tie" if tie else "left", utcnow())
    db.commit()
    at = open_results(tiny.admin_token)
    kinds = next(d.value for d in at.dataframe if "Tie kind" in d.value.columns)
    assert list(kinds["Share of all votes"]) == ["50%", "0%"]
    prompts = next(d.value for d in at.dataframe if "Mostly ties" in d.value.columns)
    assert list(prompts["Prompt"]) == ["tiny prompt 0", "tiny prompt 1, detail"]
    assert list(prompts["Mostly ties"]) == ["yes", ""]
    assert any("“tiny prompt 0”" in w.value for w in at.warning)


def test_summary_card_names_the_winning_setting_first(voted):
    """The first table is the summary: per hyperparameter the winning setting, what decided
    it, and its win share with an interval, as percentages."""
    at = open_results(voted.admin_token)
    assert "Summary" in [h.value for h in at.header][:2]
    card = table_with(at, "Win share (95% interval)")
    assert list(card["Winner"]) == ["h1 = 0", "h2 = 1"]
    assert list(card["Decided by"]) == ["sets won", "sets won"]
    assert all(text.startswith("100% (") for text in card["Win share (95% interval)"])


def test_tables_use_human_column_names(voted):
    """No table shows a raw column name (x_points, left_share, elo_low...), and Elo is whole."""
    at = open_results(voted.admin_token)
    raw = {"x", "y", "x_points", "x_share", "x_low", "left_share", "elo_low", "p_value", "alpha"}
    for table in (d.value for d in at.dataframe):
        assert not raw & set(table.columns), list(table.columns)
        assert not any("x side" in str(c) or "_" in str(c) for c in table.columns)
    board = next(d.value for d in at.dataframe if "Elo" in d.value.columns)
    assert board["Elo"].dtype.kind == "i"


def test_single_annotator_agreement_is_a_sentence(voted):
    """With one annotator, agreement is explained in a sentence instead of an empty table."""
    at = open_results(voted.admin_token)
    assert any("cannot be measured yet" in m.value for m in at.markdown)
    assert not any("Krippendorff's alpha" in d.value.columns for d in at.dataframe)


def two_voters(tiny, db) -> int:
    """Bob votes A on every pair, voter-1 votes B on every pair; returns voter-1's id."""
    other = db.scalar(select(Annotator.id).where(Annotator.name == "voter-1"))
    for pair in study_pairs(db, tiny.study_id, include_qc=False):
        record_vote(db, pair.id, tiny.voter_id, "a", "left", utcnow())
        record_vote(db, pair.id, other, "a", "right", utcnow())
    db.commit()
    return other


@pytest.fixture
def tiny2(data_dir):
    """The tiny study with a second voter, voter-1."""
    from tiny_study import build_tiny_study

    return build_tiny_study(data_dir, voters=2)


def test_excluding_an_annotator_changes_the_tally_and_restoring_it_undoes_that(tiny2, db):
    """An admin excludes voter-1 (recorded with a reason): the tables count Bob's votes only
    and the page says who is left out; Restore counts voter-1 again."""
    other = two_voters(tiny2, db)
    at = open_results(tiny2.admin_token)
    assert list(table_with(at, "Winner")["Winner"]) == ["h1: draw", "h2: draw"]
    at.selectbox(key="results_exclude_who").set_value(other)
    at.text_input(key="results_exclude_reason").input("clicked right on everything")
    next(b for b in at.button if b.label == "Exclude from the tallies").click().run()
    assert not at.exception
    assert list(table_with(at, "Winner")["Winner"]) == ["h1 = 0", "h2 = 0"]
    assert "voter-1" in at.warning[0].value
    assert at.caption[0].value.startswith(f"{tiny2.n_pairs} live votes by 1 annotator.")
    from db.models import AnnotatorExclusion

    row = db.scalar(select(AnnotatorExclusion))
    assert row.reason == "clicked right on everything" and row.excluded_by_id == tiny2.admin_id
    at.button(key=f"results_restore_{row.annotator_id}").click().run()
    assert list(table_with(at, "Winner")["Winner"]) == ["h1: draw", "h2: draw"]
    assert not at.warning
    db.rollback()  # end the read snapshot taken before the restore
    assert db.scalar(select(AnnotatorExclusion)).restored_at is not None


def test_drill_down_counts_both_bad_as_a_tie(tiny, db):
    """A "both bad" vote is a tie in the drill-down, not a win for the right-hand image."""
    from db.queries import comparison_pairs

    pair = study_pairs(db, tiny.study_id, include_qc=False)[0]
    record_vote(db, pair.id, tiny.voter_id, "a", "both_bad", utcnow())
    db.commit()
    (item,) = [
        p for p in comparison_pairs(db, tiny.study_id, pair.comparison.name) if p.pair_id == pair.id
    ]
    assert (item.a_wins, item.b_wins, item.ties) == (0, 0, 1)


def test_article_tables_count_sets_and_points_per_hyperparameter(voted):
    """Each group's table: wins per side, sets won (組数), points (点数), the verdict."""
    at = open_results(voted.admin_token)
    assert not at.exception
    assert [h.value for h in at.subheader][:2] == ["h1", "h2"]
    h1_sets, h1_totals = table_with(at, "0 wins"), table_with(at, "0 sets won (組数)")
    assert list(h1_sets["0 wins"]) == [2] and list(h1_sets["1 wins"]) == [0]
    assert list(h1_sets["Set winner"]) == ["h1 = 0"]
    assert list(h1_totals["0 sets won (組数)"]) == [1] and list(h1_totals["1 sets won (組数)"]) == [
        0
    ]
    assert list(h1_totals["0 points (点数)"]) == [2] and list(h1_totals["1 points (点数)"]) == [0]
    verdicts = [m.value for m in at.markdown if "decided by" in m.value]
    assert verdicts[0].startswith("**h1 = 0** wins, decided by sets won (組数)")
    assert verdicts[1].startswith("**h2 = 1** wins")


def test_statistics_and_leaderboard_are_shown_as_tables(voted):
    """Win shares, breakdowns, position bias and Bradley-Terry all appear as tables."""
    at = open_results(voted.admin_token)
    headers = [h.value for h in at.header]
    headers = headers[headers.index("Summary") :]
    assert headers[:8] == [
        "Summary",
        "The article's tables",
        "Pooled win shares",
        "Breakdowns",
        "Ties and reasons",
        "Position bias and agreement",
        "Voter checks",
        "Bradley-Terry leaderboard",
    ]
    tables = [d.value for d in at.dataframe]
    board = next(t for t in tables if "Elo" in t.columns)
    assert set(board["Variant"]) == {"tiny-v0", "tiny-v1", "tiny-v2"}
    bias = next(t for t in tables if "Left image won" in t.columns)
    assert int(bias["Left image won"].sum() + bias["Right image won"].sum()) == voted.n_pairs


def test_drill_down_and_grid_show_every_image(voted):
    """The drill-down shows both images of each pair; the grid has variants x prompts images."""
    at = open_results(voted.admin_token)
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    drill = [c for c in captions if c.startswith(("A:", "B:"))]
    assert len(drill) == 2 * 2  # 2 prompts x 1 checkpoint, two images each
    grid = [c for c in captions if c == ""]
    assert len(grid) == 3 * 2  # 3 variants x 2 prompts


def test_downloads_offer_csv_parquet_and_fastchat(voted):
    """Three download buttons: interchange CSV, Parquet and FastChat battle JSON."""
    at = open_results(voted.admin_token)
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels[:3] == ["Votes CSV", "Votes Parquet", "FastChat battles JSON"]


def test_downloaded_files_hold_every_live_vote(voted, db):
    """CSV and Parquet round-trip through the interchange reader; FastChat has one battle per vote."""
    import io
    import json

    import pandas as pd

    from db.queries import live_votes_frame
    from evaluation.downloads import export_bytes

    votes = live_votes_frame(db, voted.study_id)
    csv = pd.read_csv(io.BytesIO(export_bytes(votes, "csv")))
    parquet = pd.read_parquet(io.BytesIO(export_bytes(votes, "parquet")))
    battles = json.loads(export_bytes(votes, "fastchat"))
    assert len(csv) == len(parquet) == len(battles) == voted.n_pairs
    assert set(csv["choice"]) == set(votes["choice"])
    assert {"model_a", "model_b", "winner", "judge", "tstamp"} <= set(battles[0])


def test_grid_puts_the_reference_row_first(tiny, db):
    """Reference images (no checkpoint) of the study's prompts form the grid's first row."""
    from tiny_study import write_png

    from db.models import Image, Study
    from db.queries import study_grid

    study = db.get(Study, tiny.study_id)
    for k, sp in enumerate(study.study_prompts):
        path = f"images/reference-{k}.png"
        write_png(tiny.data_dir / path, 100 + k)
        db.add(
            Image(
                checkpoint_id=None,
                prompt_id=sp.prompt_id,
                seed=0,
                settings_hash=study.settings_hash,
                path=path,
            )
        )
    db.commit()
    grid = study_grid(db, tiny.study_id, "epoch-8", 0)
    assert grid.variants == ["reference", "tiny-v0", "tiny-v1", "tiny-v2"]
    assert grid.prompts == ["tiny prompt 0", "tiny prompt 1, detail"]
    assert grid.images[("reference", "tiny prompt 0")] == "images/reference-0.png"
    assert len(grid.images) == 4 * 2


def test_a_new_vote_or_an_undo_shows_at_the_next_rerun(tiny, db):
    """The cached results follow the votes: one vote, then an undo, each change the count."""
    from db.queries import undo_last_vote

    pairs = study_pairs(db, tiny.study_id, include_qc=False)
    record_vote(db, pairs[0].id, tiny.voter_id, "a", "left", utcnow())
    db.commit()
    at = open_results(tiny.admin_token)
    assert at.caption[0].value.startswith("1 live votes")
    record_vote(db, pairs[1].id, tiny.voter_id, "a", "right", utcnow())
    db.commit()
    assert at.run().caption[0].value.startswith("2 live votes")
    undo_last_vote(db, tiny.voter_id, tiny.study_id)
    db.commit()
    assert at.run().caption[0].value.startswith("1 live votes")


def test_reason_tags_are_broken_down_per_hyperparameter(tiny, db):
    """Tags chosen with votes appear per hyperparameter with their count and how the votes went."""
    for k, pair in enumerate(study_pairs(db, tiny.study_id, include_qc=False)):
        tags = ["blurry"] if pair.comparison.group == "h1" else ["wrong object", "blurry"]
        record_vote(
            db, pair.id, tiny.voter_id, "a", "left" if k % 2 else "tie", utcnow(), tags=tags
        )
    db.commit()
    at = open_results(tiny.admin_token)
    reasons = next(d.value for d in at.dataframe if "Reason" in d.value.columns)
    rows = {(r["Hyperparameter"], r["Reason"]): r for r in reasons.to_dict("records")}
    assert set(rows) == {("h1", "blurry"), ("h2", "blurry"), ("h2", "wrong object")}
    assert (
        rows[("h1", "blurry")]["Votes"] == 2 and rows[("h1", "blurry")]["Share of votes"] == "100%"
    )
    assert rows[("h2", "wrong object")]["Wins"] + rows[("h2", "wrong object")]["Same"] == 2


def test_admin_downloads_the_report_as_one_zip(voted):
    """The admin's Report button gives a zip with report.html, tables.md and the votes CSV."""
    import io
    import zipfile

    from arena_ui.results_data import report_bytes

    at = open_results(voted.admin_token)
    assert at.get("download_button")[3].proto.label == "Study report (zip)"
    with zipfile.ZipFile(io.BytesIO(report_bytes(voted.study_name))) as archive:
        names = {name.split("/", 1)[1] for name in archive.namelist()}
    assert {"report.html", "tables.md", "votes.csv"} <= names


def test_exclusions_travel_as_their_own_csv_beside_the_votes(tiny2, db):
    """After an exclusion the page offers an Exclusions CSV (who, by whom, why, votes left out),
    and a reason that looks like a formula is written as text."""
    import io

    import pandas as pd

    from db.queries import exclude, exclusion_history
    from evaluation.downloads import exclusions_csv

    other = two_voters(tiny2, db)
    exclude(db, tiny2.study_id, other, by_id=tiny2.admin_id, reason="=HYPERLINK(1)")
    db.commit()
    at = open_results(tiny2.admin_token)
    assert "Exclusions CSV" in [d.proto.label for d in at.get("download_button")]
    rows = pd.DataFrame([e.__dict__ for e in exclusion_history(db, tiny2.study_id)])
    rows["votes"] = [tiny2.n_pairs]
    table = pd.read_csv(io.BytesIO(exclusions_csv(rows)))
    assert list(table["annotator"]) == ["voter-1"] and list(table["excluded_by"]) == ["alice"]
    assert list(table["reason"]) == ["'=HYPERLINK(1)"] and list(table["votes"]) == [4]


@pytest.mark.parametrize(
    "names",
    [
        ("vt-embed-dimension-study-v1-long-suffix", "vt-embed-dimension-study-v2-long-suffix"),
        ("a_very_long_variant_name_without_dashes_x", "a_very_long_variant_name_without_dashes_y"),
        ("short", "shorter"),
    ],
)
def test_chart_labels_wrap_full_names_and_never_merge_two(names):
    """Chart labels keep every character (lines joined give the name back), lines stay short
    where the name can break, and two names never become the same label."""
    from evaluation.result_tables import wrap_label

    labels = [wrap_label(name) for name in names]
    assert [label.replace("\n", "") for label in labels] == list(names)
    assert labels[0] != labels[1]
    assert all(len(line) <= 22 for label in labels for line in label.split("\n"))


def test_an_admin_can_restore_the_only_voter_after_excluding_them(voted, db):
    """With every vote excluded the page says nothing is counted but still offers Restore."""
    from db.queries import exclude

    exclude(db, voted.study_id, voted.voter_id, by_id=voted.admin_id)
    db.commit()
    at = open_results(voted.admin_token)
    assert "No votes counted yet" in at.info[0].value
    at.button(key=f"results_restore_{voted.voter_id}").click().run()
    assert not at.info and table_with(at, "Winner") is not None
