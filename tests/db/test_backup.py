"""Backups and exports: a copy of a live database gives the same votes."""

import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.orm import Session

from db.__main__ import main
from db.auth import authenticate
from db.backup import backup_sqlite
from db.engine import make_engine, session_factory, upgrade
from db.errors import InvalidValueError, UnsupportedDatabaseError
from db.queries import VOTE_COLUMNS, live_votes_frame, record_vote, study_pairs
from db.synthetic import create_synthetic_study, create_voters

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `python -m db ARGS` in-process on the data dir given; returns (code, stdout, stderr)."""

    def run(data_dir: Path, *args: str) -> tuple[int, str, str]:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("ARENA_DATA_DIR", str(data_dir))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def live_db(tmp_path):
    """A migrated SQLite database in a data dir, with a study and 30 votes."""
    data = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data / 'arena.sqlite3'}")
    upgrade(engine)
    with Session(engine) as s, s.begin():
        study = create_synthetic_study(s, "s1", n_comparisons=3, n_prompts=5)
        (voter, _), (other, _) = create_voters(s, 2)
        pairs = study_pairs(s, study.id)
        pair_ids = [p.id for p in pairs]
        for k, pair in enumerate(pairs):
            record_vote(s, pair.id, voter, "ab"[k % 2], ("left", "right", "tie")[k % 3], T0)
    yield data, engine, other, pair_ids
    engine.dispose()


def test_backup_of_a_live_database_has_identical_votes(live_db, tmp_path):
    """A backup taken while a voter keeps writing is consistent and gives the same frame as
    the source had at some moment (a prefix of the votes)."""
    data, engine, voter, pair_ids = live_db
    sessions = session_factory(engine)
    done = threading.Event()

    def keep_voting():
        for pair_id in pair_ids:
            with sessions.begin() as s:
                record_vote(s, pair_id, voter, "a", "left", T0)
        done.set()

    writer = threading.Thread(target=keep_voting)
    writer.start()
    copy = backup_sqlite(engine, tmp_path / "copy.sqlite3")
    writer.join()

    restored = make_engine(f"sqlite:///{copy}")
    with Session(restored) as s:
        backed_up = live_votes_frame(s)
    with Session(engine) as s:
        now = live_votes_frame(s)
    restored.dispose()
    assert not Path(f"{copy}-wal").exists() and not Path(f"{copy}.partial").exists()
    assert 30 <= len(backed_up) <= len(now) == 60
    pd.testing.assert_frame_equal(backed_up, now.iloc[: len(backed_up)])


def test_backup_refuses_to_overwrite_and_to_copy_onto_itself(live_db, tmp_path):
    """An existing file or the live database itself is never overwritten by accident."""
    data, engine, *_ = live_db
    target = tmp_path / "copy.sqlite3"
    target.write_text("precious")
    with pytest.raises(InvalidValueError, match="already exists"):
        backup_sqlite(engine, target)
    assert target.read_text() == "precious"
    with pytest.raises(InvalidValueError, match="live database itself"):
        backup_sqlite(engine, data / "arena.sqlite3", overwrite=True)


def test_backup_of_postgresql_points_to_pg_dump():
    """On PostgreSQL the backup command refuses and names pg_dump."""
    with pytest.raises(UnsupportedDatabaseError, match="pg_dump"):
        backup_sqlite("postgresql://u:secret@localhost/arena", "x.sqlite3")


def test_cli_backup_and_export_votes_agree(live_db, tmp_path, cli):
    """`python -m db backup` + `export-votes` on the copy give the live database's votes."""
    data, engine, *_ = live_db
    code, _, err = cli(data, "backup", str(tmp_path / "copy.sqlite3"))
    assert code == 0, err
    restored = tmp_path / "restored"
    restored.mkdir()
    (tmp_path / "copy.sqlite3").rename(restored / "arena.sqlite3")
    code, _, err = cli(restored, "export-votes", "--study", "s1", "--out", str(tmp_path / "v.csv"))
    assert code == 0, err
    csv = pd.read_csv(tmp_path / "v.csv")
    with Session(engine) as s:
        frame = live_votes_frame(s)
    assert list(csv.columns) == list(VOTE_COLUMNS)
    assert csv["choice"].tolist() == frame["choice"].tolist()
    assert csv["left_variant"].tolist() == frame["left_variant"].tolist()
    code, out, _ = cli(restored, "export-votes")
    assert code == 0 and out.splitlines()[0] == ",".join(VOTE_COLUMNS)
    assert len(out.splitlines()) == len(frame) + 1
    code, _, err = cli(restored, "export-votes", "--study", "nope")
    assert code == 2 and "no study named 'nope'" in err


def test_cli_create_admin_prints_a_working_login_link(tmp_path, cli):
    """`python -m db create-admin NAME` on a fresh install prints a link whose token logs in."""
    code, out, err = cli(tmp_path, "create-admin", "root", "--base-url", "http://arena.test:8501/")
    assert code == 0, err
    link = out.strip().splitlines()[-1]
    assert link.startswith("http://arena.test:8501/?token=")
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    with Session(engine) as s:
        admin = authenticate(s, link.split("token=", 1)[1])
        assert admin.name == "root" and admin.role == "admin"
    engine.dispose()
    code, _, err = cli(tmp_path, "create-admin", "root")
    assert code == 2 and "already exists" in err


def test_cli_bootstrap_prints_an_admin_link_once_on_a_fresh_install(tmp_path, cli, monkeypatch):
    """`python -m db bootstrap` (run by `make run`) prints a working admin link only when no
    admin exists yet, so the first start ends at a login link and a restart prints none."""
    monkeypatch.delenv("ARENA_ADMIN_TOKEN", raising=False)
    code, out, err = cli(tmp_path, "bootstrap")
    assert code == 0, err
    assert "ARENA ADMIN LOGIN" in out
    link = next(line.strip() for line in out.splitlines() if "?token=" in line)
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    with Session(engine) as s:
        assert authenticate(s, link.split("token=", 1)[1]).role == "admin"
    engine.dispose()
    code, out, _ = cli(tmp_path, "bootstrap")
    assert code == 0 and "?token=" not in out and "create-admin" in out
