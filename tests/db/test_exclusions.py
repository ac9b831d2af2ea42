"""Annotator exclusions: recorded, reversible, and honoured by the vote frame every tally reads."""

import pytest

from db.errors import InvalidValueError, NotFoundError
from db.models import utcnow
from db.queries import (
    exclude,
    excluded_annotator_ids,
    exclusion_history,
    live_exclusions,
    live_votes_frame,
    record_vote,
    restore,
    study_pairs,
    votes_fingerprint,
)


@pytest.fixture
def voted(sessions, study):
    """Both voters judge the first two pairs; the second voter tags theirs."""
    study_id, voters = study
    with sessions.begin() as s:
        for pair in study_pairs(s, study_id, include_qc=False)[:2]:
            record_vote(s, pair.id, voters[0][0], "a", "left", utcnow())
            record_vote(s, pair.id, voters[1][0], "a", "both_bad", utcnow(), tags=["blurry"])
    return study_id, [voter_id for voter_id, _ in voters]


def test_excluded_annotators_votes_leave_the_frame_until_restored(sessions, voted):
    """After exclude() the frame holds only the other voter's votes; restore() brings them back."""
    study_id, (keep, drop) = voted
    with sessions.begin() as s:
        exclude(s, study_id, drop, by_id=keep, reason="  all both bad ")
    with sessions.begin() as s:
        assert excluded_annotator_ids(s, study_id) == {drop}
        assert set(live_votes_frame(s, study_id)["annotator"]) == {"voter-0"}
        (row,) = live_exclusions(s, study_id)
        assert (row.annotator, row.excluded_by, row.reason) == (
            "voter-1",
            "voter-0",
            "all both bad",
        )
        restore(s, study_id, drop)
    with sessions.begin() as s:
        assert excluded_annotator_ids(s, study_id) == set()
        assert len(live_votes_frame(s, study_id)) == 4
        (past,) = exclusion_history(s, study_id)
        assert past.restored_at is not None and not live_exclusions(s, study_id)


def test_include_excluded_flags_the_excluded_votes(sessions, voted):
    """include_excluded keeps every vote and says which ones the tallies leave out."""
    study_id, (_, drop) = voted
    with sessions.begin() as s:
        exclude(s, study_id, drop, by_id=None)
        frame = live_votes_frame(s, study_id, include_excluded=True)
    assert len(frame) == 4
    assert list(frame.loc[frame["excluded"], "annotator"].unique()) == ["voter-1"]


def test_frame_carries_reason_tags_when_asked(sessions, voted):
    """with_tags adds each vote's reason tags; the plain frame keeps the interchange columns."""
    study_id, _ = voted
    with sessions.begin() as s:
        plain = live_votes_frame(s, study_id)
        tagged = live_votes_frame(s, study_id, with_tags=True)
    assert "tags" not in plain.columns
    assert sorted(tagged["tags"]) == [(), (), ("blurry",), ("blurry",)]


def test_excluding_twice_or_restoring_nobody_is_a_clear_error(sessions, voted):
    """A second live exclusion or a restore without one names the annotator and the fix."""
    study_id, (_, drop) = voted
    with sessions.begin() as s:
        exclude(s, study_id, drop, by_id=None)
        with pytest.raises(InvalidValueError, match="already excluded.*restore them first"):
            exclude(s, study_id, drop, by_id=None)
        restore(s, study_id, drop)
        with pytest.raises(NotFoundError, match="not excluded"):
            restore(s, study_id, drop)
        with pytest.raises(NotFoundError, match="annotator id 999"):
            exclude(s, study_id, 999, by_id=None)


def test_fingerprint_changes_with_an_exclusion_and_a_restore(sessions, voted):
    """The results cache key moves when an exclusion is made and when it is undone."""
    study_id, (_, drop) = voted
    with sessions.begin() as s:
        before = votes_fingerprint(s, study_id)
        exclude(s, study_id, drop, by_id=None)
        excluded = votes_fingerprint(s, study_id)
        restore(s, study_id, drop)
        restored = votes_fingerprint(s, study_id)
    assert len({before, excluded, restored}) == 3
