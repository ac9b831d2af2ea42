"""A voted photo-demo study for the report tests (shared by the unit and browser tests)."""

import random
from pathlib import Path

from sqlalchemy import select

from db.engine import make_engine, session_factory
from db.models import AnnotatorExclusion, ImagePair, Study
from db.queries.votes import record_vote
from db.synthetic import create_voters
from evaluation.photo_demo import BASE, STUDY_NAME, build_photo_demo


def voted_photo_demo(data_dir: Path, voters: int = 4) -> str:
    """Build the photo demo in `data_dir`, let `voters` voters judge every pair (preferring the
    base variant 4 times in 5), exclude the last voter; returns the database URL."""
    build_photo_demo(data_dir)
    url = f"sqlite:///{data_dir / 'arena.sqlite3'}"
    engine = make_engine(url)
    rng = random.Random(0)
    try:
        with session_factory(engine).begin() as s:
            study = s.scalar(select(Study).where(Study.name == STUDY_NAME))
            ids = [annotator_id for annotator_id, _ in create_voters(s, voters)]
            pairs = s.scalars(select(ImagePair)).all()
            for annotator_id in ids:
                for pair in pairs:
                    left = rng.choice("ab")
                    base_wins = rng.random() < 0.8
                    base_side = "a" if pair.comparison.variant_a.name == BASE else "b"
                    winner = base_side if base_wins else ("b" if base_side == "a" else "a")
                    record_vote(
                        s,
                        pair.id,
                        annotator_id,
                        left_side=left,
                        choice="left" if winner == left else "right",
                        shown_at=study.created_at,
                        study_id=study.id,
                        allocation_rule="grid",
                    )
            s.add(AnnotatorExclusion(study_id=study.id, annotator_id=ids[-1], reason="clicker"))
    finally:
        engine.dispose()
    return url
