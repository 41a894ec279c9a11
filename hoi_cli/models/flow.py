"""Rectified flow: the training loss and an Euler sampler with CFG, windows and SDEdit.

Convention (flow time):
    ``x_t = (1 - t) * x0 + t * noise`` with ``t`` in [0, 1]; ``t = 0`` is data, ``t = 1`` noise.
    The model predicts the velocity ``v = dx_t/dt = noise - x0``; sampling integrates from
    ``t = 1`` (or ``t = strength`` for SDEdit) down to 0 with Euler steps
    ``x <- x + (t_next - t) * v``.

Classifier-free guidance is over the reference object: the unconditional branch drops
the reference tokens (``ref_keep = False``), exactly as reference dropout does in training;
``v = v_uncond + guidance * (v_cond - v_uncond)``.

Long clips: the clip is cut into windows of the model's ``num_frames`` overlapping by
``overlap`` frames. One noise tensor is drawn for the whole clip from ``seed`` (on the CPU,
so it is the same on every device), every window reads its slice of the one current
state, and at every step the windows' velocities are blended with linear ramps over the
overlaps (MultiDiffusion-style), so that overlapping frames share noise and trajectory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .conditioning import resize_maps, router_loss
from .scheduler import FlowMatchEulerScheduler
from .vae import LatentCodec

# Keys of a batch (see hoi_cli.train.dataset) that are per-frame maps (B, T, C, H, W).
# ``source_video`` (RGB in [-1, 1]) is the one that is encoded (to ``source_latent``) before the model sees it.
MAP_KEYS = ("layout", "hand_mask", "object_mask", "hand_render", "structure", "mlo_normals", "mlo_occlusion",
            "source_video")


def model_conditions(batch: dict, codec: LatentCodec, device=None, dtype=torch.float32) -> dict:
    """The model's condition dict from a batch: maps as they are, the reference and the source video encoded."""
    cond = {}
    for k in MAP_KEYS:
        if k in batch and batch[k] is not None and k not in ("structure", "source_video"):
            cond[k] = batch[k].to(device=device, dtype=dtype)
    if batch.get("reference") is not None:
        ref = batch["reference"].to(device=device, dtype=dtype)
        cond["reference_latent"] = codec.encode_images(ref)
    if batch.get("source_video") is not None:
        cond["source_latent"] = codec.encode(batch["source_video"].to(device=device, dtype=dtype))
    return cond


def sample_t(batch: int, mode: str = "logit_normal", generator: torch.Generator | None = None,
             device=None, shift: float = 1.0) -> torch.Tensor:
    """Training times: logit-normal or uniform, then shifted as the sampler's grid is
    (``t -> shift * t / (1 + (shift - 1) * t)``, `FlowMatchEulerScheduler.shift_time`)."""
    if mode == "uniform":
        t = torch.rand(batch, generator=generator)
    else:
        t = torch.sigmoid(torch.randn(batch, generator=generator))
    if shift != 1.0:
        t = FlowMatchEulerScheduler(shift).shift_time(t)
    return t.clamp(1e-4, 1 - 1e-4).to(device)


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn_like(like)
    return torch.randn(like.shape, generator=generator).to(like.device, like.dtype)


def training_losses(model, codec: LatentCodec, batch: dict, generator: torch.Generator | None = None,
                    t: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Flow-matching loss on a batch, plus the structure-stream and router losses if switched on.

    Returns ``loss`` (the weighted total) and its parts ``video``, ``structure``, ``router``.
    """
    cfg = model.config if hasattr(model, "config") else model.module.config
    dev = batch["video"].device
    x0 = codec.encode(batch["video"].float())
    b = x0.shape[0]
    if t is None:
        t = sample_t(b, cfg.t_sampling, generator, dev, cfg.flow_shift)
    noise = _randn(x0, generator)
    tt = t.view(b, 1, 1, 1, 1)
    xt = (1 - tt) * x0 + tt * noise
    cond = model_conditions(batch, codec, dev)
    ref_keep = None
    if cfg.ref_tokens:
        ref_keep = (torch.rand(b, generator=generator) >= cfg.ref_dropout).to(dev)
        if batch.get("reference_valid") is not None:  # no usable crop: train it as unconditional
            ref_keep = ref_keep & batch["reference_valid"].to(dev).bool()
    st = s_target = None
    if cfg.structure_stream:
        if batch.get("structure") is None:
            raise ValueError("condition 'structure' is required by structure_stream but was not given")
        s0 = resize_maps(batch["structure"].float(), x0.shape[-2:]) * 2 - 1
        s_noise = _randn(s0, generator)
        st = (1 - tt) * s0 + tt * s_noise
        s_target = s_noise - s0
    pred, aux = model(xt, t, cond, ref_keep=ref_keep, structure_noisy=st, return_aux=True)
    out = {"video": F.mse_loss(pred.float(), (noise - x0).float())}
    total = out["video"]
    if st is not None:
        out["structure"] = F.mse_loss(aux["structure_velocity"].float(), s_target.float())
        total = total + cfg.structure_loss_weight * out["structure"]
    if aux["router_logits"]:
        out["router"] = router_loss(aux["router_logits"], aux["hand_fraction"])
        total = total + cfg.router_loss_weight * out["router"]
    out["loss"] = total
    return out


def _frames_of(conditions: dict) -> int:
    for k in ("video", *MAP_KEYS):
        v = conditions.get(k)
        if v is not None:
            return v.shape[1]
    if conditions.get("num_frames"):
        return int(conditions["num_frames"])
    raise ValueError("cannot tell the clip length: give per-frame maps or 'num_frames'")


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start frames of overlapping windows covering ``total`` frames (the last one flush right)."""
    if total <= window:
        return [0]
    step = max(1, window - overlap)
    starts = list(range(0, total - window + 1, step))
    if starts[-1] != total - window:
        starts.append(total - window)
    return starts


def _ramp(window: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    w = torch.ones(window)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        if not first:
            w[:overlap] = ramp
        if not last:
            w[-overlap:] = ramp.flip(0)
    return w


def guided_velocity(model, x: torch.Tensor, t: torch.Tensor, cond: dict, guidance: float,
                    use_cfg: bool) -> torch.Tensor:
    """The model's velocity; with ``use_cfg``, ``v_uncond + guidance * (v_cond - v_uncond)`` where the
    unconditional branch drops the reference tokens (one batched call for both branches)."""
    if not use_cfg:
        return model(x, t, cond).float()
    b = x.shape[0]
    cond2 = {k: torch.cat([v, v]) for k, v in cond.items()}
    keep = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(x.device)
    vc, vu = model(torch.cat([x, x]), torch.cat([t, t]), cond2, ref_keep=keep).float().chunk(2)
    return vu + guidance * (vc - vu)


class WindowedSampler:
    """Integrates a clip of any length with a model of ``window`` frames, driven by a scheduler.

    At every step each window (`window_starts`) reads its slice of the one current latent and its
    slice of the per-frame conditions; the windows' velocities are blended with linear ramps over
    the ``overlap`` frames (MultiDiffusion-style) and the scheduler takes one step on the blend.
    """

    def __init__(self, model, scheduler: FlowMatchEulerScheduler, window: int, overlap: int,
                 guidance: float = 3.0, amp: bool = True):
        self.model, self.scheduler = model, scheduler
        self.window, self.overlap = window, min(overlap, window - 1)
        self.guidance, self.amp = guidance, amp

    def velocity(self, x: torch.Tensor, t: float, frame_conditions: dict,
                 reference_latent: torch.Tensor | None) -> torch.Tensor:
        """The blended velocity ``(B, T, C, h, w)`` of every window at time ``t``."""
        b, total, dev = x.shape[0], x.shape[1], x.device
        starts = window_starts(total, self.window, self.overlap)
        use_cfg = reference_latent is not None and self.guidance != 1.0
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.amp and dev.type == "cuda" \
            else contextlib.nullcontext
        acc = torch.zeros_like(x)
        wsum = torch.zeros(total, device=dev)
        for j, s0 in enumerate(starts):
            sl = slice(s0, min(s0 + self.window, total))
            xw = x[:, sl]
            cond = {k: v[:, sl] for k, v in frame_conditions.items()}
            if reference_latent is not None:
                cond["reference_latent"] = reference_latent
            tvec = torch.full((b,), t, device=dev)
            with autocast():
                v = guided_velocity(self.model, xw, tvec, cond, self.guidance, use_cfg)
            ww = _ramp(xw.shape[1], self.overlap if len(starts) > 1 else 0, j == 0, j == len(starts) - 1).to(dev)
            acc[:, sl] += v.float() * ww.view(1, -1, 1, 1, 1)
            wsum[sl] += ww
        return acc / wsum.view(1, -1, 1, 1, 1)

    def __call__(self, x: torch.Tensor, frame_conditions: dict, reference_latent: torch.Tensor | None,
                 progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Integrate ``x`` (at the scheduler's start time) down to ``t = 0``."""
        sched = self.scheduler
        n_steps = sched.num_steps
        for i in range(n_steps):
            v = self.velocity(x, float(sched.sigmas[i]), frame_conditions, reference_latent)
            x = sched.step(v, i, x)
            if progress is not None:
                progress(i + 1, n_steps)
        return x


@dataclass
class SamplingInputs:
    """`sample_video`'s inputs as tensors at the model's resolution, batched."""

    conditions: dict
    init_video: torch.Tensor | None
    input_hw: tuple[int, int] | None  # the callers' frame size (to resize back to)
    unbatched: bool
    frames: int
    batch: int


def _as_tensor(v):
    return torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v


def _resize_to(k: str, v, res: tuple[int, int]):
    """A per-frame map (area) or the reference image (bilinear) at ``res``; anything else as it is."""
    if not torch.is_tensor(v) or tuple(v.shape[-2:]) == res:
        return v
    if k in MAP_KEYS:
        return resize_maps(v.float(), res)
    if k == "reference":
        return F.interpolate(v.float(), size=res, mode="bilinear", align_corners=False)
    return v


def _resize_video(video: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``(B, T, C, H, W)`` resized bilinearly to ``hw``."""
    b, t = video.shape[:2]
    return F.interpolate(video.flatten(0, 1).float(), size=hw, mode="bilinear",
                         align_corners=False).unflatten(0, (b, t))


def prepare_inputs(conditions: dict, init_video, resolution: tuple[int, int]) -> SamplingInputs:
    """Numpy to tensors, a batch axis where the reference has none, maps and images resized to
    ``resolution`` (area for maps, bilinear for images)."""
    conditions = {k: _as_tensor(v) for k, v in conditions.items()}
    init_video = _as_tensor(init_video)
    unbatched = conditions.get("reference") is not None and conditions["reference"].ndim == 3
    if unbatched:
        conditions = {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in conditions.items()}
        init_video = init_video.unsqueeze(0) if init_video is not None else None
    res = tuple(resolution)
    frames = [v for v in conditions.values() if torch.is_tensor(v) and v.ndim >= 4]  # batched, with a size
    in_hw = tuple(frames[0].shape[-2:]) if frames else None
    conditions = {k: _resize_to(k, v, res) for k, v in conditions.items()}
    if init_video is None:
        return SamplingInputs(conditions, None, in_hw, unbatched, _frames_of(conditions),
                              frames[0].shape[0] if frames else 1)
    in_hw = in_hw or tuple(init_video.shape[-2:])
    if tuple(init_video.shape[-2:]) != res:
        init_video = _resize_video(init_video, res)
    return SamplingInputs(conditions, init_video, in_hw, unbatched, init_video.shape[1],
                          frames[0].shape[0] if frames else init_video.shape[0])


@torch.no_grad()
def sample_video(model, conditions: dict, steps: int = 25, guidance: float = 3.0, seed: int = 0,
                 init_video: torch.Tensor | None = None, strength: float = 1.0,
                 codec: LatentCodec | None = None, window: int | None = None, overlap: int | None = None,
                 device: str | torch.device | None = None, resolution: tuple[int, int] | None = None,
                 resize_back: bool = True, amp: bool = True,
                 progress: Callable[[int, int], None] | None = None, shift: float | None = None) -> torch.Tensor:
    """Sample a video ``(B, T, 3, H, W)`` in [-1, 1] (or ``(T, 3, H, W)`` for unbatched inputs).

    ``conditions`` holds the batch keys of `hoi_cli.conditions` (pixel space, any T):
    ``reference (B,3,H,W)``, ``layout``, ``hand_mask``, ``object_mask``, ``hand_render``,
    ``mlo_normals``, ``mlo_occlusion`` as the model's switches need them (``structure`` is
    ignored: the structure stream is dropped at inference). ``init_video (B,T,3,H,W)`` with
    ``strength < 1`` starts from it (SDEdit): ``x = (1-s) x_init + s noise`` and integrates
    from ``t = s`` with ``max(1, round(steps * s))`` steps. Same ``seed`` -> same video.

    Tensors or numpy arrays are accepted. The model runs at ``resolution`` (default: the
    resolution it was trained at, ``(config.height, config.width)``): inputs of another size
    are resized to it (area for maps, bilinear for images) and, with ``resize_back``, the
    output is resized back to the input size. ``window``/``overlap`` default to the model's
    ``num_frames`` and half of it. On CUDA with ``amp`` the network runs under bf16 autocast
    (the state and the Euler update stay float32). ``shift``: the scheduler's time shift
    (`FlowMatchEulerScheduler`; default: the model's ``flow_shift``, the shift it was trained with).
    ``source_video`` (with the model's ``source_video`` switch) is encoded once for the whole clip.

    The steps: `prepare_inputs`; noise for the whole clip from ``seed`` on the CPU; the
    scheduler's grid (and the SDEdit start); `WindowedSampler` down to ``t = 0``; decode.
    """
    cfg = model.config
    codec = codec or getattr(model, "codec", None) or LatentCodec()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    res = tuple(resolution) if resolution else (cfg.height, cfg.width)
    inputs = prepare_inputs(conditions, init_video, res)
    gen = torch.Generator().manual_seed(int(seed))
    shape = (inputs.batch, inputs.frames, cfg.latent_channels, res[0] // cfg.vae_downsample, res[1] // cfg.vae_downsample)
    noise = torch.randn(shape, generator=gen).to(dev)

    scheduler = FlowMatchEulerScheduler(cfg.flow_shift if shift is None else shift)
    sdedit = inputs.init_video is not None and float(min(max(strength, 0.0), 1.0)) < 1.0
    scheduler.set_timesteps(steps, strength if sdedit else 1.0)
    x = scheduler.add_noise(codec.encode(inputs.init_video.to(dev).float()), noise) if sdedit else noise
    if scheduler.num_steps:
        win = window or cfg.num_frames
        sampler = WindowedSampler(model, scheduler, win, overlap if overlap is not None else win // 2, guidance, amp)
        frame_conditions = {k: v.to(dev) for k, v in inputs.conditions.items() if torch.is_tensor(v) and k in MAP_KEYS}
        if frame_conditions.get("source_video") is not None:
            frame_conditions["source_latent"] = codec.encode(frame_conditions.pop("source_video").float())
        x = sampler(x, frame_conditions, _reference_latent(inputs, codec, cfg.ref_tokens, dev), progress)
    return _decode(x, inputs, codec, resize_back)


def _reference_latent(inputs: SamplingInputs, codec: LatentCodec, ref_tokens: bool, dev) -> torch.Tensor | None:
    ref = inputs.conditions.get("reference")
    return codec.encode_images(ref.to(dev).float()) if ref is not None and ref_tokens else None


def _decode(x: torch.Tensor, inputs: SamplingInputs, codec: LatentCodec, resize_back: bool) -> torch.Tensor:
    """Pixels in [-1, 1], back at the callers' size with ``resize_back``, unbatched where the inputs were."""
    video = codec.decode(x).clamp(-1, 1)
    if resize_back and inputs.input_hw is not None and tuple(video.shape[-2:]) != inputs.input_hw:
        video = _resize_video(video, inputs.input_hw).clamp(-1, 1)
    return video[0] if inputs.unbatched else video
