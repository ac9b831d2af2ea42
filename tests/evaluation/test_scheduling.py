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
from evaluation.scheduling import comparison_statuses, next_pair, study_is_settled


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


# --- stop when settled (decision-rules.md, "Allocation") ---------------------------------------


def settled_study(tmp_path, n_comparisons=3, voters=6, **settings):
    """A SQLite study with stop-when-settled on: comparisons x 6 prompts x 2 labels x 2 seeds
    (24 pairs each) and `voters` voters; `settings` set Study columns (vote_cap, alpha, ...)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as s:
        study = create_synthetic_study(
            s, "s", n_comparisons=n_comparisons, n_prompts=6, seeds=(0, 1), stop_when_settled=True
        )
        for key, value in settings.items():
            setattr(study, key, value)
        ids = [annotator_id for annotator_id, _ in create_voters(s, voters)]
        study_id = study.id
    return engine, factory, study_id, ids


def a_wins(item):
    """A vote for side A, wherever it is shown."""
    return "left" if item.left_side == "a" else "right"


def vote_served(factory, annotator_id, study_id, choose):
    """next_pair, then record_vote with the rule and status it served; returns the item."""
    with factory.begin() as s:
        item = next_pair(s, annotator_id, study_id)
        if item is not None:
            record_vote(
                s,
                item.pair_id,
                annotator_id,
                item.left_side,
                choose(item),
                datetime.now(UTC),
                allocation_rule=item.rule,
                comparison_status=item.status,
            )
    return item


def run_round_robin(factory, study_id, voters, choose, limit=500):
    """Voters take turns until next_pair has nothing for any of them; returns the items."""
    served, idle = [], 0
    while idle < len(voters) and len(served) < limit:
        item = vote_served(factory, voters[len(served) % len(voters)], study_id, choose)
        if item is None:
            idle += 1
            voters = voters[1:] + voters[:1]
            continue
        idle = 0
        served.append(item)
    return served


def comparison_ids(factory, study_id):
    with factory() as s:
        return list(s.scalars(select(Comparison.id).where(Comparison.study_id == study_id)))


def test_warm_up_gives_every_comparison_six_decisive_votes_first(tmp_path):
    """The first 18 pairs of a 3-comparison study are warm-up, 6 per comparison, round-robin."""
    engine, factory, study_id, voters = settled_study(tmp_path)
    served = [vote_served(factory, voters[k % 6], study_id, a_wins) for k in range(19)]
    engine.dispose()
    assert [item.rule for item in served[:18]] == ["warmup"] * 18
    assert served[18].rule == "open"
    per_comparison = Counter(comparison_of(factory, [i.pair_id for i in served[:18]]).values())
    assert sorted(per_comparison.values()) == [6, 6, 6]


def test_decided_comparisons_are_no_longer_served_and_the_study_settles(tmp_path):
    """When A always wins, each comparison is decided after 8 votes (E = 2^8 / 9 >= 20), then
    skipped; with nothing open next_pair returns None and the study reads as settled."""
    engine, factory, study_id, voters = settled_study(tmp_path)
    served = run_round_robin(factory, study_id, voters, a_wins)
    with factory() as s:
        settled = study_is_settled(s, study_id)
        statuses = comparison_statuses(s, study_id)
    engine.dispose()
    per_comparison = Counter(comparison_of(factory, [i.pair_id for i in served]).values())
    assert sorted(per_comparison.values()) == [8, 8, 8]
    assert {status for status, _, _ in statuses.values()} == {"decided"}
    assert settled
    assert all(item.status == "open" for item in served)


def test_open_comparisons_keep_being_served_least_voted_first(tmp_path):
    """A comparison whose votes split stays open and takes the votes once the others are
    decided; at every step the open comparisons' vote counts differ by at most one."""
    engine, factory, study_id, voters = settled_study(tmp_path)
    split = comparison_ids(factory, study_id)[0]
    pair_comparison = comparison_of(factory, list(range(1, 200)))
    flip = Counter()

    def choose(item):
        if pair_comparison[item.pair_id] != split:
            return a_wins(item)
        flip[split] += 1
        return a_wins(item) if flip[split] % 2 else ("right" if item.left_side == "a" else "left")

    served = run_round_robin(factory, study_id, voters, choose, limit=60)
    engine.dispose()
    comparisons = [pair_comparison[i.pair_id] for i in served]
    assert Counter(comparisons)[split] == 60 - 16
    for step in range(1, 25):
        counts = Counter(comparisons[:step])
        assert max(counts.values()) - min(counts.get(c, 0) for c in set(comparisons)) <= 1
    assert all(i.rule == "open" for i, c in zip(served[18:], comparisons[18:], strict=True))


def test_prompts_stay_balanced_inside_a_comparison(tmp_path):
    """Inside a comparison the least-voted prompt comes first: after every vote the per-prompt
    counts of each comparison differ by at most one."""
    engine, factory, study_id, voters = settled_study(tmp_path, n_comparisons=1)
    with factory() as s:
        prompt_of = {p.id: p.prompt_id for p in s.scalars(select(ImagePair))}
    tie = run_round_robin(factory, study_id, voters, lambda item: "tie", limit=48)
    engine.dispose()
    counts = Counter()
    for item in tie:
        counts[prompt_of[item.pair_id]] += 1
        values = [counts.get(p, 0) for p in set(prompt_of.values())]
        assert max(values) - min(values) <= 1
    assert len(tie) == 48  # ties decide nothing: the comparison stays open


def test_vote_cap_stops_a_comparison(tmp_path):
    """With a cap of 10 votes, ties only, every comparison is capped at 10 and nothing is open."""
    engine, factory, study_id, voters = settled_study(tmp_path, vote_cap=10)
    served = run_round_robin(factory, study_id, voters, lambda item: "tie")
    with factory() as s:
        statuses = comparison_statuses(s, study_id)
        settled = study_is_settled(s, study_id)
    engine.dispose()
    per_comparison = Counter(comparison_of(factory, [i.pair_id for i in served]).values())
    assert sorted(per_comparison.values()) == [10, 10, 10]
    assert {status for status, _, _ in statuses.values()} == {"capped"} and settled


def test_excluded_annotators_votes_do_not_settle_a_comparison(tmp_path):
    """Votes of an annotator with a live exclusion are left out of the statuses; restoring them
    counts them again."""
    from db.models import AnnotatorExclusion

    engine, factory, study_id, voters = settled_study(tmp_path, n_comparisons=1)
    for _ in range(8):
        vote_served(factory, voters[0], study_id, a_wins)
    with factory.begin() as s:
        assert study_is_settled(s, study_id)
        exclusion = AnnotatorExclusion(study_id=study_id, annotator_id=voters[0], reason="test")
        s.add(exclusion)
    with factory.begin() as s:
        assert not study_is_settled(s, study_id)
        item = next_pair(s, voters[1], study_id)
        assert (item.rule, item.status) == ("warmup", "open")
        s.get(AnnotatorExclusion, exclusion.id).restored_at = datetime.now(UTC)
    with factory() as s:
        assert study_is_settled(s, study_id)
        assert next_pair(s, voters[1], study_id) is None
    engine.dispose()


def test_served_rule_and_status_are_stored_on_the_vote(tmp_path):
    """record_vote keeps the rule and status next_pair served; the full grid serves 'grid'."""
    from db.models import Vote

    engine, factory, study_id, voters = settled_study(tmp_path, n_comparisons=1)
    for k in range(7):
        vote_served(factory, voters[k % 6], study_id, a_wins)
    (comparison_id,) = comparison_ids(factory, study_id)
    with factory.begin() as s:
        stored = [(v.allocation_rule, v.comparison_status) for v in s.scalars(select(Vote))]
        s.get(Comparison, comparison_id).study.stop_when_settled = False
    assert stored == [("warmup", "open")] * 6 + [("open", "open")]
    with factory() as s:
        item = next_pair(s, voters[0], study_id)
    engine.dispose()
    assert (item.rule, item.status) == ("grid", None)


def test_quality_control_repeats_are_kept_when_settling(tmp_path):
    """At qc_rate 0.25 a quarter of one annotator's items are repeats, served with rule 'qc'."""
    engine, factory, study_id, voters = settled_study(tmp_path, n_comparisons=2, qc_rate=0.25)
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
    served = [vote_served(factory, voters[0], study_id, lambda item: "tie") for _ in range(16)]
    engine.dispose()
    assert Counter(item.rule for item in served) == {"warmup": 12, "qc": 4}
    assert all(item.qc == (item.rule == "qc") for item in served)


def test_scheduler_statuses_equal_the_decision_board(tmp_path):
    """The statuses the scheduler acts on are the board's, from the exported live votes."""
    from db.queries import live_votes_frame
    from evaluation.decisions import decide

    engine, factory, study_id, voters = settled_study(tmp_path)
    rng = iter([0, 1, 0, 0, 2, 0, 1, 0] * 20)
    run_round_robin(
        factory,
        study_id,
        voters,
        lambda item: ("left", "right", "tie")[next(rng)],
        limit=60,
    )
    with factory() as s:
        statuses = comparison_statuses(s, study_id)
        frame = live_votes_frame(s, study_id)
        names = {c.id: c.name for c in s.scalars(select(Comparison))}
    engine.dispose()
    board = decide(frame, rounds=10).comparisons.set_index("comparison")
    assert {names[cid]: st for cid, (st, _, _) in statuses.items()} == board["status"].to_dict()


def test_tiny_study_served_until_settled(tmp_path):
    """On the tiny study of the page tests with stop-when-settled on, a voter who always picks
    A is served warm-up, then open pairs, and is told nothing is left once both comparisons are
    decided."""
    from db.models import Study
    from tests.app.tiny_study import build_tiny_study

    tiny = build_tiny_study(tmp_path, n_comparisons=2, n_prompts=6, labels=("e8", "e10"))
    engine = make_engine(f"sqlite:///{tmp_path / 'arena.sqlite3'}")
    factory = session_factory(engine)
    with factory.begin() as s:
        s.get(Study, tiny.study_id).stop_when_settled = True
    served = run_round_robin(factory, tiny.study_id, [tiny.voter_id], a_wins)
    with factory() as s:
        settled = study_is_settled(s, tiny.study_id)
    engine.dispose()
    assert [item.rule for item in served] == ["warmup"] * 12 + ["open"] * 4
    assert settled
