"""The welcome page (AppTest): what each visitor is told, and the one-click demo build."""

from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import Image, Study

WELCOME = str(Path(__file__).resolve().parents[2] / "app.py")  # welcome is the default page


def open_welcome(token: str | None, timeout: float = 30) -> AppTest:
    at = AppTest.from_file(WELCOME, default_timeout=timeout)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def test_welcome_explains_the_tool_and_how_to_sign_in(tiny):
    """No token: what the arena does, where links come from, no actions."""
    at = open_welcome(None)
    assert "vote blind between two images" in at.markdown[0].value
    assert "personal link" in at.markdown[1].value
    assert not at.button


def test_admin_is_told_the_demo_is_random_and_how_to_use_real_weights(tiny):
    """The demo section says the models are random and tiny and names the real-weights route."""
    at = open_welcome(tiny.admin_token)
    demo_text = next(m.value for m in at.markdown if "random and tiny" in m.value)
    assert "Stable Diffusion 1.x folder" in demo_text and "Variants page" in demo_text
    assert at.button(key="build_demo")


@pytest.mark.slow
def test_demo_button_builds_a_ready_study_with_images(tiny, db):
    """One click: seven tiny variants + reference trained, rendered, stored, study ready."""
    at = open_welcome(tiny.admin_token, timeout=900)
    at.button(key="build_demo").click().run(timeout=900)
    assert not at.exception, at.exception
    assert "Demo study **demo** ready" in at.success[-1].value
    db.commit()
    study = db.scalar(select(Study).where(Study.name == "demo"))
    assert study.status == "ready"
    paths = db.scalars(select(Image.path).where(Image.path.is_not(None))).all()
    assert all((tiny.data_dir / p).is_file() for p in paths)
