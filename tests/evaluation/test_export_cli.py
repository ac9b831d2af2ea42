"""`python -m evaluation export`: a study's live votes from the database to a file."""

import json
from datetime import UTC, datetime

import pytest

from db.engine import make_engine, session_factory, upgrade
from db.queries import record_vote, study_pairs, undo_last_vote
from db.synthetic import create_synthetic_study, create_voters
from evaluation.__main__ import main
from evaluation.export import read_votes


@pytest.fixture
def database(tmp_path):
    """A SQLite study with 3 live votes (a 4th undone) and a second study with one vote."""
    url = f"sqlite:///{tmp_path / 'arena.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study = create_synthetic_study(s, "s", n_comparisons=2, n_prompts=2)
        other = create_synthetic_study(s, "other", n_comparisons=1, n_prompts=1)
        (alice, _), (bob, _) = create_voters(s, 2)
        pairs = study_pairs(s, study.id)
        now = datetime.now(UTC)
        record_vote(s, pairs[0].id, alice, "a", "left", now)
        record_vote(s, pairs[1].id, alice, "b", "tie", now)
        record_vote(s, pairs[0].id, bob, "b", "right", now)
        record_vote(s, pairs[2].id, bob, "a", "left", now)
        undo_last_vote(s, bob, study.id)
        record_vote(s, study_pairs(s, other.id)[0].id, bob, "a", "left", now)
    engine.dispose()
    return url


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_exports_the_live_votes_of_one_study(database, tmp_path, fmt):
    """The file holds exactly the study's live votes, readable by the tally reader."""
    out = tmp_path / f"votes.{fmt}"
    args = ["export", "--study", "s", "--format", fmt, "--out", str(out)]
    assert main([*args, "--database-url", database]) == 0
    votes = read_votes(out)
    assert len(votes) == 3 and set(votes["study"]) == {"s"}
    assert sorted(votes["choice"].astype(str)) == ["left", "right", "tie"]


def test_exports_fastchat_battles(database, tmp_path):
    """FastChat layout: model_a is the left variant, winner model_a/model_b/tie, judge named."""
    out = tmp_path / "battles.json"
    args = ["export", "--study", "s", "--format", "fastchat", "--out", str(out)]
    assert main([*args, "--database-url", database]) == 0
    battles = json.loads(out.read_text())
    assert sorted(b["winner"] for b in battles) == ["model_a", "model_b", "tie"]
    first = next(b for b in battles if b["judge"] == "voter-0" and b["winner"] == "model_a")
    assert first["model_a"] == "s-v0"  # alice saw side a (the base) on the left and chose left


def test_unknown_study_exits_2_naming_it(database, tmp_path, capsys):
    """An unknown study name exits 2 with a message listing the existing studies."""
    args = ["export", "--study", "nope", "--format", "csv", "--out", str(tmp_path / "x.csv")]
    assert main([*args, "--database-url", database]) == 2
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["arena.sqlite3", "arena.sqlite3-wal", "arena.sqlite3-shm", "arena.sqlite3-journal"]
)
@pytest.mark.parametrize("force", [False, True])
def test_export_never_writes_over_the_database_or_its_companions(
    database, tmp_path, capsys, name, force
):
    """--out naming the live database or its -wal/-shm/-journal file exits 2 naming it, even
    with --force, and the database keeps its votes."""
    target = tmp_path / name
    before = target.read_bytes() if target.exists() else None
    args = ["export", "--study", "s", "--format", "csv", "--out", str(target)]
    assert main([*args, *(["--force"] if force else []), "--database-url", database]) == 2
    err = capsys.readouterr().err
    assert f"--out {target}" in err and "live database" in err and "another file name" in err
    assert (target.read_bytes() if target.exists() else None) == before
    out = tmp_path / "check.csv"
    assert (
        main(
            [
                "export",
                "--study",
                "s",
                "--format",
                "csv",
                "--out",
                str(out),
                "--database-url",
                database,
            ]
        )
        == 0
    )
    assert len(read_votes(out)) == 3


@pytest.mark.parametrize("fmt", ["csv", "parquet", "fastchat"])
def test_export_refuses_an_existing_file_unless_forced(database, tmp_path, capsys, fmt):
    """An existing --out file is kept (exit 2, message names it and --force); --force replaces
    it atomically."""
    out = tmp_path / "votes.out"
    out.write_text("precious")
    args = [
        "export",
        "--study",
        "s",
        "--format",
        fmt,
        "--out",
        str(out),
        "--database-url",
        database,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "already exists" in err and "--force" in err
    assert out.read_text() == "precious"
    assert main([*args, "--force"]) == 0
    assert out.read_bytes() != b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arena.sqlite3", "votes.out"]


def test_export_refuses_a_folder(database, tmp_path, capsys):
    """--out naming a folder exits 2 and suggests a file name inside it."""
    args = ["export", "--study", "s", "--format", "csv", "--out", str(tmp_path), "--force"]
    assert main([*args, "--database-url", database]) == 2
    assert "is a folder; give a file name inside it" in capsys.readouterr().err


def test_export_csv_neutralises_formulas_and_raw_csv_keeps_them(database, tmp_path):
    """A prompt starting with = is exported as '=... (read back as =...); --raw-csv keeps it."""
    from sqlalchemy import update

    from db.models import Prompt

    engine = make_engine(database)
    with session_factory(engine).begin() as s:
        s.execute(update(Prompt).values(text='=HYPERLINK("http://evil") ' + Prompt.text))
    engine.dispose()
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    base = ["export", "--study", "s", "--format", "csv", "--database-url", database]
    assert main([*base, "--out", str(safe)]) == 0
    assert main([*base, "--out", str(raw), "--raw-csv"]) == 0
    assert "'=HYPERLINK" in safe.read_text() and "'=HYPERLINK" not in raw.read_text()
    assert all(p.startswith("=HYPERLINK") for p in read_votes(safe)["prompt"].astype(str))


def test_tally_and_decide_read_a_neutralised_export_like_a_raw_one(database, tmp_path, capsys):
    """`python -m evaluation tally` and `decide` give the same output for the neutralised CSV
    as for the --raw-csv one (the leading ' is removed on reading)."""
    from sqlalchemy import update

    from db.models import Prompt

    engine = make_engine(database)
    with session_factory(engine).begin() as s:
        s.execute(update(Prompt).values(text="-" + Prompt.text))
    engine.dispose()
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    base = ["export", "--study", "s", "--format", "csv", "--database-url", database]
    assert main([*base, "--out", str(safe)]) == 0
    assert main([*base, "--out", str(raw), "--raw-csv"]) == 0
    assert safe.read_bytes() != raw.read_bytes()
    capsys.readouterr()
    for command in (["tally", "--format", "json"], ["decide", "--format", "json"]):
        outputs = []
        for path in (safe, raw):
            assert main([command[0], "--votes", str(path), *command[1:]]) == 0
            outputs.append(capsys.readouterr().out.replace(str(path), "FILE"))
        assert outputs[0] == outputs[1], command[0]


def test_export_leaves_out_excluded_annotators_and_says_how_many(database, tmp_path, capsys):
    """An annotator excluded from the tallies is left out of the file, and the count is printed."""
    from sqlalchemy import select

    from db.models import Annotator
    from db.queries import study_by_name
    from db.queries.exclusions import exclude

    engine = make_engine(database)
    with session_factory(engine).begin() as s:
        bob = s.scalar(select(Annotator.id).where(Annotator.name == "voter-1"))
        exclude(s, study_by_name(s, "s").id, bob, None, "clicked at random")
    engine.dispose()

    out = tmp_path / "votes.csv"
    args = ["export", "--study", "s", "--format", "csv", "--out", str(out)]
    assert main([*args, "--database-url", database]) == 0
    assert set(read_votes(out)["annotator"]) == {"voter-0"}
    assert "left out 1 votes of excluded annotators" in capsys.readouterr().out
