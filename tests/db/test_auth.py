"""Accounts and tokens: random, stored hashed, revocable."""

import pytest
from sqlalchemy import select

from db.auth import (
    authenticate,
    create_annotator,
    ensure_bootstrap_admin,
    hash_token,
    revoke,
    rotate_token,
)
from db.errors import DuplicateNameError, InvalidValueError
from db.models import Annotator


def test_only_the_token_hash_is_stored(sessions, db_url):
    """The database holds sha256(token), never the token; the token has >= 128 bits."""
    with sessions.begin() as s:
        annotator, token = create_annotator(s, "alice", "voter")
    assert len(token) >= 43  # token_urlsafe(32): 256 bits
    with sessions() as s:
        stored = s.get(Annotator, annotator.id)
        assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    if db_url.startswith("sqlite:///"):
        raw = open(db_url.removeprefix("sqlite:///"), "rb").read()
        wal = open(db_url.removeprefix("sqlite:///") + "-wal", "rb").read()
        assert token.encode() not in raw + wal


def test_authenticate_finds_the_holder_and_refuses_others(sessions):
    """A valid token identifies its annotator; unknown or empty tokens identify nobody."""
    with sessions.begin() as s:
        alice, alice_token = create_annotator(s, "alice", "voter")
        admin, admin_token = create_annotator(s, "root", "admin")
    with sessions() as s:
        assert authenticate(s, alice_token).id == alice.id
        assert authenticate(s, admin_token).role == "admin"
        for bad in ("", None, alice_token + "x", "guess"):
            assert authenticate(s, bad) is None


def test_revoke_and_rotate_stop_old_tokens(sessions):
    """A revoked annotator cannot log in; rotating a token invalidates the old one."""
    with sessions.begin() as s:
        alice, alice_token = create_annotator(s, "alice")
        bob, bob_token = create_annotator(s, "bob")
        revoke(s, alice.id)
        new_bob_token = rotate_token(s, bob.id)
    with sessions() as s:
        assert authenticate(s, alice_token) is None
        assert authenticate(s, bob_token) is None
        assert authenticate(s, new_bob_token).id == bob.id


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 65, "at most 64"),
        ("bad\x00name", "control"),
        ("new\nline", "control"),
        ("esc\x1b[31m", "control"),
        ("surrogate\udcff", "control"),
    ],
)
def test_bad_names_are_refused_with_a_clear_message(sessions, name, message):
    """Names must be non-empty, printable and at most 64 characters."""
    with sessions.begin() as s, pytest.raises(InvalidValueError, match=message):
        create_annotator(s, name)


def test_names_and_roles_are_checked(sessions):
    """A name can be used once; the role must be admin or voter; unicode names are fine."""
    with sessions.begin() as s:
        create_annotator(s, "Zoë 山田")
        with pytest.raises(DuplicateNameError, match="already exists"):
            create_annotator(s, "Zoë 山田")
        with pytest.raises(InvalidValueError, match="role="):
            create_annotator(s, "carol", role="root")


def test_bootstrap_admin_is_created_once(sessions, monkeypatch):
    """A fresh install gets one admin with a printed token; later starts create nothing."""
    monkeypatch.delenv("ARENA_ADMIN_TOKEN", raising=False)
    with sessions.begin() as s:
        token = ensure_bootstrap_admin(s)
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is None
        admin = authenticate(s, token)
        assert admin.role == "admin" and admin.name == "admin"
        assert len(s.scalars(select(Annotator)).all()) == 1


def test_bootstrap_admin_from_env_secret(sessions, monkeypatch):
    """With ARENA_ADMIN_TOKEN set, that secret logs in as an admin (and nothing is printed)."""
    secret = "s3cret-" + "x" * 30
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", secret)
    with sessions.begin() as s:
        create_annotator(s, "admin", "voter")  # the default name is taken: admin-2 is used
        assert ensure_bootstrap_admin(s) is None
        assert ensure_bootstrap_admin(s) is None
    with sessions() as s:
        admin = authenticate(s, secret)
        assert admin.role == "admin" and admin.name == "admin-2"
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", "short")
    with sessions.begin() as s, pytest.raises(InvalidValueError, match="at least 16"):
        ensure_bootstrap_admin(s)


def test_changed_admin_secret_replaces_the_old_one(sessions, monkeypatch):
    """After ARENA_ADMIN_TOKEN changes, only the new secret signs in as `admin`; the old one
    stops working and no second admin appears."""
    old, new = "old-secret-" + "a" * 20, "new-secret-" + "b" * 20
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", old)
    with sessions.begin() as s:
        ensure_bootstrap_admin(s)
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", new)
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is None
    with sessions() as s:
        assert authenticate(s, old) is None
        assert authenticate(s, new).name == "admin"
        admins = s.scalars(select(Annotator).where(Annotator.role == "admin")).all()
        assert [a.name for a in admins] == ["admin"]


def test_unset_admin_secret_stops_working(sessions, monkeypatch):
    """After ARENA_ADMIN_TOKEN is unset, the old secret no longer signs in: the account it was
    the key of gets a new token, returned once to be printed, and later starts print nothing."""
    secret = "retired-secret-" + "e" * 20
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", secret)
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is None
    monkeypatch.delenv("ARENA_ADMIN_TOKEN")
    with sessions.begin() as s:
        printed = ensure_bootstrap_admin(s)
    assert printed is not None and printed != secret
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is None
    with sessions() as s:
        assert authenticate(s, secret) is None
        assert authenticate(s, printed).name == "admin"
        assert [a.name for a in s.scalars(select(Annotator))] == ["admin"]


def test_unset_admin_secret_keeps_a_token_rotated_since(sessions, monkeypatch):
    """An admin who replaced the secret with a token of their own (rotate) keeps that token
    when the variable is unset: only a key that is still the secret is retired."""
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", "rotated-secret-" + "f" * 20)
    with sessions.begin() as s:
        ensure_bootstrap_admin(s)
        admin = s.scalar(select(Annotator).where(Annotator.name == "admin"))
        own = rotate_token(s, admin.id)
    monkeypatch.delenv("ARENA_ADMIN_TOKEN")
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is None
    with sessions() as s:
        assert authenticate(s, own).name == "admin"


def test_secret_applied_before_the_marker_is_retired_after_one_start(sessions, monkeypatch):
    """A database upgraded from before `token_from_env` holds the secret's hash unmarked: the
    next start with the variable set marks it, so unsetting the variable then retires it."""
    secret = "legacy-secret-" + "g" * 20
    with sessions.begin() as s:
        s.add(Annotator(name="admin", role="admin", token_hash=hash_token(secret)))
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", secret)
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is None
    monkeypatch.delenv("ARENA_ADMIN_TOKEN")
    with sessions.begin() as s:
        assert ensure_bootstrap_admin(s) is not None
    with sessions() as s:
        assert authenticate(s, secret) is None


def test_admin_secret_takes_over_the_bootstrap_admin_link(sessions, monkeypatch):
    """Setting ARENA_ADMIN_TOKEN on an install whose admin came from a printed link makes the
    secret the admin's only key: the printed link stops working."""
    monkeypatch.delenv("ARENA_ADMIN_TOKEN", raising=False)
    with sessions.begin() as s:
        printed = ensure_bootstrap_admin(s)
    secret = "operator-secret-" + "c" * 20
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", secret)
    with sessions.begin() as s:
        ensure_bootstrap_admin(s)
    with sessions() as s:
        assert authenticate(s, printed) is None
        assert authenticate(s, secret).name == "admin"


def test_changed_admin_secret_rotates_the_fallback_admin_name(sessions, monkeypatch):
    """When a voter holds the name `admin`, the secret's admin is `admin-2`, and a new secret
    replaces its old one there too (the voter is untouched)."""
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", "first-secret-" + "d" * 20)
    with sessions.begin() as s:
        _, voter_token = create_annotator(s, "admin", "voter")
        ensure_bootstrap_admin(s)
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", "second-secret-" + "e" * 20)
    with sessions.begin() as s:
        ensure_bootstrap_admin(s)
    with sessions() as s:
        assert authenticate(s, "first-secret-" + "d" * 20) is None
        assert authenticate(s, "second-secret-" + "e" * 20).name == "admin-2"
        assert authenticate(s, voter_token).role == "voter"
