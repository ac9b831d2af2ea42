"""Reading a checkpoint's `config.json` without trusting it.

The file is size- and depth-capped, and every number that sizes a model is read through
`int_field` / `float_field` with sane bounds, so a hostile or broken config raises
`CheckpointError` (naming the file, the field, the value and the fix) before anything is built.
`PRETRAINED_CONFIG_KEYS` are the bookkeeping keys transformers' `PretrainedConfig` writes.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from deprojector.errors import CheckpointError

CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 1 << 20  # real configs are a few KB; the author's with id2label maps < 100 KB
MAX_DEPTH = 32  # nesting of objects / arrays; transformers writes at most 3 or 4

# Upper bounds of the sizes a config may claim. The largest real values: hidden size 1280
# (OpenCLIP bigG), 4 ensemble members (v4, v5), vicinity 2 (final VT), MLP 4D.
MAX_HIDDEN_SIZE = 8192
MAX_MEMBERS = 64
MAX_WIDTH = 65536  # embed_dim, mlp_dim, intermediate_size
MAX_VICINITY = 76  # one slot per generated position

# Keys that transformers' PretrainedConfig itself writes into config.json (4.x and 5.x): they
# describe bookkeeping, generation defaults and heads this model does not have, never the
# deprojector's architecture, so any value is accepted. Read from transformers 4.x
# `configuration_utils.py` (`PretrainedConfig.__init__` and `to_dict`); the installed version's
# own keys are added by `pretrained_config_keys()`.
PRETRAINED_CONFIG_KEYS = frozenset(
    {
        # bookkeeping written by to_dict / save_pretrained
        "_name_or_path",
        "_commit_hash",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "_attn_implementation_internal",
        "transformers_version",
        "model_type",
        "architectures",
        "auto_map",
        "custom_pipelines",
        # outputs and runtime flags
        "return_dict",
        "output_hidden_states",
        "output_attentions",
        "torchscript",
        "torch_dtype",  # 4.x
        "dtype",  # 5.x
        "use_bfloat16",
        "tf_legacy_loss",
        "pruned_heads",
        "tie_word_embeddings",
        "chunk_size_feed_forward",
        "gradient_checkpointing",
        "xla_device",
        "use_cache",
        # encoder-decoder bookkeeping
        "is_encoder_decoder",
        "is_decoder",
        "cross_attention_hidden_size",
        "add_cross_attention",
        "tie_encoder_decoder",
        # generation defaults (4.x kept them in the model config)
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "num_beam_groups",
        "diversity_penalty",
        "temperature",
        "top_k",
        "top_p",
        "typical_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "output_scores",
        "return_dict_in_generate",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
        # fine-tuning / heads / tokenizer
        "finetuning_task",
        "id2label",
        "label2id",
        "num_labels",
        "tokenizer_class",
        "prefix",
        "bos_token_id",
        "pad_token_id",
        "eos_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "task_specific_params",
        "problem_type",
    }
)


@functools.cache
def pretrained_config_keys() -> frozenset[str]:
    """`PRETRAINED_CONFIG_KEYS` plus what the installed transformers' PretrainedConfig writes.

    Imports transformers on first call only: nothing the vote or results pages import calls it.
    """
    from transformers import PretrainedConfig

    return PRETRAINED_CONFIG_KEYS | set(PretrainedConfig().to_dict())


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, level + 1) for child in children)
    return deepest


def read_config(folder: str | Path) -> dict[str, Any]:
    """The JSON object in `folder/config.json`; CheckpointError for anything else."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist; pass a folder path")
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing; a checkpoint folder needs config.json beside its weights"
        )
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(
            f"{path} is {size} bytes, above the {MAX_CONFIG_BYTES} bytes a deprojector config "
            "can need; this is not a model config: use the config.json saved with the weights"
        )
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise CheckpointError(
            f"{path} nests objects or arrays too deeply to read; a model config is flat: use "
            "the config.json saved with the weights"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(
            f"{path} is not valid JSON ({exc}); the file is half-written or corrupt: "
            "save or download the checkpoint again"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}; expected a JSON object")
    depth = _depth(data)
    if depth > MAX_DEPTH:
        raise CheckpointError(
            f"{path} nests objects or arrays {depth}+ levels deep (limit {MAX_DEPTH}); a model "
            "config is flat: use the config.json saved with the weights"
        )
    return data


def int_field(
    config: dict[str, Any],
    key: str,
    source: str,
    low: int,
    high: int,
    default: int | None = None,
    fix: str = "",
    name: str | None = None,
) -> int:
    """`config[key]` as an int in [low, high] (a float such as 768.0 counts as 768).

    `name` is how messages call the field (e.g. "config.hidden_size"); `fix` is appended.
    """
    if key not in config and default is not None:
        return default
    value = config.get(key)
    key = name or key
    number = value
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if not isinstance(number, int) or isinstance(number, bool):
        raise CheckpointError(
            f"{source}: {key}={value!r} is not an integer; expected an integer from {low} to "
            f"{high}{fix and '; ' + fix}"
        )
    if not low <= number <= high:
        raise CheckpointError(
            f"{source}: {key}={number} is out of range; expected an integer from {low} to "
            f"{high}{fix and '; ' + fix}"
        )
    return number


def float_field(
    config: dict[str, Any],
    key: str,
    source: str,
    low: float,
    high: float,
    default: float,
    name: str | None = None,
) -> float:
    """`config[key]` as a finite float in [low, high]."""
    value = config.get(key, default)
    key = name or key
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise CheckpointError(
            f"{source}: {key}={value!r}; expected a number from {low:g} to {high:g} "
            f"(default {default:g}): fix or remove the field in config.json"
        )
    return float(value)


def object_field(config: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """`config[key]` as a JSON object."""
    value = config.get(key)
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{source}: {key} holds {type(value).__name__} {str(value)[:60]!r}; expected a JSON "
            "object: use the config.json saved with the weights"
        )
    return value
