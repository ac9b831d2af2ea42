"""CLIP text encoding: pooled p, hidden states H, mask and (when present) projected t.

Encodes exactly as Stable Diffusion 1.x does: pad to 77 with CLIP's end token, truncate, and run
the text model without an attention mask, so `hidden` is the pipeline's own conditioning.
"""

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

SEQ_LEN = 77  # CLIP's context length; SD conditions on all 77 rows


@dataclass
class TextEncoding:
    """The CLIP outputs for a batch of B texts."""

    pooled: torch.Tensor  # (B, D) H at the first end token (pooler_output)
    hidden: torch.Tensor  # (B, 77, D) last_hidden_state
    mask: torch.Tensor  # (B, 77) 1 for start..first end token, 0 for padding
    text_embeds: torch.Tensor | None  # (B, P) W p, or None for a model without projection
    truncated: list[bool]  # True where the text had more than 77 tokens and was cut


class ClipText:
    """A CLIP tokenizer plus text model (with or without projection), used for encoding."""

    def __init__(self, tokenizer: CLIPTokenizer, text_model: nn.Module) -> None:
        self.tokenizer = tokenizer
        self.text_model = text_model.eval()

    @classmethod
    def from_folder(
        cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> "ClipText":
        """Load `path/tokenizer/` and `path/text_encoder/` (an SD pipeline folder or a tiny CLIP).

        A text encoder saved as CLIPTextModelWithProjection gives `text_embeds`; a plain
        CLIPTextModel (as in SD pipelines) gives `text_embeds=None`.
        """
        path = Path(path)
        config_file = path / "text_encoder" / "config.json"
        if not (path / "tokenizer").is_dir() or not config_file.is_file():
            raise FileNotFoundError(
                f"CLIP folder {str(path)!r} lacks tokenizer/ or text_encoder/config.json; expected "
                "a folder with both, as a Stable Diffusion pipeline or build_tiny_clip writes it"
            )
        architectures = json.loads(config_file.read_text()).get("architectures") or []
        model_class = (
            CLIPTextModelWithProjection
            if "CLIPTextModelWithProjection" in architectures
            else CLIPTextModel
        )
        tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
        model = model_class.from_pretrained(
            path / "text_encoder", local_files_only=True, dtype=dtype or torch.float32
        )
        return cls(tokenizer, model.to(device))

    @property
    def hidden_size(self) -> int:
        return self.text_model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.text_model.parameters()).device

    @torch.no_grad()
    def encode(self, texts: str | list[str]) -> TextEncoding:
        """Encode B texts, padded to 77 tokens and truncated, as SD's pipelines do."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("texts is empty; expected at least one string")
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; got {bad[0]!r} ({type(bad[0]).__name__})")

        # 1. Tokens: (B, 77) ids and mask; the untruncated lengths say which texts were cut.
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt"
        )
        full_lengths = [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]
        input_ids = tokens["input_ids"].to(self.device)

        # 2. Text model without attention mask (SD 1.x never passes one): H (B, 77, D), p (B, D).
        if isinstance(self.text_model, CLIPTextModelWithProjection):
            out = self.text_model.text_model(input_ids=input_ids)
            text_embeds = self.text_model.text_projection(out.pooler_output)  # (B, P)
        else:
            out = self.text_model(input_ids=input_ids)
            text_embeds = None
        return TextEncoding(
            pooled=out.pooler_output,
            hidden=out.last_hidden_state,
            mask=tokens["attention_mask"].to(self.device),
            text_embeds=text_embeds,
            truncated=[n > SEQ_LEN for n in full_lengths],
        )

    @cached_property
    def _empty(self) -> TextEncoding:
        return self.encode([""])

    @property
    def null(self) -> torch.Tensor:
        """n = pooled(""), (D,): the origin of relative inputs and of composition."""
        return self._empty.pooled[0]

    @property
    def sos(self) -> torch.Tensor:
        """c = H_""[0], (D,): position 0, the same for every prompt."""
        return self._empty.hidden[0, 0]
