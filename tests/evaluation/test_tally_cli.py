"""`python -m evaluation tally`: the exact JSON other tools read, tables, and malformed files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.tally_cli import main

HEADER = (
    "study,group,comparison,variant_a,variant_b,a_setting,b_setting,prompt,prompt_kind,"
    "checkpoint,seed,annotator,left_variant,choice,shown_at,voted_at,note"
)
# embed_dim: x = 2D (first row's a_setting); "v6 vs v2" holds D on side A, so it is read swapped.
ROWS = [
    "s,embed_dim,v1 vs v5,v1,v5,2D,D,cat maid,single,epoch-8,0,ann,v1,left,,,a",
    "s,embed_dim,v1 vs v5,v1,v5,2D,D,cat maid,single,epoch-10,0,ann,v5,left,,,",
    's,embed_dim,v1 vs v5,v1,v5,2D,D,"cat, maid",composed,epoch-8,0,ann,v5,right,,,',
    "s,embed_dim,v6 vs v2,v6,v2,D,2D,cat maid,single,epoch-8,0,ann,v6,tie,,,",
    "s,embed_dim,v6 vs v2,v6,v2,D,2D,cat maid,single,epoch-10,0,ann,v2,left,,,",
    "s,vicinity,v1 vs v3,v1,v3,2,1,cat maid,single,epoch-8,0,ann,v3,left,,,",
]
EXPECTED = {
    "groups": [
        {
            "group": "embed_dim",
            "x": "2D",
            "y": "D",
            "sets": [
                {
                    "comparison": "v1 vs v5",
                    "x_variant": "v1",
                    "y_variant": "v5",
                    "x_wins": 2,
                    "y_wins": 1,
                    "ties": 0,
                    "winner": "x",
                },
                {
                    "comparison": "v6 vs v2",
                    "x_variant": "v2",
                    "y_variant": "v6",
                    "x_wins": 1,
                    "y_wins": 0,
                    "ties": 1,
                    "winner": "x",
                },
            ],
            "x_sets": 2,
            "y_sets": 0,
            "x_points": 3,
            "y_points": 1,
            "winner": "x",
            "decided_by": "sets",
        },
        {
            "group": "vicinity",
            "x": "2",
            "y": "1",
            "sets": [
                {
                    "comparison": "v1 vs v3",
                    "x_variant": "v1",
                    "y_variant": "v3",
                    "x_wins": 0,
                    "y_wins": 1,
                    "ties": 0,
                    "winner": "y",
                }
            ],
            "x_sets": 0,
            "y_sets": 1,
            "x_points": 0,
            "y_points": 1,
            "winner": "y",
            "decided_by": "sets",
        },
    ]
}
REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, lines, name="votes.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_json_output_is_exactly_the_documented_object(tmp_path, capsys):
    """A hand-worked file prints exactly the issue's JSON object, keys in order."""
    path = write(tmp_path, [HEADER, *ROWS])
    assert main(["--votes", str(path), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == EXPECTED
    assert json.dumps(printed) == json.dumps(EXPECTED)  # same key order too


def test_python_dash_m_entry_point(tmp_path):
    """`python -m evaluation tally` runs the same code and prints the same JSON."""
    path = write(tmp_path, [HEADER, *ROWS])
    done = subprocess.run(
        [sys.executable, "-m", "evaluation", "tally", "--votes", str(path), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXPECTED


def test_table_format_shows_the_tallies(tmp_path, capsys):
    """--format table prints each group with its sets, totals and verdict."""
    path = write(tmp_path, [HEADER, *ROWS])
    assert main(["--votes", str(path), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "embed_dim: x = 2D, y = D" in out
    assert "sets won   x 2 : y 0" in out
    assert "points     x 3 : y 1" in out
    assert "winner: y (1), decided by sets" in out


def test_majority_mode_option(tmp_path, capsys):
    """--mode majority counts each item once (here every item has one vote: same numbers)."""
    path = write(tmp_path, [HEADER, *ROWS])
    assert main(["--votes", str(path), "--mode", "majority"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED


def _replace(row, column, value):
    fields = HEADER.split(",")
    parts = row.replace('"cat, maid"', "CATMAID").split(",")
    parts[fields.index(column)] = value
    return ",".join(parts).replace("CATMAID", '"cat, maid"')


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([HEADER.replace("choice,", "pick,"), *ROWS], ["line 1", "'choice'", "missing"]),
        (
            [HEADER, *ROWS[:2], _replace(ROWS[2], "choice", "both"), *ROWS[3:]],
            ["line 4", "'choice'", "'both'"],
        ),
        (
            [HEADER, _replace(ROWS[0], "left_variant", "v9"), *ROWS[1:]],
            ["line 2", "'left_variant'", "'v9'"],
        ),
        (
            [HEADER, *ROWS[:4], _replace(ROWS[4], "annotator", ""), *ROWS[5:]],
            ["line 6", "'annotator'"],
        ),
    ],
)
def test_malformed_file_exits_non_zero_naming_line_and_column(tmp_path, capsys, lines, expected):
    """Missing column, unknown choice, a left_variant that is neither variant, an empty value."""
    path = write(tmp_path, lines)
    assert main(["--votes", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    for text in expected:
        assert text in captured.err


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "no such file"), (b"", "empty"), (b"study,gr\xfcppe\n", "not UTF-8")],
)
def test_unreadable_file_exits_non_zero(tmp_path, capsys, content, expected):
    """A missing, empty or non-UTF-8 file exits 1 with a message naming the file."""
    path = tmp_path / "votes.csv"
    if content is not None:
        path.write_bytes(content)
    assert main(["--votes", str(path)]) == 1
    err = capsys.readouterr().err
    assert expected in err and str(path) in err


def test_bad_arguments_exit_2(capsys):
    """An unknown --format is a usage error (status 2), like every argparse CLI."""
    assert main(["--votes", "x.csv", "--format", "xml"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_votes_exported_from_the_database_tally(tmp_path, capsys):
    """Votes recorded through db.queries and exported as the interchange CSV tally as cast."""
    from datetime import UTC, datetime

    from db.engine import make_engine, session_factory, upgrade
    from db.queries import live_votes_frame, record_vote, study_pairs
    from db.synthetic import create_synthetic_study, create_voters

    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study = create_synthetic_study(s, "t", n_comparisons=1, n_prompts=2, labels=("epoch-8",))
        ((voter, _token),) = create_voters(s, 1)
        pairs = study_pairs(s, study.id, include_qc=False)
        # Pair 0: A shown left and clicked; pair 1: A shown right, left (= B) clicked.
        record_vote(s, pairs[0].id, voter, "a", "left", datetime.now(UTC), study_id=study.id)
        record_vote(s, pairs[1].id, voter, "b", "left", datetime.now(UTC), study_id=study.id)
        frame = live_votes_frame(s, study.id)
    engine.dispose()
    path = tmp_path / "votes.csv"
    frame.to_csv(path, index=False)
    assert main(["--votes", str(path)]) == 0
    (group,) = json.loads(capsys.readouterr().out)["groups"]
    assert (group["group"], group["x"], group["y"]) == ("h1", "0", "1")
    assert group["sets"] == [
        {
            "comparison": "t-v0 vs t-v1",
            "x_variant": "t-v0",
            "y_variant": "t-v1",
            "x_wins": 1,
            "y_wins": 1,
            "ties": 0,
            "winner": "draw",
        }
    ]
