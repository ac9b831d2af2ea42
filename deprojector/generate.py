"""Stable Diffusion image generation with our own conditioning, batched and reproducible.

A standard diffusers `StableDiffusionPipeline` from a local folder (or a single checkpoint file
with a local config folder) renders each request from `prompt_embeds` (reference CLIP states or a
deprojector's) and plain-CLIP `negative_prompt_embeds`, with one seeded generator per image.
"""

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image
import torch

from deprojector.conditioning import Conditioner
from deprojector.device import pick_device, pick_dtype
from deprojector.errors import IncompatiblePipelineError
from deprojector.prompts import prompt_parts
from deprojector.settings import SCHEDULERS, SDSettings
from deprojector.text import ClipText

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
PIPELINE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CONDITIONING_CACHE_SIZE = 512  # prompts x conditioning sources; 77 x 768 floats each


@dataclass(frozen=True)
class RenderRequest:
    """One image: a prompt, a seed, and which deprojector makes its conditioning."""

    prompt: str
    seed: int
    checkpoint: str | None = None  # deprojector folder; None = reference (plain CLIP states)
    member: int | None = None  # one ensemble member alone; None = the whole model


@dataclass
class RenderedImage:
    image: PIL.Image.Image
    request: RenderRequest
    settings: dict[str, Any] = field(default_factory=dict)  # SDSettings + seed and the rest


def _incompatible(path: Path, found: str) -> IncompatiblePipelineError:
    return IncompatiblePipelineError(
        f"SD model {str(path)!r}: {found}; expected a local diffusers StableDiffusionPipeline "
        f"folder (model_index.json and {', '.join(p + '/' for p in PIPELINE_PARTS)}), or a "
        f"{'/'.join(SINGLE_FILE_SUFFIXES)} file with config=<such a folder>"
    )


def load_pipeline(
    model_path: str | Path,
    device: str | torch.device,
    dtype: torch.dtype,
    config: str | Path | None = None,
):
    """Load a StableDiffusionPipeline offline from a folder, or a single file plus `config`."""
    from diffusers import StableDiffusionPipeline

    path = Path(model_path)
    common = {
        "dtype": dtype,
        "local_files_only": True,
        "safety_checker": None,
        "requires_safety_checker": False,
    }
    # 1. Check the layout before diffusers does, so the error names what is wrong.
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise _incompatible(path, f"a file with suffix {path.suffix!r}")
        if config is None or not (Path(config) / "model_index.json").is_file():
            raise _incompatible(
                path, f"a single file with config={config!r}, which is not a diffusers folder"
            )
        loader, kwargs = StableDiffusionPipeline.from_single_file, {"config": str(config)}
    elif path.is_dir():
        index_file = path / "model_index.json"
        if not index_file.is_file():
            found = sorted(p.name for p in path.iterdir())[:8]
            raise _incompatible(path, f"a folder without model_index.json (holds {found})")
        index = json.loads(index_file.read_text())
        missing = [part for part in PIPELINE_PARTS if part not in index]
        if missing:
            raise _incompatible(path, f"a {index.get('_class_name')} without {missing}")
        loader, kwargs = StableDiffusionPipeline.from_pretrained, {}
    else:
        raise _incompatible(path, "nothing at this path")

    # 2. Load; diffusers' own errors are re-raised with the path and the fix.
    try:
        pipe = loader(str(path), **kwargs, **common)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _incompatible(path, f"loading failed ({type(exc).__name__}: {exc})") from exc
    text_width = pipe.text_encoder.config.hidden_size
    if pipe.unet.config.cross_attention_dim != text_width:
        raise _incompatible(
            path,
            f"a UNet attending to width {pipe.unet.config.cross_attention_dim} but a text "
            f"encoder of width {text_width}",
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def make_scheduler(name: str, config: Any):
    """The scheduler `name` (one of SCHEDULERS) built from a pipeline's scheduler config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if name == "dpm++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    raise ValueError(f"scheduler={name!r}; expected one of {SCHEDULERS}")


class ImageGenerator:
    """Renders RenderRequests with one shared pipeline; safe to call from several threads.

    A request renders bit-identically alone or among others (for a given batch size): its
    conditioning is computed for its prompt alone, every pipeline call runs exactly `batch_size`
    images (a short batch is padded with copies of its last request, whose images are dropped),
    and the VAE decodes one image at a time. Batched kernels may pick another algorithm for
    another batch shape, and in small or odd batches give a row a result that depends on its
    position; both were seen on CPU.
    """

    def __init__(
        self,
        settings: SDSettings,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        config: str | Path | None = None,  # local diffusers folder for a single-file model_path
    ) -> None:
        self.settings = settings
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.pipe = load_pipeline(settings.model_path, self.device, self.dtype, config=config)
        self.pipe.scheduler = make_scheduler(settings.scheduler, self.pipe.scheduler.config)
        # Decode one latent at a time (see the class docstring); the UNet always sees 2B rows.
        self.pipe.vae.enable_slicing()
        # Conditioning comes from the pipeline's own text encoder: the reference is then exactly
        # what the pipeline would compute from the prompt text.
        self.clip = ClipText(self.pipe.tokenizer, self.pipe.text_encoder)
        self.conditioner = Conditioner(self.clip)
        self.text_width = self.pipe.text_encoder.config.hidden_size
        self._lock = threading.Lock()  # the pipeline (scheduler state) is not thread-safe
        self._cache_lock = threading.Lock()
        self._deprojectors: dict[tuple[str, int | None], Any] = {}
        self._conditionings: dict[tuple, torch.Tensor] = {}  # (source, prompt) -> (77, D)
        self._negative_embeds: torch.Tensor | None = None  # (1, 77, D)

    def check_checkpoint(self, folder: str | Path, member: int | None = None):
        """Load (once, cached) the deprojector in `folder` and check it fits this pipeline."""
        from deprojector.checkpoint import load_deprojector

        key = _source_key(folder, member)
        with self._cache_lock:
            if key not in self._deprojectors:
                model = load_deprojector(folder, member=member, device=self.device)
                if model.hidden_size != self.text_width:
                    raise IncompatiblePipelineError(
                        f"deprojector {str(folder)!r} has hidden size {model.hidden_size}, but "
                        f"the SD model {self.settings.model_path!r} has text width "
                        f"{self.text_width}; expected them equal: pair a deprojector trained on "
                        f"this pipeline's CLIP (SD 1.x uses CLIP-L, 768) with this model"
                    )
                self._deprojectors[key] = model
            return self._deprojectors[key]

    def image_settings(self, request: RenderRequest, batch_size: int) -> dict[str, Any]:
        """What shaped this image: the SD settings, the seed and the request, plus dtype."""
        return {
            **self.settings.to_dict(),
            "settings_hash": self.settings.settings_hash(),
            "seed": request.seed,
            "prompt": request.prompt,
            "checkpoint": request.checkpoint,
            "member": request.member,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            "batch_size": batch_size,
        }

    def render(self, requests: list[RenderRequest], batch_size: int = 8) -> list[RenderedImage]:
        """Render every request (in order), `batch_size` images per pipeline call."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected a positive integer")
        for request in requests:
            _check_request(request)

        # 1. Group by conditioning source, keeping request order inside each group.
        groups: dict[tuple[str | None, int | None], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.checkpoint, request.member), []).append(i)

        # 2. Render each group in full batches.
        images: list[PIL.Image.Image | None] = [None] * len(requests)
        for (checkpoint, member), indices in groups.items():
            deprojector = None if checkpoint is None else self.check_checkpoint(checkpoint, member)
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = [requests[i] for i in chunk]
                for i, image in zip(
                    chunk, self._render_batch(batch, deprojector, batch_size), strict=True
                ):
                    images[i] = image
        return [
            RenderedImage(image, request, self.image_settings(request, batch_size))
            for image, request in zip(images, requests, strict=True)
        ]

    def _conditioning(self, prompt: str, source: tuple, deprojector) -> torch.Tensor:
        """(77, D) prompt_embeds of one prompt, computed alone (batch of 1) and cached.

        Alone, because batched matmuls may give a row a result that depends on its position in
        the batch; cached, because a study renders each prompt with many seeds.
        """
        key = (source, prompt)
        if key not in self._conditionings:
            if deprojector is None:
                embeds = self.conditioner.reference([prompt])
            else:
                embeds = self.conditioner.deprojected([prompt], deprojector)
            if len(self._conditionings) >= CONDITIONING_CACHE_SIZE:
                self._conditionings.pop(next(iter(self._conditionings)))  # oldest first
            self._conditionings[key] = embeds[0]
        return self._conditionings[key]

    def _render_batch(self, batch: list[RenderRequest], deprojector, batch_size: int):
        padded = batch + [batch[-1]] * (batch_size - len(batch))
        source = None if deprojector is None else _source_key(batch[0].checkpoint, batch[0].member)
        s = self.settings
        with self._lock:
            # 1. Conditioning, (B, 77, D) each; the negative prompt is plain CLIP.
            prompt_embeds = torch.stack(
                [self._conditioning(r.prompt, source, deprojector) for r in padded]
            )
            negative = self._negative_embeds
            if negative is None:
                negative = self._negative_embeds = self.conditioner.negative([s.negative_prompt])
            negative_embeds = negative.expand(len(padded), -1, -1)
            # 2. One CPU generator per image: the same seed gives the same noise on any device.
            generators = [torch.Generator("cpu").manual_seed(r.seed) for r in padded]
            out = self.pipe(
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_embeds,
                num_inference_steps=s.steps,
                guidance_scale=s.guidance,
                width=s.width,
                height=s.height,
                generator=generators,
                output_type="pil",
            )
        return out.images[: len(batch)]


def _source_key(folder: str | Path, member: int | None) -> tuple[str, int | None]:
    return (str(Path(folder).resolve()), member)


def _check_request(request: RenderRequest) -> None:
    prompt_parts(request.prompt)  # ValueError for an empty prompt
    if not isinstance(request.seed, int) or not 0 <= request.seed < 2**63:
        raise ValueError(f"seed={request.seed!r}; expected an integer in 0..2**63-1")
    if request.member is not None:
        if request.checkpoint is None:
            raise ValueError(
                f"member={request.member} without a checkpoint; the reference has no members"
            )
        if not isinstance(request.member, int) or request.member < 0:
            raise ValueError(f"member={request.member!r}; expected an integer >= 0 or None")
