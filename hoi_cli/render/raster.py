"""A small, exact, vectorised CPU triangle rasteriser (numpy z-buffer): masks, depth, normals.

This is the fast path of the renderer. It rasterises the same triangles that the pyrender
reference path (`hoi_cli.render.pyr`) draws and is tested against it.

Convention:
    Vertices are in the OpenCV camera frame (x right, y down, z forward), metres. ``K`` is the
    3x3 pinhole matrix in pixels. Pixel ``(row i, column j)`` is sampled at its centre,
    ``(u, v) = (j + 0.5, i + 0.5)``, as OpenGL does (so a mask here equals pyrender's).
    Depth is the camera-frame z (metres, not the ray length); ``inf`` (or 0 in the encoded
    outputs) where nothing is drawn. Attributes are interpolated perspective-correctly,
    like OpenGL. Faces whose vertices are not all in front of ``near`` are dropped (no
    clipping). With ``cull_back=True``, faces facing away from the camera (outward normal,
    by the right-hand rule on ``faces``' vertex order, pointing away) are not drawn, like
    pyrender with single-sided materials.

Layers:
    `rasterize` takes a layer index per face and keeps one z-buffer per layer, all in one
    pass over the fragments: each layer is the occlusion-free render of its faces alone.
    The full-scene depth is the minimum over the layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions import project

NEAR = 1e-3  # metres


def project_vertices(vertices: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(V,2)`` (pixel-edge convention: pixel j spans [j, j+1]) and depth ``(V,)``."""
    v = np.asarray(vertices, dtype=np.float64)
    return project(v, K), v[:, 2]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V,3)`` (the normals both render paths use)."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    out = np.zeros_like(v)
    idx = np.asarray(faces, np.int64).ravel()
    rep = np.repeat(n, 3, axis=0)
    for c in range(3):
        out[:, c] = np.bincount(idx, weights=rep[:, c], minlength=len(v))
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-20)


@dataclass
class Fragments:
    """Per-layer winners of the z-buffer, sparse: one row per covered (layer, pixel)."""

    layer: np.ndarray  # (N,) int
    pix: np.ndarray  # (N,) flat pixel index i * W + j
    face: np.ndarray  # (N,) face index
    bary: np.ndarray  # (N,3) perspective-correct barycentric weights of the face's vertices
    depth: np.ndarray  # (N,) camera z, metres
    height: int
    width: int
    n_layers: int

    def depth_maps(self, fill: float = np.inf) -> np.ndarray:
        """Dense ``(L,H,W)`` float32 depth, ``fill`` where a layer is empty."""
        out = np.full((self.n_layers, self.height * self.width), fill, dtype=np.float32)
        out[self.layer, self.pix] = self.depth
        return out.reshape(self.n_layers, self.height, self.width)

    def interpolate(self, vertex_attr: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Perspective-correct interpolation of a per-vertex attribute ``(V,C)`` -> ``(N,C)``."""
        corners = vertex_attr[faces[self.face]]  # (N,3,C)
        return np.einsum("nk,nkc->nc", self.bary, corners)


def rasterize(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int,
              face_layer: np.ndarray | None = None, n_layers: int | None = None,
              cull_back: bool = True, near: float = NEAR) -> Fragments:
    """Rasterise triangles into one z-buffer per layer; returns the winning fragments.

    ``face_layer`` ``(F,)`` gives each face's layer (default: all in layer 0); faces with a
    negative layer are skipped. Steps: drawable faces, their pixel-centre samples (barycentric
    coverage test), then per layer and pixel the nearest fragment.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    F = len(faces)
    if face_layer is None:
        face_layer = np.zeros(F, dtype=np.int64)
    face_layer = np.asarray(face_layer, dtype=np.int64)
    L = int(n_layers if n_layers is not None else (face_layer.max() + 1 if F else 1))
    empty = Fragments(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                      np.zeros((0, 3)), np.zeros(0, np.float32), height, width, L)
    if F == 0:
        return empty
    uv, z = project_vertices(vertices, K)
    fidx = _drawable_faces(vertices, faces, uv, z, face_layer, cull_back, near)
    boxes = _sample_boxes(uv[faces[fidx]], height, width)
    if boxes is None:
        return empty
    ok, x0, y0, bw, bh, coef = boxes
    fidx = fidx[ok]
    samples = _covered_samples(coef, bw, bh)
    if samples is None:
        return empty
    rep, lx, ly, w0, w1 = samples
    face = fidx[rep]
    return _nearest_fragments(face, x0[rep] + lx, y0[rep] + ly, w0, w1, z[faces][face], face_layer[face],
                              height, width, L)


def _drawable_faces(vertices, faces, uv, z, face_layer, cull_back: bool, near: float) -> np.ndarray:
    """Indices of the faces in front of ``near``, in a layer, projected finitely and (with
    ``cull_back``) facing the camera."""
    keep = (z[faces] > near).all(axis=1) & (face_layer >= 0) & np.isfinite(uv[faces]).all(axis=(1, 2))
    if cull_back:
        tri = np.asarray(vertices, dtype=np.float64)[faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        keep &= np.einsum("fc,fc->f", n, tri[:, 0]) < 0  # normal points toward the camera
    return np.nonzero(keep)[0]


def _sample_boxes(t: np.ndarray, height: int, width: int):
    """For projected triangles ``t (f,3,2)``: which have pixel-centre samples in their bounding
    box and a non-zero area (``ok``), and for those the box's first sample ``x0, y0``, its size
    ``bw, bh`` and the barycentric coefficients ``coef (n,6)``; None when no face is left."""
    if len(t) == 0:
        return None
    # pixel-centre samples covered by each face's bounding box: columns x0..x0+bw-1, rows y0..y0+bh-1
    x0 = np.maximum(np.ceil(t[:, :, 0].min(1) - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.floor(t[:, :, 0].max(1) - 0.5), width - 1).astype(np.int64)
    y0 = np.maximum(np.ceil(t[:, :, 1].min(1) - 0.5), 0).astype(np.int64)
    y1 = np.minimum(np.floor(t[:, :, 1].max(1) - 0.5), height - 1).astype(np.int64)
    area = ((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1])
            - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1]))
    bw = x1 - x0 + 1
    bh = y1 - y0 + 1
    ok = (bw > 0) & (bh > 0) & (np.abs(area) > 1e-12)
    t, x0, y0, bw, bh, area = t[ok], x0[ok], y0[ok], bw[ok], bh[ok], area[ok]
    if len(t) == 0:
        return None
    # Barycentric weights are affine in the sample position: w = w(origin) + a * dx + b * dy,
    # with the origin at the bounding box's first sample; local offsets keep float32 exact enough.
    ox, oy = x0 + 0.5, y0 + 0.5
    inv = 1.0 / area
    a0 = -(t[:, 2, 1] - t[:, 1, 1]) * inv
    b0 = (t[:, 2, 0] - t[:, 1, 0]) * inv
    c0 = ((t[:, 2, 0] - t[:, 1, 0]) * (oy - t[:, 1, 1]) - (t[:, 2, 1] - t[:, 1, 1]) * (ox - t[:, 1, 0])) * inv
    a1 = -(t[:, 0, 1] - t[:, 2, 1]) * inv
    b1 = (t[:, 0, 0] - t[:, 2, 0]) * inv
    c1 = ((t[:, 0, 0] - t[:, 2, 0]) * (oy - t[:, 2, 1]) - (t[:, 0, 1] - t[:, 2, 1]) * (ox - t[:, 2, 0])) * inv
    coef = np.stack([a0, b0, c0, a1, b1, c1], axis=1).astype(np.float32)
    return ok, x0, y0, bw, bh, coef


def _covered_samples(coef: np.ndarray, bw: np.ndarray, bh: np.ndarray):
    """The (face, sample) pairs whose barycentric weights are all >= 0: face row ``rep``, the
    sample's offset in its box ``lx, ly`` and weights ``w0, w1`` (float64); None when none."""
    # faces are bucketed by bounding-box size and tested over a size x size grid by broadcasting
    size = np.maximum(bw, bh)
    sel_f, sel_x, sel_y, sel_w0, sel_w1 = [], [], [], [], []
    lo = 0
    for hi in _BUCKETS + [int(size.max())]:
        if hi <= lo:
            continue
        members = np.nonzero((size > lo) & (size <= hi))[0]
        lo = hi
        if len(members) == 0:
            continue
        g = np.arange(hi, dtype=np.float32)
        lx = np.tile(g, hi)
        ly = np.repeat(g, hi)
        c = coef[members]
        w0 = c[:, 2:3] + c[:, 0:1] * lx + c[:, 1:2] * ly
        w1 = c[:, 5:6] + c[:, 3:4] * lx + c[:, 4:5] * ly
        inside = (w0 >= 0) & (w1 >= 0) & (w0 + w1 <= 1)
        inside &= lx < bw[members, None]
        inside &= ly < bh[members, None]
        fi, k = np.nonzero(inside)
        sel_f.append(members[fi])
        sel_x.append(lx[k].astype(np.int64))
        sel_y.append(ly[k].astype(np.int64))
        sel_w0.append(w0[fi, k])
        sel_w1.append(w1[fi, k])
    rep = np.concatenate(sel_f)
    if len(rep) == 0:
        return None
    return (rep, np.concatenate(sel_x), np.concatenate(sel_y),
            np.concatenate(sel_w0).astype(np.float64), np.concatenate(sel_w1).astype(np.float64))


def _nearest_fragments(face, px, py, w0, w1, tz, layer, height: int, width: int, L: int) -> Fragments:
    """Perspective-correct depth and barycentrics of each fragment (``tz (N,3)``: its face's
    vertex depths), and per (layer, pixel) the nearest one."""
    w2 = np.maximum(1.0 - w0 - w1, 0.0)
    iz = 1.0 / tz  # (N,3)
    b = np.stack([w0, w1, w2], axis=1) * iz
    inv_depth = b.sum(axis=1)
    depth = 1.0 / inv_depth
    bary = b / inv_depth[:, None]
    key = layer * (height * width) + py * width + px
    # one sort by (key, depth): the first fragment of each key is the z-buffer's winner
    zmax = float(depth.max()) * 1.000001 + 1e-9
    order = np.argsort(key.astype(np.float64) + depth / zmax, kind="stable")
    ks = key[order]
    first = np.ones(len(ks), bool)
    first[1:] = ks[1:] != ks[:-1]
    sel = order[first]
    return Fragments(layer[sel], (py * width + px)[sel], face[sel], bary[sel], depth[sel].astype(np.float32),
                     height, width, L)


_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256]


def depth_map(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int,
              cull_back: bool = False) -> np.ndarray:
    """``(H,W)`` float32 camera-z depth of the nearest surface; ``inf`` where empty."""
    return rasterize(vertices, faces, K, height, width, cull_back=cull_back).depth_maps()[0]


def mesh_mask(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H,W)`` bool: pixels whose centre the mesh's projection covers (all faces, both sides).

    Vertices ``(V,3)`` in the OpenCV camera frame (metres), ``faces`` ``(F,3)``, ``K`` 3x3.
    Faces with a vertex behind the camera (z <= 1 mm) are skipped.
    """
    return np.isfinite(depth_map(vertices, faces, K, height, width, cull_back=False))


def normal_map(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int, width: int,
               normals: np.ndarray | None = None, cull_back: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(normals ``(H,W,3)`` float32 unit, camera frame OpenCV, 0 where empty; depth ``(H,W)``, inf where empty)."""
    frags = rasterize(vertices, faces, K, height, width, cull_back=cull_back)
    vn = vertex_normals(vertices, faces) if normals is None else np.asarray(normals, np.float64)
    n = frags.interpolate(vn, np.asarray(faces, np.int64))
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    out = np.zeros((height * width, 3), np.float32)
    out[frags.pix] = n
    return out.reshape(height, width, 3), frags.depth_maps()[0]
