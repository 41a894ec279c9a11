"""The composite backend: a weight-free cross-object reenactment of a preprocessed clip.

Per clip (precomputed once):

1. **Remove the source object**: `hoi_cli.inpaint.removal_regions` (the mask dilated by
   ``remove_dilate_px``, holes filled, less the hands, completed where missed) is filled by
   `hoi_cli.inpaint.remove_object` (other frames, flow-aligned, then inpainting).
2. **Layout**: Re-HOLD's adaptive layout adjustment (`hoi_cli.generate.layout`) of the source
   object box (from 03_segment's mask, or 01_detect's box where the mask is empty) to the
   reference's aspect ratio.
3. **Per-frame rotation and scale** from the source object mask: the orientation of its
   second moments (used only where the mask is elongated, ``min_elongation``; elsewhere
   interpolated), unwrapped over time, relative to the anchor frame; the scale is
   ``sqrt(convex-hull area / anchor's)``. Both are median-filtered and Gaussian-smoothed
   (``smooth_sigma``), so the object does not jitter. The anchor is the frame given for
   self-reenactment, else the frame with the largest object mask (least occluded); there the
   reference is upright and fills the adjusted box.
4. **Colour**: the reference's LAB mean/std moves a fraction (``harmonize_l``/``harmonize_ab``/
   ``harmonize_std``) toward those of a ring of background around the object box, clamped,
   and smoothed over time.

Per frame (only inside the object's ROI): the reference, pre-scaled once to the clip's
largest placed size with area averaging, is warped (rotation, scale) so that its rotated box
is centred on the adjusted box horizontally and its bottom sits on the adjusted box bottom;
colour-corrected; softened by ``blur_sigma`` to the frame's sharpness; alpha-blended over the
object-removed frame. Then the **hands go back on top** from the source frame (feathered
inside their mask only, so no old-object halo), except where 04_mlo's depth order says the
hand is behind the object: there the object covers it (fingers behind stay hidden).
Without 04_mlo every visible hand pixel is in front.

Convention: frames ``(T,H,W,3)`` uint8 RGB at the working resolution; angles in degrees,
positive = clockwise on screen (image y axis down); boxes xyxy px.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from collections.abc import Callable

import numpy as np

from .layout import LayoutParams, LayoutResult, adjust_layout, smooth_nan
from .reference import Reference


@dataclass
class CompositeParams:
    remove_dilate_px: int = 5  # grow the source object mask before removing it
    rotate: bool = True  # follow the object's in-plane rotation
    max_rotation_deg: float = 75.0  # clamp of the relative rotation
    min_elongation: float = 1.25  # sqrt(eigenvalue ratio) below which the mask's orientation is not trusted
    max_occlusion: float = 0.35  # hand share of the object's neighbourhood up to which a frame's shape is always used
    occlusion_margin: float = 0.1  # ...and up to the clip's least-occluded frame's share plus this
    min_trusted_frac: float = 0.5  # follow rotation only if at least this share of frames is elongated
    follow_scale: bool = True  # follow the object's apparent size (hull area)
    smooth_sigma: float = 1.5  # frames, Gaussian smoothing of angle, scale and colour
    median_window: int = 5  # frames, median filter of angle and scale before the Gaussian
    anchor_frame: int | None = None  # frame where the reference is upright and fills the adjusted box
    harmonize_l: float = 0.1  # fraction of the ring's lightness difference applied to the object
    harmonize_ab: float = 0.1  # fraction of the ring's colour-cast difference
    harmonize_std: float = 0.1  # exponent moving the object's contrast toward the ring's
    max_l_shift: float = 8.0  # clamp, LAB L units
    max_ab_shift: float = 5.0  # clamp, LAB a/b units
    ring_px: int = 12  # width of the background ring around the object box
    blur_sigma: float = 0.6  # px; soften the pasted object to the clip's sharpness (0 = off)
    hand_feather: float = 0.8  # px; inside-only feather of the hand mask
    hands_default_front: bool = True  # without 04_mlo: visible hand pixels are in front

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ObjectTrack:
    angle_deg: np.ndarray  # (T,) relative to the anchor, smoothed
    scale: np.ndarray  # (T,) relative to the anchor, smoothed
    valid: np.ndarray  # (T,) bool: an object is placed
    anchor: int


@dataclass
class CompositeResult:
    frames: np.ndarray | None  # (T,H,W,3) uint8 (None when streamed to a writer)
    layout: LayoutResult
    track: ObjectTrack
    placed_boxes: np.ndarray  # (T,4) axis-aligned box of the placed object
    timings: dict = field(default_factory=dict)


# ---------------------------------------------------------------- per-frame object geometry
def mask_geometry(masks: np.ndarray, hand_masks: np.ndarray | None = None, occ_margin: int = 6):
    """Per frame: orientation (deg, mod 180, y down), elongation sqrt(l1/l2), convex-hull area (px),
    and occlusion: the share of the object's box (grown by ``occ_margin``) covered by hand pixels."""
    import cv2

    T = len(masks)
    ang, elong, hull_area = np.full(T, np.nan), np.full(T, np.nan), np.full(T, np.nan)
    occ = np.zeros(T)
    for t in range(T):
        m = masks[t]
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        if len(xs) < 8:
            continue
        x0, y0 = xs.min(), ys.min()
        pts = np.column_stack([xs - x0, ys - y0]).astype(np.int32)
        hull = cv2.convexHull(pts)
        # moments of the convex hull, not of the mask: fingers carving into the object do not tilt it
        mo = cv2.moments(hull.reshape(-1, 1, 2).astype(np.float32))
        if mo["m00"] <= 1e-6:
            continue
        mu20, mu02, mu11 = mo["mu20"] / mo["m00"], mo["mu02"] / mo["m00"], mo["mu11"] / mo["m00"]
        ang[t] = np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02))
        tr, det = mu20 + mu02, mu20 * mu02 - mu11 ** 2
        disc = np.sqrt(max(tr * tr / 4 - det, 0.0))
        l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 1e-9)
        elong[t] = np.sqrt(l1 / l2)
        hull_area[t] = max(cv2.contourArea(hull), float(len(xs)))
        if hand_masks is not None:
            H, W = m.shape
            bx0, by0 = max(0, x0 - occ_margin), max(0, y0 - occ_margin)
            bx1, by1 = min(W, xs.max() + 1 + occ_margin), min(H, ys.max() + 1 + occ_margin)
            hm = hand_masks[t, by0:by1, bx0:bx1]
            om = m[by0:by1, bx0:bx1]
            occ[t] = hm.sum() / max(1, (hm | om).sum())
    return ang, elong, hull_area, occ


def _median_nan(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return x.copy()
    r = window // 2
    out = x.copy()
    for t in range(len(x)):
        if not np.isfinite(x[t]):
            continue
        seg = x[max(0, t - r):t + r + 1]
        seg = seg[np.isfinite(seg)]
        out[t] = np.median(seg)
    return out


def _interp_nan(x: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Fill NaN at ``where`` by linear interpolation (hold at the ends); others stay as they are."""
    x = x.copy()
    good = np.isfinite(x)
    if not good.any():
        x[where] = 0.0
        return x
    idx = np.arange(len(x))
    fill = np.interp(idx, idx[good], x[good])
    x[where & ~good] = fill[where & ~good]
    return x


def object_track(object_masks: np.ndarray, p: CompositeParams, anchor: int | None = None,
                 hand_masks: np.ndarray | None = None) -> ObjectTrack:
    """Rotation and scale of the source object over time, relative to the anchor frame.

    Frames where hands cover more than ``max(max_occlusion, least + occlusion_margin)`` of the
    object's neighbourhood (``least``: the clip's least-occluded frame) give no
    rotation or scale of their own (the visible part's shape is the fingers', not the object's):
    they are interpolated from the other frames.
    """
    ang, elong, hull, occ = mask_geometry(object_masks, hand_masks)
    valid = np.isfinite(hull)
    least = float(np.min(occ[valid])) if valid.any() else 0.0
    reliable = valid & (occ <= max(p.max_occlusion, least + p.occlusion_margin))
    if not reliable.any():
        reliable = valid
    if not valid.any():
        T = len(object_masks)
        return ObjectTrack(np.zeros(T), np.ones(T), valid, 0)
    if anchor is None or not (0 <= anchor < len(valid)) or not valid[anchor]:
        anchor = int(np.nanargmax(np.where(reliable, hull, -1)))
    # orientation: trusted only where elongated and not occluded; unwrap mod 180 over those frames
    trusted = reliable & (elong >= p.min_elongation)
    if trusted.sum() < p.min_trusted_frac * reliable.sum():  # a round object: its orientation is noise
        trusted[:] = False
    a = np.where(trusted, ang, np.nan)
    idx = np.flatnonzero(trusted)
    if len(idx):
        un = np.degrees(np.unwrap(np.radians(a[idx]) * 2) / 2)
        a[idx] = un
    if p.rotate and len(idx):
        a = _interp_nan(a, valid)
        # relative to the anchor (interpolated there if it was not trusted)
        a = _median_nan(a, p.median_window)
        rel = a - a[anchor]
        rel = np.clip(rel, -p.max_rotation_deg, p.max_rotation_deg)
        rel = smooth_nan(rel, p.smooth_sigma)
    else:
        rel = np.where(valid, 0.0, np.nan)
    if p.follow_scale:
        s = np.where(reliable, np.log(np.sqrt(hull / hull[anchor])), np.nan)
        s = _interp_nan(s, valid)
        s = smooth_nan(_median_nan(s, p.median_window), p.smooth_sigma)
        scale = np.exp(s)
    else:
        scale = np.where(valid, 1.0, np.nan)
    return ObjectTrack(np.nan_to_num(rel), np.nan_to_num(scale, nan=1.0), valid, int(anchor))


def placements(layout: LayoutResult, track: ObjectTrack, ref: Reference):
    """Per frame ``(cx, cy, k_w, k_h, angle_deg)`` of the placed object (in px of the frame), NaN where none.

    At the anchor the unrotated reference fills the adjusted box; elsewhere it is that size
    times the track's scale, rotated, horizontally centred on the adjusted box and with its
    rotated bottom on the adjusted box's bottom.
    """
    T = len(track.valid)
    ob = layout.object_boxes.astype(np.float64)
    a = track.anchor
    if not np.isfinite(ob[a]).all():
        good = np.flatnonzero(np.isfinite(ob).all(-1))
        if len(good) == 0:
            return np.full((T, 5), np.nan)
        a = int(good[np.argmin(np.abs(good - a))])
    base_w, base_h = ob[a, 2] - ob[a, 0], ob[a, 3] - ob[a, 1]
    out = np.full((T, 5), np.nan)
    for t in range(T):
        if not (track.valid[t] and np.isfinite(ob[t]).all()):
            continue
        w, h = base_w * track.scale[t], base_h * track.scale[t]
        th = np.radians(track.angle_deg[t])
        hy = 0.5 * (abs(np.sin(th)) * w + abs(np.cos(th)) * h)
        cx = (ob[t, 0] + ob[t, 2]) / 2
        cy = ob[t, 3] - hy
        out[t] = (cx, cy, w, h, track.angle_deg[t])
    return out


# ---------------------------------------------------------------- colour
def _lab_stats(rgb_pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    if len(rgb_pixels) < 16:
        return np.full(3, np.nan), np.full(3, np.nan)
    lab = cv2.cvtColor(rgb_pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    return lab.mean(0), lab.std(0) + 1e-3


def colour_transfer(background: np.ndarray, boxes: np.ndarray, hand: np.ndarray, remove: np.ndarray,
                    ref_mean: np.ndarray, ref_std: np.ndarray, p: CompositeParams) -> tuple[np.ndarray, np.ndarray]:
    """Per frame LAB gain ``(T,3)`` and offset ``(T,3)``: ``lab' = lab * gain + offset``."""
    T, H, W = background.shape[:3]
    means, stds = np.full((T, 3), np.nan), np.full((T, 3), np.nan)
    for t in range(T):
        b = boxes[t]
        if not np.isfinite(b).all():
            continue
        r = p.ring_px
        x0, y0 = int(max(0, np.floor(b[0]) - r)), int(max(0, np.floor(b[1]) - r))
        x1, y1 = int(min(W, np.ceil(b[2]) + r)), int(min(H, np.ceil(b[3]) + r))
        if x1 <= x0 or y1 <= y0:
            continue
        sel = np.ones((y1 - y0, x1 - x0), bool)
        ix0, iy0 = int(max(0, np.floor(b[0]))) - x0, int(max(0, np.floor(b[1]))) - y0
        ix1, iy1 = int(min(W, np.ceil(b[2]))) - x0, int(min(H, np.ceil(b[3]))) - y0
        sel[max(iy0, 0):max(iy1, 0), max(ix0, 0):max(ix1, 0)] = False
        sel &= ~hand[t, y0:y1, x0:x1] & ~remove[t, y0:y1, x0:x1]
        means[t], stds[t] = _lab_stats(background[t, y0:y1, x0:x1][sel])
    means = smooth_nan(means, max(p.smooth_sigma, 1.0) * 2)
    stds = smooth_nan(stds, max(p.smooth_sigma, 1.0) * 2)
    lam = np.array([p.harmonize_l, p.harmonize_ab, p.harmonize_ab])
    clamp = np.array([p.max_l_shift, p.max_ab_shift, p.max_ab_shift])
    shift = np.clip(lam * (means - ref_mean), -clamp, clamp)
    target_mean = ref_mean + np.nan_to_num(shift)
    ratio = np.clip(np.nan_to_num(stds / ref_std, nan=1.0), 0.25, 4.0)
    gain = ratio ** p.harmonize_std
    offset = target_mean - ref_mean * gain
    return gain.astype(np.float32), offset.astype(np.float32)


# ---------------------------------------------------------------- the backend
class Compositor:
    """Precomputes everything per clip; `render(t)` makes one frame (ROI work only)."""

    def __init__(self, frames: np.ndarray, object_masks: np.ndarray, hand_masks: np.ndarray, ref: Reference,
                 hand_boxes: np.ndarray, object_boxes: np.ndarray | None = None,
                 hand_in_front: np.ndarray | None = None, params: CompositeParams | None = None,
                 layout_params: LayoutParams | None = None, background: np.ndarray | None = None,
                 log: Callable[[str], None] = lambda m: None):
        import cv2

        from ..conventions import box_from_mask
        from ..inpaint import removal_regions, remove_object

        self.p = p = params or CompositeParams()
        self.timings: dict[str, float] = {}
        t0 = time.perf_counter()
        self.frames = frames
        T, H, W = frames.shape[:3]
        self.T, self.H, self.W = T, H, W
        obj = np.asarray(object_masks, bool)
        self.hand = np.asarray(hand_masks, bool)
        self.hand_in_front = hand_in_front
        # source object boxes: the mask's where it has pixels, else the detector's
        boxes = np.stack([box_from_mask(m) for m in obj]).astype(np.float32)
        if object_boxes is not None:
            miss = ~np.isfinite(boxes).all(-1)
            boxes[miss] = np.asarray(object_boxes, np.float32)[miss]
        self.source_boxes = boxes
        # 1. remove the source object
        regions = removal_regions(frames, obj, self.hand, p.remove_dilate_px)  # as 07_genhoi removes it
        self.remove, keep = regions.remove, regions.keep
        # the hands as the removal kept them: missed ones carried over, and a hand mask drawn over the
        # object given back to it (pasting the source's "hand" there would bring the old object back)
        self.hand = keep
        if background is None:
            background = remove_object(frames, self.remove, keep_masks=keep, object_masks=regions.object)
        self.background = background
        self.timings["remove_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        # 2. layout, 3. track, placements
        self.layout = adjust_layout(hand_boxes, boxes, ref.aspect, layout_params)
        self.track = object_track(obj, p, anchor=p.anchor_frame, hand_masks=self.hand)
        self.track.valid &= np.isfinite(boxes).all(-1)
        self.place = placements(self.layout, self.track, ref)
        # the reference pre-scaled once to the largest placed size (area averaging, no aliasing)
        big = np.nanmax(self.place[:, 3]) if np.isfinite(self.place[:, 3]).any() else ref.rgb.shape[0]
        target_h = int(np.clip(np.ceil(big * 1.05), 4, ref.rgb.shape[0]))
        s = target_h / ref.rgb.shape[0]
        size = (max(2, round(ref.rgb.shape[1] * s)), max(2, target_h))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(ref.rgb, size, interpolation=interp).astype(np.float32) / 255.0
        alpha = cv2.resize(ref.alpha, size, interpolation=interp).astype(np.float32)
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
        self.ref_lab_a = np.ascontiguousarray(np.dstack([lab, alpha]))  # (h, w, 4)
        self.ref_hw = (size[1], size[0])
        on = alpha > 0.5
        self.ref_mean, self.ref_std = lab[on].mean(0), lab[on].std(0) + 1e-3
        # 4. colour
        self.gain, self.offset = colour_transfer(self.background, self.layout.object_boxes, self.hand, self.remove,
                                                 self.ref_mean, self.ref_std, p)
        # hands: inside-only feathered alpha, computed per frame in the ROI (cheap)
        self.placed_boxes = np.full((T, 4), np.nan, np.float32)
        self.timings["prepare_s"] = time.perf_counter() - t1

    def _affine(self, t: int) -> np.ndarray | None:
        cx, cy, w, h, ang = self.place[t]
        if not np.isfinite(cx):
            return None
        rh, rw = self.ref_hw
        kx, ky = w / rw, h / rh
        th = np.radians(ang)
        c, s = np.cos(th), np.sin(th)
        # frame = R @ diag(kx, ky) @ (ref - ref_centre) + (cx, cy)
        A = np.array([[c * kx, -s * ky], [s * kx, c * ky]])
        ref_c = np.array([(rw - 1) / 2, (rh - 1) / 2])
        b = np.array([cx, cy]) - A @ ref_c - 0.5 * np.array([kx, ky]) + 0.5  # pixel-centre alignment
        return np.hstack([A, b[:, None]])

    def render(self, t: int) -> np.ndarray:
        import cv2

        p = self.p
        out = self.background[t].copy()
        H, W = self.H, self.W
        M = self._affine(t)
        # area touched this frame: the removed region and the placed object
        ys, xs = np.nonzero(self.remove[t]) if self.remove[t].any() else (np.array([], int), np.array([], int))
        rx0, ry0, rx1, ry1 = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (W, H, 0, 0)
        if M is not None:
            rh, rw = self.ref_hw
            corners = np.array([[0, 0, 1], [rw, 0, 1], [0, rh, 1], [rw, rh, 1]], np.float64) @ M.T
            ox0, oy0 = np.floor(corners.min(0)).astype(int) - 2
            ox1, oy1 = np.ceil(corners.max(0)).astype(int) + 2
            ox0, oy0, ox1, oy1 = max(0, ox0), max(0, oy0), min(W, ox1), min(H, oy1)
            if ox1 > ox0 and oy1 > oy0:
                Mr = M.copy()
                Mr[:, 2] -= (ox0, oy0)
                warped = cv2.warpAffine(self.ref_lab_a, Mr, (ox1 - ox0, oy1 - oy0), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
                lab = warped[..., :3] * self.gain[t] + self.offset[t]
                rgb = cv2.cvtColor(np.ascontiguousarray(lab), cv2.COLOR_Lab2RGB)
                a = warped[..., 3]
                if p.blur_sigma > 0:
                    rgb = cv2.GaussianBlur(rgb, (0, 0), p.blur_sigma)
                    a = cv2.GaussianBlur(a, (0, 0), p.blur_sigma)
                a = np.clip(a, 0, 1)[..., None]
                roi = out[oy0:oy1, ox0:ox1].astype(np.float32)
                out[oy0:oy1, ox0:ox1] = np.clip(rgb * 255.0 * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)
                ys2, xs2 = np.nonzero(a[..., 0] > 0.5)
                if len(xs2):
                    self.placed_boxes[t] = (ox0 + xs2.min(), oy0 + ys2.min(), ox0 + xs2.max() + 1, oy0 + ys2.max() + 1)
                rx0, ry0, rx1, ry1 = min(rx0, ox0), min(ry0, oy0), max(rx1, ox1), max(ry1, oy1)
        if rx1 <= rx0 or ry1 <= ry0:
            return out
        # hands on top (in the touched area only; elsewhere the background is the source frame)
        pad = 2
        rx0, ry0, rx1, ry1 = max(0, rx0 - pad), max(0, ry0 - pad), min(W, rx1 + pad), min(H, ry1 + pad)
        hm = self.hand[t, ry0:ry1, rx0:rx1]
        if self.hand_in_front is not None:
            hm = hm & self.hand_in_front[t, ry0:ry1, rx0:rx1]
        elif not p.hands_default_front:
            return out
        if not hm.any():
            return out
        h = hm.astype(np.float32)
        if p.hand_feather > 0:
            h = cv2.GaussianBlur(h, (0, 0), p.hand_feather) * h  # inside-only: never bleeds onto the object
            h = np.clip(h * 1.5, 0, 1)
        h = h[..., None]
        src = self.frames[t, ry0:ry1, rx0:rx1].astype(np.float32)
        cur = out[ry0:ry1, rx0:rx1].astype(np.float32)
        out[ry0:ry1, rx0:rx1] = (src * h + cur * (1 - h) + 0.5).astype(np.uint8)
        return out


def composite_clip(frames: np.ndarray, object_masks: np.ndarray, hand_masks: np.ndarray, ref: Reference,
                   hand_boxes: np.ndarray, *, object_boxes: np.ndarray | None = None,
                   hand_in_front: np.ndarray | None = None, params: CompositeParams | None = None,
                   layout_params: LayoutParams | None = None, writer=None, keep_frames: bool = True,
                   background: np.ndarray | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   log: Callable[[str], None] = lambda m: None) -> CompositeResult:
    """Run the composite backend over a clip; frames go to ``writer.write`` and/or are returned.

    ``background``: the frames with the source object already removed (07_genhoi's cache).
    """
    comp = Compositor(frames, object_masks, hand_masks, ref, hand_boxes, object_boxes=object_boxes,
                      hand_in_front=hand_in_front, params=params, layout_params=layout_params,
                      background=background, log=log)
    t0 = time.perf_counter()
    outs = []
    for t in range(comp.T):
        f = comp.render(t)
        if writer is not None:
            writer.write(f)
        if keep_frames:
            outs.append(f)
        if progress:
            progress(t + 1, comp.T)
    comp.timings["render_s"] = time.perf_counter() - t0
    return CompositeResult(frames=np.stack(outs) if keep_frames else None, layout=comp.layout, track=comp.track,
                           placed_boxes=comp.placed_boxes, timings=comp.timings)
