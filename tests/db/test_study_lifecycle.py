"""The study life cycle at the database: which studies take votes, the admin's moves between
statuses, and the generation figures the Studies page shows (job counts, seconds per image)."""

from datetime import UTC, datetime, timedelta

import pytest

from db.errors import StudyClosedError, StudyStatusError
from db.models import GenerationJob, Study
from db.queries import (
    change_study_status,
    job_counts,
    record_vote,
    seconds_per_image,
    study_image_ids,
    study_pairs,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", ["draft", "closed", "archived"])
def test_votes_on_a_study_that_is_not_open_are_refused_at_the_database(sessions, study, status):
    """record_vote itself refuses a vote on a draft, closed or archived study, naming the study,
    its status and the fix; nothing is stored."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        s.get(Study, study_id).status = status
    with sessions.begin() as s:
        pair = study_pairs(s, study_id)[0].id
        with pytest.raises(StudyClosedError, match=f"'s1' is {status}.*reopen"):
            record_vote(s, pair, v1, "a", "left", T0, study_id=study_id)
        assert s.get(Study, study_id).status == status


@pytest.mark.parametrize("status", ["open", "generating"])
def test_votes_on_open_and_generating_studies_are_recorded(sessions, study, status):
    """An open study, and one still generating (its rendered pairs), takes votes."""
    study_id, [(v1, _), _] = study
    with sessions.begin() as s:
        s.get(Study, study_id).status = status
    with sessions.begin() as s:
        vote = record_vote(s, study_pairs(s, study_id)[0].id, v1, "a", "left", T0)
        assert vote.id is not None


def test_admin_closes_reopens_and_archives_a_study(sessions, study):
    """open -> closed -> open -> closed -> archived -> closed, each move stored."""
    study_id, _ = study
    for status in ("closed", "open", "closed", "archived", "closed"):
        with sessions.begin() as s:
            change_study_status(s, study_id, status)
        with sessions() as s:
            assert s.get(Study, study_id).status == status


@pytest.mark.parametrize(
    ("start", "target"),
    [("open", "archived"), ("archived", "open"), ("closed", "generating"), ("draft", "open")],
)
def test_moves_outside_the_life_cycle_are_refused(sessions, study, start, target):
    """Archiving an open study (close it first), reopening an archived one, or opening a draft by
    hand is refused with the moves allowed; the status stays."""
    study_id, _ = study
    with sessions.begin() as s:
        s.get(Study, study_id).status = start
    with sessions.begin() as s:
        with pytest.raises(StudyStatusError, match=f"is {start}; it cannot become '{target}'"):
            change_study_status(s, study_id, target)
    with sessions() as s:
        assert s.get(Study, study_id).status == start


def test_reopening_a_study_with_images_to_render_makes_it_a_draft(sessions, study):
    """A study closed before its images were all rendered reopens as a draft (it opens when its
    generation finishes), so voters are not sent to pairs without images."""
    study_id, _ = study
    with sessions.begin() as s:
        job = GenerationJob(
            study_id=study_id, image_id=s.scalars(study_image_ids(study_id)).first()
        )
        s.add(job)
        s.flush()
        job.image.path = None
        s.get(Study, study_id).status = "closed"
    with sessions.begin() as s:
        assert change_study_status(s, study_id, "open").status == "draft"


def test_job_counts_and_seconds_per_image_come_from_the_jobs(sessions, study):
    """Two batches of 2 images that took 10 s and 6 s measure 4 s per image over 4 images;
    images left to render are counted by status."""
    study_id, _ = study
    with sessions.begin() as s:
        ids = list(s.scalars(study_image_ids(study_id)))
        plan = [(10, "w:1", 0), (10, "w:1", 0), (6, "w:1", 60), (4, "w:1", 60)]
        for image_id, (took, worker, start) in zip(ids, plan, strict=False):
            claimed = T0 + timedelta(seconds=start)
            s.add(
                GenerationJob(
                    study_id=study_id,
                    image_id=image_id,
                    status="done",
                    claimed_by=worker,
                    claimed_at=claimed,
                    updated_at=claimed + timedelta(seconds=took),
                )
            )
        for image_id, status in zip(ids[4:7], ["pending", "running", "failed"], strict=True):
            job = GenerationJob(study_id=study_id, image_id=image_id, status=status)
            s.add(job)
            s.flush()
            job.image.path = None
    with sessions() as s:
        assert seconds_per_image(s, study_id) == (4.0, 4)
        counts = job_counts(s, study_id)
        assert (counts.pending, counts.running, counts.failed) == (1, 1, 1)
        assert counts.to_render == 2 and counts.open_jobs == 3
        assert counts.total == len(ids)
