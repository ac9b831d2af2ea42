"""Which pair an annotator sees next (evaluation.scheduling.next_pair)."""

import os
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from db.engine import make_engine, normalize_url, session_factory, upgrade
from db.models import Comparison, Image, ImagePair
from db.queries import record_vote
from db.synthetic import create_synthetic_study, create_voters
from evaluation.scheduling import next_pair


def build_study_db(url):
    """A migrated database with a 3-comparison x 2-label x 4-prompt study and 4 voters."""
    engine = make_engine(url)
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as s:
        study = create_synthetic_study(s, "s", n_comparisons=3, n_prompts=4)
        voters = [annotator_id for annotator_id, _ in create_voters(s, 4)]
        study_id = study.id
    return engine, (factory, study_id, voters)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def study_db(request, tmp_path):
    """build_study_db on a SQLite file, and on a fresh PostgreSQL database when
    TEST_DATABASE_URL names a server (skipped otherwise)."""
    if request.param == "sqlite":
        engine, db = build_study_db(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
        yield db
        engine.dispose()
        return
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL not set (start one with tests/db/start_postgres.sh)")
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    name = f"arena_sched_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = normalize_url(server).set(database=name).render_as_string(hide_password=False)
    engine, db = build_study_db(url)
    yield db
    engine.dispose()
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def vote_next(factory, annotator_id, study_id, seed=0, choice="left"):
    """Ask for the next pair and vote on it as shown; returns the scheduled pair (or None)."""
    with factory.begin() as s:
        item = next_pair(s, annotator_id, study_id, seed=seed)
        if item is not None:
            record_vote(s, item.pair_id, annotator_id, item.left_side, choice, datetime.now(UTC))
    return item


def comparison_of(factory, pair_ids):
    with factory() as s:
        rows = s.execute(
            select(ImagePair.id, ImagePair.comparison_id).where(ImagePair.id.in_(pair_ids))
        )
        return dict(rows.all())


def test_every_pair_once_then_none(study_db):
    """An annotator is shown each regular pair exactly once, then next_pair returns None."""
    factory, study_id, voters = study_db
    seen = []
    while (item := vote_next(factory, voters[0], study_id)) is not None:
        seen.append(item.pair_id)
        assert not item.qc
    assert len(seen) == len(set(seen)) == 3 * 2 * 4


def test_votes_spread_evenly_over_comparisons(study_db):
    """After every vote, the annotator's vote counts per comparison differ by at most one."""
    factory, study_id, voters = study_db
    seen = []
    for _ in range(3 * 2 * 4):
        seen.append(vote_next(factory, voters[0], study_id).pair_id)
        per_comparison = Counter(comparison_of(factory, seen).values())
        counts = [per_comparison.get(c, 0) for c in range(1, 4)]
        assert max(counts) - min(counts) <= 1


def test_each_pair_shown_a_left_and_a_right_equally(study_db):
    """Over four annotators who judge everything, each pair has A on the left exactly twice."""
    factory, study_id, voters = study_db
    sides = Counter()
    for voter in voters:
        while (item := vote_next(factory, voter, study_id)) is not None:
            sides[(item.pair_id, item.left_side)] += 1
            shown_left = item.left_image_id
            with factory() as s:
                pair = s.get(ImagePair, item.pair_id)
                expected = pair.image_a_id if item.left_side == "a" else pair.image_b_id
            assert shown_left == expected
    assert set(sides.values()) == {2}
    assert len(sides) == 2 * 3 * 2 * 4


def test_deterministic_for_a_seed(tmp_path):
    """Two databases built alike give the same pairs and sides for a seed; other seeds differ."""
    runs = {}
    for name, seed in (("one", 5), ("two", 5), ("three", 6)):
        url = f"sqlite:///{tmp_path / name}.sqlite3"
        engine, (factory, study_id, voters) = build_study_db(url)
        runs[name] = []
        for voter in voters[:2]:
            while (item := vote_next(factory, voter, study_id, seed=seed)) is not None:
                runs[name].append((item.pair_id, item.left_side))
        engine.dispose()
    assert runs["one"] == runs["two"]
    assert runs["one"] != runs["three"]


def test_unrendered_pairs_are_not_scheduled(study_db):
    """A pair whose image has no file yet is never shown."""
    factory, study_id, voters = study_db
    with factory.begin() as s:
        pair = s.scalars(select(ImagePair).order_by(ImagePair.id)).first()
        s.get(Image, pair.image_b_id).path = None
        hidden = {
            p.id
            for p in s.scalars(select(ImagePair))
            if p.image_a_id == pair.image_b_id or p.image_b_id == pair.image_b_id
        }
    seen = set()
    while (item := vote_next(factory, voters[0], study_id)) is not None:
        seen.add(item.pair_id)
    assert hidden and not (seen & hidden)
    assert len(seen) == 3 * 2 * 4 - len(hidden)


def test_quality_control_repeats_swap_sides(study_db):
    """At qc_rate 0.25, a quarter of the items are repeats shown with the sides swapped."""
    factory, study_id, voters = study_db
    with factory.begin() as s:
        for pair in list(s.scalars(select(ImagePair))):
            s.add(
                ImagePair(
                    comparison_id=pair.comparison_id,
                    prompt_id=pair.prompt_id,
                    seed=pair.seed,
                    checkpoint_label=pair.checkpoint_label,
                    image_a_id=pair.image_a_id,
                    image_b_id=pair.image_b_id,
                    qc_kind="swapped_repeat",
                )
            )
        study = s.scalar(select(Comparison).where(Comparison.study_id == study_id)).study
        study.qc_rate = 0.25
    shown = []
    while (item := vote_next(factory, voters[0], study_id)) is not None:
        shown.append(item)
    regular = [p for p in shown if not p.qc]
    repeats = [p for p in shown if p.qc]
    assert len(regular) == 24
    assert len(repeats) == 8  # 8 / 32 = 0.25
    with factory() as s:
        key = {
            p.id: (p.comparison_id, p.prompt_id, p.seed, p.checkpoint_label)
            for p in s.scalars(select(ImagePair))
        }
    original_side = {key[p.pair_id]: p.left_side for p in regular}
    for position, p in enumerate(shown):
        if p.qc:
            assert p.left_side != original_side[key[p.pair_id]]
            assert key[shown[position - 1].pair_id] != key[p.pair_id]
