"""Fast CPU drawing of hand meshes with OpenCV (no GL): shaded overlays and silhouettes.

Convention: vertices in the OpenCV camera frame (x right, y down, z forward, metres);
``K`` 3x3 pixels; images ``(H, W, 3)`` uint8 RGB. Triangles are drawn back to front
(painter's algorithm), flat-shaded by the angle between the face normal and the view ray.
`draw_mesh` takes either winding of a closed mesh (it checks the signed volume), so a left hand
drawn with the right model's ``faces`` is shaded and culled correctly too.
"""

from __future__ import annotations

import numpy as np

from ..conventions import project

SLOT_COLORS = ((90, 160, 255), (255, 140, 90))  # left, right (RGB)


def silhouette(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the mesh's projection."""
    import cv2

    h, w = hw
    mask = np.zeros((h, w), np.uint8)
    if not np.isfinite(verts).all() or (verts[:, 2] <= 1e-4).any():
        return mask.astype(bool)
    uv = np.round(project(verts, K, min_depth=1e-6) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    tri = uv[faces]
    cv2.fillPoly(mask, list(tri), 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _signed_volume(tri3: np.ndarray) -> float:
    """Signed volume of a closed triangle mesh ``(F,3,3)``: > 0 when its faces wind outwards."""
    return float(np.einsum("fi,fi->", tri3[:, 0], np.cross(tri3[:, 1], tri3[:, 2])) / 6.0)


def draw_mesh(image: np.ndarray, verts: np.ndarray, faces: np.ndarray, K: np.ndarray,
              color=(255, 140, 90), alpha: float = 0.6) -> np.ndarray:
    """Overlay a flat-shaded mesh on ``image`` (returns a new image)."""
    import cv2

    out = image.copy()
    if not np.isfinite(verts).all() or (verts[:, 2] <= 1e-4).any():
        return out
    uv = project(verts, K, min_depth=1e-6)
    tri3 = verts[faces]
    n = np.cross(tri3[:, 1] - tri3[:, 0], tri3[:, 2] - tri3[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    if _signed_volume(tri3) < 0:  # inward winding (e.g. a left hand drawn with the right model's faces)
        n = -n
    view = tri3.mean(axis=1)
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    facing = -(n * view).sum(axis=1)
    keep = facing > 0  # back-face culling (closed, outward-oriented meshes)
    order = np.argsort(-view[:, 2] * 0 - tri3[:, :, 2].mean(axis=1))  # far to near
    order = order[keep[order]]
    layer = out.copy()
    shade = 0.35 + 0.65 * np.clip(facing, 0, 1)
    pts = np.round(uv[faces] * 16).astype(np.int32)
    col = np.asarray(color, dtype=np.float64)
    # group faces into a few shade levels: one fillPoly call per level, far to near
    levels = np.clip((shade * 12).astype(int), 0, 12)
    for i0 in range(0, len(order), 256):
        chunk = order[i0:i0 + 256]
        for lv in np.unique(levels[chunk]):
            sel = chunk[levels[chunk] == lv]
            c = tuple(int(x) for x in col * lv / 12.0)
            cv2.fillPoly(layer, list(pts[sel]), c, lineType=cv2.LINE_AA, shift=4)
    return cv2.addWeighted(layer, alpha, out, 1 - alpha, 0)
