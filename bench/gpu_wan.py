"""Speed and memory of the Wan HOI model at the real size: sampling, training steps, peak memory.

    PYTHONPATH=$PWD python bench/gpu_wan.py [--json out.json]

What it runs (one prepared script, a few minutes on one GPU; nothing is downloaded):

- the real ``Wan2.1-VACE-1.3B`` transformer config (`hoi_cli.models.wan.config.VACE_1_3B`),
  random-initialised, in bf16, wrapped by `HOIWan` with every added path (system ``all``), and a
  random-initialised real-size ``AutoencoderKLWan`` (its default config);
- one window of 17 frames at 480x832 + the reference image (6 latent frames of 60x104, 9,360 tokens),
  random conditions, a random 512-token prompt embedding;
- sampling: 25 UniPC steps with CFG over the reference (50 transformer passes), timed alone
  (``denoise_s``) and with the VAE encodes/decode (``sample_clip_s``);
- a training step at batch 1 (flow-matching loss, backward, AdamW), bf16 autocast: with LoRA
  (rank 32, + the new modules) and in full; median of 5 after 2 warm-up steps; with CoInteract's
  structure stream (twice the video tokens in training; ``--no-structure`` leaves it out) and
  optionally gradient checkpointing (``--grad-checkpointing``);
- peak memory of each phase (``torch.cuda.max_memory_allocated``), and the attention kernel that
  ``torch.nn.functional.scaled_dot_product_attention`` (diffusers' native backend) ran, from the
  profiler's kernel names.

Targets on one H200: sampling (denoise, 25 steps with CFG) <= 8 s, a LoRA training step <= 0.6 s,
peak memory <= 60 GiB.

Without a GPU it runs the tiny CPU config (`TINY_VACE`, 5 frames of 32x32) instead and says so in its
output (``"device": "cpu", "config": "tiny"``): those figures only show the script works.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_gib(dev) -> float | None:
    return round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None


def _reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def random_batch(frames: int, h: int, w: int, dev, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g).to(dev)  # noqa: E731
    b = {"video": r(1, frames, 3, h, w) * 2 - 1, "reference": r(1, 3, h, w) * 2 - 1, "layout": r(1, frames, 3, h, w),
         "hand_mask": torch.zeros(1, frames, 1, h, w, device=dev), "object_mask": torch.zeros(1, frames, 1, h, w, device=dev),
         "hand_render": r(1, frames, 2, h, w), "mlo_normals": r(1, frames, 39, h, w) * 2 - 1,
         "mlo_occlusion": r(1, frames, 13, h, w), "structure": r(1, frames, 3, h, w)}
    b["hand_mask"][..., h // 3:2 * h // 3, : w // 3] = 1
    b["object_mask"][..., h // 3:2 * h // 3, w // 3:2 * w // 3] = 1
    return b


def attention_kernels(model, inputs, pe, dev, dt) -> list[str]:
    """Names of the attention kernels the profiler saw in one forward pass."""
    from torch.profiler import ProfilerActivity, profile

    lat = torch.randn(1, 16, *inputs.control.shape[2:], device=dev, dtype=dt)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.no_grad(), profile(activities=acts) as prof:
        model(lat, torch.tensor([500.0], device=dev), pe, inputs)
        _sync(dev)
    keys = ("flash", "efficient", "cudnn", "fmha", "scaled_dot_product", "attention")
    names = {e.key for e in prof.key_averages() if any(k in e.key.lower() for k in keys)}
    return sorted(names)[:12]


def train_steps(model, inputs, pe, dev, dt, mode: str, n: int = 5, warmup: int = 2, checkpointing: bool = False) -> dict:
    from hoi_cli.models.wan.train import add_lora, set_trainable, training_loss

    if mode == "lora":
        add_lora(model)
    params = set_trainable(model, mode)
    model.gradient_checkpointing = checkpointing
    opt = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    gen = torch.Generator().manual_seed(0)
    times = []
    _reset_peak(dev)
    for i in range(warmup + n):
        _sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = training_loss(model, inputs, pe, generator=gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"step_s": round(statistics.median(times), 4), "trainable_params": sum(p.numel() for p in params),
            "peak_gib": _peak_gib(dev), "loss": round(float(loss), 4)}


def main(argv=None) -> dict:
    from diffusers import AutoencoderKLWan

    from hoi_cli.models.wan.conditions import build_inputs
    from hoi_cli.models.wan.config import TINY_VAE, make_wan_config
    from hoi_cli.models.wan.model import HOIWan, build_base, param_count
    from hoi_cli.models.wan.sample import denoise, sample_clip

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--skip-full", action="store_true", help="skip the full fine-tuning step")
    ap.add_argument("--grad-checkpointing", action="store_true", help="training steps with gradient checkpointing")
    ap.add_argument("--no-structure", action="store_true",
                    help="train without CoInteract's structure stream (it doubles the training tokens)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    gpu = torch.cuda.is_available()
    dev = torch.device("cuda" if gpu else "cpu")
    dt = torch.bfloat16 if gpu else torch.float32
    frames, h, w = (17, 480, 832) if gpu else (5, 32, 32)
    cfg = make_wan_config("wan-vace-1.3b" if gpu else "tiny-vace", "all", num_frames=frames, height=h, width=w)
    torch.manual_seed(0)
    base = build_base(cfg, dtype=dt, device=dev)
    vae = (AutoencoderKLWan() if gpu else AutoencoderKLWan(**TINY_VAE)).to(dev, dt).eval()
    model = HOIWan(base, cfg).to(dev)
    model.requires_grad_(False)
    pe = torch.randn(1, 512 if gpu else 6, cfg.base_config["text_dim"], device=dev, dtype=dt)
    res: dict = {"device": torch.cuda.get_device_name(dev) if gpu else "cpu", "config": "wan-vace-1.3b" if gpu else "tiny",
                 "frames": frames, "size": [h, w], "steps": args.steps, "guidance": args.guidance,
                 "base_params": param_count(base), "added_params": param_count(model) - param_count(base),
                 "torch": torch.__version__}
    if not gpu:
        res["note"] = "no GPU: the tiny CPU config ran; these figures only show that the script works"
    batch = random_batch(frames, h, w, dev)
    if args.no_structure:
        batch.pop("structure")
    res["structure_stream_in_training"] = not args.no_structure
    res["grad_checkpointing"] = args.grad_checkpointing
    with torch.no_grad():
        inputs = build_inputs(batch, vae, with_target=True)
    inputs = inputs.to(dev)
    inputs.control = inputs.control.to(dt)
    res["tokens"] = int(inputs.control.shape[2] * inputs.control.shape[3] * inputs.control.shape[4] // 4)
    res["attention_kernels"] = attention_kernels(model, inputs, pe, dev, dt)

    model.eval()
    _reset_peak(dev)
    _sync(dev)
    t0 = time.perf_counter()
    denoise(model, inputs, pe, steps=args.steps, guidance=args.guidance, generator=torch.Generator().manual_seed(0))
    _sync(dev)
    res["denoise_s"] = round(time.perf_counter() - t0, 3)
    res["denoise_peak_gib"] = _peak_gib(dev)
    sb = {k: v for k, v in batch.items() if k != "structure"}
    _sync(dev)
    t0 = time.perf_counter()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=gpu):
        sample_clip(model, vae, sb, pe, steps=args.steps, guidance=args.guidance, seed=0)
    _sync(dev)
    res["sample_clip_s"] = round(time.perf_counter() - t0, 3)
    res["sample_peak_gib"] = _peak_gib(dev)

    full_model = None if args.skip_full else copy.deepcopy(model).cpu()
    res["train_lora"] = train_steps(model, inputs, pe, dev, dt, "lora", checkpointing=args.grad_checkpointing)
    del model
    if full_model is not None:
        _reset_peak(dev)
        res["train_full"] = train_steps(full_model.to(dev), inputs, pe, dev, dt, "full", checkpointing=args.grad_checkpointing)
    if gpu:
        res["targets_h200"] = {"denoise_s<=8": res["denoise_s"] <= 8,
                               "lora_step_s<=0.6": res["train_lora"]["step_s"] <= 0.6,
                               "peak_gib<=60": max(x for x in (res["denoise_peak_gib"], res["sample_peak_gib"],
                                                               res["train_lora"]["peak_gib"]) if x is not None) <= 60}
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
