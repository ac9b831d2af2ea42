"""Our VT checkpoint folders: self-describing, atomic, validated on load."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from deprojector.checkpoint import (
    CheckpointInfo,
    inspect_checkpoint,
    load_deprojector,
    save_checkpoint,
)
from deprojector.errors import CheckpointError, ConfigMismatchError, NonFiniteWeightsError
from deprojector.model import VTDeprojector, vt_config

pytestmark = pytest.mark.usefixtures("one_thread")
D = 32


def make_model(members=1, fuse=0.0, preset="vt-final"):
    model = VTDeprojector(vt_config(preset, D, 4), num_members=members, fuse=fuse, seed=7)
    with torch.no_grad():
        model.sos.normal_()
        model.null.normal_()
        model.inverse_projection.add_(0.1 * torch.randn(D, D))
    return model


META = {"seed": 7, "epoch": 3, "data_fingerprint": "abc123", "metrics": {"mse": 0.5}}


def test_saved_folder_describes_itself_and_reloads_identically(tmp_path):
    """save_checkpoint writes model.safetensors + config.json (config, members, fuse, meta,
    versions); load_deprojector gives a model with the same output."""
    model = make_model(members=2, fuse=0.25, preset="vt-mlp-4d")
    folder = save_checkpoint(model, tmp_path / "epoch-3", META)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "deprojector-arena-vt"
    assert config["config"] == vt_config("vt-mlp-4d", D, 4).to_dict()
    assert (config["num_members"], config["fuse"]) == (2, 0.25)
    assert config["hyperparameters"] == {"embed_dim": "2D", "vicinity": 2, "mlp_dim": "4D"}
    assert {k: config[k] for k in META} == META
    assert {"python", "torch", "transformers", "accelerate", "safetensors", "numpy"} <= set(
        config["versions"]
    )
    loaded = load_deprojector(folder)
    assert (loaded.num_members, loaded.fuse, loaded.hidden_size) == (2, 0.25, D)
    embeds = torch.randn(3, D)
    assert torch.equal(loaded.deproject(embeds), model.deproject(embeds))
    assert torch.equal(
        load_deprojector(folder, member=1).deproject(embeds), model.member(1).deproject(embeds)
    )


def test_saving_over_a_folder_replaces_it_and_leaves_no_temporary_files(tmp_path):
    """A second save to the same folder replaces the first; nothing else is left beside it."""
    save_checkpoint(make_model(), tmp_path / "ckpt", {"epoch": 1})
    save_checkpoint(make_model(members=2), tmp_path / "ckpt", {"epoch": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["epoch"] == 2
    assert load_deprojector(tmp_path / "ckpt").num_members == 2


def test_meta_must_be_json_and_not_shadow_the_format(tmp_path):
    """Reserved or non-JSON meta is refused before anything is written."""
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(make_model(), tmp_path / "a", {"config": {}})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(make_model(), tmp_path / "b", {"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_inspect_reports_kind_size_and_parameter_counts(tmp_path):
    """inspect_checkpoint validates the folder and reports its kind, D, members and counts."""
    model = make_model(members=2)
    save_checkpoint(model, tmp_path / "ckpt", META)
    info = inspect_checkpoint(tmp_path / "ckpt")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert info == CheckpointInfo(
        kind="vt",
        hidden_size=D,
        num_members=2,
        params_total=sum(p.numel() for p in model.parameters()),
        params_trainable=trainable,
        config=json.loads((tmp_path / "ckpt" / "config.json").read_text()),
    )


def corrupt_tensor(folder, name, value):
    tensors = load_file(folder / "model.safetensors")
    tensors[name] = value(tensors[name])
    save_file(tensors, folder / "model.safetensors")


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (
            lambda f: (f / "config.json").unlink(),
            CheckpointError,
            r"config.json is missing",
        ),
        (
            lambda f: (f / "config.json").write_text('{"format": "deprojector-arena-vt", "con'),
            CheckpointError,
            r"config.json is not valid JSON.*half-written",
        ),
        (
            lambda f: (f / "model.safetensors").write_bytes(
                (f / "model.safetensors").read_bytes()[:5000]
            ),
            CheckpointError,
            r"model.safetensors could not be read.*half-written",
        ),
        (
            lambda f: (f / "model.safetensors").unlink(),
            CheckpointError,
            r"holds no weights: expected model.safetensors or pytorch_model.bin",
        ),
        (
            lambda f: corrupt_tensor(
                f,
                "members.0.linear1.weight",
                lambda t: t.index_fill(0, torch.tensor([3]), float("nan")),
            ),
            NonFiniteWeightsError,
            r"model.safetensors: tensor 'members.0.linear1.weight' holds 32 NaN/Inf",
        ),
        (
            lambda f: corrupt_tensor(f, "members.0.mlp_fc1.weight", lambda t: t[:40]),
            ConfigMismatchError,
            r"'members.0.mlp_fc1.weight' has shape \(40, 32\), config.json implies \(64, 32\)",
        ),
        (
            lambda f: (f / "config.json").write_text(
                (f / "config.json").read_text().replace('"vicinity": 2', '"vicinity": 3')
            ),
            ConfigMismatchError,
            r"linear2.weight' has shape \(32, 160\), config.json implies \(32, 192\)",
        ),
    ],
)
def test_damaged_folders_raise_specific_errors(tmp_path, damage, error, message):
    """Missing / half-written files, NaN weights and tensors not matching the config each raise
    a specific error naming the file, what was found and what was expected."""
    folder = save_checkpoint(make_model(), tmp_path / "ckpt", META)
    damage(folder)
    with pytest.raises(error, match=message):
        inspect_checkpoint(folder)
    with pytest.raises(error):
        load_deprojector(folder)


def test_a_missing_folder_is_named(tmp_path):
    """Loading a folder that does not exist names it."""
    with pytest.raises(CheckpointError, match=r"nowhere does not exist"):
        load_deprojector(tmp_path / "nowhere")
