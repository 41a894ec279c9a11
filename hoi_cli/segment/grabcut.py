"""Weight-free object segmentation: GrabCut seeded from a box, run on a small ROI, through time.

Convention:
    Images are RGB uint8 ``(H, W, 3)``; masks bool ``(H, W)``; boxes ``xyxy`` float pixels at
    the image's resolution, NaN = missing (see `hoi_cli.conventions`).

How one frame is segmented (`grabcut_box`):

1. ROI = the box grown by ``margin`` (a fraction of its size, at least ``min_margin_px``),
   clipped to the image; the ROI is downscaled so its longest side is at most ``max_side``
   px (GrabCut's cost grows with the pixel count; at 96-128 px it takes a few ms).
2. Seeds: outside the box = sure background, except a band of ``box_soft_frac`` just
   outside it (probable background; the mask may reach into it); inside the box = probable
   foreground; the hand region (``bg_mask``, e.g. the rendered hand mesh) = sure
   background, except its outer band of ``hand_soft_px`` (probable background: the
   silhouette overlaps the object's edge); where a previous mask is given (``prior``), its
   pixels inside the box stay probable foreground and the rest of the box becomes probable
   background, which starts GrabCut's colour models from a much better split than the box.
   Where a coarse object mask is given (``seed_mask``, 01_detect's ``object_seed``), its core
   (shrunk by ``seed_sure_frac`` x the box's short side) inside the box is sure foreground.
3. ``iterations`` rounds of GrabCut. The colour models (GMMs) can be carried over from the
   previous frame (``models``), which skips the k-means initialisation.
4. The result is upsampled to the ROI, and cleaned: only connected components that touch
   the prior or are at least ``keep_frac`` of the largest are kept; holes are filled.
5. Where the mask runs into a box side that the object seed also reaches (the box cuts the
   object), that side moves out and GrabCut runs again from the result (``grow_frac``).

Through time (`segment_sequence`): each frame is seeded by the previous frame's mask moved
by the box's motion (not when the box's area changed by more than ``max_box_change``: the
old mask then describes another region and would lock in). A frame whose mask collapses
(less than ``collapse_frac`` of its box) is run again from scratch (no prior, no carried
colour models); if it still collapses, it takes the nearest good frame's mask (within
``collapse_fill`` frames) moved by the box motion. Then a per-pixel majority vote over a
window of ``vote`` frames (centred) removes single-frame flicker. GrabCut's k-means
start is seeded per call (`cv2.setRNGSeed`), so results do not depend on what ran before.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from ..params import typed


@typed
class GrabCutParams:
    max_side: int = 112
    """The ROI's longest side after downscaling for GrabCut, px (0 = full resolution)."""
    iterations: int = 3
    """GrabCut iterations per frame."""
    margin: float = 0.15
    """ROI = the box grown by this fraction of its size per side..."""
    min_margin_px: int = 8
    """...and by at least this many pixels."""
    use_prior: bool = True
    """Seed each frame with the previous frame's mask (temporal propagation)."""
    reuse_models: bool = True
    """Carry GrabCut's colour models over from the previous frame."""
    keep_frac: float = 0.2
    """Keep connected components of at least this fraction of the largest one."""
    vote: int = 3
    """Temporal majority-vote window, frames (1 = off)."""
    color_space: Literal["rgb", "lab"] = "rgb"
    """The colour space GrabCut models."""
    hand_erode_px: int = 2
    """Shrink the hand region by this many px before marking it sure background. 03_segment: -1 =
    the hand is not background for GrabCut; hand pixels are only removed from the object afterwards.
    Measured on InterDyn: with detector boxes (loose) 2 is far better (7 clips: 0.47 vs 0.37); with
    oracle boxes -1 is better (0.82 vs 0.78), since the coarse 02_hands silhouettes overlap the object."""
    hand_soft_px: int = 4
    """The hand region's outer band this wide (after erosion) is only probable background: the mesh
    silhouette overlaps the object's edge (fingers behind it), so GrabCut may give those pixels to the
    object by colour. Wider bands help with oracle boxes but let loose detector boxes absorb the hand
    (InterDyn, 12 clips: 4 px +0.002 both; all soft: oracle +0.014, detector -0.024)."""
    max_box_change: float = 1.5
    """Drop the prior (and carried models) when the box's area changes by more than this factor from
    the previous frame's (0 = never drop): the previous mask then describes a different region (the
    box grew from an object part to the whole object, or jumped), and seeding from it locks in."""
    box_soft_frac: float = 0.1
    """A band of this fraction of the box's size just outside it is probable background (not sure)
    and the mask may reach into it. Why: a box that cuts slightly into the object puts object colours
    into the sure background, and GrabCut then drops the object entirely (detector boxes on InterDyn:
    object IoU 0.61 -> 0.68; oracle boxes unchanged)."""
    seed_sure_frac: float = 0.08
    """Object seed (01_detect's coarse object mask, `hoi_cli.detect.objects`): the seed shrunk by this
    fraction of the box's short side is sure foreground (< 0 = seed unused). Why: a loose box lets
    GrabCut pick the background inside it; pixels the detector saw as the object anchor the object.
    Only the shrunk core, and only as a foreground anchor: seeding "probable object inside the seed,
    probable background in the rest of the box" locks in the seed's low recall (InterDyn, 12 clips,
    detector boxes: mean object IoU 0.679 -> 0.631 that way, 0.723 with a core at 0.08; 0.04-0.1 is
    a plateau, 0.15 erodes thin objects' seeds away)."""
    grow_frac: float = 0.3
    """Growth past a box that cuts the object (0 = off): where the mask covers at least ``grow_touch``
    of a box side's length, that side moves out by this fraction of the box's size and GrabCut runs
    again from the result and its colour models (the new strip only probable background), up to
    ``grow_rounds`` times. InterDyn, 12 clips, detector boxes: mean object IoU 0.734 -> 0.744 (cup
    lifted out of its box 0.83 -> 0.91, mug 0.67 -> 0.71, glasses case 0.82 -> 0.84; book held at one
    end 0.88 -> 0.85, the mask follows the forearm); a side touch of 0.25-0.4 and growth of 0.2-0.5
    give similar means. Oracle (tight) boxes without seeds: unchanged 0.773."""
    grow_touch: float = 0.3
    """A box side grows when the mask covers at least this fraction of its length."""
    grow_need_seed: bool = True
    """A side grows only where the object seed also reaches it (within ``seed_sure_frac`` x the short
    side), i.e. where the detector saw the object at that side; without a seed (a user's tight box)
    nothing grows, since every object touches the sides of its own tight box (oracle boxes with this
    off: 0.779, but one clip 0.89 -> 0.86)."""
    grow_rounds: int = 2
    """At most this many growth steps per frame."""
    collapse_frac: float = 0.1
    """Collapse guard (0 = off): a mask covering less than this fraction of its box is GrabCut's
    all-background minimum, not an answer; the frame is run again without the previous frame's mask
    and colour models (a two-coloured ball turning its other side to the camera: carried models call
    the new side background). InterDyn, 12 clips, detector boxes: mean object IoU 0.744 -> 0.747
    (retry) -> 0.755 (+ fill); ball 208810 0.73 -> 0.77, dark box 33576 0.50 -> 0.60; no clip lost."""
    collapse_fill: int = 6
    """A frame still collapsed after the retry (a dark box under a dark hand in front of dark
    shadows: no colour split at all) takes the mask of the nearest frame that did not collapse, at
    most this many frames away, moved by the box motion, inside the box and off the hand (0 = leave
    it empty)."""
    max_hole_frac: float | None = None
    """Fill only holes under this fraction of the mask's area (None = all holes)."""


def _int_box(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        return None
    x0, y0 = int(np.clip(np.floor(b[0]), 0, width)), int(np.clip(np.floor(b[1]), 0, height))
    x1, y1 = int(np.clip(np.ceil(b[2]), 0, width)), int(np.clip(np.ceil(b[3]), 0, height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def fill_holes(mask: np.ndarray, max_frac: float | None = None) -> np.ndarray:
    """Fill the holes of a bool mask (background regions not connected to the border); with
    ``max_frac`` only holes smaller than that fraction of the mask's area (a mug's handle stays open)."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = m
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    if max_frac is not None and holes.any():
        n, lab, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
        small = np.concatenate([[False], stats[1:, cv2.CC_STAT_AREA] < max_frac * max(int(mask.sum()), 1)])
        holes = small[lab]
    return mask | holes


def clean_mask(mask: np.ndarray, keep_frac: float = 0.2, prior: np.ndarray | None = None,
               max_hole_frac: float | None = None) -> np.ndarray:
    """Keep the large connected components (and those touching ``prior``), fill holes (those
    under ``max_hole_frac`` of the area, if given)."""
    m = mask.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return mask.astype(bool) if max_hole_frac is None else fill_holes(mask.astype(bool), max_hole_frac)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= keep_frac * areas.max()
    if prior is not None and prior.any():
        touching = np.unique(labels[prior & (labels > 0)])
        # a component touching the prior survives only if it is not a speck
        keep[touching - 1] |= areas[touching - 1] >= 0.05 * areas.max()
    lut = np.concatenate([[False], keep])
    return fill_holes(lut[labels], max_hole_frac)



def _run_grabcut(small: np.ndarray, seed: np.ndarray, models, iterations: int):
    """GrabCut from ``seed`` (modified copy returned) and optional carried-over models; None on failure."""
    seed = seed.copy()
    # GrabCut's k-means initialisation draws from OpenCV's global RNG: seed it per call so a
    # frame's result does not depend on what ran before it (the hand refinement, other frames)
    cv2.setRNGSeed(0)
    if models is not None:
        bgd, fgd = models[0].copy(), models[1].copy()
        try:
            cv2.grabCut(small, seed, None, bgd, fgd, max(1, iterations), cv2.GC_EVAL)
            return seed, (bgd, fgd)
        except cv2.error:  # a degenerate carried-over model: start afresh
            pass
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, seed, None, bgd, fgd, max(1, iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    return seed, (bgd, fgd)


def grabcut_box(image: np.ndarray, box, *, params: GrabCutParams | None = None,
                bg_mask: np.ndarray | None = None, prior: np.ndarray | None = None,
                models: tuple[np.ndarray, np.ndarray] | None = None, seed_mask: np.ndarray | None = None,
                _grow: int = -1) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Segment the object inside ``box`` in one RGB image (``seed_mask``: a coarse object mask
    whose core is sure foreground, see ``GrabCutParams.seed_sure_frac``).

    Returns ``(mask (H, W) bool, models)``; ``models`` are GrabCut's colour models to pass to
    the next frame (None where nothing was segmented).
    """
    p = params or GrabCutParams()
    H, W = image.shape[:2]
    out = np.zeros((H, W), bool)
    ib = _int_box(box, W, H)
    if ib is None:
        return out, None
    x0, y0, x1, y1 = ib
    bw, bh = x1 - x0, y1 - y0
    mx = max(p.min_margin_px, int(round(p.margin * bw)))
    my = max(p.min_margin_px, int(round(p.margin * bh)))
    rx0, ry0, rx1, ry1 = max(0, x0 - mx), max(0, y0 - my), min(W, x1 + mx), min(H, y1 + my)
    rw, rh = rx1 - rx0, ry1 - ry0
    scale = 1.0
    if p.max_side and max(bw, bh) > p.max_side:
        scale = p.max_side / max(bw, bh)
    sw, sh = max(4, int(round(rw * scale))), max(4, int(round(rh * scale)))
    crop = image[ry0:ry1, rx0:rx1]
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else crop.copy()
    small = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_RGB2Lab if p.color_space == "lab" else cv2.COLOR_RGB2BGR))
    sx, sy = sw / rw, sh / rh

    seed = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    # a band just outside the box is only probable background (see box_soft_frac)
    # (each side's band at most half the margin there, so some sure background always remains:
    # a box reaching the image border has no margin on that side)
    ex, ey = p.box_soft_frac * bw, p.box_soft_frac * bh
    soft = (int(min(ex, (x0 - rx0) / 2)), int(min(ey, (y0 - ry0) / 2)),
            int(min(ex, (rx1 - x1) / 2)), int(min(ey, (ry1 - y1) / 2)))
    if any(soft):
        seed[int((y0 - soft[1] - ry0) * sy):int(np.ceil((y1 + soft[3] - ry0) * sy)),
             int((x0 - soft[0] - rx0) * sx):int(np.ceil((x1 + soft[2] - rx0) * sx))] = cv2.GC_PR_BGD
    bx0, by0 = int(np.floor((x0 - rx0) * sx)), int(np.floor((y0 - ry0) * sy))
    bx1, by1 = int(np.ceil((x1 - rx0) * sx)), int(np.ceil((y1 - ry0) * sy))
    seed[by0:by1, bx0:bx1] = cv2.GC_PR_FGD

    def _small(m: np.ndarray) -> np.ndarray:
        c = m[ry0:ry1, rx0:rx1].astype(np.uint8)
        if scale < 1:
            c = cv2.resize(c * 255, (sw, sh), interpolation=cv2.INTER_AREA) >= 128
        return c.astype(bool)

    if bg_mask is not None and bg_mask.any():
        hb = bg_mask
        if p.hand_erode_px > 0:
            k = 2 * p.hand_erode_px + 1
            hb = cv2.erode(bg_mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        if p.hand_soft_px > 0:
            k = 2 * p.hand_soft_px + 1
            core = cv2.erode(hb.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
            seed[_small(hb & ~core) & (seed == cv2.GC_PR_FGD)] = cv2.GC_PR_BGD
            hb = core
        seed[_small(hb)] = cv2.GC_BGD
    fg_seed = (seed == cv2.GC_PR_FGD) | (seed == cv2.GC_FGD)
    if fg_seed.sum() < 4 or (~fg_seed).sum() < 4:
        return out, None

    mdl = None
    if prior is not None and prior.any():
        pr = _small(prior)
        if (pr & fg_seed).sum() >= 8:
            seed[fg_seed & ~pr] = cv2.GC_PR_BGD
            mdl = models if p.reuse_models else None
    if p.seed_sure_frac >= 0 and seed_mask is not None and seed_mask.any():
        # the object seed's core: sure object (see GrabCutParams.seed_sure_frac)
        k = 2 * max(1, int(round(p.seed_sure_frac * min(bw, bh)))) + 1
        core = cv2.erode(seed_mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        seed[_small(core) & fg_seed] = cv2.GC_FGD
    res = _run_grabcut(small, seed, mdl, p.iterations)
    if res is None:
        return out, None
    seed, (bgd, fgd) = res
    fg = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg * 255, (rw, rh), interpolation=cv2.INTER_LINEAR) >= 128
    out[ry0:ry1, rx0:rx1] = fg.astype(bool)
    # never outside the box (and its soft band)
    boxmask = np.zeros((H, W), bool)
    boxmask[y0 - soft[1]:y1 + soft[3], x0 - soft[0]:x1 + soft[2]] = True
    out &= boxmask
    out = clean_mask(out, p.keep_frac, None if prior is None else prior & out, p.max_hole_frac)
    rounds = p.grow_rounds if _grow < 0 else _grow
    if rounds > 0 and p.grow_frac > 0 and out.any():
        grown = _grown_box(out, (x0, y0, x1, y1), seed_mask, p, W, H)
        if grown is not None:
            return grabcut_box(image, grown, params=p, bg_mask=bg_mask, prior=out, models=(bgd, fgd),
                               seed_mask=seed_mask, _grow=rounds - 1)
    return out, (bgd, fgd)


def _grown_box(mask: np.ndarray, ib, seed_mask, p: GrabCutParams, W: int, H: int):
    """The box moved out on the sides the mask runs into (see ``GrabCutParams.grow_frac``); None if none."""
    x0, y0, x1, y1 = ib
    bw, bh = x1 - x0, y1 - y0
    near = max(1, int(round(p.seed_sure_frac * min(bw, bh)))) if p.seed_sure_frac >= 0 else 1
    # per side: the mask's row/column at the box's edge, and the seed's strip just inside it
    sides = [(mask[y0, x0:x1], None if seed_mask is None else seed_mask[y0:y0 + near, x0:x1], 1, -bh),
             (mask[y1 - 1, x0:x1], None if seed_mask is None else seed_mask[y1 - near:y1, x0:x1], 3, bh),
             (mask[y0:y1, x0], None if seed_mask is None else seed_mask[y0:y1, x0:x0 + near], 0, -bw),
             (mask[y0:y1, x1 - 1], None if seed_mask is None else seed_mask[y0:y1, x1 - near:x1], 2, bw)]
    box = [float(x0), float(y0), float(x1), float(y1)]
    limit = (W, H, W, H)
    grew = False
    for edge, seed_strip, k, size in sides:
        if edge.mean() < p.grow_touch:
            continue
        if p.grow_need_seed and (seed_strip is None or not seed_strip.any()):
            continue
        nb = float(np.clip(box[k] + np.sign(size) * p.grow_frac * abs(size), 0, limit[k]))
        if nb != box[k]:
            box[k], grew = nb, True
    return np.array(box) if grew else None


def shift_mask(mask: np.ndarray, dx: float, dy: float, sx: float = 1.0, sy: float = 1.0,
               cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    """Move a mask by the box motion: scale by (sx, sy) about (cx, cy), then translate."""
    A = np.array([[sx, 0, cx - sx * cx + dx], [0, sy, cy - sy * cy + dy]], np.float32)
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), A, (w, h), flags=cv2.INTER_NEAREST).astype(bool)


def _box_motion(prev_box, box) -> tuple[float, float, float, float, float, float]:
    pb, b = np.asarray(prev_box, float), np.asarray(box, float)
    pcx, pcy = (pb[0] + pb[2]) / 2, (pb[1] + pb[3]) / 2
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    sx = np.clip((b[2] - b[0]) / max(pb[2] - pb[0], 1e-3), 0.5, 2.0)
    sy = np.clip((b[3] - b[1]) / max(pb[3] - pb[1], 1e-3), 0.5, 2.0)
    return cx - pcx, cy - pcy, sx, sy, pcx, pcy


def temporal_vote(masks: np.ndarray, window: int = 3) -> np.ndarray:
    """Per-pixel majority over a centred window of ``window`` frames (edges use what exists)."""
    if window <= 1 or len(masks) < 2:
        return masks.astype(bool)
    T = len(masks)
    half = window // 2
    m = masks.astype(np.uint8)
    csum = np.concatenate([np.zeros((1,) + m.shape[1:], np.int32), np.cumsum(m, axis=0, dtype=np.int32)])
    out = np.empty(masks.shape, bool)
    for t in range(T):
        a, b = max(0, t - half), min(T, t + half + 1)
        n = b - a
        out[t] = (csum[b] - csum[a]) * 2 > n
        if n % 2 == 0:  # a tie keeps the frame's own value
            out[t] |= ((csum[b] - csum[a]) * 2 == n) & masks[t].astype(bool)
    return out


def flicker(masks: np.ndarray) -> float:
    """Mean ``1 - IoU`` between consecutive masks (frames where both are empty are skipped)."""
    vals = []
    for a, b in zip(masks[:-1], masks[1:]):
        u = np.logical_or(a, b).sum()
        if u:
            vals.append(1.0 - np.logical_and(a, b).sum() / u)
    return float(np.mean(vals)) if vals else 0.0


def fill_missing_boxes(boxes: np.ndarray, max_gap: int = 6) -> np.ndarray:
    """Linearly interpolate NaN boxes across gaps of at most ``max_gap`` frames; hold at ends."""
    b = np.array(boxes, dtype=np.float64)
    ok = np.all(np.isfinite(b), axis=1)
    if ok.sum() == 0:
        return b
    idx = np.nonzero(ok)[0]
    out = b.copy()
    for t in np.nonzero(~ok)[0]:
        before, after = idx[idx < t], idx[idx > t]
        if len(before) and len(after):
            t0, t1 = before[-1], after[0]
            if t1 - t0 - 1 <= max_gap:
                w = (t - t0) / (t1 - t0)
                out[t] = (1 - w) * b[t0] + w * b[t1]
        elif len(before) and t - before[-1] <= max_gap:
            out[t] = b[before[-1]]
        elif len(after) and after[0] - t <= max_gap:
            out[t] = b[after[0]]
    return out


def segment_sequence(frames: np.ndarray, boxes: np.ndarray, *, hand_masks: np.ndarray | None = None,
                     params: GrabCutParams | None = None, progress=None, seeds: np.ndarray | None = None) -> np.ndarray:
    """Object masks ``(T, H, W)`` bool for frames ``(T, H, W, 3)`` and boxes ``(T, 4)`` (NaN = none);
    ``seeds`` ``(T, H, W)`` bool: coarse object masks (see `grabcut_box`), optional."""
    p = params or GrabCutParams()
    T, H, W = frames.shape[:3]
    masks = np.zeros((T, H, W), bool)
    collapsed = np.zeros(T, bool)
    prev_mask, prev_box, models = None, None, None
    for t in range(T):
        box = boxes[t]
        ib = _int_box(box, W, H)
        if ib is None:
            prev_mask, prev_box, models = None, None, None
            if progress:
                progress(t + 1, T)
            continue
        prior = None
        if prev_mask is not None and p.max_box_change > 0:
            area = lambda b: max(b[2] - b[0], 1e-3) * max(b[3] - b[1], 1e-3)  # noqa: E731
            ratio = area(box) / area(prev_box)
            if not (1.0 / p.max_box_change <= ratio <= p.max_box_change):
                prev_mask, prev_box, models = None, None, None
        if p.use_prior and prev_mask is not None and prev_mask.any():
            prior = shift_mask(prev_mask, *_box_motion(prev_box, box))
        hand_t = None if hand_masks is None else hand_masks[t]
        seed_t = None if seeds is None else seeds[t]
        m, models_new = grabcut_box(frames[t], box, params=p, bg_mask=hand_t, prior=prior,
                                    models=models if p.reuse_models else None, seed_mask=seed_t)
        min_area = p.collapse_frac * (ib[2] - ib[0]) * (ib[3] - ib[1])
        if m.sum() < min_area and (prior is not None or models is not None):
            m, models_new = grabcut_box(frames[t], box, params=p, bg_mask=hand_t, seed_mask=seed_t)  # afresh
        collapsed[t] = m.sum() < min_area
        masks[t] = m
        if m.any() and not collapsed[t]:
            prev_mask, prev_box, models = m, box, models_new
        else:
            prev_mask, prev_box, models = None, None, None
        if progress:
            progress(t + 1, T)
    if p.collapse_fill > 0:
        _fill_collapsed(masks, collapsed, boxes, hand_masks, p.collapse_fill)
    return temporal_vote(masks, p.vote)


def _fill_collapsed(masks: np.ndarray, collapsed: np.ndarray, boxes: np.ndarray, hand_masks, max_gap: int) -> None:
    """In place: each collapsed frame takes the mask of the nearest non-collapsed, non-empty frame
    at most ``max_gap`` frames away, moved and scaled by the box motion between the two, kept
    inside its own box and off its hand mask."""
    T, H, W = masks.shape
    good = np.flatnonzero(~collapsed & masks.reshape(T, -1).any(axis=1))
    if not len(good):
        return
    for t in np.flatnonzero(collapsed):
        g = int(good[np.argmin(np.abs(good - t))])
        if abs(g - t) > max_gap:
            continue
        x0, y0, x1, y1 = _int_box(boxes[t], W, H)
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        if hand_masks is not None:
            inside &= ~hand_masks[t]
        masks[t] = shift_mask(masks[g], *_box_motion(boxes[g], boxes[t])) & inside
