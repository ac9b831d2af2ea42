"""Prompt conditioning: the (B, 77, D) `prompt_embeds` that Stable Diffusion's UNet attends to.

Reference and negative prompts use plain CLIP hidden states of the whole text. A deprojector
turns one pooled embedding per prompt into hidden states; a prompt with commas is composed by the
comma rule, m = n + sum_i w_i (p_i - n) over its parts (spec section 2).
"""

from collections.abc import Sequence
from typing import Protocol

import torch

from deprojector.errors import InputShapeError
from deprojector.prompts import prompt_parts
from deprojector.text import ClipText


class Deprojector(Protocol):
    """What every loaded deprojector (VT, legacy, author VT) offers."""

    hidden_size: int

    def deproject(self, embeds: torch.Tensor, from_projected: bool = False) -> torch.Tensor: ...


def compose(
    pooled_parts: torch.Tensor, null: torch.Tensor, weights: Sequence[float] | None = None
) -> torch.Tensor:
    """m = n + sum_i w_i (p_i - n): parts (K, D), null (D,), K weights (default 1) -> (D,)."""
    if pooled_parts.dim() != 2 or pooled_parts.shape[0] == 0:
        raise InputShapeError(
            f"pooled_parts has shape {tuple(pooled_parts.shape)}; expected (K, D) with K >= 1"
        )
    k, d = pooled_parts.shape
    if null.shape != (d,):
        raise InputShapeError(f"null has shape {tuple(null.shape)}; expected ({d},)")
    if weights is None:
        w = pooled_parts.new_ones(k)
    else:
        w = torch.as_tensor(list(weights), dtype=pooled_parts.dtype, device=pooled_parts.device)
        if w.shape != (k,):
            raise InputShapeError(
                f"weights has {w.numel()} values; expected {k}, one per prompt part"
            )
    return null + (w[:, None] * (pooled_parts - null)).sum(dim=0)


class Conditioner:
    """Builds prompt_embeds from one CLIP text model (the SD pipeline's own, for generation)."""

    def __init__(self, clip: ClipText) -> None:
        self.clip = clip

    def reference(self, prompts: Sequence[str]) -> torch.Tensor:
        """Plain CLIP hidden states of each whole prompt, (B, 77, D): the "no deprojector" image."""
        for prompt in prompts:
            prompt_parts(prompt)  # rejects empty prompts with a clear message
        return self.clip.encode(list(prompts)).hidden

    def negative(self, prompts: Sequence[str]) -> torch.Tensor:
        """Plain CLIP hidden states, (B, 77, D); "" (the default negative prompt) is allowed."""
        return self.clip.encode(list(prompts)).hidden

    def pooled(
        self, prompts: Sequence[str], weights: Sequence[Sequence[float] | None] | None = None
    ) -> torch.Tensor:
        """One input embedding per prompt, (B, D): single -> pooled of the whole text;
        composed -> the comma rule over its parts, with that prompt's weights if given."""
        prompts = list(prompts)
        if weights is not None and len(weights) != len(prompts):
            raise InputShapeError(
                f"weights has {len(weights)} entries; expected {len(prompts)}, one list (or "
                "None) per prompt"
            )
        null = self.clip.null.float()  # compose in float32 even when CLIP runs in float16
        rows = []
        for i, prompt in enumerate(prompts):
            parts = prompt_parts(prompt)
            texts = [prompt] if len(parts) == 1 else parts
            pooled = self.clip.encode(texts).pooled.float()  # (1, D) or (K, D)
            w = None if weights is None else weights[i]
            rows.append(pooled[0] if len(parts) == 1 and w is None else compose(pooled, null, w))
        return torch.stack(rows)

    def deprojected(
        self,
        prompts: Sequence[str],
        deprojector: Deprojector,
        weights: Sequence[Sequence[float] | None] | None = None,
    ) -> torch.Tensor:
        """The deprojector's hidden states for each prompt's input embedding, (B, 77, D)."""
        if deprojector.hidden_size != self.clip.hidden_size:
            raise InputShapeError(
                f"the deprojector has hidden size {deprojector.hidden_size} but the CLIP text "
                f"model has {self.clip.hidden_size}; use a deprojector trained for this CLIP"
            )
        pooled = self.pooled(prompts, weights)  # (B, D) float32, as deprojectors run
        hidden = deprojector.deproject(pooled.to(_device_of(deprojector)))  # (B, 77, D)
        return hidden.to(device=self.clip.device, dtype=self.clip.text_model.dtype)


def _device_of(module: object) -> torch.device:
    tensors = [*module.parameters(), *module.buffers()] if hasattr(module, "parameters") else []
    return tensors[0].device if tensors else torch.device("cpu")
