"""Concurrent voters through the vote page's functions: nothing lost, nothing doubled.

The full-size run (20 voters x 200 votes) is bench/load_test.py; this is the same run, smaller.
"""

from bench.load_test import LoadConfig, run_load


def test_concurrent_voters_lose_and_duplicate_nothing(empty_db_url):
    """8 voters x 30 votes at once (with second clicks and undos): every vote a voter believes
    it cast is live exactly once, with its side and choice; integrity_check ok; tallies equal."""
    report = run_load(
        LoadConfig(
            url=empty_db_url, voters=8, votes_per_voter=30, undo_rate=0.1, double_click_rate=0.1
        )
    )

    assert report.problems() == []
    assert report.votes_recorded == 8 * 30
    assert report.db_live == report.believed_live == 8 * 30 - report.undos
    assert report.undos > 0 and report.second_clicks_rejected > 0  # the paths were exercised
    assert report.integrity == ("ok" if empty_db_url.startswith("sqlite") else "n/a")
