"""`train_wan` end to end on a synthetic run folder: one process (+ resume), and DDP over 2 gloo processes.

The DDP test launches this file with torchrun; every rank trains the tiny model through accelerate
and writes a digest of its trainable tensors, which must agree across ranks (gradients all-reduced).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

REPO = Path(__file__).resolve().parents[1]


def _train(run: Path, out: Path, steps: int, resume: bool):
    from diffusers import AutoencoderKLWan

    from hoi_cli.models.wan.config import TINY_VAE, make_wan_config
    from hoi_cli.models.wan.model import build_base
    from hoi_cli.models.wan.train import WanTrainOptions, train_wan

    torch.manual_seed(0)
    cfg = make_wan_config("tiny-vace", "genhoi", num_frames=5, height=32, width=32)  # the runs have 01 + 03
    vae = AutoencoderKLWan(**TINY_VAE)
    base = build_base(cfg)
    opts = WanTrainOptions(steps=steps, save_every=2, cpu=True, resume=resume, log_every=1)
    return train_wan([run], out, cfg, opts, prompt_embeds=torch.zeros(1, 6, 32), base=base, vae=vae)


@pytest.fixture
def synthetic_run(tmp_path):
    from hoi_cli.testing import make_synthetic_run

    return make_synthetic_run(tmp_path / "run1", n_frames=9, height=32, width=32).path


@pytest.mark.slow
def test_train_wan_single_process_and_resume(synthetic_run, tmp_path, torch_one_thread):
    out = tmp_path / "ck"
    s = _train(synthetic_run, out, 3, resume=False)
    assert s["steps"] == 3 and (out / "latest").read_text().strip() == "step_000003"
    assert sorted(p.name for p in out.glob("step_*")) == ["step_000002", "step_000003"]
    assert s["latent_cache"] == {"hits": 0, "misses": 3}  # 3 windows of 5 frames in 9, each encoded once
    s = _train(synthetic_run, out, 4, resume=True)
    assert s["resumed_from"].endswith("step_000003") and s["steps"] == 4
    assert s["latent_cache"] == {"hits": 1, "misses": 0}
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in log)


@pytest.mark.slow
def test_train_wan_ddp_two_gloo_processes(synthetic_run, tmp_path):
    out = tmp_path / "ck"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           __file__, str(synthetic_run), str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    digests = {json.loads(p.read_text())["rank"]: json.loads(p.read_text()) for p in out.glob("rank*.json")}
    assert sorted(digests) == [0, 1]
    assert digests[0]["world_size"] == 2 and digests[1]["world_size"] == 2
    assert digests[0]["digest"] == digests[1]["digest"]  # both ranks hold the same weights after 2 steps
    from hoi_cli.models.wan.train import load_wan_checkpoint, weights_digest
    from hoi_cli.models.wan.model import build_base
    from hoi_cli.models.wan.config import WanHOIConfig

    cfg = WanHOIConfig.load(out / "step_000002" / "wan_config.json")
    assert weights_digest(load_wan_checkpoint(out, base=build_base(cfg))) == digests[0]["digest"]


def _worker(run: str, out: str) -> None:
    """Under torchrun: train 2 steps; every rank writes the digest of its own trained tensors."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    s = _train(Path(run), Path(out), 2, resume=False)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "world_size": s["world_size"],
                                                           "digest": s["weights_sha256"]}))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
