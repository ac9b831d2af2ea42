"""The tiny offline builders write folders that the ordinary loading code reads."""

import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from deprojector.tiny import build_tiny_clip


def test_tiny_clip_reloads_offline_and_tokenizes_any_text(tiny_clip_dir):
    """The tiny CLIP reloads with from_pretrained and tokenizes any text, padding to 77."""
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir / "tokenizer", local_files_only=True)
    model = CLIPTextModelWithProjection.from_pretrained(
        tiny_clip_dir / "text_encoder", local_files_only=True
    )
    batch = tokenizer(
        ["cat maid", "héllo, wörld ✓", ""],
        padding="max_length",
        max_length=77,
        truncation=True,
        return_tensors="pt",
    )
    assert batch.input_ids.shape == (3, 77)
    assert tokenizer.unk_token_id not in batch.input_ids[:2, 1:10].tolist()
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert model.config.hidden_size == 32 and model.config.projection_dim == 32
    out = model(input_ids=batch.input_ids)
    assert out.last_hidden_state.shape == (3, 77, 32)


def test_tiny_clip_is_deterministic_for_a_seed(tmp_path, tiny_clip_dir):
    """The same seed writes the same weights; another seed writes different ones."""
    same = load_file(build_tiny_clip(tmp_path / "a", seed=0) / "text_encoder/model.safetensors")
    other = load_file(build_tiny_clip(tmp_path / "b", seed=1) / "text_encoder/model.safetensors")
    ref = load_file(tiny_clip_dir / "text_encoder/model.safetensors")
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert not all(torch.equal(ref[k], other[k]) for k in ref)


def test_tiny_sd_shares_the_clip_text_tower(tiny_clip_dir, tiny_sd_dir):
    """The SD pipeline's text encoder gives the tiny CLIP's hidden states exactly."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    clip = CLIPTextModelWithProjection.from_pretrained(
        tiny_clip_dir / "text_encoder", local_files_only=True
    )
    ids = pipe.tokenizer(
        ["cat maid"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        expected = clip(input_ids=ids).last_hidden_state
        got = pipe.text_encoder(input_ids=ids).last_hidden_state
    assert torch.equal(expected, got)
    assert pipe.unet.config.cross_attention_dim == 32


def test_tiny_sd_renders_the_same_image_for_a_seed(tiny_sd_dir):
    """A reloaded tiny pipeline renders bit-identical images for the same seed."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def render(seed):
        return pipe(
            "cat maid",
            num_inference_steps=2,
            height=64,
            width=64,
            output_type="np",
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images[0]

    first, again, other = render(0), render(0), render(1)
    assert first.shape == (64, 64, 3)
    assert (first == again).all()
    assert not (first == other).all()
