"""The published (v1..v5) deprojector architecture and the author's VT file layout.

`LegacyDeprojector` is one CLIP encoder layer + final LayerNorm run autoregressively over
[embedding slot(s), previous outputs] (see `legacy-checkpoints.md`). The functions here turn a
folder's `config.json` and tensor names into a model and a key map; `checkpoint.py` reads files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deprojector.config_json import (
    MAX_HIDDEN_SIZE,
    MAX_MEMBERS,
    MAX_VICINITY,
    MAX_WIDTH,
    float_field,
    int_field,
    pretrained_config_keys,
)
from deprojector.errors import CheckpointError, ConfigMismatchError, InputShapeError
from deprojector.model import SEQ_LEN, VTConfig, VTDeprojector, member_state, quick_gelu

ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


@dataclass(frozen=True)
class LegacyConfig:
    """What one published checkpoint needs, read from its config.json and tensor names."""

    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072  # MLP width of the encoder layer
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    num_members: int = 1
    relative_to_null: bool = True  # False only for v1/v2 (no `null_embed` in the file)
    input_mlp_dim: int = 0  # hidden width of `mlp_to_input` (v5: 3072); 0 = no input MLP


class EncoderLayer(nn.Module):
    """A standard pre-LayerNorm CLIP encoder layer (names match transformers' CLIPEncoderLayer)."""

    def __init__(self, config: LegacyConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, name, nn.Linear(d, d))
        self.layer_norm1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, config.intermediate_size)
        self.mlp.fc2 = nn.Linear(config.intermediate_size, d)
        self.layer_norm2 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.act = ACTIVATIONS[config.hidden_act]


class InputMLP(nn.Module):
    """v5's `mlp_to_input`: fc1, quick_gelu, fc2, no residual."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class LegacyMember(nn.Module):
    """One member: position embedding, one encoder layer, final LayerNorm (+ v5 input MLP)."""

    def __init__(self, config: LegacyConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.position_embedding = nn.Embedding(SEQ_LEN, d)
        self.encoder_layer = EncoderLayer(config)
        self.final_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp_to_input = InputMLP(d, config.input_mlp_dim) if config.input_mlp_dim else None

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        """slots (B, L, D) -> rows (B, L, D); row k sees slots 0..k only."""
        b, length, d = slots.shape
        h = self.config.num_heads
        layer = self.encoder_layer
        attn = layer.self_attn
        x = slots + self.position_embedding.weight[:length]
        z = layer.layer_norm1(x)
        q, k, v = (
            p(z).view(b, length, h, d // h).transpose(1, 2)
            for p in (attn.q_proj, attn.k_proj, attn.v_proj)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + attn.out_proj(a.transpose(1, 2).reshape(b, length, d))
        x = x + layer.mlp.fc2(layer.act(layer.mlp.fc1(layer.layer_norm2(x))))
        return self.final_layer_norm(x)

    def start(self, slots: torch.Tensor) -> dict[str, Any]:
        b, _, d = slots.shape
        h = self.config.num_heads
        return {
            "keys": slots.new_zeros(b, h, SEQ_LEN, d // h),
            "values": slots.new_zeros(b, h, SEQ_LEN, d // h),
            "pos": 0,
        }

    def step(self, cache: dict[str, Any], slot: torch.Tensor) -> torch.Tensor:
        """Feed slot k (B, D) -> row k (B, D), with a key/value cache of the slots before it."""
        k_pos = cache["pos"]
        b, d = slot.shape
        h = self.config.num_heads
        layer = self.encoder_layer
        attn = layer.self_attn
        x = slot + self.position_embedding.weight[k_pos]
        z = layer.layer_norm1(x)
        q = attn.q_proj(z).view(b, h, 1, d // h)
        cache["keys"][:, :, k_pos] = attn.k_proj(z).view(b, h, d // h)
        cache["values"][:, :, k_pos] = attn.v_proj(z).view(b, h, d // h)
        a = F.scaled_dot_product_attention(
            q, cache["keys"][:, :, : k_pos + 1], cache["values"][:, :, : k_pos + 1]
        )
        x = x + attn.out_proj(a.reshape(b, d))
        x = x + layer.mlp.fc2(layer.act(layer.mlp.fc1(layer.layer_norm2(x))))
        cache["pos"] = k_pos + 1
        return self.final_layer_norm(x)


class LegacyDeprojector(nn.Module):
    """A published v1..v5 deprojector: K members decoded independently, outputs averaged."""

    def __init__(self, config: LegacyConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.members = nn.ModuleList(LegacyMember(config) for _ in range(config.num_members))
        self.register_buffer("sos", torch.zeros(d))
        self.register_buffer("null", torch.zeros(d))  # stays 0 in v1/v2
        self.register_buffer("projection", torch.eye(d))  # W^-1, applied as e @ W^-1.T

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_members(self) -> int:
        return len(self.members)

    def member(self, k: int) -> LegacyDeprojector:
        """Member k alone, sharing its weights and the constants."""
        if not 0 <= k < self.num_members:
            raise IndexError(f"member {k} does not exist; this model has {self.num_members}")
        with torch.device("meta"):  # a skeleton: the tensors are assigned below
            single = LegacyDeprojector(dataclasses.replace(self.config, num_members=1))
        single.load_state_dict(member_state(self, k), assign=True)
        return single.train(self.training)

    def _check_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        d = self.hidden_size
        if embeds.dim() != 2 or embeds.shape[1] != d:
            raise InputShapeError(
                f"embeds has shape {tuple(embeds.shape)}; expected (B, {d}) pooled CLIP "
                "embeddings (add a batch axis with embeds[None] for a single vector)"
            )
        return embeds.to(device=self.sos.device, dtype=self.sos.dtype)

    def _first_slots(self, member: LegacyMember, e: torch.Tensor) -> torch.Tensor:
        """Slots 0 and 1, (B, 2, D), which depend only on the input."""
        if not self.config.relative_to_null:  # v1/v2: [e, sos]
            return torch.stack([e, self.sos.expand_as(e)], dim=1)
        e_rel = e - self.null
        first = member.mlp_to_input(e_rel) if member.mlp_to_input else self.null.expand_as(e)
        return torch.stack([first, e_rel], dim=1)

    def forward(self, embeds: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass: pooled (B, D) + hidden states (B, 77, D) -> (B, 77, D).

        Slot k >= 2 is `hidden_states[:, k - 1]` (shifted by null); the members are averaged.
        """
        e = self._check_embeds(embeds)
        b, d = e.shape
        if hidden_states.shape != (b, SEQ_LEN, d):
            raise InputShapeError(
                f"hidden_states has shape {tuple(hidden_states.shape)}; expected ({b}, {SEQ_LEN}, {d})"
            )
        later = hidden_states[:, 1 : SEQ_LEN - 1] - self.null  # slots 2..76: (B, 75, D)
        rows = [m(torch.cat([self._first_slots(m, e), later], dim=1)) for m in self.members]
        out = torch.stack(rows).mean(dim=0)
        out[:, 0] = self.sos
        return out

    @torch.no_grad()
    def deproject(
        self, embeds: torch.Tensor, from_projected: bool = False, use_cache: bool = True
    ) -> torch.Tensor:
        """Pooled (or projected, with `from_projected`) embeddings (B, D) -> (B, 77, D)."""
        e = self._check_embeds(embeds)
        if from_projected:
            e = e @ self.projection.T
        b, d = e.shape
        out = e.new_zeros(b, SEQ_LEN, d)
        for member in self.members:
            slots = e.new_zeros(b, SEQ_LEN, d)
            slots[:, :2] = self._first_slots(member, e)
            cache = member.start(slots) if use_cache else None
            if cache is not None:
                member.step(cache, slots[:, 0])  # row 0 is replaced by sos
            for k in range(1, SEQ_LEN):
                if cache is not None:
                    row = member.step(cache, slots[:, k])
                else:
                    row = member(slots[:, : k + 1])[:, -1]
                out[:, k] += row
                if k + 1 < SEQ_LEN:
                    slots[:, k + 1] = row - self.null
        out /= self.num_members
        out[:, 0] = self.sos
        return out


# --- reading the published layout ---------------------------------------------------------


def _member_count(config_json: dict[str, Any], names: set[str], source: str) -> int:
    """`ensemble_size` from the config, else 1 + the highest `encoder_layer.<i>.` index."""
    indices = {
        int(n.split(".")[1])
        for n in names
        if n.startswith("encoder_layer.") and n.split(".")[1].isdigit()
    }
    found = max(indices) + 1 if indices else 1
    return int_field(
        {"ensemble_size": found, **config_json},
        "ensemble_size",
        source,
        1,
        MAX_MEMBERS,
        fix=f"the weights hold {found} member(s): set ensemble_size to {found}",
    )


def legacy_config(config_json: dict[str, Any], names: set[str], source: str) -> LegacyConfig:
    """The LegacyConfig of a published folder, from its config.json and tensor names.

    Every size is typed and bounded here; `checkpoint.py` then checks them against the shapes.
    """
    members = _member_count(config_json, names, source)
    has_mlp = bool(config_json.get("apply_mlp_to_input")) or any(
        n.startswith("mlp_to_input") for n in names
    )
    d = int_field(config_json, "hidden_size", source, 1, MAX_HIDDEN_SIZE, default=768)
    act = config_json.get("hidden_act", "quick_gelu")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise CheckpointError(
            f"{source}: hidden_act={act!r}; expected one of {sorted(ACTIVATIONS)} (CLIP's)"
        )
    heads = int_field(config_json, "num_attention_heads", source, 1, d, default=12)
    if d % heads:
        raise CheckpointError(
            f"{source}: num_attention_heads={heads} does not divide hidden_size={d}; "
            "use the config.json saved with the weights"
        )
    width = int_field(config_json, "intermediate_size", source, 1, MAX_WIDTH, default=4 * d)
    return LegacyConfig(
        hidden_size=d,
        num_heads=heads,
        intermediate_size=width,
        layer_norm_eps=float_field(config_json, "layer_norm_eps", source, 1e-12, 1.0, 1e-5),
        hidden_act=act,
        num_members=members,
        relative_to_null="null_embed" in names,
        input_mlp_dim=width if has_mlp else 0,
    )


def legacy_key_map(model: LegacyDeprojector) -> dict[str, str | None]:
    """Model state key -> file key (None: not in the file, keeps its default)."""
    k = model.num_members
    mapping: dict[str, str | None] = {
        "sos": "sos_embed",
        "null": "null_embed" if model.config.relative_to_null else None,
        "projection": "projection.weight",
    }
    for key in model.state_dict():
        if key.startswith("members."):
            _, i, module, rest = key.split(".", 3)
            mapping[key] = f"{module}.{i}.{rest}" if k > 1 else f"{module}.{rest}"
    return mapping


LEGACY_IGNORED_KEYS = ("position_ids",)


# --- reading the author's VT layout -------------------------------------------------------

# Options the author's VT code has; each must keep this value in the final VT family.
AUTHOR_VT_REQUIRED: dict[str, Any] = {
    "relative_to_null": True,
    "use_individual_first_layer": True,
    "num_mlp_layers": 1,
    "first_embed_layer_dropout": 0,
    "mlp_dropout": 0,
    "embeds_in_attention": False,
    "use_residual_connection": True,
}
AUTHOR_VT_FIELDS = {
    "ensemble_size",
    "vicinity",
    "first_embed_layer_dim",
    "first_layer_dim",
    "mlp_layer_dim",
    *AUTHOR_VT_REQUIRED,
}
AUTHOR_VT_MODULES = {  # our member module -> the author's module name (index inserted after)
    "position_embedding": "position_embedding",
    "norm": "norm",
    "self_attn": "self_attn",
    "linear1_embeds": "linear1_embeds",
    "linear1": "linear1",
    "linear2": "linear2",
    "mlp_norm": "mlp_layers.{i}.0.norm",
    "mlp_fc1": "mlp_layers.{i}.0.linear1",
    "mlp_fc2": "mlp_layers.{i}.0.linear2",
    "final_norm": "final_norm",
}


def is_author_vt(config_json: dict[str, Any], names: set[str]) -> bool:
    return (
        "vicinity" in config_json
        or "first_embed_layer_dim" in config_json
        or any(n.startswith("linear1_embeds.") for n in names)
    )


def author_vt_config(config_json: dict[str, Any], source: str) -> tuple[VTConfig, int]:
    """(VTConfig, members) of an author-layout VT; refuses anything outside the final VT family.

    Keys transformers' PretrainedConfig writes (`torch_dtype`, `transformers_version`, ...) and
    the CLIP text config's own keys are accepted whatever their value; any other key is an
    architecture option of the author's code and must be off.
    """
    from transformers import CLIPTextConfig  # the author's config is a CLIP text config + VT keys

    problems = []
    for key, wanted in AUTHOR_VT_REQUIRED.items():
        if key in config_json and config_json[key] != wanted:
            problems.append(f"{key}={config_json[key]!r} (needs {wanted!r})")
    known = set(CLIPTextConfig().to_dict()) | AUTHOR_VT_FIELDS | pretrained_config_keys()
    for key in sorted(set(config_json) - known):
        if config_json[key] not in (None, False, 0, "", [], {}):
            problems.append(
                f"{key}={config_json[key]!r} (an option outside the final VT; needs off)"
            )
    d = int_field(config_json, "hidden_size", source, 1, MAX_HIDDEN_SIZE, default=768)
    if config_json.get("first_layer_dim", d) != d:
        problems.append(
            f"first_layer_dim={config_json['first_layer_dim']!r} (needs hidden_size={d})"
        )
    if config_json.get("hidden_act", "quick_gelu") != "quick_gelu":
        problems.append(f"hidden_act={config_json['hidden_act']!r} (needs 'quick_gelu')")
    if config_json.get("max_position_embeddings", SEQ_LEN) != SEQ_LEN:
        problems.append(
            f"max_position_embeddings={config_json['max_position_embeddings']!r} (needs 77)"
        )
    for key in ("vicinity", "first_embed_layer_dim", "mlp_layer_dim"):
        if key not in config_json:
            problems.append(f"{key} missing")
    if problems:
        raise CheckpointError(
            f"{source}: this author-layout VT is outside the final VT family this app implements: "
            + "; ".join(problems)
            + ". Only VTs with the final architecture (any E, v, M) can be loaded."
        )
    try:
        config = VTConfig(
            hidden_size=d,
            num_heads=int_field(config_json, "num_attention_heads", source, 1, d, default=12),
            embed_dim=int_field(config_json, "first_embed_layer_dim", source, 1, MAX_WIDTH),
            vicinity=int_field(config_json, "vicinity", source, 1, MAX_VICINITY),
            mlp_dim=int_field(config_json, "mlp_layer_dim", source, 1, MAX_WIDTH),
            layer_norm_eps=float_field(config_json, "layer_norm_eps", source, 1e-12, 1.0, 1e-5),
        )
    except ValueError as exc:
        raise ConfigMismatchError(f"{source}: {exc}") from exc
    members = int_field(
        config_json,
        "ensemble_size",
        source,
        1,
        MAX_MEMBERS,
        default=1,
        fix="set it to the number of members whose weights the folder holds",
    )
    return config, members


def author_vt_key_map(model: VTDeprojector) -> dict[str, str | None]:
    """Model state key -> the author's VT tensor name (always with a member index)."""
    mapping: dict[str, str | None] = {
        "sos": "sos_embed",
        "null": "null_embed",
        "inverse_projection": "deprojection",
    }
    for key in model.state_dict():
        if key.startswith("members."):
            _, i, rest = key.split(".", 2)
            module, _, tail = rest.partition(".")
            author = AUTHOR_VT_MODULES[module]
            author = author.format(i=i) if "{i}" in author else f"{author}.{i}"
            mapping[key] = f"{author}.{tail}" if tail else f"{author}.weight"
    return mapping
