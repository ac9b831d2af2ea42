"""A synthetic study (rows only, no image files) for tests, benchmarks and load tests.

with session_factory(engine).begin() as s:
    study = create_synthetic_study(s, "bench", n_comparisons=3, n_prompts=6, seeds=(0, 1))
    voters = create_voters(s, 8)
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from db.auth import create_annotator
from db.models import Checkpoint, Comparison, Image, ImagePair, Prompt, Study, StudyPrompt, Variant

SETTINGS_HASH = "0" * 16


def create_synthetic_study(
    s: Session,
    name: str = "synthetic",
    n_comparisons: int = 3,
    n_prompts: int = 6,
    seeds: Sequence[int] = (0,),
    labels: Sequence[str] = ("epoch-8", "epoch-10"),
    stop_when_settled: bool = False,
) -> Study:
    """A study whose base variant `<name>-v0` is compared with `<name>-v1..vN`, each differing
    in its own hyperparameter `h<i>` (0 on side A, 1 on side B); pairs = comparisons x labels x
    prompts x seeds. Every second prompt is composed (has a comma). `stop_when_settled` is off
    by default (the full grid), so tests and benchmarks see every pair unless they ask."""
    # 1. Variants and one checkpoint per label
    variants = [
        Variant(
            name=f"{name}-v{i}",
            kind="vt",
            hyperparameters={f"h{j}": int(i == j) for j in range(1, n_comparisons + 1)},
        )
        for i in range(n_comparisons + 1)
    ]
    s.add_all(variants)
    checkpoints = {
        (v.name, label): Checkpoint(
            variant=v, label=label, path=f"checkpoints/{v.name}/{label}", sha256="0" * 64
        )
        for v in variants
        for label in labels
    }
    s.add_all(checkpoints.values())

    # 2. Prompts and the study
    prompts = [
        Prompt(text=f"{name} prompt {k}", kind="single", parts=[f"{name} prompt {k}"])
        if k % 2 == 0
        else Prompt(
            text=f"{name} prompt {k}, detail",
            kind="composed",
            parts=[f"{name} prompt {k}", "detail"],
        )
        for k in range(n_prompts)
    ]
    s.add_all(prompts)
    study = Study(
        name=name,
        settings={
            "model_path": "sd",
            "scheduler": "ddim",
            "steps": 10,
            "guidance": 7.5,
            "width": 64,
            "height": 64,
            "negative_prompt": "",
        },
        settings_hash=SETTINGS_HASH,
        seeds=list(seeds),
        checkpoint_labels=list(labels),
        base_variant=variants[0],
        status="open",
        stop_when_settled=stop_when_settled,
    )
    s.add(study)
    s.add_all(StudyPrompt(study=study, prompt=p, position=k) for k, p in enumerate(prompts))

    # 3. Comparisons, images (one per checkpoint x prompt x seed) and pairs
    images: dict[tuple[str, str, int, int], Image] = {}

    def image(variant: Variant, label: str, k: int, seed: int) -> Image:
        key = (variant.name, label, k, seed)
        if key not in images:
            images[key] = Image(
                checkpoint=checkpoints[(variant.name, label)],
                prompt=prompts[k],
                seed=seed,
                settings_hash=SETTINGS_HASH,
                path=f"images/{variant.name}-{label}-{k}-{seed}.png",
                sha256="0" * 64,
                width=64,
                height=64,
            )
        return images[key]

    for i in range(1, n_comparisons + 1):
        a, b = variants[0], variants[i]
        comparison = Comparison(
            study=study,
            variant_a=a,
            variant_b=b,
            group=f"h{i}",
            a_setting="0",
            b_setting="1",
            name=f"{a.name} vs {b.name}",
        )
        s.add(comparison)
        for label in labels:
            for k in range(n_prompts):
                for seed in seeds:
                    s.add(
                        ImagePair(
                            comparison=comparison,
                            prompt=prompts[k],
                            seed=seed,
                            checkpoint_label=label,
                            image_a=image(a, label, k, seed),
                            image_b=image(b, label, k, seed),
                        )
                    )
    s.flush()
    return study


def create_voters(s: Session, n: int, prefix: str = "voter") -> list[tuple[int, str]]:
    """`n` voter accounts; returns (annotator id, token) for each."""
    voters = [create_annotator(s, f"{prefix}-{i}", "voter") for i in range(n)]
    return [(annotator.id, token) for annotator, token in voters]
