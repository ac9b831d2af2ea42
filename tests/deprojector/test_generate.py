"""Image generation: reproducible per request, batched, recorded settings, clear errors."""

import threading

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from deprojector.checkpoint import save_checkpoint
from deprojector.device import pick_device, pick_dtype
from deprojector.errors import IncompatiblePipelineError
from deprojector.generate import ImageGenerator, RenderRequest, SDSettings, load_pipeline
from deprojector.model import VTDeprojector, vt_config
from deprojector.text import ClipText
from deprojector.tiny import build_tiny_clip, build_tiny_sd


@pytest.fixture(scope="module")
def vt_dir(tiny_clip_dir, tmp_path_factory):
    clip = ClipText.from_folder(tiny_clip_dir)
    model = VTDeprojector.from_clip(clip.text_model, clip.tokenizer, vt_config("vt-final", 32))
    return save_checkpoint(model, tmp_path_factory.mktemp("vt") / "epoch-1", {"seed": 0})


@pytest.fixture(scope="module")
def settings(tiny_sd_dir):
    return SDSettings(str(tiny_sd_dir), steps=2, guidance=5.0, width=32, height=32)


@pytest.fixture(scope="module")
def generator(settings):
    return ImageGenerator(settings, device="cpu")


def pixels(rendered):
    return np.asarray(rendered.image)


def test_settings_hash_is_canonical():
    """Equal settings hash alike (7 == 7.0); changing any field changes the 16-hex hash."""
    base = SDSettings("/models/sd15", guidance=7)
    assert base.settings_hash() == SDSettings("/models/sd15", guidance=7.0).settings_hash()
    assert len(base.settings_hash()) == 16
    int(base.settings_hash(), 16)
    changed = [
        SDSettings("/models/other"),
        SDSettings("/models/sd15", scheduler="ddim"),
        SDSettings("/models/sd15", steps=20),
        SDSettings("/models/sd15", width=768),
        SDSettings("/models/sd15", negative_prompt="blurry"),
    ]
    assert len({base.settings_hash(), *(s.settings_hash() for s in changed)}) == 6
    assert SDSettings(**base.to_dict()) == base


@pytest.mark.parametrize(
    ("field", "value"),
    [("scheduler", "plms"), ("steps", 0), ("width", 500), ("guidance", -1.0)],
)
def test_bad_settings_are_refused(field, value):
    """A scheduler, step count, size or guidance out of range raises ValueError naming it."""
    with pytest.raises(ValueError, match=field):
        SDSettings("/models/sd15", **{field: value})


def test_request_renders_identically_alone_or_in_a_batch(generator, vt_dir):
    """The same request gives the bit-identical image alone or among other requests."""
    target_ref = RenderRequest("cat maid", seed=7)
    target_vt = RenderRequest("cat, maid", seed=3, checkpoint=str(vt_dir))
    crowd = [
        RenderRequest("1boy 1girl in class room", seed=1),
        target_ref,  # second in its batch, beside another prompt and seed
        RenderRequest("red hair", seed=2, checkpoint=str(vt_dir)),
        target_vt,
    ]
    together = generator.render(crowd, batch_size=2)
    alone_ref = generator.render([target_ref], batch_size=2)[0]  # padded to 2 with itself
    alone_vt = generator.render([target_vt], batch_size=2)[0]
    assert [r.request for r in together] == crowd
    assert np.array_equal(pixels(together[1]), pixels(alone_ref))
    assert np.array_equal(pixels(together[3]), pixels(alone_vt))
    # the prompt and seed, and the conditioning source, each change the image
    assert not np.array_equal(pixels(together[0]), pixels(together[1]))
    reference_of_vt = generator.render([RenderRequest("cat, maid", seed=3)], batch_size=1)[0]
    assert not np.array_equal(pixels(reference_of_vt), pixels(alone_vt))


def test_rendered_image_records_every_setting(generator, settings, vt_dir):
    """Each image comes with the SD settings, its settings hash, seed and request."""
    request = RenderRequest("cat maid", seed=11, checkpoint=str(vt_dir), member=0)
    rendered = generator.render([request], batch_size=1)[0]
    assert rendered.image.size == (32, 32)
    recorded = rendered.settings
    for key, value in settings.to_dict().items():
        assert recorded[key] == value
    assert recorded["seed"] == 11 and recorded["checkpoint"] == str(vt_dir)
    assert recorded["member"] == 0
    assert recorded["settings_hash"] == settings.settings_hash()
    assert recorded["dtype"] == "float32"


def test_concurrent_renders_match_sequential(generator):
    """Two threads sharing one generator get the images they would get one after the other."""
    requests = [RenderRequest("cat maid", seed=s) for s in (1, 2)]
    expected = [pixels(generator.render([r], batch_size=1)[0]) for r in requests]
    got = [None, None]

    def work(i):
        got[i] = pixels(generator.render([requests[i]], batch_size=1)[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("dpm++", DPMSolverMultistepScheduler),
        ("ddim", DDIMScheduler),
        ("euler", EulerDiscreteScheduler),
    ],
)
def test_scheduler_setting_picks_the_sampler(tiny_sd_dir, name, cls):
    """scheduler="dpm++"/"ddim"/"euler" runs DPM-Solver++, DDIM or Euler."""
    gen = ImageGenerator(SDSettings(str(tiny_sd_dir), scheduler=name, steps=2, width=32, height=32))
    assert type(gen.pipe.scheduler) is cls
    if name == "dpm++":
        assert gen.pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert gen.render([RenderRequest("cat", seed=0)], batch_size=1)[0].image.size == (32, 32)


def test_deprojectors_are_loaded_once(generator, vt_dir):
    """A checkpoint folder is loaded once and reused across calls."""
    assert generator.check_checkpoint(vt_dir) is generator.check_checkpoint(str(vt_dir))


def test_missing_or_non_diffusers_folder_is_incompatible(tmp_path):
    """A missing path, a folder without model_index.json or a lone file name the path."""
    with pytest.raises(IncompatiblePipelineError, match="nothing at this path"):
        load_pipeline(tmp_path / "absent", "cpu", None)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(IncompatiblePipelineError, match="without model_index.json"):
        load_pipeline(tmp_path, "cpu", None)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(IncompatiblePipelineError, match="config=None"):
        load_pipeline(tmp_path / "model.safetensors", "cpu", None)


def test_pipeline_of_another_text_width_is_refused(tmp_path, vt_dir):
    """A D=32 deprojector on an SD model with 48-wide text (as D=768 on SD 2.x) is refused."""
    clip48 = build_tiny_clip(tmp_path / "clip48", hidden_size=48)
    sd48 = build_tiny_sd(tmp_path / "sd48", clip48)
    gen = ImageGenerator(SDSettings(str(sd48), steps=2, width=32, height=32))
    with pytest.raises(IncompatiblePipelineError, match=r"hidden size 32.*text width 48"):
        gen.check_checkpoint(vt_dir)
    with pytest.raises(IncompatiblePipelineError, match="text width 48"):
        gen.render([RenderRequest("cat", seed=0, checkpoint=str(vt_dir))])


def test_empty_prompt_and_bad_seed_are_refused(generator):
    """An empty prompt, a negative seed or a member without checkpoint raise ValueError."""
    with pytest.raises(ValueError, match="empty"):
        generator.render([RenderRequest(" ", seed=0)])
    with pytest.raises(ValueError, match="seed"):
        generator.render([RenderRequest("cat", seed=-1)])
    with pytest.raises(ValueError, match="member"):
        generator.render([RenderRequest("cat", seed=0, member=1)])


@pytest.mark.parametrize(
    ("device", "dtype"),
    [("cpu", torch.float32), ("cuda", torch.float16), ("cuda:1", torch.float16)],
)
def test_half_precision_on_cuda_full_on_cpu(device, dtype):
    """SD runs in float16 on CUDA and float32 on CPU unless a dtype is given."""
    assert pick_dtype(device) == dtype
    assert pick_dtype(device, torch.bfloat16) == torch.bfloat16
    assert pick_device("cpu") == torch.device("cpu")
