"""The variants page (AppTest) and the checkpoint intake behind it: validated before accepted,
stored under generated names, server folders confined to the allowed roots."""

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest
from tiny_study import TIMEOUT

from db.engine import make_engine, session_factory, upgrade
from db.models import Variant
from evaluation import checkpoints

VARIANTS_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "variants.py")
D = 16


@pytest.fixture(scope="module")
def vt_folder(tmp_path_factory) -> Path:
    """A real tiny VT checkpoint saved by deprojector.checkpoint (random weights)."""
    import torch

    from deprojector.checkpoint import save_checkpoint
    from deprojector.model import VTDeprojector, vt_config

    torch.set_num_threads(1)
    model = VTDeprojector(vt_config("vt-vicinity-1", D, 4), num_members=1, seed=3)
    return save_checkpoint(model, tmp_path_factory.mktemp("vt") / "epoch-8", {"seed": 3})


def accept(folder: Path, name: str, label: str, hyper: str = "", owned: bool = True):
    """What the Variants page does with a folder: validate, then register in one transaction;
    a folder the arena made is removed on any failure. Returns (label, path) of the row."""
    engine = make_engine()
    upgrade(engine)
    try:
        with checkpoints.discard_on_failure(folder, owned):
            info = checkpoints.inspect(folder)
            with session_factory(engine).begin() as s:
                hyperparameters = checkpoints.parse_hyperparameters(hyper)
                row = checkpoints.register(s, name, label, folder, info, hyperparameters)
                return row.label, row.path
    finally:
        engine.dispose()


def open_variants(token: str) -> AppTest:
    at = AppTest.from_file(VARIANTS_PAGE, default_timeout=TIMEOUT)
    at.query_params["token"] = token
    return at.run()


def submit_server_folder(at: AppTest, folder: str, variant: str, label: str = "epoch-8"):
    at.text_input(key="srv_folder").input(folder)
    at.text_input(key="srv_variant").input(variant)
    at.text_input(key="srv_label").input(label)
    return at.button(key="FormSubmitter:server_form-Register and validate").click().run()


def test_voter_is_refused_the_variants_page(tiny):
    """A voter who types the admin page's URL gets a refusal, not the page."""
    at = open_variants(tiny.voter_token)
    assert "admins only" in at.error[0].value
    assert not at.dataframe and not at.text_input


def test_registering_a_server_folder_validates_and_lists_it(tiny, db, vt_folder):
    """A folder inside the data dir is inspected, stored with its counts and listed."""
    inside = tiny.data_dir / "models" / "mine"
    inside.parent.mkdir()
    inside.symlink_to(vt_folder.parent / "epoch-8", target_is_directory=True)
    # the symlink leads out of the data dir: refused with the resolved path named
    at = submit_server_folder(open_variants(tiny.admin_token), "models/mine", "vt-v1")
    assert "outside the allowed roots" in at.error[0].value
    assert db.scalar(select(Variant).where(Variant.name == "vt-v1")) is None

    inside.unlink()
    import shutil

    shutil.copytree(vt_folder, inside)
    at = submit_server_folder(open_variants(tiny.admin_token), "models/mine", "vt-v1")
    assert not at.error, at.error[0].value
    assert "Added vt-v1 / epoch-8" in at.success[0].value
    db.commit()
    variant = db.scalar(select(Variant).where(Variant.name == "vt-v1"))
    (ckpt,) = variant.checkpoints
    assert (variant.kind, variant.hyperparameters["vicinity"]) == ("vt", 1)
    assert ckpt.path == "models/mine" and ckpt.params_total > 0 and len(ckpt.sha256) == 64
    listed = at.dataframe[1].value
    assert "vt-v1" in list(listed["variant"])


def test_parent_escape_is_refused(tiny, db):
    """'../' out of the data dir is refused before anything is read or stored."""
    at = submit_server_folder(open_variants(tiny.admin_token), "../../etc", "evil")
    assert "outside the allowed roots" in at.error[0].value
    assert db.scalar(select(Variant).where(Variant.name == "evil")) is None


def test_upload_is_stored_under_a_generated_name(data_dir, vt_folder):
    """An uploaded safetensors + config lands in checkpoints/upload-<random>/, whatever its name."""
    folder = checkpoints.save_upload(
        "../../weird name.safetensors",
        (vt_folder / "model.safetensors").read_bytes(),
        (vt_folder / "config.json").read_bytes(),
    )
    assert folder.parent == data_dir / "checkpoints" and folder.name.startswith("upload-")
    assert accept(folder, "uploaded", "epoch-8") == ("epoch-8", f"checkpoints/{folder.name}")


@pytest.mark.parametrize(
    "weights, config, message",
    [
        (b"\x00" * 10, None, "checkpoint rejected"),  # truncated / corrupt safetensors
        (None, b"{not json", "not valid UTF-8 JSON"),
        (None, "vicinity=3", "checkpoint rejected"),  # config does not match the tensors
    ],
)
def test_bad_uploads_are_rejected_and_leave_nothing(data_dir, vt_folder, weights, config, message):
    """Corrupt weights, bad JSON or a config that does not match: a precise error, no files, no rows."""
    from tiny_study import build_tiny_study

    build_tiny_study(data_dir)
    weights = weights if weights is not None else (vt_folder / "model.safetensors").read_bytes()
    real_config = json.loads((vt_folder / "config.json").read_text())
    if config == "vicinity=3":
        real_config["config"]["vicinity"] = 3
        config = None
    config = config if config is not None else json.dumps(real_config).encode()
    with pytest.raises(checkpoints.CheckpointRejected, match=message):
        accept(checkpoints.save_upload("m.safetensors", weights, config), "bad", "e1")
    stored = data_dir / "checkpoints"
    assert not stored.exists() or not any(stored.iterdir())


def test_upload_above_the_cap_is_refused(data_dir, monkeypatch):
    """A file above ARENA_MAX_UPLOAD_MB is refused with its size and the cap named."""
    monkeypatch.setenv("ARENA_MAX_UPLOAD_MB", "1")
    with pytest.raises(checkpoints.CheckpointRejected, match="above the upload cap of 1 MiB"):
        checkpoints.save_upload("big.safetensors", b"\x00" * (2**20 + 1), b"{}")
    assert not (data_dir / "checkpoints").exists()


def test_importing_a_published_legacy_folder_copies_and_registers_it(
    tiny, db, tmp_path, monkeypatch
):
    """A published v5 folder (pickle-free .bin) is copied under a generated name and listed as
    a legacy variant with its parameter count."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deprojector"))
    legacy_tests = pytest.importorskip("test_legacy")  # the published-layout writer
    source = tmp_path / "published" / "v5"
    legacy_tests.write_published(source, "v5")
    monkeypatch.setenv(checkpoints.ROOTS_ENV, str(tmp_path / "published"))

    at = open_variants(tiny.admin_token)
    at.text_input(key="leg_folder").input(str(source))
    at.text_input(key="leg_variant").input("published-v5")
    at.text_input(key="leg_label").input("v5")
    at.button(key="FormSubmitter:legacy_form-Import (copy into the data dir) and validate").click()
    at.run()
    assert not at.error, at.error[0].value
    db.commit()
    variant = db.scalar(select(Variant).where(Variant.name == "published-v5"))
    (ckpt,) = variant.checkpoints
    assert variant.kind == "legacy" and variant.hyperparameters["ensemble_size"] == 4
    assert ckpt.path.startswith("checkpoints/import-") and ckpt.params_total > 0
    assert (tiny.data_dir / ckpt.path / "pytorch_model.bin").is_file()


def test_a_second_checkpoint_must_match_its_variants_hyperparameters(tiny, vt_folder):
    """epoch-10 of an existing variant is accepted only with the same hyperparameters."""
    import shutil

    for label in ("epoch-8", "epoch-10"):
        shutil.copytree(vt_folder, tiny.data_dir / "models" / label)
    accept(tiny.data_dir / "models" / "epoch-8", "vt-v1", "epoch-8", owned=False)
    with pytest.raises(checkpoints.CheckpointRejected, match="has hyperparameters"):
        accept(
            tiny.data_dir / "models" / "epoch-10",
            "vt-v1",
            "epoch-10",
            '{"vicinity": 3}',
            owned=False,
        )
    second = accept(tiny.data_dir / "models" / "epoch-10", "vt-v1", "epoch-10", owned=False)
    assert second[0] == "epoch-10" and (tiny.data_dir / "models" / "epoch-10").is_dir()


@pytest.mark.parametrize("value", ["0", "-5", "abc", "0.5"])
def test_bad_upload_cap_is_a_start_up_error_naming_the_fix(tiny, monkeypatch, value):
    """A bad ARENA_MAX_UPLOAD_MB stops the page with one error naming the value and the fix,
    instead of a crash; no form is drawn."""
    monkeypatch.setenv("ARENA_MAX_UPLOAD_MB", value)
    at = open_variants(tiny.admin_token)
    assert [e.value for e in at.error] == [
        f"Start-up error: ARENA_MAX_UPLOAD_MB={value!r}: expected a whole number of MiB, at "
        "least 1; set e.g. ARENA_MAX_UPLOAD_MB=512 (or unset it for 512), then restart the server."
    ]
    assert not at.text_input and not at.get("file_uploader")


def test_server_accepting_more_than_the_cap_refuses_to_serve(tiny, monkeypatch):
    """A server whose upload ceiling (server.maxUploadSize, 512 here) is above
    ARENA_MAX_UPLOAD_MB=1 stops the page, naming both and how to start it right."""
    monkeypatch.setenv("ARENA_MAX_UPLOAD_MB", "1")
    at = open_variants(tiny.admin_token)
    message = at.error[0].value
    assert "accepts uploads up to 512 MB" in message and "ARENA_MAX_UPLOAD_MB is 1" in message
    assert "make run" in message and "--server.maxUploadSize 1" in message
    assert not at.get("file_uploader")


def test_upload_widgets_show_and_enforce_the_cap(tiny):
    """The admin's weights and zip uploaders are limited to the cap (512 MiB) and the config
    uploader to 1 MiB, and the labels say so."""
    at = open_variants(tiny.admin_token)
    weights, config, archive = at.get("file_uploader")
    assert "at most 512 MiB" in weights.proto.label and "at most 512 MiB" in archive.proto.label
    assert weights.proto.max_upload_size_mb == archive.proto.max_upload_size_mb == 512
    assert config.proto.max_upload_size_mb == 1


def write_manifest(folder: Path, prompts=("a tabby cat", "a red bus")) -> Path:
    """A manifest.csv with one small PNG per prompt (seed 0) beside it."""
    from PIL import Image

    folder.mkdir(parents=True)
    rows = ["prompt,seed,image"]
    for k, prompt in enumerate(prompts):
        Image.new("RGB", (8, 8), (40 * k, 90, 200)).save(folder / f"img-{k}.png")
        rows.append(f"{prompt},0,img-{k}.png")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def import_from_server(at: AppTest, manifest: str, variant: str, hyper: str = "") -> AppTest:
    at.text_input(key="img_manifest").input(manifest)
    at.text_input(key="imf_variant").input(variant)
    at.text_input(key="imf_hyper").input(hyper)
    return at.button(key="FormSubmitter:images_folder_form-Import").click().run()


def test_images_variant_is_imported_from_a_server_manifest(tiny, db):
    """A manifest folder inside the data dir becomes an `images` variant with its images,
    listed on the page after the import."""
    write_manifest(tiny.data_dir / "shots" / "other-model")
    at = import_from_server(
        open_variants(tiny.admin_token), "shots/other-model/manifest.csv", "other", '{"m": 1}'
    )
    assert not at.error, at.error[0].value
    assert "Imported other: 2 images (2 new)" in at.success[0].value
    variant = db.scalar(select(Variant).where(Variant.name == "other"))
    assert variant.kind == "images" and variant.hyperparameters == {"m": 1}
    assert "other" in list(at.dataframe[0].value["variant"])


def test_images_manifest_outside_the_roots_is_refused(tiny, db, tmp_path_factory):
    """A manifest outside the data dir (and ARENA_CHECKPOINT_ROOTS) is refused naming where it
    resolves and the fix; no variant is created."""
    manifest = write_manifest(tmp_path_factory.mktemp("elsewhere") / "shots")
    at = import_from_server(open_variants(tiny.admin_token), str(manifest), "other")
    assert "outside the allowed roots" in at.error[0].value
    assert "ARENA_CHECKPOINT_ROOTS" in at.error[0].value
    assert db.scalar(select(Variant).where(Variant.name == "other")) is None


def test_bad_images_manifest_names_the_row_and_stores_nothing(tiny, db):
    """A manifest row naming a missing file is refused with the importer's message (row,
    column, value); nothing is stored."""
    manifest = write_manifest(tiny.data_dir / "shots" / "broken")
    manifest.write_text(manifest.read_text() + "a blue car,0,missing.png\n")
    at = import_from_server(open_variants(tiny.admin_token), "shots/broken/manifest.csv", "b")
    assert "missing.png" in at.error[0].value and "row 4" in at.error[0].value
    assert db.scalar(select(Variant).where(Variant.name == "b")) is None
    assert not (tiny.data_dir / "imported").exists()
