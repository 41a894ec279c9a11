"""Conventions shared by every stage: decided once, here, and tested in tests/test_conventions.py.

Convention (pixels and boxes):
    Pixel coordinates are at the working resolution of ``00_frames``; x to the right, y down,
    the centre of the top-left pixel at (0.5, 0.5) for masks and (0, 0) for keypoints as the
    detectors report them. Boxes are ``xyxy`` float32 ``[x0, y0, x1, y1]`` in pixels; a missing
    value is NaN (never 0 or -1).

Convention (hands):
    The hand axis has size 2: slot 0 is the person's LEFT hand, slot 1 the RIGHT hand, as
    seen in the clip, not mirrored. MediaPipe's legacy solution labels handedness as if the
    image were mirrored (a selfie view); `mediapipe_label_to_slot` converts, once, at the
    detector boundary.

Convention (keypoints):
    21 joints in the OpenPose/MediaPipe order: wrist, then thumb, index, middle, ring, pinky,
    each from base to tip. MANO's native order differs (16 joints: wrist, index, middle,
    pinky, ring, thumb, three each, no tips); tips come from vertices. `MANO21_TO_OPENPOSE`
    maps once.

Convention (camera):
    OpenCV pinhole: x right, y down, z forward, metres. Intrinsics K per run; the default
    focal length is ``DEFAULT_FOCAL_FACTOR * max(W, H)`` pixels with the principal point at
    the image centre (`default_intrinsics`). pyrender/OpenGL uses x right, y up, z backward:
    convert with `CV_TO_GL` at the render boundary only.

Convention (MANO parameters):
    axis-angle ``global_orient (T,3)``, ``hand_pose (T,45)`` (full 45-D, not PCA),
    ``betas (10,)`` per hand track, ``transl (T,3)`` in metres, camera frame.

Convention (arrays on disk):
    ``.npz`` with named keys, no pickle; boolean masks bit-packed along the last axis with
    `pack_masks` and stored with their ``shape``.
"""

from __future__ import annotations

import numpy as np

CONVENTIONS_VERSION = 1

# ---------------------------------------------------------------- hands
HAND_SLOTS = ("left", "right")
LEFT, RIGHT = 0, 1


def mediapipe_label_to_slot(label: str, image_is_mirrored: bool = False) -> int:
    """Hand slot (0 = person's left, 1 = right) from MediaPipe's legacy handedness label.

    MediaPipe assumes a mirrored (selfie) image: on an ordinary, unmirrored clip its "Left"
    is the person's right hand.
    """
    label = label.strip().lower()
    if label not in ("left", "right"):
        raise ValueError(f"unknown handedness label {label!r}")
    is_left_label = label == "left"
    if image_is_mirrored:
        return LEFT if is_left_label else RIGHT
    return RIGHT if is_left_label else LEFT


# ---------------------------------------------------------------- joints
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
OPENPOSE_JOINT_NAMES = ("wrist",) + tuple(
    f"{finger}_{part}"
    for finger in FINGERS
    for part in (("cmc", "mcp", "ip", "tip") if finger == "thumb" else ("mcp", "pip", "dip", "tip"))
)
N_JOINTS = 21

# MANO's 16 kinematic joints in its native order, then the five tips appended (thumb..pinky),
# which is how hand-mesh code usually builds a 21-joint MANO array.
MANO_JOINT_NAMES = (
    "wrist",
    "index_mcp", "index_pip", "index_dip",
    "middle_mcp", "middle_pip", "middle_dip",
    "pinky_mcp", "pinky_pip", "pinky_dip",
    "ring_mcp", "ring_pip", "ring_dip",
    "thumb_cmc", "thumb_mcp", "thumb_ip",
)
MANO21_JOINT_NAMES = MANO_JOINT_NAMES + tuple(f"{f}_tip" for f in FINGERS)
# openpose_joints = mano21_joints[MANO21_TO_OPENPOSE]
MANO21_TO_OPENPOSE = np.array([MANO21_JOINT_NAMES.index(n) for n in OPENPOSE_JOINT_NAMES], dtype=np.int64)
# Parent of each MANO joint (MANO's kintree_table[0], with -1 for the root).
MANO_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], dtype=np.int64)
# Each finger's three MANO joints (native ids, base to tip), fingers in MANO's native order
# (index, middle, pinky, ring, thumb). Tuples: index arrays with list(ids).
MANO_FINGER_JOINTS = dict(sorted(
    ((finger, tuple(i for i, n in enumerate(MANO_JOINT_NAMES) if n.split("_")[0] == finger))
     for finger in FINGERS), key=lambda item: item[1][0]))
# Fingertip vertex ids of the official MANO topology (778 vertices), in FINGERS order
# (thumb..pinky), the order of a hand model's ``tip_vertex_ids`` and of the appended tips.
MANO_TIP_VERTEX_IDS = np.array([744, 320, 443, 554, 671], dtype=np.int64)
# Parent of each OpenPose joint, for drawing skeletons.
OPENPOSE_PARENTS = np.array([-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19],
                            dtype=np.int64)

# Hand parts for part segmentation and MLO layers, in this order.
HAND_PARTS = ("palm", "thumb", "index", "middle", "ring", "pinky")
# The part (index into HAND_PARTS) each MANO joint moves: the wrist moves the palm, each finger
# joint its finger (the thumb's CMC, which moves the thenar eminence, counts as thumb).
MANO_JOINT_TO_PART = np.array(
    [HAND_PARTS.index("palm" if n == "wrist" else n.split("_")[0]) for n in MANO_JOINT_NAMES],
    dtype=np.int64)

# ---------------------------------------------------------------- camera
DEFAULT_FOCAL_FACTOR = 1.0  # f = 1.0 * max(W, H) px: ~53 degrees across the long side
CV_TO_GL = np.diag([1.0, -1.0, -1.0]).astype(np.float64)  # camera axes: OpenCV -> OpenGL


def default_intrinsics(width: int, height: int, focal: float | None = None) -> np.ndarray:
    """3x3 K for an image of ``width x height`` px; ``focal`` in px overrides the default."""
    f = float(focal) if focal else DEFAULT_FOCAL_FACTOR * max(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64)


def project(points_cam, K, min_depth: float | None = None):
    """Project camera-frame points ``(..., 3)`` (OpenCV axes, z > 0) to pixels ``(..., 2)``.

    ``(u, v) = K[:2, :2] @ (x / z, y / z) + K[:2, 2]``, computed as ``x / z * fx + cx`` plus
    ``y / z * K[0, 1]`` only where the skew is not 0 (so a point at z = 0 stays at inf, not NaN).
    ``min_depth`` clamps z from below first (keeps points at or behind the camera finite while
    fitting); without it, z <= 0 gives inf/NaN or a mirrored point, silently. numpy in: x / z in
    the points' float dtype (float64 for ints and lists), float64 out. A torch tensor in (``K``
    a tensor on its device) gives a tensor out, differentiable, in the inputs' dtype.
    """
    if not hasattr(points_cam, "clamp"):  # numpy or a nested list; a torch tensor stays as it is
        points_cam = np.asarray(points_cam)
        if not np.issubdtype(points_cam.dtype, np.floating):
            points_cam = points_cam.astype(np.float64)
        K = np.asarray(K, dtype=np.float64)
    z = points_cam[..., 2:3]
    if min_depth is not None:
        z = z.clamp(min=min_depth) if hasattr(z, "clamp") else np.maximum(z, min_depth)
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = points_cam[..., :2] / z
    uv = xy * K[[0, 1], [0, 1]] + K[:2, 2]  # indexing numpy and torch read alike: [fx, fy], [cx, cy]
    if K[0, 1] != 0:
        uv[..., 0] = uv[..., 0] + xy[..., 1] * K[0, 1]
    return uv


# ---------------------------------------------------------------- boxes
def empty_boxes(*shape: int) -> np.ndarray:
    """An all-missing box array of shape ``(*shape, 4)``."""
    return np.full((*shape, 4), np.nan, dtype=np.float32)


def box_from_points(points_xy: np.ndarray) -> np.ndarray:
    """Tight xyxy box around ``(N, 2)`` points, ignoring NaN; NaN box if none are valid."""
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return np.full(4, np.nan, dtype=np.float32)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], dtype=np.float32)


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box around a boolean mask's pixels (pixel edges, so a 1-px mask is 1 px wide)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.full(4, np.nan, dtype=np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes, broadcasting over leading axes; NaN where either box is missing."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def square_box(box: np.ndarray, size: float) -> np.ndarray:
    """Re-HOLD's fixed-size square hand box: ``size`` px wide, centred on ``box``'s centre."""
    b = np.asarray(box, dtype=np.float32)
    cx = (b[..., 0] + b[..., 2]) / 2
    cy = (b[..., 1] + b[..., 3]) / 2
    h = np.float32(size) / 2
    return np.stack([cx - h, cy - h, cx + h, cy + h], axis=-1).astype(np.float32)


# ---------------------------------------------------------------- masks
def pack_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit-pack boolean masks ``(..., W)`` along the last axis; returns (packed, shape)."""
    m = np.asarray(masks, dtype=bool)
    return np.packbits(m, axis=-1), np.array(m.shape, dtype=np.int64)


def unpack_masks(packed: np.ndarray, shape) -> np.ndarray:
    """Inverse of `pack_masks`."""
    shape = tuple(int(s) for s in shape)
    return np.unpackbits(packed, axis=-1, count=shape[-1]).astype(bool).reshape(shape)

# ---------------------------------------------------------------- MLO layers (04_mlo)
# ManiVideo's Multi-Layer Occlusion layers, in this order (layer axis L = 13): the object,
# then per hand slot (left, then right) its parts in HAND_PARTS order.
#
# Encoding on disk (04_mlo/mlo/NNNNNN.npz, one file per frame; see hoi_cli.stages.mlo):
#   normals     uint8 (n + 1) * 127.5 rounded, n the unit normal in the OpenCV camera frame
#               (x right, y down, z forward: a surface facing the camera has n_z < 0);
#               decode n = c / 127.5 - 1. Each layer is rendered alone (occlusion-free).
#   confidence  uint8 round(255 * sigmoid((D_scene - D_layer + margin) / tau)) where the layer
#               is drawn, 0 elsewhere: ~255 where the layer is the front-most surface, ~0 where
#               something else lies more than ``margin`` in front of it.
#   depth       float16 camera z in metres of the layer alone; 0 where the layer is not drawn.
#   scene depth float16 camera z of the full scene (all layers together); 0 where empty.
MLO_LAYERS = ("object",) + tuple(f"{slot}_{part}" for slot in HAND_SLOTS for part in HAND_PARTS)
MLO_NORMAL_SCALE = 127.5


def encode_normals(n: np.ndarray) -> np.ndarray:
    """Unit normals ``(...,3)`` -> uint8 ``round((n + 1) * 127.5)``."""
    return np.clip(np.rint((np.asarray(n, np.float32) + 1.0) * MLO_NORMAL_SCALE), 0, 255).astype(np.uint8)


def decode_normals(c: np.ndarray) -> np.ndarray:
    """uint8 ``(...,3)`` -> float32 normals ``c / 127.5 - 1`` (not renormalised; (0,0,0) codes = empty)."""
    return np.asarray(c, np.float32) / MLO_NORMAL_SCALE - 1.0
