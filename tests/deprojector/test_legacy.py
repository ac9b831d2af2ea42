"""Published v1..v5 folders and author-layout VT folders load with the documented key names.

The folders are written here at D = 32 with exactly the tensor names of `legacy-checkpoints.md`
(shapes scaled from 768 to 32), then read back by the real loader.
"""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from deprojector.checkpoint import inspect_checkpoint, load_deprojector
from deprojector.errors import CheckpointError
from deprojector.legacy import (
    LegacyConfig,
    LegacyDeprojector,
    author_vt_key_map,
    legacy_key_map,
)
from deprojector.model import VTDeprojector, vt_config

pytestmark = pytest.mark.usefixtures("one_thread")

D, HEADS, MLP = 32, 4, 128
CLIP_CONFIG = {
    "hidden_size": D,
    "num_attention_heads": HEADS,
    "intermediate_size": MLP,
    "layer_norm_eps": 1e-5,
    "hidden_act": "quick_gelu",
    "max_position_embeddings": 77,
    "projection_dim": D,
}
# version -> (members, has null_embed, has input MLP, extra config, key count in the doc)
VERSIONS = {
    "v1": (1, False, False, {"model_type": "clip_text_model"}, 22),
    "v3": (1, True, False, {"model_type": "clip_text_model"}, 23),
    "v4": (4, True, False, {"model_type": "clip_text_deprojector_model", "ensemble_size": 4}, 80),
    "v5": (
        4,
        True,
        True,
        {
            "model_type": "clip_text_deprojector_model",
            "ensemble_size": 4,
            "apply_mlp_to_input": True,
            "relative_to_null": True,
        },
        96,
    ),
}


def published_keys(members: int, has_null: bool, has_mlp: bool) -> set[str]:
    """The key names of the doc's table: a member index only when there are several members."""

    def modules(name):
        return [f"{name}.{i}" for i in range(members)] if members > 1 else [name]

    keys = {"position_ids", "sos_embed", "projection.weight"} | (
        {"null_embed"} if has_null else set()
    )
    for m in modules("position_embedding"):
        keys.add(f"{m}.weight")
    for m in modules("encoder_layer"):
        for part in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
        ):
            keys |= {f"{m}.{part}.weight", f"{m}.{part}.bias"}
        for part in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"):
            keys |= {f"{m}.{part}.weight", f"{m}.{part}.bias"}
    for m in modules("final_layer_norm"):
        keys |= {f"{m}.weight", f"{m}.bias"}
    if has_mlp:
        for m in modules("mlp_to_input"):
            keys |= {f"{m}.fc1.weight", f"{m}.fc1.bias", f"{m}.fc2.weight", f"{m}.fc2.bias"}
    return keys


def randomize_constants(model, names, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in names:
            buf = getattr(model, name)
            buf.copy_(torch.randn(buf.shape, generator=g) * (0.2 if buf.dim() == 2 else 1.0))
            if buf.dim() == 2:
                buf.add_(torch.eye(D))  # keep W^-1 well conditioned


def write_published(folder, version, safetensors=False, seed=0):
    members, has_null, has_mlp, extra, count = VERSIONS[version]
    torch.manual_seed(seed)
    model = LegacyDeprojector(
        LegacyConfig(
            hidden_size=D,
            num_heads=HEADS,
            intermediate_size=MLP,
            num_members=members,
            relative_to_null=has_null,
            input_mlp_dim=MLP if has_mlp else 0,
        )
    )
    randomize_constants(model, ["sos", "null", "projection"] if has_null else ["sos", "projection"])
    state = model.state_dict()
    tensors = {f: state[k].clone() for k, f in legacy_key_map(model).items() if f is not None}
    tensors["position_ids"] = torch.arange(77).unsqueeze(0)
    assert set(tensors) == published_keys(members, has_null, has_mlp)
    assert len(tensors) == count
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**CLIP_CONFIG, **extra}))
    if safetensors:
        save_file(tensors, folder / "model.safetensors")
    else:
        torch.save(tensors, folder / "pytorch_model.bin")
    return model.eval()


AUTHOR_VT_CONFIG = {
    **CLIP_CONFIG,
    "ensemble_size": 1,
    "relative_to_null": True,
    "vicinity": 2,
    "use_individual_first_layer": True,
    "first_embed_layer_dim": 2 * D,
    "first_layer_dim": D,
    "num_mlp_layers": 1,
    "mlp_layer_dim": 2 * D,
    "first_embed_layer_dropout": 0.0,
    "mlp_dropout": 0.0,
    "embeds_in_attention": False,
    "use_residual_connection": True,
}


def author_vt_keys(members: int) -> set[str]:
    """The author's VT key table: shared buffers, then every module with a member index."""
    keys = {"deprojection", "sos_embed", "null_embed"}
    for i in range(members):
        keys.add(f"position_embedding.{i}.weight")
        for module in ("linear1_embeds", "linear1", "linear2", "norm", "final_norm"):
            keys |= {f"{module}.{i}.weight", f"{module}.{i}.bias"}
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            keys |= {f"self_attn.{i}.{proj}.weight", f"self_attn.{i}.{proj}.bias"}
        for part in ("norm", "linear1", "linear2"):
            keys |= {f"mlp_layers.{i}.0.{part}.weight", f"mlp_layers.{i}.0.{part}.bias"}
    return keys


def write_author_vt(folder, members=1, config_changes=None):
    model = VTDeprojector(vt_config("vt-final", D, HEADS), num_members=members, seed=5)
    randomize_constants(model, ["sos", "null", "inverse_projection"])
    state = model.state_dict()
    tensors = {f: state[k].clone() for k, f in author_vt_key_map(model).items()}
    assert set(tensors) == author_vt_keys(members)
    assert tensors["linear2.0.weight"].shape == (D, 5 * D)
    assert tensors["position_embedding.0.weight"].shape == (76, D)
    folder.mkdir(parents=True)
    config = {**AUTHOR_VT_CONFIG, "ensemble_size": members, **(config_changes or {})}
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(tensors, folder / "pytorch_model.bin")
    return model.eval()


def inputs(batch=2, seed=1):
    return torch.randn(batch, D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("version", list(VERSIONS))
def test_published_folder_loads_and_decodes_like_the_original(tmp_path, version):
    """Each published layout loads; decoding matches the model that wrote it, cached or not."""
    original = write_published(tmp_path / version, version)
    loaded = load_deprojector(tmp_path / version)
    assert loaded.num_members == VERSIONS[version][0] and loaded.hidden_size == D
    embeds = inputs()
    out = loaded.deproject(embeds)
    assert out.shape == (2, 77, D)
    assert torch.equal(out[:, 0], original.sos.expand(2, D))
    assert torch.allclose(out, original.deproject(embeds), atol=1e-5)
    assert (out - loaded.deproject(embeds, use_cache=False)).abs().max() <= 1e-4
    info = inspect_checkpoint(tmp_path / version)
    assert (info.kind, info.num_members, info.hidden_size) == ("legacy", VERSIONS[version][0], D)


@pytest.mark.parametrize("version", ["v1", "v5"])
def test_teacher_forced_pass_over_a_members_output_reproduces_it(tmp_path, version):
    """The legacy model is causal: one teacher-forced pass over a member's own output gives it back."""
    write_published(tmp_path / version, version)
    single = load_deprojector(tmp_path / version, member=VERSIONS[version][0] - 1)
    embeds = inputs(3)
    decoded = single.deproject(embeds)
    with torch.no_grad():
        forced = single(embeds, decoded)
    assert (forced - decoded).abs().max() <= 1e-4


def test_ensemble_is_the_mean_of_members_run_alone(tmp_path):
    """v5's four members decode independently; the ensemble output is their mean."""
    write_published(tmp_path / "v5", "v5")
    embeds = inputs()
    alone = [load_deprojector(tmp_path / "v5", member=k).deproject(embeds) for k in range(4)]
    assert not torch.allclose(alone[0], alone[1])
    full = load_deprojector(tmp_path / "v5").deproject(embeds)
    assert torch.allclose(full, torch.stack(alone).mean(0), atol=1e-5)
    with pytest.raises(CheckpointError, match=r"member=4 but .* has 4 member"):
        load_deprojector(tmp_path / "v5", member=4)


def test_projected_input_goes_through_the_stored_inverse_projection(tmp_path):
    """--from-projected applies `projection.weight` as e @ W^-1.T before decoding."""
    original = write_published(tmp_path / "v3", "v3")
    loaded = load_deprojector(tmp_path / "v3")
    pooled = inputs()
    projected = pooled @ torch.linalg.inv(original.projection).T
    assert torch.allclose(
        loaded.deproject(projected, from_projected=True), loaded.deproject(pooled), atol=1e-4
    )


def test_published_layout_also_loads_from_safetensors(tmp_path):
    """The same tensors saved as model.safetensors load the same model."""
    original = write_published(tmp_path / "v4", "v4", safetensors=True)
    embeds = inputs()
    assert torch.allclose(
        load_deprojector(tmp_path / "v4").deproject(embeds), original.deproject(embeds)
    )


class CreatesAFile:
    """Unpickling this calls os.mkdir(path): a stand-in for arbitrary code in a .bin file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_bin_with_pickled_code_is_refused_without_running_it(tmp_path):
    """A pytorch_model.bin holding pickled code raises CheckpointError and the code never runs."""
    write_published(tmp_path / "v3", "v3")
    marker = tmp_path / "code-ran"
    state = torch.load(tmp_path / "v3" / "pytorch_model.bin", weights_only=True)
    state["sos_embed"] = CreatesAFile(str(marker))
    torch.save(state, tmp_path / "v3" / "pytorch_model.bin")
    with pytest.raises(
        CheckpointError, match=r"pytorch_model.bin contains pickled objects.*refused"
    ):
        load_deprojector(tmp_path / "v3")
    assert not marker.exists()


def test_a_truncated_bin_is_reported_as_half_written(tmp_path):
    """A .bin cut short raises CheckpointError naming the file and saying it is half-written."""
    write_published(tmp_path / "v3", "v3")
    path = tmp_path / "v3" / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin could not be read.*half-written"):
        load_deprojector(tmp_path / "v3")


@pytest.mark.parametrize("members", [1, 2])
def test_author_vt_folder_loads_as_a_vt(tmp_path, members):
    """An author-layout VT (config.json + .bin, key table of the doc) loads and decodes like the original."""
    original = write_author_vt(tmp_path / "vt", members)
    loaded = load_deprojector(tmp_path / "vt")
    assert isinstance(loaded, VTDeprojector) and loaded.num_members == members
    embeds = inputs()
    out = loaded.deproject(embeds)
    assert torch.allclose(out, original.deproject(embeds), atol=1e-5)
    assert torch.allclose(
        loaded.deproject(
            embeds @ torch.linalg.inv(original.inverse_projection).T, from_projected=True
        ),
        out,
        atol=1e-4,
    )
    single = loaded.member(members - 1)
    decoded = single.deproject(embeds)
    with torch.no_grad():
        assert (single(embeds, decoded) - decoded).abs().max() <= 1e-4
    info = inspect_checkpoint(tmp_path / "vt")
    assert info.kind == "author-vt" and info.config["vicinity"] == 2
    assert info.config["embed_dim"] == 2 * D and info.config["mlp_dim"] == 2 * D


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"use_residual_connection": False}, "use_residual_connection=False"),
        ({"num_mlp_layers": 2}, "num_mlp_layers=2"),
        ({"embeds_in_attention": True}, "embeds_in_attention=True"),
        ({"mlp_dropout": 0.1}, "mlp_dropout=0.1"),
        ({"use_gated_vicinity": True}, "use_gated_vicinity=True"),
    ],
)
def test_author_vt_outside_the_final_family_is_refused(tmp_path, change, named):
    """A VT config with an option the final VT does not use is refused, naming the option."""
    write_author_vt(tmp_path / "vt", config_changes=change)
    with pytest.raises(CheckpointError, match=rf"outside the final VT family.*{named}"):
        load_deprojector(tmp_path / "vt")


def test_author_vt_weights_that_do_not_match_the_config_are_refused(tmp_path):
    """v = 2 weights under a config saying v = 3 raise, naming the tensor, found and expected shapes."""
    write_author_vt(tmp_path / "vt", config_changes={"vicinity": 3})
    with pytest.raises(CheckpointError, match=r"linear2.0.weight.*\(32, 160\).*\(32, 192\)"):
        load_deprojector(tmp_path / "vt")


def test_members_and_input_mlp_are_found_from_tensor_names_when_the_config_is_silent(tmp_path):
    """A v5 folder whose config.json lacks ensemble_size / apply_mlp_to_input still loads as 4 members with the input MLP."""
    original = write_published(tmp_path / "v5", "v5")
    (tmp_path / "v5" / "config.json").write_text(json.dumps(CLIP_CONFIG))
    loaded = load_deprojector(tmp_path / "v5")
    assert loaded.num_members == 4 and loaded.members[0].mlp_to_input is not None
    embeds = inputs()
    assert torch.allclose(loaded.deproject(embeds), original.deproject(embeds), atol=1e-5)
