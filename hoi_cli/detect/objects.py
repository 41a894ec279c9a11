"""One object box per frame: from a prompt (box or point) tracked both ways, or proposed automatically.

Modes:

- **prompt**: ``object_box`` (x0, y0, x1, y1) or ``object_point`` (x, y) on frame
  ``object_frame``. A point grows into a box with GrabCut seeded at the point (the hands'
  keypoints marked as background). The box is tracked with OpenCV's CSRT tracker forward to
  the end and backward to the start. Score: 1.0 on the prompt frame, the tracker's success
  (0.8) elsewhere, NaN box and 0 score where the tracker lost it.
- **auto** (no prompt), method ``segments`` (default): on key frames (every ``key_stride``-th
  frame with a hand, plus the last) the frame is segmented by Felzenszwalb's graph method
  (``cv2.ximgproc``) at several sizes x scales (an ensemble: no single level fits all objects);
  the regions that a contact point just beyond a fingertip falls in are candidates, minus those
  mostly inside the hands' skeleton/palm mask or larger than ``max_area_frac`` of the frame. The
  held object is the same thing in every frame and moves with the hands, so candidates are
  scored by clip-level consistency: how well they recur among the other key frames' candidates
  (similar Lab colour histogram x overlap of the boxes after moving them with the hands; at most
  ``max_ref_frames`` key frames compared), then (second pass) their colour similarity to the
  consensus histogram of each frame's best, minus penalties for touching frame borders and for
  an area far from hand size^2. Key frames where nothing scores near the clip's typical best
  (``gate``) get no box. A key frame's box covers its candidates within ``merge_margin`` of its
  best (an object split into regions), grown by the regions next to them that move with them
  (optical flow; not the hands, forearms or what touches a frame border): the object's other
  colours (``parts``, `_comoving_parts`). Key boxes get a temporal median (``median_window``),
  frames in between are interpolated linearly. Frames before the first / after the last key
  (the hand left or was lost while the object is still visible) follow the object's optical
  flow from the nearest key box (``follow_flow``; holding the key box instead: box IoU 0.660 ->
  0.673 at key_stride 3, 0.626 -> 0.633 / 0.623 -> 0.630 at 2 / 4). Score 0.5 (key), 0.4
  (interpolated), 0.3 (followed / held). Mean auto box IoU on the 12 InterDyn clips: 0.391
  (``grabcut``) -> 0.673 (0.633 / 0.630 at key_stride 2 / 4), at ~45 frames/s.
  The chosen regions are also returned as a coarse object mask per frame (``object_seed``: the
  union of a key frame's merged candidates and parts; other frames take the nearest key frame's, scaled
  and moved from its proposal box onto their box). 03_segment anchors its GrabCut on it (mean
  object IoU with own boxes 0.679 -> 0.718).
- **auto**, method ``grabcut`` (the previous default, ~300 frames/s): on key frames GrabCut
  runs once in a window around the grasp point (the centroid of the thumb, index
  and middle fingertips; the midpoint of both hands' grasp points when both hands are close),
  downscaled to <= ``auto_max_side`` px, 2 iterations. Initial labels: window border
  background; the hands' palms (wrist + finger bases) background; finger skeletons only
  *probably* background (fingers lie on the object); a disc around the grasp point and the
  pixels that move with the hands (Farneback optical flow to the next frame, relative to the
  background's motion) probably object. The foreground component at the grasp point gives the
  box; the window grows towards the sides the object touches (``max_grow`` times). A result
  filling the window (colours do not separate) or a sliver smaller than ``min_rel_area`` x
  hand size^2 falls back to a hand-sized box at the grasp point. Key boxes get a temporal
  median, then interpolation and holding as above.

Deterministic: GrabCut is seeded by ``cv2.setRNGSeed``; the graph segmentation has no randomness.

Convention: boxes ``xyxy`` float32 in px of the frames given; missing = NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..conventions import OPENPOSE_PARENTS, box_from_mask, empty_boxes
from ..params import typed


@typed
class ObjectConfig:
    object_box: tuple[float, float, float, float] | None = None
    object_point: tuple[float, float] | None = None
    object_frame: int = 0
    auto: bool = True  # propose a box automatically when there is no prompt
    grabcut_iters: int = 3  # prompt (point) mode
    window_scale: float = 3.0  # auto window side = window_scale * hand size (2.0 -> 3.0: auto box IoU
    # 0.457 -> 0.488 on 8 InterDyn clips with hands, together with prior_scale 1.0 -> 1.5)
    median_window: int = 5
    # auto mode (fast): proposals on key frames only, GrabCut on a downscaled window that grows
    # towards the sides the object touches; linear interpolation between key frames
    key_stride: int = 3  # a proposal on every n-th frame with a hand
    # key frames start at the key_offset-th frame with a hand (the first one is always a key too). The
    # proposals depend on which frames are keys: on the 12 InterDyn clips, 03_segment's object IoU with
    # own boxes is 0.755 / 0.711 / 0.677 at offsets 0 / 1 / 2 (key_stride 3); report the spread, not one.
    key_offset: int = 0
    auto_iters: int = 2
    auto_max_side: int = 64  # the GrabCut window is downscaled to at most this many px
    max_grow: int = 2  # times the window may grow towards sides the object touches
    grow_factor: float = 0.75  # ... by this fraction of its side each time
    min_rel_area: float = 0.1  # proposals smaller than this x hand size^2 fall back to the prior box
    seed_shift: float = 0.0  # one hand: move the seed this x hand size beyond the fingertips
    motion: bool = True  # what moves with the hands (optical flow) is probably object
    motion_gap: int = 1  # ... between a key frame and the frame this many frames later
    fg_radius: float = 0.6  # initial "probably object" disc around the grasp point (x hand size); 0 = whole window
    max_fill: float = 0.8  # a segmentation filling more of the window than this is rejected
    prior_scale: float = 1.5  # fallback where GrabCut gives nothing: a box this x hand size at the grasp point
    # auto mode, method "segments" (default; "grabcut" = the per-window GrabCut above): candidate
    # regions from graph segmentations touched by the fingertips, chosen by clip-level consistency
    # (auto box IoU 0.391 -> ~0.6 on the 12 InterDyn clips; see `_segment_candidates`)
    method: Literal["segments", "grabcut"] = "segments"
    seg_sides: tuple = (96.0, 128.0, 160.0)  # frame downscaled to these long sides (px) ...
    seg_ks: tuple = (70.0, 200.0, 600.0, 1800.0)  # ... x these Felzenszwalb scales: an ensemble, as
    # no single segmentation level fits all objects (a single one: 0.44-0.50, unstable per clip)
    probe: tuple = (0.1, 0.25)  # contact points beyond each fingertip, x hand size
    max_hand_frac: float = 0.3  # a region more than this much inside the hand mask is the hand
    max_area_frac: float = 0.35  # a region larger than this x the frame is background (wall, table)
    w_border: float = 0.5  # score penalty per frame border the region touches (background does) / 4
    w_area: float = 0.3  # score penalty for |log(area / hand size^2)| / 3 (objects are hand-sized-ish)
    w_align: float = 0.5  # weight of the hand-aligned box overlap in the recurrence (the held object moves
    # with the hands, background does not; 0 / 0.5 / 1 with gate 0: mean box IoU 0.636 / 0.660 / 0.655)
    gate: float = 0.2  # key frames whose best score is this far below the clip's median best get no box
    # (0 / 0.1 / 0.2 with w_align 0.5, mean box IoU over key_stride 2, 3, 4: 0.624 / 0.632 / 0.636)
    max_ref_frames: int = 24  # recurrence against at most this many key frames (bounded cost on long clips)
    follow_flow: bool = True  # frames before the first / after the last key follow the object's optical flow
    # instead of holding the key box (see `_follow_held`; 03_segment object IoU with own boxes 0.718 -> 0.734,
    # 0.676 -> 0.691 / 0.689 -> 0.700 at key_stride 2 / 4)
    # other parts of the object (`_comoving_parts`): a multi-coloured object (a plush toy: yellow head,
    # brown body, red tie) has parts the fingertips do not touch and the consensus colour does not match;
    # the regions next to the chosen ones that move with them (optical flow) are added to the key frame's
    # mask and box. 03_segment, auto (bench/measure_objects.py; tuned on tune only): tune (InterDyn 6) mask /
    # box IoU 0.737 / 0.708 -> 0.751 / 0.800 (the cup + tape roll 0.714 / 0.554 -> 0.765 / 0.879; no clip down
    # by more than 0.011), val (InterDyn 6) 0.754 / 0.769 -> 0.754 / 0.767, something_else box 0.182 -> 0.192;
    # AnchorCrafter plush toy (bench/measure_multipart.py) 0.645 / 0.589 -> 0.750 / 0.726, reference object
    # left unmasked 0.336 -> 0.224. Object step ~25 % slower (AnchorCrafter 51 -> 39 frames/s)
    parts: bool = True
    # (the tune figures of part_gap, part_ks, part_rounds, part_max_growth: at part_beta 0.5, arm frac 0.2)
    part_gap: int = 2  # flow to the frame this many frames later / earlier (tune: 1 same, 3 same)
    part_side: float = 128.0  # frame downscaled to this long side (px) for the flow and segmentations
    part_ks: tuple = (200.0, 600.0)  # Felzenszwalb scales of the part regions (tune: (200,) same; a textured
    # part splits into slivers at one scale: tests/test_objects_auto.py's two-coloured object needs both)
    part_min_motion: float = 0.5  # the held part must move this much (px at 160 px) against the border
    part_beta: float = 0.7  # a pixel moves with it: flow within this x the relative motion of its median (tune
    # mask / box IoU at 0.35 / 0.5 / 0.7 / 0.85 / 1.0: 0.748 / 0.770, 0.745 / 0.775, 0.749 / 0.790, 0.749 / 0.789,
    # 0.748 / 0.788; at 1.0 the AnchorCrafter plush toy's mask takes in the sweater behind it: 0.753 -> 0.615)
    part_min_comoving: float = 0.6  # ... for at least this share of a region's pixels (tune at 0.45 / 0.6 / 0.8,
    # part_beta 0.5: 0.745 / 0.775, 0.745 / 0.775, 0.742 / 0.766; part_beta 0.7: 0.749 / 0.790 at 0.45, 0.6;
    # 0.746 / 0.778 at 0.8)
    part_rounds: int = 3  # grow from the grown mask this many times (a tie below the body below the head;
    # tune: 1 0.746 / 0.766, 3 0.745 / 0.775)
    part_max_growth: float = 4.0  # ... while the mask stays within this x its first area (tune: 2 same)
    part_touch: int = 3  # a region within this many px of the mask touches it (edges are sliver regions)
    part_hand_width: float = 0.3  # the hands' zone: skeleton lines this x hand size wide, the palms, ...
    part_arm: float = 1.5  # ... and the forearm beyond the wrist, this x hand size long ...
    part_arm_width: float = 0.6  # ... and this x hand size wide (hands and arms move with the object)
    part_max_arm_frac: float = 0.4  # a region more than this much inside the hands' zone is hand / arm (the
    # fingers lie on the object; tune at 0.2 / 0.3 / 0.4 / 0.6, part_beta 0.7: 0.749 / 0.790, then 0.751 / 0.800)
    part_max_skin: float = 0.8  # ... and one whose colour histogram is this similar to the hands' too (tune at
    # 0.6, part_beta 0.7: 0.737 / 0.774: a skin-toned object part is taken for the hand)
    part_min_frac: float = 0.03  # regions smaller than this x the mask are ignored (noise)
    part_min_core: float = 0.3  # a region whose 3x3 erosion keeps less than this of it is an edge sliver
    merge_margin: float = 0.05  # the box covers every candidate scoring within this of the best (0 / 0.05 /
    # 0.1 / 0.15: mean box IoU 0.623 / 0.636 / 0.614 / 0.608)


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


PALM = [0, 1, 5, 9, 13, 17]  # wrist and finger bases: the palm polygon


def _auto_grabcut(frame, win, seed_xy, seed_r, hand_kps, iters, max_side, fg_radius=None, max_fill=1.0,
                  motion=None):
    """GrabCut in ``win`` downscaled to ``max_side`` px: window border = background, the hands'
    palms (wrist + finger bases) = background, their finger skeletons = probably background
    (fingers lie on the object, so they must not cut it), the rest probably foreground, a disc
    at the grasp point foreground. Returns the box of the foreground component nearest the
    seed (frame px) and which window sides it touches (x0, y0, x1, y1)."""
    import cv2

    H, W = frame.shape[:2]
    x0, y0 = int(max(0, np.floor(win[0]))), int(max(0, np.floor(win[1])))
    x1, y1 = int(min(W, np.ceil(win[2]))), int(min(H, np.ceil(win[3])))
    nan = np.full(4, np.nan, dtype=np.float32)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return nan, (False,) * 4
    s = min(1.0, max_side / max(x1 - x0, y1 - y0))
    w, h = max(8, int(round((x1 - x0) * s))), max(8, int(round((y1 - y0) * s)))
    sx_, sy_ = w / (x1 - x0), h / (y1 - y0)
    img = cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (w, h), interpolation=cv2.INTER_AREA)
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)

    def to_roi(p):
        return int(round((p[0] - x0) * sx_)), int(round((p[1] - y0) * sy_))

    mask = np.full((h, w), cv2.GC_PR_FGD if fg_radius is None else cv2.GC_PR_BGD, np.uint8)
    if fg_radius is not None:  # only a disc around the grasp point is probably object
        cv2.circle(mask, to_roi(seed_xy), max(2, int(fg_radius * sx_)), cv2.GC_PR_FGD, -1)
    if motion is not None:  # ... and what moves with the hands
        ms = motion.shape[1] / W
        mx0, my0 = int(x0 * ms), int(y0 * ms)
        mx1, my1 = max(mx0 + 1, int(np.ceil(x1 * ms))), max(my0 + 1, int(np.ceil(y1 * ms)))
        m = cv2.resize(motion[my0:my1, mx0:mx1].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        mask[m > 0] = cv2.GC_PR_FGD
    # frame-edge sides are not window border: an object may be cut by the frame
    if win[1] > 0:
        mask[:1, :] = cv2.GC_BGD
    if win[3] < H:
        mask[-1:, :] = cv2.GC_BGD
    if win[0] > 0:
        mask[:, :1] = cv2.GC_BGD
    if win[2] < W:
        mask[:, -1:] = cv2.GC_BGD

    for kp in hand_kps:
        size = max(np.ptp(kp[:, 0]), np.ptp(kp[:, 1]), 4.0) * sx_
        th = max(1, int(size * 0.08))
        for j, pj in enumerate(OPENPOSE_PARENTS):
            if pj >= 0:
                cv2.line(mask, to_roi(kp[j]), to_roi(kp[pj]), cv2.GC_PR_BGD, th)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.array([to_roi(kp[j]) for j in PALM], np.int32)), cv2.GC_BGD)
    sx, sy = to_roi(seed_xy)
    cv2.circle(mask, (sx, sy), max(1, int(seed_r * sx_)), cv2.GC_FGD, -1)
    if not ((mask == cv2.GC_BGD) | (mask == cv2.GC_PR_BGD)).any():
        return nan, (False,) * 4
    cv2.setRNGSeed(0)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, mask, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return nan, (False,) * 4
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    n, lab, stats, cent = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return nan, (False,) * 4
    if fg.mean() > max_fill:  # everything is "object": the colours do not separate, no answer
        return nan, (False,) * 4
    iy, ix = int(np.clip(sy, 0, h - 1)), int(np.clip(sx, 0, w - 1))
    k = lab[iy, ix]
    if k == 0:
        d = np.hypot(cent[1:, 0] - sx, cent[1:, 1] - sy) / np.sqrt(stats[1:, 4])
        k = 1 + int(np.argmin(d))
    bx, by, bw, bh = stats[k, :4]
    touch = (bx <= 1 and win[0] > 0, by <= 1 and win[1] > 0, bx + bw >= w - 1 and win[2] < W,
             by + bh >= h - 1 and win[3] < H)
    box = np.array([x0 + bx / sx_, y0 + by / sy_, x0 + (bx + bw) / sx_, y0 + (by + bh) / sy_], dtype=np.float32)
    return box, touch


def _auto_window(kps, cfg):
    """Seed (grasp point), seed radius and the initial window around the hands of one frame."""
    sizes = [max(np.ptp(k[:, 0]), np.ptp(k[:, 1]), 8.0) for k in kps]
    gps = [grasp_point(k) for k in kps]
    size = max(sizes)
    if len(kps) == 2 and np.hypot(*(gps[0] - gps[1])) < 3.0 * size:
        seed = (gps[0] + gps[1]) / 2
        half = max(cfg.window_scale * size, abs(gps[0][0] - gps[1][0]) + size) / 2
    else:
        i = int(np.argmax(sizes))
        seed, size = gps[i], sizes[i]
        v = gps[i] - kps[i][0]  # the object lies beyond the fingertips, away from the wrist
        seed = seed + cfg.seed_shift * size * v / max(np.hypot(*v), 1e-6)
        half = cfg.window_scale * size / 2
    return seed, 0.1 * size, np.array([seed[0] - half, seed[1] - half, seed[0] + half, seed[1] + half])


def comoving_mask(frame_a, frame_b, kps, max_side: int = 160) -> np.ndarray | None:
    """Pixels of ``frame_a`` that move with the hands between ``frame_a`` and ``frame_b`` (dense
    Farneback flow on frames downscaled to ``max_side`` px): flow within half the hand-vs-
    background motion of the hands' median flow. None where the hands barely move against the
    background (no signal). The mask is at the downscaled size; resize to use it."""
    import cv2

    H, W = frame_a.shape[:2]
    s = min(1.0, max_side / max(H, W))
    size = (max(8, int(round(W * s))), max(8, int(round(H * s))))
    ga = cv2.cvtColor(cv2.resize(frame_a, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(cv2.resize(frame_b, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    pts = np.concatenate([k for k in kps]) * s
    ix = np.clip(pts[:, 0].astype(int), 0, size[0] - 1)
    iy = np.clip(pts[:, 1].astype(int), 0, size[1] - 1)
    hand = np.median(flow[iy, ix], axis=0)
    border = np.concatenate([flow[:3].reshape(-1, 2), flow[-3:].reshape(-1, 2),
                             flow[:, :3].reshape(-1, 2), flow[:, -3:].reshape(-1, 2)])
    bg = np.median(border, axis=0)
    rel = float(np.hypot(*(hand - bg)))
    if rel < 1.0:
        return None
    return np.hypot(*(flow - hand).transpose(2, 0, 1)) < 0.5 * rel


def propose_object_box(frame, kps, cfg: ObjectConfig, motion: np.ndarray | None = None) -> np.ndarray:
    """One automatic object box for one frame (see `_auto_grabcut`), growing the window towards
    the sides the object touches, up to ``cfg.max_grow`` times."""
    H, W = frame.shape[:2]
    seed, r, win = _auto_window(kps, cfg)
    box = np.full(4, np.nan, dtype=np.float32)
    fr = cfg.fg_radius * r / 0.1 if cfg.fg_radius else None
    for g in range(cfg.max_grow + 1):
        box, touch = _auto_grabcut(frame, win, seed, r, kps, cfg.auto_iters, cfg.auto_max_side, fr, cfg.max_fill,
                                   motion)
        if not np.isfinite(box).all() or not any(touch) or g == cfg.max_grow:
            break
        d = cfg.grow_factor * max(win[2] - win[0], win[3] - win[1])
        win = win + np.array([-d * touch[0], -d * touch[1], d * touch[2], d * touch[3]])
        win = np.clip(win, [0, 0, 0, 0], [W, H, W, H])
    hs = r / 0.1  # hand size
    if np.isfinite(box).all() and (box[2] - box[0]) * (box[3] - box[1]) < cfg.min_rel_area * hs * hs:
        box = np.full(4, np.nan, dtype=np.float32)  # a sliver (a handle, a fingertip): not the object
    if not np.isfinite(box).all() and cfg.prior_scale > 0:  # fallback: a box at the grasp point
        half = cfg.prior_scale * r / 0.1 / 2
        box = np.array([seed[0] - half, seed[1] - half, seed[0] + half, seed[1] + half], dtype=np.float32)
        box = np.clip(box, [0, 0, 0, 0], [W, H, W, H]).astype(np.float32)
    return box


TIPS = [4, 8, 12, 16, 20]
HIST_BINS = [4, 6, 6]  # Lab colour histogram of a region (coarse in lightness: shading varies)


def _hands_mask(kps, s: float, h: int, w: int, width: float = 0.15, arm: float = 0.0,
                arm_width: float = 0.0) -> np.ndarray:
    """The hands (keypoints ``kps`` in frame px, drawn at scale ``s`` on an ``(h, w)`` uint8 grid): skeleton
    lines ``width`` x hand size wide and the palms; with ``arm`` > 0 also the forearm beyond each wrist,
    ``arm`` x hand size long and ``arm_width`` x hand size wide (along finger base -> wrist)."""
    import cv2

    out = np.zeros((h, w), np.uint8)
    for kp in kps:
        k = kp * s
        size = max(np.ptp(k[:, 0]), np.ptp(k[:, 1]), 4.0)
        for j, pj in enumerate(OPENPOSE_PARENTS):
            if pj >= 0:
                cv2.line(out, tuple(np.round(k[j]).astype(int)), tuple(np.round(k[pj]).astype(int)), 1,
                         max(1, int(size * width)))
        cv2.fillConvexPoly(out, cv2.convexHull(np.round(k[PALM]).astype(np.int32)), 1)
        if arm > 0:
            v = k[0] - k[9]  # middle finger base -> wrist: the forearm continues this way
            v = v / max(np.hypot(*v), 1e-6)
            cv2.line(out, tuple(np.round(k[0]).astype(int)), tuple(np.round(k[0] + v * arm * size).astype(int)),
                     1, max(1, int(size * arm_width)))
    return out


def _lab_hist(lab: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``region``'s Lab colour histogram (`HIST_BINS`), square-rooted and normalised: the dot product of two
    is their Bhattacharyya coefficient."""
    import cv2

    hist = cv2.calcHist([lab], [0, 1, 2], region.astype(np.uint8), HIST_BINS, [0, 256] * 3).ravel()
    return np.sqrt(hist / max(hist.sum(), 1e-9)).astype(np.float32)


def _borders_touched(xs: np.ndarray, ys: np.ndarray, w: int, h: int) -> int:
    """How many of an ``(h, w)`` image's borders the pixels ``xs``, ``ys`` reach."""
    return int(xs.min() == 0) + int(ys.min() == 0) + int(xs.max() == w - 1) + int(ys.max() == h - 1)


def _graph_labels(lab: np.ndarray, k: float) -> np.ndarray:
    """Felzenszwalb graph segmentation (``cv2.ximgproc``, sigma 0.8, min size 20) of a Lab image at scale ``k``."""
    import cv2

    return cv2.ximgproc.segmentation.createGraphSegmentation(0.8, float(k), 20).processImage(lab)


def _segment_candidates(frame, kps, cfg: ObjectConfig, labels: dict | None = None) -> list[dict]:
    """Candidate object regions of one frame: the regions of Felzenszwalb graph segmentations
    (``cv2.ximgproc``, Lab colour, each of ``cfg.seg_sides`` x ``cfg.seg_ks``) that a contact
    point (``cfg.probe`` x hand size beyond each fingertip, along the finger) falls in, minus
    regions that are mostly hand (skeleton + palm mask) or too large (background). Each with its
    box (frame px), Lab histogram, area (frame px^2) and the number of frame borders it touches.
    ``labels`` (a dict), where given, keeps the segmentations: ``(side, k) -> label map`` (`_comoving_parts`
    reuses them)."""
    import cv2

    H, W = frame.shape[:2]
    out = []
    for side in cfg.seg_sides:
        s = float(side) / max(H, W)
        w, h = max(8, int(round(W * s))), max(8, int(round(H * s)))
        lab = cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2Lab)
        hand = _hands_mask(kps, s, h, w)
        pts = []
        for kp in kps:
            k = kp * s
            size = max(np.ptp(k[:, 0]), np.ptp(k[:, 1]), 4.0)
            for tj in TIPS:
                v = k[tj] - k[tj - 1]
                v = v / max(np.hypot(*v), 1e-6)
                pts.extend(k[tj] + v * d * size for d in cfg.probe)
        for kk in cfg.seg_ks:
            L = _graph_labels(lab, kk)
            if labels is not None:
                labels[(float(side), float(kk))] = L
            ids = {int(L[y, x]) for x, y in (np.round(p).astype(int) for p in pts)
                   if 0 <= x < w and 0 <= y < h and not hand[y, x]}
            for i in sorted(ids):
                m = L == i
                a = int(m.sum())
                if (m & (hand > 0)).sum() > cfg.max_hand_frac * a or a > cfg.max_area_frac * h * w:
                    continue
                ys, xs = np.nonzero(m)
                out.append({"box": np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) / s,
                            "hist": _lab_hist(lab, m), "area": a / (s * s), "nb": _borders_touched(xs, ys, w, h),
                            # the region itself (cropped to its box, at the downscaled size) for the seed mask
                            "mask": (int(xs.min()), int(ys.min()), s,
                                     m[ys.min():ys.max() + 1, xs.min():xs.max() + 1].copy())})
    return out


def _box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4) with every box in ``b`` (M,4), xyxy."""
    a, b = a[:, None], b[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(union - inter, 1e-9)


def _candidate_mask(c: dict, H: int, W: int) -> np.ndarray | None:
    """A candidate's region as a bool ``(H, W)`` mask at frame resolution (None if it has none)."""
    import cv2

    if "mask" not in c:
        return None
    x0, y0, s, crop = c["mask"]
    small = np.zeros((int(round(H * s)) + 2, int(round(W * s)) + 2), np.uint8)
    small[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    # the downscaled frame is round(W*s) x round(H*s): map it back exactly onto W x H
    w, h = max(8, int(round(W * s))), max(8, int(round(H * s)))
    return cv2.resize(small[:h, :w], (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)


def _segment_proposals(frames, kps_by_key: dict, cfg: ObjectConfig, masks_out: dict | None = None) -> dict:
    """One box per key frame from `_segment_candidates`, chosen by clip-level consistency: the
    held object is the same thing in every frame and moves with the hands, so its region recurs
    among the candidates of the other key frames (a similar Lab colour histogram *and*, after
    moving the box by the hands' displacement between the two frames, an overlapping box), while
    what the fingertips happen to touch besides it changes, and background stays put while the
    hands move. Similarity = Bhattacharyya coefficient x (1 - ``w_align`` + ``w_align`` x IoU of
    the hand-aligned boxes); recurrence = its mean over the other key frames (at most
    ``max_ref_frames`` of them) of the best match there. Score = recurrence - border and size
    penalties; a second pass replaces the recurrence by the colour similarity to the mean
    histogram of each frame's best candidate (the consensus). Key frames whose best score is
    more than ``gate`` below the clip's median best have no candidate that looks like the
    object (the object is not touched there, or not segmented): they get no box and are
    interpolated / held from the others. The box covers the candidates within
    ``cfg.merge_margin`` of the frame's best (an object split into several regions) and, with
    ``cfg.parts``, the adjacent regions that move with them (`_comoving_parts`). With
    ``masks_out`` (a dict), the union of those candidates' regions (bool, frame resolution) is
    stored there per key frame: a coarse object mask (the seed for 03_segment)."""
    cands, hs, gp, labels = {}, {}, {}, {}
    for t, kps in kps_by_key.items():
        if kps:
            labels[t] = {}
            cands[t] = _segment_candidates(frames[t], kps, cfg, labels=labels[t] if cfg.parts else None)
            hs[t] = max(max(np.ptp(k[:, 0]), np.ptp(k[:, 1]), 4.0) for k in kps)
            gp[t] = np.mean([grasp_point(k) for k in kps], axis=0)
    allc = [(t, c) for t in cands for c in cands[t]]
    if not allc:
        return {}
    hist = np.stack([c["hist"] for _, c in allc])
    ts = np.array([t for t, _ in allc])
    bx = np.stack([c["box"] for _, c in allc])
    # hand-relative boxes (box minus the frame's mean grasp point): comparing them is comparing
    # boxes after moving them with the hands
    g = np.stack([gp[t] for t in ts])
    rb = bx - np.concatenate([g, g], axis=1)
    frames_with = sorted(set(ts.tolist()))
    # long clips: compare with at most max_ref_frames key frames spread over the clip, so the
    # cost is linear in the number of candidates, not quadratic
    ref = frames_with
    if len(ref) > cfg.max_ref_frames:
        ref = [frames_with[i] for i in np.linspace(0, len(ref) - 1, cfg.max_ref_frames).round().astype(int)]
    best = np.full((len(allc), len(ref)), np.nan, np.float32)
    for j, u in enumerate(ref):
        iu = np.flatnonzero(ts == u)
        sim = hist @ hist[iu].T
        if cfg.w_align > 0:
            sim = sim * (1 - cfg.w_align + cfg.w_align * _box_iou_matrix(rb, rb[iu]))
        best[:, j] = sim.max(axis=1)
        best[ts == u, j] = np.nan  # not against its own frame
    has = np.isfinite(best).any(axis=1)
    rec = np.zeros(len(allc))
    rec[has] = np.nanmean(best[has], axis=1)
    penalty = np.array([cfg.w_border * c["nb"] / 4 + cfg.w_area * abs(np.log(c["area"] / hs[t] ** 2)) / 3
                        for t, c in allc])
    score = rec - penalty
    top = [np.flatnonzero(ts == u)[np.argmax(score[ts == u])] for u in frames_with]
    consensus = hist[top].mean(axis=0)
    consensus /= max(float(np.linalg.norm(consensus)), 1e-9)  # the unit vector: a Bhattacharyya-like coefficient
    score = hist @ consensus - penalty
    conf = np.array([score[ts == u].max() for u in frames_with])
    if cfg.gate > 0:
        frames_with = [u for u, c in zip(frames_with, conf) if c >= np.median(conf) - cfg.gate]
    prop = {}
    for u in frames_with:
        idx = np.flatnonzero(ts == u)
        keep = idx[score[idx] >= score[idx].max() - cfg.merge_margin]
        b = bx[keep]
        prop[u] = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()], np.float32)
        if masks_out is not None or cfg.parts:
            H, W = frames[u].shape[:2]
            ms = [m for m in (_candidate_mask(allc[i][1], H, W) for i in keep) if m is not None]
            if not ms:
                continue
            m = np.logical_or.reduce(ms)
            if cfg.parts:
                m = _comoving_parts(frames, u, m, kps_by_key[u], cfg, labels.get(u))
                mb = box_from_mask(m)  # the box covers the added parts too
                prop[u] = np.concatenate([np.minimum(prop[u][:2], mb[:2]), np.maximum(prop[u][2:], mb[2:])])
                prop[u] = prop[u].astype(np.float32)
            if masks_out is not None:
                masks_out[u] = m
    return prop


def _comoving_parts(frames, t: int, mask: np.ndarray, kps, cfg: ObjectConfig, labels: dict | None = None) -> np.ndarray:
    """``mask`` (the chosen regions of key frame ``t``, bool, frame resolution) plus the regions
    next to it that move with it: the other parts of a multi-coloured object (a plush toy's brown
    body and red tie under its yellow head) are neither touched by the fingertips nor of the
    consensus colour, but are attached to the held part.

    On the frame downscaled to ``cfg.part_side`` px: dense optical flow (Farneback) to the frame
    ``cfg.part_gap`` frames later and to the one as much earlier, whichever shows the held part
    moving more against the background (the frame border's median flow); none moving by
    ``cfg.part_min_motion`` px (at 160 px) gives no evidence and nothing is added. A pixel moves
    with the object where its flow is within ``cfg.part_beta`` x that relative motion of the held
    part's median flow. Regions of graph segmentations (``cfg.part_ks``) within ``cfg.part_touch``
    px of the mask are added where at least ``cfg.part_min_comoving`` of their pixels move with
    it, unless they are background-like (touch a frame border, larger than ``cfg.max_area_frac``),
    the hands or forearms (in the hands' thick skeleton / palm / forearm zone, or of the hands'
    colour: they move with the object too), or slivers (mixed colours along an edge); repeated
    from the grown mask ``cfg.part_rounds`` times while it stays within ``cfg.part_max_growth`` x
    its first area (what sits behind the object, a shirt, also touches it but stays put or moves
    otherwise). ``labels``: `_segment_candidates`' label maps of this frame, reused where it made them."""
    import cv2

    T = len(frames)
    H, W = frames[t].shape[:2]
    s = float(cfg.part_side) / max(H, W)
    w, h = max(8, int(round(W * s))), max(8, int(round(H * s)))
    m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    others = [u for u in (t + cfg.part_gap, t - cfg.part_gap) if 0 <= u < T and u != t]
    if m.sum() < 4 or not others:
        return mask

    def small(u):
        return cv2.resize(frames[u], (w, h), interpolation=cv2.INTER_AREA)

    a = small(t)
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    hand = _hands_mask(kps, s, h, w)  # the hands' skeletons and palms
    # ... thicker, and the forearms beyond the wrists: they move with the hands
    arm = _hands_mask(kps, s, h, w, cfg.part_hand_width, cfg.part_arm, cfg.part_arm_width)
    sel = m & (hand == 0) if (m & (hand == 0)).sum() >= 4 else m
    best = None
    for u in others:
        flow = cv2.calcOpticalFlowFarneback(ga, cv2.cvtColor(small(u), cv2.COLOR_RGB2GRAY), None,
                                            0.5, 3, 9, 3, 5, 1.1, 0)
        fo = np.median(flow[sel], axis=0)
        border = np.concatenate([flow[:3].reshape(-1, 2), flow[-3:].reshape(-1, 2),
                                 flow[:, :3].reshape(-1, 2), flow[:, -3:].reshape(-1, 2)])
        rel = float(np.hypot(*(fo - np.median(border, axis=0))))
        if best is None or rel > best[0]:
            best = (rel, flow, fo)
    rel, flow, fo = best
    if rel < cfg.part_min_motion * cfg.part_side / 160:
        return mask  # the object does not move against the background: no evidence
    comov = np.hypot(*(flow - fo).transpose(2, 0, 1)) < cfg.part_beta * rel
    lab = cv2.cvtColor(a, cv2.COLOR_RGB2Lab)

    skin = _lab_hist(lab, hand > 0) if (hand > 0).any() else None
    labels = labels or {}
    Ls = [labels.get((float(cfg.part_side), float(kk))) for kk in cfg.part_ks]
    Ls = [L if L is not None else _graph_labels(lab, kk) for L, kk in zip(Ls, cfg.part_ks)]
    m0 = m.copy()
    area0 = int(m.sum())
    kernel = np.ones((2 * cfg.part_touch + 1,) * 2, np.uint8)
    for _ in range(cfg.part_rounds):
        # near the mask: within part_touch px, as a mixed-colour edge is often a sliver region of its own
        ring = (cv2.dilate(m.astype(np.uint8), kernel) > 0) & ~m
        add = np.zeros_like(m)
        for L in Ls:
            for i in np.unique(L[ring]):
                r = (L == i) & ~m
                ar = int(r.sum())
                if ar < cfg.part_min_frac * area0 or ar > cfg.max_area_frac * h * w:
                    continue
                if (r & (arm > 0)).sum() > cfg.part_max_arm_frac * ar:
                    continue
                ys, xs = np.nonzero(r)
                if _borders_touched(xs, ys, w, h):
                    continue
                if cv2.erode(r.astype(np.uint8), np.ones((3, 3), np.uint8)).sum() < cfg.part_min_core * ar:
                    continue  # a sliver
                if comov[r].mean() < cfg.part_min_comoving:
                    continue
                if skin is not None and float(_lab_hist(lab, r) @ skin) >= cfg.part_max_skin:
                    continue
                add |= r
        if not add.any() or (m | add).sum() > cfg.part_max_growth * area0:
            break
        m |= add
    if not (m & ~m0).any():
        return mask
    return mask | (cv2.resize((m & ~m0).astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0)


def grasp_point(kp: np.ndarray) -> np.ndarray:
    """Centroid of the thumb, index and middle fingertips of one hand's (21,2) keypoints."""
    return kp[[4, 8, 12]].mean(axis=0)


def auto_object_boxes(frames, hand_keypoints: np.ndarray, cfg: ObjectConfig, *, with_seeds: bool = False):
    """Automatic boxes: `propose_object_box` on key frames (every ``cfg.key_stride``-th frame
    with a hand, plus the last), a temporal median over the key boxes, linear interpolation in
    between and the nearest key box held before the first and after the last key.
    Scores: 0.5 key, 0.4 interpolated, 0.3 held, 0 none. Returns ``(boxes, score)``; with
    ``with_seeds`` also ``seeds``: (T, H, W) bool coarse object masks (method "segments": the
    chosen regions of the nearest key frame, moved and scaled from that key's proposal box onto
    the frame's box; see `_segment_proposals`), or None where there are none."""
    res = _auto_object_boxes(frames, hand_keypoints, cfg, with_seeds)
    return res if with_seeds else res[:2]


def _seeds_from_keys(key_masks: dict, prop: dict, boxes: np.ndarray, H: int, W: int) -> np.ndarray:
    """Per-frame seed masks: the nearest key frame's mask mapped from its proposal box onto the
    frame's (smoothed / interpolated) box by scaling and translation."""
    import cv2

    T = len(boxes)
    seeds = np.zeros((T, H, W), bool)
    kt = np.array(sorted(key_masks))
    for t in range(T):
        b = boxes[t]
        if not len(kt) or not np.isfinite(b).all():
            continue
        k = int(kt[np.argmin(np.abs(kt - t))])
        pb = np.asarray(prop[k], np.float64)
        sx = (b[2] - b[0]) / max(pb[2] - pb[0], 1e-3)
        sy = (b[3] - b[1]) / max(pb[3] - pb[1], 1e-3)
        A = np.array([[sx, 0, b[0] - sx * pb[0]], [0, sy, b[1] - sy * pb[1]]], np.float32)
        seeds[t] = cv2.warpAffine(key_masks[k].astype(np.uint8), A, (W, H), flags=cv2.INTER_NEAREST).astype(bool)
    return seeds


def _auto_object_boxes(frames, hand_keypoints: np.ndarray, cfg: ObjectConfig, with_seeds: bool):
    T = len(frames)
    boxes = empty_boxes(T)
    score = np.zeros(T, dtype=np.float32)
    has = [t for t in range(T) if np.isfinite(hand_keypoints[t, :, :, :2]).all(axis=(1, 2)).any()]
    if not has:
        return boxes, score, None
    keys = has[min(cfg.key_offset, len(has) - 1)::max(1, cfg.key_stride)]
    if cfg.key_offset and keys[0] != has[0]:
        keys.insert(0, has[0])
    if keys[-1] != has[-1]:
        keys.append(has[-1])
    prop = {}
    key_masks: dict = {}
    if cfg.method == "segments":
        kps_by_key = {t: [hand_keypoints[t, s, :, :2].astype(np.float64) for s in range(2)
                          if np.isfinite(hand_keypoints[t, s, :, :2]).all()] for t in keys}
        prop = _segment_proposals(frames, kps_by_key, cfg, key_masks if with_seeds else None)
    for t in keys if not prop else []:  # method "grabcut", or no segment candidate anywhere: GrabCut
        kps = [hand_keypoints[t, s, :, :2].astype(np.float64) for s in range(2)
               if np.isfinite(hand_keypoints[t, s, :, :2]).all()]
        motion = None
        if cfg.motion:
            t2 = t + cfg.motion_gap if t + cfg.motion_gap < T else t - cfg.motion_gap
            if 0 <= t2 < T:
                motion = comoving_mask(frames[t], frames[t2], kps)
        b = propose_object_box(frames[t], kps, cfg, motion)
        if np.isfinite(b).all():
            prop[t] = b
    if not prop:
        return boxes, score, None
    kt = np.array(sorted(prop))
    kb = _temporal_median(np.stack([prop[t] for t in kt]), cfg.median_window if cfg.method == "segments" else 3)
    for t in range(T):
        if t in prop:
            boxes[t], score[t] = kb[np.searchsorted(kt, t)], 0.5
        elif kt[0] < t < kt[-1]:
            b = np.searchsorted(kt, t)
            a = b - 1
            w = (t - kt[a]) / (kt[b] - kt[a])
            boxes[t], score[t] = (1 - w) * kb[a] + w * kb[b], 0.4
        else:
            boxes[t], score[t] = kb[0 if t < kt[0] else -1], 0.3
    if cfg.follow_flow and cfg.method == "segments":
        _follow_held(frames, boxes, score, kt, key_masks, prop)
    seeds = None
    if with_seeds and key_masks:
        H, W = frames[0].shape[:2]
        seeds = _seeds_from_keys(key_masks, prop, boxes, H, W)
    return boxes, score, seeds


def _follow_held(frames, boxes: np.ndarray, score: np.ndarray, kt: np.ndarray, key_masks: dict, prop: dict,
                 max_side: int = 160) -> None:
    """Frames before the first / after the last key frame (no hand, so no proposal: the hand
    left the frame or was not detected while the object is still visible and often still
    moving): instead of holding the nearest key box, follow it frame by frame with the optical
    flow of the object's pixels (Farneback, frames downscaled to ``max_side`` px; the pixels are
    the key frame's chosen regions mapped onto the box, or the box itself without them). The
    box moves by their median flow and scales by the least-squares expansion of the flow about
    its centre (clamped to +-10 % per frame). In place; scores stay 0.3 (held)."""
    import cv2

    T = len(frames)
    H, W = frames[0].shape[:2]
    s = min(1.0, max_side / max(H, W))
    size = (max(8, int(round(W * s))), max(8, int(round(H * s))))
    gray = {}

    def g(t):
        if t not in gray:
            gray[t] = cv2.cvtColor(cv2.resize(frames[t], size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        return gray[t]

    for ts, k in ((range(int(kt[-1]) + 1, T), int(kt[-1])), (range(int(kt[0]) - 1, -1, -1), int(kt[0]))):
        prev = k
        for t in ts:
            b = boxes[prev].astype(np.float64)
            if not np.isfinite(b).all():
                break
            flow = cv2.calcOpticalFlowFarneback(g(prev), g(t), None, 0.5, 3, 9, 3, 5, 1.1, 0)
            bs = b * s
            x0, y0 = int(max(0, np.floor(bs[0]))), int(max(0, np.floor(bs[1])))
            x1, y1 = int(min(size[0], np.ceil(bs[2]))), int(min(size[1], np.ceil(bs[3])))
            if x1 - x0 < 2 or y1 - y0 < 2:
                break
            sel = np.ones((y1 - y0, x1 - x0), bool)
            if k in key_masks:  # the key's regions, mapped from its proposal box onto this box
                pb = np.asarray(prop[k], np.float64) * s
                sx, sy = (bs[2] - bs[0]) / max(pb[2] - pb[0], 1e-3), (bs[3] - bs[1]) / max(pb[3] - pb[1], 1e-3)
                A = np.array([[sx * s, 0, bs[0] - sx * pb[0]], [0, sy * s, bs[1] - sy * pb[1]]], np.float32)
                m = cv2.warpAffine(key_masks[k].astype(np.uint8), A, size, flags=cv2.INTER_NEAREST)[y0:y1, x0:x1] > 0
                if m.sum() >= 8:
                    sel = m
            ys, xs = np.nonzero(sel)
            f = flow[y0:y1, x0:x1][ys, xs]
            d = np.median(f, axis=0)
            c = np.array([(bs[0] + bs[2]) / 2, (bs[1] + bs[3]) / 2])
            r = np.stack([xs + x0 + 0.5, ys + y0 + 0.5], axis=1) - c
            sc = float(np.clip(1 + np.sum(r * (f - d)) / max(np.sum(r * r), 1e-6), 0.9, 1.1))
            c2 = (c + d) / s
            hw = (b[2:] - b[:2]) / 2 * sc
            boxes[t] = _clip_box(np.concatenate([c2 - hw, c2 + hw]), W, H)
            prev = t


def _temporal_median(boxes: np.ndarray, k: int) -> np.ndarray:
    out = boxes.copy()
    T = len(boxes)
    h = k // 2
    for t in range(T):
        if not np.isfinite(boxes[t]).all():
            continue
        r = min(h, t, T - 1 - t)  # a centred window, shorter at the ends: a truncated one lags a moving object
        w = boxes[t - r: t + r + 1]
        w = w[np.isfinite(w).all(axis=1)]
        out[t] = np.median(w, axis=0)
    return out


def detect_objects(frames, detections: dict | None, cfg: ObjectConfig | None = None) -> dict[str, np.ndarray]:
    """``object_boxes (T,4)``, ``object_score (T,)`` and ``object_mode`` for ``frames``; in auto
    mode with method "segments" also ``object_seed (T,H,W)`` bool (see `auto_object_boxes`)."""
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
        boxes, score, seeds = auto_object_boxes(frames, kp, cfg, with_seeds=True)
        if seeds is not None:
            return {"object_boxes": boxes.astype(np.float32), "object_score": score.astype(np.float32),
                    "object_mode": mode, "object_seed": seeds}
    return {"object_boxes": boxes.astype(np.float32), "object_score": score.astype(np.float32), "object_mode": mode}

