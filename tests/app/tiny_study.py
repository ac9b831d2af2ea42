"""A small real study for the page, browser and latency tests: rows from `db.synthetic`, real PNG
files written with PIL (no torch), one admin and one voter with their tokens."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import select

from db.auth import create_annotator
from db.engine import make_engine, session_factory, upgrade
from db.models import Image
from db.synthetic import create_synthetic_study

TIMEOUT = 30  # seconds per AppTest run (the default 3 s is too short for a cold import)


@dataclass(frozen=True)
class TinyStudy:
    data_dir: Path
    study_id: int
    study_name: str
    n_pairs: int
    admin_token: str
    voter_token: str
    voter_id: int
    admin_id: int
    extra_voter_tokens: tuple[str, ...] = ()  # voter-1, voter-2, ... when voters > 1


def write_png(path: Path, seed: int, size: int = 256) -> str:
    """A deterministic coloured PNG at `path`; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 67) % 256, (seed * 131 + 40) % 256, (seed * 29 + 90) % 256)
    image = PILImage.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    step = size // 8
    for k in range(seed % 5 + 1):
        draw.ellipse((k * step, k * step, size - k * step, size // 2 + k * step), outline="white")
    image.save(path, format="PNG")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_tiny_study(
    data_dir: Path,
    name: str = "tiny",
    n_comparisons: int = 2,
    n_prompts: int = 2,
    labels: tuple[str, ...] = ("epoch-8",),
    seeds: tuple[int, ...] = (0,),
    image_size: int = 256,
    results_visible: bool = False,
    voters: int = 1,
) -> TinyStudy:
    """Migrate the database in `data_dir`, add the study and accounts, write every image file."""
    engine = make_engine(f"sqlite:///{data_dir / 'arena.sqlite3'}")
    upgrade(engine)
    with session_factory(engine).begin() as s:
        study = create_synthetic_study(
            s, name, n_comparisons=n_comparisons, n_prompts=n_prompts, seeds=seeds, labels=labels
        )
        study.results_visible_to_voters = results_visible
        admin, admin_token = create_annotator(s, "alice", "admin")
        voter, voter_token = create_annotator(s, "bob", "voter")
        extra = tuple(create_annotator(s, f"voter-{k}", "voter")[1] for k in range(1, voters))
        for image in s.scalars(select(Image)):
            image.sha256 = write_png(data_dir / image.path, image.id, image_size)
        result = TinyStudy(
            data_dir=data_dir,
            study_id=study.id,
            study_name=study.name,
            n_pairs=n_comparisons * n_prompts * len(labels) * len(seeds),
            admin_token=admin_token,
            voter_token=voter_token,
            voter_id=voter.id,
            admin_id=admin.id,
            extra_voter_tokens=extra,
        )
    engine.dispose()
    return result
