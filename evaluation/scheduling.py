"""Which pair an annotator judges next, and which image goes on the left.

No torch; a few prebuilt queries (`db.queries.scheduling`) per call (the vote page calls it after
every vote). Choices are deterministic for a given seed: ties are broken by a hash of (seed,
annotator, pair). Two allocations (decision-rules.md, "Allocation"): the full grid (the study's
`stop_when_settled` off: every annotator judges every pair, comparison by comparison) and *stop
when settled* (a warm-up of 6 decisive votes per comparison, then only `open` comparisons, least
voted first, statuses from `evaluation.decisions`, the same code as the decision board).
Quality-control repeats are the `swapped_repeat` ImagePair twins `evaluation.plan` creates; they
are shown with the sides swapped relative to the annotator's own vote on the original pair.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.errors import NotFoundError
from db.queries import scheduling as q
from evaluation.decisions import NEEDED_MIN_VOTES, DecisionSettings, comparison_status

WARMUP_VOTES = NEEDED_MIN_VOTES  # decisive votes every comparison gets before it can be skipped


@dataclass(frozen=True)
class ScheduledPair:
    """One pair to show: which side of it goes left, the two files (relative to the data dir),
    and why it was chosen."""

    pair_id: int
    left_side: str  # "a" or "b": the pair's side shown on the left
    left_image_id: int
    right_image_id: int
    left_image: str
    right_image: str
    prompt: str
    qc: bool  # a quality-control repeat of a pair this annotator already judged
    rule: str = "grid"  # "grid" (stop-when-settled off), "warmup", "open" or "qc"
    status: str | None = None  # the comparison's status when served (None on the full grid)


def _rank(seed: int, annotator_id: int, pair_id: int, salt: str = "") -> bytes:
    """A stable pseudo-random sort key for (seed, annotator, pair)."""
    text = f"{seed}:{annotator_id}:{pair_id}:{salt}".encode()
    return hashlib.blake2b(text, digest_size=8).digest()


def _pair_ranks(seed: int, annotator_id: int, pair_ids) -> list[bytes]:
    """`_rank(seed, annotator_id, pair_id)` for many pairs (the prefix encoded once)."""
    prefix = f"{seed}:{annotator_id}:".encode()
    blake2b = hashlib.blake2b
    return [blake2b(b"%s%d:" % (prefix, pid), digest_size=8).digest() for pid in pair_ids]


def decision_settings(allocation) -> DecisionSettings:
    """The study's decision settings from its `q.study_allocation` row."""
    return DecisionSettings(
        alpha=allocation.alpha, delta=allocation.delta, vote_cap=allocation.vote_cap
    )


def comparison_statuses(
    session: Session, study_id: int, settings: DecisionSettings | None = None
) -> dict[int, tuple[str, int, int]]:
    """comparison id -> (status, decisive votes, live votes) from the live votes of annotators
    not excluded, with the study's alpha, delta and vote cap, for every comparison with pairs."""
    if settings is None:
        allocation = q.study_allocation(session, study_id)
        if allocation is None:
            raise NotFoundError(f"study_id={study_id}: no such study")
        settings = decision_settings(allocation)
    comparisons = q.study_comparisons(session, study_id)
    outcomes = q.comparison_outcomes(session, study_id)
    counts = [outcomes.get(cid, (0, 0, 0)) for cid in comparisons]
    status = comparison_status(
        [a for a, _, _ in counts], [b for _, b, _ in counts], [t for _, _, t in counts], settings
    )
    return {
        cid: (str(st), a + b, a + b + t)
        for cid, st, (a, b, t) in zip(comparisons, status, counts, strict=True)
    }


def study_is_settled(session: Session, study_id: int) -> bool:
    """True when the study stops when settled and no comparison is open any more (the vote page
    then says so and offers the results)."""
    allocation = q.study_allocation(session, study_id)
    if allocation is None:
        raise NotFoundError(f"study_id={study_id}: no such study")
    if not allocation.stop_when_settled:
        return False
    statuses = comparison_statuses(session, study_id, decision_settings(allocation))
    return all(st != "open" for st, _, _ in statuses.values())


def _pick_qc(session: Session, annotator_id: int, study_id: int, seed: int, allowed=None):
    """(QC pair id, left side, comparison id) for a twin of a pair the annotator judged, or None.

    The most recently judged pair is skipped while others exist, so a repeat is never the
    item just seen. `allowed`: comparison ids whose repeats may be shown (None: all).
    """
    rows = q.qc_candidates(session, annotator_id, study_id)
    if allowed is not None:
        rows = [r for r in rows if r.comparison_id in allowed]
    if not rows:
        return None
    if len(rows) > 1:
        latest = max(rows, key=lambda r: (r.voted_at, r.id))
        rows = [r for r in rows if r is not latest]
    row = min(rows, key=lambda r: _rank(seed, annotator_id, r.id, "qc"))
    return row.id, "b" if row.left_side == "a" else "a", row.comparison_id


def _side(session: Session, annotator_id: int, pair_id: int, seed: int) -> str:
    """Balance placement over all annotators: the side shown left less often goes left."""
    shown = q.sides_shown(session, pair_id)
    a_left, b_left = shown.get("a", 0), shown.get("b", 0)
    if a_left != b_left:
        return "a" if a_left < b_left else "b"
    return "a" if _rank(seed, annotator_id, pair_id, "side")[0] % 2 == 0 else "b"


def _pick_grid(session: Session, annotator_id: int, study_id: int, seed: int, own):
    """(pair id, comparison id) from the comparison the annotator has judged least, or None."""
    # Comparisons by (the annotator's votes in it, seeded hash): the first with an open pair
    order = sorted(
        q.study_comparisons(session, study_id),
        key=lambda cid: (own.get(cid, 0), _rank(seed, annotator_id, cid, "comparison")),
    )
    for comparison_id in order:
        candidates = q.open_pair_ids(session, annotator_id, comparison_id)
        if candidates:
            ranks = _pair_ranks(seed, annotator_id, candidates)
            return candidates[min(range(len(candidates)), key=ranks.__getitem__)], comparison_id
    return None


def _pick_open(session: Session, annotator_id: int, study_id: int, seed: int, statuses):
    """(pair id, comparison id) under stop-when-settled, or None.

    Open comparisons only: those still in warm-up (under 6 decisive votes) first, then the least
    voted (all annotators); inside it the pair on the least-voted prompt, then checkpoint, then
    seed, so prompts stay balanced.
    """
    order = sorted(
        (cid for cid, (status, _, _) in statuses.items() if status == "open"),
        key=lambda cid: (
            statuses[cid][1] >= WARMUP_VOTES,
            statuses[cid][2],
            _rank(seed, annotator_id, cid, "comparison"),
        ),
    )
    for comparison_id in order:
        candidates = q.open_pairs(session, annotator_id, comparison_id)
        if not candidates:
            continue
        by_prompt, by_checkpoint, by_seed = Counter(), Counter(), Counter()
        for prompt_id, label, image_seed, votes in q.cell_votes(session, study_id, comparison_id):
            by_prompt[prompt_id] += votes
            by_checkpoint[label] += votes
            by_seed[image_seed] += votes
        rows = [tuple(r) for r in candidates]  # (id, prompt_id, checkpoint_label, seed)
        ranks = _pair_ranks(seed, annotator_id, [r[0] for r in rows])
        best = min(
            range(len(rows)),
            key=lambda i: (
                by_prompt[rows[i][1]],
                by_checkpoint[rows[i][2]],
                by_seed[rows[i][3]],
                ranks[i],
            ),
        )
        return rows[best][0], comparison_id
    return None


def next_pair(
    session: Session, annotator_id: int, study_id: int, seed: int = 0
) -> ScheduledPair | None:
    """The next pair for the annotator, or None when there is nothing (left) to judge.

    1. Full grid (`stop_when_settled` off): regular pairs the annotator has no live vote on
       (both images rendered), from the comparison where they have the fewest live votes; ties
       between comparisons go by a hash of (seed, annotator, comparison), and within it the
       pair with the smallest hash of (seed, annotator, pair) is taken.
       Stop when settled: only `open` comparisons (decision-rules.md), warm-up first, then the
       least-voted over all annotators; inside it the least-voted prompt, checkpoint, seed.
       None when no comparison is open (see `study_is_settled`).
    2. Left/right: the side of the pair shown on the left less often in all live votes goes
       left; on a tie, a hash of (seed, annotator, pair) decides.
    3. Quality control: when the study's qc_rate > 0, a `swapped_repeat` twin of an already
       judged pair is shown instead whenever the annotator's share of QC votes would otherwise
       fall below qc_rate, with the sides swapped relative to their original vote.
    """
    # 1. Where the annotator and the study stand
    allocation = q.study_allocation(session, study_id)
    if allocation is None:
        raise NotFoundError(f"study_id={study_id}: no such study")
    own = q.own_votes(session, annotator_id, study_id)
    regular_votes = sum(own.values())
    statuses = None
    if allocation.stop_when_settled:
        statuses = comparison_statuses(session, study_id, decision_settings(allocation))
        if all(st != "open" for st, _, _ in statuses.values()):
            return None

    # 2. A quality-control repeat when due (and possible), else a regular pair
    choice, qc = None, False
    if allocation.qc_rate > 0 and regular_votes > 0:
        qc_votes = q.qc_votes(session, annotator_id, study_id)
        if qc_votes + 1 <= allocation.qc_rate * (regular_votes + qc_votes + 1) + 1e-9:
            picked = _pick_qc(session, annotator_id, study_id, seed)
            if picked is not None:
                pair_id, left_side, comparison_id = picked
                choice, qc = (pair_id, comparison_id), True
    if choice is None:
        if statuses is None:
            choice = _pick_grid(session, annotator_id, study_id, seed, own)
        else:
            choice = _pick_open(session, annotator_id, study_id, seed, statuses)
        if choice is None:
            return None
        left_side = _side(session, annotator_id, choice[0], seed)
    pair_id, comparison_id = choice
    if statuses is None:
        rule, status = "grid", None
    else:
        status, decisive, _ = statuses.get(comparison_id, ("open", 0, 0))
        rule = "qc" if qc else "warmup" if decisive < WARMUP_VOTES else "open"

    # 3. What the page shows
    a_id, a_path, b_id, b_path, prompt = q.pair_view(session, pair_id)
    left, right = (
        ((a_id, a_path), (b_id, b_path)) if left_side == "a" else ((b_id, b_path), (a_id, a_path))
    )
    return ScheduledPair(
        pair_id=pair_id,
        left_side=left_side,
        left_image_id=left[0],
        right_image_id=right[0],
        left_image=left[1],
        right_image=right[1],
        prompt=prompt,
        qc=qc,
        rule=rule,
        status=status,
    )
