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


def test_mano_finger_joints_and_parts():
    # one table, derived from the joint names: the numbers hand-model code used to copy
    assert C.MANO_FINGER_JOINTS == {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9),
                                    "ring": (10, 11, 12), "thumb": (13, 14, 15)}
    assert list(C.MANO_FINGER_JOINTS) == ["index", "middle", "pinky", "ring", "thumb"]  # native order
    for ids in C.MANO_FINGER_JOINTS.values():  # each chain hangs off the wrist, base to tip
        assert [C.MANO_PARENTS[j] for j in ids] == [0, ids[0], ids[1]]
    assert C.MANO_JOINT_TO_PART.tolist() == [0, 2, 2, 2, 3, 3, 3, 5, 5, 5, 4, 4, 4, 1, 1, 1]
    assert [C.HAND_PARTS[p] for p in C.MANO_JOINT_TO_PART[[0, 13, 7]]] == ["palm", "thumb", "pinky"]
    # the appended tips (and tip_vertex_ids) are in FINGERS order: MANO21's tip of "ring" is 19
    assert C.MANO21_JOINT_NAMES[16 + C.FINGERS.index("ring")] == "ring_tip"


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
    # worked numbers: f = 500, c = (320, 240); (0.2, 0.1, 0.8) -> 500 * (0.25, 0.125) + c
    K5 = C.default_intrinsics(640, 480, focal=500)
    assert C.project([0.2, 0.1, 0.8], K5).tolist() == [445.0, 302.5]
    # a skewed K adds skew * y / z to u only: 445 + 40 * 0.125 = 450
    Ks = K5.copy()
    Ks[0, 1] = 40.0
    assert C.project(np.array([[0.2, 0.1, 0.8]]), Ks).tolist() == [[450.0, 302.5]]
    # min_depth clamps z: a point on the camera plane lands at 1 / min_depth times its x, y
    assert C.project([0.001, 0.0, 0.0], K5, min_depth=1e-3).tolist() == [820.0, 240.0]
    assert np.isinf(C.project([0.1, 0.0, 0.0], K5)[0])  # without it: inf, not NaN
    # float32 points are divided in float32 (as the drawing code always did), output float64
    assert C.project(np.array([0.2, 0.1, 0.8], np.float32), K5).dtype == np.float64
    # OpenCV -> OpenGL flips y and z: a point in front of the camera has negative z in GL
    assert (C.CV_TO_GL @ np.array([0.0, 1.0, 2.0])).tolist() == [0, -1, -2]


def test_projection_torch_matches_numpy_and_differentiates():
    torch = pytest.importorskip("torch")
    K = C.default_intrinsics(640, 480, focal=500)
    p = np.array([[0.2, 0.1, 0.8], [-0.05, 0.02, 0.4]])
    pt = torch.tensor(p, requires_grad=True)
    uv = C.project(pt, torch.tensor(K), min_depth=1e-3)
    assert torch.allclose(uv, torch.tensor(C.project(p, K)))
    uv[0, 0].backward()  # du/dx = f / z = 625, du/dz = -f x / z^2 = -156.25
    assert pt.grad[0].tolist() == pytest.approx([625.0, 0.0, -156.25])


def test_mask_packing_round_trip(rng):
    m = rng.random((3, 7, 13)) > 0.5
    packed, shape = C.pack_masks(m)
    assert packed.shape == (3, 7, 2)
    assert np.array_equal(C.unpack_masks(packed, shape), m)
