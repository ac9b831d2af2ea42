"""`python -m deprojector info` and `python -m deprojector deproject`, as other tools call them."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from deprojector.__main__ import main
from deprojector.checkpoint import load_deprojector, save_checkpoint
from deprojector.model import VTDeprojector, vt_config

pytestmark = pytest.mark.usefixtures("one_thread")
D = 32


@pytest.fixture
def vt_folder(tmp_path):
    model = VTDeprojector(vt_config("vt-final", D, 4), num_members=2, seed=1)
    with torch.no_grad():
        model.null.normal_()
        model.inverse_projection.add_(0.1 * torch.randn(D, D))
    return save_checkpoint(model, tmp_path / "vt", {"seed": 1})


@pytest.mark.slow  # make test-fast leaves it out
def test_info_prints_the_parameter_counts_as_one_json_object():
    """`python -m deprojector info --preset vt-final` prints the article's counts as JSON."""
    result = subprocess.run(
        [sys.executable, "-m", "deprojector", "info", "--preset", "vt-final"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    info = json.loads(result.stdout)
    assert info["params_total"] == 9_508_608
    assert info["params_trainable"] == 9_508_608 - 2_362_368
    assert info["params_frozen"] == 2_362_368
    assert info["d2_units"] == 16.0


def test_info_takes_a_hidden_size(capsys):
    """--hidden-size scales the counts; d2_units stays the preset's size."""
    assert main(["info", "--preset", "vt-mlp-4d", "--hidden-size", "64"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["d2_units"] == 20.0 and info["hidden_size"] == 64


def test_deproject_writes_float32_hidden_states(tmp_path, vt_folder):
    """deproject turns (N, D) float32 into (N, 77, D) float32, the whole ensemble or one member."""
    embeds = np.random.default_rng(0).standard_normal((3, D)).astype(np.float32)
    np.save(tmp_path / "in.npy", embeds)
    assert main(["deproject", "--model", str(vt_folder), "--inputs", str(tmp_path / "in.npy"),
                 "--out", str(tmp_path / "out.npy")]) == 0  # fmt: skip
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (3, 77, D) and out.dtype == np.float32
    model = load_deprojector(vt_folder)
    assert np.allclose(out, model.deproject(torch.from_numpy(embeds)).numpy(), atol=1e-6)

    assert main(["deproject", "--model", str(vt_folder), "--inputs", str(tmp_path / "in.npy"),
                 "--out", str(tmp_path / "m1.npy"), "--member", "1"]) == 0  # fmt: skip
    single = model.member(1).deproject(torch.from_numpy(embeds)).numpy()
    assert np.allclose(np.load(tmp_path / "m1.npy"), single, atol=1e-6)

    projected = embeds @ np.linalg.inv(model.inverse_projection.numpy()).T
    np.save(tmp_path / "proj.npy", projected.astype(np.float32))
    assert main(["deproject", "--model", str(vt_folder), "--inputs", str(tmp_path / "proj.npy"),
                 "--out", str(tmp_path / "p.npy"), "--from-projected"]) == 0  # fmt: skip
    assert np.allclose(np.load(tmp_path / "p.npy"), out, atol=1e-4)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((3, 16), np.float32),
            r"in.npy holds a float32 array of shape \(3, 16\); expected float32 \(N, 32\)",
        ),
        (np.zeros((3, 77, 32), np.float32), r"shape \(3, 77, 32\)"),
        (np.full((2, 32), np.nan, np.float32), r"NaN/Inf"),
    ],
)
def test_deproject_rejects_wrong_inputs_with_a_clear_message(
    tmp_path, vt_folder, capsys, array, message
):
    """Wrong shapes or NaN inputs exit with status 2 and a message naming the file and shapes."""
    np.save(tmp_path / "in.npy", array)
    code = main(["deproject", "--model", str(vt_folder), "--inputs", str(tmp_path / "in.npy"),
                 "--out", str(tmp_path / "out.npy")])  # fmt: skip
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out.npy").exists()


def test_deproject_reports_a_bad_member_index(tmp_path, vt_folder, capsys):
    """--member beyond the ensemble exits 2 saying how many members there are."""
    np.save(tmp_path / "in.npy", np.zeros((1, D), np.float32))
    code = main(["deproject", "--model", str(vt_folder), "--inputs", str(tmp_path / "in.npy"),
                 "--out", str(tmp_path / "out.npy"), "--member", "5"])  # fmt: skip
    assert code == 2 and "has 2 member(s)" in capsys.readouterr().err
