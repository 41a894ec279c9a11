"""Conventions: joint orders, handedness labels, boxes, camera, mask packing."""

from __future__ import annotations

import numpy as np
import pytest

from hoi_cli import conventions as C


def test_openpose_order():
    names = C.OPENPOSE_JOINT_NAMES
    assert len(names) == C.N_JOINTS == 21
    assert names[0] == "wrist"
    assert names[1:5] == ("thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip")
    assert names[5] == "index_mcp" and names[8] == "index_tip"
    assert names[20] == "pinky_tip"
    # each finger's joints chain base-to-tip
    for j in range(1, 21):
        parent = C.OPENPOSE_PARENTS[j]
        assert parent == (0 if (j - 1) % 4 == 0 else j - 1)


def test_mano_to_openpose_map():
    mano21 = np.array(C.MANO21_JOINT_NAMES)
    mapped = mano21[C.MANO21_TO_OPENPOSE]
    assert tuple(mapped) == C.OPENPOSE_JOINT_NAMES
    # MANO's native order: wrist, index, middle, pinky, ring, thumb
    assert [C.MANO_JOINT_NAMES[i] for i in (1, 4, 7, 10, 13)] == [
        "index_mcp", "middle_mcp", "pinky_mcp", "ring_mcp", "thumb_cmc"]
    assert list(C.MANO21_TO_OPENPOSE[:5]) == [0, 13, 14, 15, 16]
    # the parents of MANO's tree follow its order
    for j in range(1, 16):
        p = C.MANO_PARENTS[j]
        assert p == 0 or C.MANO_JOINT_NAMES[p].split("_")[0] == C.MANO_JOINT_NAMES[j].split("_")[0]


def test_mediapipe_handedness_is_mirrored():
    assert C.mediapipe_label_to_slot("Left") == C.RIGHT
    assert C.mediapipe_label_to_slot("Right") == C.LEFT
    assert C.mediapipe_label_to_slot("Left", image_is_mirrored=True) == C.LEFT
    with pytest.raises(ValueError):
        C.mediapipe_label_to_slot("both")


def test_boxes():
    m = np.zeros((10, 20), bool)
    m[2:5, 3:9] = True
    assert C.box_from_mask(m).tolist() == [3, 2, 9, 5]
    assert np.isnan(C.box_from_mask(np.zeros((4, 4), bool))).all()
    assert C.box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(1 / 3)
    assert np.isnan(C.box_iou(np.array([0, 0, 1, 1]), C.empty_boxes()))
    sq = C.square_box(np.array([10, 20, 30, 60], np.float32), 100)
    assert sq.tolist() == [-30, -10, 70, 90]
    pts = np.array([[1, 2], [np.nan, np.nan], [5, 9]])
    assert C.box_from_points(pts).tolist() == [1, 2, 5, 9]


def test_camera_projection_round_trip():
    K = C.default_intrinsics(640, 480)
    assert K[0, 0] == 640 and K[0, 2] == 320 and K[1, 2] == 240
    assert C.default_intrinsics(640, 480, focal=500)[1, 1] == 500
    uv = C.project(np.array([[0.0, 0.0, 2.0], [0.1, -0.05, 1.0]]), K)
    assert uv[0].tolist() == [320, 240]
    assert uv[1].tolist() == pytest.approx([320 + 64, 240 - 32])  # y down in OpenCV
    # OpenCV -> OpenGL flips y and z: a point in front of the camera has negative z in GL
    assert (C.CV_TO_GL @ np.array([0.0, 1.0, 2.0])).tolist() == [0, -1, -2]


def test_mask_packing_round_trip(rng):
    m = rng.random((3, 7, 13)) > 0.5
    packed, shape = C.pack_masks(m)
    assert packed.shape == (3, 7, 2)
    assert np.array_equal(C.unpack_masks(packed, shape), m)
