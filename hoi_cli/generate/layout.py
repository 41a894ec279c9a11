"""Re-HOLD's adaptive layout adjustment: fit the layout of a clip to an object of another shape.

Per frame ``t``, with the source object box ``O = [x0, y0, x1, y1]`` and the hand boxes:

1. **Contact.** The four side centres of ``O`` are ``left (x0, cy)``, ``right (x1, cy)``,
   ``top (cx, y0)``, ``bottom (cx, y1)``. A hand is in contact when the distance from a side
   centre to the hand box (0 when the point lies inside the box) is at most
   ``contact_ratio * max(w, h)``; its contact side is the side with the smallest such distance
   (ties broken by the distance to the hand box's centre). Contact flags are then
   majority-filtered over ``contact_window`` frames.
2. **Resize.** The new object box has the reference's aspect ratio ``a = w/h`` and the size
   given by ``size_mode`` times ``scale``: ``"area"`` keeps the box area (``w*h``), ``"width"``
   keeps the width, ``"height"`` the height, ``"auto"`` picks ``"width"`` when both hands hold
   the object at opposite left/right sides in at least half of the frames (the hands span
   the object), else ``"area"``. The box is resized around the centre of ``O``.
3. **Hands.** A contacting hand box moves horizontally (never vertically) so that it keeps
   its original horizontal distance to the side it touches: for the left side
   ``hx' = x0' + (hx - x0)``, for the right side ``hx' = x1' + (hx - x1)``; for the top and
   bottom sides its offset from the centre is scaled with the width,
   ``hx' = cx' + (hx - cx) * w'/w``. A hand not in contact stays.
4. **Bottom.** With ``align_bottom`` the new box is moved vertically so that its bottom equals
   the original bottom ``y1`` (the object does not float).

Temporal smoothing: the source box (centre x, bottom, width, height) is smoothed with a
NaN-aware Gaussian of ``smooth_sigma`` frames before the adjustment, and the hands' horizontal
shifts with the same sigma after it. Missing boxes (NaN) stay missing.

Convention: boxes ``xyxy`` float32 in working-resolution pixels, NaN = missing; hand axis
``[left, right]``. Side codes: -1 none, 0 left, 1 right, 2 top, 3 bottom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SIDES = ("left", "right", "top", "bottom")
NO_CONTACT, LEFT_SIDE, RIGHT_SIDE, TOP_SIDE, BOTTOM_SIDE = -1, 0, 1, 2, 3


@dataclass
class LayoutParams:
    contact_ratio: float = 0.25  # contact when a side centre is within this * max(w, h) of the hand box
    size_mode: str = "area"  # "area" | "width" | "height" | "auto"
    scale: float = 1.0  # linear size of the new object relative to what size_mode keeps
    align_bottom: bool = True  # keep the original box bottom (no floating)
    shift_hands: bool = True  # move contacting hand boxes horizontally
    smooth_sigma: float = 1.5  # frames; 0 = no smoothing
    contact_window: int = 3  # frames of the majority filter on contact flags (1 = none)
    auto_width_frac: float = 0.5  # "auto": share of frames with two-hand left/right contact to keep the width

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LayoutResult:
    object_boxes: np.ndarray  # (T, 4) adjusted
    hand_boxes: np.ndarray  # (T, 2, 4) adjusted
    contact: np.ndarray  # (T, 2) bool
    contact_side: np.ndarray  # (T, 2) int8, -1 none
    source_object_boxes: np.ndarray  # (T, 4) smoothed source boxes the adjustment started from
    hand_shift: np.ndarray  # (T, 2) px, horizontal
    size_mode: str  # the mode used ("auto" resolved)

    def summary(self) -> dict:
        valid = np.isfinite(self.object_boxes).all(-1)
        return {"size_mode": self.size_mode, "frames_with_object": int(valid.sum()),
                "contact_frames": [int(self.contact[:, k].sum()) for k in range(2)],
                "mean_abs_hand_shift_px": [round(float(np.nanmean(np.abs(self.hand_shift[:, k])))
                                                 if np.isfinite(self.hand_shift[:, k]).any() else 0.0, 3)
                                           for k in range(2)]}


# ---------------------------------------------------------------- per frame
def point_box_distance(point: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Euclidean distance from points ``(..., 2)`` to xyxy boxes ``(..., 4)``; 0 inside."""
    px, py = point[..., 0], point[..., 1]
    dx = np.maximum(np.maximum(box[..., 0] - px, px - box[..., 2]), 0.0)
    dy = np.maximum(np.maximum(box[..., 1] - py, py - box[..., 3]), 0.0)
    return np.hypot(dx, dy)


def side_centres(obj: np.ndarray) -> np.ndarray:
    """``(..., 4, 2)``: left, right, top, bottom side centres of xyxy boxes ``(..., 4)``."""
    x0, y0, x1, y1 = (obj[..., i] for i in range(4))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.stack([np.stack([x0, cy], -1), np.stack([x1, cy], -1),
                     np.stack([cx, y0], -1), np.stack([cx, y1], -1)], -2)


def detect_contact(hand: np.ndarray, obj: np.ndarray, contact_ratio: float) -> int:
    """Contact side of one hand box with one object box (-1: none or missing)."""
    hand, obj = np.asarray(hand, np.float64), np.asarray(obj, np.float64)
    if not (np.isfinite(hand).all() and np.isfinite(obj).all()):
        return NO_CONTACT
    centres = side_centres(obj)  # (4, 2)
    d = point_box_distance(centres, np.broadcast_to(hand, (4, 4)))
    size = max(obj[2] - obj[0], obj[3] - obj[1])
    hc = np.array([(hand[0] + hand[2]) / 2, (hand[1] + hand[3]) / 2])
    dc = np.linalg.norm(centres - hc, axis=-1)
    side = int(np.lexsort((dc, d))[0])
    return side if d[side] <= contact_ratio * size else NO_CONTACT


def resize_box(obj: np.ndarray, aspect: float, mode: str, scale: float = 1.0, align_bottom: bool = True) -> np.ndarray:
    """The object box resized around its centre to ``aspect = w/h`` (see the module docstring)."""
    x0, y0, x1, y1 = (float(v) for v in obj)
    w, h = x1 - x0, y1 - y0
    if mode == "area":
        nh = np.sqrt(w * h / aspect)
        nw = aspect * nh
    elif mode == "width":
        nw, nh = w, w / aspect
    elif mode == "height":
        nw, nh = h * aspect, h
    else:
        raise ValueError(f"unknown size_mode {mode!r}")
    nw, nh = nw * scale, nh * scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if align_bottom:
        cy = y1 - nh / 2
    return np.array([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], dtype=np.float64)


def hand_shift_for(hand: np.ndarray, obj: np.ndarray, new_obj: np.ndarray, side: int) -> float:
    """Horizontal shift (px) of a hand box touching ``side`` of ``obj`` once it becomes ``new_obj``."""
    if side == NO_CONTACT:
        return 0.0
    hx = (hand[0] + hand[2]) / 2
    if side == LEFT_SIDE:
        new_hx = new_obj[0] + (hx - obj[0])
    elif side == RIGHT_SIDE:
        new_hx = new_obj[2] + (hx - obj[2])
    else:
        cx, ncx = (obj[0] + obj[2]) / 2, (new_obj[0] + new_obj[2]) / 2
        w, nw = obj[2] - obj[0], new_obj[2] - new_obj[0]
        new_hx = ncx + (hx - cx) * (nw / w if w > 0 else 1.0)
    return float(new_hx - hx)


def adjust_frame(hands: np.ndarray, obj: np.ndarray, aspect: float, params: LayoutParams | None = None,
                 size_mode: str | None = None):
    """One frame, no smoothing: ``(new_obj (4,), new_hands (2,4), sides (2,))``."""
    p = params or LayoutParams()
    hands = np.asarray(hands, np.float64)
    obj = np.asarray(obj, np.float64)
    if not np.isfinite(obj).all():
        return np.full(4, np.nan), hands.copy(), np.full(2, NO_CONTACT)
    mode = size_mode or (p.size_mode if p.size_mode != "auto" else "area")
    new_obj = resize_box(obj, aspect, mode, p.scale, p.align_bottom)
    sides = np.array([detect_contact(hands[k], obj, p.contact_ratio) for k in range(2)])
    new_hands = hands.copy()
    if p.shift_hands:
        for k in range(2):
            dx = hand_shift_for(hands[k], obj, new_obj, int(sides[k]))
            new_hands[k, [0, 2]] += dx
    return new_obj, new_hands, sides


# ---------------------------------------------------------------- over time
def smooth_nan(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """NaN-aware Gaussian smoothing along ``axis`` (normalised convolution; NaN stays NaN)."""
    x = np.asarray(x, np.float64)
    if sigma <= 0 or x.shape[axis] < 2:
        return x.copy()
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    xm = np.moveaxis(x, axis, 0)
    valid = np.isfinite(xm)
    filled = np.where(valid, xm, 0.0)
    T = xm.shape[0]
    num = np.zeros_like(filled)
    den = np.zeros_like(filled)
    for i, w in zip(range(-r, r + 1), k):
        lo, hi = max(0, -i), min(T, T - i)
        if hi <= lo:
            continue
        num[lo:hi] += w * filled[lo + i:hi + i]
        den[lo:hi] += w * valid[lo + i:hi + i]
    out = np.where(valid, num / np.maximum(den, 1e-12), np.nan)
    return np.moveaxis(out, 0, axis)


def majority_filter(flags: np.ndarray, window: int) -> np.ndarray:
    """Per column, the majority of boolean flags in a centred window of ``window`` frames."""
    flags = np.asarray(flags, bool)
    if window <= 1:
        return flags.copy()
    r = window // 2
    T = flags.shape[0]
    out = np.empty_like(flags)
    for t in range(T):
        seg = flags[max(0, t - r):min(T, t + r + 1)]
        out[t] = seg.sum(0) * 2 > len(seg)
    return out


def adjust_layout(hand_boxes: np.ndarray, object_boxes: np.ndarray, aspect: float,
                  params: LayoutParams | None = None) -> LayoutResult:
    """The adjusted layout of a clip: ``hand_boxes (T,2,4)``, ``object_boxes (T,4)``, reference ``aspect``."""
    p = params or LayoutParams()
    hands = np.asarray(hand_boxes, np.float64)
    obj = np.asarray(object_boxes, np.float64)
    T = obj.shape[0]
    if hands.shape != (T, 2, 4):
        raise ValueError(f"hand_boxes must be (T,2,4) with T={T}, got {hands.shape}")
    if not aspect > 0:
        raise ValueError(f"aspect must be > 0, got {aspect}")
    # smooth the source box as (cx, bottom, w, h)
    cx, bot = (obj[:, 0] + obj[:, 2]) / 2, obj[:, 3]
    w, h = obj[:, 2] - obj[:, 0], obj[:, 3] - obj[:, 1]
    cx, bot, w, h = (smooth_nan(v, p.smooth_sigma) for v in (cx, bot, w, h))
    src = np.stack([cx - w / 2, bot - h, cx + w / 2, bot], -1)

    sides = np.full((T, 2), NO_CONTACT, np.int8)
    for t in range(T):
        for k in range(2):
            sides[t, k] = detect_contact(hands[t, k], src[t], p.contact_ratio)
    contact = majority_filter(sides >= 0, p.contact_window)
    # a frame whose flag the filter switched on keeps the side seen nearest in time
    for k in range(2):
        for t in np.flatnonzero(contact[:, k] & (sides[:, k] < 0)):
            near = [u for u in sorted(range(T), key=lambda u: abs(u - t)) if sides[u, k] >= 0]
            sides[t, k] = sides[near[0], k] if near else NO_CONTACT
        sides[~contact[:, k], k] = NO_CONTACT
    contact = sides >= 0

    mode = p.size_mode
    if mode == "auto":
        has_obj = np.isfinite(src).all(-1)
        span = ((sides[:, 0] == LEFT_SIDE) & (sides[:, 1] == RIGHT_SIDE)) | \
               ((sides[:, 0] == RIGHT_SIDE) & (sides[:, 1] == LEFT_SIDE))
        mode = "width" if has_obj.any() and span[has_obj].mean() >= p.auto_width_frac else "area"

    new_obj = np.full((T, 4), np.nan)
    shift = np.zeros((T, 2))
    for t in range(T):
        if not np.isfinite(src[t]).all():
            continue
        new_obj[t] = resize_box(src[t], aspect, mode, p.scale, p.align_bottom)
        if p.shift_hands:
            for k in range(2):
                if np.isfinite(hands[t, k]).all():
                    shift[t, k] = hand_shift_for(hands[t, k], src[t], new_obj[t], int(sides[t, k]))
    shift[~np.isfinite(hands).all(-1)] = np.nan
    shift = smooth_nan(shift, p.smooth_sigma)
    new_hands = hands.copy()
    new_hands[..., 0] += np.nan_to_num(shift)
    new_hands[..., 2] += np.nan_to_num(shift)
    return LayoutResult(object_boxes=new_obj.astype(np.float32), hand_boxes=new_hands.astype(np.float32),
                        contact=contact, contact_side=sides, source_object_boxes=src.astype(np.float32),
                        hand_shift=shift.astype(np.float32), size_mode=mode)


# ---------------------------------------------------------------- the hand conditions follow the boxes
def shift_columns(maps: np.ndarray, dx: float) -> np.ndarray:
    """``(..., h, w)`` maps moved ``dx`` pixels to the right, zero fill: an integer roll, and for a
    fractional ``dx`` the linear blend of the two integer rolls around it (exact for integer ``dx``)."""
    def roll(k: int) -> np.ndarray:
        out = np.zeros_like(maps)
        w = maps.shape[-1]
        if abs(k) < w:
            if k >= 0:
                out[..., k:] = maps[..., :w - k]
            else:
                out[..., :w + k] = maps[..., -k:]
        return out

    lo = int(np.floor(dx))
    frac = float(dx - lo)
    return roll(lo) if frac == 0.0 else ((1 - frac) * roll(lo) + frac * roll(lo + 1)).astype(maps.dtype)


def hand_owner(hand_boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Which hand each pixel of an ``hw`` map belongs to: ``(h, w)`` int8, 0 left, 1 right, -1 neither box.

    ``hand_boxes (2, 4)`` xyxy in the map's pixels (NaN = missing); a pixel goes to the box nearest to
    its centre (0 inside), ties to the box whose centre is nearer."""
    ys, xs = np.mgrid[0:hw[0], 0:hw[1]] + 0.5
    pts = np.stack([xs, ys], -1)[:, :, None]  # (h, w, 1, 2)
    boxes = np.asarray(hand_boxes, np.float64)
    valid = np.isfinite(boxes).all(-1)
    if not valid.any():
        return np.full(hw, -1, np.int8)
    d = np.where(valid, point_box_distance(pts, np.nan_to_num(boxes)), np.inf)  # (h, w, 2)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    dc = np.where(valid, np.linalg.norm(pts - np.nan_to_num(centres), axis=-1), np.inf)
    owner = np.where(d[..., 0] != d[..., 1], np.argmin(d, -1), np.argmin(dc, -1))
    return owner.astype(np.int8)


def shift_hand_maps(maps: dict, layout: LayoutResult, hand_boxes: np.ndarray, src_hw: tuple[int, int]) -> dict:
    """The hand conditions moved with the layout's hand boxes (``shift_hands``): per frame, each hand's
    ``layout.hand_shift`` (source px, scaled to the maps' width) applied to that hand's channels.

    ``maps``: per-frame maps ``(T, C, h, w)`` (numpy or torch) as `hoi_cli.conditions.clip_conditions`
    gives them; ``hand_boxes (T, 2, 4)``: the *source* boxes in ``src_hw`` px. Moved: ``hand_render``
    (channel k = hand k), ``mlo_normals`` / ``mlo_occlusion`` (the ``left_*`` / ``right_*`` layers of
    `hoi_cli.conventions.MLO_LAYERS`) and ``hand_mask`` (one channel for both hands: each pixel moves
    with the hand whose box is nearest, `hand_owner`). Returns those keys, same types; others are not
    touched (the MLO object layer keeps the source object's place)."""
    from ..conventions import MLO_LAYERS

    shift = np.nan_to_num(np.asarray(layout.hand_shift, np.float64))  # (T, 2); the boxes moved by nan_to_num too
    keys = [k for k in ("hand_mask", "hand_render", "mlo_normals", "mlo_occlusion") if maps.get(k) is not None]
    if not keys or not np.any(shift):
        return {}
    h, w = maps[keys[0]].shape[-2:]
    sx, sy = w / src_hw[1], h / src_hw[0]
    dx = shift * sx
    boxes = np.asarray(hand_boxes, np.float64) * np.array([sx, sy, sx, sy])
    layer_hand = np.array([0 if n.startswith("left_") else 1 if n.startswith("right_") else -1 for n in MLO_LAYERS])
    hands_of = {"hand_render": np.array([0, 1]), "mlo_occlusion": layer_hand, "mlo_normals": np.repeat(layer_hand, 3)}
    out = {}
    for key in keys:
        src = maps[key]
        is_torch = not isinstance(src, np.ndarray)
        a = src.detach().cpu().numpy() if is_torch else src
        res = a.copy()
        for t in range(a.shape[0]):
            if key == "hand_mask":
                owner = hand_owner(boxes[t], (h, w))
                res[t] = np.maximum.reduce([a[t] * (owner < 0), shift_columns(a[t] * (owner == 0), dx[t, 0]),
                                            shift_columns(a[t] * (owner == 1), dx[t, 1])])
            else:
                for k in (0, 1):
                    ch = np.flatnonzero(hands_of[key][:a.shape[1]] == k)
                    if dx[t, k] and len(ch):
                        res[t, ch] = shift_columns(a[t, ch], dx[t, k])
        if is_torch:
            import torch

            res = torch.from_numpy(res).to(src.device, src.dtype)
        out[key] = res
    return out
