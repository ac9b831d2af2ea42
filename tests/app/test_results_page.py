"""The results page (AppTest): who may see it, the article's tables, statistics, grid, downloads."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from db.models import Study, utcnow
from db.queries import record_vote, study_pairs

RESULTS_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "results.py")


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
    """Results are refused to a voter until the admin opens them, then shown."""
    at = open_results(voted.voter_token)
    assert "not open to voters" in at.error[0].value and not at.dataframe
    db.get(Study, voted.study_id).results_visible_to_voters = True
    db.commit()
    assert not open_results(voted.voter_token).error


def test_article_tables_count_sets_and_points_per_hyperparameter(voted):
    """Each group's table: wins per side, sets won (組数), points (点数), the verdict."""
    at = open_results(voted.admin_token)
    assert not at.exception
    assert [h.value for h in at.subheader][:2] == ["h1", "h2"]
    h1_sets, h1_totals = at.dataframe[0].value, at.dataframe[1].value
    assert list(h1_sets["0 wins"]) == [2] and list(h1_sets["1 wins"]) == [0]
    assert list(h1_sets["Set winner"]) == ["h1 = 0"]
    assert list(h1_totals["Sets won (組数)"]) == [1, 0]
    assert list(h1_totals["Points (点数)"]) == [2, 0]
    verdicts = [m.value for m in at.markdown if "decided by" in m.value]
    assert verdicts[0].startswith("**h1 = 0** wins, decided by sets won (組数)")
    assert verdicts[1].startswith("**h2 = 1** wins")


def test_statistics_and_leaderboard_are_shown_as_tables(voted):
    """Win shares, breakdowns, position bias, agreement and Bradley-Terry all appear as tables."""
    at = open_results(voted.admin_token)
    headers = [h.value for h in at.header]
    assert headers[:5] == [
        "The article's tables",
        "Pooled win shares",
        "Breakdowns",
        "Position bias and agreement",
        "Bradley-Terry leaderboard",
    ]
    tables = [d.value for d in at.dataframe]
    board = next(t for t in tables if "elo" in t.columns)
    assert set(board["variant"]) == {"tiny-v0", "tiny-v1", "tiny-v2"}
    bias = next(t for t in tables if "left_share" in t.columns)
    assert int(bias["left_wins"].sum() + bias["right_wins"].sum()) == voted.n_pairs


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
    assert labels == ["Votes CSV", "Votes Parquet", "FastChat battles JSON"]


def test_downloaded_files_hold_every_live_vote(voted, db):
    """CSV and Parquet round-trip through the interchange reader; FastChat has one battle per vote."""
    import io
    import json

    import pandas as pd

    from arena_ui.downloads import export_bytes
    from db.queries import live_votes_frame

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

    from arena_ui.gallery import study_grid
    from db.models import Image, Study

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
    grid = study_grid(tiny.study_id, "epoch-8", 0)
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
