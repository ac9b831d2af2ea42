"""Shared fixtures. Everything runs offline: no weights are downloaded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny CLIP folder (`tokenizer/`, `text_encoder/` with projection), built once per session."""
    from deprojector.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), hidden_size=32, seed=0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory, tiny_clip_dir):
    """A tiny StableDiffusionPipeline folder sharing the tiny CLIP's text tower, built once."""
    from deprojector.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"), tiny_clip_dir, seed=0)
