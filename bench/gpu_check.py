"""GPU check: SD 1.5-architecture rendering speed, the deprojector's share of it, VT training speed.

    bash bench/gpu_check.sh                          # CUDA machine: < 8 min, log under $OUT
    .venv/bin/python bench/gpu_check.py --tiny       # CPU, tiny models, seconds (the test runs it)

Full mode builds a Stable Diffusion 1.5-architecture pipeline with RANDOM weights from the known
SD 1.5 configs (UNet, VAE, CLIP ViT-L/14 text tower 768 wide x 12 layers; the tiny byte-level
tokenizer stands in for CLIP's), saves it and loads it back through `ImageGenerator`, then
measures at 512x512, 30 steps, float16: images/s for a naive loop (one pipeline call per image,
text prompts) and for the project's batched path, the VT deprojector's (vt-final, D = 768) time per
prompt as a share of the time per image (target < 2 %), and VT training samples/s at D = 768
(batch 100, forward + weighted MSE + backward + Adam). Speed does not depend on the weights.
Prints one line per figure and writes all figures as JSON to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deprojector.checkpoint import save_checkpoint  # noqa: E402
from deprojector.generate import ImageGenerator, RenderRequest, SDSettings  # noqa: E402
from deprojector.model import SEQ_LEN, VTDeprojector, vt_config, weighted_mse  # noqa: E402
from deprojector.prompts import ARTICLE_PROMPTS  # noqa: E402
from deprojector.text import ClipText  # noqa: E402
from deprojector.tiny import build_tiny_clip, build_tiny_sd, build_tiny_tokenizer  # noqa: E402

PROMPTS = list(ARTICLE_PROMPTS)

# Stable Diffusion 1.5's published component configs (runwayml/stable-diffusion-v1-5).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
CLIP_L_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": SEQ_LEN,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}


@dataclass(frozen=True)
class CheckConfig:
    tiny: bool = False
    size: int = 512  # image side, pixels
    steps: int = 30
    naive_images: int = 8  # one pipeline call each
    batched_images: int = 16  # rendered through ImageGenerator.render
    batch_size: int = 8
    hidden_size: int = 768  # D of the CLIP text tower and the deprojector
    train_batch: int = 100
    train_steps: int = 30


TINY = CheckConfig(
    tiny=True,
    size=32,
    steps=2,
    naive_images=2,
    batched_images=4,
    batch_size=2,
    hidden_size=32,
    train_batch=8,
    train_steps=2,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of fn, with the device's queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# --- models ------------------------------------------------------------------------------------


def build_sd15_random(folder: Path, device: torch.device, seed: int = 0) -> tuple[Path, Path]:
    """Write a random-weight CLIP-L text folder and an SD 1.5-architecture pipeline sharing it."""
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tiny_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tokenizer.pad_token_id,
        **CLIP_L_TEXT,
    )
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the GPU: seconds instead of a minute on CPU
        clip = CLIPTextModelWithProjection(text_config).eval()
        text_encoder = CLIPTextModel(text_config).eval()
        text_encoder.load_state_dict(clip.text_model.state_dict())
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
    clip_dir, sd_dir = folder / "clip-l", folder / "sd15-random"
    tokenizer.save_pretrained(clip_dir / "tokenizer")
    clip.save_pretrained(clip_dir / "text_encoder")
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++",
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=torch.float16).save_pretrained(sd_dir)  # as SD 1.5 is usually shipped
    del pipe, unet, vae, text_encoder, clip
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return clip_dir, sd_dir


def build_vt(clip_dir: Path, folder: Path, device: torch.device) -> Path:
    """A vt-final VT for the CLIP in clip_dir (random trainable weights), saved as a checkpoint."""
    clip = ClipText.from_folder(clip_dir, device=device)
    config = vt_config("vt-final", hidden_size=clip.hidden_size)
    model = VTDeprojector.from_clip(clip.text_model, clip.tokenizer, config)
    return save_checkpoint(model, folder / "vt-final", {"seed": 0, "note": "gpu_check, untrained"})


# --- measurements ------------------------------------------------------------------------------


def measure_rendering(cfg: CheckConfig, sd_dir: Path, vt_dir: Path, device) -> dict:
    settings = SDSettings(str(sd_dir), steps=cfg.steps, width=cfg.size, height=cfg.size)
    gen = ImageGenerator(settings, device=device)
    pipe = gen.pipe

    def naive_one(prompt: str, seed: int) -> None:
        pipe(
            prompt=prompt,
            negative_prompt=settings.negative_prompt,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            width=settings.width,
            height=settings.height,
            generator=torch.Generator("cpu").manual_seed(seed),
        )

    # 1. Naive loop: one text-prompt pipeline call per image (after one warm-up call).
    naive_one(PROMPTS[0], 0)
    naive_s = wall(
        lambda: [naive_one(PROMPTS[i % 6], i) for i in range(cfg.naive_images)], gen.device
    )

    # 2. The project's path: ImageGenerator.render in full batches, reference and VT.
    def requests(checkpoint: str | None, offset: int) -> list[RenderRequest]:
        return [
            RenderRequest(PROMPTS[i % 6], seed=offset + i, checkpoint=checkpoint)
            for i in range(cfg.batched_images)
        ]

    gen.render(requests(None, 1000)[: cfg.batch_size], batch_size=cfg.batch_size)  # warm-up
    reference_s = wall(lambda: gen.render(requests(None, 0), cfg.batch_size), gen.device)
    vt = gen.check_checkpoint(vt_dir)
    gen.render(requests(str(vt_dir), 1000)[: cfg.batch_size], batch_size=cfg.batch_size)
    gen._conditionings.clear()  # count every deprojection in the timed run
    vt_s = wall(lambda: gen.render(requests(str(vt_dir), 0), cfg.batch_size), gen.device)

    # 3. The deprojector alone, one prompt at a time as the generator runs it.
    per_prompt = [
        wall(lambda p=p: gen.conditioner.deprojected([p], vt), gen.device) for p in PROMPTS
    ]
    deproject_s = statistics.median(per_prompt)
    image_s = vt_s / cfg.batched_images
    return {
        "device_name": torch.cuda.get_device_name(gen.device)
        if gen.device.type == "cuda"
        else "cpu",
        "dtype": str(gen.dtype).removeprefix("torch."),
        "size": cfg.size,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "naive_images_per_s": cfg.naive_images / naive_s,
        "batched_reference_images_per_s": cfg.batched_images / reference_s,
        "batched_vt_images_per_s": cfg.batched_images / vt_s,
        "batched_speedup_vs_naive": (cfg.batched_images / vt_s) / (cfg.naive_images / naive_s),
        "deproject_ms_per_prompt": deproject_s * 1e3,
        # Worst case: every image has a prompt of its own. In the timed render each of the six
        # prompts was deprojected once for batched_images / 6 images (the generator caches it).
        "deproject_share_per_image_pct": 100 * deproject_s / image_s,
        "deproject_share_in_render_pct": 100 * deproject_s * min(6, cfg.batched_images) / vt_s,
    }


def measure_training(cfg: CheckConfig, device: torch.device) -> dict:
    """VT training samples/s: forward + weighted MSE + backward + Adam, float32, random data."""
    d, b = cfg.hidden_size, cfg.train_batch
    model = VTDeprojector(vt_config("vt-final", hidden_size=d)).to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator("cpu").manual_seed(0)
    embeds = torch.randn(b, d, generator=g).to(device)
    hidden = torch.randn(b, SEQ_LEN, d, generator=g).to(device)
    lengths = torch.randint(3, SEQ_LEN, (b, 1), generator=g)
    mask = (torch.arange(SEQ_LEN)[None] < lengths).long().to(device)  # (B, 77)

    def step() -> None:
        loss = weighted_mse(model(embeds, hidden), hidden, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):  # warm-up: allocator, kernels, Adam state
        step()
    seconds = wall(lambda: [step() for _ in range(cfg.train_steps)], device)
    return {
        "train_hidden_size": d,
        "train_batch": b,
        "train_samples_per_s": b * cfg.train_steps / seconds,
    }


def run_check(cfg: CheckConfig, device: torch.device, workdir: Path) -> dict:
    started = time.perf_counter()
    if cfg.tiny:
        clip_dir = build_tiny_clip(workdir / "clip", hidden_size=cfg.hidden_size)
        sd_dir = build_tiny_sd(workdir / "sd", clip_dir)
    else:
        clip_dir, sd_dir = build_sd15_random(workdir, device)
    vt_dir = build_vt(clip_dir, workdir, device)
    built_s = time.perf_counter() - started
    results = {
        "config": asdict(cfg),
        "build_s": built_s,
        **measure_rendering(cfg, sd_dir, vt_dir, device),
        **measure_training(cfg, device),
    }
    results["total_s"] = time.perf_counter() - started
    results["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    return results


def report(results: dict) -> str:
    r = results
    return "\n".join(
        [
            f"device {r['device_name']} ({r['dtype']}), {r['size']}x{r['size']}, {r['steps']} "
            f"steps, batch {r['batch_size']}",
            f"naive loop (1 image/call):      {r['naive_images_per_s']:.3f} images/s",
            f"ImageGenerator, reference:      {r['batched_reference_images_per_s']:.3f} images/s",
            f"ImageGenerator, VT deprojector: {r['batched_vt_images_per_s']:.3f} images/s "
            f"({r['batched_speedup_vs_naive']:.2f}x naive)",
            f"deprojector: {r['deproject_ms_per_prompt']:.1f} ms/prompt = "
            f"{r['deproject_share_per_image_pct']:.2f} % of the time per image (target < 2 %); "
            f"{r['deproject_share_in_render_pct']:.2f} % of the render with prompts reused",
            f"VT training at D={r['train_hidden_size']}, batch {r['train_batch']}: "
            f"{r['train_samples_per_s']:.0f} samples/s",
            f"build {r['build_s']:.1f} s, total {r['total_s']:.1f} s",
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        default=os.environ.get("GPU_CHECK_TINY") == "1",
        help="tiny models on CPU, seconds (also GPU_CHECK_TINY=1)",
    )
    parser.add_argument("--device", default=None, help="default: cuda if present (cpu if --tiny)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    cfg = TINY if args.tiny else CheckConfig()
    device = torch.device(
        args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    )
    if not args.tiny and device.type != "cuda":
        parser.error(
            "full size needs a CUDA device (SD 1.5 at 512x512 on CPU takes hours); use --tiny"
        )
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        results = run_check(cfg, device, Path(tmp))
    print(report(results), flush=True)
    print(json.dumps(results), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
