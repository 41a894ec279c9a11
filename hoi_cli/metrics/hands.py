"""Hand metrics: agreement, fidelity and keypoint error between generated and reference clips.

All three compare hand detections, run with the same detector on both clips (`detect`):
the project's MediaPipe-based detector (`hoi_cli.detect.hands.detect_hands`: MediaPipe's
bundled hand model with the recall improvements of 01_detect) where it is importable, else
plain ``mp.solutions.hands``; the output names the detector used. HOI-Swap used the 100DOH
detector, whose weights are no longer available, so numbers are not comparable with HOI-Swap's.

Detections are the contract arrays: ``hand_boxes (T,2,4)`` xyxy px, ``hand_keypoints
(T,2,21,3)`` (x, y px, score), ``hand_score (T,2)``, slot 0 = left hand, 1 = right; NaN =
missing. Hands the detector only interpolated between detections (``hand_interpolated``)
count as missing: they were not detected in that frame.

Convention (matching and counting):
    Hands are matched by handedness slot (left with left, right with right). The unit is a
    (frame, slot) pair in which the REFERENCE has a hand ("reference hands"). A reference
    hand that the generated frame lacks is a miss.
"""

from __future__ import annotations

import math

import numpy as np


def _valid(det: dict) -> np.ndarray:
    score = np.asarray(det["hand_score"], dtype=np.float64)
    ok = np.isfinite(score) & np.isfinite(np.asarray(det["hand_boxes"], dtype=np.float64)).all(-1)
    if "hand_interpolated" in det:
        ok &= ~np.asarray(det["hand_interpolated"], dtype=bool)
    return ok


def _align(gen: dict, ref: dict) -> int:
    return min(len(gen["hand_score"]), len(ref["hand_score"]))


def hand_metrics(gen: dict, ref: dict) -> dict:
    """Hand agreement, fidelity, keypoint error and miss rate for one clip pair.

    - ``hand_agreement`` (HOI-Swap, Re-HOLD): mean IoU of the generated and reference hand
      boxes over reference hands, matched by slot; a missed hand counts as IoU 0.
    - ``hand_fidelity`` (HOI-Swap): mean hand-detection confidence (``hand_score``) of the
      generated frames over reference hands, 0 where the generated frame has no such hand.
      ``hand_fidelity_detected``: mean confidence over all hands detected in the generated
      frames (no reference needed).
    - ``hand_mpjpe_px``: mean over matched hands (both detected) of the mean over the 21
      joints of the Euclidean distance in px between generated and reference 2-D keypoints.
      ``hand_mpjpe_norm``: the same, each hand's error divided by the longer side of the
      reference hand's tight box.
    - ``hand_miss_rate``: fraction of reference hands not detected in the generated frame.
      ``hand_extra_rate``: fraction of generated hands (per slot) without a reference hand.
    Values are NaN where their denominator is empty (e.g. no reference hands).
    """
    from ..conventions import box_iou

    T = _align(gen, ref)
    vg, vr = _valid(gen)[:T], _valid(ref)[:T]
    bg = np.asarray(gen["hand_boxes"], dtype=np.float64)[:T]
    br = np.asarray(ref["hand_boxes"], dtype=np.float64)[:T]
    sg = np.asarray(gen["hand_score"], dtype=np.float64)[:T]
    n_ref = int(vr.sum())
    both = vr & vg
    out: dict[str, float] = {"n_frames": T, "n_reference_hands": n_ref, "n_generated_hands": int(vg.sum()),
                             "n_matched_hands": int(both.sum())}
    if n_ref:
        iou = np.where(both, np.nan_to_num(box_iou(bg, br), nan=0.0), 0.0)
        out["hand_agreement"] = float(iou[vr].mean())
        out["hand_fidelity"] = float(np.where(both, sg, 0.0)[vr].mean())
        out["hand_miss_rate"] = float((vr & ~vg).sum() / n_ref)
    else:
        out["hand_agreement"] = out["hand_fidelity"] = out["hand_miss_rate"] = math.nan
    out["hand_fidelity_detected"] = float(sg[vg].mean()) if vg.any() else math.nan
    out["hand_extra_rate"] = float((vg & ~vr).sum() / vg.sum()) if vg.any() else math.nan
    if both.any():
        kg = np.asarray(gen["hand_keypoints"], dtype=np.float64)[:T, :, :, :2]
        kr = np.asarray(ref["hand_keypoints"], dtype=np.float64)[:T, :, :, :2]
        err = np.linalg.norm(kg - kr, axis=-1).mean(-1)  # (T, 2)
        side = np.maximum(br[..., 2] - br[..., 0], br[..., 3] - br[..., 1])
        out["hand_mpjpe_px"] = float(err[both].mean())
        with np.errstate(divide="ignore", invalid="ignore"):
            out["hand_mpjpe_norm"] = float((err[both] / np.maximum(side[both], 1.0)).mean())
    else:
        out["hand_mpjpe_px"] = out["hand_mpjpe_norm"] = math.nan
    return out


# ----------------------------------------------------------------------------- detector adapter


DETECTOR_NAME = ("hoi_cli.detect.hands.detect_hands (MediaPipe bundled hand model + 01_detect recall "
                 "improvements; not the 100DOH detector of HOI-Swap)")


def detect(frames: np.ndarray) -> tuple[dict, str]:
    """Hand detections of a clip (01_detect's detector) and the detector's name."""
    from ..detect.hands import detect_hands

    return detect_hands(frames), DETECTOR_NAME
