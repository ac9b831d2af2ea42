"""The Studies page (AppTest): the life cycle buttons, a stalled study, the time left, stopping a
worker, the allocation options and reason tags, and names the background command would misread."""

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from db.models import GenerationJob, Image, Study, Vote, utcnow
from evaluation.worker import pid_path

PAGES = Path(__file__).resolve().parents[2] / "pages"


def open_page(token: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / "studies.py"), default_timeout=TIMEOUT)
    at.query_params["token"] = token
    return at.run()


def leave_images_unrendered(db, study_id: int, statuses: list[str]) -> list[GenerationJob]:
    """Give the study's first images jobs with these statuses (their files not rendered)."""
    images = db.scalars(select(Image).order_by(Image.id)).all()
    jobs = []
    for image, status in zip(images, statuses, strict=False):
        image.path = None
        jobs.append(GenerationJob(study_id=study_id, image_id=image.id, status=status))
    db.add_all(jobs)
    db.commit()
    return jobs


def set_status(db, study_id: int, status: str) -> None:
    db.get(Study, study_id).status = status
    db.commit()


def button_labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def test_admin_closes_reopens_and_archives_a_study(tiny, db):
    """Close study, Reopen, Close, Archive, Unarchive: each click stores the status and the
    page offers the next moves."""
    at = open_page(tiny.admin_token)
    for action, status in [
        ("close", "closed"),
        ("reopen", "open"),
        ("close", "closed"),
        ("archive", "archived"),
        ("unarchive", "closed"),
    ]:
        at.button(key=f"{action}_{tiny.study_id}").click().run()
        assert not at.exception
        db.rollback()  # a fresh snapshot of what the page stored
        assert db.get(Study, tiny.study_id).status == status
        assert any(f"is now {status}" in s.value for s in at.success)
    assert "Archive" in button_labels(at) and "Reopen" in button_labels(at)


def test_a_study_whose_worker_died_is_shown_stalled_with_a_restart_button(tiny, db):
    """Status generating, images left and no worker alive: a 'Stalled' warning and a Restart
    button, not 'generating' forever."""
    leave_images_unrendered(db, tiny.study_id, ["running", "pending"])
    set_status(db, tiny.study_id, "generating")
    at = open_page(tiny.admin_token)
    assert any("Stalled" in w.value for w in at.warning)
    assert at.button(key=f"gen_{tiny.study_id}").label == "Restart generation"


def test_a_generating_study_with_its_worker_alive_is_not_stalled(tiny, db):
    """While the study's worker process runs, the page says so and offers Stop, not Restart."""
    leave_images_unrendered(db, tiny.study_id, ["pending"])
    set_status(db, tiny.study_id, "generating")
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "evaluation", "generate"]
    )
    try:
        pid_path(tiny.data_dir, tiny.study_id).parent.mkdir(parents=True, exist_ok=True)
        pid_path(tiny.data_dir, tiny.study_id).write_text(f"{worker.pid}\n")
        at = open_page(tiny.admin_token)
        assert not any("Stalled" in w.value for w in at.warning)
        assert any(f"pid {worker.pid}" in c.value for c in at.caption)
        assert f"gen_{tiny.study_id}" not in [b.key for b in at.button]
        at.button(key=f"stop_{tiny.study_id}").click().run()
        assert worker.wait(timeout=30) == -signal.SIGTERM
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_time_left_is_estimated_from_the_measured_seconds_per_image(tiny, db):
    """Rendered at 30 s per image with 4 images left: 'about 2 min left (30.0 s per image ...)'."""
    jobs = leave_images_unrendered(db, tiny.study_id, ["done", "pending", "pending"])
    done = jobs[0]
    done.image.path = f"images/{done.image_id}.png"
    done.claimed_by, done.claimed_at = "w:1", utcnow() - timedelta(seconds=40)
    done.updated_at = done.claimed_at + timedelta(seconds=30)
    set_status(db, tiny.study_id, "generating")
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "evaluation", "generate"]
    )
    try:
        pid_path(tiny.data_dir, tiny.study_id).parent.mkdir(parents=True, exist_ok=True)
        pid_path(tiny.data_dir, tiny.study_id).write_text(f"{worker.pid}\n")
        at = open_page(tiny.admin_token)
    finally:
        worker.kill()
        worker.wait()
    texts = [p.proto.text for p in at.get("progress")]
    assert any("about 60 s left (30.0 s per image over 1)" in t for t in texts), texts


def fill_new_study(at: AppTest, name: str) -> AppTest:
    at.text_input(key="new_name").input(name)
    at.multiselect(key="new_variants").select("tiny-v0").select("tiny-v1")
    at.run()
    at.selectbox(key="new_base").select("tiny-v0")
    return at.run()


def test_new_study_stores_its_allocation_options_and_reason_tags(tiny, db):
    """Stop-when-settled off, a vote cap of 40 and three reason tags set on the form are the
    new study's stored settings."""
    at = fill_new_study(open_page(tiny.admin_token), "capped")
    assert at.toggle(key="new_stop_when_settled").value is True  # on by default
    at.toggle(key="new_stop_when_settled").set_value(False)
    at.number_input(key="new_vote_cap").set_value(40)
    at.text_input(key="new_reason_tags").input("anatomy, text , composition")
    at.run()
    at.button(key="new_create").click().run()
    assert not at.exception
    study = db.scalar(select(Study).where(Study.name == "capped"))
    assert (study.stop_when_settled, study.vote_cap) == (False, 40)
    assert study.reason_tags == ["anatomy", "text", "composition"]
    assert (study.alpha, study.delta) == (0.05, 0.1)
    assert at.text_input(key="new_name").value == ""  # ready for the next study


def test_more_than_six_reason_tags_are_refused(tiny, db):
    """A seventh tag is refused on the form with the limit; nothing is created."""
    at = fill_new_study(open_page(tiny.admin_token), "tagged")
    at.text_input(key="new_reason_tags").input("a, b, c, d, e, f, g")
    at.run()
    assert any("at most 6" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "new_create"]


def test_reason_tags_and_vote_cap_are_editable_after_creation(tiny, db):
    """The study's voting settings form saves new tags and a cap on an existing study."""
    at = open_page(tiny.admin_token)
    key = f"edit_{tiny.study_id}"
    at.text_input(key=f"{key}_reason_tags").input("hands, face")
    at.number_input(key=f"{key}_vote_cap").set_value(20)
    at.run()
    at.button(key=f"save_{tiny.study_id}").click().run()
    db.rollback()  # a fresh snapshot of what the page stored
    study = db.get(Study, tiny.study_id)
    assert (study.reason_tags, study.vote_cap) == (["hands", "face"], 20)


@pytest.mark.parametrize("name", ["-x", "--study", " -rf"])
def test_study_names_the_background_command_would_misread_are_refused(tiny, db, name):
    """A name starting with '-' (read as an option by `generate`) is refused before creation."""
    at = fill_new_study(open_page(tiny.admin_token), name)
    assert any("starts with '-'" in i.value for i in at.info)
    assert db.scalar(select(Study).where(Study.name == name.strip())) is None


def test_stop_worker_button_is_offered_only_while_it_runs(tiny, db):
    """An open study with no worker shows no Stop button (nothing to stop)."""
    at = open_page(tiny.admin_token)
    assert f"stop_{tiny.study_id}" not in [b.key for b in at.button]


def test_every_study_offers_download_as_file(tiny, db):
    """Each study has a 'Download as file' button (its content is checked in the browser test,
    tests/e2e/test_studies_browser.py)."""
    at = open_page(tiny.admin_token)
    ids = [b.proto.id for b in at.get("download_button") if b.proto.label == "Download as file"]
    assert len(ids) == 1 and ids[0].endswith(f"download_{tiny.study_id}")


def test_a_vote_on_a_study_closed_meanwhile_is_refused_without_a_traceback(tiny, db):
    """A voter's page open while the admin closes the study: the click stores nothing (the
    database refuses it) and the page says no study is open, with no traceback."""
    vote_page = AppTest.from_file(str(PAGES / "vote.py"), default_timeout=TIMEOUT)
    vote_page.query_params["token"] = tiny.voter_token
    vote_page.run()
    open_page(tiny.admin_token).button(key=f"close_{tiny.study_id}").click().run()
    vote_page.button(key="vote_left").click().run()
    assert not vote_page.exception
    assert any("No study is open for voting" in i.value for i in vote_page.info)
    db.rollback()
    assert db.scalar(select(func.count(Vote.id))) == 0


def test_a_bad_sd_setting_is_explained_not_a_traceback(tiny, db):
    """An empty SD model folder is a StudyError the form explains (settings, the field, the
    fix), not an exception on the page."""
    at = fill_new_study(open_page(tiny.admin_token), "no-model")
    at.text_input(key="new_model").input("")
    at.run()
    assert not at.exception
    assert any("settings: model_path is empty" in i.value for i in at.info)
