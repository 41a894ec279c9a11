"""Diffusion backend speed: training step and sampling, tiny config on the CPU, base config on a GPU.

Peer: the plain DiT (system ``none``: same backbone, no HOI conditioning), measured in the
same run; every system's figures are printed with their ratio to it.

    python bench/bench_diffusion.py                 # CPU, tiny config (+ GPU figures when CUDA is present)
    python bench/bench_diffusion.py --threads 1 --json out.json

GPU figures (guarded by torch.cuda.is_available()): the ``base`` preset at 256 px, 16-frame
windows, 25 Euler steps with CFG, bf16 autocast: sampling frames/s, peak memory, and the
training step time (batch 1, gradient checkpointing on and off).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hoi_cli.models.config import make_config  # noqa: E402
from hoi_cli.models.dit import HOIVideoDiT  # noqa: E402
from hoi_cli.models.flow import sample_video, training_losses  # noqa: E402
from hoi_cli.models.vae import LatentCodec  # noqa: E402

SYSTEMS = ("none", "rehold", "manivideo", "cointeract", "genhoi", "all")


def batch_for(cfg, b: int, device, t: int | None = None) -> dict:
    t = t or cfg.num_frames
    h, w = cfg.height, cfg.width
    g = torch.Generator().manual_seed(0)
    hand = torch.zeros(b, t, 1, h, w)
    hand[..., h // 4:h // 2, w // 4:w // 2] = 1
    obj = torch.zeros(b, t, 1, h, w)
    obj[..., h // 2:3 * h // 4, w // 3:2 * w // 3] = 1
    d = dict(video=torch.rand(b, t, 3, h, w, generator=g) * 2 - 1, reference=torch.rand(b, 3, h, w, generator=g) * 2 - 1,
             layout=torch.rand(b, t, 3, h, w, generator=g), hand_mask=hand, object_mask=obj,
             hand_render=torch.rand(b, t, cfg.hand_render_channels, h, w, generator=g),
             structure=torch.rand(b, t, cfg.structure_channels, h, w, generator=g),
             mlo_normals=torch.rand(b, t, 3 * cfg.mlo_layers, h, w, generator=g) * 2 - 1,
             mlo_occlusion=torch.rand(b, t, cfg.mlo_layers, h, w, generator=g))
    return {k: v.to(device) for k, v in d.items()}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train_step(cfg, device, batch_size: int, repeats: int, amp: bool = False, ckpt: bool = False) -> float:
    torch.manual_seed(0)
    m = HOIVideoDiT(cfg).to(device).train()
    m.gradient_checkpointing = ckpt
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    batch = batch_for(cfg, batch_size, device)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        with ctx():
            loss = training_losses(m, LatentCodec(), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        if i:  # first step is warm-up
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def time_sampling(cfg, device, frames: int, steps: int, guidance: float, amp: bool = False) -> float:
    torch.manual_seed(0)
    m = HOIVideoDiT(cfg).to(device).eval()
    cond = {k: v for k, v in batch_for(cfg, 1, device, frames).items() if k != "video"}
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext
    with ctx():
        sample_video(m, cond, steps=1, guidance=guidance, seed=0)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        sample_video(m, cond, steps=steps, guidance=guidance, seed=0)
        _sync(device)
    return frames / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=25, help="sampling steps")
    ap.add_argument("--frames", type=int, default=8, help="frames sampled on the CPU (2 windows of 4)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-gpu", action="store_true")
    args, _ = ap.parse_known_args(argv)  # nox passes the same posargs to every bench
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": {}, "gpu": None}
    print(f"# CPU, tiny config (32x32 px, 4-frame windows), {torch.get_num_threads()} threads; "
          f"peer = plain DiT (system none)")
    print(f"{'system':<11} {'params':>9} {'train step (s)':>15} {'x peer':>7} {'sample fps':>11} {'x peer':>7}")
    peer = None
    for system in SYSTEMS:
        cfg = make_config("tiny", system)
        n_params = sum(p.numel() for p in HOIVideoDiT(cfg).parameters())
        step = time_train_step(cfg, cpu, 2, args.repeats)
        fps = time_sampling(cfg, cpu, args.frames, args.steps, 3.0)
        if peer is None:
            peer = (step, fps)
        out["cpu"][system] = {"params": n_params, "train_step_s": step, "sample_fps": fps,
                              "train_step_ratio": step / peer[0], "sample_fps_ratio": fps / peer[1]}
        print(f"{system:<11} {n_params:>9,} {step:>15.3f} {step / peer[0]:>7.2f} {fps:>11.2f} {fps / peer[1]:>7.2f}")
    print(f"(train step: batch 2, 4 frames; sampling: {args.frames} frames, {args.steps} Euler steps, CFG 3.0)")

    if torch.cuda.is_available() and not args.no_gpu:
        dev = torch.device("cuda")
        print(f"\n# GPU {torch.cuda.get_device_name(dev)}, base config (256 px, 16-frame windows), bf16")
        gpu: dict = {"device": torch.cuda.get_device_name(dev)}
        for system in ("none", "all"):
            cfg = make_config("base", system)
            torch.cuda.reset_peak_memory_stats(dev)
            fps = time_sampling(cfg, dev, 16, 25, 3.0, amp=True)
            peak_s = torch.cuda.max_memory_allocated(dev) / 2**30
            torch.cuda.reset_peak_memory_stats(dev)
            step = time_train_step(cfg, dev, 1, 3, amp=True)
            peak_t = torch.cuda.max_memory_allocated(dev) / 2**30
            torch.cuda.reset_peak_memory_stats(dev)
            step_ck = time_train_step(cfg, dev, 1, 3, amp=True, ckpt=True)
            peak_ck = torch.cuda.max_memory_allocated(dev) / 2**30
            gpu[system] = {"sample_fps_256px_25steps": fps, "sample_peak_gb": peak_s, "train_step_s": step,
                           "train_peak_gb": peak_t, "train_step_ckpt_s": step_ck, "train_peak_ckpt_gb": peak_ck}
            print(f"{system:<6} sampling {fps:.2f} frames/s (peak {peak_s:.1f} GiB); train step {step:.3f} s "
                  f"(peak {peak_t:.1f} GiB), with checkpointing {step_ck:.3f} s (peak {peak_ck:.1f} GiB)")
        out["gpu"] = gpu
    else:
        print("\n# GPU: no CUDA device in this run; GPU figures not measured")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
