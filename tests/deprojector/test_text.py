"""CLIP text encoding matches what Stable Diffusion sees, and reports what it cut."""

import pytest
import torch

from deprojector.text import ClipText


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    return ClipText.from_folder(tiny_clip_dir)


def test_encode_shapes_and_projection(clip):
    """encode gives pooled (B,D), hidden (B,77,D), mask (B,77) and t = W p."""
    enc = clip.encode(["cat maid", "1girl red hair"])
    assert clip.hidden_size == 32
    assert enc.pooled.shape == (2, 32)
    assert enc.hidden.shape == (2, 77, 32)
    assert enc.mask.shape == (2, 77)
    w = clip.text_model.text_projection.weight
    torch.testing.assert_close(enc.text_embeds, enc.pooled @ w.T)


def test_pooled_is_hidden_state_at_first_end_token(clip):
    """pooled is H at the first end token; the mask covers start..end tokens only."""
    enc = clip.encode(["cat"])
    # byte-level tokenizer: start + c + a + t + end = 5 real tokens
    assert enc.mask[0].tolist() == [1] * 5 + [0] * 72
    torch.testing.assert_close(enc.pooled[0], enc.hidden[0, 4])


def test_truncation_is_reported(clip):
    """Texts longer than 77 tokens are cut to 77 and flagged; short ones are not."""
    enc = clip.encode(["cat maid", "x" * 200])
    assert enc.truncated == [False, True]
    assert enc.hidden.shape == (2, 77, 32)


def test_null_and_sos_come_from_the_empty_prompt(clip):
    """null = pooled(""), and sos is position 0 of every prompt's hidden states."""
    empty = clip.encode([""])
    torch.testing.assert_close(clip.null, empty.pooled[0])
    enc = clip.encode(["cat", "a much longer prompt"])
    torch.testing.assert_close(enc.hidden[:, 0], clip.sos.expand(2, -1))


def test_sd_folder_encodes_the_same_hidden_states_without_projection(clip, tiny_sd_dir):
    """The tiny SD folder's text encoder gives the tiny CLIP's H and p, and no text_embeds."""
    sd_text = ClipText.from_folder(tiny_sd_dir)
    a, b = clip.encode(["cat, maid"]), sd_text.encode(["cat, maid"])
    assert b.text_embeds is None
    assert torch.equal(a.hidden, b.hidden) and torch.equal(a.pooled, b.pooled)


def test_missing_folder_names_the_path(tmp_path):
    """A folder without tokenizer/ and text_encoder/ raises an error naming it."""
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ClipText.from_folder(tmp_path / "nowhere")
