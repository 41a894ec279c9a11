"""Automatic object box (01_detect auto mode): a synthetic held object is found and the result is deterministic."""

from __future__ import annotations

import numpy as np

from hoi_cli.detect.objects import ObjectConfig, auto_object_boxes, grasp_point


def _scene(T: int = 7, H: int = 120, W: int = 160):
    """A grey background, a skin-coloured hand whose fingertips touch a blue block moving right."""
    import cv2

    frames, kps = [], np.full((T, 2, 21, 3), np.nan, np.float32)
    rng = np.random.default_rng(0)
    for t in range(T):
        f = np.full((H, W, 3), 128, np.uint8) + rng.integers(0, 6, (H, W, 3), dtype=np.uint8)
        ox = 60 + 2 * t
        cv2.rectangle(f, (ox, 40), (ox + 40, 80), (30, 60, 200), -1)  # the object
        # a hand to the left: wrist at (ox-40, 60), fingertips at the object's left edge
        wrist = np.array([ox - 40.0, 60.0])
        pts = [wrist]
        for finger in range(5):
            y = 44 + 8 * finger
            for k in range(4):
                pts.append(np.array([ox - 28 + 8 * k, y], float))
        pts = np.array(pts)
        for p in pts:
            cv2.circle(f, tuple(int(v) for v in p), 3, (220, 170, 140), -1)
        kps[t, 1, :, :2] = pts
        kps[t, 1, :, 2] = 1.0
        frames.append(f)
    return frames, kps


def test_auto_box_finds_the_held_object():
    frames, kps = _scene()
    boxes, score = auto_object_boxes(frames, kps, ObjectConfig())
    assert np.isfinite(boxes).all() and (score > 0).all()
    for t, b in enumerate(boxes):
        ox = 60 + 2 * t
        ref = np.array([ox, 40, ox + 41, 81], float)
        ix = max(0, min(b[2], ref[2]) - max(b[0], ref[0]))
        iy = max(0, min(b[3], ref[3]) - max(b[1], ref[1]))
        inter = ix * iy
        union = (b[2] - b[0]) * (b[3] - b[1]) + 41 * 41 - inter
        assert inter / union > 0.5, (t, b, ref)


def test_auto_box_deterministic_and_no_hands():
    frames, kps = _scene(T=5)
    a, _ = auto_object_boxes(frames, kps, ObjectConfig())
    b, _ = auto_object_boxes(frames, kps, ObjectConfig())
    np.testing.assert_array_equal(a, b)
    none, s = auto_object_boxes(frames, np.full_like(kps, np.nan), ObjectConfig())
    assert np.isnan(none).all() and (s == 0).all()


def test_grasp_point_is_fingertip_centroid():
    kp = np.zeros((21, 2))
    kp[4], kp[8], kp[12] = (0, 0), (3, 0), (0, 3)
    np.testing.assert_allclose(grasp_point(kp), [1, 1])
