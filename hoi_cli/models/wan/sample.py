"""Sampling `HOIWan`: Wan's flow schedulers with shift, CFG over the reference, windows of 4k + 1 frames.

- Scheduler: diffusers' ``UniPCMultistepScheduler`` in flow mode (``prediction_type="flow_prediction"``,
  ``use_flow_sigmas=True``, ``flow_shift``) -- the Wan pipelines' default -- or
  ``FlowMatchEulerDiscreteScheduler(shift=...)``; a fresh one per window.
- CFG: ``v = v_uncond + guidance * (v_cond - v_uncond)``; the unconditional branch drops the
  reference (``ref_keep = False``), as reference dropout does in training. The prompt is kept.
- Windows: a clip longer than ``cfg.num_frames`` (4k + 1) is cut into windows of that length whose
  starts are ``window - overlap`` apart (``overlap`` at most half a window; the last one ends at the
  clip's end). From the second window
  on, the frames it shares with the clip already made are given to VACE as *kept* source frames
  (source = the generated frames, mask = 0 there): VACE's own temporal extension. The shared frames
  are then cross-faded with a linear ramp. A clip shorter than a window is padded by repeating its
  last frame up to the next 4k + 1 and cut back.
- Seeds: window ``i``'s noise comes from a CPU ``torch.Generator`` seeded ``seed + i``, so a seed gives
  the same video on any device and batch of windows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .conditions import build_inputs, vae_decode
from .model import HOIWan


def make_scheduler(kind: str, shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if kind == "unipc":
        return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                       num_train_timesteps=1000)
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=shift, num_train_timesteps=1000)
    raise ValueError(f"unknown scheduler {kind!r} (unipc | euler)")


def window_starts(n: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of ``window`` frames covering ``n`` frames, ``window - overlap`` apart."""
    if n <= window:
        return [0]
    stride = max(1, window - overlap)
    starts = list(range(0, n - window, stride)) + [n - window]
    return sorted(set(starts))


def _slice(batch: dict, t0: int, t1: int) -> dict:
    return {k: (v[:, t0:t1] if torch.is_tensor(v) and v.ndim == 5 else v) for k, v in batch.items()}


def _pad_frames(batch: dict, n: int) -> dict:
    def pad(v):
        if not (torch.is_tensor(v) and v.ndim == 5) or v.shape[1] >= n:
            return v
        return torch.cat([v, v[:, -1:].expand(-1, n - v.shape[1], -1, -1, -1)], 1)
    return {k: pad(v) for k, v in batch.items()}


@torch.no_grad()
def denoise(model: HOIWan, inputs, prompt_embeds, *, steps: int, guidance: float, generator: torch.Generator,
            scheduler: str = "unipc", shift: float | None = None, progress: Callable | None = None) -> torch.Tensor:
    """Latents ``(1, z, F, h, w)`` of the video frames for one window's `WanInputs`."""
    base = model.base
    z = base.config.in_channels
    b, _, nf, h, w = inputs.control.shape
    dev = inputs.control.device
    dt = next(base.parameters()).dtype
    sched = make_scheduler(scheduler, model.cfg.flow_shift if shift is None else shift)
    sched.set_timesteps(steps, device=dev)
    lat = torch.randn((b, z, nf, h, w), generator=generator).to(dev, torch.float32)
    pe = prompt_embeds.to(dev, dt)
    keep = torch.ones(b, dtype=torch.bool, device=dev)
    for i, t in enumerate(sched.timesteps):
        ts = t.expand(b).to(dev)
        v = model(lat.to(dt), ts, pe, inputs, ref_keep=keep).float()
        if guidance != 1.0 and inputs.n_ref:
            vu = model(lat.to(dt), ts, pe, inputs, ref_keep=~keep).float()
            v = vu + guidance * (v - vu)
        lat = sched.step(v, t, lat, return_dict=False)[0]
        if progress:
            progress(i + 1, len(sched.timesteps))
    return lat[:, :, inputs.n_ref:]


@torch.no_grad()
def sample_clip(model: HOIWan, vae, batch: dict, prompt_embeds: torch.Tensor, *, steps: int = 25,
                guidance: float = 3.0, seed: int = 0, overlap: int = 4, scheduler: str = "unipc",
                shift: float | None = None, progress: Callable | None = None) -> torch.Tensor:
    """The generated clip ``(T, 3, H, W)`` in [-1, 1] for a batch of one clip's conditions
    (`hoi_cli.train.dataset` keys at the model's resolution, without ``video``; ``source_video`` optional)."""
    window = model.cfg.num_frames
    n = batch["hand_mask"].shape[1]
    if n < window:
        window = min(window, 4 * ((n - 1 + 3) // 4) + 1)
    n_pad = max(n, window)
    overlap = min(overlap, (window - 1) // 2)  # windows must advance
    batch = _pad_frames(batch, n_pad)
    src_key = "source_video" if batch.get("source_video") is not None else None
    made = None  # (1, T, 3, H, W) of the frames generated so far
    starts = window_starts(n_pad, window, overlap)
    for wi, t0 in enumerate(starts):
        t1 = t0 + window
        wb = _slice(batch, t0, t1)
        shared = 0 if made is None else made.shape[1] - t0
        if shared > 0:  # VACE temporal extension: the shared frames are kept source frames
            from .conditions import generation_mask, source_video

            mask = generation_mask(wb)
            src = source_video(wb, mask).clone()
            src[:, :shared] = made[:, t0:]
            wb = dict(wb, source_video=src)
            keep_mask = torch.ones_like(mask)
            keep_mask[:, :shared] = 0
            wb["hand_mask"], wb["object_mask"] = wb["hand_mask"] * keep_mask, wb["object_mask"] * keep_mask
        elif src_key is None:
            wb = dict(wb, source_video=None)
        inputs = build_inputs(wb, vae, with_target=False)
        gen = torch.Generator().manual_seed(int(seed) + wi)
        lat = denoise(model, inputs, prompt_embeds, steps=steps, guidance=guidance, generator=gen,
                      scheduler=scheduler, shift=shift, progress=progress)
        frames = vae_decode(vae, lat).clamp(-1, 1).permute(0, 2, 1, 3, 4)  # (1, T, 3, H, W)
        if made is None:
            made = frames
        else:
            if shared > 0:
                ramp = torch.linspace(0, 1, shared + 2, device=frames.device)[1:-1].view(1, -1, 1, 1, 1)
                blend = (1 - ramp) * made[:, t0:] + ramp * frames[:, :shared]
                made = torch.cat([made[:, :t0], blend, frames[:, shared:]], 1)
            else:
                made = torch.cat([made, frames], 1)
    return made[0, :n]
