"""Preview drawing for 01_detect: keypoints, skeletons, tight and square hand boxes, object box.

Colours (RGB): left hand (slot 0) blue, right hand (slot 1) orange, interpolated hands drawn
with thin lines; square boxes dashed-looking (thin), object box green.
"""

from __future__ import annotations

import numpy as np

from ..conventions import OPENPOSE_PARENTS

SLOT_COLOURS = ((60, 120, 255), (255, 140, 0))
OBJECT_COLOUR = (0, 220, 0)


def _ok(b) -> bool:
    return b is not None and bool(np.isfinite(b).all())


def _rect(img, box, colour, th):
    import cv2

    p0 = (int(round(box[0])), int(round(box[1])))
    p1 = (int(round(box[2])), int(round(box[3])))
    cv2.rectangle(img, p0, p1, colour, th, cv2.LINE_AA)


def draw_frame(frame: np.ndarray, det: dict, t: int) -> np.ndarray:
    """One annotated RGB frame from the detection arrays at frame ``t``."""
    import cv2

    img = np.ascontiguousarray(frame[..., :3]).copy()
    scale = max(1, int(round(max(img.shape[:2]) / 400)))
    box_only = det.get("hand_box_only")
    for s in range(2):
        kp = det["hand_keypoints"][t, s]
        has_kp = bool(np.isfinite(kp[:, :2]).all())
        only_box = box_only is not None and bool(box_only[t, s])
        if not has_kp and not only_box:
            continue
        col = SLOT_COLOURS[s]
        interp = bool(det["hand_interpolated"][t, s])
        th = 1 if interp else scale
        if has_kp:
            for j, p in enumerate(OPENPOSE_PARENTS):
                if p >= 0:
                    cv2.line(img, tuple(int(v) for v in kp[j, :2]), tuple(int(v) for v in kp[p, :2]), col, th,
                             cv2.LINE_AA)
            for j in range(21):
                cv2.circle(img, tuple(int(v) for v in kp[j, :2]), scale + 1, (255, 255, 255), -1, cv2.LINE_AA)
        if _ok(det["hand_boxes"][t, s]):
            _rect(img, det["hand_boxes"][t, s], col, th)
            b = det["hand_boxes"][t, s]
            label = ("L" if s == 0 else "R") + (" box only" if only_box else " interp" if interp
                                                else f" {float(det['hand_score'][t, s]):.2f}")
            cv2.putText(img, label, (int(b[0]), max(10, int(b[1]) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35 * scale, col, 1, cv2.LINE_AA)
        if _ok(det["hand_boxes_square"][t, s]):
            _rect(img, det["hand_boxes_square"][t, s], tuple(int(c * 0.6) for c in col), 1)
    if not np.isfinite(det["hand_score"][t]).any():  # say so, so an empty frame is not read as a drawing bug
        cv2.putText(img, "no hand found", (4, 12 * scale), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 255, 0), 1,
                    cv2.LINE_AA)
    ob = det.get("object_boxes")
    if ob is not None and _ok(ob[t]):
        _rect(img, ob[t], OBJECT_COLOUR, scale)
    return img


def write_preview(path, frames, det: dict, fps: float) -> None:
    from ..video import VideoWriter

    with VideoWriter(path, fps or 12.0, crf=23) as w:
        for t, f in enumerate(frames):
            w.write(draw_frame(f, det, t))
