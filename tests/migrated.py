"""A new SQLite database at Alembic head for a test, without running the migrations each time.

Running the migrations on an empty SQLite file costs ~0.2 s of CPU (batch migrations copy
tables); hundreds of tests need one. The first call in a process migrates one database for real
(`db.engine.upgrade`), later calls copy that file and run `upgrade` on the copy, a no-op check
that it is at head (~0.01 s). The migrations themselves are tested in tests/db/test_engine.py.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from db.engine import make_engine, upgrade

_template: Path | None = None


def _migrated_template() -> Path:
    """The process's database migrated to head (built on the first call, removed at exit)."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="arena-migrated-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "head.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()  # the last connection closing folds the WAL into the file
        stray = [p.name for p in folder.iterdir() if p != path]
        assert not stray, f"migrated template left {stray} beside it"
        _template = path
    return _template


def migrated_sqlite(path: Path) -> Engine:
    """An engine on a new SQLite file at `path` holding the schema at head and no rows."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: migrated_sqlite makes a new database")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_template(), path)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)  # at head already: checks the revision, changes nothing
    return engine
