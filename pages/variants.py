"""Variants (admin): every variant with its hyperparameters, checkpoints and parameter counts;
add a checkpoint by upload, by a folder on the server, or by importing a published folder; add a
variant of images made elsewhere (a zip upload, or a server folder with its manifest)."""

import streamlit as st

from arena_ui.identity import require_admin
from arena_ui.resources import transaction
from arena_ui.uploads import require_upload_limit
from db.engine import data_dir
from db.errors import DbError
from db.queries import variant_catalogue
from evaluation import checkpoints, imports

require_admin()
cap = require_upload_limit()  # MiB
st.title("Variants")
if notice := st.session_state.pop("variants_notice", None):
    st.success(notice)

with transaction(readonly=True) as s:
    variant_rows, checkpoint_rows = variant_catalogue(s)
if not variant_rows:
    st.info("No variants yet: add a checkpoint below, or build the demo on the Welcome page.")
st.dataframe(variant_rows, hide_index=True, key="variants_table")
st.subheader("Checkpoints")
st.dataframe(checkpoint_rows, hide_index=True, key="checkpoints_table")

st.header("Add a checkpoint")
st.caption(
    "Each checkpoint is loaded and checked (shapes match its config, all weights finite) before "
    "it is accepted. Leave the hyperparameters empty to read them from the checkpoint."
)


def variant_fields(prefix: str) -> tuple[str, str, str, str]:
    name = st.text_input("Variant name", key=f"{prefix}_variant")
    label = st.text_input("Checkpoint label", value="epoch-10", key=f"{prefix}_label")
    hyper = st.text_input("Hyperparameters (JSON, optional)", key=f"{prefix}_hyper")
    notes = st.text_input("Notes", key=f"{prefix}_notes")
    return name, label, hyper, notes


def add(make_folder, fields, owned: bool) -> None:
    """Make the folder, validate and register it in one transaction; a folder the arena made
    (`owned`) is removed on any failure."""
    name, label, hyper_text, notes = fields
    try:
        folder = make_folder()
        with checkpoints.discard_on_failure(folder, owned):
            hyper = checkpoints.parse_hyperparameters(hyper_text)
            info = checkpoints.inspect(folder)
            with transaction() as s:
                checkpoint = checkpoints.register(s, name, label, folder, info, hyper, notes)
                added = f"Added {name.strip()} / {checkpoint.label} ({checkpoint.params_total:,} parameters)."
    except (checkpoints.CheckpointRejected, DbError) as error:
        st.error(str(error))
        st.stop()
    st.session_state["variants_notice"] = added
    st.rerun()


upload, server, legacy = st.tabs(["Upload", "Folder on the server", "Import a published folder"])
with upload, st.form("upload_form"):
    weights = st.file_uploader(
        f"Weights (.safetensors, at most {cap} MiB)",
        type=["safetensors"],
        key="up_weights",
        max_upload_size=cap,
    )
    config = st.file_uploader(
        "Config (config.json)",
        type=["json"],
        key="up_config",
        max_upload_size=checkpoints.MAX_CONFIG_BYTES // 2**20,
    )
    fields = variant_fields("up")
    if st.form_submit_button("Upload and validate"):
        if weights is None or config is None:
            st.error("Choose both files: the .safetensors weights and their config.json.")
        else:
            add(
                lambda: checkpoints.save_upload(
                    weights.name, weights.getvalue(), config.getvalue()
                ),
                fields,
                owned=True,
            )
with server, st.form("server_form"):
    folder = st.text_input(
        "Folder (relative to the data dir, or under ARENA_CHECKPOINT_ROOTS)", key="srv_folder"
    )
    fields = variant_fields("srv")
    if st.form_submit_button("Register and validate"):
        add(lambda: checkpoints.resolve_server_folder(folder), fields, owned=False)
with legacy, st.form("legacy_form"):
    folder = st.text_input(
        "Published folder (config.json + weights) on the server", key="leg_folder"
    )
    fields = variant_fields("leg")
    if st.form_submit_button("Import (copy into the data dir) and validate"):
        add(lambda: checkpoints.import_folder(folder), fields, owned=True)

st.header("Add images made elsewhere")
st.caption(
    "A variant of kind `images` takes its images from files (another model's outputs, "
    "photographs): a manifest CSV with the columns prompt, seed, image (a path beside it) and "
    "optionally checkpoint. Every row is checked before anything is stored."
)


def image_fields(prefix: str) -> tuple[str, str, str, str]:
    name = st.text_input("Variant name", key=f"{prefix}_variant")
    label = st.text_input(
        "Checkpoint label (optional: the manifest's column, else 'imported')", key=f"{prefix}_label"
    )
    hyper = st.text_input("Hyperparameters (JSON, optional)", key=f"{prefix}_hyper")
    notes = st.text_input("Notes", key=f"{prefix}_notes")
    return name, label, hyper, notes


def add_images(run_import, fields) -> None:
    """Import in one transaction; `run_import(session, variant, **options)`."""
    name, label, hyper_text, notes = fields
    try:
        hyper = checkpoints.parse_hyperparameters(hyper_text)
        with transaction() as s:
            result = run_import(
                s, name, hyperparameters=hyper, checkpoint=label.strip() or None, notes=notes
            )
    except (imports.ImportRejected, checkpoints.CheckpointRejected, DbError) as error:
        st.error(str(error))
        st.stop()
    st.session_state["variants_notice"] = (
        f"Imported {result.variant}: {result.images} images ({result.added} new), checkpoint "
        f"label(s) {', '.join(result.labels)}."
    )
    st.rerun()


def server_manifest(text: str):
    """The manifest `text` names, its folder confined to the allowed roots like a checkpoint
    folder's."""
    path = checkpoints.checkpoint_folder((text or "").strip() or ".")
    folder = checkpoints.resolve_server_folder(str(path.parent))
    return folder / path.name


zipped, manifest_tab = st.tabs(["Upload a zip", "Folder on the server"])
with zipped, st.form("images_zip_form"):
    archive = st.file_uploader(
        f"Zip with manifest.csv and the images (at most {cap} MiB)",
        type=["zip"],
        key="img_zip",
        max_upload_size=cap,
    )
    fields = image_fields("imz")
    if st.form_submit_button("Upload and import"):
        if archive is None:
            st.error("Choose a .zip file holding manifest.csv and the images it names.")
        else:
            add_images(
                lambda s, name, **options: imports.import_zip(
                    s, data_dir(), name, archive, **options
                ),
                fields,
            )
with manifest_tab, st.form("images_folder_form"):
    manifest = st.text_input(
        "Manifest CSV (relative to the data dir, or under ARENA_CHECKPOINT_ROOTS)",
        key="img_manifest",
    )
    fields = image_fields("imf")
    if st.form_submit_button("Import"):
        add_images(
            lambda s, name, **options: imports.import_images(
                s, data_dir(), name, server_manifest(manifest), **options
            ),
            fields,
        )
