"""The diffusion backend of `hoi generate`: the conditioning of the run, with the adjusted layout
and the cut-out reference, sampled by `hoi_cli.models.flow.sample_video` from a `hoi train` checkpoint.

The conditions are those of `hoi_cli.train.dataset.HOIRunDataset` over the whole clip (one
window of T frames; the sampler windows it by the model's ``num_frames``), at the model's
resolution, with two replacements: ``reference`` is the cut-out reference on white (as in
training), and ``layout`` is the rasterised *adjusted* layout (Re-HOLD's adaptive layout
adjustment). The output is resized back to the working resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError


def diffusion_clip(run_dir: Path, frames: np.ndarray, masks: dict, ref, hand_boxes, object_boxes, opts, out_path: Path,
                   fps: float, log=lambda m: None, progress=None):
    import cv2

    if not opts.checkpoint:
        raise BadInputError("--backend diffusion needs --checkpoint CKPT", "give a `hoi train --out` folder")
    try:
        import torch

        from ..models.checkpoint import load_checkpoint
        from ..models.flow import sample_video
        from ..train.dataset import HOIRunDataset, rasterize_boxes
    except ImportError as exc:
        raise BadInputError(f"the diffusion backend is not available in this install ({exc})",
                            "use --backend composite, or install the package with its torch extras") from None
    from ..conventions import box_from_mask
    from ..stages.base import resolve_device
    from ..video import VideoWriter
    from .layout import adjust_layout

    device = resolve_device(opts.device)
    model = load_checkpoint(opts.checkpoint, device=device)
    cfg = model.config
    T, H, W = frames.shape[:3]
    h, w = cfg.height, cfg.width
    ds = HOIRunDataset([run_dir], num_frames=T, height=h, width=w)
    item = ds[0]
    boxes = np.stack([box_from_mask(m) for m in masks["object"]]).astype(np.float32)
    if object_boxes is not None:
        miss = ~np.isfinite(boxes).all(-1)
        boxes[miss] = object_boxes[miss]
    layout = adjust_layout(hand_boxes, boxes, ref.aspect, opts.layout)
    lay = np.concatenate([layout.hand_boxes, layout.object_boxes[:, None]], 1)
    item["layout"] = torch.from_numpy(rasterize_boxes(lay, (H, W), (h, w)))
    # the reference on white, square-padded, at the model's size (as the training references are)
    side = max(ref.rgb.shape[:2])
    canvas = np.full((side, side, 3), 255.0, np.float32)
    a = ref.alpha[..., None]
    y0, x0 = (side - ref.rgb.shape[0]) // 2, (side - ref.rgb.shape[1]) // 2
    canvas[y0:y0 + ref.rgb.shape[0], x0:x0 + ref.rgb.shape[1]] = ref.rgb * a + 255.0 * (1 - a)
    refimg = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    item["reference"] = torch.from_numpy(refimg.transpose(2, 0, 1) / 127.5 - 1.0).float()
    cond = {k: v for k, v in item.items() if k not in ("video", "start", "reference_valid", "structure")}
    init = item["video"] if opts.strength < 1.0 else None
    video = sample_video(model, cond, steps=opts.steps, guidance=opts.guidance, seed=opts.seed,
                         init_video=init, strength=opts.strength, device=device,
                         progress=(lambda i, n: progress(i, n)) if progress else None)
    vid = ((video.clamp(-1, 1).cpu().numpy() + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)
    with VideoWriter(out_path, fps, crf=opts.crf) as writer:
        for f in vid:
            writer.write(cv2.resize(f, (W, H), interpolation=cv2.INTER_CUBIC))
    return layout, {}, {"model_size": [h, w], "steps": opts.steps}
