"""The vote downloads as bytes: interchange CSV and Parquet, FastChat battle JSON, and the
study's annotator exclusions as CSV.

`evaluation.export` writes files (atomically); here they go to a temporary folder and back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from evaluation.export import write_fastchat_json, write_votes_csv, write_votes_parquet

FORMATS = {
    "csv": ("votes.csv", "text/csv", write_votes_csv),
    "parquet": ("votes.parquet", "application/vnd.apache.parquet", write_votes_parquet),
    "fastchat": ("battles.json", "application/json", write_fastchat_json),
}


def file_name(kind: str) -> str:
    return FORMATS[kind][0]


def export_bytes(votes: pd.DataFrame, kind: str) -> bytes:
    """The votes as a file of format `kind` (csv, parquet, fastchat)."""
    name, _, write = FORMATS[kind]
    with tempfile.TemporaryDirectory() as folder:
        path = write(votes, Path(folder) / name)
        return Path(path).read_bytes()


EXCLUSION_COLUMNS = ("annotator", "excluded_by", "reason", "excluded_at", "restored_at", "votes")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell


def exclusions_csv(exclusions: pd.DataFrame) -> bytes:
    """The study's exclusions (restored ones too) as CSV: who, by whom, why, when, and how many
    live votes they leave out. Text that a spreadsheet would take for a formula is quoted with
    a leading apostrophe."""
    frame = exclusions.reindex(columns=list(EXCLUSION_COLUMNS))
    for column in ("annotator", "excluded_by", "reason"):
        frame[column] = [
            f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            for v in frame[column]
        ]
    return frame.to_csv(index=False).encode("utf-8")
