"""Following one hand through a clip: box tracking by optical flow, with crop re-detection.

Used by `hoi_cli.detect.hands` for hand prompts (a box the user drew is followed through the
whole clip, both directions) and to carry an automatically found hand into the frames where
the detector loses it. One step, from frame t-1 to frame t:

1. predict the box: pyramidal Lucas-Kanade flow (OpenCV) of a grid of points inside the box,
   kept where the forward-backward error is small (median-flow tracking: median shift, median
   ratio of pairwise distances for the scale);
2. re-detect: a detection given for frame t (``anchors``: what the full-frame passes found) that
   overlaps the predicted box is taken as it is; else the landmark model runs in a crop around
   the predicted box (`redetect_in_crop`);
3. where neither finds the hand, the predicted box is kept without keypoints ("box-only"),
   with a confidence that decays with each such frame.

The follow stops where the flow loses the box (too few consistent points), the box leaves the
frame (less than ``min_visible`` of it inside), after ``max_box_only`` box-only frames in a row,
or where a box-only box no longer looks like the hand: a colour model of the hand (hue x
saturation histogram of the inner 60% of its box) learnt from its last frame with keypoints (or
the start box) and adapted to each box-only box (rate ``colour_adapt``: exposure and pose drift
slowly, as in InterDyn 176110, where a fixed model lost the hand), Bhattacharyya distance >
``max_colour_distance``. The 0.6 was chosen on the InterDyn (tuning) masks: it keeps 97% of
pairs of one hand's boxes 6 frames apart and stops 93% of same-sized boxes on the background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TrackStep:
    """One frame of a followed hand: ``det`` (a `_Det` with keypoints) or a box only."""

    box: np.ndarray  # xyxy px
    score: float  # presence (keypoints) or track confidence (box-only), in (0, 1]
    det: object | None = None


@dataclass
class FollowConfig:
    grid: int = 10  # grid x grid flow points inside the box
    max_fb_error: float = 1.5  # px: forward-backward error of a kept point (also <= median)
    min_points: int = 8  # fewer consistent points: the flow lost the box
    min_visible: float = 0.3  # fraction of the box inside the frame to go on
    min_side: float = 6.0  # px
    max_box_only: int = 10 ** 9  # box-only frames in a row before stopping
    decay: float = 0.95  # box-only confidence: quality * decay ** (frames since keypoints)
    max_shift: float = 0.75  # re-detection: centre within this many box sizes of the prediction
    min_iou: float = 0.1  # ... or overlapping it by this IoU
    max_scale_step: float = 1.25  # scale change per frame, clamped
    max_colour_distance: float = 0.6  # box-only: Bhattacharyya distance to the hand's colour model
    colour_adapt: float = 0.3  # ... which follows the box-only boxes at this rate


def colour_model(frame: np.ndarray, box) -> np.ndarray | None:
    """Hue x saturation histogram (16 x 8, L1-normalised) of the inner 60% of ``box``."""
    import cv2

    H, W = frame.shape[:2]
    x0, y0, x1, y1 = [float(v) for v in box]
    mx, my = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
    x0, y0 = int(max(x0 + mx, 0)), int(max(y0 + my, 0))
    x1, y1 = int(min(x1 - mx, W)), int(min(y1 - my, H))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1, :3]), cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(h, h, 1, 0, cv2.NORM_L1)


def colour_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    import cv2

    if a is None or b is None:
        return 0.0  # nothing to compare: no evidence against
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def gray_frames(frames) -> list[np.ndarray]:
    import cv2

    return [cv2.cvtColor(np.ascontiguousarray(f[..., :3]), cv2.COLOR_RGB2GRAY) for f in frames]


def flow_box(prev_gray: np.ndarray, gray: np.ndarray, box: np.ndarray, cfg: FollowConfig) -> tuple[np.ndarray | None, float]:
    """Median-flow step of ``box`` from ``prev_gray`` to ``gray``: (new box or None, quality),
    quality = fraction of the grid points that were kept."""
    import cv2

    H, W = gray.shape
    x0, y0 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
    x1, y1 = min(float(box[2]), W - 1.0), min(float(box[3]), H - 1.0)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None, 0.0
    g = cfg.grid
    mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    xs, ys = np.meshgrid(np.linspace(x0 + mx, x1 - mx, g), np.linspace(y0 + my, y1 - my, g))
    p0 = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)[:, None]
    lk = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, p0, None, **lk)
    p0r, st2, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, p1, None, **lk)
    fb = np.linalg.norm((p0 - p0r)[:, 0], axis=1)
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1) & np.isfinite(fb)
    if ok.sum() < cfg.min_points:
        return None, 0.0
    ok &= fb <= min(cfg.max_fb_error, max(float(np.median(fb[ok])), 0.5))
    if ok.sum() < cfg.min_points:
        return None, 0.0
    a, b = p0[ok, 0].astype(np.float64), p1[ok, 0].astype(np.float64)
    shift = np.median(b - a, axis=0)
    # scale: median ratio of pairwise distances (a deterministic subset of pairs)
    i, j = np.triu_indices(len(a), 1)
    step = max(1, len(i) // 400)
    i, j = i[::step], j[::step]
    da = np.linalg.norm(a[i] - a[j], axis=1)
    db = np.linalg.norm(b[i] - b[j], axis=1)
    keep = da > 2
    scale = float(np.median(db[keep] / da[keep])) if keep.any() else 1.0
    scale = float(np.clip(scale, 1 / cfg.max_scale_step, cfg.max_scale_step))
    c = (np.asarray(box[:2], float) + np.asarray(box[2:], float)) / 2 + shift
    half = (np.asarray(box[2:], float) - np.asarray(box[:2], float)) / 2 * scale
    return np.concatenate([c - half, c + half]), float(ok.mean())


def visible_fraction(box: np.ndarray, W: int, H: int) -> float:
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return 0.0
    ix = max(0.0, min(box[2], W) - max(box[0], 0.0))
    iy = max(0.0, min(box[3], H) - max(box[1], 0.0))
    return float(ix * iy / (w * h))


def clip_box(box: np.ndarray, W: int, H: int) -> np.ndarray:
    return np.array([max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(W)), min(box[3], float(H))])


def consistent(det_box: np.ndarray, pred: np.ndarray, cfg: FollowConfig) -> bool:
    """A re-detection belongs to the followed hand: near the predicted box."""
    from ..conventions import box_iou

    size = max(pred[2] - pred[0], pred[3] - pred[1], 1.0)
    shift = np.hypot(*(((det_box[:2] + det_box[2:]) - (pred[:2] + pred[2:])) / 2)) / size
    return bool(box_iou(det_box, pred) >= cfg.min_iou or shift <= cfg.max_shift)


def follow(frames, grays, start: int, start_box: np.ndarray, start_kp, direction: int, redetect, cfg: FollowConfig,
           stop_at: int | None = None, blocked=None) -> dict[int, TrackStep]:
    """Follow a hand from frame ``start`` (box ``start_box``, keypoints ``start_kp`` or None)
    one frame at a time in ``direction`` (+1 / -1) until lost or ``stop_at`` (exclusive).

    ``redetect(t, pred_box, seed_kp) -> _Det | None`` finds the hand near the predicted box in
    frame t (anchors, then crop re-detection); ``blocked(t, box) -> bool`` stops the follow
    where the box runs into another hand. Returns {t: TrackStep} for the frames reached (not
    ``start``)."""
    T = len(frames)
    H, W = grays[0].shape
    end = stop_at if stop_at is not None else (T if direction > 0 else -1)
    box = np.asarray(start_box, float)
    kp = start_kp
    out: dict[int, TrackStep] = {}
    run, quality = 0, 1.0
    model = colour_model(frames[start], box)
    t = start + direction
    while (t < end if direction > 0 else t > end):
        pred, q = flow_box(grays[t - direction], grays[t], box, cfg)
        det = redetect(t, pred if pred is not None else box, kp)
        if det is not None and blocked is not None and blocked(t, det.box):
            det = None  # the other hand: keep the flow's box (if it is free)
        if det is not None:
            box, kp, run = np.asarray(det.box, float), det.kp, 0
            fresh = colour_model(frames[t], box)
            model = fresh if fresh is not None else model
            out[t] = TrackStep(box.copy(), float(det.score), det)
        else:
            if pred is None:
                break
            run += 1
            quality = 0.5 * quality + 0.5 * q
            if (run > cfg.max_box_only or visible_fraction(pred, W, H) < cfg.min_visible
                    or min(pred[2] - pred[0], pred[3] - pred[1]) < cfg.min_side):
                break
            if blocked is not None and blocked(t, pred):
                break
            here = colour_model(frames[t], pred)
            if colour_distance(model, here) > cfg.max_colour_distance:
                break  # the box has jumped off the hand (or the hand has left)
            if here is not None and model is not None:  # adapt: light and pose change gradually
                model = (1 - cfg.colour_adapt) * model + cfg.colour_adapt * here
            box = pred
            score = float(np.clip(quality * cfg.decay ** run, 1e-3, 1.0))
            out[t] = TrackStep(clip_box(box, W, H), score, None)
        t += direction
    return out
