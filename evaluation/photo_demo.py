"""The photo demo: real photographs, four image pipelines one difference apart, imported.

    python -m evaluation demo --photos                      # into ARENA_DATA_DIR (./data)
    python -m evaluation demo --photos --data-dir /tmp/arena

The photographs ship inside scikit-image's wheel (`skimage.data`, no download). Each variant is
an image pipeline (JPEG quality, Gaussian blur radius, colour saturation); the base keeps the
photo as it is (JPEG quality 95) and each neighbour changes one setting, so a voter sees a real
difference. Files are written with `evaluation.imports` and the study "photo-demo" is created;
a rerun adds nothing. No torch, no rendering: a few seconds on CPU.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

STUDY_NAME = "photo-demo"
PHOTO_DIR = "photo-demo"  # source folders (manifest + files), under the data directory
LABEL = "photo"  # the one checkpoint label
SIZE = 256  # pixels: each image is a square crop, resized to SIZE x SIZE
SEEDS = (0, 1)  # the seed picks the square crop (0: centred, else a seeded random one)
BASE = "photo-q95-blur0-sat1.0"

# skimage.data function -> caption (the prompt); commas make a "composed" prompt, as in the study
PHOTOS: dict[str, str] = {
    "astronaut": "an astronaut in a white spacesuit, an american flag",
    "chelsea": "a tabby cat",
    "coffee": "a cup of coffee, a saucer, a spoon",
    "rocket": "a rocket on its launch pad",
    "hubble_deep_field": "a field of distant galaxies",
}


@dataclass(frozen=True)
class Pipeline:
    """One image pipeline: crop -> saturation -> blur -> JPEG at `jpeg_quality`."""

    jpeg_quality: int = 95  # 1..95
    blur: float = 0.0  # Gaussian blur radius in pixels
    saturation: float = 1.0  # PIL ImageEnhance.Color factor: 0 grey, 1 unchanged

    def hyperparameters(self) -> dict[str, float | int]:
        return {"jpeg_quality": self.jpeg_quality, "blur": self.blur, "saturation": self.saturation}

    def apply(self, photo, seed: int) -> bytes:
        """JPEG bytes of the photo (a PIL RGB image) through this pipeline."""
        from PIL import ImageEnhance, ImageFilter

        image = crop(photo, seed)
        if self.saturation != 1.0:
            image = ImageEnhance.Color(image).enhance(self.saturation)
        if self.blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(self.blur))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.jpeg_quality, optimize=False)
        return buffer.getvalue()


# The base and one neighbour per setting: three comparisons, one per group.
VARIANTS: dict[str, Pipeline] = {
    BASE: Pipeline(),
    "photo-q10-blur0-sat1.0": Pipeline(jpeg_quality=10),
    "photo-q95-blur2-sat1.0": Pipeline(blur=2.0),
    "photo-q95-blur0-sat0.3": Pipeline(saturation=0.3),
}

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class PhotoDemoResult:
    data_dir: Path
    study: str
    variants: list[str]
    images: int  # imported images of the study's variants
    added: int  # image rows created by this call (0 on a rerun)
    seconds: float


def crop(photo, seed: int):
    """A square crop of `photo` (centred for seed 0, else seeded), resized to SIZE x SIZE."""
    import random

    from PIL import Image as PILImage

    width, height = photo.size
    side = min(width, height)
    if seed == 0:
        left, top = (width - side) // 2, (height - side) // 2
    else:
        side = int(side * 0.8)
        rng = random.Random(seed)
        left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    box = (left, top, left + side, top + side)
    return photo.crop(box).resize((SIZE, SIZE), PILImage.Resampling.LANCZOS)


def load_photo(name: str):
    """The photograph `name` from skimage.data as a PIL RGB image (files in the wheel)."""
    import skimage.data
    from PIL import Image as PILImage

    return PILImage.fromarray(getattr(skimage.data, name)()).convert("RGB")


def write_sources(folder: Path) -> None:
    """One folder per variant with its JPEG files and manifest.csv; built in a hidden sibling
    and renamed, so a killed build leaves no half folder."""
    if (folder / "done").is_file():
        return
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    photos = {name: load_photo(name) for name in PHOTOS}
    for variant, pipeline in VARIANTS.items():
        target = partial / variant
        target.mkdir(parents=True)
        lines = ["prompt,seed,image"]
        for name, caption in PHOTOS.items():
            for seed in SEEDS:
                file = f"{name}-{seed}.jpg"
                (target / file).write_bytes(pipeline.apply(photos[name], seed))
                lines.append(f'"{caption}",{seed},{file}')
        (target / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (partial / "done").write_text("ok\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


def create_photo_demo(
    session: Session, data_dir: str | Path, progress: Progress | None = None
) -> PhotoDemoResult:
    """Import the four variants and create the study "photo-demo" (idempotent); the caller
    commits, so the whole demo appears at once or not at all."""
    from db.models import Study
    from evaluation.imports import import_images
    from evaluation.plan import StudySpec, create_study

    began = time.perf_counter()
    report = progress or (lambda fraction, message: None)
    data_dir = Path(data_dir)

    # 1. Source photos through each pipeline (files next to a manifest)
    report(0.0, "writing the photographs through four image pipelines")
    sources = data_dir / PHOTO_DIR
    write_sources(sources)

    # 2. Import each variant
    added = images = 0
    for i, (name, pipeline) in enumerate(VARIANTS.items()):
        report(0.5 + 0.4 * i / len(VARIANTS), f"importing {name}")
        result = import_images(
            session,
            data_dir,
            name,
            sources / name / "manifest.csv",
            hyperparameters=pipeline.hyperparameters(),
            checkpoint=LABEL,
            notes="photo demo: skimage.data photographs through an image pipeline",
        )
        added += result.added
        images += result.images

    # 3. The study
    report(0.9, f"creating the study {STUDY_NAME!r}")
    if session.scalar(select(Study.id).where(Study.name == STUDY_NAME)) is None:
        create_study(
            session,
            StudySpec(
                name=STUDY_NAME,
                variants=tuple(VARIANTS),
                base=BASE,
                checkpoint_labels=(LABEL,),
                prompts=tuple(PHOTOS.values()),
                seeds=SEEDS,
                results_visible_to_voters=True,
            ),
        )
    report(1.0, f"photo demo ready: {images} images")
    return PhotoDemoResult(
        data_dir=data_dir,
        study=STUDY_NAME,
        variants=list(VARIANTS),
        images=images,
        added=added,
        seconds=time.perf_counter() - began,
    )


def build_photo_demo(
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
    database_url: str | None = None,
) -> PhotoDemoResult:
    """Migrate the database and build the photo demo in one transaction (as `build_demo`)."""
    from db.engine import DATABASE_FILE, make_engine, session_factory, upgrade
    from db.engine import data_dir as default_data_dir

    data_dir = Path(data_dir).resolve() if data_dir is not None else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url or os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / DATABASE_FILE}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        with session_factory(engine).begin() as s:
            return create_photo_demo(s, data_dir, progress)
    finally:
        engine.dispose()


def main(data_dir: str | None = None) -> int:
    """`python -m evaluation demo --photos [--data-dir DIR]` (dispatched by evaluation.demo)."""

    def show(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", flush=True)

    result = build_photo_demo(data_dir, progress=show)
    print(f"study:    {result.study!r}, variants: {', '.join(result.variants)}")
    print(f"images:   {result.images} imported ({result.added} new) under {result.data_dir}")
    print(f"took {result.seconds:.1f} s; start the app with: streamlit run app.py")
    return 0
