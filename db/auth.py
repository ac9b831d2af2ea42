"""Annotator accounts and access tokens.

A token is `secrets.token_urlsafe(32)` (256 bits); only its sha256 is stored, so a copy of the
database does not let anyone log in. Functions take a Session first and never commit.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import DuplicateNameError, InvalidValueError, NotFoundError
from db.models import ROLES, Annotator

MAX_NAME_LENGTH = 64
ADMIN_TOKEN_ENV = "ARENA_ADMIN_TOKEN"
BOOTSTRAP_ADMIN_NAME = "admin"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def login_link(base_url: str, token: str) -> str:
    """The personal link that signs `token`'s holder in at `base_url` (e.g. http://host:8501)."""
    return f"{base_url.rstrip('/')}/?token={token}"


def hash_token(token: str) -> str:
    """The stored form of a token: sha256 hex of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    """The name with surrounding whitespace removed; InvalidValueError if it is empty, longer
    than 64 characters, or holds control / non-printable characters."""
    if not isinstance(name, str):
        raise InvalidValueError(f"annotator name must be text, got {type(name).__name__}")
    cleaned = name.strip()
    if not cleaned:
        raise InvalidValueError("annotator name is empty; type a name such as 'alice'")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidValueError(
            f"annotator name {cleaned[:20]!r}... is {len(cleaned)} characters long; "
            f"use at most {MAX_NAME_LENGTH}"
        )
    if not cleaned.isprintable():
        bad = next(ch for ch in cleaned if not ch.isprintable())
        raise InvalidValueError(
            f"annotator name {cleaned!r} contains the control or non-printable character "
            f"{bad!r}; use letters, digits, spaces and punctuation only"
        )
    return cleaned


def create_annotator(s: Session, name: str, role: str = "voter") -> tuple[Annotator, str]:
    """A new annotator and its token (shown once: only the hash is kept)."""
    name = validate_name(name)
    if role not in ROLES:
        raise InvalidValueError(f"role={role!r}: expected one of {list(ROLES)}")
    if s.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
        raise DuplicateNameError(f"an annotator named {name!r} already exists; pick another name")
    token = new_token()
    annotator = Annotator(name=name, role=role, token_hash=hash_token(token))
    try:
        with s.begin_nested():
            s.add(annotator)
    except IntegrityError as error:  # created concurrently by someone else
        raise DuplicateNameError(
            f"an annotator named {name!r} already exists; pick another name"
        ) from error
    return annotator, token


def authenticate(s: Session, token: str | None) -> Annotator | None:
    """The enabled annotator holding `token`, or None (unknown, revoked or empty token)."""
    if not token or not isinstance(token, str):
        return None
    annotator = s.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token)))
    if annotator is None or annotator.disabled:
        return None
    return annotator


def _get(s: Session, annotator_id: int) -> Annotator:
    annotator = s.get(Annotator, annotator_id)
    if annotator is None:
        raise NotFoundError(f"annotator id {annotator_id!r} does not exist")
    return annotator


def revoke(s: Session, annotator_id: int) -> Annotator:
    """Disable the annotator: their token stops working; their votes are kept."""
    annotator = _get(s, annotator_id)
    annotator.disabled = True
    s.flush()
    return annotator


def enable(s: Session, annotator_id: int) -> Annotator:
    annotator = _get(s, annotator_id)
    annotator.disabled = False
    s.flush()
    return annotator


def rotate_token(s: Session, annotator_id: int) -> str:
    """Give the annotator a fresh token (the old one stops working) and return it."""
    annotator = _get(s, annotator_id)
    token = new_token()
    annotator.token_hash = hash_token(token)
    annotator.token_from_env = False  # its key is no longer the ARENA_ADMIN_TOKEN secret
    s.flush()
    return token


# Printed with the one-time login link of a fresh install (server console, `python -m db bootstrap`).
BOOTSTRAP_NOTICE = "ARENA ADMIN LOGIN (shown once, keep it private):"


def ensure_bootstrap_admin(s: Session) -> str | None:
    """Make sure someone can administer the install, and that only the admin secret in force
    works. Returns a token to print once on the console, or None.

    - `ARENA_ADMIN_TOKEN` set: the secret is the only key of the bootstrap admin, the admin-role
      account named "admin" (or "admin-2", ... when a voter holds "admin"; the oldest such
      account), created if missing. The account gets the secret's hash and is marked
      `token_from_env`, so a changed secret replaces the old one and a link printed earlier
      stops working. Returns None: the operator already knows the secret. A revoked account
      stays revoked.
    - `ARENA_ADMIN_TOKEN` unset, and an account's key came from it: that key is replaced by a
      new token, returned to be printed (the old secret is no longer in force).
    - Otherwise, when no enabled admin exists (a fresh install): an admin named "admin" (or
      "admin-2", ...) is created and its token returned.
    """
    secret = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if secret:
        _apply_admin_secret(s, secret)
        return None

    retired = _retire_env_tokens(s)
    if retired is not None:
        return retired
    has_admin = s.scalar(
        select(Annotator.id).where(Annotator.role == "admin", Annotator.disabled.is_(False))
    )
    if has_admin is not None:
        return None
    token = new_token()
    return token if _add_admin(s, hash_token(token)) is not None else None


def _apply_admin_secret(s: Session, secret: str) -> None:
    if len(secret) < 16:
        raise InvalidValueError(
            f"{ADMIN_TOKEN_ENV} is {len(secret)} characters long; use at least 16 random "
            'characters, e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    secret_hash = hash_token(secret)
    holder = s.scalar(select(Annotator).where(Annotator.token_hash == secret_hash))
    if holder is None:
        holder = _bootstrap_admin(s)
        if holder is None:
            holder = _add_admin(s, secret_hash)
        else:
            holder.token_hash = secret_hash  # the previous secret (or printed link) stops working
    if holder is not None and holder.role == "admin":
        holder.token_from_env = True
    s.flush()


def _retire_env_tokens(s: Session) -> str | None:
    """Give every account whose key was the (now unset) admin secret a new token; the new token
    of the first enabled admin among them, or None."""
    printed = None
    for annotator in s.scalars(
        select(Annotator).where(Annotator.token_from_env.is_(True)).order_by(Annotator.id)
    ):
        token = new_token()
        annotator.token_hash = hash_token(token)
        annotator.token_from_env = False
        if printed is None and annotator.role == "admin" and not annotator.disabled:
            printed = token
    s.flush()
    return printed


def _bootstrap_admin(s: Session) -> Annotator | None:
    """The oldest admin-role account named "admin" or "admin-<n>" (the names `_add_admin`
    gives), or None."""
    candidates = s.scalars(
        select(Annotator)
        .where(Annotator.role == "admin", Annotator.name.like(f"{BOOTSTRAP_ADMIN_NAME}%"))
        .order_by(Annotator.id)
    )
    pattern = re.compile(rf"{BOOTSTRAP_ADMIN_NAME}(-[0-9]+)?")
    return next((a for a in candidates if pattern.fullmatch(a.name)), None)


def _add_admin(s: Session, token_hash: str) -> Annotator | None:
    taken = set(s.scalars(select(Annotator.name).where(Annotator.name.like("admin%"))))
    name, n = BOOTSTRAP_ADMIN_NAME, 1
    while name in taken:
        n += 1
        name = f"{BOOTSTRAP_ADMIN_NAME}-{n}"
    annotator = Annotator(name=name, role="admin", token_hash=token_hash)
    try:
        with s.begin_nested():
            s.add(annotator)
    except IntegrityError:
        # another server process bootstrapped at the same moment: its admin stands
        return None
    return annotator
