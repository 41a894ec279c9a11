"""Object removal: fill the object's pixels from other frames where that background is visible.

`remove_object(frames, remove_masks, keep_masks=None)` returns the clip with the masked object
replaced by background, as GenHOI's object-removed video needs; `removal_masks` makes the mask
the pipeline removes and the hands it keeps (07_genhoi and the composite backend call both, so
they agree).

Convention:
    ``frames (T, H, W, 3)`` uint8 RGB; ``remove_masks (T, H, W)`` bool, True = pixels to
    replace; ``keep_masks (T, H, W)`` bool or None, True = pixels that stay as they are in their
    own frame (the hands) and are never copied into another frame (they move).

Method:
1. Camera motion. Sparse optical flow (Shi-Tomasi corners + pyramidal Lucas-Kanade) on the
   pixels outside both masks gives a RANSAC homography between consecutive frames, kept only
   where it aligns the background clearly better than no motion (error < 0.85 x the identity's,
   `_explains_motion`: corners on a bare table are noise or a moving arm); chained, they map
   every frame into every other. If no
   consecutive pair moves by more than ``static_px`` (corner displacement), the camera is
   treated as static.
2. Temporal fill, static camera: one background plate shared by all frames (the per-pixel
   median of the frames where the point is background), so the fill does not flicker.
3. Temporal fill, moving camera: for frame t, the nearest other frames are aligned to it in a
   window around its hole by the homography; with ``dense_flow``, OpenCV's DIS flow then
   corrects what the homography misses (parallax), the flow inside the hole (where the target
   shows the object, not the background) interpolated from the ring around it. It is off by
   default: on the InterDyn tuning clips it left the remnant unchanged (0.063 vs 0.065 on
   125021, 0.318 vs 0.316 on 24815) at 6x the time. A hole pixel takes the median of its
   first ``observations`` background sightings, nearest frames first (fewer than all of them
   measured worse: a majority of sightings outvotes a frame whose mask missed a piece of the
   object). A sighting equal to the hole's own pixel (mean absolute RGB difference below
   ``unchanged_diff``) is not taken where the hole shows the object (``object_masks``): that source
   shows it too. In the margin the removal adds around the object the frame shows background, and
   a sighting equal to it is right.
   Nor is one in the object's or the hands' colours (`foreground_coloured`, both steps 2 and 3):
   a piece of the object or of a hand that its frame's masks missed, which would otherwise be
   copied in as background (validation 243: the closed dark case, unmasked in late frames,
   pasted where the open case was).
   Nor is one from a source that disagrees with the target (mean absolute RGB ``agree_diff`` or
   more beyond what a 1-px misalignment makes there, averaged along the ring) on the background
   ring just outside the hole (``agree_ring_px``), at the ring pixel nearest to the hole pixel
   (`_disagrees`): there something the masks do not hold moved (a sari, a duster, a phone's
   screen), and the source would copy it in. With a static camera, a frame whose plate drew on
   such sources takes the median of the agreeing ones there instead (`_refill_static_disagreeing`).
4. The rest (background never seen in any frame) is filled with ``cv2.inpaint`` (Telea); with
   a static camera this is done once on the plate, again so that it does not flicker. Its
   sources are background too: hands and those missed pieces are hidden from it.
5. A filled object pixel that still equals its own frame's pixel (below ``unchanged_diff``) is
   inpainted again in its frame (`_refill_unchanged`): the static plate, or the median of
   sightings each a little off, showed the object there.

Source pixels are background only: never removed, never kept (hands move), with a 2-px rim,
never in the object's or the hands' colours.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import cv2
import numpy as np


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class RemovalRegions(NamedTuple):
    remove: np.ndarray
    """(T, H, W) bool: the pixels the pipeline removes."""
    keep: np.ndarray
    """(T, H, W) bool: the hands it keeps."""
    object: np.ndarray
    """(T, H, W) bool: the part of ``remove`` that shows the object (its colour-grown mask, holes
    filled); the rest is the margin the removal adds around it, which shows background."""


def removal_masks(frames: np.ndarray, object_masks: np.ndarray, hand_masks: np.ndarray | None,
                  dilate_px: int) -> tuple[np.ndarray, np.ndarray]:
    """``(remove, keep)``: `removal_regions`' removal and hands."""
    regions = removal_regions(frames, object_masks, hand_masks, dilate_px)
    return regions.remove, regions.keep


def removal_regions(frames: np.ndarray, object_masks: np.ndarray, hand_masks: np.ndarray | None,
                    dilate_px: int) -> RemovalRegions:
    """What the pipeline removes, the hands it keeps, and which removed pixels show the object
    (07_genhoi and the composite backend both call this, so they agree). ``keep`` is the hand mask
    completed where the detector missed a hand that its neighbouring frames have
    (`complete_hand_masks`)."""
    T = len(object_masks)
    keep = np.zeros(np.shape(object_masks), bool) if hand_masks is None else complete_hand_masks(frames, hand_masks)
    obj = np.asarray(object_masks, bool)
    idx = _colour_index(frames, 16) if obj.any() else None  # one colour index for both colour steps
    grown = grow_by_colour(frames, obj, keep, colour_index=idx)
    keep &= ~(grown & ~obj)  # a hand mask drawn too wide over the object (between the fingers) gives it back
    remove = removal_mask(grown, keep, dilate_px)
    if keep.any():
        # the hand's rim that its mask missed, in the object mask too (a finger its mask cut short, lying on the
        # object: tuning hand pixels erased 0.044 -> 0.035, remnant 0.047 -> 0.049) and in the band around it
        keep |= hand_coloured_rim(frames, remove, keep, obj, dilate_px + 2, colour_index=idx)
        remove &= ~keep
    shows_object = remove & np.array([_fill_holes(g) if g.any() else g for g in grown], bool).reshape(remove.shape)
    return RemovalRegions(remove, keep[:T], shows_object)


def hand_coloured_rim(frames: np.ndarray, band: np.ndarray, keep: np.ndarray, obj: np.ndarray, reach: int,
                      bins: int = 16, colour_index: np.ndarray | None = None) -> np.ndarray:
    """The pixels of ``band`` (the removal: the object mask and the margin around it) that are
    hand-coloured and connected to the hand mask ``keep`` within ``reach`` px: a finger tip or
    knuckle its mask cut short. Hand-coloured: at least as likely under the hands' colour histogram (their inside)
    as under the object's (``obj`` inside), RGB with ``bins`` per channel (``colour_index``: the
    frames' `_colour_index` at those bins, where the caller has it)."""
    k3 = np.ones((3, 3), np.uint8)
    hand_core = np.stack([cv2.erode(m.astype(np.uint8), k3, iterations=2) > 0 for m in keep])
    obj_core = np.stack([cv2.erode(m.astype(np.uint8), k3, iterations=2) > 0 for m in obj]) & ~keep
    if hand_core.sum() < 50 or obj_core.sum() < 50:
        return np.zeros_like(band)
    idx = _colour_index(frames, bins) if colour_index is None else colour_index
    hand_like = _colour_model(idx[hand_core], bins) >= _colour_model(idx[obj_core], bins)
    out = np.zeros_like(band)
    for t in range(len(band)):
        if not band[t].any() or not keep[t].any():
            continue
        cand = (band[t] & hand_like[idx[t]]).astype(np.uint8)
        cur = keep[t].astype(np.uint8)
        for _ in range(reach):  # geodesic: through hand-coloured band pixels only
            nxt = cv2.dilate(cur, k3) & cand | cur
            if np.array_equal(nxt, cur):
                break
            cur = nxt
        out[t] = (cur > 0) & ~keep[t]
    return out


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest pixel of ``mask`` (0 inside it)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)


def _colour_index(frames: np.ndarray, bins: int) -> np.ndarray:
    q = (frames.astype(np.int32) * bins) // 256
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def _colour_model(colour_indices: np.ndarray, bins: int) -> np.ndarray:
    """Normalised RGB histogram (``bins`` per channel, `_colour_index`) with a 0.5 prior per bin."""
    h = np.bincount(colour_indices, minlength=bins ** 3).astype(np.float64) + 0.5
    return h / h.sum()


def grow_by_colour(frames: np.ndarray, object_masks: np.ndarray, keep: np.ndarray, *, bins: int = 16,
                   ratio: float = 3.0, reach: float = 0.5, gap_px: int = 5,
                   colour_index: np.ndarray | None = None) -> np.ndarray:
    """Object masks grown into the pieces of the object they missed next to them.

    Colour models (RGB histograms, ``bins`` per channel) of the object (its masks over the clip,
    eroded), of the background (every pixel over the clip more than ``gap_px`` from the masks and
    off the hands: a ring around the masks, as this used, is largely the piece they missed where
    they miss much, and then that piece looks like background: InterDyn 243's closed dark case;
    tuning remnant 0.138 -> 0.136, share of fill in the object's colours 0.190 -> 0.175) and of
    the hands (``keep``);
    a pixel joins the object where its colour is ``ratio`` times likelier under the object's
    model than under either other, and it is connected to the mask through such pixels within
    ``reach`` x the object's size (the square root of its area), or enclosed by the hand mask
    within that reach. That takes in pixels of a hand mask drawn too wide (the object between
    the fingers), never ones coloured like the hand. ``colour_index``: the frames'
    `_colour_index` at ``bins``, where the caller has it.
    """
    obj = np.asarray(object_masks, bool)
    T = len(obj)
    if not obj.any():
        return obj
    idx = _colour_index(frames, bins) if colour_index is None else colour_index
    k3 = np.ones((3, 3), np.uint8)
    core = np.stack([cv2.erode(m.astype(np.uint8), k3, iterations=2) > 0 for m in obj]) & ~keep
    dist = np.stack([_distance_to(m) for m in obj])  # a distance transform: cheap for any radius
    background = (dist > gap_px) & ~keep
    if core.sum() < 50 or background.sum() < 50:
        return obj
    p_obj, p_bg = _colour_model(idx[core], bins), _colour_model(idx[background], bins)
    # the hands' inside (a hand mask's rim is often object or background)
    hand_core = np.stack([cv2.erode(m.astype(np.uint8), k3, iterations=3) > 0 for m in keep])
    p_hand = _colour_model(idx[hand_core], bins) if hand_core.sum() >= 50 else np.zeros(bins ** 3)
    likely = (p_obj > ratio * p_bg) & (p_obj > ratio * p_hand)
    out = obj.copy()
    for t in range(T):
        area = int(obj[t].sum())
        if area < 16:
            continue
        steps = max(1, int(reach * np.sqrt(area)))
        ys, xs = np.nonzero(obj[t])  # work in the window the growth can reach
        y0, y1 = max(ys.min() - steps, 0), min(ys.max() + steps + 1, obj.shape[1])
        x0, x1 = max(xs.min() - steps, 0), min(xs.max() + steps + 1, obj.shape[2])
        cand = likely[idx[t, y0:y1, x0:x1]].astype(np.uint8)
        cur = obj[t, y0:y1, x0:x1].astype(np.uint8)
        for _ in range(steps):  # geodesic growth: through object-coloured pixels only
            nxt = cv2.dilate(cur, k3) & cand | cur
            if np.array_equal(nxt, cur):
                break
            cur = nxt
        # object-coloured pixels the hand mask encloses (between fingers) that growth cannot reach
        reach_t = dist[t, y0:y1, x0:x1] <= steps
        grown_t = (cur > 0) | (keep[t, y0:y1, x0:x1] & (cand > 0) & reach_t)
        edges = (y0 == 0, y1 == obj.shape[1], x0 == 0, x1 == obj.shape[2])
        out[t, y0:y1, x0:x1] = _bounded_growth(grown_t, obj[t, y0:y1, x0:x1], edges)
    return out


def _bounded_growth(grown: np.ndarray, obj: np.ndarray, at_image_edge: tuple, near: float = 0.15) -> np.ndarray:
    """``grown`` (a window around ``obj``) less its added pieces that run out of the image on a side
    the object mask does not come near (``near`` x its size, at least 3 px); ``at_image_edge``:
    whether the window's (top, bottom, left, right) side is the image's. What enters the frame there
    in the object's colours is an arm or a hand holding it (a light hand on a book's left, validation
    35671: gap 0.3-0.5 x the book's size), while a mask that stops short of the edge the object runs
    out of (the bundled sample's box: 0.04-0.09) still grows to it. (Dropping the pieces that reach
    the growth's reach inside the image too cost tuning 141667 0.033 -> 0.093 remnant.)"""
    near_px = max(3, round(near * np.sqrt(obj.sum())))
    added = (grown & ~obj).astype(np.uint8)
    if not added.any():
        return grown
    sides = ((slice(0, 1), slice(None)), (slice(-1, None), slice(None)),
             (slice(None), slice(0, 1)), (slice(None), slice(-1, None)))
    strips = ((slice(0, near_px), slice(None)), (slice(-near_px, None), slice(None)),
              (slice(None), slice(0, near_px)), (slice(None), slice(-near_px, None)))
    _, lab = cv2.connectedComponents(added, connectivity=8)
    out = grown.copy()
    for edge, strip, at_edge in zip(sides, strips, at_image_edge):
        if not at_edge or obj[strip].any():
            continue
        for k in np.unique(lab[edge]):
            if k:
                out[lab == k] = False
    return out


def complete_hand_masks(frames: np.ndarray, hand_masks: np.ndarray, max_gap: int = 8,
                        drop: float = 0.5) -> np.ndarray:
    """Hand masks with the hands the detector missed put back (a missed hand is still a hand).
    ``max_gap``: tuning hand pixels erased / remnant (through the prompted masks) 0.035 / 0.049 at 4,
    0.029 / 0.051 at 8, about 0.025 / 0.057 at 12 (a hand carried that far covers the object: 176110);
    a kneading fist undetected for the first 5 frames of a clip was erased at 4. One flow jump per
    frame: the further the carry, the less of a moving hand it covers (a synthetic hand moving 2 px a
    frame: 94% of it one frame away, 52% six frames away).

    A frame whose hand area falls below ``drop`` x that of the nearest frame with a hand (within
    ``max_gap`` frames) gets that frame's mask carried over by dense optical flow (OpenCV DIS,
    from this frame to that one), less the pixels whose colour matches the hand worse than the
    rest of the frame (a hand that really left does not stay as a ghost).
    """
    hands = np.asarray(hand_masks, bool).copy()
    T = len(hands)
    areas = hands.reshape(T, -1).sum(1)
    if T < 2 or not areas.any():
        return hands
    gray = None
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    src = np.asarray(hand_masks, bool)
    for t in range(T):
        near = [s for s in sorted(range(max(0, t - max_gap), min(T, t + max_gap + 1)), key=lambda s: abs(s - t))
                if s != t and areas[s] > 0]
        if not near or areas[t] >= drop * areas[near[0]]:
            continue
        s = near[0]
        if gray is None:
            gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
        flow = dis.calc(gray[t], gray[s], None)
        h, w = gray.shape[1:]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        carried = cv2.remap(src[s].astype(np.uint8), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        carried &= _looks_like(frames[t], frames[s], src[s])
        hands[t] |= carried
    return hands


def _looks_like(frame: np.ndarray, model_frame: np.ndarray, model_mask: np.ndarray, bins: int = 16) -> np.ndarray:
    """Pixels of ``frame`` whose (Cr, Cb) colour is likelier under the colours of ``model_mask`` in
    ``model_frame`` than under the rest of that frame (histogram likelihood ratio)."""
    def chroma(img):
        ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
        return (ycc[..., 1].astype(np.int32) * bins // 256) * bins + ycc[..., 2].astype(np.int32) * bins // 256

    c = chroma(model_frame)
    fg = np.bincount(c[model_mask], minlength=bins * bins) + 1.0
    bg = np.bincount(c[~model_mask], minlength=bins * bins) + 1.0
    ratio = (fg / fg.sum()) / (bg / bg.sum())
    return ratio[chroma(frame)] > 1.0


def removal_mask(object_masks: np.ndarray, hand_masks: np.ndarray | None, dilate_px: int) -> np.ndarray:
    """The pixels the pipeline removes: the object mask grown by ``dilate_px`` (soft edges, shadow
    rims, a mask a little short of the object), with its enclosed holes filled (a gap in an object
    mask is a miss far more often than background), less the hand mask (hands are kept)."""
    obj = np.asarray(object_masks, bool)
    out = np.zeros_like(obj)
    k = _disk(dilate_px) if dilate_px > 0 else None
    for t, m in enumerate(obj):
        if not m.any():
            continue
        g = cv2.dilate(m.astype(np.uint8), k) if k is not None else m.astype(np.uint8)
        out[t] = _fill_holes(g)
    if hand_masks is not None:
        out &= ~np.asarray(hand_masks, bool)
    return out


def _fill_holes(m: np.ndarray) -> np.ndarray:
    pad = np.pad(m.astype(np.uint8), 1)
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8), (0, 0), 1)
    return (pad[1:-1, 1:-1] > 0) | (flood[1:-1, 1:-1] == 0)


def _consecutive_homographies(gray: np.ndarray, valid: np.ndarray, max_corners: int = 400) -> list[np.ndarray]:
    """H[t] maps frame t's pixels to frame t+1's (identity where estimation fails)."""
    out = []
    for t in range(len(gray) - 1):
        H = np.eye(3)
        pts = cv2.goodFeaturesToTrack(gray[t], max_corners, 0.01, 6, mask=valid[t].astype(np.uint8) * 255)
        if pts is not None and len(pts) >= 12:
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(gray[t], gray[t + 1], pts, None, winSize=(21, 21), maxLevel=3)
            ok = st.ravel() == 1
            if ok.sum() >= 12:
                a, b = pts[ok].reshape(-1, 2), nxt[ok].reshape(-1, 2)
                inb = np.round(b).astype(int)
                h, w = gray.shape[1:]
                inside = (inb[:, 0] >= 0) & (inb[:, 0] < w) & (inb[:, 1] >= 0) & (inb[:, 1] < h)
                inside[inside] &= valid[t + 1][inb[inside, 1], inb[inside, 0]]
                a, b = a[inside], b[inside]
                if len(a) >= 12:
                    M, inl = cv2.findHomography(a, b, cv2.RANSAC, 2.0)
                    if M is not None and inl is not None and inl.sum() >= 10 and _explains_motion(gray, valid, t, M):
                        H = M
        out.append(H)
    return out


def _explains_motion(gray: np.ndarray, valid: np.ndarray, t: int, M: np.ndarray, gain: float = 0.85,
                     step: int = 2) -> bool:
    """Does ``M`` (frame t -> t+1) align the background clearly better than no motion at all? Its
    mean absolute grey difference over the background (every ``step``-th pixel of frame t+1 that is
    background there and, moved, in frame t) must be below ``gain`` x that of the identity, each
    frame's median level taken off first (an exposure step must not hide a real move). On a still
    camera over a bare table the corners sit on a moving arm or on noise, and RANSAC returns a
    homography that moves the frame corners by 3-30 px while aligning nothing (InterDyn 125021:
    no pair's error below the identity's); taken as camera motion, it sends far-off pixels into
    the fill."""
    h, w = gray.shape[1:]
    src = gray[t].astype(np.float32)
    dst = gray[t + 1].astype(np.float32)
    moved = cv2.warpPerspective(src, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    moved_valid = cv2.warpPerspective(valid[t].astype(np.uint8), M, (w, h), flags=cv2.INTER_NEAREST,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    sub = np.zeros((h, w), bool)
    sub[::step, ::step] = True
    sub &= valid[t + 1] & valid[t] & moved_valid & (moved >= 0)
    if sub.sum() < 100:
        return True  # too little background to judge: trust the points
    d, m, s = dst[sub], moved[sub], src[sub]
    d, m, s = d - np.median(d), m - np.median(m), s - np.median(s)
    return float(np.abs(m - d).mean()) < gain * float(np.abs(s - d).mean())


def _corner_motion(H: np.ndarray, w: int, h: int) -> float:
    c = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    ch = cv2.perspectiveTransform(c[None], H)[0]
    return float(np.abs(ch - c).max())


def estimate_camera_motion(frames: np.ndarray, invalid: np.ndarray | None = None,
                           static_px: float = 0.75) -> list[np.ndarray] | None:
    """Homographies ``A[t]`` mapping frame t into frame 0's view, or None for a static camera."""
    T, h, w = frames.shape[:3]
    if T < 2:
        return None
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    valid = np.ones((T, h, w), bool) if invalid is None else ~invalid
    if invalid is not None:
        valid = np.stack([cv2.erode(v.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) for v in valid])
    Hs = _consecutive_homographies(gray, valid)
    if max(_corner_motion(H, w, h) for H in Hs) <= static_px:
        return None
    A = [np.eye(3)]
    for H in Hs:  # A[t+1] = A[t] @ inv(H[t])  (t+1 -> t -> 0)
        A.append(A[-1] @ np.linalg.inv(H))
    return A


def foreground_coloured(frames: np.ndarray, rem: np.ndarray, keep: np.ndarray, bad: np.ndarray, ratio: float, *,
                        bins: int = 16, core_px: int = 7, hand_core_px: int = 3, rim_px: int = 2) -> np.ndarray:
    """``(T, H, W)`` bool: the pixels outside ``bad`` that are not background all the same: a piece
    of the object or of a hand that its frame's masks missed.

    Their colour is ``ratio`` times likelier under the object's colour model (RGB histogram, ``bins``
    per channel, of the removal masks ``rem`` eroded by ``core_px``, over the clip), or under the
    hands' (``keep`` eroded by ``hand_core_px``), than under the background's: every pixel outside
    ``bad`` over the clip, of which a missed piece is a small part (a ring around the masks would be
    mostly that piece). Specks (a 3x3 opening) are dropped, and the rest grown by ``rim_px`` (a
    piece's blurred edge is neither colour). A colour the background shows as often is not flagged:
    a white object on a white sheet, the wood seen through a clear glass."""
    out = np.zeros(rem.shape, bool)
    if ratio <= 0:
        return out
    core = np.stack([cv2.erode(m.astype(np.uint8), _disk(core_px)) > 0 for m in rem]) & ~keep
    hand_core = np.stack([cv2.erode(m.astype(np.uint8), _disk(hand_core_px)) > 0 for m in keep])
    seen = ~bad[:, ::2, ::2]  # every other pixel: the background model at a quarter of the cost
    if seen.sum() < 50 or core.sum() + hand_core.sum() < 50:
        return out
    idx = _colour_index(frames, bins)
    p_bg = _colour_model(idx[:, ::2, ::2][seen], bins)
    likely = np.zeros(bins ** 3, bool)
    for fg in (core, hand_core):
        if fg.sum() >= 50:
            likely |= _colour_model(idx[fg], bins) > ratio * p_bg
    k3 = np.ones((3, 3), np.uint8)
    for t in range(len(frames)):
        m = cv2.morphologyEx((likely[idx[t]] & ~bad[t]).astype(np.uint8), cv2.MORPH_OPEN, k3)
        if rim_px > 0 and m.any():
            m = cv2.dilate(m, _disk(rim_px))
        out[t] = m > 0
    return out


def _nanmedian(vals: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over axis 0 where ``ok``: (values, found)."""
    v = vals.astype(np.float32)
    v[~ok] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(v, axis=0)
    return np.nan_to_num(med), ok.any(axis=0)


def _spread_inward(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` ``(H, W, C)`` float32 inside ``~known`` from the known values around it (normalised
    convolution, coarse to fine: the nearest known pixels decide where there are any)."""
    out = values.copy()
    if known.all():
        return out
    if not known.any():
        return np.zeros_like(values)
    w = known.astype(np.float32)
    filled = np.zeros_like(values)
    have = np.zeros(known.shape, bool)
    for sigma in (2.0, 6.0, 18.0, 54.0):  # small scales first: the nearest ring decides where it can
        num = cv2.GaussianBlur(values * w[..., None], (0, 0), sigma).reshape(values.shape)
        den = cv2.GaussianBlur(w, (0, 0), sigma)
        ok = (den > 1e-3) & ~have
        filled[ok] = num[ok] / den[ok, None]
        have |= ok
    if not have.all():
        filled[~have] = values[known].mean(axis=0)
    out[~known] = filled[~known]
    return out


def remove_object(frames: np.ndarray, remove_masks: np.ndarray, keep_masks: np.ndarray | None = None,
                  object_masks: np.ndarray | None = None, *,
                  static_px: float = 0.75, inpaint_radius: int = 5, max_sources: int = 32,
                  observations: int = 32, dense_flow: bool = False, margin_px: int = 24,
                  unchanged_diff: float = 12.0, foreground_ratio: float = 4.0, veto_rim_px: int = 2,
                  agree_diff: float = 10.0, agree_ring_px: int = 8) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 with the ``remove_masks`` pixels filled with background.

    ``object_masks``: the removed pixels that show the object (`removal_regions`' ``object``); the
    rest of ``remove_masks`` is the margin around it, which shows background. None: all of them.

    ``unchanged_diff``: a fill closer than this (mean absolute RGB) to the object pixel it replaces
    is the object again (steps 3 and 5; 0 turns that off). Only on ``object_masks``: in the margin a
    fill equal to the frame is the background it shows, and rejecting it left that ring to wrong
    sightings or Telea blur (bench/measure_fill.py: margin MAE down on all 12 clips). 12 from the InterDyn tuning clips' remnant:
    0.142 at 6, 0.130 at 12, 0.128 at 20 (a larger one rejects more true background).

    ``foreground_ratio``: a source pixel this many times likelier under the object's or the hands'
    colour model than under the background's is not background (`foreground_coloured`, grown by
    ``veto_rim_px``; 0 turns that off). 4 from the InterDyn tuning clips (the pipeline's masks), by
    the share of fill in the object's colours (bench/measure_removal.py's obj-fill): 0.210 off,
    0.172 at 2, 0.174 at 4, 0.191 at 8, remnant 0.130-0.132 throughout; 4 over 2 for an object whose
    colours the background shares (tests/test_inpaint.py's white spots). The rim: 2 px over 0 (tuning
    141667, object's colours only: obj-fill 0.239 vs 0.304).

    ``agree_diff``: a sighting is taken only where its source agrees with the target to within this
    (mean absolute RGB, beyond a 1-px misalignment's difference) on the background within
    ``agree_ring_px`` outside the hole, nearest the hole pixel (0 turns that off). 10 from
    bench/measure_fill.py's tuning plates (kept mode): MAE 15.22 off, 14.18 at 6, 14.31 at 10;
    flicker 4.65 off, 4.76 at 6, 4.70 at 10. Without the misalignment slack, 14.57 at 10 with flicker
    4.86, and on validation a patterned cloth (243) lost its good sightings to Telea blur."""
    frames = np.asarray(frames)
    T, H, W = frames.shape[:3]
    rem = np.asarray(remove_masks, bool).copy()
    keep = np.zeros_like(rem) if keep_masks is None else np.asarray(keep_masks, bool)
    rem &= ~keep
    out = frames.copy()
    if not rem.any():
        return out
    # where a fill equal to the frame's pixel is the object again (the margin shows background)
    shows_object = rem if object_masks is None else rem & np.asarray(object_masks, bool)
    bad = np.stack([cv2.dilate((r | k).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                    for r, k in zip(rem, keep)])
    A = estimate_camera_motion(frames, bad, static_px)
    # a fill source is background: never removed or kept, nor a piece of the object or a hand its masks missed
    unseen = bad | foreground_coloured(frames, rem, keep, bad, foreground_ratio, rim_px=veto_rim_px)
    if A is None:
        _fill_static(frames, rem, unseen, out, inpaint_radius)
        if agree_diff > 0:
            _refill_static_disagreeing(frames, out, rem, unseen, agree_diff, agree_ring_px, inpaint_radius)
        _refill_unchanged(frames, out, rem, shows_object, unseen, unchanged_diff, inpaint_radius)
        return out
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]) if dense_flow else None
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST) if dense_flow else None
    for t in range(T):
        if not rem[t].any():
            continue
        ys, xs = np.nonzero(rem[t])
        x0, y0 = max(xs.min() - margin_px, 0), max(ys.min() - margin_px, 0)
        x1, y1 = min(xs.max() + margin_px + 1, W), min(ys.max() + margin_px + 1, H)
        hole = rem[t, y0:y1, x0:x1]
        hy, hx = np.nonzero(hole)
        hole_px = frames[t, y0 + hy, x0 + hx].astype(np.int16)  # the object, as this frame shows it
        on_object = shows_object[t, y0 + hy, x0 + hx]
        # where the target itself is background: the flow is measured there, interpolated elsewhere
        known = ~bad[t, y0:y1, x0:x1]
        # the target's background just outside the hole, which a source must agree with (``agree_diff``)
        ring = ~unseen[t, y0:y1, x0:x1] & (_distance_to(hole) <= agree_ring_px)
        nearest = _nearest_ring_pixel(ring, hy, hx) if agree_diff > 0 else None
        target = frames[t, y0:y1, x0:x1].astype(np.float32)
        slack = _misalignment_slack(target) if nearest is not None else None
        shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)  # ROI -> frame
        vals, oks = [], []
        count = np.zeros(len(hy), np.int32)
        order = sorted((s for s in range(T) if s != t), key=lambda s: (abs(s - t), s))[:max_sources]
        for s in order:
            M = np.linalg.inv(shift) @ np.linalg.inv(A[t]) @ A[s]  # s -> 0 -> t -> ROI
            size = (x1 - x0, y1 - y0)
            warped = cv2.warpPerspective(frames[s], M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            vis = cv2.warpPerspective((~unseen[s]).astype(np.uint8), M, size, flags=cv2.INTER_NEAREST,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
            if not vis[hole].any():
                continue
            if dense_flow and known.sum() >= 64:
                g = cv2.warpPerspective(gray[s], M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                # the target's hole shows the object, not background: give it the source's pixels, so
                # that the flow there is the ring's and the object does not drag the flow around it
                tg = gray[t, y0:y1, x0:x1].copy()
                tg[~known] = g[~known]
                flow = dis.calc(tg, g, None)
                flow = _spread_inward(flow, known & vis)
                gx, gy = np.meshgrid(np.arange(size[0], dtype=np.float32), np.arange(size[1], dtype=np.float32))
                mx, my = gx + flow[..., 0], gy + flow[..., 1]
                warped = cv2.remap(warped, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                vis = cv2.remap(vis.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0).astype(bool)
            ok = vis[hy, hx] & (count < observations)
            if unchanged_diff > 0:  # a source pixel equal to the object's shows the object, not background
                ok &= ~on_object | (np.abs(warped[hy, hx].astype(np.int16) - hole_px).mean(-1) >= unchanged_diff)
            if nearest is not None and ok.any():
                ok &= ~_disagrees(warped, target, ring & vis, nearest, agree_diff, slack)
            if not ok.any():
                continue
            vals.append(warped[hy, hx])
            oks.append(ok)
            count += ok
            if (count >= observations).all():
                break
        f = out[t]
        found = np.zeros(len(hy), bool)
        if vals:
            med, found = _nanmedian(np.stack(vals), np.stack(oks))
            f[y0 + hy[found], x0 + hx[found]] = np.clip(np.round(med[found]), 0, 255).astype(np.uint8)
        if (~found).any():
            # in the ROI: its margin (``margin_px``) holds what the inpainting reads around the hole
            miss = np.zeros(hole.shape, bool)
            miss[hy[~found], hx[~found]] = True
            # kept pixels (hands) and missed pieces of the object are not background: hide them from
            # the inpainting's sources too
            guard = (unseen[t] & ~rem[t])[y0:y1, x0:x1]
            win = f[y0:y1, x0:x1]
            filled = cv2.inpaint(np.ascontiguousarray(win), (miss | guard).astype(np.uint8), inpaint_radius,
                                 cv2.INPAINT_TELEA)
            win[miss] = filled[miss]
    _refill_unchanged(frames, out, rem, shows_object, unseen, unchanged_diff, inpaint_radius)
    return out


def _nearest_ring_pixel(ring: np.ndarray, hy: np.ndarray, hx: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For each pixel ``(hy, hx)``, the coordinates of the nearest pixel of ``ring`` (None: no ring)."""
    if not ring.any():
        return None
    _, labels = cv2.distanceTransformWithLabels((~ring).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ry, rx = np.nonzero(ring)  # the labels number the ring's pixels in this (raster) order, from 1
    lab = labels[hy, hx] - 1
    return ry[lab], rx[lab]


def _misalignment_slack(target: np.ndarray) -> np.ndarray:
    """``(H, W)``: the mean absolute RGB difference a 1-px misalignment makes at each pixel of
    ``target`` (its larger one-pixel step, across or down): a patterned cloth differs that much
    from itself, moved a pixel, where a bare table does not."""
    dx = np.abs(np.diff(target, axis=1, append=target[:, -1:]))
    dy = np.abs(np.diff(target, axis=0, append=target[-1:]))
    return np.maximum(dx, dy).mean(-1)


def _disagrees(source: np.ndarray, target: np.ndarray, ring: np.ndarray, nearest: tuple[np.ndarray, np.ndarray],
               max_diff: float, slack: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Per hole pixel: does the aligned ``source`` differ from ``target`` by ``max_diff`` or more (mean
    absolute RGB beyond the ``slack`` a pixel's misalignment makes, `_misalignment_slack`, averaged
    along the ring with a Gaussian of ``sigma`` px) on the background ``ring`` just outside the hole,
    at the ring pixel ``nearest`` to it? False where the source shows none of the ring there (no
    evidence)."""
    w = ring.astype(np.float32)
    d = np.maximum(np.abs(source.astype(np.float32) - target).mean(-1) - slack, 0) * w
    num = cv2.GaussianBlur(d, (0, 0), sigma)[nearest]
    den = cv2.GaussianBlur(w, (0, 0), sigma)[nearest]
    return (den > 0.05) & (num >= max_diff * den)


def _refill_unchanged(frames: np.ndarray, out: np.ndarray, rem: np.ndarray, shows_object: np.ndarray,
                      unseen: np.ndarray, max_diff: float, inpaint_radius: int) -> None:
    """Inpaint (Telea, in its own frame) every filled pixel of ``shows_object`` that came back as it
    was (mean absolute RGB difference < ``max_diff``). There the hole shows the object, so a fill
    equal to it is the object again: other frames' masks missed it there, or it rests in the same
    place in every frame (validation 243's closed case; static plates have no per-frame sightings
    to reject). The rest of ``rem`` (the margin, background) is left as filled, and is a source of
    the inpainting. Changes ``out`` in place."""
    if max_diff <= 0:
        return
    for t in range(len(out)):
        if not shows_object[t].any():
            continue
        ys, xs = np.nonzero(shows_object[t])
        same = np.abs(out[t, ys, xs].astype(np.int16) - frames[t, ys, xs].astype(np.int16)).mean(-1) < max_diff
        if not same.any():
            continue
        # in a window around those pixels (the inpainting reads ``inpaint_radius`` px around them)
        m = 3 * inpaint_radius + 4
        H, W = rem.shape[1:]
        y0, y1 = max(ys[same].min() - m, 0), min(ys[same].max() + m + 1, H)
        x0, x1 = max(xs[same].min() - m, 0), min(xs[same].max() + m + 1, W)
        miss = np.zeros((y1 - y0, x1 - x0), bool)
        miss[ys[same] - y0, xs[same] - x0] = True
        guard = (unseen[t] & ~rem[t])[y0:y1, x0:x1]  # hands, missed object: not the inpainting's sources
        win = out[t, y0:y1, x0:x1]
        filled = cv2.inpaint(np.ascontiguousarray(win), (miss | guard).astype(np.uint8), inpaint_radius,
                             cv2.INPAINT_TELEA)
        win[miss] = filled[miss]


def _fill_static(frames: np.ndarray, rem: np.ndarray, unseen: np.ndarray, out: np.ndarray, inpaint_radius: int) -> None:
    """Static camera: one background plate for the whole clip, from background observations only
    (never hands or object, `unseen`), over the region to fill plus a margin for the inpainting's sources."""
    T, H, W = frames.shape[:3]
    ys, xs = np.nonzero(rem.any(axis=0))
    margin = 3 * inpaint_radius + 4
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, H)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, W)
    crop = frames[:, y0:y1, x0:x1].reshape(T, -1, 3)
    ok = ~unseen[:, y0:y1, x0:x1].reshape(T, -1)
    med, found = _nanmedian(crop, ok)
    plate = np.clip(np.round(med), 0, 255).astype(np.uint8).reshape(y1 - y0, x1 - x0, 3)
    hole = (~found).reshape(y1 - y0, x1 - x0).astype(np.uint8)  # never background: object or hand always
    if hole.any():
        plate = cv2.inpaint(plate, hole, inpaint_radius, cv2.INPAINT_TELEA)
    full = np.zeros((H, W, 3), np.uint8)
    full[y0:y1, x0:x1] = plate
    out[rem] = np.broadcast_to(full, frames.shape)[rem]


def _refill_static_disagreeing(frames: np.ndarray, out: np.ndarray, rem: np.ndarray, unseen: np.ndarray,
                               agree_diff: float, ring_px: int, inpaint_radius: int) -> None:
    """Static camera: where a frame's plate (`_fill_static`) drew on frames that disagree with it
    around the hole (`_disagrees`: something unmasked moved there), that frame's hole pixels take the
    median of the agreeing frames' sightings instead, and are inpainted (Telea, in their frame) where
    none agrees. A pixel no frame disagrees at keeps the plate. Changes ``out`` in place."""
    T, H, W = frames.shape[:3]
    margin = max(ring_px, 3 * inpaint_radius + 4)
    for t in range(T):
        if not rem[t].any():
            continue
        ys, xs = np.nonzero(rem[t])
        y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, H)
        x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, W)
        hole = rem[t, y0:y1, x0:x1]
        hy, hx = np.nonzero(hole)
        seen = ~unseen[:, y0:y1, x0:x1]
        ring = seen[t] & (_distance_to(hole) <= ring_px)
        nearest = _nearest_ring_pixel(ring, hy, hx)
        if nearest is None:
            continue
        crop = frames[:, y0:y1, x0:x1]
        target = crop[t].astype(np.float32)
        slack = _misalignment_slack(target)
        ok = seen[:, hy, hx]
        rejected = np.zeros(len(hy), bool)
        for s in range(T):
            if s != t and ok[s].any():
                bad = ok[s] & _disagrees(crop[s], target, ring & seen[s], nearest, agree_diff, slack)
                ok[s] &= ~bad
                rejected |= bad
        if not rejected.any():
            continue
        med, found = _nanmedian(crop[:, hy[rejected], hx[rejected]], ok[:, rejected])
        win = out[t, y0:y1, x0:x1]
        win[hy[rejected][found], hx[rejected][found]] = np.clip(np.round(med[found]), 0, 255).astype(np.uint8)
        if (~found).any():
            miss = np.zeros(hole.shape, bool)
            miss[hy[rejected][~found], hx[rejected][~found]] = True
            guard = (unseen[t] & ~rem[t])[y0:y1, x0:x1]  # hands, missed object: not the inpainting's sources
            filled = cv2.inpaint(np.ascontiguousarray(win), (miss | guard).astype(np.uint8), inpaint_radius,
                                 cv2.INPAINT_TELEA)
            win[miss] = filled[miss]
