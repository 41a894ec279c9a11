"""`hoi generate --backend diffusion` end to end on the CPU: a synthetic run made by the real stages,
a tiny checkpoint trained for two steps here, the CLI through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hoi_cli.models.config import make_config
from hoi_cli.testing import SYNTHETIC_STAGES, make_synthetic_run
from hoi_cli.train.loop import TrainOptions, train

N_FRAMES = 6


# one torch thread: ~5x faster than two on this 2-core machine (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def run_and_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen_diffusion")
    run = make_synthetic_run(root / "runs" / "clip", n_frames=N_FRAMES, stages=SYNTHETIC_STAGES).path
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train([run], make_config("tiny", "all"), root / "ckpt",
              TrainOptions(steps=2, batch_size=1, save_every=2, progress=False, device="cpu"))
    finally:
        torch.set_num_threads(old)
    return run, root / "ckpt"


def _decode(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def _generate(run, ckpt, out, *extra):
    from typer.testing import CliRunner

    from hoi_cli.cli import app

    args = ["generate", str(run), "--reference-from-frame", "1", "--backend", "diffusion", "--checkpoint",
            str(ckpt), "--out", str(out), "--steps", "2", "--device", "cpu", "--format", "json", "-q", *extra]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_generate_diffusion_cli_frames_and_seed(run_and_ckpt, tmp_path):
    run, ckpt = run_and_ckpt
    a = _generate(run, ckpt, tmp_path / "a.mp4", "--seed", "3")
    b = _generate(run, ckpt, tmp_path / "b.mp4", "--seed", "3")
    assert a["ok"] and a["frames"] == N_FRAMES and b["ok"] and b["frames"] == N_FRAMES
    fa, fb = _decode(tmp_path / "a.mp4"), _decode(tmp_path / "b.mp4")
    assert fa.shape == (N_FRAMES, 48, 64, 3)  # back at the run's working resolution
    assert np.array_equal(fa, fb)  # same seed, same frames
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["backend"] == "diffusion" and side["params"]["seed"] == 3
    assert side["track"]["model_size"] == [32, 32] and side["track"]["start"] == "noise"
    c = _generate(run, ckpt, tmp_path / "c.mp4", "--seed", "4")
    assert c["frames"] == N_FRAMES


def test_generate_diffusion_from_the_composite(run_and_ckpt, tmp_path):
    run, ckpt = run_and_ckpt
    _generate(run, ckpt, tmp_path / "s.mp4", "--strength", "0.5", "--seed", "1")
    frames = _decode(tmp_path / "s.mp4")
    assert frames.shape == (N_FRAMES, 48, 64, 3)
    side = json.loads((tmp_path / "s.json").read_text())
    assert side["track"]["start"] == "composite" and side["track"]["detail_from_composite"]
    assert side["params"]["strength"] == 0.5


def test_generate_diffusion_model_needs_its_stages(run_and_ckpt, tmp_path):
    """A run without 04_mlo cannot feed a model that reads MLO: one clear error, exit 3."""
    import shutil

    from typer.testing import CliRunner

    from hoi_cli.cli import app

    src, ckpt = run_and_ckpt
    run = tmp_path / "runs" / "nomlo"
    shutil.copytree(src, run)
    shutil.rmtree(run / "04_mlo")
    r = CliRunner().invoke(app, ["generate", str(run), "--reference-from-frame", "1", "--backend", "diffusion",
                                 "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.mp4"), "--device", "cpu"])
    assert r.exit_code == 3, r.output
    assert "04_mlo" in r.output
