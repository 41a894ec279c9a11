"""Object metrics, where object masks exist for both the generated and the reference clip.

Masks are boolean ``(T, H, W)`` at the clips' resolution (see `load_masks` for the accepted
files). Frames are compared ``t`` with ``t``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def load_masks(path: str | Path, size: tuple[int, int] | None = None, key: str = "object") -> np.ndarray:
    """Boolean object masks ``(T, H, W)`` from a mask video / frame folder, an ``.npz`` or a run folder.

    - video or image folder: a pixel is in the mask where its brightest channel is > 127
      (white or coloured masks on black);
    - ``.npz``: the bit-packed ``object`` (or first ``object_*``) key with its ``shape``
      (03_segment's format), or a plain boolean array;
    - run folder: 03_segment's masks (``object`` or ``hand``), read by its loader.
    ``size=(w, h)`` resizes (nearest neighbour) when the masks' size differs.
    """
    import cv2

    from ..conventions import unpack_masks
    from ..errors import BadInputError
    from ..stages import segment
    from ..stages.base import RunReader
    from ..video import read_frames_any

    path = Path(path)
    run = RunReader(path) if path.is_dir() else None
    if run is not None and run.has(segment):
        run_masks = run.read(segment)
        if key not in run_masks:
            raise BadInputError(f"no '{key}' masks in {path} (03_segment has {', '.join(run_masks)})",
                                "use key object or hand")
        masks = run_masks[key]
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = [key] if key in z.files else [k for k in z.files if k.startswith(key + "_")]
            if not names:
                raise BadInputError(f"no '{key}' masks in {path} (keys: {', '.join(z.files)})",
                                    "pass an npz with an 'object' key, or a mask video")
            arr = z[names[0]]
            if arr.dtype == np.uint8 and "shape" in z.files:
                masks = unpack_masks(arr, z["shape"])
            else:
                masks = arr.astype(bool)
    else:
        frames, _ = read_frames_any(path)
        masks = frames.max(axis=-1) > 127
    if size is not None and (masks.shape[2], masks.shape[1]) != tuple(size):
        masks = np.stack([cv2.resize(m.astype(np.uint8), tuple(size), interpolation=cv2.INTER_NEAREST) > 0
                          for m in masks])
    return masks


def mask_iou(gen_masks: np.ndarray, ref_masks: np.ndarray) -> dict:
    """Object mask IoU.

    Definition: per frame ``|G & R| / |G | R|`` of the generated and reference object masks,
    averaged over frames where the union is non-empty (frames where both are empty are left
    out and counted in ``n_empty``). In [0, 1]; 1 = the object is generated exactly where the
    reference has it.
    """
    T = min(len(gen_masks), len(ref_masks))
    g = np.asarray(gen_masks[:T], dtype=bool).reshape(T, -1)
    r = np.asarray(ref_masks[:T], dtype=bool).reshape(T, -1)
    inter = (g & r).sum(1)
    union = (g | r).sum(1)
    ok = union > 0
    per = np.where(ok, inter / np.maximum(union, 1), np.nan)
    return {"object_mask_iou": float(np.nanmean(per)) if ok.any() else math.nan,
            "n_frames": T, "n_empty": int((~ok).sum()), "per_frame": per}


HIST_BINS = 8


def _masked_hist(frame: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    px = frame[mask]
    if len(px) == 0:
        return None
    idx = (px // (256 // HIST_BINS)).astype(np.int64)
    flat = (idx[:, 0] * HIST_BINS + idx[:, 1]) * HIST_BINS + idx[:, 2]
    h = np.bincount(flat, minlength=HIST_BINS ** 3).astype(np.float64)
    return h / h.sum()


def appearance_colour(gen: np.ndarray, ref: np.ndarray, gen_masks: np.ndarray, ref_masks: np.ndarray) -> float:
    """Object appearance consistency, colour-histogram variant (weight-free).

    Definition: per frame, the histogram intersection ``sum_b min(h_g[b], h_r[b])`` of the
    normalised 8x8x8-bin RGB histograms of the pixels inside the generated object mask (in the
    generated frame) and inside the reference object mask (in the reference frame); averaged
    over frames where both masks are non-empty. In [0, 1]; 1 = same colour distribution.
    Insensitive to where the object is (that is `mask_iou`'s job) and to its shape.
    """
    T = min(len(gen), len(ref), len(gen_masks), len(ref_masks))
    vals = []
    for t in range(T):
        hg, hr = _masked_hist(gen[t], gen_masks[t]), _masked_hist(ref[t], ref_masks[t])
        if hg is not None and hr is not None:
            vals.append(np.minimum(hg, hr).sum())
    return float(np.mean(vals)) if vals else math.nan


def object_crops(frames: np.ndarray, masks: np.ndarray, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Square crops around each frame's object mask, background set to black, resized to ``size``.

    Returns ``(crops (N, size, size, 3) uint8, frame indices (N,))`` for frames with a mask.
    """
    import cv2

    crops, idx = [], []
    H, W = masks.shape[1:3]
    for t, (f, m) in enumerate(zip(frames, masks)):
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            continue
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        side = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min(), 2)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        canvas = np.zeros((side, side, 3), dtype=np.uint8)
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(W, x0 + side), min(H, y0 + side)
        patch = np.where(m[sy0:sy1, sx0:sx1, None], f[sy0:sy1, sx0:sx1], 0)
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = patch
        crops.append(cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA))
        idx.append(t)
    if not crops:
        return np.zeros((0, size, size, 3), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    return np.stack(crops), np.array(idx)


def appearance_dino(gen: np.ndarray, ref: np.ndarray, gen_masks: np.ndarray, ref_masks: np.ndarray,
                    dino) -> float:
    """Object appearance consistency, DINO variant.

    Definition: per frame, the cosine similarity (clipped at 0) of the DINO ViT-B/16 CLS
    features (`temporal.DinoFeatures`) of the two object crops (`object_crops`: square box
    around the mask, background black, 224x224); averaged over frames where both masks are
    non-empty. In [0, 1]; 1 = the generated object looks like the reference object.
    """
    T = min(len(gen), len(ref), len(gen_masks), len(ref_masks))
    cg, ig = object_crops(gen[:T], gen_masks[:T])
    cr, ir = object_crops(ref[:T], ref_masks[:T])
    common = sorted(set(ig.tolist()) & set(ir.tolist()))
    if not common:
        return math.nan
    fg = dino(cg[[ig.tolist().index(t) for t in common]])
    fr = dino(cr[[ir.tolist().index(t) for t in common]])
    return float(np.maximum(0.0, (fg * fr).sum(1)).mean())
