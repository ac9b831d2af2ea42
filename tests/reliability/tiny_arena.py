"""A small real study on the tiny models for the fault tests: two VT variants one change apart
(random-init checkpoints saved with `save_checkpoint` under the data dir), the reference, and a
SQLite database in the data dir; plus the audit of the images on disk against their rows."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import func, select

from db.engine import make_engine, session_factory, upgrade
from db.models import Checkpoint, GenerationJob, Image, Variant
from evaluation.plan import StudySpec, create_study
from evaluation.pregenerate import IMAGES_DIR

VARIANTS = {"vt-a": "vt-final", "vt-b": "vt-vicinity-1"}  # variant name -> VT preset
LABEL = "epoch-1"


@dataclass(frozen=True)
class TinyArena:
    data_dir: Path
    url: str
    study: str
    images: int  # distinct images of the study


def build_tiny_arena(
    data_dir: Path,
    clip_dir: Path,
    sd_dir: Path,
    prompts: tuple[str, ...] = ("cat maid", "cat, maid"),
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 2,
    name: str = "faults",
    database: Path | None = None,
    url: str | None = None,
) -> TinyArena:
    """Write checkpoints and a study (VT vs VT, VT vs reference) ready to pre-generate; the
    database is `url` (an empty one), else the SQLite file `database` (default:
    `arena.sqlite3` in the data dir)."""
    from deprojector.checkpoint import inspect_checkpoint, save_checkpoint
    from deprojector.model import VTDeprojector, vt_config
    from deprojector.text import ClipText

    data_dir.mkdir(parents=True, exist_ok=True)
    url = url or f"sqlite:///{database or data_dir / 'arena.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    clip = ClipText.from_folder(clip_dir)
    with session_factory(engine).begin() as s:
        for k, (variant_name, preset) in enumerate(VARIANTS.items()):
            config = vt_config(preset, clip.hidden_size)
            model = VTDeprojector.from_clip(clip.text_model, clip.tokenizer, config, seed=k)
            folder = save_checkpoint(model, data_dir / "checkpoints" / variant_name / LABEL)
            info = inspect_checkpoint(folder)
            variant = Variant(
                name=variant_name, kind="vt", hyperparameters=config.hyperparameters()
            )
            s.add(variant)
            s.add(
                Checkpoint(
                    variant=variant,
                    label=LABEL,
                    path=folder.relative_to(data_dir).as_posix(),
                    sha256=hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest(),
                    params_total=info.params_total,
                    params_trainable=info.params_trainable,
                    hidden_size=info.hidden_size,
                )
            )
        s.flush()
        spec = StudySpec(
            name=name,
            variants=tuple(VARIANTS),
            base="vt-a",
            checkpoint_labels=(LABEL,),
            prompts=prompts,
            seeds=seeds,
            settings={
                "model_path": str(sd_dir),
                "scheduler": "ddim",
                "steps": steps,
                "guidance": 7.5,
                "width": 64,
                "height": 64,
            },
            reference_comparisons=("vt-a",),
        )
        create_study(s, spec)
        images = s.scalar(select(func.count(GenerationJob.id)))
    engine.dispose()
    return TinyArena(data_dir=data_dir, url=url, study=name, images=images)


def audit_images(arena: TinyArena, complete: bool = True) -> list[str]:
    """Every way the images on disk and their rows disagree; empty when sound.

    Each image row with a path points at an existing file whose sha256 matches the row (and
    names it), which opens as a valid PNG. With `complete` (after a finished run) also: every
    row has a path, every file under images/ belongs to exactly one row (no temporary file is
    left) and every job is done.
    """
    problems = []
    engine = make_engine(arena.url)
    with session_factory(engine).begin() as s:
        rows = s.execute(select(Image.id, Image.path, Image.sha256)).all()
        jobs = s.execute(select(GenerationJob.image_id, GenerationJob.status)).all()
    engine.dispose()
    if len(rows) != arena.images:
        problems.append(f"{len(rows)} image rows, expected {arena.images}")
    paths = {}
    for image_id, path, sha in rows:
        if path is None:
            if complete:
                problems.append(f"image {image_id}: no file recorded")
            continue
        if path in paths:
            problems.append(f"images {paths[path]} and {image_id} share the file {path}")
        paths[path] = image_id
        file = arena.data_dir / path
        if not file.is_file():
            problems.append(f"image {image_id}: row points at missing file {path}")
            continue
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            problems.append(f"image {image_id}: sha256 of {path} does not match its row")
        if Path(path).stem != sha:
            problems.append(f"image {image_id}: file {path} is not named by its sha256 {sha}")
        try:
            with PILImage.open(io.BytesIO(data)) as picture:
                picture.verify()
                if picture.format != "PNG":
                    problems.append(f"image {image_id}: {path} is {picture.format}, not PNG")
        except Exception as error:  # noqa: BLE001 - any decoding failure is the finding
            problems.append(f"image {image_id}: {path} is not a valid PNG ({error})")
    if not complete:
        return problems
    on_disk = {
        p.relative_to(arena.data_dir).as_posix()
        for p in (arena.data_dir / IMAGES_DIR).rglob("*")
        if p.is_file()
    }
    for orphan in sorted(on_disk - set(paths)):
        problems.append(f"file {orphan} has no row")
    not_done = [(image_id, status) for image_id, status in jobs if status != "done"]
    if not_done:
        problems.append(f"jobs not done: {not_done[:5]}")
    return problems
