"""The scheduler's queries (`evaluation.scheduling.next_pair` runs them after every vote).

Statements are built once at import (building costs more than running them on the vote page's
hot path), take bind parameters and run as Core statements on the session's connection (no ORM
row processing: the open pairs of a big comparison are thousands of rows). Counts over all annotators leave out the votes of
annotators with a live exclusion from the study (`AnnotatorExclusion.restored_at IS NULL`).
"""

from __future__ import annotations

from sqlalchemy import Row, and_, bindparam, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from db.models import (
    QC_KIND,
    AnnotatorExclusion,
    Comparison,
    Image,
    ImagePair,
    Prompt,
    Study,
    Vote,
)

_COMPARISONS = select(Comparison.id).where(Comparison.study_id == bindparam("study_id"))
_EXCLUDED = select(AnnotatorExclusion.annotator_id).where(
    AnnotatorExclusion.study_id == bindparam("study_id"),
    AnnotatorExclusion.restored_at.is_(None),
)

_STUDY_ALLOCATION = select(
    Study.qc_rate, Study.stop_when_settled, Study.alpha, Study.delta, Study.vote_cap
).where(Study.id == bindparam("study_id"))

_WITH_PAIRS = (
    select(Comparison.id)
    .where(
        Comparison.study_id == bindparam("study_id"),
        exists().where(ImagePair.comparison_id == Comparison.id, ImagePair.qc_kind.is_(None)),
    )
    .order_by(Comparison.id)
)

_OWN_VOTES = (
    select(ImagePair.comparison_id, func.count(Vote.id))
    .join(ImagePair, Vote.pair_id == ImagePair.id)
    .where(
        Vote.annotator_id == bindparam("annotator_id"),
        Vote.superseded_at.is_(None),
        ImagePair.comparison_id.in_(_COMPARISONS),
        ImagePair.qc_kind.is_(None),
    )
    .group_by(ImagePair.comparison_id)
)

# A won: "left" with A on the left, or "right" with B on the left; ties are every other choice
_A_WON = or_(
    and_(Vote.choice == "left", Vote.left_side == "a"),
    and_(Vote.choice == "right", Vote.left_side == "b"),
)
_B_WON = or_(
    and_(Vote.choice == "left", Vote.left_side == "b"),
    and_(Vote.choice == "right", Vote.left_side == "a"),
)
_OUTCOMES = (
    select(
        ImagePair.comparison_id,
        func.sum(case((_A_WON, 1), else_=0)),
        func.sum(case((_B_WON, 1), else_=0)),
        func.count(Vote.id),
    )
    .join(ImagePair, Vote.pair_id == ImagePair.id)
    .where(
        ImagePair.comparison_id.in_(_COMPARISONS),
        ImagePair.qc_kind.is_(None),
        Vote.superseded_at.is_(None),
        Vote.annotator_id.not_in(_EXCLUDED),
    )
    .group_by(ImagePair.comparison_id)
)

_IMAGE_A, _IMAGE_B = aliased(Image), aliased(Image)
_OWN_LIVE = aliased(Vote)
_OPEN_PAIRS = (
    select(ImagePair.id, ImagePair.prompt_id, ImagePair.checkpoint_label, ImagePair.seed)
    .join(_IMAGE_A, ImagePair.image_a_id == _IMAGE_A.id)
    .join(_IMAGE_B, ImagePair.image_b_id == _IMAGE_B.id)
    .outerjoin(
        _OWN_LIVE,
        and_(
            _OWN_LIVE.pair_id == ImagePair.id,
            _OWN_LIVE.annotator_id == bindparam("annotator_id"),
            _OWN_LIVE.superseded_at.is_(None),
        ),
    )
    .where(
        ImagePair.comparison_id == bindparam("comparison_id"),
        ImagePair.qc_kind.is_(None),
        _IMAGE_A.path.is_not(None),
        _IMAGE_B.path.is_not(None),
        _OWN_LIVE.id.is_(None),
    )
)

_OPEN_PAIR_IDS = _OPEN_PAIRS.with_only_columns(ImagePair.id)

_CELL_VOTES = (
    select(ImagePair.prompt_id, ImagePair.checkpoint_label, ImagePair.seed, func.count(Vote.id))
    .join(ImagePair, Vote.pair_id == ImagePair.id)
    .where(
        ImagePair.comparison_id == bindparam("comparison_id"),
        ImagePair.qc_kind.is_(None),
        Vote.superseded_at.is_(None),
        Vote.annotator_id.not_in(_EXCLUDED),
    )
    .group_by(ImagePair.prompt_id, ImagePair.checkpoint_label, ImagePair.seed)
)

_QC_VOTES = (
    select(func.count(Vote.id))
    .join(ImagePair, Vote.pair_id == ImagePair.id)
    .where(
        Vote.annotator_id == bindparam("annotator_id"),
        Vote.superseded_at.is_(None),
        ImagePair.comparison_id.in_(_COMPARISONS),
        ImagePair.qc_kind == QC_KIND,
    )
)

_REGULAR, _ORIGINAL, _QC_VOTE = aliased(ImagePair), aliased(Vote), aliased(Vote)
_QC_CANDIDATES = (
    select(ImagePair.id, ImagePair.comparison_id, _ORIGINAL.left_side, _ORIGINAL.voted_at)
    .join(
        _REGULAR,
        and_(
            _REGULAR.comparison_id == ImagePair.comparison_id,
            _REGULAR.prompt_id == ImagePair.prompt_id,
            _REGULAR.seed == ImagePair.seed,
            _REGULAR.checkpoint_label == ImagePair.checkpoint_label,
            _REGULAR.qc_kind.is_(None),
        ),
    )
    .join(
        _ORIGINAL,
        and_(
            _ORIGINAL.pair_id == _REGULAR.id,
            _ORIGINAL.annotator_id == bindparam("annotator_id"),
            _ORIGINAL.superseded_at.is_(None),
        ),
    )
    .outerjoin(
        _QC_VOTE,
        and_(
            _QC_VOTE.pair_id == ImagePair.id,
            _QC_VOTE.annotator_id == bindparam("annotator_id"),
            _QC_VOTE.superseded_at.is_(None),
        ),
    )
    .where(
        ImagePair.comparison_id.in_(_COMPARISONS),
        ImagePair.qc_kind == QC_KIND,
        _QC_VOTE.id.is_(None),
    )
)

_SIDES_SHOWN = (
    select(Vote.left_side, func.count(Vote.id))
    .where(Vote.pair_id == bindparam("pair_id"), Vote.superseded_at.is_(None))
    .group_by(Vote.left_side)
)

_PAIR_VIEW = (
    select(_IMAGE_A.id, _IMAGE_A.path, _IMAGE_B.id, _IMAGE_B.path, Prompt.text)
    .select_from(ImagePair)
    .join(_IMAGE_A, ImagePair.image_a_id == _IMAGE_A.id)
    .join(_IMAGE_B, ImagePair.image_b_id == _IMAGE_B.id)
    .join(Prompt, ImagePair.prompt_id == Prompt.id)
    .where(ImagePair.id == bindparam("pair_id"))
)


def _run(s: Session, statement, params: dict):
    return s.connection().execute(statement, params)


def study_allocation(s: Session, study_id: int) -> Row | None:
    """(qc_rate, stop_when_settled, alpha, delta, vote_cap) of the study, None if it is absent."""
    return _run(s, _STUDY_ALLOCATION, {"study_id": study_id}).one_or_none()


def study_comparisons(s: Session, study_id: int) -> list[int]:
    """Ids of the study's comparisons that have regular (non-QC) pairs, ascending."""
    return list(_run(s, _WITH_PAIRS, {"study_id": study_id}).scalars())


def own_votes(s: Session, annotator_id: int, study_id: int) -> dict[int, int]:
    """comparison id -> the annotator's live votes on its regular pairs (absent: none)."""
    params = {"annotator_id": annotator_id, "study_id": study_id}
    return dict(_run(s, _OWN_VOTES, params).all())


def comparison_outcomes(s: Session, study_id: int) -> dict[int, tuple[int, int, int]]:
    """comparison id -> (A wins, B wins, ties) over the live votes on its regular pairs, excluded
    annotators left out (absent: no votes)."""
    rows = _run(s, _OUTCOMES, {"study_id": study_id}).all()
    return {cid: (int(a), int(b), int(n - a - b)) for cid, a, b, n in rows}


def open_pairs(s: Session, annotator_id: int, comparison_id: int) -> list[Row]:
    """(id, prompt_id, checkpoint_label, seed) of the comparison's regular pairs with both
    images rendered and no live vote of the annotator."""
    params = {"annotator_id": annotator_id, "comparison_id": comparison_id}
    return list(_run(s, _OPEN_PAIRS, params).all())


def open_pair_ids(s: Session, annotator_id: int, comparison_id: int) -> list[int]:
    """Just the ids of `open_pairs` (the full grid needs nothing else)."""
    params = {"annotator_id": annotator_id, "comparison_id": comparison_id}
    return list(_run(s, _OPEN_PAIR_IDS, params).scalars())


def cell_votes(s: Session, study_id: int, comparison_id: int) -> list[Row]:
    """(prompt_id, checkpoint_label, seed, live votes) of the comparison's regular pairs that
    have votes, excluded annotators left out."""
    params = {"study_id": study_id, "comparison_id": comparison_id}
    return list(_run(s, _CELL_VOTES, params).all())


def qc_votes(s: Session, annotator_id: int, study_id: int) -> int:
    """The annotator's live votes on the study's QC repeats."""
    params = {"annotator_id": annotator_id, "study_id": study_id}
    return _run(s, _QC_VOTES, params).scalar_one()


def qc_candidates(s: Session, annotator_id: int, study_id: int) -> list[Row]:
    """(id, comparison_id, left_side, voted_at) of QC repeats the annotator has not judged whose
    original pair they have judged (left_side and voted_at of that original vote)."""
    params = {"annotator_id": annotator_id, "study_id": study_id}
    return list(_run(s, _QC_CANDIDATES, params).all())


def sides_shown(s: Session, pair_id: int) -> dict[str, int]:
    """'a' / 'b' -> how many live votes on the pair had that side on the left."""
    return dict(_run(s, _SIDES_SHOWN, {"pair_id": pair_id}).all())


def pair_view(s: Session, pair_id: int) -> Row:
    """(image A id, A path, image B id, B path, prompt text) of a pair."""
    return _run(s, _PAIR_VIEW, {"pair_id": pair_id}).one()
