"""Offscreen pyrender (OpenGL via EGL) rendering: the reference path for masks, depth and normals.

Convention:
    Inputs are in the OpenCV camera frame (x right, y down, z forward, metres) with a 3x3 ``K``;
    they are converted to pyrender's OpenGL axes here, at the render boundary only
    (`hoi_cli.conventions.CV_TO_GL`: the camera sits at the origin looking down -z with y up,
    so the OpenCV vertices are mapped by diag(1,-1,-1), a rotation, which keeps the faces'
    winding). Depth is camera z in metres (``inf`` where empty, matching `raster`).
    Normals are rendered as vertex colours ``(n + 1) / 2`` with the FLAT flag (no lighting,
    no gamma), interpolated by OpenGL, read back as 8-bit and decoded ``2c - 1`` then
    renormalised: accurate to about 1/255.

EGL: ``PYOPENGL_PLATFORM`` is set to ``egl`` unless the caller set it; on a machine without a
GPU, Mesa's EGL renders on the CPU (llvmpipe); with an NVIDIA driver it renders on the GPU.
"""

from __future__ import annotations

import os

import numpy as np

from ..conventions import CV_TO_GL
from .raster import vertex_normals


_PATCHED = False


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender

    _no_msaa(pyrender)
    return pyrender


def _no_msaa(pyrender) -> None:
    """pyrender draws into a 4x multisampled framebuffer; make it single-sampled.

    With multisampling, silhouette pixels blend the layer's colour (our encoded normal) with
    the background and their coverage differs from a pixel-centre test. Single-sampled, the
    reference samples each pixel at its centre, exactly as `raster` does. The patch replaces
    the one GL call in pyrender's renderer module (sample count 4 -> 0, i.e. plain storage).
    """
    global _PATCHED
    if _PATCHED:
        return
    import pyrender.renderer as rmod

    original = rmod.glRenderbufferStorageMultisample

    def single_sample(target, samples, internalformat, width, height):
        return original(target, 0, internalformat, width, height)

    rmod.glRenderbufferStorageMultisample = single_sample
    _PATCHED = True


class Renderer:
    """One offscreen context of a fixed size; reuse it across frames and layers."""

    def __init__(self, width: int, height: int):
        pyrender = _pyrender()
        self.width, self.height = int(width), int(height)
        self._r = pyrender.OffscreenRenderer(self.width, self.height)

    def close(self) -> None:
        if self._r is not None:
            self._r.delete()
            self._r = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def render(self, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
               normals: np.ndarray | None = None, cull_back: bool = True,
               znear: float = 0.01, zfar: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
        """(normals ``(H,W,3)`` float32 camera frame OpenCV, 0 where empty; depth ``(H,W)`` float32, inf where empty)."""
        pyrender = _pyrender()
        v = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        vn = vertex_normals(v, faces) if normals is None else np.asarray(normals, np.float64)
        colors = np.concatenate([(vn + 1.0) / 2.0, np.ones((len(v), 1))], axis=1).astype(np.float32)
        prim = pyrender.Primitive(positions=(v @ CV_TO_GL.T).astype(np.float32), indices=faces.astype(np.uint32),
                                  color_0=colors, mode=pyrender.constants.GLTF.TRIANGLES,
                                  material=pyrender.MetallicRoughnessMaterial(
                                      baseColorFactor=[1.0, 1.0, 1.0, 1.0], doubleSided=not cull_back))
        scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[1.0, 1.0, 1.0])
        scene.add(pyrender.Mesh([prim]))
        cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=znear, zfar=zfar)
        scene.add(cam, pose=np.eye(4))
        color, depth = self._r.render(scene, flags=pyrender.RenderFlags.FLAT)
        depth = depth.astype(np.float32)
        hit = depth > 0
        n = color[..., :3].astype(np.float32) / 255.0 * 2.0 - 1.0
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
        n[~hit] = 0
        depth[~hit] = np.inf
        return n, depth

    def mask(self, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray) -> np.ndarray:
        return np.isfinite(self.render(vertices, faces, K, cull_back=False)[1])
