"""The annotators and studies pages (AppTest): what the admin sees and what a click stores."""

import time
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from db.auth import authenticate
from db.models import Annotator, GenerationJob, ImagePair, Study

PAGES = Path(__file__).resolve().parents[2] / "pages"


def open_page(page: str, token: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=TIMEOUT)
    at.query_params["token"] = token
    return at.run()


def test_admin_creates_a_voter_and_gets_a_working_personal_link(tiny, db):
    """Creating 'carol' stores a voter and shows a link whose token signs carol in."""
    at = open_page("annotators.py", tiny.admin_token)
    at.text_input(key="new_annotator_name").input("carol")
    at.button(key="FormSubmitter:new_annotator-Create and show the link").click().run()
    link = at.code[0].value
    assert "/?token=" in link
    db.commit()
    carol = authenticate(db, link.split("?token=")[1])
    assert (carol.name, carol.role) == ("carol", "voter")
    assert "carol" in list(at.dataframe[0].value["name"])


def test_duplicate_annotator_name_is_refused(tiny, db):
    """A second 'bob' is refused with a message; still one bob."""
    at = open_page("annotators.py", tiny.admin_token)
    at.text_input(key="new_annotator_name").input("bob")
    at.button(key="FormSubmitter:new_annotator-Create and show the link").click().run()
    assert "already exists" in at.error[0].value
    assert len(db.scalars(select(Annotator).where(Annotator.name == "bob")).all()) == 1


def test_revoking_a_voter_stops_their_link(tiny, db):
    """Revoke disables the account: the voter's token no longer authenticates."""
    at = open_page("annotators.py", tiny.admin_token)
    at.selectbox(key="revoke_target").select(tiny.voter_id)
    at.button(key="revoke_button").click().run()
    db.commit()
    assert authenticate(db, tiny.voter_token) is None
    assert db.get(Annotator, tiny.voter_id).disabled


@pytest.mark.slow  # make test-fast leaves it out
def test_study_form_previews_comparisons_and_creates_the_study(tiny, db):
    """Choosing variants previews sets per group and counts; Create writes study, pairs, jobs and
    starts a background worker whose log and outcome the page shows."""
    at = open_page("studies.py", tiny.admin_token)
    assert [e.label for e in at.expander][0].startswith(f"**{tiny.study_name}**")
    prompts = at.dataframe[-1].value  # the article's six prompts, tagged by the comma rule
    assert list(prompts["kind"]) == ["single"] * 3 + ["composed"] * 3

    at.text_input(key="new_name").input("second")
    at.multiselect(key="new_variants").select("tiny-v0").select("tiny-v1").select("tiny-v2")
    at.run()
    at.selectbox(key="new_base").select("tiny-v0").run()
    assert not at.exception
    preview = at.dataframe[-1].value
    assert list(preview["group"]) == ["h1", "h2"]
    assert any("**2 sets**" in m.value and "**12 pairs**" in m.value for m in at.markdown)

    at.button(key="new_create").click().run()
    db.commit()
    study = db.scalar(select(Study).where(Study.name == "second"))
    assert study is not None and len(study.comparisons) == 2
    jobs = db.scalars(select(GenerationJob).where(GenerationJob.study_id == study.id)).all()
    assert len(jobs) == 2 * 6 + 6  # the base's images are shared by both sets
    # The synthetic checkpoints have no files: the detached worker must stop and say why.
    log = tiny.data_dir / "logs" / f"generate-study-{study.id}.log"
    deadline = time.time() + 60
    while time.time() < deadline and "error" not in log.read_text().lower():
        time.sleep(0.5)
    assert "error" in log.read_text().lower()
    at = open_page("studies.py", tiny.admin_token)
    assert any("error" in c.value.lower() for c in at.code)  # the worker log, on the page


def test_per_image_errors_are_listed(tiny, db):
    """A job that failed shows up with its prompt, variant and error text."""
    study = db.get(Study, tiny.study_id)
    first = db.scalars(
        select(ImagePair).where(ImagePair.comparison_id == study.comparisons[0].id)
    ).first()
    first.image_b.path = None  # not rendered: its job failed
    db.add(
        GenerationJob(
            study_id=study.id,
            image_id=first.image_b_id,
            status="failed",
            attempts=3,
            last_error="RuntimeError: out of memory",
        )
    )
    study.status = "generating"
    db.commit()
    at = open_page("studies.py", tiny.admin_token)
    errors = next(d.value for d in at.dataframe if "last_error" in d.value.columns)
    assert list(errors["last_error"]) == ["RuntimeError: out of memory"]
    assert list(errors["variant"]) == ["tiny-v1"]


def test_study_preview_warns_of_prompts_cut_at_77_tokens(tiny, tiny_clip_dir):
    """A prompt longer than CLIP's 77 tokens (by the SD folder's tokenizer) is named in a
    warning before the study is created, so the admin can shorten it."""
    at = open_page("studies.py", tiny.admin_token)
    long_prompt = " ".join(["red hair"] * 60)
    at.text_input(key="new_name").input("long")
    at.multiselect(key="new_variants").select("tiny-v0").select("tiny-v1")
    at.run()
    at.selectbox(key="new_base").select("tiny-v0")
    at.text_area(key="new_prompts").input(f"cat maid\n{long_prompt}")
    at.text_input(key="new_model").input(str(tiny_clip_dir))
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("77 tokens" in w and long_prompt in w for w in warnings), warnings
    assert not any("“cat maid”" in w for w in warnings)
