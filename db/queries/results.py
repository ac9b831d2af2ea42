"""Live votes as the vote interchange frame (DESIGN.md), for tallies and exports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.models import Annotator, Comparison, ImagePair, Prompt, Study, Variant, Vote

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
    s: Session, study_id: int | None = None, include_qc: bool = False
) -> pd.DataFrame:
    """Every live vote as the vote interchange frame (DESIGN.md), ordered by vote id.

    Quality-control items are left out unless `include_qc`, which adds a `qc_kind` column
    (extra columns are ignored by the tally). Times are UTC.
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

    frame = pd.DataFrame(
        [dict(row) for row in rows],
        columns=[*VOTE_COLUMNS[:12], "left_side", "choice", "shown_at", "voted_at", "qc_kind"],
    )
    frame.insert(
        frame.columns.get_loc("left_side"),
        "left_variant",
        frame["variant_a"].where(frame["left_side"] == "a", frame["variant_b"]),
    )
    frame["seed"] = frame["seed"].astype("int64")
    for column in ("shown_at", "voted_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    columns = [*VOTE_COLUMNS, "qc_kind"] if include_qc else list(VOTE_COLUMNS)
    return frame[columns]
