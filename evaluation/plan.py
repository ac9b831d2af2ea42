"""The plan of a study, written to the database: comparisons x checkpoint labels x prompts x seeds.

`plan_summary` previews the counts; `create_study` validates a `StudySpec` and writes the Study,
its Prompts, Comparisons, the distinct Images (shared across pairs and studies), the ImagePairs
and a GenerationJob for every image not rendered yet. Functions take a Session and never commit.

Imported variants (kind `images`, evaluation.imports) are matched by (checkpoint label, prompt,
seed): a pair that needs an image such a variant lacks is left out and listed, never rendered.
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import (
    IMPORTED,
    QC_KIND,
    Checkpoint,
    Comparison,
    GenerationJob,
    Image,
    ImagePair,
    Prompt,
    Study,
    StudyPrompt,
    Variant,
)
from db.queries import plan as queries
from deprojector.prompts import prompt_kind, prompt_parts
from deprojector.settings import SDSettings
from evaluation.imports import IMAGES_KIND
from evaluation.study import (
    REFERENCE,
    ComparisonSpec,
    StudyError,
    check_study_name,
    derive_comparisons,
)


@dataclass(frozen=True)
class StudySpec:
    """Everything a study is made of, as names and plain values (what the studies page collects)."""

    name: str
    variants: tuple[str, ...]  # variant names; include "reference" to compare against it
    base: str  # the candidate: side A of each set holds its setting
    checkpoint_labels: tuple[str, ...]  # e.g. ("epoch-8", "epoch-10"); every variant needs each
    prompts: tuple[str, ...]  # texts; the comma rule tags each single or composed
    seeds: tuple[int, ...] = (0,)
    settings: dict[str, Any] = field(default_factory=dict)  # deprojector.generate.SDSettings fields
    reference_comparisons: tuple[str, ...] = ()  # variants also compared with "reference"
    qc_rate: float = 0.0  # share of a voter's items that are quality-control repeats, in [0, 1]
    results_visible_to_voters: bool = False
    # keep only these groups' one-difference sets (reference comparisons always stay); () = all
    groups: tuple[str, ...] = ()
    # keep only these (variant, variant) sets, either order (reference ones always stay); () = all
    comparisons: tuple[tuple[str, str], ...] = ()
    # allocation (Study columns): stop serving a comparison once it is settled, per-comparison
    # vote cap (None = none), e-value threshold 1/alpha, equivalence margin delta around 0.5
    stop_when_settled: bool = True
    vote_cap: int | None = None
    alpha: float = 0.05
    delta: float = 0.1
    reason_tags: tuple[str, ...] = ()  # up to MAX_REASON_TAGS short tags voters may attach


MAX_REASON_TAGS = 6


@dataclass(frozen=True)
class MissingImage:
    """An image a pair needs that an imported variant does not have (the pair is left out)."""

    variant: str
    checkpoint_label: str
    prompt: str
    seed: int


@dataclass(frozen=True)
class PlanSummary:
    """What a spec would create, for a preview before `create_study`."""

    comparisons: list[ComparisonSpec]
    comparisons_by_group: dict[str, int]
    pairs: int  # regular image pairs (items to judge)
    qc_pairs: int  # quality-control repeats planned beside them
    images: int  # distinct images the pairs need
    images_rendered: int  # of those, already rendered (by this or another study)
    unpaired_variants: list[str]  # chosen variants in no comparison (differ in 2+ settings)
    # prompts longer than CLIP's 77 tokens (by the SD folder's tokenizer): cut when rendered
    truncated_prompts: list[str] = field(default_factory=list)
    # images imported variants lack, in plan order; `pairs_left_out` pairs need one of them
    missing_images: list[MissingImage] = field(default_factory=list)
    pairs_left_out: int = 0


@dataclass(frozen=True)
class _Plan:
    """A validated spec resolved against the database (nothing written yet)."""

    comparisons: list[ComparisonSpec]
    variants: dict[str, Variant]
    checkpoints: dict[tuple[str, str], Checkpoint]  # (variant, label) -> checkpoint
    prompts: list[str]
    settings: dict[str, Any]
    settings_hash: str
    imported: frozenset[str] = frozenset()  # names of the variants of kind `images`

    def image_key(self, variant: str, label: str, prompt: str, seed: int) -> tuple:
        """One distinct image: (checkpoint id or None for the reference, prompt text, seed) when
        rendered, (IMPORTED, variant, label, prompt, seed) when imported."""
        if variant in self.imported:
            return (IMPORTED, variant, label, prompt, seed)
        if variant == REFERENCE:
            return (None, prompt, seed)
        return (self.checkpoints[(variant, label)].id, prompt, seed)

    def pair_keys(self, spec: StudySpec):
        """Every (comparison, label, prompt, seed) of the study, in a stable order."""
        return itertools.product(self.comparisons, spec.checkpoint_labels, self.prompts, spec.seeds)


def sd_settings(settings: dict[str, Any]) -> SDSettings:
    """`deprojector.settings.SDSettings` from a dict, with a StudyError naming a bad field."""
    try:
        return SDSettings(**settings)
    except TypeError as exc:
        raise StudyError(
            f"settings: {exc}; expected the fields of deprojector.settings.SDSettings"
        ) from exc
    except ValueError as exc:  # a field's value: SDSettings names it and the fix
        raise StudyError(f"settings: {exc}") from exc


def _check_text(field: str, text: str) -> None:
    """StudyError when `text` cannot be stored or shown safely: not valid Unicode (a lone
    surrogate from undecodable bytes) or holding a control character (NUL, escape, newline)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StudyError(
            f"{field}: {text!r} is not valid UTF-8 text; re-type it or save the prompt file as "
            "UTF-8"
        ) from None
    bad = next((ch for ch in text if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise StudyError(f"{field}: {text!r} contains the control character {bad!r}; remove it")


def _check_allocation(spec: StudySpec) -> None:
    if not 0.0 < spec.alpha < 1.0:
        raise StudyError(f"alpha: {spec.alpha!r} is outside (0, 1); e.g. 0.05")
    if not 0.0 < spec.delta < 0.5:
        raise StudyError(f"delta: {spec.delta!r} is outside (0, 0.5); e.g. 0.1")
    if spec.vote_cap is not None and (isinstance(spec.vote_cap, bool) or spec.vote_cap < 1):
        raise StudyError(f"vote_cap: {spec.vote_cap!r}; expected a positive integer or none")
    tags = list(spec.reason_tags)
    if len(tags) > MAX_REASON_TAGS or len(set(tags)) != len(tags):
        raise StudyError(f"reason_tags: {tags!r}; expected at most {MAX_REASON_TAGS} distinct tags")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 32:
            raise StudyError(f"reason_tags[{i}]: {tag!r}; expected 1 to 32 characters")
        _check_text(f"reason_tags[{i}]", tag)


def _select(comparisons: list[ComparisonSpec], spec: StudySpec) -> list[ComparisonSpec]:
    """The derived comparisons `spec.groups` / `spec.comparisons` keep (reference ones stay)."""
    derived = {c.group for c in comparisons if c.variant_a != REFERENCE}
    for group in spec.groups:
        if group not in derived:
            raise StudyError(
                f"groups: {group!r} is not a group of these variants ({sorted(derived)}); "
                "drop it or add variants that differ in it"
            )
    pairs = {frozenset((c.variant_a, c.variant_b)) for c in comparisons}
    for i, pair in enumerate(spec.comparisons):
        if len(pair) != 2 or frozenset(pair) not in pairs:
            raise StudyError(
                f"comparisons[{i}]: {list(pair)!r} is not two variants of this study one "
                "hyperparameter apart; fix the names or drop it"
            )
    wanted = {frozenset(pair) for pair in spec.comparisons}
    return [
        c
        for c in comparisons
        if c.variant_a == REFERENCE
        or (
            (not spec.groups or c.group in spec.groups)
            and (not wanted or frozenset((c.variant_a, c.variant_b)) in wanted)
        )
    ]


def _resolve(session: Session, spec: StudySpec, existing_ok: bool = False) -> _Plan:
    # 1. Plain fields
    if not spec.name.strip():
        raise StudyError(f"name: {spec.name!r} is empty; give the study a name")
    _check_text("name", spec.name)
    check_study_name(spec.name)
    if not existing_ok and queries.study_named(session, spec.name) is not None:
        raise StudyError(f"name: a study named {spec.name!r} already exists; choose another name")
    _check_allocation(spec)
    if not 0.0 <= spec.qc_rate <= 1.0:
        raise StudyError(f"qc_rate: {spec.qc_rate!r} is outside [0, 1]; e.g. 0.1 for 10 %")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds):
        raise StudyError(f"seeds: {list(spec.seeds)!r}; expected one or more distinct integers")
    if not spec.checkpoint_labels or len(set(spec.checkpoint_labels)) != len(
        spec.checkpoint_labels
    ):
        raise StudyError(
            f"checkpoint_labels: {list(spec.checkpoint_labels)!r}; expected one or more "
            "distinct labels, e.g. ['epoch-8', 'epoch-10']"
        )
    if not spec.prompts:
        raise StudyError("prompts: none given; expected at least one prompt text")
    prompts = []
    for i, text in enumerate(spec.prompts):
        if not isinstance(text, str) or not text.strip():
            raise StudyError(f"prompts[{i}]: {text!r} is empty; expected some text")
        _check_text(f"prompts[{i}]", text)
        if text.strip() in prompts:
            raise StudyError(f"prompts[{i}]: {text.strip()!r} appears twice; list each once")
        prompts.append(text.strip())

    # 2. Variants and their checkpoints
    names = list(dict.fromkeys(spec.variants))
    for name in spec.reference_comparisons:
        if name not in names or name == REFERENCE:
            raise StudyError(
                f"reference_comparisons: {name!r} is not one of this study's deprojector "
                f"variants {[n for n in names if n != REFERENCE]}; add it to variants first"
            )
    if spec.reference_comparisons:
        names = list(dict.fromkeys([*names, REFERENCE]))
    rows = queries.variants_by_name(session, names)
    for name in names:
        if name not in rows:
            if name == REFERENCE:
                continue  # the built-in reference is created on demand by create_study
            known = queries.variant_names(session)
            raise StudyError(f"variants: unknown variant {name!r}; registered: {known}")
    comparisons = derive_comparisons(
        {name: rows[name].hyperparameters if name in rows else {} for name in names},
        spec.base,
        include_reference=list(spec.reference_comparisons),
    )
    comparisons = _select(comparisons, spec)
    if not comparisons:
        raise StudyError(
            f"variants: no two of {names} differ in exactly one hyperparameter and no "
            "reference_comparisons were given; add variants one change away from the base"
        )
    used = {v for c in comparisons for v in (c.variant_a, c.variant_b)} - {REFERENCE}
    checkpoints = queries.checkpoints_by_label(session, used)
    imported = frozenset(name for name in used if rows[name].kind == IMAGES_KIND)
    for name in sorted(used - imported):  # an imported variant's missing label: missing images
        for label in spec.checkpoint_labels:
            if (name, label) not in checkpoints:
                has = sorted(lab for (v, lab) in checkpoints if v == name)
                raise StudyError(
                    f"checkpoint_labels: variant {name!r} has no checkpoint labelled {label!r} "
                    f"(it has {has}); register it or drop the label"
                )

    # 3. Settings: SDSettings validates the fields and defines the hash images are keyed by;
    # a study of imported variants only renders nothing and may leave them out
    if not spec.settings and used == imported and REFERENCE not in names:
        settings, settings_hash = {}, IMPORTED
    else:
        sd = sd_settings(spec.settings)
        settings, settings_hash = sd.to_dict(), sd.settings_hash()
    return _Plan(
        comparisons=comparisons,
        variants=rows,
        checkpoints=checkpoints,
        prompts=prompts,
        settings=settings,
        settings_hash=settings_hash,
        imported=imported,
    )


def _split_pairs(plan: _Plan, spec: StudySpec, existing: dict[tuple, Image]):
    """(pair keys kept, their distinct image keys, missing imported images, pairs left out).

    A pair is left out when one of its sides is an imported image that does not exist."""
    kept, keys, missing, left_out = [], set(), {}, 0
    for key in plan.pair_keys(spec):
        comparison, label, prompt, seed = key
        sides = [
            plan.image_key(v, label, prompt, seed)
            for v in (comparison.variant_a, comparison.variant_b)
        ]
        lacking = [k for k in sides if k[0] == IMPORTED and k not in existing]
        for k in lacking:
            missing.setdefault(k, MissingImage(k[1], k[2], k[3], k[4]))
        if lacking:
            left_out += 1
            continue
        kept.append(key)
        keys.update(sides)
    return kept, keys, list(missing.values()), left_out


def _existing_images(session: Session, plan: _Plan) -> dict[tuple, Image]:
    """Images already in the database for this plan's prompts and settings, by image key
    (imported images of the plan's imported variants included)."""
    found: dict[tuple, Image] = dict(
        queries.rendered_images(session, plan.prompts, plan.settings_hash)
    )
    if plan.imported:
        imported = queries.imported_images(session, plan.prompts, plan.imported, IMPORTED)
        found.update({(IMPORTED, *key): image for key, image in imported.items()})
    return found


CLIP_TOKENS = 77  # CLIP's context, start and end tokens included


def truncated_prompts(prompts: list[str], model_path: str) -> list[str]:
    """The prompts longer than 77 CLIP tokens by the tokenizer of the SD folder `model_path`
    (relative paths are under the data dir); [] when the folder has no tokenizer/."""
    from db.engine import data_dir

    folder = Path(model_path)
    folder = (folder if folder.is_absolute() else data_dir() / folder) / "tokenizer"
    if not folder.is_dir():
        return []
    tokenizer = _tokenizer(str(folder))
    lengths = [len(ids) for ids in tokenizer(prompts, verbose=False)["input_ids"]]
    return [text for text, n in zip(prompts, lengths, strict=True) if n > CLIP_TOKENS]


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str):
    """The CLIP tokenizer saved in `folder`, loaded once (the studies page previews often)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def plan_summary(session: Session, spec: StudySpec) -> PlanSummary:
    """Validate `spec` and count what `create_study` would make, without writing anything."""
    plan = _resolve(session, spec)
    existing = _existing_images(session, plan)
    kept, keys, missing, left_out = _split_pairs(plan, spec, existing)
    pairs = len(kept)
    return PlanSummary(
        comparisons=plan.comparisons,
        comparisons_by_group=dict(Counter(c.group for c in plan.comparisons)),
        pairs=pairs,
        qc_pairs=pairs if spec.qc_rate > 0 else 0,
        images=len(keys),
        images_rendered=sum(1 for k in keys if k in existing and existing[k].path is not None),
        unpaired_variants=[
            name
            for name in dict.fromkeys(spec.variants)
            if not any(name in (c.variant_a, c.variant_b) for c in plan.comparisons)
        ],
        truncated_prompts=(
            truncated_prompts(plan.prompts, plan.settings["model_path"]) if plan.settings else []
        ),
        missing_images=missing,
        pairs_left_out=left_out,
    )


def imported_gaps(
    session: Session, spec: StudySpec, existing_ok: bool = False
) -> tuple[list[MissingImage], int]:
    """(images the imported variants lack, pairs left out for them), without the rest of
    `plan_summary` (no tokenizer is loaded). Validates `spec`."""
    plan = _resolve(session, spec, existing_ok=existing_ok)
    _, _, missing, left_out = _split_pairs(plan, spec, _existing_images(session, plan))
    return missing, left_out


def _reference_variant(session: Session) -> Variant:
    variant = queries.variants_by_name(session, [REFERENCE]).get(REFERENCE)
    if variant is None:
        variant = Variant(
            name=REFERENCE, kind="reference", hyperparameters={}, notes="no deprojector"
        )
        session.add(variant)
        session.flush()
    return variant


def create_study(session: Session, spec: StudySpec) -> Study:
    """Validate `spec` and write the study with its pairs, images and generation jobs.

    Images are get-or-create on (checkpoint, prompt, seed, settings hash), so an image another
    study (or another pair) needs is made once; the reference's images have no checkpoint.
    Quality-control repeats: when `qc_rate` > 0, each regular pair gets a `swapped_repeat` twin
    here, at planning (same images; the scheduler shows it with the sides the annotator did not
    see). Jobs are created for images without a file and without a job (never for imported
    images: pairs that need an image an imported variant lacks are left out, see plan_summary).
    Does not commit.
    """
    # 1. Validate and resolve names against the database
    plan = _resolve(session, spec)
    kept, keys, lacking, left_out = _split_pairs(plan, spec, _existing_images(session, plan))
    if not kept:
        raise StudyError(
            f"pairs: all {left_out} pairs need images the imported variants lack (e.g. "
            f"{lacking[0]}); import those images or choose other prompts, seeds or labels"
        )
    if REFERENCE in {v for c in plan.comparisons for v in (c.variant_a, c.variant_b)}:
        plan.variants[REFERENCE] = _reference_variant(session)

    # 2. Prompts (get-or-create by text; kind by the comma rule)
    prompt_rows = queries.prompts_by_text(session, plan.prompts)
    for text in plan.prompts:
        if text not in prompt_rows:
            prompt_rows[text] = Prompt(text=text, kind=prompt_kind(text), parts=prompt_parts(text))
            session.add(prompt_rows[text])

    # 3. The study, its prompts and comparisons
    study = Study(
        name=spec.name,
        settings=plan.settings,
        settings_hash=plan.settings_hash,
        seeds=list(spec.seeds),
        checkpoint_labels=list(spec.checkpoint_labels),
        base_variant_id=plan.variants[spec.base].id,
        status="draft",
        results_visible_to_voters=spec.results_visible_to_voters,
        qc_rate=spec.qc_rate,
        stop_when_settled=spec.stop_when_settled,
        vote_cap=spec.vote_cap,
        alpha=spec.alpha,
        delta=spec.delta,
        reason_tags=list(spec.reason_tags),
    )
    session.add(study)
    for position, text in enumerate(plan.prompts):
        study.study_prompts.append(StudyPrompt(prompt=prompt_rows[text], position=position))
    comparison_rows = {}
    for c in plan.comparisons:
        comparison_rows[c.name] = Comparison(
            variant_a_id=plan.variants[c.variant_a].id,
            variant_b_id=plan.variants[c.variant_b].id,
            group=c.group,
            a_setting=c.a_setting,
            b_setting=c.b_setting,
            name=c.name,
        )
        study.comparisons.append(comparison_rows[c.name])
    session.flush()

    # 4-6. Images, pairs and jobs
    missing = _add_pairs(session, study, plan, spec, kept, keys, prompt_rows, comparison_rows)
    study.status = "draft" if missing else "open"
    session.flush()
    return study


def _add_pairs(session, study, plan, spec, kept, keys, prompt_rows, comparison_rows) -> list[int]:
    """Images (get-or-create), the pairs in `kept` that do not exist yet (and QC twins) and
    jobs; returns the ids of the images still without a file."""
    # 4. Distinct images, shared with pairs and studies that already need them
    existing = _existing_images(session, plan)
    images = {}
    for key in sorted(keys, key=repr):
        images[key] = existing.get(key)
        if images[key] is None:
            checkpoint_id, text, seed = key
            images[key] = Image(
                checkpoint_id=checkpoint_id,
                prompt=prompt_rows[text],
                seed=seed,
                settings_hash=plan.settings_hash,
                settings=plan.settings,
                width=plan.settings.get("width"),
                height=plan.settings.get("height"),
            )
            session.add(images[key])
    session.flush()

    # 5. Image pairs (and their QC twins)
    have = queries.study_pair_keys(session, study.id)
    for c, label, text, seed in kept:
        image_a = images[plan.image_key(c.variant_a, label, text, seed)]
        image_b = images[plan.image_key(c.variant_b, label, text, seed)]
        for qc_kind in (None, QC_KIND) if spec.qc_rate > 0 else (None,):
            key = (comparison_rows[c.name].id, prompt_rows[text].id, seed, label, qc_kind)
            if key in have:
                continue
            session.add(
                ImagePair(
                    comparison_id=comparison_rows[c.name].id,
                    prompt_id=prompt_rows[text].id,
                    seed=seed,
                    checkpoint_label=label,
                    image_a_id=image_a.id,
                    image_b_id=image_b.id,
                    qc_kind=qc_kind,
                )
            )

    # 6. Jobs for images not rendered and not already queued by another study
    missing = [image.id for image in images.values() if image.path is None]
    queued = queries.queued_image_ids(session, missing)
    for image_id in missing:
        if image_id not in queued:
            session.add(GenerationJob(study_id=study.id, image_id=image_id, status="pending"))
    return missing


@dataclass(frozen=True)
class StudyUpdate:
    """What `update_study` changed."""

    study: Study
    changed: list[str]  # fields whose value changed, e.g. ["vote_cap", "prompts"]
    pairs_added: int  # regular pairs added (new prompts, seeds, labels or comparisons)
    missing_images: list[MissingImage] = field(default_factory=list)  # imported variants lack
    pairs_left_out: int = 0  # pairs not created because they need one of those images


_FIXED = "would change or remove pairs voters may have judged; create a new study instead"


def update_study(session: Session, spec: StudySpec) -> StudyUpdate:
    """Bring the existing study `spec.name` to `spec` without destroying a pair.

    Allowed: allocation options, reason tags, results visibility, the QC rate (while it stays
    above zero, or stays zero), and additions (prompts, seeds, checkpoint labels, comparisons),
    which add pairs, images and jobs. Refused with a StudyError naming the field: other SD
    settings, another base variant, and removing a prompt, seed, label or comparison.
    Does not commit.
    """
    # 1. Validate and compare with what the study has
    study = queries.study_named(session, spec.name)
    if study is None:
        raise StudyError(f"name: no study named {spec.name!r}; create it first")
    plan = _resolve(session, spec, existing_ok=True)
    if plan.settings_hash != study.settings_hash:
        raise StudyError(f"settings: {spec.settings!r} differ from {study.settings!r}; {_FIXED}")
    base = study.base_variant.name if study.base_variant else None
    if spec.base != base:
        raise StudyError(f"base: {spec.base!r} is not the study's base {base!r}; {_FIXED}")
    old_prompts = [sp.prompt.text for sp in study.study_prompts]
    old_comparisons = {(c.variant_a.name, c.variant_b.name): c for c in study.comparisons}
    new_comparisons = {(c.variant_a, c.variant_b) for c in plan.comparisons}
    for field_name, old, new in (
        ("prompts", old_prompts, plan.prompts),
        ("seeds", list(study.seeds), list(spec.seeds)),
        ("checkpoint_labels", list(study.checkpoint_labels), list(spec.checkpoint_labels)),
        (
            "comparisons",
            [" vs ".join(k) for k in old_comparisons],
            [c.name for c in plan.comparisons],
        ),
    ):
        gone = [value for value in old if value not in new]
        if gone:
            raise StudyError(f"{field_name}: {gone!r} would be removed; {_FIXED}")
    if (study.qc_rate > 0) != (spec.qc_rate > 0):
        raise StudyError(
            f"qc_rate: {study.qc_rate!r} -> {spec.qc_rate!r} switches quality-control repeats "
            f"on or off; {_FIXED}"
        )

    # 2. Plain fields
    changed = []
    for field_name in (
        "qc_rate",
        "results_visible_to_voters",
        "stop_when_settled",
        "vote_cap",
        "alpha",
        "delta",
        "reason_tags",
    ):
        value = getattr(spec, field_name)
        value = list(value) if isinstance(value, tuple) else value
        if getattr(study, field_name) != value:
            setattr(study, field_name, value)
            changed.append(field_name)
    for field_name, old, new in (
        ("prompts", old_prompts, plan.prompts),
        ("seeds", list(study.seeds), list(spec.seeds)),
        ("checkpoint_labels", list(study.checkpoint_labels), list(spec.checkpoint_labels)),
    ):
        if old != new:
            changed.append(field_name)
    study.seeds, study.checkpoint_labels = list(spec.seeds), list(spec.checkpoint_labels)

    # 3. Prompts (new ones get-or-created; positions follow the spec), comparisons added
    prompt_rows = queries.prompts_by_text(session, plan.prompts)
    for text in plan.prompts:
        if text not in prompt_rows:
            prompt_rows[text] = Prompt(text=text, kind=prompt_kind(text), parts=prompt_parts(text))
            session.add(prompt_rows[text])
    positions = {sp.prompt.text: sp for sp in study.study_prompts}
    for position, text in enumerate(plan.prompts):
        if text in positions:
            positions[text].position = position
        else:
            study.study_prompts.append(StudyPrompt(prompt=prompt_rows[text], position=position))
    if REFERENCE in {v for c in plan.comparisons for v in (c.variant_a, c.variant_b)}:
        plan.variants[REFERENCE] = _reference_variant(session)
    comparison_rows = {}
    for c in plan.comparisons:
        row = old_comparisons.get((c.variant_a, c.variant_b))
        if row is None:
            row = Comparison(
                variant_a_id=plan.variants[c.variant_a].id,
                variant_b_id=plan.variants[c.variant_b].id,
                group=c.group,
                a_setting=c.a_setting,
                b_setting=c.b_setting,
                name=c.name,
            )
            study.comparisons.append(row)
        comparison_rows[c.name] = row
    if set(new_comparisons) - set(old_comparisons):
        changed.append("comparisons")
    session.flush()

    # 4. Pairs, images and jobs for the additions
    before = queries.regular_pair_count(session, study.id)
    kept, keys, lacking, left_out = _split_pairs(plan, spec, _existing_images(session, plan))
    missing = _add_pairs(session, study, plan, spec, kept, keys, prompt_rows, comparison_rows)
    session.flush()
    added = queries.regular_pair_count(session, study.id) - before
    if missing and study.status == "open":
        study.status = "generating"  # voters keep judging the pairs whose images exist
    return StudyUpdate(
        study=study,
        changed=changed,
        pairs_added=added,
        missing_images=lacking,
        pairs_left_out=left_out,
    )
