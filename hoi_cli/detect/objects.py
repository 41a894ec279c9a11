"""One object box per frame: from a prompt (box or point) tracked both ways, or proposed automatically.

Modes:

- **prompt**: ``object_box`` (x0, y0, x1, y1) or ``object_point`` (x, y) on frame
  ``object_frame``. A point grows into a box with GrabCut seeded at the point (the hands'
  keypoints marked as background). The box is tracked with OpenCV's CSRT tracker forward to
  the end and backward to the start. Score: 1.0 on the prompt frame, the tracker's success
  (0.8) elsewhere, NaN box and 0 score where the tracker lost it.
- **auto** (no prompt): in every frame with a hand, GrabCut in a window around the grasp
  point (the centroid of the thumb, index and middle fingertips; the midpoint of both hands'
  grasp points when both hands are close) with the hands' skeletons marked background; the
  foreground component nearest the grasp point gives the box. Boxes are then smoothed with a
  temporal median and frames without hands are filled by CSRT tracking from the nearest
  proposed frame. Score 0.5 (proposal) or 0.4 (tracked).

Deterministic: GrabCut is seeded by ``cv2.setRNGSeed``.

Convention: boxes ``xyxy`` float32 in px of the frames given; missing = NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions import OPENPOSE_PARENTS, box_from_mask, empty_boxes


@dataclass
class ObjectConfig:
    object_box: tuple[float, float, float, float] | None = None
    object_point: tuple[float, float] | None = None
    object_frame: int = 0
    auto: bool = True  # propose a box automatically when there is no prompt
    grabcut_iters: int = 3
    window_scale: float = 2.0  # auto window side = window_scale * hand size
    median_window: int = 5


def prompt_from_mask_box(mask: np.ndarray, frame: int) -> tuple[tuple[float, float, float, float], int]:
    """A box prompt from a boolean mask (for measuring the prompt mode against references)."""
    b = box_from_mask(mask)
    return tuple(float(v) for v in b), int(frame)


def _make_tracker():
    import cv2

    if hasattr(cv2, "TrackerCSRT_create"):
        return cv2.TrackerCSRT_create()
    return cv2.legacy.TrackerCSRT_create()  # pragma: no cover


def _clip_box(box, W, H):
    x0, y0, x1, y1 = [float(v) for v in box]
    x0, x1 = np.clip([x0, x1], 0, W)
    y0, y1 = np.clip([y0, y1], 0, H)
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def track_box(frames, box, frame_index: int, *, both_ways: bool = True):
    """Track ``box`` (xyxy, on ``frame_index``) through ``frames`` with CSRT, forward and backward.

    Returns boxes (T,4) float32 (NaN where lost) and a success mask (T,) bool.
    """
    import cv2

    T = len(frames)
    H, W = frames[0].shape[:2]
    boxes = empty_boxes(T)
    ok = np.zeros(T, dtype=bool)
    b = _clip_box(box, W, H)
    if not (b[2] - b[0] >= 2 and b[3] - b[1] >= 2):
        return boxes, ok
    boxes[frame_index] = b
    ok[frame_index] = True
    cv2.setNumThreads(1)
    dirs = (1, -1) if both_ways else (1,)
    for d in dirs:
        tracker = _make_tracker()
        xywh = (int(round(b[0])), int(round(b[1])), int(round(b[2] - b[0])), int(round(b[3] - b[1])))
        tracker.init(cv2.cvtColor(frames[frame_index], cv2.COLOR_RGB2BGR), xywh)
        t = frame_index + d
        while 0 <= t < T:
            success, r = tracker.update(cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR))
            if success and r[2] > 0 and r[3] > 0:
                boxes[t] = _clip_box((r[0], r[1], r[0] + r[2], r[1] + r[3]), W, H)
                ok[t] = True
            t += d
    return boxes, ok


def box_from_point(frame: np.ndarray, point, hand_kp: np.ndarray | None = None, *, radius: float | None = None,
                   iters: int = 3) -> np.ndarray:
    """Grow a point prompt into a box: GrabCut seeded with a disc at the point (foreground) and
    the hands' skeletons (background); the foreground component holding the point."""
    import cv2

    H, W = frame.shape[:2]
    px, py = float(point[0]), float(point[1])
    r = radius or 0.04 * max(H, W)
    side = 0.5 * max(H, W)
    win = np.array([px - side / 2, py - side / 2, px + side / 2, py + side / 2])
    return _grabcut_box(frame, win, (px, py), r, hand_kp, iters)


def _grabcut_box(frame, win, seed_xy, seed_r, hand_kp, iters, interior=None) -> np.ndarray:
    import cv2

    H, W = frame.shape[:2]
    x0, y0 = int(max(0, np.floor(win[0]))), int(max(0, np.floor(win[1])))
    x1, y1 = int(min(W, np.ceil(win[2]))), int(min(H, np.ceil(win[3])))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return np.full(4, np.nan, dtype=np.float32)
    img = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
    mask = np.full(img.shape[:2], cv2.GC_PR_BGD if interior is None else interior, np.uint8)
    # border of the window: background
    mask[:2, :] = mask[-2:, :] = cv2.GC_BGD
    mask[:, :2] = mask[:, -2:] = cv2.GC_BGD
    sx, sy = seed_xy[0] - x0, seed_xy[1] - y0
    cv2.circle(mask, (int(sx), int(sy)), max(2, int(seed_r * 2)), cv2.GC_PR_FGD, -1)
    cv2.circle(mask, (int(sx), int(sy)), max(1, int(seed_r)), cv2.GC_FGD, -1)
    if hand_kp is not None:
        for kp in np.asarray(hand_kp).reshape(-1, 21, 2):
            if not np.isfinite(kp).all():
                continue
            size = max(np.ptp(kp[:, 0]), np.ptp(kp[:, 1]), 4.0)
            th = max(2, int(size * 0.12))
            for j, p in enumerate(OPENPOSE_PARENTS):
                if p < 0:
                    continue
                a = (int(kp[j, 0] - x0), int(kp[j, 1] - y0))
                b = (int(kp[p, 0] - x0), int(kp[p, 1] - y0))
                cv2.line(mask, a, b, cv2.GC_BGD, th)
    cv2.setRNGSeed(0)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, mask, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return np.full(4, np.nan, dtype=np.float32)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    n, lab, stats, cent = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.full(4, np.nan, dtype=np.float32)
    iy, ix = int(np.clip(sy, 0, fg.shape[0] - 1)), int(np.clip(sx, 0, fg.shape[1] - 1))
    k = lab[iy, ix]
    if k == 0:  # nearest component
        d = np.hypot(cent[1:, 0] - sx, cent[1:, 1] - sy) / np.sqrt(stats[1:, 4])
        k = 1 + int(np.argmin(d))
    s = stats[k]
    return np.array([s[0] + x0, s[1] + y0, s[0] + s[2] + x0, s[1] + s[3] + y0], dtype=np.float32)


def grasp_point(kp: np.ndarray) -> np.ndarray:
    """Centroid of the thumb, index and middle fingertips of one hand's (21,2) keypoints."""
    return kp[[4, 8, 12]].mean(axis=0)


def propose_object_boxes(frames, hand_keypoints: np.ndarray, cfg: ObjectConfig) -> tuple[np.ndarray, np.ndarray]:
    """Automatic per-frame object boxes near the hands (see module docstring)."""
    T = len(frames)
    boxes = empty_boxes(T)
    for t in range(T):
        kps = [hand_keypoints[t, s, :, :2] for s in range(2) if np.isfinite(hand_keypoints[t, s, :, :2]).all()]
        if not kps:
            continue
        sizes = [max(np.ptp(k[:, 0]), np.ptp(k[:, 1]), 8.0) for k in kps]
        gps = [grasp_point(k) for k in kps]
        size = max(sizes)
        if len(kps) == 2 and np.hypot(*(gps[0] - gps[1])) < 3.0 * size:
            seed = (gps[0] + gps[1]) / 2
            half = max(cfg.window_scale * size, abs(gps[0][0] - gps[1][0]) + size) / 2
        else:
            i = int(np.argmax(sizes))
            seed = gps[i]
            half = cfg.window_scale * size / 2
        win = np.array([seed[0] - half, seed[1] - half, seed[0] + half, seed[1] + half])
        boxes[t] = _grabcut_box(frames[t], win, seed, 0.12 * size, np.stack(kps), cfg.grabcut_iters,
                                interior=3)  # cv2.GC_PR_FGD: the window is probably object
    return boxes, np.isfinite(boxes).all(axis=1)


def _temporal_median(boxes: np.ndarray, k: int) -> np.ndarray:
    out = boxes.copy()
    T = len(boxes)
    h = k // 2
    for t in range(T):
        if not np.isfinite(boxes[t]).all():
            continue
        w = boxes[max(0, t - h): t + h + 1]
        w = w[np.isfinite(w).all(axis=1)]
        out[t] = np.median(w, axis=0)
    return out


def detect_objects(frames, detections: dict | None, cfg: ObjectConfig | None = None) -> dict[str, np.ndarray]:
    """``object_boxes (T,4)``, ``object_score (T,)`` and ``object_mode`` for ``frames``."""
    cfg = cfg or ObjectConfig()
    frames = [np.ascontiguousarray(f[..., :3]) for f in frames]
    T = len(frames)
    boxes = empty_boxes(T)
    score = np.zeros(T, dtype=np.float32)
    kp = detections["hand_keypoints"] if detections is not None else np.full((T, 2, 21, 3), np.nan)
    mode = "none"
    if T == 0:
        return {"object_boxes": boxes, "object_score": score, "object_mode": mode}
    if cfg.object_box is not None or cfg.object_point is not None:
        f = int(np.clip(cfg.object_frame, 0, T - 1))
        if cfg.object_box is not None:
            seed, mode = np.asarray(cfg.object_box, dtype=np.float32), "prompt_box"
        else:
            seed = box_from_point(frames[f], cfg.object_point, kp[f, :, :, :2], iters=cfg.grabcut_iters)
            mode = "prompt_point"
        if np.isfinite(seed).all():
            boxes, ok = track_box(frames, seed, f)
            score = np.where(ok, 0.8, 0.0).astype(np.float32)
            score[f] = 1.0
    elif cfg.auto:
        mode = "auto"
        prop, ok = propose_object_boxes(frames, kp, cfg)
        prop = _temporal_median(prop, cfg.median_window)
        boxes = prop
        score = np.where(ok, 0.5, 0.0).astype(np.float32)
        if ok.any() and not ok.all():
            # fill frames without a proposal by tracking from the nearest proposed frame
            idx = np.nonzero(ok)[0]
            first, last = idx[0], idx[-1]
            tb, tok = track_box(frames, prop[first], int(first))
            for t in range(0, first):
                if tok[t]:
                    boxes[t], score[t] = tb[t], 0.4
            tb, tok = track_box(frames, prop[last], int(last))
            for t in range(last + 1, T):
                if tok[t]:
                    boxes[t], score[t] = tb[t], 0.4
            for t in range(first, last):
                if not np.isfinite(boxes[t]).all():  # interior gap: linear interpolation
                    a = idx[idx < t].max()
                    b = idx[idx > t].min()
                    w = (t - a) / (b - a)
                    boxes[t], score[t] = (1 - w) * prop[a] + w * prop[b], 0.4
    return {"object_boxes": boxes.astype(np.float32), "object_score": score.astype(np.float32), "object_mode": mode}
