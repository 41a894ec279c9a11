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
    # box-only frames after a weak anchor (keypoints scored below this; a prompt scores 1) only
    # where the box moves by >= weak_anchor_motion anchor box sizes per frame, as a hand does
    weak_anchor: float = 0.8
    weak_anchor_motion: float = 0.02
    # two hands followed together: a box-only hand whose last box the other hand's box covers
    # by this fraction is hidden behind it, and held in place
    hide_cover: float = 0.3


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


class _Follower:
    """One followed hand stepping through frames in one direction (state of `follow`)."""

    def __init__(self, frames, grays, start: int, box, kp, cfg: FollowConfig, anchor_score: float = 1.0,
                 p_right: float | None = None):
        self.frames, self.grays, self.cfg = frames, grays, cfg
        self.H, self.W = grays[0].shape
        self.box = np.asarray(box, float)
        self.kp = kp
        self.run, self.quality = 0, 1.0
        self.model = colour_model(frames[start], self.box)
        self.anchor_score = float(anchor_score)  # score of the last frame with keypoints (1: a prompt)
        self.anchor_box = self.box.copy()
        self.hidden = False  # box-only, held in place behind the other hand
        self.hand = [0.0, 0.0]  # score-weighted sum of P(right) and its weight: the hand's handedness
        if p_right is not None:
            self.hand = [float(p_right), 1.0]

    @property
    def p_right(self) -> float | None:
        return self.hand[0] / self.hand[1] if self.hand[1] > 0 else None

    def predict(self, t: int, direction: int):
        if self.hidden:  # the flow inside the box is the other hand's
            return self.box.copy(), self.quality
        return flow_box(self.grays[t - direction], self.grays[t], self.box, self.cfg)

    def take(self, t: int, det) -> TrackStep:
        """The hand found in frame t (keypoints)."""
        self.box, self.kp, self.run, self.hidden = np.asarray(det.box, float), det.kp, 0, False
        self.anchor_score, self.anchor_box = float(det.score), self.box.copy()
        fresh = colour_model(self.frames[t], self.box)
        self.model = fresh if fresh is not None else self.model
        p = getattr(det, "p_right", None)
        if p is not None and np.isfinite(p):
            self.hand = [self.hand[0] + det.score * float(p), self.hand[1] + float(det.score)]
        return TrackStep(self.box.copy(), float(det.score), det)

    def keep_box(self, t: int, pred, q: float, blocked=None, hold: bool = False) -> TrackStep | None:
        """A box-only step to the predicted box ``pred`` (or, ``hold``, the last box: the hand is
        hidden behind the other hand, whose motion the flow would follow); None where the
        follow stops (see the module docstring)."""
        cfg = self.cfg
        if hold:
            pred = self.box
        self.hidden = hold
        if pred is None:
            return None
        self.run += 1
        self.quality = 0.5 * self.quality + 0.5 * q
        if (self.run > cfg.max_box_only or visible_fraction(pred, self.W, self.H) < cfg.min_visible
                or min(pred[2] - pred[0], pred[3] - pred[1]) < cfg.min_side):
            return None
        if not hold and blocked is not None and blocked(t, pred):
            return None
        if self.anchor_score < cfg.weak_anchor and not hold:
            # a weak anchor may be no hand at all: its box only goes on where it moves like one
            size = max(self.anchor_box[2] - self.anchor_box[0], self.anchor_box[3] - self.anchor_box[1], 1.0)
            moved = np.hypot(*((pred[:2] + pred[2:] - self.box[:2] - self.box[2:]) / 2)) / size
            if moved < cfg.weak_anchor_motion:
                return None
        here = colour_model(self.frames[t], pred)
        if not hold:
            if colour_distance(self.model, here) > cfg.max_colour_distance:
                return None  # the box has jumped off the hand (or the hand has left)
            if here is not None and self.model is not None:  # adapt: light and pose change gradually
                self.model = (1 - cfg.colour_adapt) * self.model + cfg.colour_adapt * here
        self.box = np.asarray(pred, float)
        score = float(np.clip(self.quality * cfg.decay ** self.run, 1e-3, 1.0))
        return TrackStep(clip_box(self.box, self.W, self.H), score, None)


def follow(frames, grays, start: int, start_box: np.ndarray, start_kp, direction: int, redetect, cfg: FollowConfig,
           stop_at: int | None = None, blocked=None, start_score: float = 1.0) -> dict[int, TrackStep]:
    """Follow a hand from frame ``start`` (box ``start_box``, keypoints ``start_kp`` or None,
    found with score ``start_score``) one frame at a time in ``direction`` (+1 / -1) until lost
    or ``stop_at`` (exclusive).

    ``redetect(t, pred_box, seed_kp) -> _Det | None`` finds the hand near the predicted box in
    frame t (anchors, then crop re-detection); ``blocked(t, box) -> bool`` stops the follow
    where the box runs into another hand. Returns {t: TrackStep} for the frames reached (not
    ``start``)."""
    T = len(frames)
    end = stop_at if stop_at is not None else (T if direction > 0 else -1)
    f = _Follower(frames, grays, start, start_box, start_kp, cfg, anchor_score=start_score)
    out: dict[int, TrackStep] = {}
    t = start + direction
    while (t < end if direction > 0 else t > end):
        pred, q = f.predict(t, direction)
        det = redetect(t, pred if pred is not None else f.box, f.kp)
        if det is not None and blocked is not None and blocked(t, det.box):
            det = None  # the other hand: keep the flow's box (if it is free)
        step = f.take(t, det) if det is not None else f.keep_box(t, pred, q, blocked)
        if step is None:
            break
        out[t] = step
        t += direction
    return out


def covered(box: np.ndarray, by: np.ndarray) -> float:
    """Fraction of ``box``'s area inside ``by``."""
    ix = max(0.0, min(box[2], by[2]) - max(box[0], by[0]))
    iy = max(0.0, min(box[3], by[3]) - max(box[1], by[1]))
    return float(ix * iy / max((box[2] - box[0]) * (box[3] - box[1]), 1e-9))


def same_hand(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes on one hand: IoU >= 0.3 or one mostly (60%) inside the other."""
    from ..conventions import box_iou

    return bool(box_iou(a, b) >= 0.3 or covered(a, b) >= 0.6 or covered(b, a) >= 0.6)


def evidence(f: _Follower, det, pred) -> float:
    """How well a detection continues a followed hand: overlap with its predicted box, plus
    keypoint continuity (the last keypoints moved with the prediction; in [0, 1]), plus the
    handedness agreement (1 - |P(right) difference|) weighted by how sure the hand's own vote
    is (|2 P(right) - 1|). Overlapping hands have similar boxes but different keypoints and,
    usually, different handedness."""
    from ..conventions import box_iou

    pred = f.box if pred is None else np.asarray(pred, float)
    e = float(box_iou(det.box, pred))
    if f.kp is not None and getattr(det, "kp", None) is not None and np.isfinite(f.kp).all():
        shift = (pred[:2] + pred[2:] - f.box[:2] - f.box[2:]) / 2
        size = max(f.box[2] - f.box[0], f.box[3] - f.box[1], 1.0)
        d = float(np.mean(np.linalg.norm(np.asarray(det.kp)[:, :2] - (np.asarray(f.kp)[:, :2] + shift), axis=1))) / size
        e += max(0.0, 1.0 - d)
    p = f.p_right
    if p is not None and getattr(det, "p_right", None) is not None:  # as sure as the hand's own vote
        e += abs(2 * p - 1) * (1.0 - abs(float(det.p_right) - p))
    return e


def _assign_jointly(followers, moving, preds, props, redetect, now, cfg: FollowConfig, t: int) -> None:
    """Two hands' proposals (``props``, changed in place) made exclusive: the distinct hands
    proposed are assigned to the two follows by the most total `evidence` (each near the follow's
    prediction; either follow may get none); a follow whose proposal went to the other one looks
    again with the taken hands excluded."""
    import itertools

    cands: list = []
    for k in moving:
        d = props[k]
        if d is not None and not any(d is c or same_hand(d.box, c.box) for c in cands):
            cands.append(d)
    if not cands:
        return
    pred_of = {k: preds[k][0] if preds[k][0] is not None else followers[k].box for k in moving}
    best, best_score = None, -1.0
    for combo in itertools.product([None] + list(range(len(cands))), repeat=len(moving)):
        used = [c for c in combo if c is not None]
        if len(used) != len(set(used)):
            continue
        total, ok = 0.0, True
        for k, c in zip(moving, combo):
            if c is None:
                continue
            d = cands[c]
            if d is not props[k] and not consistent(d.box, pred_of[k], cfg):
                ok = False
                break
            total += evidence(followers[k], d, pred_of[k]) + (1e-6 if d is props[k] else 0.0)
        if ok and total > best_score:
            best, best_score = combo, total
    taken = [cands[c].box for c in best if c is not None]
    for k, c in zip(moving, best):
        if c is not None:
            props[k] = cands[c]
        elif props[k] is not None:  # its proposal went to the other hand: look again without it
            f = followers[k]
            held = taken + [b for j, b in now.items() if j != k]
            props[k] = redetect(t, pred_of[k], f.kp, lambda box, held=held: any(same_hand(box, x) for x in held))


def follow_together(frames, grays, starts: list, direction: int, redetect, cfg: FollowConfig) -> list[dict]:
    """Follow up to two hands at once, each from its own start frame, in ``direction``, with
    exclusive identities: in every frame a detection (or a hand) goes to one follow only.

    ``starts``: per hand ``(t0, TrackStep)`` (its prompt). ``redetect(t, pred, seed_kp,
    exclude)`` as in `follow`, never returning a box for which ``exclude(box)`` is true. Per
    frame: each follow proposes the detection near its predicted box; the proposed hands are
    assigned jointly by `evidence` (`_assign_jointly`: two follows never share a hand, and
    where two hands part after overlapping, keypoints and handedness say which is which); a
    follow left without a detection keeps a box-only box, held in place (not moved by the flow)
    while it lies on the other hand, which hides it; it never takes a box on the other hand. A hand at its own start frame holds its prompt box there. Returns per hand
    {t: TrackStep} for the frames reached in ``direction`` (not its start frame)."""
    T = len(frames)
    K = len(starts)
    followers: list[_Follower | None] = [None] * K
    out: list[dict] = [{} for _ in range(K)]
    now: dict[int, np.ndarray] = {}  # each hand's box in the current frame
    order = range(T) if direction > 0 else range(T - 1, -1, -1)
    for t in order:
        now = {}
        moving = []
        for k, (t0, st) in enumerate(starts):
            if t == t0:
                followers[k] = _Follower(frames, grays, t0, st.box, st.det.kp if st.det is not None else None, cfg,
                                         anchor_score=1.0,
                                         p_right=getattr(st.det, "p_right", None) if st.det is not None else None)
                now[k] = np.asarray(st.box, float)
            elif followers[k] is not None:
                moving.append(k)
        preds, props = {}, {}
        for k in moving:
            f = followers[k]
            pred, q = f.predict(t, direction)
            preds[k] = (pred, q)
            held = [b for j, b in now.items() if j != k]
            props[k] = redetect(t, pred if pred is not None else f.box, f.kp,
                                lambda box, held=held: any(same_hand(box, b) for b in held))
        if len(moving) == 2:
            _assign_jointly(followers, moving, preds, props, redetect, now, cfg, t)
        for k in moving:  # detections first, so a box-only hand knows where the other hand is
            if props[k] is not None:
                out[k][t] = followers[k].take(t, props[k])
                now[k] = out[k][t].box
        for k in moving:
            if props[k] is not None:
                continue
            f = followers[k]
            pred, q = preds[k]
            others = [b for j, b in now.items() if j != k]
            # hidden: the other hand covers its last box (its texture would drag the flow along)
            hidden = any(covered(f.box, b) >= cfg.hide_cover or (pred is not None and same_hand(pred, b))
                         for b in others)
            step = f.keep_box(t, pred, q, hold=hidden)
            if step is None:
                followers[k] = None  # lost
                continue
            out[k][t] = step
            now[k] = step.box
    return out
