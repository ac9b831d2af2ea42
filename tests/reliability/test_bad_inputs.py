"""A catalogue of bad inputs, one test per case.

Each test feeds one wrong thing to the function the app (or CLI) calls with it, and asserts the
exact message a user sees (it names the file or field, the value found and the fix) and that
nothing was lost or changed: files untouched, no row written, earlier votes intact.
"""

import hashlib
import json
import re
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sqlalchemy import func, select

from db.auth import create_annotator
from db.engine import make_engine, session_factory, upgrade
from db.errors import (
    AccessDeniedError,
    DatabaseUnavailableError,
    DuplicateVoteError,
    InvalidValueError,
    NotFoundError,
)
from db.models import Annotator, Checkpoint, GenerationJob, Study, Variant, Vote
from db.queries import get_study, live_vote, record_vote, study_pairs
from db.synthetic import create_synthetic_study, create_voters
from deprojector.errors import (
    CheckpointError,
    ConfigMismatchError,
    IncompatiblePipelineError,
    NonFiniteWeightsError,
)
from evaluation.plan import StudySpec, create_study
from evaluation.scheduling import next_pair
from evaluation.study import StudyError
from tests.migrated import migrated_sqlite

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# -- fixtures and helpers -----------------------------------------------------------------------


def tree(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder` (to prove nothing changed)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fullmatch(pattern_parts: list[str | None], text: str) -> bool:
    """True when `text` is the literal parts joined by free text (None marks a free part,
    e.g. a library's own wording quoted inside our message)."""
    pattern = "".join(".+?" if part is None else re.escape(part) for part in pattern_parts)
    return re.fullmatch(pattern, text, flags=re.DOTALL) is not None


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    from deprojector.text import ClipText

    return ClipText.from_folder(tiny_clip_dir)


@pytest.fixture
def vt_folder(tmp_path, clip):
    """A valid VT checkpoint folder (D = 32) saved with save_checkpoint."""
    from deprojector.checkpoint import save_checkpoint
    from deprojector.model import VTDeprojector, vt_config

    model = VTDeprojector.from_clip(clip.text_model, clip.tokenizer, vt_config("vt-final", 32))
    return save_checkpoint(model, tmp_path / "vt-final" / "epoch-1", {"seed": 0})


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """ARENA_DATA_DIR set to an empty folder (the app's upload and path checks read it)."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("ARENA_DATA_DIR", str(folder))
    monkeypatch.delenv("ARENA_CHECKPOINT_ROOTS", raising=False)
    return folder


@pytest.fixture
def sessions(tmp_path):
    engine = migrated_sqlite(tmp_path / "arena.sqlite3")
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def voting(sessions):
    """Two synthetic studies and one voter: (sessions, study 1 id, study 2 id, voter id)."""
    with sessions.begin() as s:
        first = create_synthetic_study(s, "first", n_comparisons=1, n_prompts=2).id
        second = create_synthetic_study(s, "second", n_comparisons=1, n_prompts=2).id
        ((voter, _),) = create_voters(s, 1)
    return sessions, first, second, voter


def count(sessions, model) -> int:
    with sessions.begin() as s:
        return s.scalar(select(func.count()).select_from(model))


# -- checkpoint files ---------------------------------------------------------------------------


def test_truncated_safetensors_is_refused_naming_file_and_size(vt_folder):
    """A half-written model.safetensors: CheckpointError naming the file, its size and the fix."""
    from deprojector.checkpoint import inspect_checkpoint

    weights = vt_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = tree(vt_folder)

    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(vt_folder)

    size = weights.stat().st_size
    assert fullmatch(
        [
            f"{weights} could not be read (",
            None,
            f"): the file is half-written or corrupt (size {size} bytes); save or download it "
            "again",
        ],
        str(info.value),
    ), str(info.value)
    assert tree(vt_folder) == before


def test_corrupt_safetensors_header_is_refused(vt_folder):
    """Garbage where the safetensors header should be: the same clear refusal, file untouched."""
    from deprojector.checkpoint import inspect_checkpoint

    weights = vt_folder / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + b"not a header" * 10)
    before = tree(vt_folder)

    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(vt_folder)

    assert fullmatch(
        [
            f"{weights} could not be read (",
            None,
            "): the file is half-written or corrupt (size 128 bytes); save or download it again",
        ],
        str(info.value),
    ), str(info.value)
    assert tree(vt_folder) == before


def test_half_written_config_json_is_refused(vt_folder):
    """A cut-off config.json: CheckpointError naming the file and saying to save it again."""
    from deprojector.checkpoint import inspect_checkpoint

    config = vt_folder / "config.json"
    config.write_text(config.read_text()[:40])

    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(vt_folder)

    assert fullmatch(
        [
            f"{config} is not valid JSON (",
            None,
            "); the file is half-written or corrupt: save or download the checkpoint again",
        ],
        str(info.value),
    ), str(info.value)


def test_folder_without_weights_is_refused(vt_folder):
    """config.json alone: CheckpointError naming the folder and the expected weight files."""
    from deprojector.checkpoint import inspect_checkpoint

    (vt_folder / "model.safetensors").unlink()

    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(vt_folder)

    assert str(info.value) == (
        f"{vt_folder} holds no weights: expected model.safetensors or pytorch_model.bin"
    )


def test_config_not_matching_tensors_is_refused(vt_folder):
    """config.json says 2 ensemble members, the tensors hold 1: ConfigMismatchError listing
    the missing tensors and what to check."""
    from deprojector.checkpoint import inspect_checkpoint

    config_file = vt_folder / "config.json"
    config = json.loads(config_file.read_text())
    config["num_members"] = 2
    config_file.write_text(json.dumps(config))

    with pytest.raises(ConfigMismatchError) as info:
        inspect_checkpoint(vt_folder)

    assert fullmatch(
        [
            f"{vt_folder / 'model.safetensors'}: tensors do not match config.json: ",
            None,
            " missing [",
            None,
            "], 0 unexpected []; check that config.json (hidden size, members, options) "
            "belongs to these weights",
        ],
        str(info.value),
    ), str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_weights_are_refused(vt_folder, bad):
    """A tensor holding NaN or Inf: NonFiniteWeightsError naming the tensor, the count and the
    fix (an earlier epoch)."""
    from deprojector.checkpoint import inspect_checkpoint

    weights = vt_folder / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel() >= 3)[0]
    tensors[name].view(-1)[:3] = bad
    save_file(tensors, weights, metadata={"format": "deprojector-arena-vt"})

    with pytest.raises(NonFiniteWeightsError) as info:
        inspect_checkpoint(vt_folder)

    assert str(info.value) == (
        f"{weights}: tensor {name!r} holds 3 NaN/Inf values; the checkpoint is broken "
        "(training diverged?): use an earlier epoch's checkpoint"
    )


class _Payload:
    """Pickles to a call that creates a marker file: proof of execution if it ever exists."""

    marker: Path

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_legacy_bin_with_pickled_code_is_refused_and_never_run(tmp_path):
    """A pytorch_model.bin whose pickle calls code: refused by name, and the code never ran."""
    from deprojector.checkpoint import inspect_checkpoint

    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"ensemble_size": 1}))
    marker = tmp_path / "code-ran"
    torch.save({"sos_embed": torch.zeros(4), "x": _Payload(marker)}, folder / "pytorch_model.bin")

    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(folder)

    assert str(info.value) == (
        f"{folder / 'pytorch_model.bin'} contains pickled objects other than tensors, refused "
        "without running them (torch.load weights_only=True); expected a plain state dict of "
        "tensors. Convert it on a trusted machine to model.safetensors."
    )
    assert not marker.exists()


# -- uploads and registered folders (evaluation.checkpoints) -----------------------------------


def test_upload_above_size_cap_is_refused_and_nothing_stored(data_dir, monkeypatch):
    """An upload over ARENA_MAX_UPLOAD_MB: refused with its size, the cap and two fixes; no
    file written under the data dir."""
    from evaluation.checkpoints import CheckpointRejected, save_upload

    monkeypatch.setenv("ARENA_MAX_UPLOAD_MB", "1")
    with pytest.raises(CheckpointRejected) as info:
        save_upload("big.safetensors", b"\0" * (3 * 2**19), b"{}")

    assert str(info.value) == (
        "'big.safetensors' is 1.5 MiB, above the upload cap of 1 MiB; register the folder on "
        "the server instead, or raise ARENA_MAX_UPLOAD_MB"
    )
    assert tree(data_dir) == {}


def test_upload_that_is_not_safetensors_is_refused(data_dir):
    """An uploaded .bin (pickle) is refused by name with the safe alternative; nothing stored."""
    from evaluation.checkpoints import CheckpointRejected, save_upload

    with pytest.raises(CheckpointRejected) as info:
        save_upload("pytorch_model.bin", b"\x80\x04", b"{}")

    assert str(info.value) == (
        "'pytorch_model.bin' is not a .safetensors file; uploads must be safetensors (a legacy "
        ".bin folder can be imported from the server)"
    )
    assert tree(data_dir) == {}


def test_upload_file_name_with_a_path_is_stored_under_a_generated_name(data_dir, vt_folder):
    """An upload named '../../escape.safetensors' lands in data/checkpoints/upload-<hex>/,
    never at the path in its name."""
    from evaluation.checkpoints import save_upload

    weights = (vt_folder / "model.safetensors").read_bytes()
    folder = save_upload("../../escape.safetensors", weights, b"{}")

    assert folder.parent == data_dir / "checkpoints"
    assert re.fullmatch(r"upload-[0-9a-f]{12}", folder.name)
    assert sorted(tree(folder)) == ["config.json", "model.safetensors"]
    assert not list(data_dir.parent.rglob("escape*"))


def test_upload_with_a_config_that_is_not_json_is_refused(data_dir, vt_folder):
    """An uploaded config.json that is not JSON: refused with the parser's reason; nothing
    stored."""
    from evaluation.checkpoints import CheckpointRejected, save_upload

    weights = (vt_folder / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointRejected) as info:
        save_upload("model.safetensors", weights, b"{not json")

    assert str(info.value) == (
        "the config file is not valid UTF-8 JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))"
    )
    assert tree(data_dir) == {}


def test_registered_path_with_dotdot_is_refused(data_dir, vt_folder):
    """'../vt-final/epoch-1' (outside the data dir): refused naming where it resolves, the
    allowed roots and the fix."""
    from evaluation.checkpoints import CheckpointRejected, resolve_server_folder

    text = "../vt-final/epoch-1"
    with pytest.raises(CheckpointRejected) as info:
        resolve_server_folder(text)

    assert str(info.value) == (
        f"folder {text!r} resolves to {vt_folder}, outside the allowed roots {[str(data_dir)]}; "
        "move it under the data dir or add its parent to ARENA_CHECKPOINT_ROOTS"
    )


def test_registered_absolute_path_elsewhere_is_refused(data_dir):
    """An absolute path such as /etc: refused the same way."""
    from evaluation.checkpoints import CheckpointRejected, resolve_server_folder

    with pytest.raises(CheckpointRejected) as info:
        resolve_server_folder("/etc")

    assert str(info.value) == (
        f"folder '/etc' resolves to /etc, outside the allowed roots {[str(data_dir)]}; move it "
        "under the data dir or add its parent to ARENA_CHECKPOINT_ROOTS"
    )


def test_registered_folder_holding_a_symlink_out_is_refused(data_dir, vt_folder):
    """A folder inside the data dir whose weights are a symlink to a file outside: refused
    naming the link, its target and the fix."""
    from evaluation.checkpoints import CheckpointRejected, resolve_server_folder

    folder = data_dir / "sneaky"
    folder.mkdir()
    (folder / "config.json").write_text((vt_folder / "config.json").read_text())
    link = folder / "model.safetensors"
    link.symlink_to(vt_folder / "model.safetensors")

    with pytest.raises(CheckpointRejected) as info:
        resolve_server_folder("sneaky")

    assert str(info.value) == (
        f"{link} is a symlink to {vt_folder / 'model.safetensors'}, outside the allowed root "
        f"{data_dir}; copy the real file into the folder instead"
    )


def test_registered_symlinked_folder_leading_out_is_refused(data_dir, vt_folder):
    """A symlink in the data dir pointing at a folder outside: refused like '..'."""
    from evaluation.checkpoints import CheckpointRejected, resolve_server_folder

    (data_dir / "shortcut").symlink_to(vt_folder, target_is_directory=True)

    with pytest.raises(CheckpointRejected) as info:
        resolve_server_folder("shortcut")

    assert str(info.value) == (
        f"folder 'shortcut' resolves to {vt_folder}, outside the allowed roots "
        f"{[str(data_dir)]}; move it under the data dir or add its parent to "
        "ARENA_CHECKPOINT_ROOTS"
    )


def test_registered_path_with_control_characters_is_refused(data_dir):
    """A path with a newline or escape code: refused before touching the file system."""
    from evaluation.checkpoints import CheckpointRejected, resolve_server_folder

    with pytest.raises(CheckpointRejected) as info:
        resolve_server_folder("ckpt\n/etc")

    assert str(info.value) == "folder path 'ckpt\\n/etc' contains control characters"


def test_symlinked_folder_inside_a_registered_folder_leading_out_is_refused(data_dir, tmp_path):
    """A registered folder holding a symlinked folder (inside the data dir) whose file links
    out: refused naming that file and its target; an import copies nothing."""
    from evaluation.checkpoints import CheckpointRejected, import_folder, resolve_server_folder

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_text("not yours")
    (data_dir / "inner").mkdir()
    link = data_dir / "inner" / "weights.bin"
    link.symlink_to(outside / "secret.bin")
    (data_dir / "legacy").mkdir()
    (data_dir / "legacy" / "config.json").write_text("{}")
    (data_dir / "legacy" / "sub").symlink_to(data_dir / "inner", target_is_directory=True)
    expected = (
        f"{data_dir / 'legacy' / 'sub' / 'weights.bin'} is a symlink to {outside / 'secret.bin'}"
        f", outside the allowed root {data_dir}; copy the real file into the folder instead"
    )

    for accept in (resolve_server_folder, import_folder):
        with pytest.raises(CheckpointRejected) as info:
            accept("legacy")
        assert str(info.value) == expected
    assert not (data_dir / "checkpoints").exists()


def test_registered_folder_whose_weights_were_swapped_is_refused_before_use(
    sessions, vt_folder, data_dir, clip
):
    """Weights replaced after registration: `verify_checkpoint` (run before generation) refuses
    the folder naming it, both sha256 prefixes and the fix."""
    from deprojector.checkpoint import inspect_checkpoint, save_checkpoint
    from deprojector.model import VTDeprojector, vt_config
    from evaluation.checkpoints import CheckpointChanged, register, verify_checkpoint

    folder = data_dir / "models" / "mine"
    shutil.copytree(vt_folder, folder)
    with sessions.begin() as s:
        row = register(s, "mine", "epoch-1", folder, inspect_checkpoint(folder), data_dir=data_dir)
        path, recorded = row.path, row.sha256
    assert verify_checkpoint(path, recorded, data_dir) == folder

    other = VTDeprojector.from_clip(
        clip.text_model, clip.tokenizer, vt_config("vt-final", 32), seed=7
    )
    save_checkpoint(other, folder, {"seed": 7})  # same shapes, other weights
    found = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(CheckpointChanged) as info:
        verify_checkpoint(path, recorded, data_dir)

    assert str(info.value) == (
        f"checkpoint folder {folder}: its weights changed since registration (sha256 "
        f"{found[:16]}..., recorded {recorded[:16]}...); restore the original weights, or "
        "register the new ones under a new label on the Variants page"
    )


def test_registered_folder_that_gained_a_symlink_out_is_refused_before_use(
    sessions, vt_folder, data_dir
):
    """A registered folder whose weights became a symlink out of the data dir (same bytes) is
    refused before use, naming the link."""
    from deprojector.checkpoint import inspect_checkpoint
    from evaluation.checkpoints import CheckpointRejected, register, verify_checkpoint

    folder = data_dir / "models" / "mine"
    shutil.copytree(vt_folder, folder)
    with sessions.begin() as s:
        row = register(s, "mine", "epoch-1", folder, inspect_checkpoint(folder), data_dir=data_dir)
        path, recorded = row.path, row.sha256
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(vt_folder / "model.safetensors")

    with pytest.raises(CheckpointRejected, match="is a symlink to .* outside the allowed root"):
        verify_checkpoint(path, recorded, data_dir)


@pytest.mark.parametrize("value", ["0", "-5", "abc", "0.5"])
def test_bad_upload_cap_setting_is_refused_naming_value_and_fix(monkeypatch, value):
    """ARENA_MAX_UPLOAD_MB that is not a whole number >= 1: one error naming the variable, the
    value and a valid setting."""
    from evaluation.checkpoints import UploadCapError, upload_cap_mb

    monkeypatch.setenv("ARENA_MAX_UPLOAD_MB", value)
    with pytest.raises(UploadCapError) as info:
        upload_cap_mb()

    assert str(info.value) == (
        f"ARENA_MAX_UPLOAD_MB={value!r}: expected a whole number of MiB, at least 1; set e.g. "
        "ARENA_MAX_UPLOAD_MB=512 (or unset it for 512)"
    )


# each value costs a fresh interpreter importing Streamlit; all four are parsed in process
# above, so make test-fast launches the real entry point once (the others are marked slow)
@pytest.mark.parametrize(
    "value", ["0", *(pytest.param(v, marks=pytest.mark.slow) for v in ("-5", "abc", "0.5"))]
)
def test_server_launch_with_a_bad_upload_cap_exits_2_with_one_line(value):
    """`python -m arena_ui.serve` (make run) with a bad ARENA_MAX_UPLOAD_MB exits 2 before
    starting Streamlit, with one line naming the value and the fix."""
    import os
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "arena_ui.serve", "--server.headless", "true"],
        env={**os.environ, "ARENA_MAX_UPLOAD_MB": value},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: ARENA_MAX_UPLOAD_MB={value!r}: expected a whole number of MiB, at least 1; set "
        "e.g. ARENA_MAX_UPLOAD_MB=512 (or unset it for 512)"
    ]


def test_uploaded_config_above_its_cap_is_refused(data_dir, vt_folder):
    """A 'config.json' over 1 MiB: refused with its size, the cap and the fix; nothing stored."""
    from evaluation.checkpoints import CheckpointRejected, save_upload

    weights = (vt_folder / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointRejected) as info:
        save_upload("model.safetensors", weights, b" " * (3 * 2**19))

    assert str(info.value) == (
        "the config file is 1.5 MiB, above the 1 MiB a config.json may have; upload the "
        "config.json saved beside the weights"
    )
    assert tree(data_dir) == {}


def test_upload_rejected_after_it_was_stored_leaves_nothing(sessions, data_dir, vt_folder):
    """An upload stored, then refused at registration (its label is taken): the folder the
    arena made is removed; nothing else in the data dir changes."""
    from deprojector.checkpoint import inspect_checkpoint
    from evaluation.checkpoints import (
        CheckpointRejected,
        discard_on_failure,
        register,
        save_upload,
    )

    _register(sessions, vt_folder, "vt-final")
    before = tree(data_dir)
    weights = (vt_folder / "model.safetensors").read_bytes()
    folder = save_upload("m.safetensors", weights, (vt_folder / "config.json").read_bytes())
    with pytest.raises(CheckpointRejected, match="already has a checkpoint labelled"):
        with discard_on_failure(folder), sessions.begin() as s:
            register(s, "vt-final", "epoch-1", folder, inspect_checkpoint(folder))

    assert tree(data_dir) == before and not folder.exists()


# -- names --------------------------------------------------------------------------------------


def _register(sessions, vt_folder, name: str, label: str = "epoch-1", hyper=None):
    from deprojector.checkpoint import inspect_checkpoint
    from evaluation.checkpoints import register

    info = inspect_checkpoint(vt_folder)
    with sessions.begin() as s:
        register(s, name, label, vt_folder, info, hyper)


def test_variant_name_taken_by_another_kind_is_refused(sessions, vt_folder, data_dir):
    """Registering a VT checkpoint under the name of a legacy variant: refused naming both kinds
    and the fix; the existing variant keeps its checkpoints."""
    from evaluation.checkpoints import CheckpointRejected

    with sessions.begin() as s:
        s.add(Variant(name="v3", kind="legacy", hyperparameters={"architecture": "legacy"}))

    with pytest.raises(CheckpointRejected) as info:
        _register(sessions, vt_folder, "v3")

    assert str(info.value) == (
        "variant 'v3' is of kind 'legacy' but this checkpoint is 'vt'; pick another variant name"
    )
    assert count(sessions, Checkpoint) == 0


def test_checkpoint_label_collision_is_refused(sessions, vt_folder, data_dir):
    """A second 'epoch-1' for the same variant: refused; the first one is kept unchanged."""
    from evaluation.checkpoints import CheckpointRejected

    _register(sessions, vt_folder, "vt-final")
    with pytest.raises(CheckpointRejected) as info:
        _register(sessions, vt_folder, "vt-final")

    assert str(info.value) == (
        "variant 'vt-final' already has a checkpoint labelled 'epoch-1'; pick another label"
    )
    assert count(sessions, Checkpoint) == 1


def test_variant_name_collision_with_other_hyperparameters_is_refused(
    sessions, vt_folder, data_dir
):
    """A checkpoint whose hyperparameters differ from the existing variant of that name is
    refused naming both sets (it would silently mix two designs under one name)."""
    from evaluation.checkpoints import CheckpointRejected

    _register(sessions, vt_folder, "vt-final", "epoch-1")
    with pytest.raises(CheckpointRejected) as info:
        _register(sessions, vt_folder, "vt-final", "epoch-2", hyper={"vicinity": 1})

    assert str(info.value) == (
        "variant 'vt-final' has hyperparameters {'embed_dim': '2D', 'mlp_dim': '2D', "
        "'vicinity': 2} but this checkpoint has {'vicinity': 1}; register it under another "
        "variant name"
    )
    assert count(sessions, Checkpoint) == 1


def test_variant_named_reference_is_refused(sessions, vt_folder, data_dir):
    """'reference' is the built-in no-deprojector variant: refused with the reason."""
    from evaluation.checkpoints import CheckpointRejected

    with pytest.raises(CheckpointRejected) as info:
        _register(sessions, vt_folder, "reference")

    assert str(info.value) == (
        "'reference' is the built-in no-deprojector variant; pick another name"
    )
    assert count(sessions, Variant) == 0


def test_variant_name_with_control_characters_is_refused(sessions, vt_folder, data_dir):
    """A variant name with a terminal escape: refused naming the value and the allowed form."""
    from evaluation.checkpoints import CheckpointRejected

    with pytest.raises(CheckpointRejected) as info:
        _register(sessions, vt_folder, "vt\x1b[31mred")

    assert str(info.value) == (
        "variant name 'vt\\x1b[31mred': expected 1-64 printable characters, e.g. 'vt-final' / "
        "'epoch-8'"
    )
    assert count(sessions, Variant) == 0


def test_annotator_name_with_control_characters_is_refused(sessions):
    """An annotator name with a newline: InvalidValueError naming the character; no account."""
    with pytest.raises(InvalidValueError) as info:
        with sessions.begin() as s:
            create_annotator(s, "bob\nadmin", "voter")

    assert str(info.value) == (
        "annotator name 'bob\\nadmin' contains the control or non-printable character '\\n'; "
        "use letters, digits, spaces and punctuation only"
    )
    assert count(sessions, Annotator) == 0


# -- prompts and studies ------------------------------------------------------------------------


@pytest.fixture
def planning(sessions):
    """Two VT variants one change apart, with an epoch-1 checkpoint each."""
    with sessions.begin() as s:
        for name, vicinity in (("vt-a", 2), ("vt-b", 1)):
            variant = Variant(name=name, kind="vt", hyperparameters={"vicinity": vicinity})
            s.add(Checkpoint(variant=variant, label="epoch-1", path=f"c/{name}", sha256="0" * 64))
    return sessions


def _spec(**changes) -> StudySpec:
    fields = dict(
        name="study",
        variants=("vt-a", "vt-b"),
        base="vt-a",
        checkpoint_labels=("epoch-1",),
        prompts=("cat maid",),
        settings={"model_path": "sd", "scheduler": "ddim", "steps": 2, "width": 64, "height": 64},
    )
    fields.update(changes)
    return StudySpec(**fields)


def test_empty_prompt_is_refused(planning):
    """A blank prompt among good ones: StudyError naming its position; no study written."""
    with pytest.raises(StudyError) as info:
        with planning.begin() as s:
            create_study(s, _spec(prompts=("cat maid", "   ")))

    assert str(info.value) == "prompts[1]: '   ' is empty; expected some text"
    assert count(planning, Study) == 0


def test_prompt_longer_than_77_tokens_is_reported_truncated(clip):
    """A prompt past CLIP's 77 tokens is encoded truncated, and the encoding says so."""
    long_prompt = " ".join(["cat"] * 100)

    encoding = clip.encode(["cat maid", long_prompt])

    assert encoding.truncated == [False, True]


def test_study_preview_reports_prompts_longer_than_77_tokens(planning, tiny_sd_dir):
    """The study preview lists the prompts that will be cut at 77 tokens (counted by the SD
    folder's own tokenizer); nothing is written."""
    from evaluation.plan import plan_summary

    long_prompt = " ".join(["cat"] * 100)
    settings = {"model_path": str(tiny_sd_dir), "scheduler": "ddim", "steps": 2}
    with planning.begin() as s:
        summary = plan_summary(s, _spec(prompts=("cat maid", long_prompt), settings=settings))

    assert summary.truncated_prompts == [long_prompt]
    assert count(planning, Study) == 0


def test_prompt_with_control_characters_is_refused(planning):
    """A prompt holding a NUL byte: StudyError naming the prompt and the character."""
    with pytest.raises(StudyError) as info:
        with planning.begin() as s:
            create_study(s, _spec(prompts=("cat\x00maid",)))

    assert str(info.value) == (
        "prompts[0]: 'cat\\x00maid' contains the control character '\\x00'; remove it"
    )
    assert count(planning, Study) == 0


def test_prompt_that_is_not_valid_unicode_is_refused(planning):
    """A prompt from undecodable bytes (b'cat \\xff' read with surrogateescape): StudyError
    naming the prompt and the fix; no study written."""
    text = b"cat \xffmaid".decode("utf-8", errors="surrogateescape")
    with pytest.raises(StudyError) as info:
        with planning.begin() as s:
            create_study(s, _spec(prompts=(text,)))

    assert str(info.value) == (
        "prompts[0]: 'cat \\udcffmaid' is not valid UTF-8 text; re-type it or save the prompt "
        "file as UTF-8"
    )
    assert count(planning, Study) == 0


def test_study_name_with_control_characters_is_refused(planning):
    """A study name with a bell character: StudyError naming it; no study written."""
    with pytest.raises(StudyError) as info:
        with planning.begin() as s:
            create_study(s, _spec(name="study\x07"))

    assert str(info.value) == "name: 'study\\x07' contains the control character '\\x07'; remove it"
    assert count(planning, Study) == 0


# -- studies, pairs and votes -------------------------------------------------------------------


def test_unknown_study_id_is_refused(voting):
    """?study=999: NotFoundError (a LookupError) from the study lookup and from the scheduler."""
    sessions, _, _, voter = voting
    with sessions.begin() as s:
        with pytest.raises(NotFoundError) as info:
            get_study(s, 999)
        with pytest.raises(NotFoundError) as scheduled:
            next_pair(s, voter, 999)

    assert str(info.value) == "study id 999 does not exist; pick a study from the list"
    assert str(scheduled.value) == "study_id=999: no such study"


def test_vote_on_a_pair_of_another_study_is_refused(voting):
    """A pair id from study 2 sent with study 1: NotFoundError naming both; no vote written."""
    sessions, first, second, voter = voting
    with sessions.begin() as s:
        foreign = study_pairs(s, second)[0].id

    with pytest.raises(NotFoundError) as info:
        with sessions.begin() as s:
            record_vote(s, foreign, voter, "a", "left", NOW, study_id=first)

    assert str(info.value) == f"image pair id {foreign} does not exist in study id {first}"
    assert count(sessions, Vote) == 0


def test_vote_on_an_unknown_pair_is_refused(voting):
    """A pair id that does not exist: NotFoundError; no vote written."""
    sessions, first, _, voter = voting
    with pytest.raises(NotFoundError) as info:
        with sessions.begin() as s:
            record_vote(s, 424242, voter, "a", "left", NOW, study_id=first)

    assert str(info.value) == f"image pair id 424242 does not exist in study id {first}"
    assert count(sessions, Vote) == 0


def test_vote_with_an_unknown_choice_is_refused(voting):
    """choice='up': InvalidValueError listing the allowed choices; no vote written."""
    sessions, first, _, voter = voting
    with sessions.begin() as s:
        pair = study_pairs(s, first)[0].id

    with pytest.raises(InvalidValueError) as info:
        with sessions.begin() as s:
            record_vote(s, pair, voter, "a", "up", NOW, study_id=first)

    assert str(info.value) == "choice='up': expected one of ['left', 'right', 'tie', 'both_bad']"
    assert count(sessions, Vote) == 0


def test_vote_on_a_pair_already_judged_is_refused_and_first_vote_kept(voting):
    """A second vote on a judged pair: DuplicateVoteError with the fix (undo); the first vote
    stays live and unchanged."""
    sessions, first, _, voter = voting
    with sessions.begin() as s:
        pair = study_pairs(s, first)[0].id
        record_vote(s, pair, voter, "a", "left", NOW, study_id=first)

    with pytest.raises(DuplicateVoteError) as info:
        with sessions.begin() as s:
            record_vote(s, pair, voter, "b", "right", NOW, study_id=first)

    assert str(info.value) == (
        f"annotator 'voter-0' already has a live vote on pair {pair}; undo it before voting again"
    )
    with sessions.begin() as s:
        kept = live_vote(s, voter, pair)
        assert (kept.left_side, kept.choice) == ("a", "left")
    assert count(sessions, Vote) == 1


def test_vote_by_a_revoked_annotator_is_refused(voting):
    """A voter whose link was revoked: AccessDeniedError naming them; no vote written."""
    from db.auth import revoke

    sessions, first, _, voter = voting
    with sessions.begin() as s:
        pair = study_pairs(s, first)[0].id
        revoke(s, voter)

    with pytest.raises(AccessDeniedError) as info:
        with sessions.begin() as s:
            record_vote(s, pair, voter, "a", "left", NOW, study_id=first)

    assert str(info.value) == "annotator 'voter-0' is disabled and cannot vote"
    assert count(sessions, Vote) == 0


def test_second_click_during_a_slow_rerun_records_one_vote(voting):
    """Two record_vote calls for the same pair and annotator at the same moment (two reruns,
    two sessions): exactly one vote is recorded, the other call gets DuplicateVoteError."""
    sessions, first, _, voter = voting
    with sessions.begin() as s:
        pair = study_pairs(s, first)[0].id
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def click(choice: str) -> None:
        barrier.wait()
        try:
            with sessions.begin() as s:
                record_vote(s, pair, voter, "a", choice, NOW, study_id=first)
            outcomes.append("recorded")
        except DuplicateVoteError:
            outcomes.append("duplicate")

    threads = [threading.Thread(target=click, args=(c,)) for c in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["duplicate", "recorded"]
    assert count(sessions, Vote) == 1


# -- Stable Diffusion folders -------------------------------------------------------------------


def test_missing_sd_folder_is_refused(tmp_path):
    """A model_path where nothing exists: IncompatiblePipelineError naming it and what a valid
    folder holds."""
    from deprojector.generate import ImageGenerator, SDSettings

    missing = tmp_path / "no-such-sd"
    with pytest.raises(IncompatiblePipelineError) as info:
        ImageGenerator(SDSettings(model_path=str(missing)), device="cpu")

    assert str(info.value) == (
        f"SD model '{missing}': nothing at this path; expected a local diffusers "
        "StableDiffusionPipeline folder (model_index.json and unet/, vae/, text_encoder/, "
        "tokenizer/, scheduler/), or a .safetensors/.ckpt file with config=<such a folder>"
    )


def test_sd_folder_without_model_index_is_refused(tmp_path, tiny_clip_dir):
    """A CLIP folder given as the SD model: refused, listing what the folder holds."""
    from deprojector.generate import ImageGenerator, SDSettings

    with pytest.raises(IncompatiblePipelineError) as info:
        ImageGenerator(SDSettings(model_path=str(tiny_clip_dir)), device="cpu")

    assert str(info.value) == (
        f"SD model '{tiny_clip_dir}': a folder without model_index.json (holds ['text_encoder', "
        "'tokenizer']); expected a local diffusers StableDiffusionPipeline folder "
        "(model_index.json and unet/, vae/, text_encoder/, tokenizer/, scheduler/), or a "
        ".safetensors/.ckpt file with config=<such a folder>"
    )


@pytest.fixture(scope="module")
def wide_sd_dir(tmp_path_factory):
    """A tiny SD pipeline with text width 64: the CPU-sized stand-in for SD 2.x (1024) next to
    deprojectors trained for another width (SD 1.x's 768, here D = 32)."""
    from deprojector.tiny import build_tiny_clip, build_tiny_sd

    clip_dir = build_tiny_clip(tmp_path_factory.mktemp("wide-clip"), hidden_size=64)
    return build_tiny_sd(tmp_path_factory.mktemp("wide-sd"), clip_dir)


def test_sd_folder_of_another_text_width_is_refused(wide_sd_dir, vt_folder):
    """A D = 32 deprojector with a pipeline whose text width is 64: IncompatiblePipelineError
    naming both widths and the fix."""
    from deprojector.generate import ImageGenerator, SDSettings

    generator = ImageGenerator(SDSettings(model_path=str(wide_sd_dir), steps=2), device="cpu")
    with pytest.raises(IncompatiblePipelineError) as info:
        generator.check_checkpoint(vt_folder)

    assert str(info.value) == (
        f"deprojector {str(vt_folder)!r} has hidden size 32, but the SD model "
        f"{str(wide_sd_dir)!r} has text width 64; expected them equal: pair a deprojector "
        "trained on this pipeline's CLIP (SD 1.x uses CLIP-L, 768) with this model"
    )


def test_generate_command_for_an_unknown_study_names_the_known_ones(tmp_path, capsys):
    """`python -m evaluation generate --study nope`: exit 2 and a message listing the studies."""
    from evaluation.pregenerate import main

    url = f"sqlite:///{tmp_path / 'arena.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        create_synthetic_study(s, "demo", n_comparisons=1, n_prompts=1)
    engine.dispose()

    code = main(["--study", "nope", "--database-url", url])

    assert code == 2
    assert capsys.readouterr().err == (
        "error: --study 'nope': no study named 'nope'; existing studies: ['demo']\n"
    )


def test_generation_with_a_missing_checkpoint_folder_renders_nothing(
    tmp_path, tiny_clip_dir, tiny_sd_dir
):
    """A registered checkpoint folder deleted from disk: GenerationError listing it and the
    fix before any image is rendered; every job stays pending."""
    from evaluation.pregenerate import GenerationError, GenerationOptions, run_generation
    from tests.reliability.tiny_arena import build_tiny_arena

    arena = build_tiny_arena(tmp_path / "data", tiny_clip_dir, tiny_sd_dir, seeds=(0,))
    gone = arena.data_dir / "checkpoints" / "vt-b" / "epoch-1"
    shutil.rmtree(gone)
    engine = make_engine(arena.url)

    with pytest.raises(GenerationError) as info:
        run_generation(
            engine, arena.study, GenerationOptions(data_dir=arena.data_dir, device="cpu")
        )

    assert str(info.value) == (
        f"cannot pre-generate; nothing was rendered:\n  - checkpoint folder {gone} does not "
        "exist\nRe-register or restore these checkpoints, then run again."
    )
    with session_factory(engine).begin() as s:
        assert set(s.scalars(select(GenerationJob.status))) == {"pending"}
    engine.dispose()
    assert not (arena.data_dir / "images").exists()


def test_generation_with_swapped_checkpoint_weights_renders_nothing(
    tmp_path, tiny_clip_dir, tiny_sd_dir
):
    """A registered checkpoint whose weights were replaced after registration (same shapes,
    other values): GenerationError naming the folder, both sha256 prefixes and the fix before
    any image is rendered; every job stays pending."""
    from evaluation.pregenerate import GenerationError, GenerationOptions, run_generation
    from tests.reliability.tiny_arena import build_tiny_arena

    arena = build_tiny_arena(tmp_path / "data", tiny_clip_dir, tiny_sd_dir, seeds=(0,))
    swapped = arena.data_dir / "checkpoints" / "vt-b" / "epoch-1"
    recorded = hashlib.sha256((swapped / "model.safetensors").read_bytes()).hexdigest()
    weights = load_file(swapped / "model.safetensors")
    save_file({name: value + 0.5 for name, value in weights.items()}, swapped / "model.safetensors")
    found = hashlib.sha256((swapped / "model.safetensors").read_bytes()).hexdigest()
    engine = make_engine(arena.url)

    with pytest.raises(GenerationError) as info:
        run_generation(
            engine, arena.study, GenerationOptions(data_dir=arena.data_dir, device="cpu")
        )

    assert str(info.value) == (
        f"cannot pre-generate; nothing was rendered:\n  - checkpoint folder {swapped}: its "
        f"weights changed since registration (sha256 {found[:16]}..., recorded "
        f"{recorded[:16]}...); restore the original weights, or register the new ones under a "
        "new label on the Variants page\nRe-register or restore these checkpoints, then run again."
    )
    with session_factory(engine).begin() as s:
        assert set(s.scalars(select(GenerationJob.status))) == {"pending"}
    engine.dispose()
    assert not (arena.data_dir / "images").exists()


# -- the tally command --------------------------------------------------------------------------


@pytest.fixture
def vote_csv(tmp_path):
    """A well-formed two-vote interchange CSV."""
    header = (
        "study,group,comparison,variant_a,variant_b,a_setting,b_setting,prompt,prompt_kind,"
        "checkpoint,seed,annotator,left_variant,choice,shown_at,voted_at"
    )
    rows = [
        "s,vicinity,a vs b,a,b,2,1,cat,single,epoch-1,0,ann,a,left,"
        "2026-11-26T12:00:00Z,2026-11-26T12:00:05Z",
        "s,vicinity,a vs b,a,b,2,1,dog,single,epoch-1,0,ann,b,right,"
        "2026-11-26T12:00:06Z,2026-11-26T12:00:09Z",
    ]
    path = tmp_path / "votes.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _tally(path: Path, capsys) -> tuple[int, str, str]:
    from evaluation.tally_cli import main

    code = main(["--votes", str(path), "--format", "json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tally_of_a_vote_csv_with_a_bad_choice_names_the_line(vote_csv, capsys):
    """choice 'up' on data row 2: exit 1, the CSV line, the column, the value and the fix."""
    vote_csv.write_text(vote_csv.read_text().replace(",right,", ",up,"))
    before = vote_csv.read_bytes()

    code, out, err = _tally(vote_csv, capsys)

    assert (code, out) == (1, "")
    assert err == (
        f"error: {vote_csv} line 3 (data row 2), column 'choice': found 'up'; expected left, "
        "right, tie, both_bad. Fix or drop that row.\n"
    )
    assert vote_csv.read_bytes() == before


def test_tally_of_a_vote_csv_missing_a_column_names_it(vote_csv, capsys):
    """A CSV without the 'choice' column: exit 1 naming the header and the missing column."""
    import pandas as pd

    frame = pd.read_csv(vote_csv, dtype=str).drop(columns=["choice"])
    frame.to_csv(vote_csv, index=False)

    code, out, err = _tally(vote_csv, capsys)

    assert (code, out) == (1, "")
    assert err.startswith(f"error: {vote_csv} line 1 (header): missing column(s) 'choice'; ")


def test_tally_of_a_vote_csv_that_is_not_utf8_is_refused(vote_csv, capsys):
    """Latin-1 bytes in the CSV: exit 1 naming the byte, its offset and the fix."""
    data = vote_csv.read_bytes().replace(b"cat", b"caf\xe9")
    vote_csv.write_bytes(data)

    offset = data.index(b"\xe9")

    code, out, err = _tally(vote_csv, capsys)

    assert (code, out) == (1, "")
    assert err == (
        f"error: {vote_csv}: not UTF-8 text (byte b'\\xe9' at offset {offset}); "
        "expected a UTF-8 CSV. Re-save the file as UTF-8.\n"
    )


# -- the database file --------------------------------------------------------------------------


def test_locked_database_gives_a_clear_error_and_loses_no_vote(tmp_path):
    """Another program holds SQLite's write lock past the busy timeout: DatabaseUnavailableError
    naming the file, the wait and the fix; once it lets go the vote records normally."""
    import sqlite3

    path = tmp_path / "arena.sqlite3"
    engine = make_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=200)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        study = create_synthetic_study(s, "locked", n_comparisons=1, n_prompts=1).id
        ((voter, _),) = create_voters(s, 1)
        pair = study_pairs(s, study)[0].id
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")

    with pytest.raises(DatabaseUnavailableError) as info:
        with sessions.begin() as s:
            record_vote(s, pair, voter, "a", "left", NOW)
    other.execute("ROLLBACK")
    other.close()

    assert str(info.value) == (
        f"the SQLite database {path} stayed locked for 0.2 s (another program, e.g. a second "
        "worker or an SQLite browser, or a long transaction of this one holds the write lock): "
        "close it and retry"
    )
    with sessions.begin() as s:
        record_vote(s, pair, voter, "a", "left", NOW)
    assert count(sessions, Vote) == 1
    engine.dispose()


@pytest.mark.root
def test_read_only_database_gives_a_clear_error_and_keeps_its_votes(tmp_path):
    """The database on a read-only file system (a tmpfs remounted ro; needs root): a vote
    raises DatabaseUnavailableError naming the file and the fix; the earlier vote is intact."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        path = disk / "arena.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        with session_factory(engine).begin() as s:
            study = create_synthetic_study(s, "ro", n_comparisons=1, n_prompts=1).id
            ((voter, _),) = create_voters(s, 1)
            first, second = [p.id for p in study_pairs(s, study)]
            record_vote(s, first, voter, "a", "left", NOW)
        engine.dispose()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)

        engine = make_engine(f"sqlite:///{path}")
        with pytest.raises(DatabaseUnavailableError) as info:
            with session_factory(engine).begin() as s:
                record_vote(s, second, voter, "a", "left", NOW)
        engine.dispose()

        assert fullmatch(
            [
                f"cannot write the SQLite database {path}: ",
                None,
                ". Make the file and its folder writable (SQLite also writes the -wal and -shm "
                "files beside it) or set ARENA_DATA_DIR to a writable folder",
            ],
            str(info.value),
        ), str(info.value)
        reader = make_engine(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true")
        with session_factory(reader, readonly=True)() as s:
            votes = s.execute(select(Vote.pair_id, Vote.choice)).all()
        reader.dispose()
        assert votes == [(first, "left")]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
