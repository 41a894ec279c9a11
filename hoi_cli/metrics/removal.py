"""Object removal: how much of the source object survives in an object-removed video.

Remnant (issue 13's definition): within the reference object mask eroded by 2 px and off the
reference hand mask dilated by 3 px, the fraction of pixels whose mean absolute RGB
difference between the object-removed frame and the source frame is below 10 (the pixel was
left as it was, or filled back with the object's own colours); averaged over the frames where
the object covers at least 0.3% of the image. A clip set's figure is the mean over clips.
0 = nothing of the object is left; 1 = nothing was removed.

Convention: frames ``(T, H, W, 3)`` uint8 RGB, masks ``(T, H, W)`` bool, compared frame t with
frame t. Erosion and dilation by r px use an elliptical (2r+1)x(2r+1) kernel (OpenCV).
"""

from __future__ import annotations

import math

import numpy as np

ERODE_OBJECT_PX = 2
DILATE_HAND_PX = 3
SAME_THRESHOLD = 10.0  # mean |RGB difference| below this = the pixel survived
MIN_OBJECT_FRACTION = 0.003  # frames where the object covers less are not scored


def _morph(mask: np.ndarray, radius: int, op: str) -> np.ndarray:
    import cv2

    if radius <= 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    fn = cv2.erode if op == "erode" else cv2.dilate
    # erosion: outside the image counts as object, so an object cut by the frame edge keeps its edge pixels
    return fn(mask.astype(np.uint8), k, borderType=cv2.BORDER_REPLICATE) > 0


def remnant_region(object_mask: np.ndarray, hand_mask: np.ndarray | None) -> np.ndarray:
    """The scored pixels of one frame: the object eroded by 2 px, less the hand dilated by 3 px."""
    region = _morph(np.asarray(object_mask, bool), ERODE_OBJECT_PX, "erode")
    if hand_mask is not None:
        region &= ~_morph(np.asarray(hand_mask, bool), DILATE_HAND_PX, "dilate")
    return region


def removal_remnant(removed: np.ndarray, source: np.ndarray, object_masks: np.ndarray,
                    hand_masks: np.ndarray | None = None) -> dict:
    """Remnant of one clip: ``{"remnant": mean over scored frames (NaN if none), "per_frame": (T,) NaN
    where not scored, "n_scored": int}``. See the module docstring for the definition."""
    removed, source = np.asarray(removed), np.asarray(source)
    obj = np.asarray(object_masks, bool)
    T = min(len(removed), len(source), len(obj))
    per = np.full(T, np.nan)
    for t in range(T):
        if obj[t].mean() < MIN_OBJECT_FRACTION:
            continue
        region = remnant_region(obj[t], None if hand_masks is None else hand_masks[t])
        if not region.any():  # the hand covers all of it: nothing to score
            continue
        diff = np.abs(removed[t].astype(np.int16) - source[t].astype(np.int16)).mean(axis=-1)
        per[t] = float((diff[region] < SAME_THRESHOLD).mean())
    ok = np.isfinite(per)
    return {"remnant": float(per[ok].mean()) if ok.any() else math.nan, "per_frame": per, "n_scored": int(ok.sum())}
