"""`python -m evaluation decide`: the exact JSON object, tables, options and malformed files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.decide_cli import main

HEADER = (
    "study,group,comparison,variant_a,variant_b,a_setting,b_setting,prompt,prompt_kind,"
    "checkpoint,seed,annotator,left_variant,choice,shown_at,voted_at,note"
)
# embed_dim: x = 2D (first row's a_setting); "v6 vs v2" holds D on side A, so it is read swapped.
# "v1 vs v5" has 17 wins for v1 (x) against 3, with 2 ties: decided at alpha 0.05.
ROWS = (
    ["s,embed_dim,v1 vs v5,v1,v5,2D,D,cat maid,single,epoch-8,0,ann,v1,left,,,a"] * 17
    + ["s,embed_dim,v1 vs v5,v1,v5,2D,D,cat maid,single,epoch-8,0,ann,v1,right,,,"] * 3
    + ['s,embed_dim,v1 vs v5,v1,v5,2D,D,"cat, maid",composed,epoch-8,0,ann,v5,tie,,,'] * 2
    + ["s,embed_dim,v6 vs v2,v6,v2,D,2D,cat maid,single,epoch-8,0,ann,v6,left,,,"] * 4
    + ["s,embed_dim,v6 vs v2,v6,v2,D,2D,cat maid,single,epoch-10,0,ann,v2,left,,,"] * 4
    + ["s,vicinity,v1 vs v3,v1,v3,2,1,cat maid,single,epoch-8,0,ann,v3,left,,,"]
    + ["s,vicinity,v3 vs v7,v3,v7,1,3,cat maid,single,epoch-8,0,ann,v3,left,,,"]
)
REPO = Path(__file__).resolve().parents[2]
COMPARISON_KEYS = [
    "group",
    "comparison",
    "x_variant",
    "y_variant",
    "x_wins",
    "y_wins",
    "ties",
    "leader",
    "e_value",
    "status",
    "votes_needed",
]
GROUP_KEYS = ["group", "x", "y", "winner", "stability", "fragility", "status"]


def write(tmp_path, lines, name="votes.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_json_is_exactly_the_documented_object(tmp_path, capsys):
    """Keys, key order, types and the hand-worked values of the issue's JSON object."""
    path = write(tmp_path, [HEADER, *ROWS])
    assert main(["--votes", str(path), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["comparisons", "groups"]
    for row in printed["comparisons"]:
        assert list(row) == COMPARISON_KEYS
    for row in printed["groups"]:
        assert list(row) == GROUP_KEYS
    first, second, third, fourth = printed["comparisons"]
    assert first == {
        "group": "embed_dim",
        "comparison": "v1 vs v5",
        "x_variant": "v1",
        "y_variant": "v5",
        "x_wins": 17,
        "y_wins": 3,
        "ties": 2,
        "leader": "x",
        "e_value": pytest.approx(43.80016708),
        "status": "decided",
        "votes_needed": None,
    }
    # v6 vs v2 read swapped: x = v2 (2D); 4 wins each, level, so no leader
    assert (second["x_variant"], second["x_wins"], second["y_wins"]) == ("v2", 4, 4)
    assert second["leader"] is None and second["status"] == "open"
    assert isinstance(second["votes_needed"], int)  # 8 decisive votes: an estimate exists
    # vicinity takes three values: one entry per pair of them
    assert (third["group"], fourth["group"]) == ("vicinity: 2 vs 1", "vicinity: 1 vs 3")
    assert third["leader"] == "y" and third["votes_needed"] is None  # under 6 decisive votes
    groups = {g["group"]: g for g in printed["groups"]}
    assert list(groups) == ["embed_dim", "vicinity: 2 vs 1", "vicinity: 1 vs 3"]
    assert (groups["embed_dim"]["x"], groups["embed_dim"]["y"]) == ("2D", "D")
    assert groups["embed_dim"]["winner"] == "x"
    assert groups["embed_dim"]["status"] == "open"  # one set still open
    # sets 1:0 and points 21:7: levelling the sets still leaves x ahead on points, so 14 x
    # votes must go (the 17:3 set levelled)
    assert groups["embed_dim"]["fragility"] == 14
    assert isinstance(groups["embed_dim"]["stability"], float)
    assert "capped" not in {c["status"] for c in printed["comparisons"]}


def test_alpha_and_delta_options(tmp_path, capsys):
    """--alpha 0.01 (threshold 100) leaves 17 of 20 open."""
    path = write(tmp_path, [HEADER, *ROWS])
    assert main(["--votes", str(path), "--alpha", "0.01", "--delta", "0.05"]) == 0
    first = json.loads(capsys.readouterr().out)["comparisons"][0]
    assert first["status"] == "open" and first["votes_needed"] > 0


def test_python_dash_m_entry_point(tmp_path):
    """`python -m evaluation decide` runs the same code and prints the same JSON."""
    path = write(tmp_path, [HEADER, *ROWS])
    done = subprocess.run(
        [sys.executable, "-m", "evaluation", "decide", "--votes", str(path), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["comparisons"][0]["status"] == "decided"


def test_table_format_shows_the_board(tmp_path, capsys):
    """--format table prints the comparisons with their status and the groups with stability."""
    path = write(tmp_path, [HEADER, *ROWS])
    assert main(["--votes", str(path), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "decided" in out and "v1 vs v5" in out
    assert "stability" in out and "vicinity: 2 vs 1" in out


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
def test_malformed_file_is_refused_as_tally_refuses_it(tmp_path, capsys, lines, expected):
    """Missing column, unknown choice, a left_variant that is neither variant, an empty value:
    exit 1, nothing on stdout, the line and column named."""
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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "xml"], "invalid choice"),
        (["--alpha", "2"], "alpha=2.0"),
        (["--delta", "x"], "not a number"),
    ],
)
def test_bad_arguments_exit_2(capsys, args, expected):
    """An unknown format, an alpha outside (0, 1) or a non-number is a usage error (status 2)."""
    assert main(["--votes", "x.csv", *args]) == 2
    assert expected in capsys.readouterr().err
