"""Consistent copies of a live SQLite database, and vote exports in the interchange format."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from db.engine import SQLITE_BUSY_TIMEOUT_MS, make_engine
from db.errors import InvalidValueError, NotFoundError, UnsupportedDatabaseError


def backup_sqlite(source: Engine | str | URL, dest: str | Path, overwrite: bool = False) -> Path:
    """Copy the SQLite database behind `source` to `dest` with SQLite's online backup API.

    The copy is one consistent snapshot even while voters keep writing; it is written to
    `<dest>.partial`, checked with `PRAGMA integrity_check`, then renamed into place, and is a
    self-contained file (rollback journal, no -wal beside it). Restore by copying it over the
    database file while the app is stopped.
    """
    # 1. Check the source and the destination
    engine = source if isinstance(source, Engine) else make_engine(source)
    url = engine.url
    if engine is not source:
        engine.dispose()
    if url.get_backend_name() != "sqlite":
        raise UnsupportedDatabaseError(
            f"python -m db backup copies SQLite databases only; this database is "
            f"{url.get_backend_name()} ({url.render_as_string(hide_password=True)}): use "
            'pg_dump, e.g. pg_dump --format=custom --file=arena.dump "$DATABASE_URL"'
        )
    if not url.database or url.database == ":memory:":
        raise UnsupportedDatabaseError("an in-memory SQLite database has no file to back up")
    source_file = Path(url.database).resolve()
    if not source_file.is_file():
        raise NotFoundError(f"database file {source_file} does not exist; nothing to back up")
    dest = Path(dest).expanduser().resolve()
    if dest == source_file:
        raise InvalidValueError(f"backup path {dest} is the live database itself; pick another")
    if dest.exists() and not overwrite:
        raise InvalidValueError(
            f"backup path {dest} already exists; remove it or choose a new name (--force "
            "overwrites)"
        )
    if not dest.parent.is_dir():
        raise NotFoundError(f"folder {dest.parent} for the backup does not exist; create it")

    # 2. Copy in one step (a single read transaction = a consistent snapshot)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source_file, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"the backup of {source_file} failed its integrity check: {check}")
    os.replace(partial, dest)
    return dest


def write_votes(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write a vote interchange frame to `.csv` or `.parquet` (chosen by the suffix)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        raise InvalidValueError(f"--out {out}: expected a file name ending in .csv or .parquet")
    return out
