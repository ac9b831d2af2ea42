"""The demo study: tiny random models, briefly trained, rendered end to end on CPU.

    python -m evaluation demo                      # into ARENA_DATA_DIR (default ./data)
    python -m evaluation demo --data-dir /tmp/arena
    python -m evaluation demo --photos             # the photo demo (evaluation.photo_demo)

Builds a tiny CLIP and a tiny Stable Diffusion pipeline (random weights), training data from a
short caption list, seven tiny VT variants in the article's 2x2x2-minus-one design (2 epochs
each), registers them, creates the study "demo" (the article's six prompts, epoch-1 and epoch-2,
one seed, 64x64) and pre-generates its images. Idempotent: a rerun reuses what exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from db.models import REFERENCE_VARIANT
from deprojector.prompts import ARTICLE_PROMPTS

DEMO_DIR = "demo"  # under the data directory
STUDY_NAME = "demo"
HIDDEN_SIZE = 32  # D of the tiny CLIP
EPOCHS = 2  # checkpoint labels epoch-1 and epoch-2
BASE = "demo-vt-final"

# Variant name -> (E / D, vicinity, M / D): the final VT, its three one-change neighbours and the
# three two-change corners; the all-changed corner (1, 1, 1) is left out, as in the article.
DESIGN: dict[str, tuple[int, int, int]] = {
    "demo-vt-final": (2, 2, 2),
    "demo-vt-embed-1d": (1, 2, 2),
    "demo-vt-vicinity-1": (2, 1, 2),
    "demo-vt-mlp-1d": (2, 2, 1),
    "demo-vt-embed-1d-vicinity-1": (1, 1, 2),
    "demo-vt-embed-1d-mlp-1d": (1, 2, 1),
    "demo-vt-vicinity-1-mlp-1d": (2, 1, 1),
}
SETTINGS = {
    "model_path": f"{DEMO_DIR}/sd",  # relative to the data directory
    "scheduler": "dpm++",
    "steps": 4,
    "guidance": 7.5,
    "width": 64,
    "height": 64,
    "negative_prompt": "",
}
_SUBJECTS = ("a cat", "a dog", "a girl", "a boy", "a maid", "a teacher", "a robot", "a bird")
_DETAILS = ("with red hair", "in a class room", "wearing a black skirt", "with blue eyes")
CAPTIONS = [f"{s} {d}" for s in _SUBJECTS for d in _DETAILS]  # 32 captions

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class DemoResult:
    data_dir: Path
    database: str  # URL, password hidden
    images_dir: Path
    study: str
    variants: list[str]
    images: int  # distinct images of the study
    rendered_now: int  # images rendered by this call
    seconds: float


def _preset(e: int, v: int, m: int) -> str:
    """The deprojector.model preset name for (E/D, v, M/D), e.g. "vt-embed-1d-vicinity-1"."""
    from deprojector.model import preset_name

    return preset_name(e, v, m)


def _atomic_build(folder: Path, build: Callable[[Path], object], marker: str) -> None:
    """Build into a hidden sibling and rename, so a killed build never leaves half a folder."""
    if (folder / marker).exists():
        return
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    build(partial)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


def _register(session, name: str, run_dir: Path, data_dir: Path) -> None:
    """Register each epoch's checkpoint through the arena's one intake path
    (`evaluation.checkpoints`); a rerun finds them registered and adds nothing."""
    from evaluation.checkpoints import inspect, register

    for epoch in range(1, EPOCHS + 1):
        folder = run_dir / f"epoch-{epoch}"
        register(
            session,
            name,
            folder.name,
            folder,
            inspect(folder),
            notes="demo: tiny random CLIP, trained 2 epochs on 32 captions",
            data_dir=data_dir,
            existing_ok=True,
        )


def build_demo(
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
    database_url: str | None = None,
) -> DemoResult:
    """Build (or finish building) the demo study in `data_dir`; see the module docstring.

    `progress(fraction, message)` is called at each step. The database is `database_url`, else
    `DATABASE_URL`, else the SQLite file in `data_dir`.
    """
    import torch

    # The demo's models are tiny: one thread is as fast on an idle CPU and several times faster
    # on a busy one (intra-op threads spin-waiting for a core); restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build_demo(data_dir, progress, database_url)
    finally:
        torch.set_num_threads(threads)


def _build_demo(
    data_dir: str | Path | None, progress: Progress | None, database_url: str | None
) -> DemoResult:
    from db.engine import DATABASE_FILE, make_engine, session_factory, upgrade
    from db.engine import data_dir as default_data_dir
    from evaluation.plan import StudySpec, create_study
    from evaluation.pregenerate import IMAGES_DIR, GenerationOptions, run_generation

    began = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    data_dir = Path(data_dir).resolve() if data_dir is not None else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    root = data_dir / DEMO_DIR
    root.mkdir(exist_ok=True)
    url = database_url or os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / DATABASE_FILE}"

    # 1. Tiny CLIP and SD pipeline (random weights, saved as ordinary folders)
    report(0.0, "building a tiny CLIP text model and Stable Diffusion pipeline")
    from deprojector.tiny import build_tiny_clip, build_tiny_sd

    clip_dir, sd_dir = root / "clip", root / "sd"
    _atomic_build(
        clip_dir,
        lambda p: build_tiny_clip(p, hidden_size=HIDDEN_SIZE, seed=0),
        "text_encoder/config.json",
    )
    _atomic_build(sd_dir, lambda p: build_tiny_sd(p, clip_dir, seed=0), "model_index.json")

    # 2. Training data from a short caption list
    report(0.08, "encoding training captions")
    from deprojector.data import DataConfig, build_dataset

    captions = root / "captions.txt"
    if not captions.exists():
        captions.write_text("\n".join(CAPTIONS) + "\n")
    data = root / "training-data"
    build_dataset(
        DataConfig(
            captions=captions,
            clip=clip_dir,
            out=data,
            samples=96,
            heldout_fraction=0.1,
            shard_size=128,
            seed=0,
        ),
        progress=False,
    )

    # 3. Seven variants, two epochs each (train() resumes, so finished runs return at once)
    from deprojector.train import TrainConfig, train

    for i, (name, (e, v, m)) in enumerate(DESIGN.items()):
        report(0.12 + 0.4 * i / len(DESIGN), f"training {name} ({i + 1} of {len(DESIGN)})")
        with redirect_stdout(sys.stderr):
            train(
                TrainConfig(
                    data=data,
                    clip=clip_dir,
                    out=root / "runs" / name,
                    preset=_preset(e, v, m),
                    epochs=EPOCHS,
                    batch_size=16,
                    lr=1e-3,
                    seed=i,
                    device="cpu",
                )
            )

    # 4. Database: migrate, register variants and checkpoints, create the study
    report(0.52, "registering variants and creating the study")
    engine = make_engine(url)
    try:
        upgrade(engine)
        factory = session_factory(engine)
        with factory.begin() as s:
            for name in DESIGN:
                _register(s, name, root / "runs" / name, data_dir)
        from db.models import Study

        with factory.begin() as s:
            if s.scalar(select(Study.id).where(Study.name == STUDY_NAME)) is None:
                create_study(
                    s,
                    StudySpec(
                        name=STUDY_NAME,
                        variants=(REFERENCE_VARIANT, *DESIGN),
                        base=BASE,
                        checkpoint_labels=tuple(f"epoch-{n}" for n in range(1, EPOCHS + 1)),
                        prompts=ARTICLE_PROMPTS,
                        seeds=(0,),
                        settings=SETTINGS,
                        reference_comparisons=(BASE,),
                        qc_rate=0.0,
                        results_visible_to_voters=False,  # blind: an admin opens results to voters
                    ),
                )

        # 5. Pre-generation
        report(0.55, "rendering images")
        generation = run_generation(
            engine,
            STUDY_NAME,
            # one checkpoint's images per pipeline call
            GenerationOptions(data_dir=data_dir, device="cpu", batch_size=len(ARTICLE_PROMPTS)),
            progress=lambda fraction, message: report(0.55 + 0.45 * fraction, message),
        )
        database = engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()
    report(1.0, f"demo ready: {generation.total} images")
    return DemoResult(
        data_dir=data_dir,
        database=database,
        images_dir=data_dir / IMAGES_DIR,
        study=STUDY_NAME,
        variants=[REFERENCE_VARIANT, *DESIGN],
        images=generation.total,
        rendered_now=generation.rendered,
        seconds=time.perf_counter() - began,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", default=None, help="default: ARENA_DATA_DIR, else ./data")
    parser.add_argument(
        "--photos", action="store_true", help="the photo demo instead (evaluation.photo_demo)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.photos:
        from evaluation.photo_demo import main as photo_main

        return photo_main(args.data_dir)

    def show(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", flush=True)

    result = build_demo(args.data_dir, progress=show)
    print(f"database: {result.database}")
    print(f"images:   {result.images_dir} ({result.images} images, {result.rendered_now} new)")
    print(f"study:    {result.study!r}, variants: {', '.join(result.variants)}")
    print(f"took {result.seconds:.0f} s; start the app with: streamlit run app.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
