"""Reading and writing votes: the interchange format (CSV, Parquet) and FastChat's battle layout.

The only module of the tally/statistics family that touches files. Readers check the file with
`tally.prepare_votes` and raise `VoteDataError` naming the file, the line (CSV) or row, and the
column; writers write to a temporary name and rename, so a file is never half-written, and never
replace an existing file unless asked (`overwrite=True`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.tally import VOTE_COLUMNS, VoteDataError, ensure_prepared, prepare_votes

FASTCHAT_COLUMNS = ("model_a", "model_b", "winner", "judge", "tstamp")
VOTE_SUFFIXES = (".csv", ".parquet")

# CSV injection: a spreadsheet runs a cell starting with one of these as a formula. Such cells
# (and cells already starting with ' before one of them, so the rule is reversible) get one ' in
# front; `read_votes_csv` removes it again. Parquet is not opened by spreadsheets: kept raw.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISE = re.compile(r"^'*[=+\-@\t\r]")
_RESTORE = re.compile(r"^'(?='*[=+\-@\t\r])")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells starting with = + - @ tab or CR (after any number of
    ') carry one more ' in front, so a spreadsheet shows them as text; numbers are kept."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = values.astype("string")
        hit = text.str.match(_NEUTRALISE).fillna(False).astype(bool)
        if hit.any():
            out[column] = text.where(~hit, "'" + text).astype(object).where(values.notna(), None)
    return out


def restore_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo `neutralise_formulas` on a frame read from CSV as text (str cells)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].str.replace(_RESTORE, "", regex=True)
    return out


def _atomic_write(path: Path, write, overwrite: bool) -> Path:
    """Write through a temporary sibling, then move it into place in one step. Without
    `overwrite` the move is a hard link, which fails if the name exists (no check-then-write
    race: a file that appears meanwhile is never replaced)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise
                except OSError:  # a file system without hard links: claim the name, then move
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    os.replace(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    f"{path}: the file already exists; choose a new name, or pass --force to "
                    "replace it"
                ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _interchange(votes: pd.DataFrame) -> pd.DataFrame:
    """Just the 16 interchange columns, in order (derived and extra columns dropped)."""
    missing = [c for c in VOTE_COLUMNS if c not in votes.columns]
    if missing:
        raise VoteDataError(
            f"the vote frame lacks column(s) {', '.join(missing)}; expected {', '.join(VOTE_COLUMNS)}.",
            column=missing[0],
        )
    return votes.loc[:, list(VOTE_COLUMNS)]


def write_votes_csv(
    votes: pd.DataFrame, path: str | Path, overwrite: bool = False, raw: bool = False
) -> Path:
    """Write the interchange CSV (UTF-8, header, one row per live vote, CRLF line ends as in
    RFC 4180, so a cell holding a lone CR is quoted too).

    Cells a spreadsheet would run as a formula are prefixed with ' (`neutralise_formulas`);
    `raw=True` writes them unchanged. `read_votes_csv` reads either back to the same values.
    """
    frame = _interchange(votes)
    if not raw:
        frame = neutralise_formulas(frame)
    return _atomic_write(
        path,
        lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\r\n"),
        overwrite,
    )


def write_votes_parquet(votes: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write the interchange Parquet file (text columns stay categorical)."""
    frame = _interchange(votes)
    return _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False), overwrite)


def read_votes_csv(path: str | Path) -> pd.DataFrame:
    """Read and check an interchange CSV; returns the prepared frame (see `prepare_votes`).

    Every field is read as text (a setting '2.0' stays '2.0'); extra columns are ignored. A
    cell like '=x (neutralised by `write_votes_csv`) is read as =x: the one leading ' before
    = + - @ tab or CR is removed, so a raw CSV holding such a cell literally loses that '.
    """
    path = Path(path)
    if not path.is_file():
        raise VoteDataError(
            f"{path}: no such file; expected a vote interchange CSV. Check the path."
        )
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,  # an empty field is '', caught as a missing value below
            encoding="utf-8",
            encoding_errors="strict",
        )
    except UnicodeDecodeError as exc:
        # pandas decodes in chunks: exc.start counts from its chunk, so find the byte again
        data = path.read_bytes()
        try:
            data.decode("utf-8")
            start, byte = exc.start, exc.object[exc.start : exc.start + 1]
        except UnicodeDecodeError as whole:
            start, byte = whole.start, data[whole.start : whole.start + 1]
        raise VoteDataError(
            f"{path}: not UTF-8 text (byte {byte!r} at offset {start}); expected a UTF-8 CSV. "
            "Re-save the file as UTF-8."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise VoteDataError(
            f"{path}: the file is empty; expected a header line with the columns "
            f"{', '.join(VOTE_COLUMNS)} and one line per vote."
        ) from exc
    except pd.errors.ParserError as exc:
        raise VoteDataError(f"{path}: not a well-formed CSV ({exc}). Fix that line.") from exc
    return prepare_votes(restore_formulas(raw), source=str(path))


def read_votes_parquet(path: str | Path) -> pd.DataFrame:
    """Read and check an interchange Parquet file; returns the prepared frame."""
    path = Path(path)
    if not path.is_file():
        raise VoteDataError(f"{path}: no such file; expected a vote interchange Parquet file.")
    try:
        raw = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise VoteDataError(f"{path}: not a readable Parquet file ({exc}).") from exc
    try:
        return prepare_votes(raw)
    except VoteDataError as exc:
        raise VoteDataError(f"{path}: {exc}", row=exc.row, column=exc.column) from exc


def read_votes(path: str | Path) -> pd.DataFrame:
    """Read a vote file by its suffix (.csv or .parquet); returns the prepared frame."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_votes_csv(path)
    if suffix == ".parquet":
        return read_votes_parquet(path)
    raise VoteDataError(
        f"{path}: unknown suffix {suffix!r}; expected one of {', '.join(VOTE_SUFFIXES)}."
    )


def to_fastchat(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes in FastChat's battle layout: model_a is the variant shown on the left, model_b the
    one on the right, winner is 'model_a', 'model_b' or 'tie', judge the annotator, tstamp the
    vote time in Unix seconds (NaN where the vote time is unknown)."""
    votes = ensure_prepared(votes)
    left_is_a = (votes["left_variant"] == votes["variant_a"]).to_numpy()
    a = votes["variant_a"].astype(str).to_numpy()
    b = votes["variant_b"].astype(str).to_numpy()
    choice = votes["choice"].astype(str).to_numpy()
    winner = np.select([choice == "left", choice == "right"], ["model_a", "model_b"], "tie")
    voted = pd.to_datetime(votes["voted_at"], utc=True, errors="coerce", format="ISO8601")
    tstamp = (voted - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return pd.DataFrame(
        {
            "model_a": np.where(left_is_a, a, b),
            "model_b": np.where(left_is_a, b, a),
            "winner": winner,
            "judge": votes["annotator"].astype(str).to_numpy(),
            "tstamp": tstamp.to_numpy(),
        }
    )


def write_fastchat_json(
    votes: pd.DataFrame, path: str | Path, lines: bool = False, overwrite: bool = False
) -> Path:
    """Write the FastChat battles as a JSON array of records, or JSON lines when `lines`."""
    battles = to_fastchat(votes)
    return _atomic_write(
        path,
        lambda tmp: battles.to_json(tmp, orient="records", lines=lines, force_ascii=False),
        overwrite,
    )
