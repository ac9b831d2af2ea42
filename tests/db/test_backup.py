"""Backups and exports: a copy of a live database gives the same votes."""

import os
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
    with pytest.raises(InvalidValueError, match="part of the live database"):
        backup_sqlite(engine, data / "arena.sqlite3", overwrite=True)


@pytest.mark.parametrize("companion", ["-wal", "-shm", "-journal"])
def test_backup_force_refuses_the_database_companion_files(live_db, companion):
    """`backup --force` onto the database's -wal/-shm/-journal file is refused by name and
    leaves the file and the votes as they were."""
    data, engine, *_ = live_db
    target = data / f"arena.sqlite3{companion}"
    before = target.read_bytes() if target.exists() else None
    with pytest.raises(InvalidValueError, match=f"arena.sqlite3{companion}.*live database"):
        backup_sqlite(engine, target, overwrite=True)
    assert (target.read_bytes() if target.exists() else None) == before
    with Session(engine) as s:
        assert len(live_votes_frame(s)) == 30


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda path: path.mkdir(), "is a folder"),
        (lambda path: os.mkfifo(path), "not a regular file"),
    ],
    ids=["directory", "fifo"],
)
def test_backup_force_refuses_directories_and_special_files_leaving_nothing(
    live_db, tmp_path, make, pattern
):
    """`backup --force` onto a folder or a FIFO/device is refused naming the path, and no
    `.partial` file is left behind."""
    _, engine, *_ = live_db
    target = tmp_path / "target"
    make(target)
    with pytest.raises(InvalidValueError, match=f"{target}.*{pattern}"):
        backup_sqlite(engine, target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "target"]


def test_backup_force_refuses_a_device_node(live_db):
    """`backup --force /dev/null` is refused: a device is not a backup file."""
    _, engine, *_ = live_db
    with pytest.raises(InvalidValueError, match="/dev/null.*not a regular file"):
        backup_sqlite(engine, "/dev/null", overwrite=True)


def test_backup_refuses_a_symlink_to_the_database(live_db, tmp_path):
    """A link that leads to the live database is refused like the database itself."""
    data, engine, *_ = live_db
    link = tmp_path / "innocent.sqlite3"
    link.symlink_to(data / "arena.sqlite3")
    with pytest.raises(InvalidValueError, match="part of the live database"):
        backup_sqlite(engine, link, overwrite=True)


def test_backup_of_postgresql_points_to_pg_dump():
    """On PostgreSQL the backup command refuses and names pg_dump."""
    with pytest.raises(UnsupportedDatabaseError, match="pg_dump"):
        backup_sqlite("postgresql://u:secret@localhost/arena", "x.sqlite3")


def test_cli_backup_then_export_gives_the_live_votes(live_db, tmp_path, cli):
    """`python -m db backup` + `python -m evaluation export` on the copy give the live
    database's votes."""
    from evaluation.__main__ import main as evaluation_main

    data, engine, *_ = live_db
    code, _, err = cli(data, "backup", str(tmp_path / "copy.sqlite3"))
    assert code == 0, err
    copy = f"sqlite:///{tmp_path / 'copy.sqlite3'}"
    out = tmp_path / "v.csv"
    args = ["export", "--study", "s1", "--format", "csv", "--out", str(out)]
    assert evaluation_main([*args, "--database-url", copy]) == 0
    csv = pd.read_csv(out)
    with Session(engine) as s:
        frame = live_votes_frame(s)
    assert list(csv.columns) == list(VOTE_COLUMNS)
    assert csv["choice"].tolist() == frame["choice"].tolist()
    assert csv["left_variant"].tolist() == frame["left_variant"].tolist()


def test_db_export_votes_points_to_the_one_export_command(live_db, cli):
    """`python -m db export-votes` writes nothing and names `python -m evaluation export`."""
    data, *_ = live_db
    code, out, err = cli(data, "export-votes", "--study", "s1", "--out", "x.csv")
    assert code == 2 and out == ""
    assert "python -m evaluation export --study NAME" in err


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


def test_cli_bootstrap_after_the_admin_secret_is_unset_prints_a_new_link(
    tmp_path, cli, monkeypatch
):
    """`python -m db bootstrap` with ARENA_ADMIN_TOKEN set prints no link; after the variable is
    unset it prints a new admin link and the old secret no longer signs in."""
    secret = "cli-secret-" + "h" * 24
    monkeypatch.setenv("ARENA_ADMIN_TOKEN", secret)
    code, out, err = cli(tmp_path, "bootstrap")
    assert code == 0 and "?token=" not in out, err
    monkeypatch.delenv("ARENA_ADMIN_TOKEN")
    code, out, err = cli(tmp_path, "bootstrap")
    assert code == 0 and "ARENA ADMIN LOGIN" in out, err
    link = next(line.strip() for line in out.splitlines() if "?token=" in line)
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    with Session(engine) as s:
        assert authenticate(s, secret) is None
        assert authenticate(s, link.split("token=", 1)[1]).name == "admin"
    engine.dispose()


def test_cli_backup_force_onto_a_companion_or_folder_exits_2_naming_the_fix(live_db, cli):
    """`python -m db backup --force` onto the -wal file or a folder exits 2 with one line naming
    the path and the fix; nothing is written."""
    data, *_ = live_db
    wal = data / "arena.sqlite3-wal"
    code, out, err = cli(data, "backup", str(wal), "--force")
    assert code == 2 and out == ""
    assert err.strip() == (
        f"error: backup path {wal}: this is {wal}, part of the live database; writing over it "
        "would destroy the votes. Choose another file name"
    )
    code, _, err = cli(data, "backup", str(data), "--force")
    assert code == 2 and err.strip() == (
        f"error: backup path {data}: is a folder; give a file name inside it, e.g. "
        f"{data / 'arena-backup.sqlite3'}"
    )
    assert not list(data.parent.glob("*.partial")) and not list(data.glob("*.partial"))
