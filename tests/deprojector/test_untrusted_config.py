"""A checkpoint's config.json is not trusted: sizes are bounded and checked against the tensor
shapes in the weights file before a model is built; transformers' own keys are accepted.

Each case writes a real folder (tiny model saved to disk), breaks one field and loads it.
"""

import json

import pytest
from transformers import CLIPTextConfig

from deprojector.checkpoint import inspect_checkpoint, load_deprojector, save_checkpoint
from deprojector.errors import CheckpointError, ConfigMismatchError
from deprojector.model import VTDeprojector, vt_config
from tests.deprojector.test_legacy import (
    AUTHOR_VT_CONFIG,
    HEADS,
    D,
    inputs,
    write_author_vt,
    write_published,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def vt_folder(tmp_path):
    model = VTDeprojector(vt_config("vt-final", D, HEADS), seed=3)
    return save_checkpoint(model, tmp_path / "vt", {"seed": 3})


def edit_config(folder, change):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))
    return path


def set_field(*keys_and_value):
    *keys, value = keys_and_value

    def change(config):
        target = config
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


# Our VT folders: (change, error, message naming the field, the value and the fix).
VT_CASES = {
    "hidden size beyond any CLIP": (
        set_field("config", "hidden_size", 200_000),
        CheckpointError,
        r"config.json: config.hidden_size=200000 is out of range; expected an integer from 1 "
        r"to 8192",
    ),
    "hidden size other than the weights'": (
        set_field("config", "hidden_size", 4096),
        ConfigMismatchError,
        r"config.json: config.hidden_size=4096, but tensor 'sos' in model.safetensors has shape "
        r"\(32,\).*set config.hidden_size to 32",
    ),
    "ten million members": (
        set_field("num_members", 10**7),
        CheckpointError,
        r"config.json: num_members=10000000 is out of range; expected an integer from 1 to 64; "
        r"set it to the number of members whose weights the folder holds",
    ),
    "MLP width far beyond the weights'": (
        set_field("config", "mlp_dim", 60_000),
        ConfigMismatchError,
        r"model.safetensors: tensor 'members.0.mlp_fc1.weight' has shape \(64, 32\), "
        r"config.json implies \(60000, 32\)",
    ),
    "MLP width beyond the bound": (
        set_field("config", "mlp_dim", 10**9),
        CheckpointError,
        r"config.mlp_dim=1000000000 is out of range; expected an integer from 1 to 65536",
    ),
    "vicinity as text": (
        set_field("config", "vicinity", "abc"),
        CheckpointError,
        r"config.json: config.vicinity='abc' is not an integer; expected an integer from 1 to 76",
    ),
    "heads not dividing D": (
        set_field("config", "num_heads", 7),
        ConfigMismatchError,
        r"config.json: invalid VT config \(VTConfig.hidden_size=32 is not divisible by "
        r"num_heads=7; pick a head count that divides D\)",
    ),
    "hyperparameters as text": (
        set_field("hyperparameters", "abc"),
        ConfigMismatchError,
        r"config.json: hyperparameters='abc', but the model config implies \{'embed_dim': "
        r"'2D', 'vicinity': 2, 'mlp_dim': '2D'\}.*set it to that value or remove it",
    ),
    "hyperparameters other than the config's": (
        set_field("hyperparameters", "vicinity", 3),
        ConfigMismatchError,
        r"hyperparameters=\{.*'vicinity': 3.*\}, but the model config implies",
    ),
    "model config as text": (
        set_field("config", "abc"),
        CheckpointError,
        r"config.json: config holds str 'abc'; expected a JSON object",
    ),
    "fuse as text": (
        set_field("fuse", "x"),
        CheckpointError,
        r"config.json: fuse='x'; expected a number from 0 to 1 \(default 0\): fix or remove",
    ),
}


@pytest.mark.parametrize("case", list(VT_CASES))
def test_a_vt_config_that_does_not_describe_its_weights_is_refused(tmp_path, case):
    """Each bad size or field of our config.json raises a CheckpointError naming the file, the
    field, the value and the fix, without building a model of the claimed size."""
    change, error, message = VT_CASES[case]
    folder = vt_folder(tmp_path)
    edit_config(folder, change)
    with pytest.raises(error, match=message):
        inspect_checkpoint(folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, r"config.json nests objects or arrays too deeply"),
        (
            '{"format": "deprojector-arena-vt", "x": ' + "[" * 40 + "]" * 40 + "}",
            r"config.json nests objects or arrays 33\+ levels deep \(limit 32\)",
        ),
        ('{"format": "deprojector-arena-vt", "fuse": NaN}', r"config.json is not valid JSON"),
        ('{"fuse": ' + "1" * 5000 + "}", r"config.json is not valid JSON"),
        ("[1, 2]", r"config.json holds a list; expected a JSON object"),
        (
            '{"pad": "' + "x" * (1 << 20) + '"}',
            r"config.json is 10485\d\d bytes, above the 1048576 bytes",
        ),
    ],
    ids=["deep", "nested-beyond-limit", "nan", "huge-integer", "list", "oversized"],
)
def test_malformed_config_json_is_a_clear_error(tmp_path, text, message):
    """Deeply nested, oversized, NaN-holding or non-object JSON raises CheckpointError naming
    config.json (never RecursionError or ValueError)."""
    folder = vt_folder(tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load_deprojector(folder)


LEGACY_CASES = {
    "ten million members": (
        {"ensemble_size": 10**7},
        r"config.json: ensemble_size=10000000 is out of range; expected an integer from 1 to "
        r"64; the weights hold 4 member\(s\): set ensemble_size to 4",
    ),
    "hidden size beyond any CLIP": (
        {"hidden_size": 200_000},
        r"config.json: hidden_size=200000 is out of range; expected an integer from 1 to 8192",
    ),
    "hidden size other than the weights'": (
        {"hidden_size": 64, "num_attention_heads": 4},
        r"config.json: hidden_size=64, but tensor 'sos_embed' in pytorch_model.bin has shape "
        r"\(32,\).*set hidden_size to 32",
    ),
    "MLP width as text": (
        {"intermediate_size": "abc"},
        r"config.json: intermediate_size='abc' is not an integer",
    ),
    "MLP width other than the weights'": (
        {"intermediate_size": 50_000},
        r"pytorch_model.bin: tensor '.*fc1.weight' has shape \(128, 32\), config.json implies "
        r"\(50000, 32\)",
    ),
    "activation as a list": (
        {"hidden_act": ["gelu"]},
        r"config.json: hidden_act=\['gelu'\]; expected one of \['gelu', 'quick_gelu'\]",
    ),
    "layer norm eps as text": (
        {"layer_norm_eps": "small"},
        r"config.json: layer_norm_eps='small'; expected a number",
    ),
}


@pytest.mark.parametrize("case", list(LEGACY_CASES))
def test_a_published_config_that_does_not_describe_its_weights_is_refused(tmp_path, case):
    """A v5 folder (.bin) whose config.json claims other sizes raises a CheckpointError naming
    the file, the field, the value and the fix before a model is built."""
    change, message = LEGACY_CASES[case]
    write_published(tmp_path / "v5", "v5")
    edit_config(tmp_path / "v5", lambda config: config.update(change))
    with pytest.raises(CheckpointError, match=message):
        load_deprojector(tmp_path / "v5")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"ensemble_size": 10**7},
            r"config.json: ensemble_size=10000000 is out of range; expected an integer from 1 "
            r"to 64; set it to the number of members",
        ),
        ({"vicinity": "abc"}, r"config.json: vicinity='abc' is not an integer"),
        ({"first_embed_layer_dim": 10**8}, r"first_embed_layer_dim=100000000 is out of range"),
        (
            {"ensemble_size": 3},
            r"pytorch_model.bin: tensors do not match config.json: \d+ missing \[.*2\.",
        ),
    ],
    ids=["members", "vicinity-text", "embed-width", "members-vs-weights"],
)
def test_an_author_vt_config_that_does_not_describe_its_weights_is_refused(
    tmp_path, change, message
):
    """An author-layout VT folder with a bad size raises CheckpointError naming the field."""
    write_author_vt(tmp_path / "vt", config_changes=change)
    with pytest.raises(CheckpointError, match=message):
        load_deprojector(tmp_path / "vt")


# What transformers 4.x wrote for a CLIP text config (to_dict of 4.31, the author's version
# era): bookkeeping, generation defaults and label maps, beside the CLIP sizes.
TRANSFORMERS_4_KEYS = {
    "_name_or_path": "openai/clip-vit-large-patch14",
    "add_cross_attention": False,
    "architectures": ["CLIPTextDeprojectorModel"],
    "attention_dropout": 0.0,
    "bad_words_ids": None,
    "begin_suppress_tokens": None,
    "bos_token_id": 0,
    "chunk_size_feed_forward": 0,
    "cross_attention_hidden_size": None,
    "decoder_start_token_id": None,
    "diversity_penalty": 0.0,
    "do_sample": False,
    "dropout": 0.0,
    "early_stopping": False,
    "encoder_no_repeat_ngram_size": 0,
    "eos_token_id": 2,
    "exponential_decay_length_penalty": None,
    "finetuning_task": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "is_decoder": False,
    "is_encoder_decoder": False,
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "length_penalty": 1.0,
    "max_length": 20,
    "min_length": 0,
    "model_type": "clip_text_model",
    "no_repeat_ngram_size": 0,
    "num_beam_groups": 1,
    "num_beams": 1,
    "num_hidden_layers": 12,
    "num_return_sequences": 1,
    "output_attentions": False,
    "output_hidden_states": False,
    "output_scores": False,
    "pad_token_id": 1,
    "prefix": None,
    "problem_type": None,
    "pruned_heads": {},
    "remove_invalid_values": False,
    "repetition_penalty": 1.0,
    "return_dict": True,
    "return_dict_in_generate": False,
    "sep_token_id": None,
    "suppress_tokens": None,
    "task_specific_params": None,
    "temperature": 1.0,
    "tf_legacy_loss": False,
    "tie_encoder_decoder": False,
    "tie_word_embeddings": True,
    "tokenizer_class": None,
    "top_k": 50,
    "top_p": 1.0,
    "torch_dtype": "float32",
    "torchscript": False,
    "transformers_version": "4.31.0",
    "typical_p": 1.0,
    "use_bfloat16": False,
    "vocab_size": 49408,
    "_attn_implementation_autoset": True,
}


def transformers_5_keys(tmp_path):
    """config.json as the installed transformers (5.x) writes a CLIP text config."""
    clip = CLIPTextConfig(
        hidden_size=D, num_attention_heads=HEADS, intermediate_size=128, projection_dim=D
    )
    clip.dtype = "float32"
    clip.save_pretrained(tmp_path / "clip-config")
    return json.loads((tmp_path / "clip-config" / "config.json").read_text())


@pytest.mark.parametrize("version", ["4.x", "5.x"])
def test_author_vt_saved_by_transformers_loads(tmp_path, version):
    """An author VT whose config.json carries every key transformers' PretrainedConfig writes
    (torch_dtype, transformers_version, _name_or_path, generation defaults, ...) loads."""
    written = TRANSFORMERS_4_KEYS if version == "4.x" else transformers_5_keys(tmp_path)
    assert written["transformers_version"].startswith(version[0])
    extra = {k: v for k, v in written.items() if k not in AUTHOR_VT_CONFIG}
    original = write_author_vt(tmp_path / "vt", config_changes=extra)
    assert json.loads((tmp_path / "vt" / "config.json").read_text())["model_type"]
    loaded = load_deprojector(tmp_path / "vt")
    embeds = inputs()
    assert (loaded.deproject(embeds) - original.deproject(embeds)).abs().max() <= 1e-5
    assert inspect_checkpoint(tmp_path / "vt").kind == "author-vt"


@pytest.mark.parametrize(
    "option", [{"use_gated_vicinity": True}, {"num_mlp_layers": 2}, {"embeds_in_attention": 1}]
)
def test_author_vt_with_transformers_keys_still_refuses_architecture_options(tmp_path, option):
    """Accepting transformers' keys does not let a real architecture option through."""
    write_author_vt(tmp_path / "vt", config_changes={**TRANSFORMERS_4_KEYS, **option})
    with pytest.raises(
        CheckpointError, match=rf"outside the final VT family.*{next(iter(option))}"
    ):
        load_deprojector(tmp_path / "vt")
