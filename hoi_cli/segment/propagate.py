"""An object mask that follows the object from one prompt: dense-flow propagation + GrabCut refinement.

Convention: frames RGB uint8 ``(T, H, W, 3)``; masks bool ``(H, W)`` / ``(T, H, W)``; boxes ``xyxy``
float px, NaN = missing (see `hoi_cli.conventions`).

How (`propagate_masks`):

1. **Anchor.** On the prompted frame the object is cut out of its box by GrabCut
   (`hoi_cli.segment.grabcut.grabcut_box`, the hand as background). A cut whose tight box covers
   little of the prompt box failed (motion blur, a clear glass): it is redone on the sharpest
   nearby frames of the prompt's box track, and failing that the prompt box itself (off the hand)
   is the anchor, unless the prompt frame is a motion smear, far blurrier than the track's frames
   around it (`confident_anchor`). Where none of these holds (a smeared prompt frame under the
   fingers: a "weak" anchor), the clip is propagated from the weak cut, then again (twice the time)
   from a cut on the sharpest frame of that first pass, in a box 1.3 x the prompt's size grown
   past the sides the cut reaches (`clearer_anchor`, "later").
   A colour model of the object against its surroundings
   (`ColourModel`: Lab histograms) is learnt there.
2. **Warp.** Each next frame (forward to the end, then backward to the start, both from the
   anchor) takes the previous mask moved by dense optical flow (OpenCV DIS, computed from the
   new frame to the previous one, so every new pixel looks up where it came from). Where the
   hand covered the object's edge in the previous frame, those hand pixels are warped too as
   "maybe object": the part the fingers uncover comes back.
3. **Refine.** GrabCut in a small ROI around the warped mask, initialised from it: its core
   (eroded by ``sure_frac`` of the object's size) sure object, the rest of it probable object,
   a band of ``band_frac`` around it probable background, everything further sure background,
   the hand sure background (the hand is in front), except where the hand mask has the object's
   colours (``hand_object_prob``: the fitted mesh also covers fingers hidden behind the object).
   The result is kept only if its area stays within ``max_area_jump`` of the warped mask's (and above ``1 / max_area_drop`` of it, unless the
   anchor is the prompt box itself or what GrabCut drops looks like the surroundings: GrabCut
   trimming a little every frame eats a clear glass away), and its colour (mean object probability under
   the anchor's colour model) does not fall below ``min_colour`` of the anchor's; otherwise the
   warped mask (off the hand) is kept: the flow is more reliable than a GrabCut that jumped.
4. **Lost and found.** When the mask shrinks below ``lost_frac`` of the anchor's area, or its
   colour score below ``lost_colour`` of the anchor's, or (optional) it grows past ``max_growth``
   x the anchor's area (the object left the frame, was taken away or is hidden: the warped mask now
   covers background), the frame gets no mask and following frames search the
   frame for it (`reacquire`) where it was last seen (that place moved on with the flow of the
   frames since: a camera that turns away takes it out of view) and, if a hand was near it when it
   was lost, near the hands: connected regions where a colour model of the anchor against its
   whole frame says "object", off the hand, of a plausible area, best mean probability, and not a
   look-alike that was already there beside the object when it was last seen (`seen_beside`: a
   black watch strap on the table is not the black marker that left in the hand); a find is
   refined as above and propagation restarts from it.

Speed: DIS flow (preset ``fast``) at <= ``flow_max_side`` px plus one small GrabCut per frame.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from .grabcut import GrabCutParams, clean_mask, grabcut_box


@dataclass
class PropagateParams:
    flow_max_side: int = 480  # flow on frames downscaled to this long side (0 = full resolution)
    flow_preset: str = "medium"  # DIS preset: ultrafast | fast | medium
    max_side: int = 160  # GrabCut ROI's long side after downscaling, px
    iterations: int = 2  # GrabCut iterations per frame
    band_frac: float = 0.12  # probable-background band around the warped mask, x object size (sqrt area)
    min_band_px: int = 3
    beyond_hand_frac: float = 0.35  # ...reaching this x object size where it runs along the hand (fingers on it)
    sure_frac: float = 0.12  # the warped mask eroded by this x object size is sure object (< 0 = none)
    max_area_jump: float = 1.4  # refined area / warped area outside [1/x, x]: keep the warped mask
    # ...and below 1/x, a tighter floor, unless the anchor is the prompt box itself (a box covers background
    # that GrabCut has to take off). GrabCut trimming a little each frame eats a clear glass away in 15 frames;
    # the hand's pixels are off both masks, so fingers closing over the object do not count as a drop. Tuning
    # (mask / box IoU): 1.4 0.728 / 0.876, 1.2 0.728 / 0.876, 1.1 0.727 / 0.884, 1.05 0.743 / 0.911
    max_area_drop: float = 1.05
    drop_colour: float = 0.2  # ...a larger drop is kept where the pixels dropped look like the surroundings
    # (their mean object probability under the anchor's colour model is below this: an absolute probability, not
    # x the anchor's score as ``min_colour``; tuning box IoU 0.1 0.911, 0.2 0.913, 0.3 0.896, 0.45 0.891, 0 (never
    # kept) 0.911, mask IoU 0.743-0.744 throughout; 0 loses the synthetic rotating bar's far frames, worst IoU 0.64)
    min_colour: float = 0.6  # refined colour score below this x the anchor's: keep the warped mask
    lost_frac: float = 0.08  # mask area below this x the anchor area = the object is lost...
    lost_colour: float = 0.35  # ...and so is a mask whose colour score falls below this x the anchor's
    max_growth: float = 0.0  # ...or whose area exceeds this x the anchor's (spread onto the background; 0 = off:
    # at 3.0 a cup lifted towards the camera was dropped, tuning 176110 0.956 -> 0.544)
    reacquire: bool = True  # search the frame for a lost object by its colour model
    reacquire_whole_frame: bool = True  # the search's colour model: object vs the whole anchor frame (False: vs its ring)
    reacquire_min_prob: float = 0.7  # a find's mean object probability must reach this
    reacquire_area: tuple = (0.15, 3.0)  # ... and its area this range x the anchor area
    reacquire_near: float = 1.0  # ... and it lies within this x the object's size of a hand or where it was last seen
    reacquire_held_only: bool = True  # ...near a hand only if it was near one when lost (else where last seen)
    reacquire_ghost: bool = True  # ...where last seen = its last mask moved by the flow of the frames since
    reacquire_distinct: bool = True  # ...and not a region that was there, object-coloured, beside it when last seen
    hand_erode_px: int = 2  # the hand mask shrunk by this is sure background
    # ...except its pixels whose object probability under the anchor's colour model reaches this (keep it above
    # 0.5: a colour seen neither on the object nor around it scores 0.5): the mesh
    # silhouette also covers fingers behind the object, and there the object is in front (191021's phone: mask
    # IoU 0.775 -> 0.870). Tuning mask / box IoU: off 0.742 / 0.910, 0.6 0.755 / 0.910, 0.75 0.756 / 0.911,
    # 0.9 0.746 / 0.911
    hand_object_prob: float = 0.75
    # use ``soft_hand_masks`` as probable background where given. Off: it took the thumb out of the sponge
    # (tuning 141667 0.785 -> 0.815, mean of 7 tuning rows +0.007) but also the yellow half of a ball, skin-like
    # in colour, under the keypoint mask's thick bones (validation 208810 0.81 -> 0.62, 6 rows 0.707 -> 0.664)
    soft_hand: bool = False
    uncover: bool = True  # previous hand pixels next to the object are "maybe object" in the warp
    vote: int = 1  # temporal majority vote window (1 = off)
    max_hole_frac: float | None = 0.02  # holes this large (x the mask's area) stay open: a mug's handle
    # the anchor is trusted when its tight box covers the prompt box (IoU >= this): a cut that fills a
    # fraction of the user's box failed (a motion-blurred frame, a glass that shows the background)
    anchor_min_box_iou: float = 0.5
    anchor_search: int = 6  # ...else cut the object out of the box track on the sharpest frames this near
    # object and background flows this far apart: motion overrules colour (`motion_consistent`; 0 = off). Off: no
    # gain on the tuning clips (0.728 off, 0.726 on); validation 0.814 -> 0.843 (243, 33576) in an earlier measurement
    motion_px: float = 0.0
    # ...restoring only warped pixels this far inside the warped mask: the flow is smoothed across the object's
    # edge, so its rim moves "with the object" (synthetic rotating bar with motion_px=1: 0.816 -> 0.955 mean IoU
    # at margin 2, 0.962 without the check; tuning 0.726 with the check on, so it stays off)
    motion_margin_px: int = 2
    # a weak anchor (no cut filled its box: a prompt frame smeared by motion, under the fingers) is replaced by
    # a cut on the clearest frame of its first pass, around the prompt's size (`clearer_anchor`; 0 = off); the
    # clip is then propagated twice
    reanchor_tries: int = 3
    reanchor_max_hand: float = 0.25  # ...on frames where the hand covers at most this share of that box
    reanchor_box_scale: float = 1.3  # ...a box this x the prompt's size: room for the part the first pass missed
    box_fallback: bool = True  # ...and where no cut fills its box, the prompt box itself (off the hand) is the anchor,
    box_fallback_fill: float = 0.2  # ...if the cut covers less than this x the box (a thin object lying across its
    # box, cut short at one end, has a small box but a fair mask: synthetic bar: IoU 0.88, box IoU 0.49, fill 0.25;
    # the glass of validation 24815: fill 0.13)
    # ...but not on a prompt frame less sharp than this x the median of the box track's frames within
    # ``anchor_search`` (variance of the Laplacian): there the box holds a smear and the table it crossed, not
    # the object's shape. A marker flicked across the frame: 17 against 170-300 nearby; the clear glass of
    # validation 24815: 299 against 214-276 (not a value tuned: no tuning clip has a weak or box anchor)
    box_fallback_sharp: float = 0.5
    anchor: GrabCutParams = field(default_factory=lambda: GrabCutParams(
        max_side=200, iterations=3, use_prior=False, reuse_models=False, vote=1, grow_frac=0.0, max_hole_frac=0.02))


# ------------------------------------------------------------------ colour model
class ColourModel:
    """Object vs surroundings colour model: quantised Lab histograms, ``prob`` = P(object | colour).
    The surroundings: a ring around the mask (``ring_px``; half the object's size by default), or
    with ``whole_frame`` the rest of the frame (to search a frame for the object: a colour common
    anywhere in the frame is weak evidence of it, though its surroundings lack it)."""

    def __init__(self, image: np.ndarray, mask: np.ndarray, ring_px: int | None = None, bins: int = 12,
                 whole_frame: bool = False):
        self.bins = bins
        lab = self.lab(image)
        if ring_px is None:
            ring_px = max(8, int(0.5 * np.sqrt(mask.sum())))
        k = 2 * ring_px + 1
        ring = ~mask if whole_frame else cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~mask
        if ring.sum() < 16:
            ring = ~mask
        self.fg = self._hist(lab, mask)
        self.bg = self._hist(lab, ring)
        # P(object | colour) with equal priors and a little smoothing
        self.lut = (self.fg + 1e-4) / (self.fg + self.bg + 2e-4)
        self.anchor_score = self.score(image, mask, lab)

    def lab(self, image) -> np.ndarray:
        """The image's quantised Lab bins ``(H, W, 3)`` (pass to `prob` / `score` to reuse them)."""
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab)
        return (lab.astype(np.int32) * self.bins) // 256

    def _hist(self, lab, m):
        idx = (lab[..., 0] * self.bins + lab[..., 1]) * self.bins + lab[..., 2]
        h = np.bincount(idx[m].ravel(), minlength=self.bins ** 3).astype(np.float64)
        return h / max(h.sum(), 1.0)

    def prob(self, image: np.ndarray, lab=None) -> np.ndarray:
        lab = self.lab(image) if lab is None else lab
        return self.lut[(lab[..., 0] * self.bins + lab[..., 1]) * self.bins + lab[..., 2]]

    def score(self, image: np.ndarray, mask: np.ndarray, lab=None) -> float:
        """Mean object probability over ``mask`` (0 for an empty mask)."""
        if not mask.any():
            return 0.0
        return float(self.prob(image, lab)[mask].mean())


# ------------------------------------------------------------------ flow
class FlowWarper:
    """Warps a mask from one frame onto the next with DIS optical flow (next -> previous)."""

    PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

    def __init__(self, frames: np.ndarray, max_side: int = 320, preset: str = "fast"):
        self.frames = frames
        H, W = frames.shape[1:3]
        self.s = min(1.0, max_side / max(H, W)) if max_side else 1.0
        self.size = (max(8, int(round(W * self.s))), max(8, int(round(H * self.s))))
        self.dis = cv2.DISOpticalFlow_create(self.PRESETS[preset])
        self._gray: dict[int, np.ndarray] = {}
        ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
        self.grid = (xs, ys)

    def gray(self, t: int) -> np.ndarray:
        if t not in self._gray:
            g = cv2.cvtColor(self.frames[t], cv2.COLOR_RGB2GRAY)
            if self.s < 1:
                g = cv2.resize(g, self.size, interpolation=cv2.INTER_AREA)
            self._gray[t] = g
        return self._gray[t]

    def flow(self, src: int, dst: int) -> np.ndarray:
        """Flow at ``dst``'s pixels to where they were in ``src`` (frame px, (H, W, 2))."""
        f = self.dis.calc(self.gray(dst), self.gray(src), None)
        if self.s < 1:
            H, W = self.frames.shape[1:3]
            f = cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) / self.s
        return f

    def warp(self, mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
        xs, ys = self.grid
        w = cv2.remap(mask.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return w >= 0.5


# ------------------------------------------------------------------ refinement
def _disk(r: int) -> np.ndarray:
    r = max(1, int(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def refine_mask(image: np.ndarray, warped: np.ndarray, maybe: np.ndarray | None, hand: np.ndarray | None,
                p: PropagateParams, soft_hand: np.ndarray | None = None) -> np.ndarray:
    """GrabCut around ``warped`` initialised from it (see the module docstring); ``maybe``: extra
    probable-object pixels (uncovered by the hand); ``hand``: sure background; ``soft_hand``: a
    looser hand mask whose pixels are only probable background (not sure object either)."""
    H, W = warped.shape
    region = warped if maybe is None else warped | maybe
    if not region.any():
        return warped
    size = np.sqrt(warped.sum())
    band = max(p.min_band_px, int(round(p.band_frac * size)))
    ys, xs = np.nonzero(region)
    reach = max(2 * band, int(round(p.beyond_hand_frac * size)) + band)
    rx0, ry0 = max(0, xs.min() - reach), max(0, ys.min() - reach)
    rx1, ry1 = min(W, xs.max() + 1 + reach), min(H, ys.max() + 1 + reach)
    rw, rh = rx1 - rx0, ry1 - ry0
    scale = min(1.0, p.max_side / max(rw, rh))
    sw, sh = max(4, int(round(rw * scale))), max(4, int(round(rh * scale)))

    def small(m):
        c = m[ry0:ry1, rx0:rx1].astype(np.uint8)
        return (cv2.resize(c * 255, (sw, sh), interpolation=cv2.INTER_AREA) >= 128) if scale < 1 else c.astype(bool)

    seed = np.full((rh, rw), cv2.GC_BGD, np.uint8)
    near = cv2.dilate(region.astype(np.uint8), _disk(band)).astype(bool)
    if hand is not None and hand.any() and p.beyond_hand_frac > 0:
        # the object goes on behind the fingers: past a hand touching it, the band reaches further
        far = cv2.dilate(region.astype(np.uint8), _disk(max(band, int(round(p.beyond_hand_frac * size))))).astype(bool)
        near |= far & cv2.dilate(hand.astype(np.uint8), _disk(band)).astype(bool)
    near = near[ry0:ry1, rx0:rx1]
    seed[near] = cv2.GC_PR_BGD
    seed[region[ry0:ry1, rx0:rx1]] = cv2.GC_PR_FGD
    if p.sure_frac >= 0:
        r = int(round(p.sure_frac * size))
        core = cv2.erode(warped.astype(np.uint8), _disk(r)).astype(bool) if r > 0 else warped
        seed[core[ry0:ry1, rx0:rx1]] = cv2.GC_FGD
    if soft_hand is not None and soft_hand.any():
        seed[soft_hand[ry0:ry1, rx0:rx1] & (seed != cv2.GC_BGD)] = cv2.GC_PR_BGD
    if hand is not None and hand.any():
        hb = hand
        if p.hand_erode_px > 0:
            hb = cv2.erode(hand.astype(np.uint8), _disk(p.hand_erode_px)).astype(bool)
        seed[hb[ry0:ry1, rx0:rx1]] = cv2.GC_BGD
    if scale < 1:
        seed = cv2.resize(seed, (sw, sh), interpolation=cv2.INTER_NEAREST)
    fg = (seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)
    if fg.sum() < 4 or (~fg).sum() < 4:
        return warped & ~(hand if hand is not None else False)
    crop = image[ry0:ry1, rx0:rx1]
    img = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else np.ascontiguousarray(crop)
    img = np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, seed, None, bgd, fgd, max(1, p.iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return warped & ~(hand if hand is not None else False)
    res = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        res = cv2.resize(res * 255, (rw, rh), interpolation=cv2.INTER_LINEAR) >= 128
    out = np.zeros((H, W), bool)
    out[ry0:ry1, rx0:rx1] = res.astype(bool)
    if hand is not None:
        out &= ~hand
    return clean_mask(out, 0.2, warped & out, p.max_hole_frac)


def reacquire(image: np.ndarray, colour: ColourModel, anchor_area: float, hand: np.ndarray | None,
              p: PropagateParams, near: np.ndarray | None = None, other=None) -> np.ndarray | None:
    """The lost object found again by its colour: the connected region (object probability > 0.5,
    off the hand, area within ``reacquire_area`` x the anchor's) with the best mean probability,
    if that reaches ``reacquire_min_prob`` (and it touches ``near``, where given, and ``other(region)``,
    where given, does not say it is another object); None otherwise."""
    prob = colour.prob(image)
    cand = prob > 0.5
    if hand is not None:
        cand &= ~hand
    r = max(1, int(round(0.03 * np.sqrt(anchor_area))))
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, _disk(r))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    lo, hi = p.reacquire_area
    # the object may show in pieces between the fingers: group the confident regions near each other
    # (within a third of the object's size), then pick the group of plausible area with the best score
    good = np.zeros(n, bool)
    for k in range(1, n):
        good[k] = stats[k, cv2.CC_STAT_AREA] >= 4 and float(prob[lab == k].mean()) >= p.reacquire_min_prob
    if not good.any():
        return None
    pieces = good[lab]
    gap = max(2, int(round(0.33 * np.sqrt(anchor_area))))
    ng, groups = cv2.connectedComponents(cv2.dilate(pieces.astype(np.uint8), _disk(gap // 2)), connectivity=8)
    found = []
    for g in range(1, ng):
        m = pieces & (groups == g)
        if not lo * anchor_area <= m.sum() <= hi * anchor_area or (near is not None and not (m & near).any()):
            continue
        found.append((float(prob[m].mean()), g, m))
    for _, _, m in sorted(found, key=lambda c: (-c[0], c[1])):
        if other is None or not other(m):
            return m
    return None


def seen_beside(region: np.ndarray, flow: np.ndarray, last: np.ndarray, last_frame: np.ndarray,
                last_hands: np.ndarray | None, warper: FlowWarper, colour: ColourModel, p: PropagateParams) -> bool:
    """Whether ``region`` (a find) was already there, object-coloured, beside the object on the frame it
    was last seen (``last`` on ``last_frame``): then it is another object that looks like it (a black
    watch strap on the table while the black marker was in the hand); one thing is not in two places.
    ``flow``: from the find's frame to the last-seen one (`FlowWarper.flow`), which moves the region
    there. "Beside": it does not come within 3 px of ``last`` (flow error over a long gap), and off the
    hands there (``last_hands``: what the hand covered then says nothing) its mean object probability
    reaches ``reacquire_min_prob``."""
    there = warper.warp(region, flow)
    if last_hands is not None:
        there &= ~last_hands
    if there.sum() < 0.5 * region.sum() or (there & cv2.dilate(last.astype(np.uint8), _disk(3)).astype(bool)).any():
        return False
    return colour.score(last_frame, there) >= p.reacquire_min_prob


def motion_consistent(refined: np.ndarray, warped: np.ndarray, flow: np.ndarray, hand: np.ndarray | None,
                      min_px: float, margin_px: int = 0) -> np.ndarray:
    """``refined`` corrected by motion where the object moves against its surroundings: the warped
    pixels that GrabCut dropped but that move with the object stay (a lid turning over shows a
    colour the anchor never saw), and pixels it added that stand still with the background go (the
    mask spreading onto a same-coloured wall). Object and background motion: the median flow inside
    the warped mask and in a ring around it (off the hand); a pixel moves with the object where its
    flow is nearer the object's than the background's; a dropped pixel comes back only ``margin_px``
    inside the warped mask (the flow is smoothed across its edge). Unchanged where object and
    background motion differ by < ``min_px``."""
    if not warped.any():
        return refined
    size = np.sqrt(warped.sum())
    r = max(3, round(0.3 * size))
    ring = cv2.dilate(warped.astype(np.uint8), _disk(r)).astype(bool) & ~cv2.dilate(
        warped.astype(np.uint8), _disk(max(2, r // 3))).astype(bool)
    if hand is not None:
        ring &= ~hand
    if ring.sum() < 16:
        return refined
    obj_v = np.median(flow[warped], axis=0)
    bg_v = np.median(flow[ring], axis=0)
    if np.linalg.norm(obj_v - bg_v) < min_px:
        return refined
    d_obj = np.linalg.norm(flow - obj_v, axis=-1)
    d_bg = np.linalg.norm(flow - bg_v, axis=-1)
    with_object = d_obj < d_bg
    restorable = warped
    if margin_px > 0:  # the flow is smoothed across the object's edge: its rim is not evidence
        restorable = cv2.erode(warped.astype(np.uint8), _disk(margin_px)).astype(bool)
    out = (refined & (with_object | warped)) | (restorable & with_object)
    if hand is not None:
        out &= ~hand
    return out


def _within_reach(mask: np.ndarray, anchor_area: float, p: PropagateParams) -> np.ndarray:
    """``mask`` grown by ``reacquire_near`` x the object's size (the square root of its anchor's area)."""
    r = max(2, round(p.reacquire_near * np.sqrt(anchor_area)))
    return cv2.dilate(mask.astype(np.uint8), _disk(r)).astype(bool)


def _where_it_can_be(last: np.ndarray, hands: np.ndarray | None, anchor_area: float, p: PropagateParams,
                     held: bool = True) -> np.ndarray | None:
    """Where a lost object may be found again: within ``reacquire_near`` x its size of where it was
    last seen, or of the ``hands`` if it was ``held`` when it was lost (objects move with the hands that
    hold them; one that left the view as the camera turned is not in the hands: a chair is not found
    again in the wooden counter beside them); None (anywhere) with ``reacquire_near`` <= 0."""
    if p.reacquire_near <= 0:
        return None
    return _within_reach(last | hands if held and hands is not None else last, anchor_area, p)


# ------------------------------------------------------------------ through the clip
def anchor_mask(image: np.ndarray, box, hand: np.ndarray | None, p: PropagateParams) -> np.ndarray:
    """The object on the prompted frame: GrabCut in the prompt box, the hand as background."""
    m, _ = grabcut_box(image, box, params=p.anchor, bg_mask=hand)
    return m


def sharpness(image: np.ndarray, box) -> float:
    """Variance of the Laplacian of the grey image inside ``box`` (higher = sharper; 0 for no box)."""
    H, W = image.shape[:2]
    if box is None or not np.all(np.isfinite(box)):
        return 0.0
    x0, y0 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x1, y1 = int(min(W, np.ceil(box[2]))), int(min(H, np.ceil(box[3])))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    g = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def _fills_box(mask: np.ndarray, box, min_iou: float) -> bool:
    from ..conventions import box_from_mask, box_iou

    if not mask.any():
        return False
    return bool(box_iou(box_from_mask(mask)[None], np.asarray(box, np.float64)[None])[0] >= min_iou)


def box_mask(shape, box, hand: np.ndarray | None) -> np.ndarray:
    """The pixels of ``box`` (xyxy) off the hand."""
    H, W = shape
    m = np.zeros((H, W), bool)
    x0, y0 = int(max(0, round(box[0]))), int(max(0, round(box[1])))
    x1, y1 = int(min(W, round(box[2]))), int(min(H, round(box[3])))
    m[y0:y1, x0:x1] = True
    return m & ~hand if hand is not None else m


def confident_anchor(frames: np.ndarray, box, frame: int, hand_at, p: PropagateParams,
                     track_boxes: np.ndarray | None = None, full_hand: np.ndarray | None = None
                     ) -> tuple[int, np.ndarray, str]:
    """``(frame, mask, how)``: the anchor to propagate from. GrabCut in the prompt box (``how`` =
    "cut") when its mask's box covers the prompt box (``anchor_min_box_iou``); else the same cut on
    the frames of the box track within ``anchor_search`` of the prompt, sharpest first ("near"); else
    the prompt box itself off the hand ("box"; with ``box_fallback``, where the cut covers less than
    ``box_fallback_fill`` of the box and the hand leaves at least half of it, on a prompt frame that is not a
    motion smear: ``box_fallback_sharp``), else the cut ("weak":
    `propagate_masks` looks for a clearer frame to anchor on, `clearer_anchor`)."""
    m = anchor_mask(frames[frame], box, hand_at(frame), p)
    if p.anchor_min_box_iou <= 0 or _fills_box(m, box, p.anchor_min_box_iou):
        return frame, m, "cut"
    blurred = False  # the prompt frame is a motion smear: far less sharp than the box track's frames around it
    if track_boxes is not None and p.anchor_search > 0:
        T = len(frames)
        near = [t for t in range(max(0, frame - p.anchor_search), min(T, frame + p.anchor_search + 1))
                if t != frame and np.all(np.isfinite(track_boxes[t]))]
        base = sharpness(frames[frame], box)
        ranked = sorted(((sharpness(frames[t], track_boxes[t]), t) for t in near), reverse=True)
        blurred = bool(ranked) and base < p.box_fallback_sharp * float(np.median([v for v, _ in ranked]))
        for sharp, t in ranked[:3]:
            if sharp <= base:
                break
            mt = anchor_mask(frames[t], track_boxes[t], hand_at(t), p)
            if _fills_box(mt, track_boxes[t], p.anchor_min_box_iou):
                return t, mt, "near"
    if p.box_fallback:
        bm = box_mask(m.shape, box, hand_at(frame))
        # a box mostly under the hand (``full_hand``: the widest hand mask there) would be mostly
        # background: the object is behind the fingers
        seen = box_mask(m.shape, box, full_hand if full_hand is not None else hand_at(frame))
        whole = box_mask(m.shape, box, None).sum()
        if m.sum() < p.box_fallback_fill * whole and seen.sum() >= 0.5 * whole and not blurred:
            return frame, bm, "box"
    return frame, m, "weak"


def _same_size(mask: np.ndarray, box, min_iou: float) -> bool:
    """Whether ``mask``'s box is ``box``'s size: their IoU with both centred at the same point."""
    from ..conventions import box_from_mask

    if not mask.any():
        return False
    b = box_from_mask(mask)
    w, h, bw, bh = b[2] - b[0], b[3] - b[1], box[2] - box[0], box[3] - box[1]
    inter = min(w, bw) * min(h, bh)
    return bool(inter / max(w * h + bw * bh - inter, 1e-9) >= min_iou)


def clearer_anchor(frames: np.ndarray, masks: np.ndarray, box, hand_at, p: PropagateParams
                   ) -> tuple[int, np.ndarray] | None:
    """``(frame, mask)``: a confident anchor found after a weak one, or None. The first pass from the
    weak anchor still says roughly where the object goes; on its frames the object is cut out
    (`_cut_to_its_edges`) of a box ``reanchor_box_scale`` x the prompt box's size (and no smaller than
    that pass's mask), centred on that pass's mask, where the hand covers at most ``reanchor_max_hand``
    of it; the ``reanchor_tries`` sharpest such frames are tried, and the first cut whose box is the
    prompt box's size (IoU >= ``anchor_min_box_iou`` with both centred) is the anchor.

    Convention: a prompt box 36 x 140 px on a frame where a marker is a smear under the fingers;
    20 frames later the first pass holds a 19 x 50 px piece of it centred at (208, 73): the box cut
    there is 46.8 x 182 px, [184.6, -18, 231.4, 164], clipped to the image [184.6, 0, 231.4, 164],
    where the marker, now lying still, is cut out whole (24 x 150 px: IoU 0.64 with the prompt's
    36 x 140)."""
    H, W = frames.shape[1:3]
    bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
    if p.reanchor_tries <= 0 or not (bw > 2 and bh > 2):
        return None
    candidates = []
    for t in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1)):
        ys, xs = np.nonzero(masks[t])
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        hw = p.reanchor_box_scale * max(bw, xs.max() + 1 - xs.min()) / 2
        hh = p.reanchor_box_scale * max(bh, ys.max() + 1 - ys.min()) / 2
        b = np.array([max(0.0, cx - hw), max(0.0, cy - hh), min(W, cx + hw), min(H, cy + hh)])
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        hand = hand_at(t)
        if hand is not None and hand[y0:y1, x0:x1].sum() > p.reanchor_max_hand * (x1 - x0) * (y1 - y0):
            continue
        candidates.append((sharpness(frames[t], b), int(t), b))
    for _, t, b in sorted(candidates, key=lambda c: -c[0])[:p.reanchor_tries]:
        m = _cut_to_its_edges(frames[t], b, hand_at(t), p)
        if _same_size(m, box, p.anchor_min_box_iou):
            return t, m
    return None


def _cut_to_its_edges(image: np.ndarray, box, hand: np.ndarray | None, p: PropagateParams, grow: float = 0.25,
                      rounds: int = 2) -> np.ndarray:
    """`anchor_mask` in ``box``; where the cut reaches a side of the box that is not the image's edge,
    the object may go on past it: that side moves out by ``grow`` x the box's size and the cut is redone
    (at most ``rounds`` times). A box centred on a piece of the object need not hold all of it."""
    from ..conventions import box_from_mask

    H, W = image.shape[:2]
    b = np.asarray(box, np.float64).copy()
    m = anchor_mask(image, b, hand, p)
    for _ in range(rounds):
        if not m.any():
            break
        c = box_from_mask(m)
        bw, bh = b[2] - b[0], b[3] - b[1]
        step = np.array([-grow * bw, -grow * bh, grow * bw, grow * bh])
        touches = np.array([c[0] <= b[0] + 1 and b[0] > 0, c[1] <= b[1] + 1 and b[1] > 0,
                            c[2] >= b[2] - 1 and b[2] < W, c[3] >= b[3] - 1 and b[3] < H])
        if not touches.any():
            break
        b = np.clip(b + step * touches, 0, [W, H, W, H])
        m = anchor_mask(image, b, hand, p)
    return m


def propagate_masks(frames: np.ndarray, box, frame: int, *, hand_masks: np.ndarray | None = None,
                    soft_hand_masks: np.ndarray | None = None, params: PropagateParams | None = None,
                    init_mask: np.ndarray | None = None, track_boxes: np.ndarray | None = None,
                    progress=None) -> tuple[np.ndarray, dict]:
    """Object masks ``(T, H, W)`` from one prompt: ``box`` (xyxy) on ``frame`` (or ``init_mask``,
    the object's mask there), propagated forward and backward (see the module docstring).
    ``hand_masks`` ``(T, H, W)``: the hands, in front of the object (never object);
    ``soft_hand_masks``: a looser hand mask (e.g. with the 2-D keypoints' thick bones), only
    probable background (``soft_hand`` in `refine_mask`); ``track_boxes`` ``(T, 4)``: the prompt's
    box track, where a failed cut on the prompt frame looks for a sharper frame (`confident_anchor`).

    Returns ``(masks, info)``; ``info``: ``state`` per frame (``anchor``, ``refined``, ``warped``:
    refinement rejected, ``lost``, ``found``: re-acquired by colour), ``colour_score`` per frame (the
    followed mask's mean object probability over the anchor's, and on the frame it was lost the dropped
    mask's; NaN elsewhere), ``anchor``
    (how it was anchored: cut, near, box, weak, later, mask) and ``anchor_frame``."""
    p = params or PropagateParams()
    T, H, W = frames.shape[:3]
    masks = np.zeros((T, H, W), bool)
    state = np.array(["lost"] * T, dtype=object)
    if T == 0:
        return masks, {"state": state, "anchor": "none", "colour_score": np.zeros(0)}
    f = int(np.clip(frame, 0, T - 1))
    hand_at = (lambda t: None) if hand_masks is None else (lambda t: hand_masks[t])
    soft_at = (lambda t: None) if soft_hand_masks is None or not p.soft_hand else (lambda t: soft_hand_masks[t])

    def hands_at(t: int) -> np.ndarray | None:
        """Every hand pixel known on frame t: the hand masks and the looser ones."""
        hands = [m[t] for m in (hand_masks, soft_hand_masks) if m is not None]
        return np.logical_or.reduce(hands) if hands else None
    how = "mask"
    if init_mask is not None:
        m0 = init_mask.astype(bool)
    else:
        full = None
        if soft_hand_masks is not None:
            full = soft_hand_masks[f] | (hand_masks[f] if hand_masks is not None else False)
        f, m0, how = confident_anchor(frames, box, f, hand_at, p, track_boxes, full)
    if not m0.any():
        return masks, {"state": state, "anchor": how, "colour_score": np.full(T, np.nan)}
    masks[f], state[f] = m0, "anchor"
    score = np.full(T, np.nan)  # the followed mask's colour score / the anchor's (NaN: not followed)
    score[f] = 1.0
    colour = ColourModel(frames[f], m0)
    mesh_hand_at = hand_at
    if p.hand_object_prob > 0 and hand_masks is not None:

        def hand_at(t: int) -> np.ndarray | None:
            """The hand off the pixels in the object's colours: the mesh silhouette also covers the fingers
            behind the object, and there the object is in front."""
            h = mesh_hand_at(t)
            if h is None or not h.any():
                return h
            ys, xs = np.nonzero(h)  # the colours are looked up only where the hand is (a hot path)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            out = h.copy()
            out[y0:y1, x0:x1] &= colour.prob(frames[t][y0:y1, x0:x1]) < p.hand_object_prob
            return out
    # a lost object is searched for over the frame: against all of the anchor frame's other colours, not
    # only its surroundings' (a black marker on a white table is not the dark floor past the table's edge)
    finder = ColourModel(frames[f], m0, whole_frame=True) if p.reacquire_whole_frame else colour
    anchor_area = float(m0.sum())
    warper = FlowWarper(frames, p.flow_max_side, p.flow_preset)
    done = [1]

    def tick():
        done[0] += 1
        if progress:
            progress(done[0], T)

    for direction in (1, -1):
        prev_t, prev = f, m0
        lost = held = False
        ghost, ghost_t = m0, f
        for t in range(f + direction, T if direction > 0 else -1, direction):
            hand = hand_at(t)
            image = frames[t]
            if lost:
                found = None
                if p.reacquire:
                    # where it was last seen moves with the scene (a camera that turns away takes it out of view)
                    ghost = warper.warp(ghost, warper.flow(ghost_t, t)) if p.reacquire_ghost else prev
                    ghost_t = t
                    other = None
                    if p.reacquire_distinct:
                        # this frame's flow to the last-seen one: computed once, and only if a region is found
                        flow_back = functools.cache(lambda t=t, last_t=prev_t: warper.flow(t, last_t))

                        def other(region, last=prev, last_t=prev_t, flow_back=flow_back):
                            return seen_beside(region, flow_back(), last, frames[last_t], hands_at(last_t),
                                               warper, finder, p)
                    found = reacquire(image, finder, anchor_area, hand, p,
                                      _where_it_can_be(ghost, hands_at(t), anchor_area, p,
                                                       held=held or not p.reacquire_held_only), other)
                if found is None:
                    tick()
                    continue
                m = refine_mask(image, found, None, hand, p, soft_at(t))
                if m.sum() < p.lost_frac * anchor_area:
                    m = found
                masks[t], state[t] = m, "found"
                score[t] = colour.score(image, m) / max(colour.anchor_score, 1e-9)
                prev_t, prev, lost = t, m, False
            else:
                flow = warper.flow(prev_t, t)
                warped = warper.warp(prev, flow)
                maybe = None
                if p.uncover and hand_masks is not None and hand_masks[prev_t].any():
                    near = cv2.dilate(prev.astype(np.uint8), _disk(max(3, int(0.1 * np.sqrt(prev.sum()))))).astype(bool)
                    maybe = warper.warp(hand_masks[prev_t] & near, flow)
                    if hand is not None:
                        maybe &= ~hand
                m = warped & ~hand if hand is not None else warped
                st = "warped"
                if warped.sum() >= p.lost_frac * anchor_area:
                    r = refine_mask(image, warped, maybe, hand, p, soft_at(t))
                    if p.motion_px > 0:
                        r = motion_consistent(r, m, flow, hand, p.motion_px, p.motion_margin_px)
                    ratio = r.sum() / max(m.sum(), 1)
                    lab = colour.lab(image)
                    floor = 1.0 / p.max_area_jump
                    if how != "box" and ratio < 1.0 / p.max_area_drop:
                        # a larger drop only where the pixels dropped look like the surroundings
                        dropped = m & ~r
                        if colour.score(image, dropped, lab) >= p.drop_colour:
                            floor = 1.0 / min(p.max_area_jump, p.max_area_drop)
                    ok_area = (floor <= ratio <= p.max_area_jump
                               and not (p.max_growth > 0 and r.sum() > p.max_growth * anchor_area))
                    r_score = colour.score(image, r, lab)
                    if ok_area and r_score >= p.min_colour * colour.anchor_score:
                        m, st, m_score = r, "refined", r_score
                if st == "warped":
                    m_score = colour.score(image, m)
                score[t] = m_score / max(colour.anchor_score, 1e-9)
                too_big = p.max_growth > 0 and m.sum() > p.max_growth * anchor_area
                if (m.sum() < p.lost_frac * anchor_area or too_big
                        or m_score < p.lost_colour * colour.anchor_score):
                    lost = True
                    then = hands_at(prev_t)
                    held = then is not None and bool((_within_reach(then, anchor_area, p) & prev).any())
                    ghost, ghost_t = prev, prev_t
                    tick()
                    continue
                masks[t], state[t] = m, st
                prev_t, prev = t, m
            tick()
    if how == "weak":
        # the clearer frame is cut against the hand masks themselves, as the weak anchor was: a weak
        # anchor's colours say little about which hand pixels are the object
        found = clearer_anchor(frames, masks, box, mesh_hand_at, p)
        if found is not None:  # propagate again, from the clearer anchor
            t2, m2 = found
            again = None if progress is None else (lambda d, n: progress(n + d, 2 * n))  # a second pass: 2T steps
            masks2, info2 = propagate_masks(frames, None, t2, hand_masks=hand_masks, soft_hand_masks=soft_hand_masks,
                                            params=p, init_mask=m2, progress=again)
            return masks2, {**info2, "anchor": "later", "anchor_frame": t2, "weak_anchor_frame": f}
    if p.vote > 1:
        from .grabcut import temporal_vote

        masks = temporal_vote(masks, p.vote)
    return masks, {"state": state, "anchor": how, "anchor_frame": f, "colour_score": score}


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight ``xyxy`` box of each mask ``(T, 4)`` float32, NaN where empty."""
    from ..conventions import box_from_mask

    out = np.full((len(masks), 4), np.nan, np.float32)
    for t, m in enumerate(masks):
        out[t] = box_from_mask(m)
    return out


def boxes_through_losses(mask_boxes: np.ndarray, track_boxes: np.ndarray | None, anchor_frame: int,
                         min_iou: float = 0.5, *, shift: bool = True,
                         image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The object's box per frame: its mask's tight box, and through a run of frames where the mask
    was lost, the prompt's box track (01_detect's CSRT boxes) where the track agreed with the mask
    (box IoU >= ``min_iou``) on the frame the loss came from (the run's border on the anchor's side).
    A mask can drop an object whose colour shifts (exposure, something put into it) while the box
    tracker still holds it; a track that had already drifted from the mask is not trusted. With
    ``shift`` the carried boxes keep the offset each edge had from the mask's box on that border
    frame (so the box does not jump where the loss begins), clipped to ``image_size`` (w, h).

    Returns ``(boxes (T, 4) float32, source (T,) uint8)``: 1 = mask, 2 = track, 0 = none (NaN box).

    Convention: anchor 10, masks on 0..12 and 20..29, nothing on 13..19: frames 13..19 take the
    track's boxes if the track's box on frame 12 overlaps frame 12's mask box by IoU >= 0.5, moved
    by frame 12's difference (mask box [10, 10, 30, 40], track [12, 10, 32, 40]: each carried box
    is the track's, 2 px to the left); a run before the anchor looks at its right border instead
    (the frame after it)."""
    from ..conventions import box_iou

    boxes = np.array(mask_boxes, np.float32)
    T = len(boxes)
    have = np.isfinite(boxes).all(axis=1)
    source = have.astype(np.uint8)
    if track_boxes is None or T == 0:
        return boxes, source
    track = np.asarray(track_boxes, np.float64)
    tracked = np.isfinite(track).all(axis=1)
    w, h = image_size if image_size is not None else (0, 0)
    t = 0
    while t < T:
        if have[t]:
            t += 1
            continue
        start = t
        while t < T and not have[t]:
            t += 1
        border = start - 1 if start > anchor_frame else t  # the masked frame the loss came from
        if not (0 <= border < T and have[border] and tracked[border]):
            continue
        if not box_iou(track[border][None], boxes[border][None].astype(np.float64))[0] >= min_iou:
            continue  # (a NaN IoU, from a degenerate box, is no agreement either)
        run = np.arange(start, t)
        run = run[tracked[run]]
        if shift:  # the track's edges, moved by where they stood off the mask's on the border frame
            carried = track[run] + (boxes[border].astype(np.float64) - track[border])
            boxes[run] = np.clip(carried, 0, [w, h, w, h]) if image_size is not None else carried
        else:
            boxes[run] = track[run]
        source[run] = 2
    return boxes, source


def boxes_in_prompt_convention(boxes: np.ndarray, prompt_box, prompt_frame: int,
                               image_size: tuple[int, int] | None = None) -> np.ndarray:
    """The object's boxes drawn the way the user drew the prompt box: each box widened (or narrowed)
    on each side by the margin the prompt box had around the mask's box on the prompt frame, in units
    of the box's own width or height. A user's box says how far the object reaches on that frame,
    including what the fingers hide and however loosely they draw; the mask sees only the visible
    part, and its box stays short of the user's in the same way through the clip (a phone's dark
    bezel GrabCut leaves out, a glass of which only the inside is cut). Unchanged where the prompt
    frame has no box. Clipped to ``image_size`` (w, h) where given.

    Convention: prompt [10, 20, 50, 120] around the prompt frame's mask box [20, 30, 40, 110]
    (w 20, h 80): margins 0.5 w left and right, 0.125 h top and bottom; a later box
    [100, 0, 140, 40] (w 40, h 40) becomes [80, -5, 160, 45], clipped to the image [80, 0, 160, 45]."""
    out = np.array(boxes, np.float64)
    if not 0 <= prompt_frame < len(out):
        return out.astype(np.float32)
    a, pb = out[prompt_frame].copy(), np.asarray(prompt_box, np.float64)
    w, h = a[2] - a[0], a[3] - a[1]
    if not (np.isfinite(a).all() and np.isfinite(pb).all() and w > 0 and h > 0):
        return out.astype(np.float32)
    left, top, right, bottom = (a[0] - pb[0]) / w, (a[1] - pb[1]) / h, (pb[2] - a[2]) / w, (pb[3] - a[3]) / h
    bw, bh = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
    out += np.stack([-left * bw, -top * bh, right * bw, bottom * bh], axis=1)
    if image_size is not None:
        out = np.clip(out, 0, [image_size[0], image_size[1]] * 2)
    return out.astype(np.float32)

