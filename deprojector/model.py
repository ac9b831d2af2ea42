"""The VT ("vicinity transformer") deprojector: CLIP pooled embedding -> 77 x D hidden states.

Architecture, initialisation and ensembles follow section 3-4 of `deprojector-spec.md`. Inference
runs 76 autoregressive steps, either with a key/value cache (one new slot per step) or the
author's way (recomputing the whole prefix each step); both give the same output.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deprojector.errors import ConfigMismatchError, InputShapeError

SEQ_LEN = 77  # CLIP's text length; position 0 is the fixed `sos` state


@dataclass(frozen=True)
class VTConfig:
    """Hyperparameters of one VT model; every width is an absolute number of units."""

    hidden_size: int = 768  # D, the CLIP text width
    num_heads: int = 12  # attention heads of the frozen CLIP attention (D must divide by it)
    embed_dim: int = 1536  # E, output width of the embedding transform W_e (final VT: 2D)
    vicinity: int = 2  # v, how many previous states (current included) the vicinity branch sees
    mlp_dim: int = 1536  # M, hidden width of the MLP (final VT: 2D)
    max_positions: int = SEQ_LEN  # output rows, row 0 included; CLIP text models use 77
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_heads", "embed_dim", "vicinity", "mlp_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VTConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"VTConfig.hidden_size={self.hidden_size} is not divisible by "
                f"num_heads={self.num_heads}; pick a head count that divides D"
            )
        if self.max_positions != SEQ_LEN:
            raise ValueError(
                f"VTConfig.max_positions={self.max_positions}, expected {SEQ_LEN} "
                "(Stable Diffusion's CLIP text length)"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VTConfig:
        """Rebuild a config from `to_dict()` output; unknown or missing fields are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if unknown or missing:
            raise ConfigMismatchError(
                f"VT config fields do not match: unknown {unknown}, missing {missing}; "
                f"expected exactly {sorted(names)}"
            )
        return cls(**data)

    def hyperparameters(self) -> dict[str, Any]:
        """The study-facing description: widths as multiples of D, e.g. {"embed_dim": "2D", ...}."""
        return {
            "embed_dim": _multiple_of_d(self.embed_dim, self.hidden_size),
            "vicinity": self.vicinity,
            "mlp_dim": _multiple_of_d(self.mlp_dim, self.hidden_size),
        }


def _multiple_of_d(width: int, d: int) -> str:
    ratio = width / d
    return f"{int(ratio)}D" if ratio == int(ratio) else f"{ratio:g}D"


# Preset name -> (E / D, v, M / D): the final VT and each of its one-change neighbours. Any other
# corner of the grid is named by joining the changes, e.g. "vt-embed-1d-vicinity-1" (see
# `preset_shape`), so a 2x2x2 study can be trained by name.
PRESETS: dict[str, tuple[int, int, int]] = {
    "vt-final": (2, 2, 2),
    "vt-embed-1d": (1, 2, 2),
    "vt-embed-4d": (4, 2, 2),
    "vt-vicinity-1": (2, 1, 2),
    "vt-vicinity-3": (2, 3, 2),
    "vt-mlp-1d": (2, 2, 1),
    "vt-mlp-4d": (2, 2, 4),
}


def preset_shape(preset: str) -> tuple[int, int, int]:
    """(E / D, v, M / D) of a preset name: one of `PRESETS`, or "vt-" followed by the changes
    from the final VT in the order embed, vicinity, mlp, e.g. "vt-embed-1d-mlp-4d"."""
    if preset in PRESETS:
        return PRESETS[preset]
    match = _COMPOSED_PRESET.fullmatch(preset)
    if match is None or not any(match.groups()):
        raise ValueError(
            f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or a combination "
            "of their changes such as 'vt-embed-1d-vicinity-1' or 'vt-vicinity-3-mlp-4d'"
        )
    embed, vicinity, mlp = (int(g) if g else None for g in match.groups())
    final_e, final_v, final_m = PRESETS["vt-final"]
    return (embed or final_e, vicinity or final_v, mlp or final_m)


def preset_name(embed_mult: int, vicinity: int, mlp_mult: int) -> str:
    """The preset name of (E / D, v, M / D); the inverse of `preset_shape`."""
    final_e, final_v, final_m = PRESETS["vt-final"]
    changes = [
        f"embed-{embed_mult}d" if embed_mult != final_e else "",
        f"vicinity-{vicinity}" if vicinity != final_v else "",
        f"mlp-{mlp_mult}d" if mlp_mult != final_m else "",
    ]
    return "vt-" + ("-".join(c for c in changes if c) or "final")


_COMPOSED_PRESET = re.compile(
    r"vt(?:-embed-([1-9]\d*)d)?(?:-vicinity-([1-9]\d*))?(?:-mlp-([1-9]\d*)d)?"
)


def default_num_heads(hidden_size: int) -> int:
    """CLIP's head width is 64 (12 heads at D = 768); a D that is not a multiple gets 1 head."""
    return hidden_size // 64 if hidden_size % 64 == 0 else 1


def vt_config(preset: str, hidden_size: int = 768, num_heads: int | None = None) -> VTConfig:
    """The config of a preset at width D (a name in `PRESETS` or a combination, see
    `preset_shape`)."""
    embed_mult, vicinity, mlp_mult = preset_shape(preset)
    return VTConfig(
        hidden_size=hidden_size,
        num_heads=num_heads if num_heads is not None else default_num_heads(hidden_size),
        embed_dim=embed_mult * hidden_size,
        vicinity=vicinity,
        mlp_dim=mlp_mult * hidden_size,
    )


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The author's loss: squared errors of real tokens (BOS..first EOS, `mask` = 1) count 25x
    padding, position 0 counts 0, and each sample's weights are renormalised to mean 1.

    pred, target: (B, 77, D); mask: (B, 77) CLIP attention mask (1 for real tokens).
    """
    if pred.shape != target.shape or pred.dim() != 3 or mask.shape != pred.shape[:2]:
        raise InputShapeError(
            f"weighted_mse: pred {tuple(pred.shape)}, target {tuple(target.shape)}, mask "
            f"{tuple(mask.shape)}; expected (B, 77, D), (B, 77, D) and (B, 77)"
        )
    weights = 1.0 + 24.0 * mask.to(pred.dtype)  # (B, 77): 25 real, 1 padding
    weights = weights.clone()
    weights[:, 0] = 0.0
    weights = weights / weights.mean(dim=1, keepdim=True)
    return (weights.unsqueeze(-1) * (pred - target).square()).mean()


def parameter_counts(model: nn.Module, hidden_size: int) -> dict[str, Any]:
    """Total / trainable / frozen parameters and linear-weight parameters in units of D^2."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    matrices = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return {
        "params_total": total,
        "params_trainable": trainable,
        "params_frozen": total - trainable,
        "d2_units": matrices / hidden_size**2,
    }


class FrozenAttention(nn.Module):
    """CLIP's attention projections (frozen); the out-projection is the identity in the VT."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.requires_grad_(False)


class VTMember(nn.Module):
    """One VT model (one ensemble member). Module names follow the author's VT layout."""

    def __init__(self, config: VTConfig) -> None:
        super().__init__()
        d, e, v, m = config.hidden_size, config.embed_dim, config.vicinity, config.mlp_dim
        self.config = config
        eps = config.layer_norm_eps
        self.position_embedding = nn.Parameter(torch.zeros(config.max_positions - 1, d))
        self.norm = nn.LayerNorm(d, eps=eps)  # LN_a
        self.self_attn = FrozenAttention(d)
        self.linear1_embeds = nn.Linear(d, e)  # W_e
        self.linear1 = nn.Linear(d, d)  # W_s, shared by all vicinity slots
        self.linear2 = nn.Linear(d + e + v * d, d)  # W_2 over [attention; g; y_j; y_(j-1); ...]
        self.mlp_norm = nn.LayerNorm(d, eps=eps)  # LN_m
        self.mlp_fc1 = nn.Linear(d, m)
        self.mlp_fc2 = nn.Linear(m, d)
        self.final_norm = nn.LayerNorm(d, eps=eps)  # LN_f
        # (weights key, folded weights) of `inference_weights`, kept in eval mode only
        self.folded: tuple[tuple, dict[str, torch.Tensor]] | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module.clear_inference_cache())

    def train(self, mode: bool = True) -> VTMember:
        """As nn.Module.train; also drops the folded inference weights (see `inference_weights`)."""
        self.clear_inference_cache()
        return super().train(mode)

    def clear_inference_cache(self) -> None:
        """Forget the folded inference weights; call after editing weights in place in eval mode."""
        self.folded = None

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Random init: linear weights ~ N(0, 1/D), biases 0, LayerNorms identity, identity out-proj."""
        d = self.config.hidden_size
        if self.position_embedding.is_meta:
            return
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, d**-0.5, generator=generator)
                module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.position_embedding.normal_(0.0, 0.02, generator=generator)
        self.self_attn.out_proj.weight.copy_(torch.eye(d))

    # --- shared pieces -------------------------------------------------------------------
    def _out_proj_is_identity(self) -> bool:
        w, b = self.self_attn.out_proj.weight, self.self_attn.out_proj.bias
        return bool(torch.equal(w, torch.eye(w.shape[0], dtype=w.dtype, device=w.device))) and not (
            bool(b.any())
        )

    def _mix_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_2 split into (columns for [a; y_j; ...; y_(j-v+1)], columns for g)."""
        d, e = self.config.hidden_size, self.config.embed_dim
        w = self.linear2.weight
        return torch.cat([w[:, :d], w[:, d + e :]], dim=1), w[:, d : d + e]

    def _mlp_and_output(self, r: torch.Tensor) -> torch.Tensor:
        r = r + self.mlp_fc2(quick_gelu(self.mlp_fc1(self.mlp_norm(r))))
        return self.final_norm(r)

    # --- teacher-forced pass -------------------------------------------------------------
    def forward(self, e_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """e_hat: (B, D) relative input; x: (B, L, D) relative states, x[:, 0] = 0.

        Returns (B, L, D): slot j's prediction of hidden state j + 1.
        """
        b, length, d = x.shape
        h = self.config.num_heads
        attn = self.self_attn
        # 1. Attention branch over z = LN_a(x + P): (B, H, L, D/H) per projection.
        z = self.norm(x + self.position_embedding[:length])
        q, k, v = (
            proj(z).view(b, length, h, d // h).transpose(1, 2)
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        if not self._out_proj_is_identity():
            a = attn.out_proj(a)
        # 2. Vicinity branch: y_j = W_s x_j + b_s, slots before 0 give b_s.
        y = self.linear1(x)  # (B, L, D)
        pad = self.linear1.bias.expand(b, self.config.vicinity - 1, d)
        y_padded = torch.cat([pad, y], dim=1)  # (B, v - 1 + L, D)
        shifted = [
            y_padded[:, self.config.vicinity - 1 - i : self.config.vicinity - 1 - i + length]
            for i in range(self.config.vicinity)
        ]
        g = self.linear1_embeds(e_hat)  # (B, E), the same for every slot
        # 3. Mix + residual; g's contribution is computed once, not per slot.
        w_slots, w_g = self._mix_weights()
        mixed = F.linear(torch.cat([a, *shifted], dim=-1), w_slots)  # (B, L, D)
        r = x + mixed + F.linear(g, w_g, self.linear2.bias).unsqueeze(1)
        # 4-5. MLP + residual, final LayerNorm.
        return self._mlp_and_output(r)

    # --- cached autoregressive pass ------------------------------------------------------
    def inference_weights(self) -> dict[str, torch.Tensor]:
        """Per-step weights with the linear maps folded.

        The vicinity term sum_i W_2,i (W_s x_(j-i) + b_s) becomes sum_i T_i x_(j-i) + c with
        T_i = W_2,i W_s: one (vD, D) product per new slot instead of W_s and v blocks of W_2.
        Folding costs v D^3, so in eval mode the result is kept until `train()` / `eval()` or
        `load_state_dict` is called or a weight moves (device, dtype or storage); in train mode
        the weights change every step, so it is folded afresh for each call. After editing
        weights in place in eval mode, call `eval()` (or `clear_inference_cache()`) again.
        """
        key = tuple((p.data_ptr(), p.device, p.dtype) for p in self.parameters())
        if not self.training and self.folded is not None and self.folded[0] == key:
            return self.folded[1]
        d, e, v = self.config.hidden_size, self.config.embed_dim, self.config.vicinity
        attn = self.self_attn
        with torch.no_grad():
            w2 = self.linear2.weight
            blocks = w2[:, d + e :].reshape(d, v, d).transpose(0, 1)  # (v, D, D): W_2,i
            w_a = w2[:, :d]
            if not self._out_proj_is_identity():
                w_a = w_a @ attn.out_proj.weight
            weights = {
                "w_qkv": torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                "b_qkv": torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]),
                "w_a": w_a.contiguous(),  # (D, D), the out-projection folded in
                "b_a": w2[:, :d] @ attn.out_proj.bias,  # (D,)
                "t": (blocks @ self.linear1.weight).reshape(v * d, d),  # (vD, D): T_0..T_(v-1)
                "c": (blocks @ self.linear1.bias).sum(0),  # (D,): every slot's b_s terms
                "w_g": w2[:, d : d + e].contiguous(),  # (D, E)
            }
        if not self.training:
            self.folded = (key, weights)
        return weights

    def start(self, e_hat: torch.Tensor, num_slots: int) -> _VTCache:
        """Prepare a key/value + vicinity cache for `num_slots` slots."""
        b, d = e_hat.shape
        h, v = self.config.num_heads, self.config.vicinity
        w = self.inference_weights()
        const = F.linear(self.linear1_embeds(e_hat), w["w_g"], self.linear2.bias)  # (B, D)
        return _VTCache(
            weights=w,
            const=const + w["c"] + w["b_a"],
            keys=e_hat.new_zeros(b, h, num_slots, d // h),
            values=e_hat.new_zeros(b, h, num_slots, d // h),
            pending=e_hat.new_zeros(b, num_slots + v, d),
        )

    def step(self, cache: _VTCache, x_j: torch.Tensor) -> torch.Tensor:
        """Feed slot j's state x_j (B, D); returns the prediction of hidden state j + 1 (B, D)."""
        j = cache.pos
        b, d = x_j.shape
        h, v = self.config.num_heads, self.config.vicinity
        w = cache.weights
        # 1. Attention: only the new slot's q/k/v, attending over the cached keys/values.
        z = self.norm(x_j + self.position_embedding[j])
        q, k, val = F.linear(z, w["w_qkv"], w["b_qkv"]).view(b, 3, h, d // h).unbind(1)
        cache.keys[:, :, j] = k
        cache.values[:, :, j] = val
        a = F.scaled_dot_product_attention(
            q.unsqueeze(2), cache.keys[:, :, : j + 1], cache.values[:, :, : j + 1]
        ).reshape(b, d)
        # 2. Vicinity: T_i x_j is slot (j + i)'s term; add it to the pending sums now.
        cache.pending[:, j : j + v] += F.linear(x_j, w["t"]).view(b, v, d)
        # 3-5. Mix + residual, MLP + residual, final LayerNorm.
        r = x_j + F.linear(a, w["w_a"]) + cache.pending[:, j] + cache.const
        cache.pos = j + 1
        return self._mlp_and_output(r)


@dataclass
class _VTCache:
    weights: dict[str, torch.Tensor]  # from VTMember.inference_weights
    const: torch.Tensor  # (B, D): W_2 g + b_2 + the b_s and out-projection bias terms
    keys: torch.Tensor  # (B, H, slots, D/H)
    values: torch.Tensor  # (B, H, slots, D/H)
    pending: torch.Tensor  # (B, slots + v, D): sum_i T_i x_(j-i) accumulated per slot j
    pos: int = 0


class VTDeprojector(nn.Module):
    """K VT members plus the constants of the CLIP model they were built for.

    `VTDeprojector(config)` is randomly initialised with placeholder constants (sos = null = 0,
    W^-1 = I); `from_clip` computes the real constants and initialises from CLIP's last layer.
    """

    def __init__(
        self, config: VTConfig, num_members: int = 1, fuse: float = 0.0, seed: int = 0
    ) -> None:
        super().__init__()
        if num_members < 1:
            raise ValueError(f"num_members must be >= 1, got {num_members}")
        if not 0.0 <= fuse <= 1.0:
            raise ValueError(f"fuse must be in [0, 1], got {fuse}")
        self.config = config
        self.fuse = float(fuse)
        self.members = nn.ModuleList(VTMember(config) for _ in range(num_members))
        d = config.hidden_size
        self.register_buffer("sos", torch.zeros(d))
        self.register_buffer("null", torch.zeros(d))
        self.register_buffer("inverse_projection", torch.eye(d))  # W^-1, (D, D)
        for k, member in enumerate(self.members):
            member.reset_parameters(torch.Generator().manual_seed(_member_seed(seed, k)))

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_members(self) -> int:
        return len(self.members)

    def member(self, k: int) -> VTDeprojector:
        """Member k alone, sharing its weights and the constants with this ensemble."""
        if not 0 <= k < self.num_members:
            raise IndexError(f"member {k} does not exist; this model has {self.num_members}")
        with torch.device("meta"):  # a skeleton: the tensors are assigned below
            single = VTDeprojector(self.config, num_members=1)
        single.load_state_dict(member_state(self, k), assign=True)
        return single.train(self.training)

    # --- inputs --------------------------------------------------------------------------
    def _check_embeds(self, embeds: torch.Tensor, name: str = "embeds") -> torch.Tensor:
        d = self.hidden_size
        if embeds.dim() != 2 or embeds.shape[1] != d:
            raise InputShapeError(
                f"{name} has shape {tuple(embeds.shape)}; expected (B, {d}) pooled CLIP "
                f"embeddings (add a batch axis with embeds[None] for a single vector)"
            )
        return embeds.to(device=self.sos.device, dtype=self.sos.dtype)

    def to_pooled(self, embeds: torch.Tensor) -> torch.Tensor:
        """Projected text embeddings t (B, D) -> pooled p = W^-1 t."""
        return self._check_embeds(embeds) @ self.inverse_projection.T

    # --- training ------------------------------------------------------------------------
    def forward_members(self, embeds: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        """Teacher-forced outputs of every member, (K, B, 77, D)."""
        embeds = self._check_embeds(embeds)
        b, d = embeds.shape
        if hidden_states.shape != (b, SEQ_LEN, d):
            raise InputShapeError(
                f"hidden_states has shape {tuple(hidden_states.shape)}; expected "
                f"({b}, {SEQ_LEN}, {d}): CLIP's last_hidden_state for the same batch as embeds"
            )
        e_hat = embeds - self.null
        # Slots: x_0 = 0, x_j = h_j - n for the true states h_1..h_75: (B, 76, D).
        x = torch.cat([embeds.new_zeros(b, 1, d), hidden_states[:, 1 : SEQ_LEN - 1] - self.null], 1)
        sos = self.sos.expand(b, 1, d)
        return torch.stack([torch.cat([sos, m(e_hat, x)], dim=1) for m in self.members])

    def forward(self, embeds: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass: pooled (B, D) + true hidden states (B, 77, D) -> (B, 77, D).

        Row 0 is `sos`; row j is the prediction from the true rows before j. With K members the
        members' outputs are averaged.
        """
        return self.forward_members(embeds, hidden_states).mean(dim=0)

    # --- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def deproject(
        self, embeds: torch.Tensor, from_projected: bool = False, use_cache: bool = True
    ) -> torch.Tensor:
        """Pooled embeddings (B, D) (or projected ones) -> hidden states (B, 77, D).

        `use_cache=False` recomputes the whole prefix at every step, as the author's code did.
        """
        e = self.to_pooled(embeds) if from_projected else self._check_embeds(embeds)
        b, d = e.shape
        num_slots = SEQ_LEN - 1
        e_hat = e - self.null
        out = e.new_empty(b, SEQ_LEN, d)
        out[:, 0] = self.sos
        # Each member's own history of relative states; slot 0 is the zero slot.
        histories = [e.new_zeros(b, num_slots, d) for _ in self.members]
        caches = [m.start(e_hat, num_slots) for m in self.members] if use_cache else None
        for j in range(num_slots):
            if caches is not None:
                preds = [
                    m.step(c, hist[:, j])
                    for m, c, hist in zip(self.members, caches, histories, strict=True)
                ]
            else:
                preds = [
                    m(e_hat, hist[:, : j + 1])[:, -1]
                    for m, hist in zip(self.members, histories, strict=True)
                ]
            mean = preds[0] if len(preds) == 1 else torch.stack(preds).mean(dim=0)
            out[:, j + 1] = mean
            if j + 1 == num_slots:
                break
            for pred, hist in zip(preds, histories, strict=True):
                fed = pred if len(preds) == 1 else (1.0 - self.fuse) * pred + self.fuse * mean
                hist[:, j + 1] = fed - self.null
        return out

    # --- construction from CLIP ----------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_clip(
        cls,
        text_model_with_projection: nn.Module,
        tokenizer: Any,
        config: VTConfig,
        num_members: int = 1,
        seed: int = 0,
        fuse: float = 0.0,
    ) -> VTDeprojector:
        """Build a VT for a CLIP text model (transformers' CLIPTextModelWithProjection).

        sos / null come from encoding "", W^-1 inverts `text_projection`; Q/K/V, LN_a, the
        attention columns of W_2, LN_m, the first M MLP units and LN_f come from CLIP's last
        layer. The attention is CLIP's, so `num_heads` and `layer_norm_eps` are taken from it.
        """
        clip_config = text_model_with_projection.config
        d = clip_config.hidden_size
        if config.hidden_size != d:
            raise ConfigMismatchError(
                f"config.hidden_size={config.hidden_size} but the CLIP text model has hidden_size="
                f"{d}; build the config with vt_config(preset, hidden_size={d})"
            )
        projection = text_model_with_projection.text_projection.weight  # (P, D)
        if projection.shape != (d, d):
            raise ConfigMismatchError(
                f"text_projection.weight has shape {tuple(projection.shape)}; the deprojector "
                f"needs a square ({d}, {d}) projection (projection_dim == hidden_size) to invert"
            )
        config = dataclasses.replace(
            config,
            num_heads=clip_config.num_attention_heads,
            layer_norm_eps=clip_config.layer_norm_eps,
        )
        model = cls(config, num_members=num_members, fuse=fuse, seed=seed)
        device = projection.device
        model.to(device)

        # 1. Constants from the empty prompt: sos = H_""[0], null = pooled("").
        tokens = tokenizer(
            [""], padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt"
        )
        transformer = text_model_with_projection.text_model
        encoded = transformer(input_ids=tokens["input_ids"].to(device))
        model.sos.copy_(encoded.last_hidden_state[0, 0])
        model.null.copy_(encoded.pooler_output[0])
        model.inverse_projection.copy_(torch.linalg.inv(projection.double()).to(projection.dtype))

        # 2. Initialise every member from CLIP's last encoder layer.
        layer = transformer.encoder.layers[-1]
        clip_m = min(config.mlp_dim, layer.mlp.fc1.out_features)
        for member in model.members:
            attn = member.self_attn
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(attn, name).load_state_dict(getattr(layer.self_attn, name).state_dict())
            attn.out_proj.weight.copy_(torch.eye(d))
            attn.out_proj.bias.zero_()
            member.norm.load_state_dict(layer.layer_norm1.state_dict())
            member.linear2.weight[:, :d].copy_(layer.self_attn.out_proj.weight)
            member.linear2.bias.copy_(layer.self_attn.out_proj.bias)
            member.mlp_norm.load_state_dict(layer.layer_norm2.state_dict())
            member.mlp_fc1.weight[:clip_m].copy_(layer.mlp.fc1.weight[:clip_m])
            member.mlp_fc1.bias[:clip_m].copy_(layer.mlp.fc1.bias[:clip_m])
            member.mlp_fc2.weight[:, :clip_m].copy_(layer.mlp.fc2.weight[:, :clip_m])
            member.mlp_fc2.bias.copy_(layer.mlp.fc2.bias)
            member.final_norm.load_state_dict(transformer.final_layer_norm.state_dict())
        return model


def preset_info(preset: str, hidden_size: int = 768) -> dict[str, Any]:
    """Parameter counts of a preset (one member), built on the meta device (no memory, no CLIP)."""
    config = vt_config(preset, hidden_size)
    with torch.device("meta"):
        model = VTDeprojector(config)
    return {
        "preset": preset,
        "hidden_size": hidden_size,
        "config": config.to_dict(),
        "hyperparameters": config.hyperparameters(),
        **parameter_counts(model, hidden_size),
    }


def member_state(model: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """The state dict of member k of `model` as a one-member model's (members.k. -> members.0.)."""
    prefix = f"members.{k}."
    return {
        "members.0." + key[len(prefix) :] if key.startswith(prefix) else key: value
        for key, value in model.state_dict().items()
        if key.startswith(prefix) or not key.startswith("members.")
    }


def _member_seed(seed: int, k: int) -> int:
    # Distinct, reproducible streams per member; member 0 of seed s is the single model of seed s.
    return seed * 1_000_003 + k


__all__ = [
    "PRESETS",
    "SEQ_LEN",
    "VTConfig",
    "VTDeprojector",
    "VTMember",
    "member_state",
    "parameter_counts",
    "preset_name",
    "preset_shape",
    "preset_info",
    "quick_gelu",
    "vt_config",
    "weighted_mse",
]
