"""prompt_embeds for reference, single, composed and negative prompts."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from deprojector.conditioning import Conditioner, compose
from deprojector.errors import InputShapeError
from deprojector.text import ClipText


class Recorder(torch.nn.Module):
    """Stand-in deprojector: repeats its input on all 77 rows and remembers it."""

    hidden_size = 32

    def deproject(self, embeds, from_projected=False):
        self.seen = embeds.clone()
        return embeds[:, None, :].expand(-1, 77, -1).clone()


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    return ClipText.from_folder(tiny_clip_dir)


def test_compose_adds_parts_relative_to_null():
    """compose = n + sum w_i (p_i - n), weights default to 1."""
    null = torch.tensor([1.0, 1.0])
    parts = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    assert compose(parts, null).tolist() == [2.0, 3.0]
    assert compose(parts, null, [0.5, 2.0]).tolist() == [1.5, 5.0]


def test_compose_rejects_wrong_weights_and_shapes():
    """A weight count that is not K, or a null of the wrong width, raises InputShapeError."""
    with pytest.raises(InputShapeError, match="expected 2"):
        compose(torch.zeros(2, 4), torch.zeros(4), [1.0])
    with pytest.raises(InputShapeError, match="null"):
        compose(torch.zeros(2, 4), torch.zeros(3))


def test_compose_commutes_with_the_projection(clip):
    """Composing projected t and mapping back with W^-1 gives the same m (W has no bias)."""
    enc = clip.encode(["cat", "maid", ""])
    w = clip.text_model.text_projection.weight.double()
    m = compose(enc.pooled[:2].double(), enc.pooled[2].double())
    m_t = compose(enc.text_embeds[:2].double(), enc.text_embeds[2].double())
    torch.testing.assert_close(torch.linalg.solve(w, m_t), m, rtol=1e-5, atol=1e-5)


def test_reference_is_the_pipelines_own_conditioning(tiny_sd_dir):
    """reference() equals what StableDiffusionPipeline.encode_prompt gives for the text."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    cond = Conditioner(ClipText(pipe.tokenizer, pipe.text_encoder))
    prompts = ["cat, maid", "1boy 1girl in class room"]
    expected, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    assert torch.equal(cond.reference(prompts), expected)
    neg, _ = pipe.encode_prompt([""], "cpu", 1, False)
    assert torch.equal(cond.negative([""]), neg)


def test_single_prompt_deprojects_the_whole_text(clip):
    """A prompt without commas feeds the pooled embedding of the whole text."""
    rec = Recorder()
    out = Conditioner(clip).deprojected(["cat maid"], rec)
    assert out.shape == (1, 77, 32)
    torch.testing.assert_close(rec.seen[0], clip.encode(["cat maid"]).pooled[0])


def test_composed_prompt_deprojects_the_comma_rule(clip):
    """A prompt with commas feeds n + sum (p_i - n) of its parts, with optional weights."""
    rec = Recorder()
    cond = Conditioner(clip)
    parts = clip.encode(["cat", "maid"]).pooled
    cond.deprojected(["cat maid", "cat, maid"], rec)
    torch.testing.assert_close(rec.seen[1], compose(parts, clip.null))
    assert not torch.allclose(rec.seen[0], rec.seen[1])
    cond.deprojected(["cat, maid"], rec, weights=[[2.0, 0.5]])
    torch.testing.assert_close(rec.seen[0], compose(parts, clip.null, [2.0, 0.5]))


def test_empty_prompt_is_rejected_but_empty_negative_is_not(clip):
    """An empty prompt raises ValueError; "" is the normal negative prompt."""
    cond = Conditioner(clip)
    with pytest.raises(ValueError, match="empty"):
        cond.reference([" "])
    with pytest.raises(ValueError, match="empty"):
        cond.deprojected([""], Recorder())
    assert cond.negative([""]).shape == (1, 77, 32)


def test_deprojector_of_another_width_is_refused(clip):
    """A deprojector whose D differs from the CLIP width raises InputShapeError naming both."""
    rec = Recorder()
    rec.hidden_size = 768
    with pytest.raises(InputShapeError, match="768.*32"):
        Conditioner(clip).deprojected(["cat"], rec)


def test_vt_deprojector_gives_prompt_embeds(clip):
    """With a real VT built for the CLIP, each prompt gets (77, D) rows starting with sos."""
    from deprojector.model import VTDeprojector, vt_config

    vt = VTDeprojector.from_clip(clip.text_model, clip.tokenizer, vt_config("vt-final", 32))
    out = Conditioner(clip).deprojected(["cat maid", "cat, maid"], vt)
    assert out.shape == (2, 77, 32)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 0], clip.sos.expand(2, -1))
    assert not torch.allclose(out[0], out[1])
