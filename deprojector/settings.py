"""The Stable Diffusion settings that shape an image, torch-free so pages and planning can use them.

Every field is recorded with each image; `settings_hash()` keys images so that studies with the
same settings share them.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

SCHEDULERS = ("dpm++", "ddim", "euler")


@dataclass(frozen=True)
class SDSettings:
    """Every Stable Diffusion setting that shapes an image (the seed comes per request)."""

    model_path: str  # local diffusers folder, or a .safetensors/.ckpt file
    scheduler: str = "dpm++"  # one of SCHEDULERS; "dpm++" is DPM-Solver++ (multistep)
    steps: int = 30
    guidance: float = 7.5  # classifier-free guidance scale; <= 1 disables the negative branch
    width: int = 512  # pixels, a multiple of 8
    height: int = 512
    negative_prompt: str = ""  # encoded with plain CLIP, as the reference

    def __post_init__(self) -> None:
        # Normalise types so equal settings always give the same JSON (7 and 7.0 hash alike).
        object.__setattr__(self, "model_path", str(self.model_path))
        object.__setattr__(self, "guidance", float(self.guidance))
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler={self.scheduler!r}; expected one of {SCHEDULERS}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise ValueError(f"steps={self.steps!r}; expected an integer in 1..1000")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value % 8:
                raise ValueError(f"{name}={value!r}; expected a positive multiple of 8, e.g. 512")
        if self.guidance < 0:
            raise ValueError(f"guidance={self.guidance}; expected >= 0 (7.5 is usual)")
        if not self.model_path:
            raise ValueError("model_path is empty; expected a local SD folder or checkpoint file")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def settings_hash(self) -> str:
        """First 16 hex digits of sha256 over the canonical JSON of these settings."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
