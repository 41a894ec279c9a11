"""05_silhouette: CoInteract's HOI structure (texture-stripped hand render fused with the object mask).

CoInteract trains an auxiliary "HOI structure" stream next to the RGB stream: a
silhouette-like projection of the hand mesh, stripped of texture, fused with the object
mask. We render it as:

    background  black (0, 0, 0)
    hands       the 02_hands meshes, grey, shaded by how much each surface faces the camera:
                value = hand_min + (255 - hand_min) * |n_z| (n the interpolated unit normal,
                OpenCV camera frame), so the fingers' outlines and folds stay readable with
                no texture and no lighting set-up; both hands share one z-buffer
    object      the 03_segment object mask, one flat colour (``object_color``), drawn over the
                hands (the mask is what the camera sees of the object; the meshes include hand
                parts hidden behind it)

Outputs (``05_silhouette/``):
    ``structure.npz``  ``structure (T,H,W,3) uint8`` RGB as above; ``labels (T,H,W) uint8``
                       0 background, 1 left hand, 2 right hand, 3 object (same precedence)
    ``structure.mp4``  the same RGB, for viewing (lossy)
Read with `load_silhouette(run_dir)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..params import typed
from .base import StageContext
from . import frames as frames_stage, hands as hands_stage, segment as segment_stage

NAME = "05_silhouette"
VERSION = "1"
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME, hands_stage.NAME, segment_stage.NAME)
LABELS = ("background", "left_hand", "right_hand", "object")


@typed
class Params:
    object_color: tuple[int, int, int] = (255, 64, 32)
    """RGB of the object region."""
    hand_min: int = 64
    """Grey level of a hand surface seen edge-on; 255 facing the camera."""
    write_video: bool = True
    """Write the structure video next to the arrays."""


def render_structure(hand_vertices: np.ndarray, hand_valid: np.ndarray, faces: np.ndarray, K: np.ndarray,
                     object_mask: np.ndarray | None, height: int, width: int,
                     object_color=(255, 64, 32), hand_min: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (structure (H,W,3) uint8, labels (H,W) uint8). ``hand_vertices (2,V,3)`` camera frame."""
    from ..render.raster import rasterize, vertex_normals

    rgb = np.zeros((height * width, 3), np.uint8)
    labels = np.zeros(height * width, np.uint8)
    slots = [s for s in range(2) if hand_valid[s] and np.isfinite(hand_vertices[s]).all()]
    if slots:
        V = np.concatenate([hand_vertices[s] for s in slots]).astype(np.float64)
        nv = len(hand_vertices[0])
        F = np.concatenate([faces + i * nv for i in range(len(slots))])
        N = np.concatenate([vertex_normals(hand_vertices[s], faces) for s in slots])
        frags = rasterize(V, F, K, height, width, cull_back=False)
        n = frags.interpolate(N, F)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
        grey = np.rint(hand_min + (255 - hand_min) * np.abs(n[:, 2])).astype(np.uint8)
        rgb[frags.pix] = grey[:, None]
        slot_of_face = np.asarray(slots)[frags.face // len(faces)]
        labels[frags.pix] = 1 + slot_of_face
    if object_mask is not None:
        m = np.asarray(object_mask, bool).ravel()
        rgb[m] = np.asarray(object_color, np.uint8)
        labels[m] = 3
    return rgb.reshape(height, width, 3), labels.reshape(height, width)


def run(ctx: StageContext) -> dict:

    p: Params = ctx.params
    meta = ctx.read(frames_stage).meta
    T, H, W = int(meta["n_frames"]), int(meta["height"]), int(meta["width"])
    hands = ctx.read(hands_stage)
    masks = ctx.read(segment_stage, optional=True)
    obj = None if masks is None else masks.get("object")
    if obj is not None and obj.shape != (T, H, W):
        raise BadInputError(f"03_segment masks have shape {obj.shape}, expected {(T, H, W)}", "rerun 03_segment")
    verts, valid = np.asarray(hands["vertices"]), np.asarray(hands["valid"], bool)
    faces, K = np.asarray(hands["faces"], np.int64), np.asarray(hands["K"], np.float64)
    structure = np.zeros((T, H, W, 3), np.uint8)
    labels = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        structure[t], labels[t] = render_structure(verts[t], valid[t], faces, K, None if obj is None else obj[t],
                                                   H, W, p.object_color, p.hand_min)
        ctx.progress(t + 1, T)
    np.savez_compressed(ctx.out_dir / "structure.npz", structure=structure, labels=labels)
    if p.write_video:
        from ..video import write_video

        write_video(ctx.out_dir / "structure.mp4", list(structure), float(meta.get("fps") or 10.0))
    frac = [(labels == k).mean() for k in range(4)]
    return {"n_frames": T, "coverage": {name: round(float(f), 5) for name, f in zip(LABELS, frac)},
            "object_mask": obj is not None}


def load_silhouette(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``structure (T,H,W,3) uint8`` and ``labels (T,H,W) uint8`` (0 bg, 1 left, 2 right, 3 object)."""
    path = Path(run_dir) / NAME / "structure.npz"
    if not path.exists():
        raise BadInputError(f"no HOI structure in {run_dir}", "run 05_silhouette first (--pipeline cointeract)")
    with np.load(path, allow_pickle=False) as z:
        return {"structure": z["structure"], "labels": z["labels"]}


load = load_silhouette  # the stage's loader (`StageContext.read`)
