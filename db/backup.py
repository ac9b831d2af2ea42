"""Consistent copies of a live SQLite database, and where a command may write a file.

`check_destination` is the one rule for every file a command writes at a path the user typed
(backups, vote exports): never the database or its companion files, never a directory or a
device, never an existing file unless told (`--force`).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from db.engine import SQLITE_BUSY_TIMEOUT_MS, make_engine
from db.errors import InvalidValueError, NotFoundError, UnsupportedDatabaseError

# Files SQLite keeps beside a database: writing over any of them corrupts the live database.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def database_files(url: Engine | str | URL | None) -> tuple[Path, ...]:
    """The SQLite file behind `url` and its `-wal`, `-shm`, `-journal` companions (resolved);
    () for PostgreSQL or an in-memory database."""
    if url is None:
        return ()
    if isinstance(url, Engine):
        url = url.url
    elif isinstance(url, str):
        from sqlalchemy.engine import make_url

        url = make_url(url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return ()
    main = Path(url.database).expanduser().resolve()
    return (main, *(main.with_name(main.name + suffix) for suffix in SQLITE_COMPANIONS))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_destination(
    dest: str | Path,
    *,
    overwrite: bool = False,
    protected: tuple[Path, ...] = (),
    what: str = "--out",
    example: str = "votes.csv",
) -> Path:
    """The resolved path a command may write `dest` to, or InvalidValueError / NotFoundError
    naming the path and the fix.

    Refused even with `overwrite`: a `protected` file (the live database and its companions,
    also through a symlink or a hard link), a directory, a device node, FIFO or socket.
    Refused without `overwrite`: any existing file.
    """
    dest = Path(dest).expanduser()
    resolved = dest.resolve()
    for guarded in protected:
        if _same_file(resolved, guarded):
            raise InvalidValueError(
                f"{what} {dest}: this is {guarded}, part of the live database; writing over "
                "it would destroy the votes. Choose another file name"
            )
    if resolved.exists():
        mode = resolved.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InvalidValueError(
                f"{what} {dest}: is a folder; give a file name inside it, e.g. {dest / example}"
            )
        if not stat.S_ISREG(mode):
            raise InvalidValueError(
                f"{what} {dest}: is not a regular file (a device, FIFO or socket); choose a "
                "file name"
            )
        if not overwrite:
            raise InvalidValueError(
                f"{what} {dest}: the file already exists; choose a new name, or pass --force "
                "to replace it"
            )
    if not resolved.parent.is_dir():
        raise NotFoundError(f"{what} {dest}: folder {resolved.parent} does not exist; create it")
    return resolved


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
    dest = check_destination(
        dest,
        overwrite=overwrite,
        protected=database_files(url),
        what="backup path",
        example="arena-backup.sqlite3",
    )

    # 2. Copy in one step (a single read transaction = a consistent snapshot)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
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
            raise RuntimeError(f"the backup of {source_file} failed its integrity check: {check}")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)  # nothing half-written is left, whatever failed
    return dest
