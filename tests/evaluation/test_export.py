"""Vote files: interchange CSV/Parquet round trips, FastChat battles, clear errors for bad files."""

import json

import pandas as pd
import pytest

from evaluation.export import (
    FASTCHAT_COLUMNS,
    read_votes,
    read_votes_csv,
    to_fastchat,
    write_fastchat_json,
    write_votes_csv,
    write_votes_parquet,
)
from evaluation.tally import VOTE_COLUMNS, VoteDataError, tally_votes


def vote(choice, left, annotator="ann-1", seed=0, voted_at="2026-11-01T10:00:05+00:00"):
    return {
        "study": "s",
        "group": "vicinity",
        "comparison": "v1 vs v3",
        "variant_a": "v1",
        "variant_b": "v3",
        "a_setting": "2.0",
        "b_setting": "1",
        "prompt": "cat, maid",
        "prompt_kind": "composed",
        "checkpoint": "epoch-8",
        "seed": seed,
        "annotator": annotator,
        "left_variant": left,
        "choice": choice,
        "shown_at": "2026-11-01T10:00:00+00:00",
        "voted_at": voted_at,
    }


@pytest.fixture
def votes():
    return pd.DataFrame(
        [
            vote("left", "v1", seed=1),
            vote("left", "v3", seed=2),
            vote("right", "v3", "ann-2", seed=3),
            vote("tie", "v1", "ann-2", seed=4, voted_at=""),
        ]
    )


@pytest.mark.parametrize(
    ("writer", "name"), [(write_votes_csv, "votes.csv"), (write_votes_parquet, "votes.parquet")]
)
def test_interchange_files_round_trip(votes, tmp_path, writer, name):
    """Written then read back, the votes hold the same values and tally the same."""
    path = writer(votes.assign(extra="dropped"), tmp_path / name)
    back = read_votes(path)
    assert list(back.columns[: len(VOTE_COLUMNS)]) == list(VOTE_COLUMNS)
    for column in VOTE_COLUMNS:
        if column != "voted_at":
            assert back[column].astype(str).tolist() == votes[column].astype(str).tolist(), column
    assert back["a_setting"].astype(str).tolist()[0] == "2.0"  # settings stay text
    assert tally_votes(back).to_dict() == tally_votes(votes).to_dict()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_csv_with_extra_columns_is_read(votes, tmp_path):
    """Columns beyond the interchange format are ignored."""
    path = tmp_path / "votes.csv"
    votes.assign(qc_kind="", note="x").to_csv(path, index=False)
    assert len(read_votes_csv(path)) == 4


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "empty"),
        (None, "no such file"),
        ("\u00e9".encode("latin-1") * 3 + b",x\n", "not UTF-8"),
    ],
)
def test_unreadable_csv_raises_a_clear_error(tmp_path, content, pattern):
    """Empty, missing or non-UTF-8 files raise VoteDataError naming the file."""
    path = tmp_path / "votes.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VoteDataError, match=pattern) as info:
        read_votes_csv(path)
    assert str(path) in str(info.value)


def test_bad_csv_value_names_the_line_and_column(votes, tmp_path):
    """The third vote (line 4) with choice 'both' is reported by line and column."""
    path = tmp_path / "votes.csv"
    votes.assign(choice=["left", "left", "both", "tie"]).to_csv(path, index=False)
    with pytest.raises(VoteDataError, match=r"line 4 \(data row 3\), column 'choice'"):
        read_votes(path)


def test_unknown_suffix_is_refused(tmp_path):
    """Only .csv and .parquet are vote files."""
    with pytest.raises(VoteDataError, match="unknown suffix '.xlsx'"):
        read_votes(tmp_path / "votes.xlsx")


def test_fastchat_battles_put_the_left_image_in_model_a(votes):
    """model_a is the variant shown on the left; winner follows the click; tstamp is Unix time."""
    battles = to_fastchat(votes)
    assert list(battles.columns) == list(FASTCHAT_COLUMNS)
    assert battles[["model_a", "model_b", "winner", "judge"]].values.tolist() == [
        ["v1", "v3", "model_a", "ann-1"],
        ["v3", "v1", "model_a", "ann-1"],
        ["v3", "v1", "model_b", "ann-2"],
        ["v1", "v3", "tie", "ann-2"],
    ]
    assert battles["tstamp"].iloc[0] == pd.Timestamp("2026-11-01T10:00:05Z").timestamp()
    assert pd.isna(battles["tstamp"].iloc[3])


@pytest.mark.parametrize("lines", [False, True])
def test_fastchat_json_and_json_lines(votes, tmp_path, lines):
    """The battles file parses as a JSON array, or one JSON object per line."""
    path = write_fastchat_json(votes, tmp_path / "battles.json", lines=lines)
    text = path.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()] if lines else json.loads(text)
    assert len(records) == 4
    assert records[2] == {
        "model_a": "v3",
        "model_b": "v1",
        "winner": "model_b",
        "judge": "ann-2",
        "tstamp": pytest.approx(pd.Timestamp("2026-11-01T10:00:05Z").timestamp()),
    }


def test_database_export_and_tally_agree_on_the_interchange_columns():
    """db/ writes and evaluation/ reads the same vote interchange columns, in the same order
    (each package keeps its own copy so the statistics stay free of database imports)."""
    from db.queries import VOTE_COLUMNS as DB_COLUMNS

    assert DB_COLUMNS == VOTE_COLUMNS


FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "'=kept"]


def test_csv_neutralises_cells_a_spreadsheet_would_run(votes, tmp_path):
    """Cells starting with = + - @ tab or CR get a leading ' in the CSV, so a spreadsheet
    shows them as text; the tally reader gives back the original values."""
    votes = votes.assign(prompt=FORMULAS[:4], annotator=FORMULAS[4:] + ["ann"], a_setting="-1")
    path = write_votes_csv(votes, tmp_path / "votes.csv")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert raw["prompt"].tolist() == ["'" + cell for cell in FORMULAS[:4]]
    assert raw["annotator"].tolist() == ["'\tcmd", "'\rcmd", "''=kept", "ann"]
    assert raw["a_setting"].tolist() == ["'-1"] * 4
    back = read_votes(path)
    assert back["prompt"].astype(str).tolist() == FORMULAS[:4]
    assert back["annotator"].astype(str).tolist() == FORMULAS[4:] + ["ann"]
    assert back["a_setting"].astype(str).tolist() == ["-1"] * 4
    assert tally_votes(back).to_dict() == tally_votes(votes).to_dict()


def test_raw_csv_keeps_formula_cells_unchanged(votes, tmp_path):
    """`raw=True` (the export command's --raw-csv) writes the cells exactly as stored."""
    votes = votes.assign(prompt=FORMULAS[:4])
    path = write_votes_csv(votes, tmp_path / "votes.csv", raw=True)
    assert pd.read_csv(path, dtype=str)["prompt"].tolist() == FORMULAS[:4]
    assert read_votes(path)["prompt"].astype(str).tolist() == FORMULAS[:4]


def test_writers_never_replace_an_existing_file_unless_asked(votes, tmp_path):
    """A vote file is written as a new file: an existing one is kept (FileExistsError naming
    it) unless overwrite=True; no temporary file is left either way."""
    path = tmp_path / "votes.csv"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match=f"{path}.*already exists.*--force"):
        write_votes_csv(votes, path)
    assert path.read_text() == "precious"
    write_votes_csv(votes, path, overwrite=True)
    assert len(read_votes(path)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["votes.csv"]
