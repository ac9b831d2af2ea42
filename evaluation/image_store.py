"""The image store: PNG files under `<data dir>/images/<sha[:2]>/<sha256>.png`, written atomically.

A reader (or a crash) sees either no file or the whole file. `clean_files` removes what a
crashed writer left behind: temporary files and images no database row points at.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import socket
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Image
from evaluation.jobs import process_exists

IMAGES_DIR = "images"  # under the data directory
TEMP_PREFIX = ".tmp-"  # temporary image files start with this


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (files of any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def png_bytes(image) -> bytes:
    """PIL image -> PNG bytes (no timestamps: the same pixels give the same bytes and name)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(data_dir: Path, png: bytes) -> tuple[str, str]:
    """Write PNG bytes atomically to their content-addressed name; returns (relative path, sha256).

    temp file in the final directory -> fsync -> os.replace -> fsync the directory, so a reader
    (or a crash) sees either no file or the whole file, never half of it.
    """
    sha = hashlib.sha256(png).hexdigest()
    folder = data_dir / IMAGES_DIR / sha[:2]
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{sha}.png"
    # the writer's host and pid in the name let a restart on this host remove it at once
    owner = f"{socket.gethostname()}-{os.getpid()}"
    temp = folder / f"{TEMP_PREFIX}{sha[:16]}-{owner}-{secrets.token_hex(4)}.png"
    try:
        with open(temp, "wb") as handle:
            handle.write(png)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except OSError as error:
        # a full disk fails mid-write: never leave the partial temp file behind
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if error.filename is None:
            error.filename = str(temp)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return final.relative_to(data_dir).as_posix(), sha


def _dead_temp(name: str) -> bool:
    """True for a temporary file written by a process of this host that no longer exists."""
    if not name.startswith(TEMP_PREFIX):
        return False
    parts = name.removeprefix(TEMP_PREFIX).removesuffix(".png").split("-")
    if len(parts) < 4:
        return False
    host, pid = "-".join(parts[1:-2]), parts[-2]
    return host == socket.gethostname() and pid.isdigit() and not process_exists(int(pid))


def clean_files(session: Session, data_dir: Path, older_than: timedelta | None = None) -> int:
    """Remove leftover temporary files and image files no row points at; returns how many.

    `older_than` spares files younger than that (other live workers may be writing them),
    except temporary files of dead processes of this host; None removes all (safe only while
    holding the SQLite worker lock).
    """
    root = data_dir / IMAGES_DIR
    if not root.is_dir():
        return 0
    known = set(session.scalars(select(Image.path).where(Image.path.is_not(None))))
    cutoff = None if older_than is None else time.time() - older_than.total_seconds()
    removed = 0
    for path in root.glob("*/*"):
        relative = path.relative_to(data_dir).as_posix()
        if not path.is_file() or relative in known:
            continue
        if not path.name.startswith(TEMP_PREFIX) and path.suffix != ".png":
            continue  # not ours
        if cutoff is not None and path.stat().st_mtime > cutoff and not _dead_temp(path.name):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed
