"""Tiny offline models: a CLIP text model and a Stable Diffusion pipeline built from configs.

Both are saved as ordinary folders on disk, so the demo and the tests load them through the same
`from_pretrained(..., local_files_only=True)` code a user's real weights go through. Random
weights, deterministic for a seed; nothing is downloaded.
"""

from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
MAX_LENGTH = 77  # CLIP's context; SD pipelines pad to it


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer held in memory: tokenizes any text, one token per byte."""
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {START_TOKEN: 0, END_TOKEN: 1}
    for suffix in ("", "</w>"):  # a byte inside a word, and a byte ending a word
        for char in alphabet:
            vocab.setdefault(char + suffix, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_LENGTH)


def tiny_text_config(tokenizer: CLIPTokenizer, hidden_size: int = 32) -> CLIPTextConfig:
    """A small CLIP text config that matches `tokenizer` (vocab, start/end ids)."""
    if hidden_size <= 0 or hidden_size % 4:
        raise ValueError(
            f"hidden_size={hidden_size}: expected a positive multiple of 4 (4 attention heads)"
        )
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,  # as in CLIP, so an MLP of up to 4D can be sliced
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        projection_dim=hidden_size,  # square projection W, as CLIP-L's 768 x 768
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.convert_tokens_to_ids(START_TOKEN),
        eos_token_id=tokenizer.convert_tokens_to_ids(END_TOKEN),  # CLIP pools at the first EOS
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_clip(folder: str | Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """Write `folder/tokenizer/` and `folder/text_encoder/` (CLIPTextModelWithProjection)."""
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer()
    config = tiny_text_config(tokenizer, hidden_size)
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = CLIPTextModelWithProjection(config).eval()
    tokenizer.save_pretrained(folder / "tokenizer")
    model.save_pretrained(folder / "text_encoder")
    return folder


def build_tiny_sd(folder: str | Path, clip_folder: str | Path, seed: int = 0) -> Path:
    """Write a complete StableDiffusionPipeline folder whose text tower is the tiny CLIP's.

    The pipeline's `text_encoder` is a plain CLIPTextModel carrying the same weights as
    `clip_folder/text_encoder` (without the projection), and its tokenizer is the same, so the
    reference conditioning and the deprojector's training data come from one model.
    """
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    folder, clip_folder = Path(folder), Path(clip_folder)
    for sub in ("tokenizer", "text_encoder"):
        if not (clip_folder / sub).is_dir():
            raise FileNotFoundError(
                f"clip_folder={str(clip_folder)!r} has no {sub}/ folder; "
                "expected a folder written by build_tiny_clip"
            )
    tokenizer = CLIPTokenizer.from_pretrained(clip_folder / "tokenizer", local_files_only=True)
    with_projection = CLIPTextModelWithProjection.from_pretrained(
        clip_folder / "text_encoder", local_files_only=True
    )
    text_encoder = CLIPTextModel(with_projection.config)
    text_encoder.load_state_dict(with_projection.text_model.state_dict())
    hidden_size = with_projection.config.hidden_size

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32,  # latent side; 64 px images with the VAE's factor of 2
            in_channels=4,
            out_channels=4,
            block_out_channels=(4, 8),
            layers_per_block=1,
            norm_num_groups=2,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=hidden_size,
            attention_head_dim=2,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            block_out_channels=[4, 8],
            latent_channels=4,
            norm_num_groups=2,
            sample_size=64,
        )
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085,  # SD 1.x's noise schedule
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++",
        steps_offset=1,  # as SD 1.5's scheduler config
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder
