"""The VT model: presets and parameter counts, CLIP initialisation, cached inference, ensembles."""

import json

import pytest
import torch
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from deprojector.errors import ConfigMismatchError, InputShapeError
from deprojector.model import (
    PRESETS,
    VTConfig,
    VTDeprojector,
    parameter_counts,
    preset_info,
    preset_name,
    preset_shape,
    vt_config,
    weighted_mse,
)

pytestmark = pytest.mark.usefixtures("one_thread")
D = 32


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir / "tokenizer", local_files_only=True)
    model = CLIPTextModelWithProjection.from_pretrained(
        tiny_clip_dir / "text_encoder", local_files_only=True
    ).eval()
    return model, tokenizer


def random_inputs(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, D, generator=torch.Generator().manual_seed(seed))


def test_final_preset_has_the_articles_parameter_count_at_768():
    """vt-final at D = 768 has 9,508,608 parameters, 2,362,368 frozen, 16 D^2 in weight matrices."""
    with torch.device("meta"):
        model = VTDeprojector(vt_config("vt-final", 768))
    counts = parameter_counts(model, 768)
    assert counts == {
        "params_total": 9_508_608,
        "params_trainable": 9_508_608 - 2_362_368,
        "params_frozen": 2_362_368,
        "d2_units": 16.0,
    }


@pytest.mark.parametrize(
    ("preset", "d2_units", "hyperparameters"),
    [
        ("vt-final", 16, {"embed_dim": "2D", "vicinity": 2, "mlp_dim": "2D"}),
        ("vt-embed-1d", 14, {"embed_dim": "1D", "vicinity": 2, "mlp_dim": "2D"}),
        ("vt-embed-4d", 20, {"embed_dim": "4D", "vicinity": 2, "mlp_dim": "2D"}),
        ("vt-vicinity-1", 15, {"embed_dim": "2D", "vicinity": 1, "mlp_dim": "2D"}),
        ("vt-vicinity-3", 17, {"embed_dim": "2D", "vicinity": 3, "mlp_dim": "2D"}),
        ("vt-mlp-1d", 14, {"embed_dim": "2D", "vicinity": 2, "mlp_dim": "1D"}),
        ("vt-mlp-4d", 20, {"embed_dim": "2D", "vicinity": 2, "mlp_dim": "4D"}),
    ],
)
def test_presets_are_the_final_vt_and_its_one_change_neighbours(preset, d2_units, hyperparameters):
    """Each preset has the spec's size in D^2 and describes itself by its hyperparameters."""
    info = preset_info(preset, 768)
    assert info["d2_units"] == d2_units
    assert vt_config(preset, 768).hyperparameters() == hyperparameters
    assert info["params_frozen"] == 2_362_368  # frozen attention does not change
    assert set(PRESETS) >= {preset}


@pytest.mark.parametrize(
    ("preset", "hyperparameters"),
    [
        ("vt-embed-1d-vicinity-1", {"embed_dim": "1D", "vicinity": 1, "mlp_dim": "2D"}),
        ("vt-embed-1d-mlp-1d", {"embed_dim": "1D", "vicinity": 2, "mlp_dim": "1D"}),
        ("vt-vicinity-3-mlp-4d", {"embed_dim": "2D", "vicinity": 3, "mlp_dim": "4D"}),
        ("vt-embed-4d-vicinity-1-mlp-1d", {"embed_dim": "4D", "vicinity": 1, "mlp_dim": "1D"}),
    ],
)
def test_corners_of_a_factorial_design_are_named_by_their_changes(preset, hyperparameters):
    """Two- and three-change corners (the article's 2x2x2 design) resolve by name and back."""
    config = vt_config(preset, 768)
    assert config.hyperparameters() == hyperparameters
    assert preset_name(*preset_shape(preset)) == preset


@pytest.mark.parametrize("preset", ["vt", "vt-", "vt-mlp-1d-embed-1d", "vt-embed-0d", "final"])
def test_unknown_preset_names_are_refused_with_the_valid_names(preset):
    """A misspelt preset fails naming the value and the accepted forms."""
    with pytest.raises(ValueError, match=r"unknown preset .*vt-embed-1d-vicinity-1"):
        vt_config(preset)


def test_config_json_is_absolute_and_round_trips():
    """A config serialises to plain JSON with absolute widths and reads back equal."""
    config = vt_config("vt-embed-4d", hidden_size=64)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["embed_dim"] == 256 and data["mlp_dim"] == 128 and data["hidden_size"] == 64
    assert VTConfig.from_dict(data) == config
    with pytest.raises(ConfigMismatchError, match="unknown"):
        VTConfig.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        vt_config("vt-huge")


def test_from_clip_takes_constants_and_frozen_attention_from_clip(clip):
    """sos/null come from encoding "", W^-1 inverts the projection, Q/K/V are CLIP's last layer, frozen."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D), num_members=2)
    tokens = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = text_model.text_model(input_ids=tokens.input_ids)
    assert torch.allclose(model.sos, out.last_hidden_state[0, 0])
    assert torch.allclose(model.null, out.pooler_output[0])
    assert torch.allclose(model.null, out.last_hidden_state[0, 1])  # "" pools at position 1
    eye = model.inverse_projection @ text_model.text_projection.weight
    assert torch.allclose(eye, torch.eye(D), atol=1e-4)
    last = text_model.text_model.encoder.layers[-1]
    for member in model.members:
        assert torch.equal(member.self_attn.q_proj.weight, last.self_attn.q_proj.weight)
        assert torch.equal(member.self_attn.v_proj.bias, last.self_attn.v_proj.bias)
        assert torch.equal(member.self_attn.out_proj.weight, torch.eye(D))
        assert torch.equal(member.linear2.weight[:, :D], last.self_attn.out_proj.weight)
        assert not any(p.requires_grad for p in member.self_attn.parameters())
    # Members start from different random parts.
    assert not torch.equal(model.members[0].linear1.weight, model.members[1].linear1.weight)
    assert model.config.num_heads == text_model.config.num_attention_heads


def test_from_clip_refuses_a_config_of_another_width(clip):
    """A config whose D differs from the CLIP model's raises, naming both widths and the fix."""
    text_model, tokenizer = clip
    with pytest.raises(ConfigMismatchError, match=r"hidden_size=64.*hidden_size=32"):
        VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", 64))


@pytest.mark.parametrize(
    ("preset", "members", "fuse"),
    [("vt-final", 1, 0.0), ("vt-vicinity-1", 2, 0.0), ("vt-vicinity-3", 2, 0.5)],
)
def test_cached_inference_equals_recomputing_the_prefix(clip, preset, members, fuse):
    """KV-cached decoding and the author's prefix recomputation agree within 1e-4."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(
        text_model, tokenizer, vt_config(preset, D), num_members=members, seed=3, fuse=fuse
    )
    embeds = random_inputs(4)
    cached = model.deproject(embeds)
    naive = model.deproject(embeds, use_cache=False)
    assert cached.shape == (4, 77, D)
    assert (cached - naive).abs().max() <= 1e-4
    assert torch.equal(cached[:, 0], model.sos.expand(4, D))


def test_teacher_forced_pass_over_own_output_reproduces_it(clip):
    """forward() is causal: feeding a member its own decoded output gives that output back."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D), seed=1)
    embeds = random_inputs(3)
    decoded = model.deproject(embeds)
    with torch.no_grad():
        forced = model(embeds, decoded)
    assert forced.shape == (3, 77, D)
    assert (forced - decoded).abs().max() <= 1e-4


def test_members_alone_and_the_fuse_setting(clip):
    """With fuse 0 the ensemble is the mean of its members run alone; fuse 1 makes them follow it."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D), num_members=2)
    embeds = random_inputs(2)
    alone = [model.member(k).deproject(embeds) for k in range(2)]
    assert model.member(1).num_members == 1
    assert not torch.allclose(alone[0], alone[1])
    assert torch.allclose(model.deproject(embeds), torch.stack(alone).mean(0), atol=1e-5)
    model.fuse = 1.0
    fused = model.deproject(embeds)
    assert not torch.allclose(fused, torch.stack(alone).mean(0), atol=1e-4)
    with pytest.raises(IndexError, match="2"):
        model.member(2)
    with pytest.raises(ValueError, match="fuse"):
        VTDeprojector(vt_config("vt-final", D), fuse=1.5)


def test_projected_inputs_are_mapped_back_with_the_inverse_projection(clip):
    """deproject(t, from_projected=True) equals deproject(p) for t = W p."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D))
    pooled = random_inputs(2)
    projected = pooled @ text_model.text_projection.weight.detach().T
    assert torch.allclose(
        model.deproject(projected, from_projected=True), model.deproject(pooled), atol=1e-4
    )


def test_wrong_input_shapes_raise_input_shape_error():
    """Inputs of the wrong width or rank raise InputShapeError naming the argument and shape."""
    model = VTDeprojector(vt_config("vt-final", D))
    with pytest.raises(InputShapeError, match=r"embeds has shape \(32,\); expected \(B, 32\)"):
        model.deproject(torch.zeros(D))
    with pytest.raises(InputShapeError, match=r"\(2, 16\)"):
        model.deproject(torch.zeros(2, 16))
    with pytest.raises(InputShapeError, match=r"hidden_states has shape \(2, 76, 32\)"):
        model(torch.zeros(2, D), torch.zeros(2, 76, D))


def test_training_step_updates_only_trainable_parameters(clip):
    """A backward pass through forward + weighted_mse reaches every trainable part, never the frozen attention."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D))
    embeds, target = random_inputs(4), torch.randn(4, 77, D)
    mask = torch.zeros(4, 77)
    mask[:, :5] = 1
    weighted_mse(model(embeds, target), target, mask).backward()
    for name, param in model.named_parameters():
        if "self_attn" in name:
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_weighted_mse_weights_real_tokens_25_to_1_and_ignores_position_0():
    """Real-token errors count 25x padding, position 0 counts 0, weights average 1 per sample."""
    mask = torch.zeros(1, 77)
    mask[0, :3] = 1  # BOS, one token, EOS
    zeros = torch.zeros(1, 77, 4)
    error_at = lambda pos: weighted_mse(zeros.index_fill(1, torch.tensor([pos]), 1.0), zeros, mask)  # noqa: E731
    assert error_at(0) == 0
    assert torch.isclose(error_at(1) / error_at(10), torch.tensor(25.0))
    assert torch.isclose(weighted_mse(torch.ones(1, 77, 4), zeros, mask), torch.tensor(1.0))


def test_cached_inference_follows_weight_changes_and_any_out_projection(clip):
    """Cached decoding stays equal to prefix recomputation after in-place weight updates (as in
    training) and with a non-identity attention out-projection (as in an author's file)."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D))
    embeds = random_inputs(2)
    before = model.deproject(embeds)
    with torch.no_grad():
        model.members[0].linear1.weight.mul_(1.5)
        model.members[0].self_attn.out_proj.weight.add_(0.1 * torch.randn(D, D))
        model.members[0].self_attn.out_proj.bias.add_(0.1)
    after = model.deproject(embeds)
    assert not torch.allclose(before, after, atol=1e-3)
    assert (after - model.deproject(embeds, use_cache=False)).abs().max() <= 1e-4


def test_cached_inference_in_eval_mode_follows_loaded_moved_and_reset_weights(clip):
    """In eval mode the folded inference weights are kept, yet decoding still equals prefix
    recomputation after load_state_dict, a dtype move, and in-place edits followed by eval()."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D)).eval()
    other = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D), seed=9)
    embeds = random_inputs(2)
    before = model.deproject(embeds)
    model.load_state_dict(other.state_dict())
    loaded = model.deproject(embeds)
    assert not torch.allclose(before, loaded, atol=1e-3)
    assert (loaded - other.eval().deproject(embeds, use_cache=False)).abs().max() <= 1e-4
    with torch.no_grad():
        model.members[0].linear1.weight.mul_(1.5)
    model.eval()
    edited = model.deproject(embeds)
    assert not torch.allclose(edited, loaded, atol=1e-3)
    assert (edited - model.deproject(embeds, use_cache=False)).abs().max() <= 1e-4
    model.double()
    wide = model.deproject(embeds.double())
    assert wide.dtype == torch.float64
    assert (wide - model.deproject(embeds.double(), use_cache=False)).abs().max() <= 1e-9


def test_a_member_is_a_constructed_model_sharing_the_ensembles_tensors(clip):
    """member(k) is a one-member VTDeprojector whose tensors are member k's (no copy), with the
    frozen attention still frozen."""
    text_model, tokenizer = clip
    model = VTDeprojector.from_clip(text_model, tokenizer, vt_config("vt-final", D), num_members=3)
    single = model.member(2)
    assert type(single) is VTDeprojector and single.num_members == 1 and single.fuse == 0.0
    assert single.members[0].linear2.weight.data_ptr() == model.members[2].linear2.weight.data_ptr()
    assert single.sos.data_ptr() == model.sos.data_ptr()
    frozen = {n for n, p in single.named_parameters() if not p.requires_grad}
    assert frozen and all("self_attn" in n for n in frozen)
    assert single.training == model.training
