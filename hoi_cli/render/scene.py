"""Scene inputs shared by the render stages (04_mlo, 05_silhouette): hands, masks, part labels, object proxy.

Convention: vertices in the OpenCV camera frame (x right, y down, z forward), metres; ``K`` 3x3
pixels; masks ``(H,W)`` bool at the working resolution; pixel (i, j) has its centre at
(j + 0.5, i + 0.5).

Arrays in, arrays out: the stages read their upstream outputs through their context
(`hoi_cli.stages.base.StageContext.read`) and hand them here; nothing here reads a run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import HAND_PARTS, project
from ..errors import BadInputError


def _builtin_weights(n_vertices: int) -> np.ndarray | None:
    from ..resources import hand_model_dir

    for name in ("MANO_RIGHT.npz", "MANO_LEFT.npz"):
        path = hand_model_dir() / name
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                if z["weights"].shape[0] == n_vertices:
                    return z["weights"]
    return None


def vertex_parts(n_vertices: int, joints: np.ndarray | None = None, vertices: np.ndarray | None = None,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """Part index (into HAND_PARTS) per vertex.

    From the skinning weights given, or the built-in hand model's when it has this many vertices,
    through `hoi_cli.handmodel.parts.part_labels`; otherwise from the nearest bone of the 21
    OpenPose ``joints`` to ``vertices`` (one frame).
    """
    if weights is None:
        weights = _builtin_weights(n_vertices)
    if weights is not None and weights.shape == (n_vertices, 16):
        from ..handmodel.parts import part_labels

        return np.asarray(part_labels(weights), np.int64)
    if joints is not None and vertices is not None:
        return _nearest_bone_parts(np.asarray(vertices, np.float64), np.asarray(joints, np.float64))
    raise BadInputError(f"cannot label the {n_vertices} hand vertices with parts",
                        "use the built-in hand model or a MANO model with skinning weights")


def _nearest_bone_parts(v: np.ndarray, j: np.ndarray) -> np.ndarray:
    # OpenPose order: 0 wrist, thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20
    bones, parts = [], []
    for finger in range(5):
        base = 1 + 4 * finger
        chain = [base, base + 1, base + 2, base + 3]
        bones.append((0, base))
        parts.append(0 if finger > 0 else 1)
        for a, b in zip(chain[:-1], chain[1:]):
            bones.append((a, b))
            parts.append(finger + 1)
    a = j[[b[0] for b in bones]]
    b = j[[b[1] for b in bones]]
    ab = b - a
    t = np.clip(np.einsum("vbc,bc->vb", v[:, None] - a[None], ab) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    d = np.linalg.norm(v[:, None] - (a[None] + t[..., None] * ab[None]), axis=2)
    return np.array(parts)[np.argmin(d, axis=1)]


def face_parts(faces: np.ndarray, vparts: np.ndarray) -> np.ndarray:
    """Part per face: the majority part of its three vertices (vertex 0's on a three-way tie)."""
    p = vparts[faces]
    out = p[:, 0].copy()
    out[(p[:, 1] == p[:, 2]) & (p[:, 1] != p[:, 0])] = p[(p[:, 1] == p[:, 2]) & (p[:, 1] != p[:, 0]), 1]
    return out


def contact_depth(joints: np.ndarray, valid: np.ndarray, K: np.ndarray, box: np.ndarray,
                  margin_px: float, default: float) -> float:
    """Median camera z of the hand joints whose projection lies in ``box`` grown by ``margin_px``.

    ``joints (2,21,3)`` camera frame; falls back to the median z of all valid joints, then ``default``.
    """
    j = np.asarray(joints, np.float64).reshape(2, -1, 3)[np.asarray(valid, bool)].reshape(-1, 3)
    j = j[np.isfinite(j).all(1) & (j[:, 2] > 1e-3)]
    if len(j) == 0:
        return float(default)
    u, v = project(j, K).T
    if box is not None and np.isfinite(box).all():
        inside = ((u >= box[0] - margin_px) & (u <= box[2] + margin_px)
                  & (v >= box[1] - margin_px) & (v <= box[3] + margin_px))
        if inside.any():
            return float(np.median(j[inside, 2]))
    return float(np.median(j[:, 2]))


def proxy_object_mesh(mask: np.ndarray, K: np.ndarray, depth: float, stride: int = 4,
                      thickness: float = 1.0, anchor: str = "front") -> tuple[np.ndarray, np.ndarray]:
    """A surface inflated from an object mask: (vertices (V,3) camera frame, faces (F,3)).

    With ``anchor="rim"`` the silhouette's rim lies at camera z = ``depth``; with ``"front"``
    (default) the whole surface is pushed back so that its nearest point lies at ``depth``
    (the object sits just behind the hand contact, as when the visible fingers hold its
    front). Inside the rim, the surface comes toward the
    camera by ``thickness * r * sqrt(1 - (1 - d / d_max)^2)`` metres, where d is the pixel's
    distance to the mask border, d_max its maximum and r = d_max * depth / f the half-width in
    metres: with thickness 1, a disc mask gives the front half of a sphere. Vertices sit at the
    top-left corners of every ``stride``-th pixel inside the mask (back-projected, so they
    reproject exactly there); faces join grid neighbours that are all inside, wound so that
    their normals face the camera.
    """
    import cv2

    m = np.asarray(mask, bool)
    if not m.any() or not np.isfinite(depth):
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    pad = np.pad(m[y0:y1 + 1, x0:x1 + 1], 1).astype(np.uint8)
    dist = cv2.distanceTransform(pad, cv2.DIST_L2, 5)[1:-1, 1:-1]
    dmax = max(float(dist.max()), 1e-6)
    gy = np.arange(0, y1 - y0 + 1, stride)
    gx = np.arange(0, x1 - x0 + 1, stride)
    if gy[-1] != y1 - y0:
        gy = np.append(gy, y1 - y0)
    if gx[-1] != x1 - x0:
        gx = np.append(gx, x1 - x0)
    sub = m[y0:y1 + 1, x0:x1 + 1][np.ix_(gy, gx)]
    d = dist[np.ix_(gy, gx)]
    f = float(K[0, 0])
    r_m = dmax * depth / f
    h = thickness * r_m * np.sqrt(np.clip(1 - (1 - d / dmax) ** 2, 0, 1))
    z = depth - h + (float(h.max()) if anchor == "front" else 0.0)
    # vertices at the pixels' top-left corners (not their centres), so that no edge of the
    # grid runs through pixel centres: a centre on an edge is a tie that renderers break
    # differently
    uu = (x0 + gx + 0.0)[None, :].repeat(len(gy), 0)
    vv = (y0 + gy + 0.0)[:, None].repeat(len(gx), 1)
    X = (uu - K[0, 2] - K[0, 1] * (vv - K[1, 2]) / K[1, 1]) / K[0, 0] * z
    Y = (vv - K[1, 2]) / K[1, 1] * z
    index = -np.ones(sub.shape, np.int64)
    index[sub] = np.arange(int(sub.sum()))
    verts = np.stack([X[sub], Y[sub], z[sub]], axis=1)
    a = index[:-1, :-1]
    b = index[:-1, 1:]
    c = index[1:, :-1]
    e = index[1:, 1:]
    tris = []
    # (a, c, b) and (b, c, e): x right, y down -> normals toward -z (the camera)
    for t in ((a, c, b), (b, c, e)):
        tri = np.stack([t[0].ravel(), t[1].ravel(), t[2].ravel()], axis=1)
        tris.append(tri[(tri >= 0).all(1)])
    # cells with exactly one corner missing still get the triangle of the other three
    for t, miss in (((a, c, e), b), ((a, e, b), c), ((a, c, b), e), ((b, c, e), a)):
        tri = np.stack([t[0].ravel(), t[1].ravel(), t[2].ravel()], axis=1)
        sel = (tri >= 0).all(1) & (miss.ravel() < 0)
        tris.append(tri[sel])
    faces = np.concatenate(tris).astype(np.int64)
    return verts, faces


def load_object_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"object mesh not found: {path}", "check --set mlo.object_mesh=PATH")
    m = trimesh.load(path, force="mesh", process=False)
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)


def load_object_poses(path: str | Path, n_frames: int) -> np.ndarray:
    """``(T,4,4)`` object-to-camera (OpenCV) poses from a .npy or .npz (key ``poses``)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"object poses not found: {path}", "give a .npy of shape (T,4,4)")
    arr = np.load(path, allow_pickle=False)
    if hasattr(arr, "files"):
        arr = arr["poses"]
    arr = np.asarray(arr, np.float64)
    if arr.shape != (n_frames, 4, 4):
        raise BadInputError(f"object poses have shape {arr.shape}, expected ({n_frames}, 4, 4)",
                            "one object-to-camera matrix per frame, OpenCV camera axes")
    return arr


PARTS = HAND_PARTS
