"""The one-command demo study (evaluation.demo)."""

import hashlib
from collections import Counter

import pytest
from sqlalchemy import func, select

from db.engine import make_engine, session_factory
from db.models import Checkpoint, Comparison, Image, ImagePair, Study, Variant
from evaluation.demo import build_demo


@pytest.mark.slow
def test_demo_builds_the_article_design_and_is_idempotent(tmp_path, monkeypatch):
    """Seven tiny VT variants + reference, 10 sets, 120 pairs, 90 rendered images; a rerun adds
    nothing."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    steps = []
    result = build_demo(tmp_path, progress=lambda fraction, message: steps.append(fraction))
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    assert (result.images, result.rendered_now) == (90, 90)

    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    factory = session_factory(engine)

    def counts():
        with factory() as s:
            return [
                s.scalar(select(func.count()).select_from(model))
                for model in (Variant, Checkpoint, Study, Comparison, ImagePair, Image)
            ]

    assert counts() == [8, 14, 1, 10, 120, 90]
    with factory() as s:
        groups = Counter(s.scalars(select(Comparison.group)))
        assert groups == {"embed_dim": 3, "vicinity": 3, "mlp_dim": 3, "deprojector": 1}
        assert s.scalar(select(Study.status)) == "open"
        for image in s.scalars(select(Image)):
            file = tmp_path / image.path
            assert hashlib.sha256(file.read_bytes()).hexdigest() == image.sha256
        params = {c.params_total for c in s.scalars(select(Checkpoint))}
        assert len(params) > 1 and None not in params  # the variants really differ in size

    again = build_demo(tmp_path)
    assert again.rendered_now == 0
    assert counts() == [8, 14, 1, 10, 120, 90]
    engine.dispose()
