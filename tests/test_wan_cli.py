"""`hoi train --base ... --base-dir` and `hoi generate --backend wan` on a tiny local diffusers folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

REPO = Path(__file__).resolve().parents[1]


def hoi(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "hoi_cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                                           "PATH": "/usr/bin:/bin:/usr/local/bin"})


def test_missing_base_folder_is_exit_4_with_the_download_command(tmp_path):
    res = hoi("train", tmp_path, "--out", tmp_path / "ck", "--base", "wan-vace-1.3b", "--base-dir", tmp_path / "none")
    assert res.returncode == 4, res.stderr
    err = " ".join(res.stderr.split())
    assert "missing weights" in err and "transformer/config.json" in err
    assert "huggingface-cli download Wan-AI/Wan2.1-VACE-1.3B-diffusers --local-dir" in err


@pytest.mark.slow
def test_train_and_generate_with_a_local_tiny_base(tmp_path):
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file

    from hoi_cli.models.wan.config import TINY_VAE, make_wan_config
    from hoi_cli.models.wan.model import build_base
    from hoi_cli.testing import make_synthetic_run

    run = make_synthetic_run(tmp_path / "run1", n_frames=9, height=32, width=32).path
    base_dir = tmp_path / "base"
    torch.manual_seed(0)
    build_base(make_wan_config("tiny-vace")).save_pretrained(base_dir / "transformer")
    AutoencoderKLWan(**TINY_VAE).save_pretrained(base_dir / "vae")
    ck = tmp_path / "ck"
    ck.mkdir()
    # the prompt embedding cached beside --out (a tiny base has no UMT5 encoder to make it)
    save_file({"prompt_embeds": torch.randn(1, 6, 32)}, str(ck / "prompt_embeds.safetensors"))
    res = hoi("train", run, "--out", ck, "--base", "tiny-vace", "--base-dir", base_dir, "--frames", 5,
              "--height", 32, "--width", 32, "--steps", 2, "--system", "genhoi", "--save-every", 1, "--format", "json")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and (ck / "latest").read_text().strip() == "step_000002"
    out = tmp_path / "gen" / "clip.mp4"
    res = hoi("generate", run, "--reference-from-frame", 0, "--backend", "wan", "--checkpoint", ck,
              "--base-dir", base_dir, "--steps", 2, "--seed", 3, "--device", "cpu", "--out", out, "--format", "json")
    assert res.returncode == 0, res.stderr[-2000:]
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["backend"] == "wan" and side["params"]["seed"] == 3 and side["output"]["frames"] == 9
    import av

    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (32, 32, 3)
