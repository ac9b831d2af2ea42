"""Live votes as the vote interchange frame (DESIGN.md), for tallies and exports, and the
fingerprint that tells the results page's caches when they changed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db.models import (
    Annotator,
    AnnotatorExclusion,
    Comparison,
    ImagePair,
    Prompt,
    Study,
    Variant,
    Vote,
)
from db.queries.exclusions import excluded_annotator_ids

if TYPE_CHECKING:
    import pandas as pd

# The vote interchange format (DESIGN.md), in this column order.
VOTE_COLUMNS = (
    "study",
    "group",
    "comparison",
    "variant_a",
    "variant_b",
    "a_setting",
    "b_setting",
    "prompt",
    "prompt_kind",
    "checkpoint",
    "seed",
    "annotator",
    "left_variant",
    "choice",
    "shown_at",
    "voted_at",
)


def live_votes_frame(
    s: Session,
    study_id: int | None = None,
    include_qc: bool = False,
    *,
    include_excluded: bool = False,
    with_tags: bool = False,
) -> pd.DataFrame:
    """Every live vote as the vote interchange frame (DESIGN.md), ordered by vote id.

    Votes of annotators excluded from their study (`db.queries.exclusions`) are left out, as
    every tally must; `include_excluded` keeps them and adds a bool `excluded` column.
    Quality-control items are left out unless `include_qc`, which adds a `qc_kind` column;
    `with_tags` adds `tags` (a tuple of the reason tags chosen). Extra columns are ignored by
    the tally and dropped by the interchange writers. Times are UTC.
    """
    import pandas as pd  # here, so pages that only vote do not pay for importing pandas

    variant_a, variant_b = aliased(Variant), aliased(Variant)
    query = (
        select(
            Study.name.label("study"),
            Comparison.group.label("group"),
            Comparison.name.label("comparison"),
            variant_a.name.label("variant_a"),
            variant_b.name.label("variant_b"),
            Comparison.a_setting,
            Comparison.b_setting,
            Prompt.text.label("prompt"),
            Prompt.kind.label("prompt_kind"),
            ImagePair.checkpoint_label.label("checkpoint"),
            ImagePair.seed,
            Annotator.name.label("annotator"),
            Vote.left_side,
            Vote.choice,
            Vote.shown_at,
            Vote.voted_at,
            ImagePair.qc_kind,
            Vote.tags,
            Vote.annotator_id,
            Comparison.study_id,
        )
        .select_from(Vote)
        .join(ImagePair, Vote.pair_id == ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .join(Study, Comparison.study_id == Study.id)
        .join(variant_a, Comparison.variant_a_id == variant_a.id)
        .join(variant_b, Comparison.variant_b_id == variant_b.id)
        .join(Prompt, ImagePair.prompt_id == Prompt.id)
        .join(Annotator, Vote.annotator_id == Annotator.id)
        .where(Vote.superseded_at.is_(None))
        .order_by(Vote.id)
    )
    if study_id is not None:
        query = query.where(Comparison.study_id == study_id)
    if not include_qc:
        query = query.where(ImagePair.qc_kind.is_(None))
    rows = s.execute(query).mappings().all()
    excluded = _excluded_pairs(s, study_id)
    flags = [(row["study_id"], row["annotator_id"]) in excluded for row in rows]
    if not include_excluded:
        rows = [row for row, flag in zip(rows, flags, strict=True) if not flag]

    frame = pd.DataFrame(
        [dict(row) for row in rows],
        columns=[
            *VOTE_COLUMNS[:12],
            "left_side",
            "choice",
            "shown_at",
            "voted_at",
            "qc_kind",
            "tags",
        ],
    )
    frame["tags"] = [tuple(tags or ()) for tags in frame["tags"]]
    frame["excluded"] = pd.Series(flags if include_excluded else [False] * len(frame), dtype=bool)
    frame.insert(
        frame.columns.get_loc("left_side"),
        "left_variant",
        frame["variant_a"].where(frame["left_side"] == "a", frame["variant_b"]),
    )
    frame["seed"] = frame["seed"].astype("int64")
    for column in ("shown_at", "voted_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    columns = list(VOTE_COLUMNS)
    columns += ["qc_kind"] if include_qc else []
    columns += ["tags"] if with_tags else []
    columns += ["excluded"] if include_excluded else []
    return frame[columns]


def _excluded_pairs(s: Session, study_id: int | None) -> set[tuple[int, int]]:
    """(study id, annotator id) of every live exclusion (of one study when given)."""
    if study_id is not None:
        return {(study_id, annotator_id) for annotator_id in excluded_annotator_ids(s, study_id)}
    rows = s.execute(
        select(AnnotatorExclusion.study_id, AnnotatorExclusion.annotator_id).where(
            AnnotatorExclusion.restored_at.is_(None)
        )
    )
    return {(study, annotator) for study, annotator in rows}


def votes_fingerprint(s: Session, study_id: int) -> tuple[int, int, int, int]:
    """(votes, newest vote id, superseded votes, exclusion events) of the study: it changes with
    every vote, undo, exclusion and restore, so it can key a cache of the study's results."""
    votes = s.execute(
        select(func.count(Vote.id), func.max(Vote.id), func.count(Vote.superseded_at))
        .join(ImagePair, Vote.pair_id == ImagePair.id)
        .join(Comparison, ImagePair.comparison_id == Comparison.id)
        .where(Comparison.study_id == study_id)
    ).one()
    exclusions = s.execute(
        select(func.count(AnnotatorExclusion.id), func.count(AnnotatorExclusion.restored_at)).where(
            AnnotatorExclusion.study_id == study_id
        )
    ).one()
    return int(votes[0]), int(votes[1] or 0), int(votes[2]), int(exclusions[0] + exclusions[1])
