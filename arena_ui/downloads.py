"""The vote downloads as bytes: interchange CSV and Parquet, FastChat battle JSON.

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


def export_bytes(votes: pd.DataFrame, kind: str) -> tuple[str, str, bytes]:
    """(file name, MIME type, content) of the votes in format `kind` (csv, parquet, fastchat)."""
    name, mime, write = FORMATS[kind]
    with tempfile.TemporaryDirectory() as folder:
        path = write(votes, Path(folder) / name)
        return name, mime, Path(path).read_bytes()
