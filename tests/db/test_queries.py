"""Query functions: the vote interchange frame, progress, undo and lookups."""

from datetime import UTC, datetime

import pytest

from db.auth import revoke
from db.errors import AccessDeniedError, InvalidValueError, NotFoundError
from db.models import ImagePair
from db.queries import (
    VOTE_COLUMNS,
    get_pair,
    live_votes_frame,
    progress,
    record_vote,
    study_by_name,
    study_pairs,
    undo_last_vote,
)
from db.synthetic import create_synthetic_study

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_live_votes_frame_has_the_interchange_columns_and_values(sessions, study):
    """One row per live vote, columns exactly as DESIGN.md, left_variant from the side shown."""
    study_id, [(v1, _), (v2, _)] = study
    with sessions.begin() as s:
        pair = study_pairs(s, study_id)[0]
        record_vote(s, pair.id, v1, "a", "left", T0)
        record_vote(s, pair.id, v2, "b", "tie", T0)
    with sessions() as s:
        frame = live_votes_frame(s, study_id)
        comparison = s.get(ImagePair, pair.id).comparison
    assert list(frame.columns) == list(VOTE_COLUMNS)
    assert len(frame) == 2
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["study"] == "s1" and first["comparison"] == comparison.name
    assert first["group"] == comparison.group and first["a_setting"] == "0"
    assert first["left_variant"] == first["variant_a"] and first["choice"] == "left"
    assert second["left_variant"] == second["variant_b"] and second["choice"] == "tie"
    assert first["annotator"] == "voter-0" and first["checkpoint"] == pair.checkpoint_label
    assert first["prompt_kind"] in ("single", "composed") and first["seed"] == 0
    assert first["shown_at"] == T0  # times come back in UTC


def test_live_votes_frame_leaves_out_undone_votes_other_studies_and_qc(sessions, study):
    """Only live votes of the asked study count; QC items only when asked for."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        other = create_synthetic_study(s, "s2", n_comparisons=1, n_prompts=1)
        pairs = study_pairs(s, study_id)
        qc = ImagePair(
            comparison_id=pairs[0].comparison_id,
            prompt_id=pairs[0].prompt_id,
            seed=0,
            checkpoint_label=pairs[0].checkpoint_label,
            image_a_id=pairs[0].image_b_id,
            image_b_id=pairs[0].image_a_id,
            qc_kind="swapped_repeat",
        )
        s.add(qc)
        s.flush()
        record_vote(s, pairs[0].id, v1, "a", "left", T0)
        record_vote(s, pairs[1].id, v1, "a", "right", T0)
        record_vote(s, qc.id, v1, "a", "right", T0)
        record_vote(s, study_pairs(s, other.id)[0].id, v1, "a", "left", T0)
    with sessions.begin() as s:
        undo_last_vote(s, v1, study_id)  # the QC vote, recorded last
        undo_last_vote(s, v1, study_id)  # pairs[1]
        record_vote(s, pairs[2].id, v1, "b", "tie", T0)
        record_vote(s, qc.id, v1, "b", "left", T0)
    with sessions() as s:
        frame = live_votes_frame(s, study_id)
        with_qc = live_votes_frame(s, study_id, include_qc=True)
        everything = live_votes_frame(s)
    assert list(frame["choice"]) == ["left", "tie"]
    assert list(with_qc["qc_kind"].fillna("-")) == ["-", "-", "swapped_repeat"]
    assert set(everything["study"]) == {"s1", "s2"} and len(everything) == 3


def test_empty_frame_still_has_the_columns(sessions, study):
    """A study without votes gives an empty frame with the interchange columns."""
    with sessions() as s:
        frame = live_votes_frame(s, study[0])
    assert frame.empty and list(frame.columns) == list(VOTE_COLUMNS)


def test_progress_counts_live_votes_over_regular_pairs(sessions, study):
    """Progress is (pairs the annotator has a live vote on, regular pairs in the study)."""
    study_id, [(v1, _), (v2, _)] = study
    with sessions.begin() as s:
        pairs = study_pairs(s, study_id)
        for pair in pairs[:5]:
            record_vote(s, pair.id, v1, "a", "left", T0)
        undo_last_vote(s, v1, study_id)
    with sessions() as s:
        mine, theirs = progress(s, v1, study_id), progress(s, v2, study_id)
    assert (mine.done, mine.total, mine.remaining) == (4, 24, 20)
    assert (theirs.done, theirs.total) == (0, 24)


def test_undo_with_nothing_to_undo_returns_none(sessions, study):
    """Undo on a fresh annotator does nothing and says so."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        assert undo_last_vote(s, v1, study_id) is None


@pytest.mark.parametrize(
    "left_side, choice, error",
    [("a", "both", InvalidValueError), ("left", "left", InvalidValueError)],
)
def test_record_vote_rejects_unknown_values(sessions, study, left_side, choice, error):
    """Unknown choices or sides are refused with a message naming the argument."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        pair_id = study_pairs(s, study_id)[0].id
        with pytest.raises(error, match="choice=|left_side="):
            record_vote(s, pair_id, v1, left_side, choice, T0)


def test_record_vote_refuses_a_pair_of_another_study(sessions, study):
    """A pair id from another study (e.g. edited into the URL) is not found in this one."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        other = create_synthetic_study(s, "s2", n_comparisons=1, n_prompts=1)
        foreign = study_pairs(s, other.id)[0].id
        with pytest.raises(NotFoundError, match=f"pair id {foreign}"):
            record_vote(s, foreign, v1, "a", "left", T0, study_id=study_id)
        with pytest.raises(NotFoundError):
            get_pair(s, 123_456)


def test_disabled_annotator_cannot_vote(sessions, study):
    """A revoked annotator's votes are refused."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        revoke(s, v1)
        with pytest.raises(AccessDeniedError, match="disabled"):
            record_vote(s, study_pairs(s, study_id)[0].id, v1, "a", "left", T0)


def test_study_by_name_names_the_known_studies_when_missing(sessions, study):
    """Looking up an unknown study lists the existing ones."""
    with sessions() as s:
        assert study_by_name(s, "s1").id == study[0]
        with pytest.raises(NotFoundError, match=r"no study named 'nope'.*\['s1'\]"):
            study_by_name(s, "nope")


@pytest.mark.parametrize(
    ("left_side", "choice", "winner"),
    [
        ("a", "left", "a"),
        ("a", "right", "b"),
        ("b", "left", "b"),
        ("b", "right", "a"),
        ("a", "tie", None),
        ("b", "both_bad", None),
    ],
)
def test_winning_side_is_the_side_shown_at_the_chosen_position(left_side, choice, winner):
    """A vote is won by the pair's side shown where the annotator chose; ties win nothing."""
    from db.models import winning_side

    assert winning_side(left_side, choice) == winner
