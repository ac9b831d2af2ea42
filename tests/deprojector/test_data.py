"""The training-data builder: sample mix, consistent composed inputs, shards, resume, determinism."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from deprojector.data import (
    DataConfig,
    TrainingDataError,
    build_dataset,
    load_part,
    main,
    open_part,
    plan_part,
    read_manifest,
)
from deprojector.text import ClipText

CAPTIONS = [
    "a cat in a maid outfit",
    "a red car parked on a quiet street",
    "1girl red hair blue eye black skirt",
    "1boy 1girl in class room",
    "a bowl of fruit on a wooden table",
    "mountains under a starry night sky",
    "an old man reading a newspaper",
    "a dog running on the beach at sunset",
    "sunflowers",
    "a very long caption that the tiny byte level tokenizer must cut at seventy seven tokens",
]


@pytest.fixture(scope="module")
def captions_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("captions") / "captions.txt"
    path.write_text("\n".join(CAPTIONS) + "\n\n")  # a blank line is skipped
    return path


def config(captions: Path, clip: Path, out: Path, **kw) -> DataConfig:
    settings = dict(
        samples=40, heldout_fraction=0.25, shard_size=16, seed=0, batch_size=16, device="cpu"
    )
    settings.update(kw)
    return DataConfig(captions=captions, clip=clip, out=out, **settings)


@pytest.fixture(scope="module")
def built(tmp_path_factory, captions_file, tiny_clip_dir) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("data")
    return out, build_dataset(config(captions_file, tiny_clip_dir, out), progress=False)


def shard_texts(folder: Path, part: str) -> list[tuple[str, list[str], str]]:
    """(kind, input texts, target text) of every sample of a part, in order."""
    rows = []
    for shard in read_manifest(folder)["parts"][part]["shards"]:
        with safe_open(folder / shard["file"], framework="pt") as f:
            meta = f.metadata()
        kinds, texts = json.loads(meta["kinds"]), json.loads(meta["texts"])
        rows += [(k, inputs, target) for k, (inputs, target) in zip(kinds, texts, strict=True)]
    return rows


def test_shards_hold_the_documented_tensors_and_manifest(built):
    """Shards are named part-NNNNN, hold pooled/text_embeds/hidden/mask, and the manifest adds up."""
    out, manifest = built
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "heldout-00000.safetensors",
        "train-00000.safetensors",
        "train-00001.safetensors",
    ]
    assert manifest["samples"] == 40
    assert manifest["parts"]["train"]["samples"] + manifest["parts"]["heldout"]["samples"] == 40
    for part in ("train", "heldout"):
        info = manifest["parts"][part]
        assert sum(info["kinds"].values()) == info["samples"]
        assert info["kinds"]["empty"] == 1
        tensors = load_part(out, part)
        n = info["samples"]
        assert tensors["pooled"].shape == (n, 32)
        assert tensors["text_embeds"].shape == (n, 32)
        assert tensors["hidden"].shape == (n, 77, 32)
        assert tensors["mask"].shape == (n, 77)
        assert tensors["hidden"].dtype == torch.float32
    train_kinds = manifest["parts"]["train"]["kinds"]
    assert train_kinds["normal"] and train_kinds["split"] and train_kinds["combine"]
    assert manifest["captions"]["count"] == len(CAPTIONS)
    assert len(manifest["captions"]["sha256"]) == 64
    assert manifest["seed"] == 0 and manifest["hidden_size"] == 32


def test_samples_match_clip_and_composition_rule(built, tiny_clip_dir):
    """Each input is n + sum(p_i - n) of its texts, t = W p holds, and targets are CLIP's H and mask."""
    out, _ = built
    clip = ClipText.from_folder(tiny_clip_dir)
    w = clip.text_model.text_projection.weight  # (P, D)
    null = clip.null
    for part in ("train", "heldout"):
        tensors = load_part(out, part)
        rows = shard_texts(out, part)
        assert rows[0] == ("empty", [""], "")
        texts = sorted({t for _, inputs, target in rows for t in (*inputs, target)})
        enc = clip.encode(texts)  # one batch: every text of the part
        row_of = {t: j for j, t in enumerate(texts)}
        for i, (kind, inputs, target) in enumerate(rows):
            pooled = enc.pooled[[row_of[t] for t in inputs]]  # (k, D)
            expected = null + (pooled - null).sum(dim=0)
            torch.testing.assert_close(tensors["pooled"][i], expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                tensors["text_embeds"][i], tensors["pooled"][i] @ w.T, atol=1e-5, rtol=1e-5
            )
            j = row_of[target]
            torch.testing.assert_close(tensors["hidden"][i], enc.hidden[j], atol=1e-5, rtol=1e-5)
            assert torch.equal(tensors["mask"][i], enc.mask[j].to(torch.int64))
            if kind == "split":
                assert " ".join(inputs) == target and len(inputs) == 2
            if kind == "combine":
                assert target == f"{inputs[0]} {inputs[1]}" and inputs[0] != inputs[1]


def test_heldout_captions_are_not_trained_on(built):
    """No caption of the held-out part appears in any training sample."""
    out, _ = built
    train_texts = {t for _, inputs, target in shard_texts(out, "train") for t in (*inputs, target)}
    heldout_captions = {
        target for kind, _, target in shard_texts(out, "heldout") if kind == "normal"
    }
    assert heldout_captions and not heldout_captions & train_texts


def test_truncated_texts_fall_back_to_normal(tmp_path, tiny_clip_dir):
    """When "C1 C2" (or any part) exceeds 77 tokens the sample becomes a normal one."""
    captions = tmp_path / "long.txt"
    captions.write_text(
        "\n".join(f"caption number {i} describes a scene with many words in it" for i in range(6))
    )
    manifest = build_dataset(
        config(captions, tiny_clip_dir, tmp_path / "out", samples=30), progress=False
    )
    clip = ClipText.from_folder(tiny_clip_dir)
    assert clip.encode(["caption number 0 describes a scene with many words in it" * 2]).truncated
    assert manifest["parts"]["train"]["kinds"]["combine"] == 0
    assert manifest["parts"]["train"]["kinds"]["split"] > 0


def test_same_seed_gives_identical_data(built, tmp_path, captions_file, tiny_clip_dir):
    """Two builds with one seed are bit-identical (same fingerprint); another seed differs."""
    _, first = built
    again = build_dataset(config(captions_file, tiny_clip_dir, tmp_path / "a"), progress=False)
    other = build_dataset(
        config(captions_file, tiny_clip_dir, tmp_path / "b", seed=1), progress=False
    )
    assert again["fingerprint"] == first["fingerprint"]
    assert other["fingerprint"] != first["fingerprint"]


def test_rerun_skips_finished_shards_and_completes(built, tmp_path, captions_file, tiny_clip_dir):
    """After an interruption a rerun keeps finished shards untouched and ends with the same data."""
    _, first = built
    out = tmp_path / "resumed"
    build_dataset(config(captions_file, tiny_clip_dir, out), progress=False)
    # An interrupted build: the last shard and the manifest are missing, a temp file is left.
    (out / "manifest.json").unlink()
    (out / "heldout-00000.safetensors").unlink()
    (out / ".heldout-00000.safetensors.tmp").write_bytes(b"half written")
    kept = (out / "train-00000.safetensors").stat().st_mtime_ns
    with pytest.raises(TrainingDataError, match="manifest.json"):
        read_manifest(out)

    manifest = build_dataset(config(captions_file, tiny_clip_dir, out), progress=False)
    assert (out / "train-00000.safetensors").stat().st_mtime_ns == kept
    assert manifest["fingerprint"] == first["fingerprint"]
    assert not (out / ".heldout-00000.safetensors.tmp").exists()


def test_refuses_to_mix_two_builds_in_one_folder(built, captions_file, tiny_clip_dir):
    """Building with another seed into an existing folder fails and names the shard."""
    out, _ = built
    with pytest.raises(TrainingDataError, match="train-00000.safetensors.*another build"):
        build_dataset(config(captions_file, tiny_clip_dir, out, seed=7), progress=False)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"heldout_fraction": 0.0}, "--heldout-fraction 0.0"),
        ({"heldout_fraction": 1.0}, "--heldout-fraction 1.0"),
        ({"samples": 3}, "--samples 3"),
        ({"shard_size": 0}, "--shard-size 0"),
        ({"device": "tpu"}, "--device 'tpu'"),
    ],
)
def test_bad_settings_are_refused(tmp_path, captions_file, tiny_clip_dir, settings, message):
    """Out-of-range settings raise an error naming the option and the value."""
    with pytest.raises(TrainingDataError, match=message):
        build_dataset(config(captions_file, tiny_clip_dir, tmp_path, **settings), progress=False)


def test_missing_caption_file_is_named(tmp_path, tiny_clip_dir):
    """A missing caption file raises FileNotFoundError naming the path."""
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        build_dataset(config(missing, tiny_clip_dir, tmp_path / "out"), progress=False)


def test_cli_builds_a_folder(tmp_path, captions_file, tiny_clip_dir, capsys):
    """`python -m deprojector.data` arguments map onto the builder and print the fingerprint."""
    out = tmp_path / "cli"
    main(
        [
            "--captions", str(captions_file), "--clip", str(tiny_clip_dir), "--out", str(out),
            "--samples", "12", "--heldout-fraction", "0.2", "--shard-size", "5", "--seed", "3",
        ]
    )  # fmt: skip
    manifest = read_manifest(out)
    assert manifest["seed"] == 3 and manifest["samples"] == 12
    assert manifest["fingerprint"] in capsys.readouterr().out
    assert len(manifest["parts"]["train"]["shards"]) == 2


def test_kind_mix_is_about_40_30_30():
    """Planned samples are about 40 % normal, 30 % split and 30 % combine, one empty first."""
    specs = plan_part(CAPTIONS[:8], 3001, np.random.default_rng(0))
    assert specs[0].kind == "empty" and [s.kind for s in specs].count("empty") == 1
    shares = {k: sum(s.kind == k for s in specs[1:]) / 3000 for k in ("normal", "split", "combine")}
    assert shares["normal"] == pytest.approx(0.4, abs=0.04)
    assert shares["split"] == pytest.approx(0.3, abs=0.04)
    assert shares["combine"] == pytest.approx(0.3, abs=0.04)


def test_open_part_reads_the_same_rows_as_load_part_without_loading_hidden_states(built):
    """open_part gives the rows load_part holds, for any batch of rows across shards (shuffled,
    sliced or single), while its hidden states stay in the shard files."""
    out, _ = built
    whole, opened = load_part(out, "train"), open_part(out, "train")
    n = whole["hidden"].shape[0]
    assert opened["hidden"].shape == whole["hidden"].shape and n > 16  # more than one shard
    assert not isinstance(opened["hidden"], torch.Tensor)
    assert torch.equal(opened["pooled"], whole["pooled"])
    assert torch.equal(opened["mask"], whole["mask"])
    rows = np.random.default_rng(0).permutation(n)[:20]
    assert torch.equal(opened["hidden"][rows], whole["hidden"][rows])
    assert torch.equal(opened["hidden"][torch.from_numpy(rows)], whole["hidden"][rows])
    assert torch.equal(opened["hidden"][5:n], whole["hidden"][5:n])
    assert torch.equal(opened["hidden"][n - 1], whole["hidden"][n - 1])


def test_a_truncated_shard_is_named(built, tmp_path):
    """A shard cut short raises TrainingDataError naming the file and saying to rebuild."""
    out, manifest = built
    copy = tmp_path / "data"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    last = copy / manifest["parts"]["train"]["shards"][-1]["file"]
    last.write_bytes(last.read_bytes()[:-1000])
    with pytest.raises(TrainingDataError, match=rf"{last.name}: cannot be read .*rebuild"):
        open_part(copy, "train")
