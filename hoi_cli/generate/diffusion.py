"""The diffusion backend of `hoi generate`: the conditioning of the run, with the adjusted layout
and the cut-out reference, sampled by `hoi_cli.models.flow.sample_video` from a `hoi train` checkpoint.

The conditions are `hoi_cli.conditions.clip_conditions` over the whole clip (one
window of T frames, as training builds them; the sampler windows it by the model's ``num_frames`` with overlapping,
noise-consistent windows), at the model's resolution, read through the stages' loaders, with
these replacements:

- ``reference``: the cut-out reference on white, square-padded (as the training references are);
- ``layout``: the rasterised *adjusted* layout (Re-HOLD's adaptive layout adjustment);
- ``object_mask``: the source object mask united with the adjusted object box, so that the
  regions where the model may read the reference / the object memory bank cover the new
  object's place (the MLO object layer still describes the *source* object's shape);
- ``hand_mask``, ``hand_render`` and the hands' MLO layers: moved with the layout's hand boxes
  (``shift_hands``, `hoi_cli.generate.layout.shift_hand_maps`), so all hand conditions agree;
- ``source_video`` (models with that switch): 07_genhoi's object-removed video, else the frames
  with the hand and object masks at 0 (`hoi_cli.conditions.source_window`).

The sampler's time shift is the model's ``flow_shift`` (what it was trained with) unless
``opts.shift`` (``hoi generate --shift``) is given.

The structure stream (CoInteract) is training-only and is not used here.

Starting from the composite (``--strength s < 1``, SDEdit): the composite backend's video is
made first, encoded at the model's resolution, noised to flow time ``s`` and integrated from
there. The model's resolution is small (32 px for the tiny preset), so the output frame is
``up(model) + (composite - up(down(composite)))``: the model gives the content up to its own
resolution and the composite the detail above it (``detail_from_composite``; set the
attribute to False on the options object for the plain upsampled model output). From noise
(``s = 1``) the output is the model's video upsampled to the working resolution.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import BadInputError


def _resize_frames(frames: np.ndarray, w: int, h: int, interp) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def diffusion_clip(run_dir: Path, frames: np.ndarray, masks: dict, ref, hand_boxes, object_boxes, opts, out_path: Path,
                   fps: float, log=lambda m: None, progress=None):
    import cv2

    if not opts.checkpoint:
        raise BadInputError("--backend diffusion needs --checkpoint CKPT", "give a `hoi train --out` folder")
    try:
        import torch

        from ..models.checkpoint import load_checkpoint
        from ..models.flow import sample_video
    except ImportError as exc:
        raise BadInputError(f"the diffusion backend is not available in this install ({exc})",
                            "use --backend composite, or install the package with its torch extras") from None
    from ..conditions import clip_conditions, rasterize_boxes, square_reference
    from ..conventions import box_from_mask
    from ..stages.base import resolve_device
    from ..video import VideoWriter
    from .layout import adjust_layout, shift_hand_maps

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    device = resolve_device(opts.device)
    model = load_checkpoint(opts.checkpoint, device=device)
    cfg = model.config
    T, H, W = frames.shape[:3]
    h, w = cfg.height, cfg.width
    need = cfg.required_conditions() - {"structure", "video"}  # structure: training only
    try:
        maps = clip_conditions(run_dir, (h, w), T, required=need, hand_render_channels=cfg.hand_render_channels,
                               structure_channels=cfg.structure_channels, mlo_layers=cfg.mlo_layers,
                               source_video=cfg.source_video)
    except BadInputError as exc:
        raise BadInputError(f"the checkpoint's model ({cfg.system}) cannot run on {Path(run_dir).name}: {exc.message}",
                            exc.hint) from None
    boxes = np.stack([box_from_mask(m) for m in masks["object"]]).astype(np.float32)
    if object_boxes is not None:
        miss = ~np.isfinite(boxes).all(-1)
        boxes[miss] = object_boxes[miss]
    layout = adjust_layout(hand_boxes, boxes, ref.aspect, opts.layout)
    maps.update(shift_hand_maps(maps, layout, hand_boxes, (H, W)))  # the hand conditions follow the hand boxes
    lay = np.concatenate([layout.hand_boxes, layout.object_boxes[:, None]], 1)
    lay_maps = rasterize_boxes(lay, (H, W), (h, w))
    maps["layout"] = torch.from_numpy(lay_maps)
    maps["object_mask"] = torch.maximum(maps["object_mask"], torch.from_numpy(lay_maps[:, 2:3]))
    cond = {"reference": torch.from_numpy(square_reference(ref, h, w)),
            **{k: v for k, v in maps.items() if k != "structure"}}  # structure: training only
    timings["diffusion_load_s"] = time.perf_counter() - t0

    strength = float(opts.strength)
    composite = None
    init = None
    if strength < 1.0:
        from .composite import composite_clip
        from .inputs import load_hand_in_front

        t1 = time.perf_counter()
        res = composite_clip(frames, masks["object"], masks["hand"], ref, hand_boxes, object_boxes=object_boxes,
                             hand_in_front=load_hand_in_front(run_dir, masks["hand"].shape, log=log),
                             params=opts.composite, layout_params=opts.layout, keep_frames=True, log=log)
        composite = res.frames  # (T, H, W, 3) uint8
        small = _resize_frames(composite, w, h, cv2.INTER_AREA)
        init = torch.from_numpy(small.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
        timings["composite_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    video = sample_video(model, cond, steps=opts.steps, guidance=opts.guidance, seed=opts.seed,
                         init_video=init, strength=strength, device=device, resize_back=False,
                         shift=getattr(opts, "shift", None),
                         progress=(lambda i, n: progress(i, n)) if progress else None)
    timings["sample_s"] = time.perf_counter() - t2
    vid = ((video.clamp(-1, 1).float().cpu().numpy() + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)
    up = _resize_frames(vid, W, H, cv2.INTER_CUBIC)
    detail = composite is not None and getattr(opts, "detail_from_composite", True)
    if detail:
        blur = _resize_frames(_resize_frames(composite, w, h, cv2.INTER_AREA), W, H, cv2.INTER_CUBIC)
        up = np.clip(up.astype(np.int16) + composite.astype(np.int16) - blur.astype(np.int16), 0, 255).astype(np.uint8)
    t3 = time.perf_counter()
    with VideoWriter(out_path, fps, crf=opts.crf) as writer:
        for f in up:
            writer.write(f)
    timings["write_s"] = time.perf_counter() - t3
    shift = getattr(opts, "shift", None)
    info = {"model_size": [h, w], "steps": opts.steps, "system": cfg.system, "preset": cfg.preset,
            "flow_shift": cfg.flow_shift if shift is None else float(shift), "source_video": cfg.source_video,
            "start": "composite" if composite is not None else "noise", "strength": strength,
            "detail_from_composite": bool(detail), "sampling_frames_per_s": round(T / max(timings["sample_s"], 1e-9), 3)}
    return layout, timings, info
