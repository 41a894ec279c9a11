"""Hand recall and false-hand rate of a hand detector against reference hands (issue 12).

Definitions (exact):
    A frame *counts* when it has at least one reference hand: a human-drawn box, or a mask
    covering >= ``MIN_MASK_FRACTION`` (0.3%) of the image (its reference box is the mask's
    bounding box).
    A reference hand is *hit* when a detected hand box has IoU >= ``HIT_IOU`` (0.3) with its
    reference box, or covers >= ``HIT_COVER`` (50%) of it.
    A detected box in a counted frame is *false* when it covers < ``FALSE_COVER`` (10%) of every
    reference hand and < 10% of its own area lies on one. "Lies on" uses the hand's mask where
    one is given (fraction of the box's pixels that are hand pixels), else its reference box.
Recall is counted per reference hand, the false rate per detected box (in counted frames only).
A detected box may be marked *unverifiable* (e.g. the unmasked left hand of a clip whose masks
cover only the right hand): it can hit, but is neither false nor counted in the false rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_MASK_FRACTION = 0.003
HIT_IOU = 0.3
HIT_COVER = 0.5
FALSE_COVER = 0.1


def _area(b) -> float:
    return max(float(b[2] - b[0]), 0.0) * max(float(b[3] - b[1]), 0.0)


def _inter(a, b) -> float:
    ix = max(0.0, min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0])))
    iy = max(0.0, min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1])))
    return ix * iy


def box_iou(a, b) -> float:
    i = _inter(a, b)
    u = _area(a) + _area(b) - i
    return i / u if u > 0 else 0.0


def box_covers(det, ref) -> float:
    """Fraction of ``ref``'s area inside ``det``."""
    return _inter(det, ref) / max(_area(ref), 1e-9)


def _mask_fraction_in_box(mask: np.ndarray, box) -> tuple[float, float]:
    """(fraction of the mask's pixels inside the box, fraction of the box's pixels on the mask);
    pixel (i, j) is inside when its centre (j + 0.5, i + 0.5) is."""
    H, W = mask.shape
    x0, y0 = int(np.clip(np.ceil(box[0] - 0.5), 0, W)), int(np.clip(np.ceil(box[1] - 0.5), 0, H))
    x1, y1 = int(np.clip(np.ceil(box[2] - 0.5), 0, W)), int(np.clip(np.ceil(box[3] - 0.5), 0, H))
    inside = float(mask[y0:y1, x0:x1].sum()) if x1 > x0 and y1 > y0 else 0.0
    return inside / max(float(mask.sum()), 1.0), inside / max(_area(box), 1.0)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Bounding box (xyxy, pixel edges) of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def is_hit(det, ref) -> bool:
    return box_iou(det, ref) >= HIT_IOU or box_covers(det, ref) >= HIT_COVER


@dataclass
class FrameResult:
    hits: list[bool]  # per reference hand
    false: list[bool]  # per detected box (unverifiable ones are False here)
    verifiable: list[bool]  # per detected box


def score_frame(ref_boxes, det_boxes, ref_masks=None, unverifiable=None) -> FrameResult:
    """Hits per reference hand and false flags per detected box in one counted frame.

    ``ref_boxes``: list of xyxy reference boxes; ``ref_masks``: None or a list (same length)
    of boolean masks or None per hand; ``det_boxes``: list of xyxy detected boxes (non-finite
    ones are ignored by the caller); ``unverifiable``: None or bools per detected box."""
    ref_masks = ref_masks if ref_masks is not None else [None] * len(ref_boxes)
    unverifiable = unverifiable if unverifiable is not None else [False] * len(det_boxes)
    hits = [any(is_hit(d, r) for d in det_boxes) for r in ref_boxes]
    false, verif = [], []
    for d, unv in zip(det_boxes, unverifiable):
        on_any = False
        for r, m in zip(ref_boxes, ref_masks):
            if m is not None:
                covers, on = _mask_fraction_in_box(m, d)
            else:
                covers, on = box_covers(d, r), _inter(d, r) / max(_area(d), 1e-9)
            if covers >= FALSE_COVER or on >= FALSE_COVER:
                on_any = True
                break
        false.append(not on_any and not unv)
        verif.append(not unv)
    return FrameResult(hits, false, verif)


@dataclass
class RecallCounts:
    frames: int = 0  # counted frames
    refs: int = 0  # reference hands in counted frames
    hits: int = 0
    dets: int = 0  # verifiable detected boxes in counted frames
    false: int = 0
    unverifiable: int = 0
    hit_flags: list = field(default_factory=list)  # (t, hand index, hit) per reference hand

    @property
    def recall(self) -> float:
        return self.hits / self.refs if self.refs else float("nan")

    @property
    def false_rate(self) -> float:
        return self.false / self.dets if self.dets else 0.0

    def add(self, other: RecallCounts) -> RecallCounts:
        return RecallCounts(self.frames + other.frames, self.refs + other.refs, self.hits + other.hits,
                            self.dets + other.dets, self.false + other.false,
                            self.unverifiable + other.unverifiable, self.hit_flags + other.hit_flags)


def hand_recall(ref_boxes_per_frame, det_boxes_per_frame, ref_masks_per_frame=None,
                unverifiable_per_frame=None) -> RecallCounts:
    """Counts over a clip. ``ref_boxes_per_frame[t]``: list of reference boxes (empty: the frame
    does not count); ``det_boxes_per_frame[t]``: list of detected boxes (NaN boxes skipped)."""
    out = RecallCounts()
    for t, refs in enumerate(ref_boxes_per_frame):
        if not len(refs):
            continue
        dets_all = [np.asarray(d, dtype=np.float64) for d in det_boxes_per_frame[t]]
        unv_all = (unverifiable_per_frame[t] if unverifiable_per_frame is not None else [False] * len(dets_all))
        keep = [i for i, d in enumerate(dets_all) if np.isfinite(d).all()]
        dets, unv = [dets_all[i] for i in keep], [bool(unv_all[i]) for i in keep]
        masks = ref_masks_per_frame[t] if ref_masks_per_frame is not None else None
        r = score_frame(refs, dets, masks, unv)
        out.frames += 1
        out.refs += len(refs)
        out.hits += sum(r.hits)
        out.dets += sum(r.verifiable)
        out.false += sum(r.false)
        out.unverifiable += len(dets) - sum(r.verifiable)
        out.hit_flags += [(t, k, h) for k, h in enumerate(r.hits)]
    return out
