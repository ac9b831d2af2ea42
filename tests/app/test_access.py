"""Access through app.py (AppTest): token links, roles checked on every page, the bootstrap admin."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from db.auth import authenticate

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def open_app(token: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def test_fresh_install_prints_a_one_time_admin_link_and_says_where(data_dir, db, capfd):
    """No accounts: the server console gets an admin login link; the welcome page points to it."""
    at = open_app()
    assert not at.exception
    printed = capfd.readouterr().err
    assert "ARENA ADMIN LOGIN" in printed
    token = printed.split("?token=")[1].split()[0]
    assert authenticate(db, token).role == "admin"
    assert any("admin login link" in i.value and "console" in i.value for i in at.info)
    assert not at.button  # nobody signed in: no demo button, nothing to vote on

    open_app()  # a second run (or restart) with an admin in place prints nothing new
    assert "ARENA ADMIN LOGIN" not in capfd.readouterr().err


def test_visitor_without_token_sees_only_the_welcome_page(tiny):
    """No token: the welcome text and sign-in help only; the sidebar says 'not signed in'."""
    at = open_app()
    assert at.title[0].value == "Deprojector Arena"
    assert any("Not signed in" in c.value for c in at.sidebar.caption)
    assert not at.sidebar.selectbox


def test_voter_link_signs_in_and_shows_the_study(tiny):
    """A voter's link: signed in by name, the study picker in the sidebar, no demo button."""
    at = open_app(tiny.voter_token)
    assert "Signed in as **bob** (voter)" in at.sidebar.markdown[0].value
    assert at.sidebar.selectbox(key="arena_study_picker").value == tiny.study_name
    assert not [b for b in at.button if b.key == "build_demo"]


def test_admin_sees_the_demo_button(tiny):
    """An admin gets the one-click demo study."""
    at = open_app(tiny.admin_token)
    assert at.button(key="build_demo").label == "Build the demo study"


@pytest.mark.parametrize("page", ["variants.py", "studies.py", "annotators.py"])
def test_voter_is_refused_every_admin_page(tiny, page):
    """A voter who opens an admin page's URL gets a refusal and no admin widget."""
    at = open_app(tiny.voter_token)
    at.switch_page(f"pages/{page}").run()
    assert "admins only" in at.error[0].value
    assert not at.button and not at.text_input and not at.dataframe


@pytest.mark.parametrize("page", ["vote.py", "results.py", "variants.py"])
def test_no_token_is_refused_every_page_but_welcome(tiny, page):
    """Without a token, typing any other page's URL gives a refusal."""
    at = open_app()
    at.switch_page(f"pages/{page}").run()
    assert "not signed in" in at.error[0].value


def test_admin_token_secret_signs_in_without_a_console_link(data_dir, monkeypatch, capfd):
    """With ARENA_ADMIN_TOKEN set, nothing is printed and that secret is an admin's link."""
    secret = "s3cret-admin-token-of-32-characters"
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", secret)
    at = open_app(secret)
    assert "ARENA ADMIN LOGIN" not in capfd.readouterr().err
    assert "(admin)" in at.sidebar.markdown[0].value


def test_sidebar_links_keep_the_sign_in_for_a_new_tab(tiny):
    """Every menu link carries the personal token, so opening it in a new tab stays signed in;
    a visitor's links carry none."""
    at = open_app(tiny.voter_token)
    links = at.sidebar.get("page_link")
    assert [link.proto.label for link in links] == ["Welcome", "Vote", "Results"]
    assert {link.proto.query_string for link in links} == {f"token={tiny.voter_token}"}
    at = open_app()
    assert {link.proto.query_string for link in at.sidebar.get("page_link")} == {""}


def test_no_deploy_button_developer_menu_or_remote_favicon():
    """The app's config hides Streamlit's Deploy button and developer menu; the favicon is a
    file of the app, not a Material icon a browser fetches from Google's servers."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "minimal"
    source = (ROOT / "app.py").read_text()
    assert "page_icon=FAVICON" in source and (ROOT / "arena_ui" / "favicon.png").is_file()


def test_the_deep_link_workaround_still_matches_streamlit():
    """arena_ui.resources.ensure_entry_point relies on Streamlit's multipage-mode switch
    (streamlit/streamlit#9624): an upgrade that renames it must fail here, not in production."""
    from streamlit.runtime.pages_manager import PagesManager

    assert "uses_pages_directory" in vars(PagesManager)
