"""Imported image variants (evaluation.imports): manifest validation, import, zips, mixed studies."""

import io
import os
import re
import stat
import zipfile

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from db.engine import make_engine, session_factory, upgrade
from db.models import IMPORTED, Checkpoint, GenerationJob, Image, ImagePair, Study, Variant
from evaluation.imports import (
    ImportLimits,
    ImportRejected,
    import_images,
    import_zip,
    main,
    read_manifest,
)
from evaluation.plan import MissingImage, StudySpec, create_study, plan_summary
from tests.migrated import migrated_sqlite

PROMPTS = ("a cat", "a red car")


def png(path, colour=(200, 10, 10), size=(16, 16), fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, colour).save(path, format=fmt)
    return path


def manifest(folder, lines, header="prompt,seed,image"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def good_folder(folder, colour=(200, 10, 10)):
    """Two prompts x seed 0 as PNG files next to a manifest."""
    png(folder / "cat.png", colour)
    png(folder / "car.png", colour[::-1])
    return manifest(folder, ["a cat,0,cat.png", '"a red car",0,car.png'])


@pytest.fixture
def factory(tmp_path):
    engine = migrated_sqlite(tmp_path / "arena.sqlite3")
    yield session_factory(engine)
    engine.dispose()


def rejected(path, line):
    return f"nothing was imported; 1 problem(s) in {path}:\n  - {line}"


# -- manifest validation: each bad input, its exact message ---------------------------------------


def test_missing_image_file_is_named_with_row_and_column(tmp_path):
    """A row naming a file that does not exist is refused with row, column, value and fix."""
    path = manifest(tmp_path, ["a cat,0,nope.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path,
        f"manifest.csv row 2, column 'image': 'nope.png': no such file in {tmp_path}; check "
        "the name (case matters) or add the file",
    )


def test_path_leaving_the_manifest_folder_is_refused(tmp_path):
    """`../x.png` never reaches outside the manifest's folder, even when the file exists."""
    png(tmp_path / "outside.png")
    path = manifest(tmp_path / "set", ["a cat,0,../outside.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path,
        f"manifest.csv row 2, column 'image': '../outside.png' leaves the manifest's folder "
        f"{tmp_path / 'set'}; move the image into that folder",
    )


def test_symlink_leaving_the_manifest_folder_is_refused(tmp_path):
    """A link inside the folder that points outside it counts as leaving the folder."""
    png(tmp_path / "outside.png")
    (tmp_path / "set").mkdir()
    os.symlink(tmp_path / "outside.png", tmp_path / "set" / "link.png")
    path = manifest(tmp_path / "set", ["a cat,0,link.png"])
    with pytest.raises(ImportRejected, match="'link.png' leaves the manifest's folder"):
        read_manifest(path)


def test_absolute_image_path_is_refused(tmp_path):
    """An absolute image path is refused: paths are relative to the manifest."""
    image = png(tmp_path / "cat.png")
    path = manifest(tmp_path, [f"a cat,0,{image}"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path,
        f"manifest.csv row 2, column 'image': '{image}' is an absolute path; give the path "
        "relative to the manifest's folder",
    )


def test_file_that_does_not_decode_is_refused(tmp_path):
    """A truncated or non-image file is refused before anything is written."""
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    path = manifest(tmp_path, ["a cat,0,cat.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    message = str(error.value)
    assert message.startswith(
        rejected(path, "manifest.csv row 2, column 'image': 'cat.png' does not decode as an image")
    )
    assert message.endswith("re-export it as PNG, JPEG or WebP")


def test_other_image_formats_are_refused(tmp_path):
    """Only PNG, JPEG and WebP are imported (a GIF is named as such)."""
    png(tmp_path / "cat.gif", fmt="GIF")
    path = manifest(tmp_path, ["a cat,0,cat.gif"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path,
        "manifest.csv row 2, column 'image': 'cat.gif' is a GIF image; convert it to PNG, "
        "JPEG or WebP",
    )


def test_oversized_file_is_refused(tmp_path):
    """A file over the byte cap is refused with its size and the cap."""
    image = png(tmp_path / "cat.png")
    path = manifest(tmp_path, ["a cat,0,cat.png"])
    size = image.stat().st_size
    with pytest.raises(ImportRejected) as error:
        read_manifest(path, limits=ImportLimits(max_image_bytes=size - 1))
    assert str(error.value) == rejected(
        path,
        f"manifest.csv row 2, column 'image': 'cat.png' is {size} bytes, over the "
        f"{size - 1}-byte cap; shrink or re-encode it",
    )


def test_oversized_dimensions_are_refused(tmp_path):
    """An image wider or taller than the pixel cap is refused."""
    png(tmp_path / "cat.png", size=(64, 16))
    path = manifest(tmp_path, ["a cat,0,cat.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path, limits=ImportLimits(max_side=32))
    assert str(error.value) == rejected(
        path,
        "manifest.csv row 2, column 'image': 'cat.png' is 64x16 pixels, over the 32-pixel cap; "
        "downscale it",
    )


def test_duplicate_prompt_seed_checkpoint_is_refused(tmp_path):
    """Two images for the same (prompt, seed, checkpoint) are refused, naming both rows."""
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    path = manifest(tmp_path, ["a cat,0,a.png", "a cat,0,b.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path,
        "manifest.csv row 3, column 'image': 'b.png': prompt, seed and checkpoint ('a cat', 0, "
        "'imported') repeat row 2; keep one image per prompt, seed and checkpoint",
    )


def test_same_prompt_and_seed_under_two_checkpoint_labels_is_allowed(tmp_path):
    """The optional checkpoint column overrides the label per row."""
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    path = manifest(
        tmp_path, ["a cat,0,a.png,epoch-1", "a cat,0,b.png,"], header="prompt,seed,image,checkpoint"
    )
    rows = read_manifest(path, checkpoint="epoch-2")
    assert [r.checkpoint for r in rows] == ["epoch-1", "epoch-2"]


def test_bad_seed_is_refused(tmp_path):
    """A seed that is not a whole non-negative number is refused."""
    png(tmp_path / "cat.png")
    path = manifest(tmp_path, ["a cat,1.5,cat.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path,
        "manifest.csv row 2, column 'seed': '1.5' is not a whole number in [0, 2**63-1]; write "
        "the seed the image was made with, e.g. 0",
    )


def test_empty_prompt_is_refused(tmp_path):
    """An empty prompt is refused."""
    png(tmp_path / "cat.png")
    path = manifest(tmp_path, [",0,cat.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == rejected(
        path, "manifest.csv row 2, column 'prompt': '' is empty; give some text"
    )


def test_wrong_header_is_refused(tmp_path):
    """A header without the required columns is refused with the expected header."""
    path = manifest(tmp_path, ["a cat,0,cat.png"], header="text,seed,file")
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value) == (
        "manifest manifest.csv row 1 (header): columns ['text', 'seed', 'file']; missing "
        "['prompt', 'image']; the header must be prompt,seed,image with an optional "
        "checkpoint column"
    )


def test_every_problem_is_listed_at_once(tmp_path):
    """Several bad rows give one error listing each, so a manifest is fixed in one pass."""
    path = manifest(tmp_path, ["a cat,x,nope.png", ",0,nope2.png"])
    with pytest.raises(ImportRejected) as error:
        read_manifest(path)
    assert str(error.value).startswith(f"nothing was imported; 4 problem(s) in {path}:")


# -- import ----------------------------------------------------------------------------------------


def test_import_registers_an_images_variant_with_copied_files(factory, tmp_path):
    """The variant, one checkpoint per label and one image per row, files copied with sha256."""
    path = good_folder(tmp_path / "set")
    data = tmp_path / "data"
    with factory.begin() as s:
        result = import_images(
            s, data, "photos", path, hyperparameters={"blur": 0}, checkpoint="v1"
        )
    assert (result.images, result.added, result.labels) == (2, 2, ["v1"])
    with factory() as s:
        variant = s.scalar(select(Variant).where(Variant.name == "photos"))
        assert (variant.kind, variant.hyperparameters) == ("images", {"blur": 0})
        assert [c.label for c in variant.checkpoints] == ["v1"]
        images = s.scalars(select(Image)).all()
        assert {i.settings_hash for i in images} == {IMPORTED}
        for image in images:
            copied = data / image.path
            assert copied.is_file() and copied.name == f"{image.sha256}.png"
            assert image.path.startswith("imported/") and (image.width, image.height) == (16, 16)


def test_reimport_of_the_same_manifest_adds_nothing(factory, tmp_path):
    """Importing the same manifest twice is idempotent."""
    path = good_folder(tmp_path / "set")
    for expected in (2, 0):
        with factory.begin() as s:
            assert import_images(s, tmp_path / "data", "photos", path).added == expected
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 2


def test_reimport_with_a_changed_file_is_refused(factory, tmp_path):
    """A different file for an image already imported is refused (votes may point at it)."""
    with factory.begin() as s:
        import_images(s, tmp_path / "data", "photos", good_folder(tmp_path / "one"))
    path = good_folder(tmp_path / "two", colour=(0, 0, 255))
    with factory.begin() as s, pytest.raises(ImportRejected, match="differs from the image"):
        import_images(s, tmp_path / "data", "photos", path)


def test_name_of_a_rendered_variant_is_refused(factory, tmp_path):
    """Importing under the name of a vt variant is refused."""
    with factory.begin() as s:
        s.add(Variant(name="vt-1", kind="vt", hyperparameters={}))
    with factory.begin() as s, pytest.raises(ImportRejected, match="a vt variant of that name"):
        import_images(s, tmp_path / "data", "vt-1", good_folder(tmp_path / "set"))


def test_rejected_import_writes_nothing(factory, tmp_path):
    """One bad row: no variant, no image row, no file under the data directory."""
    folder = tmp_path / "set"
    good_folder(folder)
    path = manifest(folder, ["a cat,0,cat.png", "a dog,0,dog.png"])
    with factory.begin() as s, pytest.raises(ImportRejected):
        import_images(s, tmp_path / "data", "photos", path)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Variant)) == 0
    assert not (tmp_path / "data").exists()


def test_command_line_imports_and_exits_2_on_a_bad_manifest(tmp_path, capsys):
    """`python -m evaluation import-images` imports a good manifest and refuses a bad one."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    args = ["--data-dir", str(tmp_path / "data"), "--database-url", url]
    good = good_folder(tmp_path / "set")
    assert main(["--variant", "photos", "--manifest", str(good), *args]) == 0
    assert "variant 'photos': 2 images (2 new)" in capsys.readouterr().out
    bad = manifest(tmp_path / "bad", ["a cat,0,nope.png"])
    assert main(["--variant", "other", "--manifest", str(bad), *args]) == 2
    assert "column 'image': 'nope.png': no such file" in capsys.readouterr().err


# -- zip archives --------------------------------------------------------------------------------


def zip_of(folder):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"photos/{path.relative_to(folder).as_posix()}")
    buffer.seek(0)
    return buffer


def test_zip_upload_imports_its_manifest(factory, tmp_path):
    """A zip with a manifest in its top folder imports like the folder itself."""
    good_folder(tmp_path / "set")
    with factory.begin() as s:
        result = import_zip(s, tmp_path / "data", "photos", zip_of(tmp_path / "set"))
    assert result.added == 2


def bad_zip(name, data=b"x", symlink=False, compress=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as zf:
        info = zipfile.ZipInfo(name)
        info.compress_type = compress
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("archive", "problem"),
    [
        (bad_zip("../evil.png"), "would be written outside the archive's folder"),
        (bad_zip("/etc/evil.png"), "would be written outside the archive's folder"),
        (bad_zip("link.png", b"/etc/passwd", symlink=True), "is a symbolic link"),
        (
            bad_zip("bomb.png", b"\0" * (4 * 2**20), compress=zipfile.ZIP_DEFLATED),
            "over the 200-fold cap (a zip bomb?)",
        ),
    ],
    ids=["traversal", "absolute", "symlink", "bomb"],
)
def test_unsafe_zip_entries_are_refused(factory, tmp_path, archive, problem):
    """Path traversal, links and zip bombs are refused before anything is extracted."""
    with factory.begin() as s, pytest.raises(ImportRejected, match=re.escape(problem)):
        import_zip(s, tmp_path / "data", "photos", archive)
    assert not (tmp_path / "data").exists()


def test_zip_with_too_many_files_is_refused(factory, tmp_path):
    """The file-count cap is enforced."""
    good_folder(tmp_path / "set")
    with factory.begin() as s, pytest.raises(ImportRejected, match="3 files, over the 2-file cap"):
        import_zip(
            s,
            tmp_path / "data",
            "photos",
            zip_of(tmp_path / "set"),
            limits=ImportLimits(max_files=2),
        )


# -- mixed studies -------------------------------------------------------------------------------

SETTINGS = {"model_path": "sd", "scheduler": "ddim", "steps": 4, "width": 64, "height": 64}


def add_vt(s, name, blur):
    variant = Variant(name=name, kind="vt", hyperparameters={"blur": blur})
    s.add(variant)
    s.add(Checkpoint(variant=variant, label="imported", path=f"ck/{name}", sha256="0" * 64))


def test_mixed_study_lists_and_leaves_out_pairs_an_imported_variant_lacks(factory, tmp_path):
    """Pairs needing a missing imported image are counted, listed and not created or rendered."""
    folder = tmp_path / "set"
    png(folder / "cat.png")
    path = manifest(folder, ["a cat,0,cat.png"])  # no "a red car" image
    with factory.begin() as s:
        import_images(s, tmp_path / "data", "photos", path, hyperparameters={"blur": 1})
        add_vt(s, "vt-0", 0)
    spec = StudySpec(
        name="mixed",
        variants=("reference", "vt-0", "photos"),
        base="vt-0",
        checkpoint_labels=("imported",),
        prompts=PROMPTS,
        settings=SETTINGS,
        reference_comparisons=("vt-0", "photos"),
    )
    with factory.begin() as s:
        summary = plan_summary(s, spec)
        assert summary.missing_images == [MissingImage("photos", "imported", "a red car", 0)]
        assert (summary.pairs, summary.pairs_left_out) == (4, 2)
        study = create_study(s, spec)
        pairs = s.scalars(select(ImagePair)).all()
        assert len(pairs) == 4
        # jobs: the reference and vt-0 images only (2 prompts each), never the imported ones
        jobs = s.scalars(select(GenerationJob)).all()
        assert len(jobs) == 4
        assert all(j.image.settings_hash == study.settings_hash for j in jobs)


def test_study_of_imported_variants_only_needs_no_rendering(factory, tmp_path):
    """Two imported variants one difference apart: pairs exist at once, no job, study ready."""
    with factory.begin() as s:
        import_images(
            s, tmp_path / "data", "p0", good_folder(tmp_path / "a"), hyperparameters={"blur": 0}
        )
        import_images(
            s,
            tmp_path / "data",
            "p1",
            good_folder(tmp_path / "b", colour=(9, 9, 9)),
            hyperparameters={"blur": 1},
        )
    spec = StudySpec(
        name="photos",
        variants=("p0", "p1"),
        base="p0",
        checkpoint_labels=("imported",),
        prompts=PROMPTS,
    )
    with factory.begin() as s:
        study = create_study(s, spec)
        assert s.scalar(select(func.count()).select_from(ImagePair)) == 2
        assert s.scalar(select(func.count()).select_from(GenerationJob)) == 0
        assert study.status != "draft"
    with factory() as s:
        assert s.scalar(select(Study.settings_hash)) == IMPORTED


def test_file_that_is_not_a_zip_is_refused(factory, tmp_path):
    """An upload that is not a zip archive is refused with the fix."""
    with factory.begin() as s, pytest.raises(ImportRejected, match="not a readable zip archive"):
        import_zip(s, tmp_path / "data", "photos", io.BytesIO(b"PK not really a zip"))


def test_update_adding_a_seed_imported_variants_lack_counts_the_left_out_pairs(factory, tmp_path):
    """A new seed without imported images adds no pair and says how many were left out."""
    from dataclasses import replace

    from evaluation.plan import update_study

    with factory.begin() as s:
        for name, blur, colour in (("p0", 0, (1, 2, 3)), ("p1", 1, (9, 9, 9))):
            folder = good_folder(tmp_path / name, colour=colour)
            import_images(s, tmp_path / "data", name, folder, hyperparameters={"blur": blur})
    spec = StudySpec(
        name="photos",
        variants=("p0", "p1"),
        base="p0",
        checkpoint_labels=("imported",),
        prompts=PROMPTS,
    )
    with factory.begin() as s:
        create_study(s, spec)
    with factory.begin() as s:
        update = update_study(s, replace(spec, seeds=(0, 7)))
        assert (update.changed, update.pairs_added, update.pairs_left_out) == (["seeds"], 0, 2)
        assert MissingImage("p0", "imported", "a cat", 7) in update.missing_images
