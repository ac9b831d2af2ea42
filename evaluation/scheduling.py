"""Which pair an annotator judges next, and which image goes on the left.

No torch; a few indexed queries per call (the vote page calls it after every vote). Choices are
deterministic for a given seed: ties are broken by a hash of (seed, annotator, pair).
Quality-control repeats are the `swapped_repeat` ImagePair twins `evaluation.plan` creates at
planning when a study's qc_rate > 0; here they are shown with the sides swapped relative to the
annotator's own vote on the original pair.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from db.models import Comparison, Image, ImagePair, Prompt, Study, Vote

QC_KIND = "swapped_repeat"


@dataclass(frozen=True)
class ScheduledPair:
    """One pair to show: which side of it goes left, the two files (relative to the data dir)."""

    pair_id: int
    left_side: str  # "a" or "b": the pair's side shown on the left
    left_image_id: int
    right_image_id: int
    left_image: str
    right_image: str
    prompt: str
    qc: bool  # a quality-control repeat of a pair this annotator already judged


def _rank(seed: int, annotator_id: int, pair_id: int, salt: str = "") -> bytes:
    """A stable pseudo-random sort key for (seed, annotator, pair)."""
    text = f"{seed}:{annotator_id}:{pair_id}:{salt}".encode()
    return hashlib.blake2b(text, digest_size=8).digest()


def _live_vote(annotator_id: int, pair_column):
    """Join condition: the annotator's live vote on the pair in `pair_column`."""
    return and_(
        Vote.pair_id == pair_column,
        Vote.annotator_id == annotator_id,
        Vote.superseded_at.is_(None),
    )


def _per_comparison(session: Session, annotator_id: int, study_id: int) -> dict[int, tuple]:
    """comparison id -> (the annotator's live votes, regular pairs in total).

    Two grouped queries, one over the comparison index of image_pairs and one over the
    annotator's own live votes, so the cost does not grow with other annotators' votes.
    """
    comparisons = select(Comparison.id).where(Comparison.study_id == study_id)
    totals = session.execute(
        select(ImagePair.comparison_id, func.count(ImagePair.id))
        .where(ImagePair.comparison_id.in_(comparisons), ImagePair.qc_kind.is_(None))
        .group_by(ImagePair.comparison_id)
    ).all()
    voted = dict(
        session.execute(
            select(ImagePair.comparison_id, func.count(Vote.id))
            .join(ImagePair, Vote.pair_id == ImagePair.id)
            .where(
                Vote.annotator_id == annotator_id,
                Vote.superseded_at.is_(None),
                ImagePair.comparison_id.in_(comparisons),
                ImagePair.qc_kind.is_(None),
            )
            .group_by(ImagePair.comparison_id)
        ).all()
    )
    return {cid: (voted.get(cid, 0), total) for cid, total in totals}


def _open_pairs(session: Session, annotator_id: int, comparison_id: int) -> list[int]:
    """Regular pairs of one comparison with both images rendered and no live vote of the
    annotator."""
    image_a, image_b = aliased(Image), aliased(Image)
    return list(
        session.scalars(
            select(ImagePair.id)
            .join(image_a, ImagePair.image_a_id == image_a.id)
            .join(image_b, ImagePair.image_b_id == image_b.id)
            .outerjoin(Vote, _live_vote(annotator_id, ImagePair.id))
            .where(
                ImagePair.comparison_id == comparison_id,
                ImagePair.qc_kind.is_(None),
                image_a.path.is_not(None),
                image_b.path.is_not(None),
                Vote.id.is_(None),
            )
        )
    )


def _qc_votes(session: Session, annotator_id: int, study_id: int) -> int:
    return session.scalar(
        select(func.count(Vote.id))
        .join(ImagePair, Vote.pair_id == ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(
            Vote.annotator_id == annotator_id,
            Vote.superseded_at.is_(None),
            Comparison.study_id == study_id,
            ImagePair.qc_kind == QC_KIND,
        )
    )


def _pick_qc(session: Session, annotator_id: int, study_id: int, seed: int):
    """(QC pair id, left side) for a twin of a pair the annotator judged, or None.

    The most recently judged pair is skipped while others exist, so a repeat is never the
    item just seen.
    """
    regular, original_vote, qc_vote = aliased(ImagePair), aliased(Vote), aliased(Vote)
    rows = session.execute(
        select(ImagePair.id, original_vote.left_side, original_vote.voted_at)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .join(
            regular,
            and_(
                regular.comparison_id == ImagePair.comparison_id,
                regular.prompt_id == ImagePair.prompt_id,
                regular.seed == ImagePair.seed,
                regular.checkpoint_label == ImagePair.checkpoint_label,
                regular.qc_kind.is_(None),
            ),
        )
        .join(
            original_vote,
            and_(
                original_vote.pair_id == regular.id,
                original_vote.annotator_id == annotator_id,
                original_vote.superseded_at.is_(None),
            ),
        )
        .outerjoin(
            qc_vote,
            and_(
                qc_vote.pair_id == ImagePair.id,
                qc_vote.annotator_id == annotator_id,
                qc_vote.superseded_at.is_(None),
            ),
        )
        .where(
            Comparison.study_id == study_id,
            ImagePair.qc_kind == QC_KIND,
            qc_vote.id.is_(None),
        )
    ).all()
    if not rows:
        return None
    if len(rows) > 1:
        latest = max(rows, key=lambda r: (r.voted_at, r.id))
        rows = [r for r in rows if r is not latest]
    pair_id, original_left, _ = min(rows, key=lambda r: _rank(seed, annotator_id, r.id, "qc"))
    return pair_id, "b" if original_left == "a" else "a"


def _pick_regular(session: Session, annotator_id: int, study_id: int, seed: int, counts):
    """(pair id, left side) from the comparison the annotator has judged least, or None."""
    # Comparisons by (the annotator's votes in it, seeded hash): the first with an open pair
    order = sorted(
        (cid for cid, (voted, total) in counts.items() if voted < total),
        key=lambda cid: (counts[cid][0], _rank(seed, annotator_id, cid, "comparison")),
    )
    pair_id = None
    for comparison_id in order:
        candidates = _open_pairs(session, annotator_id, comparison_id)
        if candidates:
            pair_id = min(candidates, key=lambda pid: _rank(seed, annotator_id, pid))
            break
    if pair_id is None:
        return None

    # Balance placement over all annotators: the side shown left less often goes left
    shown = dict(
        session.execute(
            select(Vote.left_side, func.count(Vote.id))
            .where(Vote.pair_id == pair_id, Vote.superseded_at.is_(None))
            .group_by(Vote.left_side)
        ).all()
    )
    a_left, b_left = shown.get("a", 0), shown.get("b", 0)
    if a_left != b_left:
        return pair_id, "a" if a_left < b_left else "b"
    return pair_id, "a" if _rank(seed, annotator_id, pair_id, "side")[0] % 2 == 0 else "b"


def next_pair(
    session: Session, annotator_id: int, study_id: int, seed: int = 0
) -> ScheduledPair | None:
    """The next pair for the annotator, or None when they have judged every rendered pair.

    1. Regular pairs the annotator has no live vote on (both images rendered), from the
       comparison where they have the fewest live votes; ties between comparisons go by a hash
       of (seed, annotator, comparison), and within it the pair with the smallest hash of
       (seed, annotator, pair) is taken.
    2. Left/right: the side of the pair shown on the left less often in all live votes goes
       left; on a tie, a hash of (seed, annotator, pair) decides.
    3. Quality control: when the study's qc_rate > 0, a `swapped_repeat` twin of an already
       judged pair is shown instead whenever the annotator's share of QC votes would otherwise
       fall below qc_rate, with the sides swapped relative to their original vote.
    """
    # 1. Where the annotator stands
    qc_rate = session.scalar(select(Study.qc_rate).where(Study.id == study_id))
    if qc_rate is None:
        raise LookupError(f"study_id={study_id}: no such study")
    counts = _per_comparison(session, annotator_id, study_id)
    regular_votes = sum(voted for voted, _ in counts.values())

    # 2. A quality-control repeat when due (and possible), else a regular pair
    choice, qc = None, False
    if qc_rate > 0 and regular_votes > 0:
        qc_votes = _qc_votes(session, annotator_id, study_id)
        if qc_votes + 1 <= qc_rate * (regular_votes + qc_votes + 1) + 1e-9:
            choice = _pick_qc(session, annotator_id, study_id, seed)
            qc = choice is not None
    if choice is None:
        choice = _pick_regular(session, annotator_id, study_id, seed, counts)
    if choice is None:
        return None
    pair_id, left_side = choice

    # 3. What the page shows
    image_a, image_b = aliased(Image), aliased(Image)
    row = session.execute(
        select(image_a.id, image_a.path, image_b.id, image_b.path, Prompt.text)
        .select_from(ImagePair)
        .join(image_a, ImagePair.image_a_id == image_a.id)
        .join(image_b, ImagePair.image_b_id == image_b.id)
        .join(Prompt, ImagePair.prompt_id == Prompt.id)
        .where(ImagePair.id == pair_id)
    ).one()
    a_id, a_path, b_id, b_path, prompt = row
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
    )
