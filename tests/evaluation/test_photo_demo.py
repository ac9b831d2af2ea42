"""The photo demo (evaluation.photo_demo): real photographs, imported, one difference apart."""

from collections import Counter

from PIL import Image as PILImage
from sqlalchemy import func, select

from db.engine import make_engine, session_factory
from db.models import GenerationJob, Image, ImagePair, Study, Variant
from evaluation.photo_demo import PHOTOS, SEEDS, STUDY_NAME, VARIANTS, build_photo_demo


def test_photo_demo_builds_a_votable_study_of_real_photographs(tmp_path):
    """Four imported variants, three one-difference sets, every pair's files present, no job."""
    result = build_photo_demo(tmp_path)
    assert (result.study, result.images) == (STUDY_NAME, len(VARIANTS) * len(PHOTOS) * len(SEEDS))
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    try:
        with session_factory(engine)() as s:
            study = s.scalar(select(Study).where(Study.name == STUDY_NAME))
            assert study.status == "open"
            assert Counter(c.group for c in study.comparisons) == {
                "jpeg_quality": 1,
                "blur": 1,
                "saturation": 1,
            }
            assert {v.kind for v in s.scalars(select(Variant))} == {"images"}
            pairs = s.scalars(select(ImagePair)).all()
            assert len(pairs) == 3 * len(PHOTOS) * len(SEEDS)
            assert s.scalar(select(func.count()).select_from(GenerationJob)) == 0
            for pair in pairs:
                a, b = (tmp_path / pair.image_a.path, tmp_path / pair.image_b.path)
                assert a.read_bytes() != b.read_bytes()  # a real difference to see
                with PILImage.open(a) as image:
                    assert image.format == "JPEG" and image.size == (256, 256)
    finally:
        engine.dispose()


def test_photo_demo_rebuild_adds_nothing(tmp_path):
    """Building twice gives the same rows: no duplicate study, variant or image."""
    build_photo_demo(tmp_path)
    again = build_photo_demo(tmp_path)
    assert again.added == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    try:
        with session_factory(engine)() as s:
            assert s.scalar(select(func.count()).select_from(Study)) == 1
            assert s.scalar(select(func.count()).select_from(Image)) == again.images
    finally:
        engine.dispose()


def test_demo_command_with_photos_builds_the_photo_demo(tmp_path, capsys):
    """`python -m evaluation demo --photos` builds the photo demo, not the rendered one."""
    from evaluation.demo import main

    assert main(["--photos", "--data-dir", str(tmp_path)]) == 0
    assert f"study:    {STUDY_NAME!r}" in capsys.readouterr().out
    assert not (tmp_path / "demo").exists()
