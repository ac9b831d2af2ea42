"""Creating a study in the database (evaluation.plan)."""

from collections import Counter

import pytest
from sqlalchemy import func, select

from db.engine import session_factory
from db.models import Checkpoint, Comparison, GenerationJob, Image, ImagePair, Prompt, Variant
from deprojector.prompts import ARTICLE_PROMPTS
from evaluation.plan import StudySpec, create_study, plan_summary
from evaluation.study import StudyError
from tests.migrated import migrated_sqlite

# (E/D, v, M/D) of the article's seven models: 2x2x2 without the all-changed corner
DESIGN = {
    "vt-1": (2, 2, 2),
    "vt-2": (1, 2, 2),
    "vt-3": (2, 1, 2),
    "vt-4": (2, 2, 1),
    "vt-5": (1, 1, 2),
    "vt-6": (1, 2, 1),
    "vt-7": (2, 1, 1),
}
SETTINGS = {"model_path": "sd", "scheduler": "ddim", "steps": 4, "width": 64, "height": 64}


@pytest.fixture
def factory(tmp_path):
    """A migrated SQLite database with the seven VT variants (epoch-8/epoch-10) and reference."""
    engine = migrated_sqlite(tmp_path / "arena.sqlite3")
    factory = session_factory(engine)
    with factory.begin() as s:
        s.add(Variant(name="reference", kind="reference", hyperparameters={}))
        for name, (e, v, m) in DESIGN.items():
            variant = Variant(
                name=name,
                kind="vt",
                hyperparameters={"embed_dim": f"{e}D", "vicinity": v, "mlp_dim": f"{m}D"},
            )
            s.add(variant)
            for label in ("epoch-8", "epoch-10"):
                s.add(
                    Checkpoint(
                        variant=variant,
                        label=label,
                        path=f"checkpoints/{name}/{label}",
                        sha256="0" * 64,
                    )
                )
    yield factory
    engine.dispose()


def article_spec(**changes) -> StudySpec:
    fields = dict(
        name="article",
        variants=("reference", *DESIGN),
        base="vt-1",
        checkpoint_labels=("epoch-8", "epoch-10"),
        prompts=ARTICLE_PROMPTS,
        seeds=(0,),
        settings=SETTINGS,
        reference_comparisons=("vt-1",),
    )
    fields.update(changes)
    return StudySpec(**fields)


def count(s, model, *where):
    return s.scalar(select(func.count()).select_from(model).where(*where))


def test_article_study_has_the_articles_shape(factory):
    """9 one-difference sets + 1 reference set, x 2 labels x 6 prompts = 120 pairs, 90 images."""
    with factory.begin() as s:
        study = create_study(s, article_spec())
        groups = Counter(c.group for c in study.comparisons)
        assert groups == {"embed_dim": 3, "vicinity": 3, "mlp_dim": 3, "deprojector": 1}
        assert count(s, ImagePair) == 10 * 2 * 6
        assert count(s, Image) == 7 * 2 * 6 + 6  # the reference needs no checkpoint label
        assert count(s, Image, Image.checkpoint_id.is_(None)) == 6
        assert count(s, GenerationJob, GenerationJob.status == "pending") == 90
        kinds = dict(s.execute(select(Prompt.text, Prompt.kind)).all())
        assert [kinds[p] for p in ARTICLE_PROMPTS] == ["single"] * 3 + ["composed"] * 3
        assert [sp.prompt.text for sp in study.study_prompts] == list(ARTICLE_PROMPTS)


def test_pairs_render_both_sides_with_the_same_prompt_seed_and_label(factory):
    """Both images of a pair share prompt, seed and settings; each comes from its side's checkpoint."""
    with factory.begin() as s:
        create_study(s, article_spec(seeds=(0, 1)))
        for pair in s.scalars(select(ImagePair)):
            a, b = pair.image_a, pair.image_b
            assert (a.prompt_id, a.seed) == (b.prompt_id, b.seed) == (pair.prompt_id, pair.seed)
            assert a.settings_hash == b.settings_hash
            for image, variant in ((a, pair.comparison.variant_a), (b, pair.comparison.variant_b)):
                if variant.name == "reference":
                    assert image.checkpoint is None
                else:
                    assert image.checkpoint.variant == variant
                    assert image.checkpoint.label == pair.checkpoint_label


def test_images_are_shared_across_studies(factory):
    """A second study needing the same images creates no new image and no second job."""
    with factory.begin() as s:
        create_study(s, article_spec())
        s.scalars(select(Image)).first().path = "images/done.png"
    with factory.begin() as s:
        summary = plan_summary(s, article_spec(name="again", reference_comparisons=()))
        assert (summary.images, summary.images_rendered) == (84, 1)
        again = create_study(s, article_spec(name="again", reference_comparisons=()))
        assert count(s, Image) == 90
        assert count(s, GenerationJob) == 90
        assert count(s, GenerationJob, GenerationJob.study_id == again.id) == 0


def test_summary_matches_what_create_study_makes(factory):
    """The preview's counts equal the rows create_study then writes."""
    spec = article_spec(seeds=(3, 4), qc_rate=0.1)
    with factory.begin() as s:
        summary = plan_summary(s, spec)
        create_study(s, spec)
        assert summary.comparisons_by_group == {
            "embed_dim": 3,
            "vicinity": 3,
            "mlp_dim": 3,
            "deprojector": 1,
        }
        assert summary.pairs == count(s, ImagePair, ImagePair.qc_kind.is_(None)) == 240
        assert summary.qc_pairs == count(s, ImagePair, ImagePair.qc_kind.is_not(None)) == 240
        assert summary.images == count(s, Image) == 180
        assert count(s, Comparison) == 10
        assert summary.unpaired_variants == []


def test_summary_names_variants_that_pair_with_nobody(factory):
    """A chosen variant two changes away from every other one is listed as unpaired."""
    with factory.begin() as s:
        summary = plan_summary(s, article_spec(variants=("vt-1", "vt-2", "vt-7")))
    assert [c.name for c in summary.comparisons] == ["vt-1 vs vt-2", "reference vs vt-1"]
    assert summary.unpaired_variants == ["vt-7"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": ("vt-1", "vt-2", "vt-9")}, "variants: unknown variant 'vt-9'"),
        ({"checkpoint_labels": ("epoch-8", "epoch-9")}, "has no checkpoint labelled 'epoch-9'"),
        ({"prompts": ("cat maid", "  ")}, r"prompts\[1\]"),
        ({"prompts": ("cat maid", "cat maid")}, "appears twice"),
        ({"name": "article"}, "name: a study named 'article' already exists"),
        ({"settings": {**SETTINGS, "sampler": "x"}}, "settings:"),
        ({"qc_rate": 1.5}, "qc_rate"),
        ({"base": "reference"}, "base"),
        ({"reference_comparisons": ("vt-8",)}, "reference_comparisons: 'vt-8'"),
    ],
)
def test_invalid_specs_are_rejected_with_the_field_named(factory, changes, message):
    """A bad spec raises StudyError naming the field and value, and writes nothing."""
    with factory.begin() as s:
        create_study(s, article_spec())
    with factory.begin() as s:
        with pytest.raises(StudyError, match=message):
            create_study(s, article_spec(**{"name": "second", **changes}))
        assert count(s, Comparison) == 10
