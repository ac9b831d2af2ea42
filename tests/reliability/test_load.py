"""Concurrent voters through the vote page's functions: nothing lost, nothing doubled.

The full-size run (20 voters x 200 votes) is bench/load_test.py; this is the same run, smaller.
Real browsers voting at once: bench/browser_load.py.
"""

import pytest

from bench.load_test import LoadConfig, run_load


@pytest.mark.parametrize(
    "voters, votes, undo_rate, race_rate",
    [
        pytest.param(8, 30, 0.1, 0.1, id="voters-undoing"),
        pytest.param(4, 20, 0.0, 1.0, id="every-click-doubled"),
    ],
)
def test_concurrent_voters_lose_and_duplicate_nothing(
    empty_db_url, voters, votes, undo_rate, race_rate
):
    """Voters voting at once, undoing, and clicking twice with both clicks racing from two
    threads: exactly one click of each pair counts, every vote a voter believes it cast is
    live exactly once with its side and choice, no lock error, integrity_check ok, tallies
    equal."""
    report = run_load(
        LoadConfig(
            url=empty_db_url,
            voters=voters,
            votes_per_voter=votes,
            undo_rate=undo_rate,
            double_click_rate=race_rate,
        )
    )

    assert report.problems() == []
    assert report.votes_recorded == voters * votes
    assert report.db_live == report.believed_live == voters * votes - report.undos
    assert report.second_clicks_rejected > 0  # the race was run
    assert (report.undos > 0) == (undo_rate > 0)
    assert report.integrity == ("ok" if empty_db_url.startswith("sqlite") else "n/a")
