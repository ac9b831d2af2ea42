"""The welcome page (AppTest): what each visitor is told. The demo button is exercised in a real
browser (tests/e2e/test_quickstart.py): AppTest loses clicks on pages run via st.navigation."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

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


def test_admin_is_offered_the_photo_demo(tiny):
    """The welcome page offers admins the photo demo (real photographs, seconds), next to the
    tiny-model demo; the click itself runs in a real browser (tests/e2e/test_photo_demo_browser.py)."""
    at = open_welcome(tiny.admin_token)
    text = next(m.value for m in at.markdown if "scikit-image" in m.value)
    assert "photo-demo" in text and "one setting apart" in text
    assert at.button(key="build_photo_demo")
