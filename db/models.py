"""SQLAlchemy 2 typed models of the arena (DESIGN.md, "Domain model").

The constraints that keep the data sound live here, in the database: one live vote per
(annotator, pair), one image per (checkpoint, prompt, seed, settings hash) including the
reference (null checkpoint), one generation job per image. Paths are relative to the data dir.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Allowed values of the string "enum" columns (CHECK constraints, not native enums, so that
# SQLite and PostgreSQL share one migration and adding a value is a one-line change).
VARIANT_KINDS = ("reference", "vt", "legacy", "images")  # images: imported files, not rendered
PROMPT_KINDS = ("single", "composed")
# Life cycle: draft -> generating -> open -> closed; archived hides a study from every list.
STUDY_STATUSES = ("draft", "generating", "open", "closed", "archived")
VOTABLE_STATUSES = ("open", "generating")  # generating: the pairs whose images exist
QC_KINDS = ("swapped_repeat", "identical")
# The QC kind the planner creates and the scheduler serves: the same pair again, sides swapped.
QC_KIND = "swapped_repeat"
# Image.settings_hash of every imported image (no SD settings shaped it): never rendered.
IMPORTED = "imported"
ROLES = ("admin", "voter")
SIDES = ("a", "b")
CHOICES = ("left", "right", "tie", "both_bad")
TIE_CHOICES = ("tie", "both_bad")  # "same" and "both bad": both count for nobody in every tally
# Which rule served a pair (decision-rules.md, "Allocation"): the full grid (stop-when-settled
# off), the warm-up, an open comparison, or a quality-control repeat.
ALLOCATION_RULES = ("grid", "warmup", "open", "qc")
COMPARISON_STATUSES = ("decided", "equivalent", "capped", "open")
JOB_STATUSES = ("pending", "running", "done", "failed")

REFERENCE_VARIANT = "reference"  # the built-in variant "no deprojector" (plain CLIP hidden states)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def winning_side(left_side: str, choice: str) -> str | None:
    """Who won a vote: the pair's side ("a"/"b") shown at the chosen position; None for a tie.

    The one rule; `evaluation.tally` applies the same rule to whole columns at once, and
    `db.queries.scheduling` in SQL.
    """
    if choice in TIE_CHOICES:
        return None
    right_side = "b" if left_side == "a" else "a"
    return left_side if choice == "left" else right_side


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (SQLite gives it back naive; it is still UTC)."""
    return datetime.now(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Variant(Base):
    """A model design: `reference` (no deprojector), our VT model, or a published legacy one."""

    __tablename__ = "variants"
    __table_args__ = (CheckConstraint(_one_of("kind", VARIANT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkpoints: Mapped[list[Checkpoint]] = relationship(back_populates="variant")


class Checkpoint(Base):
    """One trained state of a variant, a folder under the data dir (e.g. label `epoch-8`)."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("variant_id", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # folder, relative to the data dir
    sha256: Mapped[str] = mapped_column(String(64))  # of the weights file
    params_total: Mapped[int | None] = mapped_column(Integer)
    params_trainable: Mapped[int | None] = mapped_column(Integer)
    hidden_size: Mapped[int | None] = mapped_column(Integer)
    member: Mapped[int | None] = mapped_column(Integer)  # ensemble member; None = the whole model
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    variant: Mapped[Variant] = relationship(back_populates="checkpoints")


class Prompt(Base):
    """Text to render; `composed` when the comma rule splits it into several parts."""

    __tablename__ = "prompts"
    __table_args__ = (CheckConstraint(_one_of("kind", PROMPT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    parts: Mapped[list[Any]] = mapped_column(default=list)


class Study(Base):
    """One evaluation: SD settings, seeds, checkpoint labels, prompts and comparisons."""

    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(_one_of("status", STUDY_STATUSES), name="status"),
        CheckConstraint("qc_rate >= 0 AND qc_rate <= 1", name="qc_rate"),
        CheckConstraint("alpha > 0 AND alpha < 1", name="alpha"),
        CheckConstraint("delta > 0 AND delta < 0.5", name="delta"),
        CheckConstraint("vote_cap IS NULL OR vote_cap > 0", name="vote_cap"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # SDSettings.to_dict(): model_path, scheduler, steps, guidance, width, height, negative_prompt
    settings: Mapped[dict[str, Any]] = mapped_column()
    settings_hash: Mapped[str] = mapped_column(String(64))  # SDSettings.settings_hash()
    seeds: Mapped[list[Any]] = mapped_column(default=list)
    checkpoint_labels: Mapped[list[Any]] = mapped_column(default=list)
    base_variant_id: Mapped[int | None] = mapped_column(ForeignKey("variants.id"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    results_visible_to_voters: Mapped[bool] = mapped_column(Boolean, default=False)
    qc_rate: Mapped[float] = mapped_column(Float, default=0.0)  # share of quality-control items
    # Allocation and decisions (decision-rules.md): serve only open comparisons once warmed up;
    # existing studies migrate with False (the full grid, as before).
    stop_when_settled: Mapped[bool] = mapped_column(Boolean, default=True)
    vote_cap: Mapped[int | None] = mapped_column(Integer)  # per comparison; None = no cap
    alpha: Mapped[float] = mapped_column(Float, default=0.05)  # e-value threshold is 1 / alpha
    delta: Mapped[float] = mapped_column(Float, default=0.1)  # equivalence margin around 0.5
    reason_tags: Mapped[list[Any]] = mapped_column(default=list)  # up to 6 admin-defined tags
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    base_variant: Mapped[Variant | None] = relationship()
    study_prompts: Mapped[list[StudyPrompt]] = relationship(
        back_populates="study", order_by="StudyPrompt.position", cascade="all, delete-orphan"
    )
    comparisons: Mapped[list[Comparison]] = relationship(
        back_populates="study", order_by="Comparison.id", cascade="all, delete-orphan"
    )


class StudyPrompt(Base):
    """A prompt used by a study, in the study's order."""

    __tablename__ = "study_prompts"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    study: Mapped[Study] = relationship(back_populates="study_prompts")
    prompt: Mapped[Prompt] = relationship()


class Comparison(Base):
    """A set (組): two variants of a study that differ in one hyperparameter (`group`).

    Side A holds the study's base variant's value (`a_setting`); `b_setting` is the other value.
    """

    __tablename__ = "comparisons"
    __table_args__ = (
        UniqueConstraint("study_id", "variant_a_id", "variant_b_id"),
        CheckConstraint("variant_a_id <> variant_b_id", name="distinct_variants"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    variant_a_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    variant_b_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    group: Mapped[str] = mapped_column(String(64))  # the hyperparameter they differ in
    a_setting: Mapped[str] = mapped_column(String(64))
    b_setting: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(160))  # "<variant_a> vs <variant_b>"

    study: Mapped[Study] = relationship(back_populates="comparisons")
    variant_a: Mapped[Variant] = relationship(foreign_keys=[variant_a_id])
    variant_b: Mapped[Variant] = relationship(foreign_keys=[variant_b_id])


class Image(Base):
    """One rendered image, shared by every pair and study that needs it.

    Unique on (checkpoint, prompt, seed, settings hash); the reference (checkpoint NULL) gets its
    own partial unique index because NULLs are distinct in a plain unique constraint.
    `path` stays NULL until the file is written (relative to the data dir).
    """

    __tablename__ = "images"
    __table_args__ = (
        Index(
            "uq_images_checkpoint_prompt_seed_settings",
            "checkpoint_id",
            "prompt_id",
            "seed",
            "settings_hash",
            unique=True,
            sqlite_where=text("checkpoint_id IS NOT NULL"),
            postgresql_where=text("checkpoint_id IS NOT NULL"),
        ),
        Index(
            "uq_images_reference_prompt_seed_settings",
            "prompt_id",
            "seed",
            "settings_hash",
            unique=True,
            sqlite_where=text("checkpoint_id IS NULL"),
            postgresql_where=text("checkpoint_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    seed: Mapped[int] = mapped_column(Integer)
    settings_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkpoint: Mapped[Checkpoint | None] = relationship()
    prompt: Mapped[Prompt] = relationship()


class ImagePair(Base):
    """One item to judge: the same prompt, seed and checkpoint label rendered by A and by B.

    `qc_kind` marks quality-control items (NULL for regular pairs); there is at most one
    regular pair and one of each QC kind per (comparison, prompt, seed, checkpoint label).
    """

    __tablename__ = "image_pairs"
    __table_args__ = (
        CheckConstraint(f"qc_kind IS NULL OR {_one_of('qc_kind', QC_KINDS)}", name="qc_kind"),
        Index(
            "uq_image_pairs_regular",
            "comparison_id",
            "prompt_id",
            "seed",
            "checkpoint_label",
            unique=True,
            sqlite_where=text("qc_kind IS NULL"),
            postgresql_where=text("qc_kind IS NULL"),
        ),
        Index(
            "uq_image_pairs_qc",
            "comparison_id",
            "prompt_id",
            "seed",
            "checkpoint_label",
            "qc_kind",
            unique=True,
            sqlite_where=text("qc_kind IS NOT NULL"),
            postgresql_where=text("qc_kind IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), index=True
    )
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    seed: Mapped[int] = mapped_column(Integer)
    checkpoint_label: Mapped[str] = mapped_column(String(64))
    image_a_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    image_b_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    qc_kind: Mapped[str | None] = mapped_column(String(16))

    comparison: Mapped[Comparison] = relationship()
    prompt: Mapped[Prompt] = relationship()
    image_a: Mapped[Image] = relationship(foreign_keys=[image_a_id])
    image_b: Mapped[Image] = relationship(foreign_keys=[image_b_id])


class Annotator(Base):
    """A person who votes (`voter`) or runs the arena (`admin`); only a token hash is stored."""

    __tablename__ = "annotators"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="voter")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    # The token is the ARENA_ADMIN_TOKEN secret: unsetting the variable replaces it (db.auth).
    token_from_env: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Vote(Base):
    """One judgement. Stores the side shown on the left, never only the winner.

    Undo sets `superseded_at` (and later `superseded_by_id`) instead of deleting; the partial
    unique index allows exactly one live (non-superseded) vote per (annotator, pair).
    """

    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint(_one_of("choice", CHOICES), name="choice"),
        CheckConstraint(_one_of("left_side", SIDES), name="left_side"),
        CheckConstraint(
            f"allocation_rule IS NULL OR {_one_of('allocation_rule', ALLOCATION_RULES)}",
            name="allocation_rule",
        ),
        CheckConstraint(
            f"comparison_status IS NULL OR {_one_of('comparison_status', COMPARISON_STATUSES)}",
            name="comparison_status",
        ),
        Index(
            "uq_votes_live_annotator_pair",
            "annotator_id",
            "pair_id",
            unique=True,
            sqlite_where=text("superseded_at IS NULL"),
            postgresql_where=text("superseded_at IS NULL"),
        ),
        Index("ix_votes_pair_id", "pair_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("image_pairs.id"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    left_image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    left_side: Mapped[str] = mapped_column(String(1))  # "a" or "b": the pair's side on the left
    choice: Mapped[str] = mapped_column(String(8))  # "left", "right", "tie" or "both_bad"
    tags: Mapped[list[Any]] = mapped_column(default=list)  # the study's reason tags chosen
    # The scheduler's rule and the comparison's status when the pair was served (may be NULL
    # for votes cast before these were recorded).
    allocation_rule: Mapped[str | None] = mapped_column(String(16))
    comparison_status: Mapped[str | None] = mapped_column(String(16))
    shown_at: Mapped[datetime] = mapped_column()
    voted_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column()
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("votes.id"))

    pair: Mapped[ImagePair] = relationship()
    annotator: Mapped[Annotator] = relationship()
    left_image: Mapped[Image] = relationship()


class AnnotatorExclusion(Base):
    """An admin left an annotator's votes out of a study's tallies; reversible, never deleted.

    The exclusion is live while `restored_at` is NULL; at most one live exclusion per
    (study, annotator), enforced by a partial unique index.
    """

    __tablename__ = "annotator_exclusions"
    __table_args__ = (
        Index(
            "uq_annotator_exclusions_live",
            "study_id",
            "annotator_id",
            unique=True,
            sqlite_where=text("restored_at IS NULL"),
            postgresql_where=text("restored_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    excluded_by_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    excluded_at: Mapped[datetime] = mapped_column(default=utcnow)
    restored_at: Mapped[datetime | None] = mapped_column()

    annotator: Mapped[Annotator] = relationship(foreign_keys=[annotator_id])


class GenerationJob(Base):
    """One image to render. Unique per image, so studies that share an image share its job."""

    __tablename__ = "generation_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),
        Index("ix_generation_jobs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship()
    image: Mapped[Image] = relationship()
