"""04_mlo: ManiVideo's Multi-Layer Occlusion (MLO) maps.

Per frame, 13 layers in `hoi_cli.conventions.MLO_LAYERS` order: the object, then for the left
and the right hand its palm, thumb, index, middle, ring and pinky. Each layer is rendered
ALONE (occlusion-free): its normal map and its depth map. The occlusion confidence of a layer
comes from the full-scene depth buffer (all layers together, both hands and the object):

    conf(p) = sigmoid((D_scene(p) - D_layer(p) + margin) / tau)   where the layer covers p, else 0

D in metres (camera z). Where the layer is the front-most surface, D_scene = D_layer and
conf = sigmoid(margin / tau) (0.993 with the defaults margin = 1 cm, tau = 2 mm); where
something lies d metres in front of it, conf falls to 0.5 at d = margin and to ~0 beyond
(sigmoid(-5) = 0.007 at d = 2 cm). ``margin`` keeps touching neighbours (a finger resting on
the palm, a fingertip on the object) visible; ``tau`` sets how soft the fall is.

Object geometry: a user-given mesh (``object_mesh``, object frame) with per-frame
object-to-camera poses (``object_poses``, .npy (T,4,4), OpenCV camera axes) when given;
otherwise a proxy surface inflated from the 03_segment object mask
(`hoi_cli.render.scene.proxy_object_mesh`), its rim placed at the depth of the hand
contact: the median camera z of the hand joints inside the mask's box grown by
``contact_margin_px`` (then of all hand joints, then ``default_depth``); by default
(``proxy_anchor="front"``) its nearest point lies at that depth, so the object sits just behind
the contact (``"rim"`` puts its silhouette rim there and lets it bulge toward the camera).

Hand part labels come from the hand model's skinning weights (`render.scene.vertex_parts`);
normals are area-weighted vertex normals of the whole hand mesh, so a part's normals at its
border equal the hand's. Back faces are culled.

Backends (the outputs agree to within a pixel-edge tie and 8-bit rounding; tested):
    ``raster``    the vectorised numpy z-buffer of `hoi_cli.render.raster`, all 13 layers in one
                  pass over the fragments and only over the pixels each triangle covers.
    ``pyrender``  the reference: pyrender (OpenGL via EGL; Mesa on CPU, the driver on GPU),
                  each layer rendered alone, then D_scene = min over the layer depths (which is
                  exactly the full-scene depth buffer).

Outputs (``04_mlo/``):
    ``mlo/000000.npz ...`` one file per frame, each layer stored as its bounding-box crop:
        ``boxes (L,4) int32``      crop of layer l: x0, y0, x1, y1 (x1, y1 exclusive); all 0 if empty
        ``normals (N,3) uint8``    the crops' pixels, layer after layer, row-major; encoding
                                   (n + 1) * 127.5 in the OpenCV camera frame, 0 outside the layer
        ``confidence (N,) uint8``  round(255 * conf), 0 outside the layer
        ``depth (N,) float16``     camera z, metres, 0 outside the layer
        ``scene_box (4,) int32``, ``scene_depth (n,) float16``: the full-scene depth crop
    ``layers.json``               the layer names, the encoding, and the confidence constants.
Read them with `load_mlo` (dense arrays) or `load_mlo_frame`.
"""

from __future__ import annotations

import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..conventions import HAND_PARTS, MLO_LAYERS, decode_normals, encode_normals
from ..errors import BadInputError
from ..params import typed
from .base import StageContext
from . import frames as frames_stage, hands as hands_stage, segment as segment_stage

NAME = "04_mlo"
VERSION = "2"
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME, hands_stage.NAME, segment_stage.NAME)
N_LAYERS = len(MLO_LAYERS)
OBJECT_LAYER = 0


@typed
class Params:
    backend: Literal["raster", "pyrender"] = "raster"
    """Renderer: raster (fast, numpy) or pyrender (the reference, needs EGL)."""
    margin: float = 0.01
    """Occlusion confidence is 0.5 where something is this far in front, metres."""
    tau: float = 0.002
    """Softness of the confidence's fall, metres."""
    object_mesh: str = ""
    """An optional object mesh file (object frame, metres); "" = a proxy surface from the object mask."""
    object_poses: str = ""
    """.npy (T,4,4) object-to-camera, OpenCV axes; needed with object_mesh."""
    proxy_stride: int = 4
    """Proxy object: px between its surface's grid vertices."""
    proxy_thickness: float = 1.0
    """Proxy object: its inflation relative to a sphere's profile."""
    proxy_anchor: Literal["front", "rim"] = "front"
    """Proxy object: front puts its nearest point at the hands' contact depth, rim puts its rim there."""
    contact_margin_px: float = 16.0
    """Hand joints this near the object box count as contact, px."""
    default_depth: float = 0.5
    """Contact depth when no hand joint gives one, metres."""
    workers: int = 2
    """Frames in flight (raster backend)."""
    compress_level: int = 1
    """zlib level of the per-frame npz files (0 = stored)."""


# ---------------------------------------------------------------- geometry of one frame
@dataclass
class Component:
    vertices: np.ndarray  # (V,3) camera frame
    faces: np.ndarray  # (F,3)
    normals: np.ndarray  # (V,3)
    face_layer: np.ndarray  # (F,) layer index


@dataclass
class LayerPixels:
    """Sparse MLO of one frame: one row per (layer, pixel) covered, sorted by layer then pixel."""

    layer: np.ndarray  # (N,)
    pix: np.ndarray  # (N,) i * W + j
    normal: np.ndarray  # (N,3) float unit
    depth: np.ndarray  # (N,) float metres
    height: int
    width: int


def hand_component(vertices: np.ndarray, faces: np.ndarray, fparts: np.ndarray, slot: int) -> Component:
    from ..render.raster import vertex_normals

    return Component(vertices, faces, vertex_normals(vertices, faces), 1 + slot * len(HAND_PARTS) + fparts)


def object_component(vertices: np.ndarray, faces: np.ndarray) -> Component:
    from ..render.raster import vertex_normals

    return Component(vertices, faces, vertex_normals(vertices, faces) if len(faces) else np.zeros_like(vertices),
                     np.full(len(faces), OBJECT_LAYER, np.int64))


def render_layers_raster(components: list[Component], K: np.ndarray, height: int, width: int) -> LayerPixels:
    """All layers in one rasterisation pass (fast path)."""
    from ..render.raster import rasterize

    comps = [c for c in components if len(c.faces)]
    if not comps:
        return _empty(height, width)
    offsets = np.cumsum([0] + [len(c.vertices) for c in comps])
    V = np.concatenate([c.vertices for c in comps])
    N = np.concatenate([c.normals for c in comps])
    F = np.concatenate([c.faces + o for c, o in zip(comps, offsets)])
    FL = np.concatenate([c.face_layer for c in comps])
    frags = rasterize(V, F, K, height, width, face_layer=FL, n_layers=N_LAYERS, cull_back=True)
    n = frags.interpolate(N, F)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    return LayerPixels(frags.layer, frags.pix, n, frags.depth.astype(np.float64), height, width)


def render_layers_pyrender(components: list[Component], K: np.ndarray, height: int, width: int,
                           renderer=None) -> LayerPixels:
    """Reference path: every layer rendered alone with pyrender."""
    from ..render.pyr import Renderer

    own = renderer is None
    r = Renderer(width, height) if own else renderer
    rows = {k: [] for k in ("layer", "pix", "normal", "depth")}
    try:
        for layer in range(N_LAYERS):
            for c in components:
                sel = c.face_layer == layer
                if not sel.any():
                    continue
                n, d = r.render(c.vertices, c.faces[sel], K, normals=c.normals, cull_back=True)
                pix = np.nonzero(np.isfinite(d).ravel())[0]
                rows["layer"].append(np.full(len(pix), layer))
                rows["pix"].append(pix)
                rows["normal"].append(n.reshape(-1, 3)[pix].astype(np.float64))
                rows["depth"].append(d.ravel()[pix].astype(np.float64))
    finally:
        if own:
            r.close()
    if not rows["pix"]:
        return _empty(height, width)
    layer = np.concatenate(rows["layer"])
    pix = np.concatenate(rows["pix"])
    normal = np.concatenate(rows["normal"])
    depth = np.concatenate(rows["depth"])
    # one layer may come from several components: keep the nearest per (layer, pixel)
    key = layer * (height * width) + pix
    order = np.lexsort((depth, key))
    _, first = np.unique(key[order], return_index=True)
    sel = order[first]
    return LayerPixels(layer[sel], pix[sel], normal[sel], depth[sel], height, width)


def _empty(height: int, width: int) -> LayerPixels:
    return LayerPixels(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0), height, width)


def occlusion_confidence(layer_depth: np.ndarray, scene_depth: np.ndarray, margin: float, tau: float) -> np.ndarray:
    """``sigmoid((scene_depth - layer_depth + margin) / tau)``: ~1 front-most, ~0 hidden (see module doc)."""
    x = (np.asarray(scene_depth, np.float64) - np.asarray(layer_depth, np.float64) + margin) / tau
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def encode_frame(lp: LayerPixels, margin: float, tau: float) -> dict[str, np.ndarray]:
    """The per-frame npz arrays (see module doc) from sparse layer pixels."""
    H, W = lp.height, lp.width
    scene = np.full(H * W, np.inf)
    np.minimum.at(scene, lp.pix, lp.depth)
    conf = occlusion_confidence(lp.depth, scene[lp.pix], margin, tau)
    ncode = encode_normals(lp.normal)
    ccode = np.rint(conf * 255).astype(np.uint8)
    ys, xs = lp.pix // W, lp.pix % W
    boxes = np.zeros((N_LAYERS, 4), np.int32)
    normals, confs, depths = [], [], []
    bounds = np.searchsorted(lp.layer, np.arange(N_LAYERS + 1))
    for layer in range(N_LAYERS):
        a, b = bounds[layer], bounds[layer + 1]
        if a == b:
            continue
        y, x = ys[a:b], xs[a:b]
        x0, y0, x1, y1 = x.min(), y.min(), x.max() + 1, y.max() + 1
        boxes[layer] = (x0, y0, x1, y1)
        h, w = y1 - y0, x1 - x0
        local = (y - y0) * w + (x - x0)
        n = np.zeros((h * w, 3), np.uint8)
        n[local] = ncode[a:b]
        c = np.zeros(h * w, np.uint8)
        c[local] = ccode[a:b]
        d = np.zeros(h * w, np.float16)
        d[local] = lp.depth[a:b]
        normals.append(n)
        confs.append(c)
        depths.append(d)
    hit = np.isfinite(scene)
    if hit.any():
        yy, xx = np.nonzero(hit.reshape(H, W))
        sb = np.array([xx.min(), yy.min(), xx.max() + 1, yy.max() + 1], np.int32)
        sd = np.where(hit, scene, 0).reshape(H, W)[sb[1]:sb[3], sb[0]:sb[2]].astype(np.float16).ravel()
    else:
        sb, sd = np.zeros(4, np.int32), np.zeros(0, np.float16)
    return {
        "boxes": boxes,
        "normals": np.concatenate(normals) if normals else np.zeros((0, 3), np.uint8),
        "confidence": np.concatenate(confs) if confs else np.zeros(0, np.uint8),
        "depth": np.concatenate(depths) if depths else np.zeros(0, np.float16),
        "scene_box": sb,
        "scene_depth": sd,
        "size": np.array([H, W], np.int32),
    }


def save_npz(path: Path, arrays: dict[str, np.ndarray], compress_level: int = 1) -> None:
    """Like np.savez_compressed, with a chosen zlib level (no pickle)."""
    mode = zipfile.ZIP_DEFLATED if compress_level > 0 else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode, compresslevel=compress_level or None) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


ALL_KEYS = ("normals", "confidence", "depth", "scene_depth")


def decode_frame(arrays, keys=ALL_KEYS) -> dict[str, np.ndarray]:
    """Dense arrays of one frame: normals (L,H,W,3) uint8, confidence (L,H,W) uint8,
    depth (L,H,W) float16, scene_depth (H,W) float16; only those in ``keys`` are decoded."""
    H, W = (int(s) for s in arrays["size"])
    layered = {"normals": ((N_LAYERS, H, W, 3), np.uint8), "confidence": ((N_LAYERS, H, W), np.uint8),
               "depth": ((N_LAYERS, H, W), np.float16)}
    out = {k: np.zeros(shape, dtype) for k, (shape, dtype) in layered.items() if k in keys}
    packed = {k: arrays[k] for k in out}  # npz members are read (and inflated) only when accessed
    o = 0
    for layer, (x0, y0, x1, y1) in enumerate(arrays["boxes"]):
        n = int((x1 - x0) * (y1 - y0))
        if n == 0:
            continue
        h, w = y1 - y0, x1 - x0
        for k, dense in out.items():
            dense[layer, y0:y1, x0:x1] = packed[k][o:o + n].reshape((h, w) + dense.shape[3:])
        o += n
    if "scene_depth" in keys:
        scene = np.zeros((H, W), np.float16)
        x0, y0, x1, y1 = (int(v) for v in arrays["scene_box"])
        if x1 > x0:
            scene[y0:y1, x0:x1] = arrays["scene_depth"].reshape(y1 - y0, x1 - x0)
        out["scene_depth"] = scene
    return out


# ---------------------------------------------------------------- the stage
class FrameScenes:
    """Builds the components (hands + object) of each frame from the upstream outputs."""

    def __init__(self, hands: dict, masks: dict | None, p: Params, n_frames: int, height: int, width: int):
        """``hands``: 02_hands' arrays; ``masks``: 03_segment's, or None where it has not run."""
        from ..render import scene as sc

        self.p = p
        self.hands = hands
        self.K = np.asarray(self.hands["K"], np.float64)
        verts = np.asarray(self.hands["vertices"])
        if verts.shape[0] != n_frames:
            raise BadInputError(f"02_hands has {verts.shape[0]} frames, 00_frames {n_frames}", "rerun 02_hands")
        self.faces = np.asarray(self.hands["faces"], np.int64)
        # each hand's own winding: the left hand's is reversed, so its normals point outwards
        self.slot_faces = np.asarray(self.hands["slot_faces"], np.int64)
        self.valid = np.asarray(self.hands["valid"], bool)
        joints = self.hands.get("joints")
        self.joints = None if joints is None else np.asarray(joints, np.float64)
        V = verts.shape[2]
        ref = None
        if self.joints is not None and self.valid.any():
            t, h = np.argwhere(self.valid)[0]
            ref = (self.joints[t, h], verts[t, h])
        vparts = sc.vertex_parts(V, *(ref or (None, None)))
        self.fparts = sc.face_parts(self.faces, vparts)
        self.height, self.width = height, width
        self.obj_mesh = self.obj_poses = None
        self.masks = None
        if p.object_mesh:
            if not p.object_poses:
                raise BadInputError("object_mesh given without object_poses",
                                    "give --set mlo.object_poses=POSES.npy ((T,4,4) object-to-camera)")
            self.obj_mesh = sc.load_object_mesh(p.object_mesh)
            self.obj_poses = sc.load_object_poses(p.object_poses, n_frames)
        else:
            self.masks = None if masks is None else masks.get("object")

    def components(self, t: int) -> list[Component]:
        from ..conventions import box_from_mask
        from ..render import scene as sc

        comps = []
        verts = self.hands["vertices"]
        for slot in range(2):
            if self.valid[t, slot]:
                comps.append(hand_component(np.asarray(verts[t, slot], np.float64), self.slot_faces[slot], self.fparts,
                                            slot))
        if self.obj_mesh is not None:
            v, f = self.obj_mesh
            pose = self.obj_poses[t]
            comps.append(object_component(v @ pose[:3, :3].T + pose[:3, 3], f))
        elif self.masks is not None and self.masks[t].any():
            m = self.masks[t]
            joints = self.joints[t] if self.joints is not None else np.full((2, 21, 3), np.nan)
            z = sc.contact_depth(joints, self.valid[t], self.K, box_from_mask(m), self.p.contact_margin_px,
                                 self.p.default_depth)
            v, f = sc.proxy_object_mesh(m, self.K, z, self.p.proxy_stride, self.p.proxy_thickness,
                                        self.p.proxy_anchor)
            comps.append(object_component(v, f))
        return comps


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    if p.margin < 0 or p.tau <= 0:
        raise BadInputError("mlo needs margin >= 0 and tau > 0", "e.g. margin=0.01 tau=0.002 (metres)")
    meta = ctx.read(frames_stage).meta
    T, H, W = int(meta["n_frames"]), int(meta["height"]), int(meta["width"])
    masks = None if p.object_mesh else ctx.read(segment_stage, optional=True)
    scenes = FrameScenes(ctx.read(hands_stage), masks, p, T, H, W)
    out = ctx.out_dir / "mlo"
    out.mkdir()
    def finish(t: int, lp: LayerPixels) -> None:
        arrays = encode_frame(lp, p.margin, p.tau)
        save_npz(out / f"{t:06d}.npz", arrays, p.compress_level)
        b = arrays["boxes"]
        return (b[:, 2] > b[:, 0]).astype(np.int64)

    present = np.zeros(N_LAYERS, np.int64)
    if p.backend == "raster":
        def work(t: int):
            return finish(t, render_layers_raster(scenes.components(t), scenes.K, H, W))

        with ThreadPoolExecutor(max(1, p.workers)) as pool:
            for i, res in enumerate(pool.map(work, range(T))):
                present += res
                ctx.progress(i + 1, T)
    else:
        from ..render.pyr import Renderer

        with Renderer(W, H) as r:
            for t in range(T):
                present += finish(t, render_layers_pyrender(scenes.components(t), scenes.K, H, W, renderer=r))
                ctx.progress(t + 1, T)
    (ctx.out_dir / "layers.json").write_text(json.dumps({
        "layers": list(MLO_LAYERS),
        "normals": "uint8 (n + 1) * 127.5, unit normal in the OpenCV camera frame (x right, y down, z forward)",
        "confidence": "uint8 255 * sigmoid((D_scene - D_layer + margin) / tau), 0 where the layer is absent",
        "depth": "float16 camera z in metres, 0 where absent",
        "margin": p.margin, "tau": p.tau,
        "object": "mesh" if p.object_mesh else ("proxy" if scenes.masks is not None else "none"),
    }, indent=1))
    return {"n_frames": T, "backend": p.backend,
            "frames_with_layer": {name: int(c) for name, c in zip(MLO_LAYERS, present)}}


# ---------------------------------------------------------------- loaders
def frame_files(run_dir: str | Path) -> list[Path]:
    files = sorted((Path(run_dir) / NAME / "mlo").glob("*.npz"))
    if not files:
        raise BadInputError(f"no MLO maps in {run_dir}", "run 04_mlo first (hoi preprocess --pipeline manivideo)")
    return files


def load_mlo_frame(run_dir: str | Path, t: int, keys=ALL_KEYS) -> dict[str, np.ndarray]:
    """One frame, dense: normals (L,H,W,3) uint8, confidence (L,H,W) uint8, depth (L,H,W) float16,
    scene_depth (H,W) float16; layers in MLO_LAYERS order; ``keys`` picks which to decode."""
    with np.load(frame_files(run_dir)[t], allow_pickle=False) as z:
        return decode_frame(z, keys)


def load_mlo(run_dir: str | Path, frames=None, keys=ALL_KEYS) -> dict[str, np.ndarray]:
    """All (or the listed) frames, dense: normals (T,L,H,W,3) uint8, confidence (T,L,H,W) uint8,
    depth (T,L,H,W) float16, scene_depth (T,H,W) float16, layers (L,) names.

    Mind the memory: 13 layers at 512x512 are ~17 MB per frame; pass ``frames`` for long clips.
    Decode normals with `hoi_cli.conventions.decode_normals`. ``keys`` picks which arrays
    to decode (e.g. ``("depth",)`` for the depth order alone, much faster).
    """
    files = frame_files(run_dir)
    idx = range(len(files)) if frames is None else frames
    per = [load_mlo_frame(run_dir, t, keys) for t in idx]
    out = {k: np.stack([f[k] for f in per]) for k in per[0]} if per else {}
    out["layers"] = np.array(MLO_LAYERS)
    return out


load = load_mlo  # the stage's loader (`StageContext.read`)

__all__ = ["Params", "run", "load", "load_mlo", "load_mlo_frame", "occlusion_confidence", "decode_normals"]
