"""The database itself keeps the data sound, whatever code writes to it."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.errors import DuplicateVoteError
from db.models import Checkpoint, GenerationJob, Image, ImagePair, Prompt, Vote
from db.queries import live_vote, record_vote, study_pairs, undo_last_vote

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _raw_vote(pair, annotator_id):
    return Vote(
        pair_id=pair.id,
        annotator_id=annotator_id,
        left_image_id=pair.image_a_id,
        left_side="a",
        choice="left",
        shown_at=T0,
    )


def test_second_live_vote_fails_in_the_database_even_bypassing_record_vote(sessions, study):
    """Two live votes by one annotator on one pair violate a database constraint."""
    study_id, [(voter, _), _] = study
    with sessions() as s:
        pair = study_pairs(s, study_id)[0]
        s.add(_raw_vote(pair, voter))
        s.commit()
        s.add(_raw_vote(pair, voter))
        with pytest.raises(IntegrityError):
            s.commit()


def test_another_annotator_may_vote_on_the_same_pair(sessions, study):
    """The one-live-vote rule is per annotator: two voters can judge one pair."""
    study_id, [(v1, _), (v2, _)] = study
    with sessions.begin() as s:
        pair = study_pairs(s, study_id)[0]
        record_vote(s, pair.id, v1, "a", "left", T0)
        record_vote(s, pair.id, v2, "b", "tie", T0)
    with sessions() as s:
        assert len(s.scalars(select(Vote)).all()) == 2


def test_record_vote_translates_a_duplicate_and_keeps_the_transaction(sessions, study):
    """A second live vote raises DuplicateVoteError; the first vote stays committed."""
    study_id, [(voter, _), _] = study
    with sessions.begin() as s:
        pair_id = study_pairs(s, study_id)[0].id
        first = record_vote(s, pair_id, voter, "a", "left", T0)
        with pytest.raises(DuplicateVoteError, match="already has a live vote"):
            record_vote(s, pair_id, voter, "b", "right", T0)
    with sessions() as s:
        votes = s.scalars(select(Vote)).all()
        assert [v.id for v in votes] == [first.id]


def test_undo_keeps_history_and_allows_a_new_vote(sessions, study):
    """Undo supersedes the vote (kept, linked to its replacement) and frees the pair."""
    study_id, [(voter, _), _] = study
    with sessions.begin() as s:
        pair_id = study_pairs(s, study_id)[0].id
        first = record_vote(s, pair_id, voter, "a", "left", T0)
    with sessions.begin() as s:
        undone = undo_last_vote(s, voter, study_id)
        assert undone.id == first.id and undone.superseded_at is not None
    with sessions.begin() as s:
        second = record_vote(s, pair_id, voter, "b", "right", T0)
    with sessions() as s:
        old, new = s.get(Vote, first.id), s.get(Vote, second.id)
        assert old.superseded_at is not None and old.superseded_by_id == new.id
        assert old.choice == "left"  # nothing is rewritten
        assert live_vote(s, voter, pair_id).id == new.id


def test_vote_records_the_image_shown_on_the_left(sessions, study):
    """A vote stores which image was on the left, so side bias can be measured."""
    study_id, [(voter, _), _] = study
    with sessions.begin() as s:
        pair = study_pairs(s, study_id)[0]
        vote = record_vote(s, pair.id, voter, "b", "left", T0)
        assert vote.left_image_id == pair.image_b_id and vote.left_side == "b"


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "checkpoint"])
def test_one_image_per_checkpoint_prompt_seed_and_settings(sessions, study, reference):
    """An image is stored once per (checkpoint, prompt, seed, settings hash), even for the
    reference whose checkpoint is NULL."""
    with sessions() as s:
        prompt = s.scalars(select(Prompt)).first()
        checkpoint = None if reference else s.scalars(select(Checkpoint)).first()

        def image(seed, settings_hash="h1"):
            return Image(
                checkpoint=checkpoint, prompt=prompt, seed=seed, settings_hash=settings_hash
            )

        s.add_all([image(7), image(8), image(7, "h2")])  # different seed / settings: fine
        s.commit()
        s.add(image(7))
        with pytest.raises(IntegrityError):
            s.commit()


def test_one_generation_job_per_image(sessions, study):
    """Studies sharing an image share its generation job: a second job for it is refused."""
    study_id, _ = study
    with sessions() as s:
        image = s.scalars(select(Image)).first()
        s.add(GenerationJob(study_id=study_id, image=image))
        s.commit()
        s.add(GenerationJob(study_id=study_id, image=image))
        with pytest.raises(IntegrityError):
            s.commit()


def test_foreign_keys_are_enforced(sessions, study):
    """A vote pointing at a pair that does not exist is refused by the database."""
    _, [(voter, _), _] = study
    with sessions() as s:
        s.add(
            Vote(
                pair_id=999_999,
                annotator_id=voter,
                left_image_id=999_999,
                left_side="a",
                choice="left",
                shown_at=T0,
            )
        )
        with pytest.raises(IntegrityError):
            s.commit()


@pytest.mark.parametrize("column, value", [("choice", "both"), ("left_side", "c")])
def test_vote_columns_accept_only_known_values(sessions, study, column, value):
    """choice and left_side are checked by the database too, not only by record_vote."""
    study_id, [(voter, _), _] = study
    with sessions() as s:
        pair = study_pairs(s, study_id)[0]
        vote = _raw_vote(pair, voter)
        setattr(vote, column, value)
        s.add(vote)
        with pytest.raises(IntegrityError):
            s.commit()


def test_one_regular_pair_per_comparison_prompt_seed_and_label(sessions, study):
    """A study cannot hold the same regular item twice; a QC repeat of it is allowed once."""
    study_id, _ = study
    with sessions() as s:
        pair = study_pairs(s, study_id)[0]

        def copy(qc_kind=None):
            return ImagePair(
                comparison_id=pair.comparison_id,
                prompt_id=pair.prompt_id,
                seed=pair.seed,
                checkpoint_label=pair.checkpoint_label,
                image_a_id=pair.image_b_id,
                image_b_id=pair.image_a_id,
                qc_kind=qc_kind,
            )

        s.add(copy("swapped_repeat"))
        s.commit()
        s.add(copy())
        with pytest.raises(IntegrityError):
            s.commit()
