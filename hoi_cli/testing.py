"""Synthetic runs and clips for tests and benchmarks, in the real file formats (no detector, no GPU).

`make_synthetic_run` is the one builder of run folders; it knows two scenes:

- ``hands="rest"`` (the render and dataset scene): two built-in-model hands in their rest pose,
  rotated to face the camera and moving slightly, with a round object held between them.
  00_frames, 02_hands (meshes) and, where named in ``stages``, 01_detect (boxes from the meshes'
  masks) and 03_segment (the object's disc, the hands' rendered masks) are written directly;
  04_mlo, 05_silhouette and 06_layout, where named, by those stages' own ``run`` (so a test reads
  exactly what `hoi preprocess` writes). Ground truth: vertices, faces, K, masks, boxes.
- ``hands="tracked"`` (02_hands' input): blank frames and 01_detect keypoints of a smooth random
  built-in-model track per hand, with 2 px noise; the left hand appears at frame 3 and the right
  hand's frame 5 is flagged as interpolated. Ground truth: each side's track (`synthetic_track`).

Every stage folder gets a real manifest (`RunStore.adopt`), so the run reads as fresh.
`write_test_clip` makes small deterministic video files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .conventions import box_from_mask, default_intrinsics, pack_masks, square_box
from .handmodel.mano_io import load_hand_model
from .pipeline import get_stage
from .render.raster import mesh_mask
from .resources import hand_model_dir
from .stages import detect, frames, layout, mlo, segment, silhouette
from .stages import hands as hands_stage
from .stages.base import StageContext
from .store import RunStore
from .video import write_image

FRAMES, DETECT, HANDS, SEGMENT = frames.NAME, detect.NAME, hands_stage.NAME, segment.NAME
MLO, SILHOUETTE, LAYOUT = mlo.NAME, silhouette.NAME, layout.NAME
# the stage folders `make_synthetic_run` can add to 00_frames and 02_hands (rest scene)
SYNTHETIC_STAGES = (DETECT, SEGMENT, MLO, SILHOUETTE, LAYOUT)
FPS = {"rest": 10.0, "tracked": 12.0}


@dataclass
class SyntheticRun:
    """A synthetic run folder and the ground truth it was made from (``hands="rest"``: meshes and
    masks; ``hands="tracked"``: ``tracks``)."""

    path: Path
    K: np.ndarray
    vertices: np.ndarray | None = None  # (T, 2, V, 3) camera frame, metres
    faces: np.ndarray | None = None  # (F, 3), both hands
    object: np.ndarray | None = None  # (T, H, W) bool
    hand: np.ndarray | None = None  # (T, H, W) bool, both hands
    hand_boxes: np.ndarray | None = None  # (T, 2, 4) xyxy px
    object_boxes: np.ndarray | None = None  # (T, 4) xyxy px
    tracks: dict[str, dict] = field(default_factory=dict)  # "left"/"right" -> synthetic_track's truth


def make_synthetic_run(run_dir: str | Path, n_frames: int = 8, *, width: int = 64, height: int = 48,
                       hands: Literal["rest", "tracked"] = "rest",
                       stages: tuple[str, ...] = (DETECT, SEGMENT),
                       object_radius_px: float | None = None,
                       square_box_px: float | None = None) -> SyntheticRun:
    """Write a synthetic run folder at ``run_dir`` (see the module docstring for the two scenes).

    ``stages``: the optional folders to write, from `SYNTHETIC_STAGES` (``hands="tracked"``:
    01_detect only). ``object_radius_px`` defaults to 0.2 * the short side; ``square_box_px``
    (01_detect's Re-HOLD hand squares) to 0.6 * the height, so small frames keep them inside.
    """
    allowed = SYNTHETIC_STAGES if hands == "rest" else (DETECT,)
    unknown = set(stages) - set(allowed)
    if hands not in FPS or unknown:
        raise ValueError(f"unknown synthetic hands {hands!r} or stages {sorted(unknown)}; "
                         f"choose hands from {tuple(FPS)}, stages from {allowed}")
    run_dir = Path(run_dir)
    if hands == "tracked":
        truth = _write_tracked_hands(run_dir, n_frames, width, height)
        adopt_stages(run_dir, (FRAMES, *stages) if DETECT in stages else (FRAMES,))
        if DETECT not in stages:
            shutil.rmtree(run_dir / DETECT)
        return truth
    radius = 0.2 * min(height, width) if object_radius_px is None else object_radius_px
    square = 0.6 * height if square_box_px is None else square_box_px
    truth = _write_rest_scene(run_dir, n_frames, width, height, radius, square)
    adopt_stages(run_dir, (FRAMES, DETECT, HANDS, SEGMENT))
    made = _run_render_stages(run_dir, [s for s in (MLO, SILHOUETTE, LAYOUT) if s in stages])
    for name in (DETECT, SEGMENT):
        if name not in stages:
            shutil.rmtree(run_dir / name)
    # manifests over the final folders (in pipeline order), so the run reads as fresh
    present = [n for n in (FRAMES, DETECT, HANDS, SEGMENT, *made) if (run_dir / n).is_dir()]
    adopt_stages(run_dir, present, made)
    return truth


def adopt_stages(run_dir: Path, stages, params: dict | None = None) -> None:
    """Give synthetic stage folders real manifests (in pipeline order), so they read as fresh."""
    store = RunStore(run_dir)
    for name in stages:
        store.adopt(get_stage(name), (params or {}).get(name), summary={"synthetic": True})


def template_hands() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left (V,3), right (V,3), faces (F,3)) of the built-in hand model's rest pose, centred."""
    d = hand_model_dir()
    out = []
    for side in ("LEFT", "RIGHT"):
        with np.load(d / f"MANO_{side}.npz", allow_pickle=False) as z:
            v = z["v_template"].astype(np.float64)
            faces = z["f"].astype(np.int64)
        out.append(v - v.mean(0))
    return out[0], out[1], faces


def _rot(axis: str, deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(axis, deg, degrees=True).as_matrix()


def _write_frames_meta(run_dir: Path, n_frames: int, width: int, height: int, fps: float) -> None:
    meta = {"fps": fps, "width": width, "height": height, "n_frames": n_frames,
            "source": {"path": "synthetic"}, "timestamps": [t / fps for t in range(n_frames)]}
    (run_dir / FRAMES / "meta.json").write_text(json.dumps(meta))


def _write_rest_scene(run_dir: Path, T: int, width: int, height: int, object_radius_px: float,
                      square_box_px: float) -> SyntheticRun:
    K = default_intrinsics(width, height)
    left, right, faces = template_hands()
    verts = np.zeros((T, 2, len(left), 3))
    for t in range(T):
        wiggle = 3.0 * np.sin(t / 3.0)
        for slot, (v, x, ang) in enumerate(((left, -0.07, -60), (right, 0.07, 60))):
            R = _rot("z", ang + wiggle) @ _rot("x", 90)  # fingers up-ish, palm toward the camera
            verts[t, slot] = v @ R.T + np.array([x, 0.02 + 0.002 * t, 0.5])
    obj = np.zeros((T, height, width), bool)
    yy, xx = np.mgrid[0:height, 0:width]
    for t in range(T):
        cx, cy = width / 2 + 2 * t, height / 2 + 0.35 * height * 0.2
        obj[t] = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= object_radius_px ** 2
    slot_masks = np.stack([[mesh_mask(verts[t, s], faces, K, height, width) for s in range(2)] for t in range(T)])
    hand = slot_masks[:, 0] | slot_masks[:, 1]
    # stand-in joints: 21 vertices spread over the mesh (the render stages read vertices only)
    joints = verts[:, :, np.linspace(0, len(left) - 1, 21).astype(int)]
    frames_dir = run_dir / FRAMES / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for t in range(T):
        img = np.full((height, width, 3), 90, np.uint8)
        img[obj[t]] = (200, 60, 40)
        img[hand[t]] = (220, 180, 150)
        img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
        write_image(frames_dir / f"{t:06d}.png", img)
    _write_frames_meta(run_dir, T, width, height, FPS["rest"])
    hand_boxes = np.stack([[box_from_mask(m) for m in pair] for pair in slot_masks]).astype(np.float32)
    object_boxes = np.stack([box_from_mask(m) for m in obj])
    (run_dir / DETECT).mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / DETECT / "detections.npz", hand_boxes=hand_boxes,
             hand_boxes_square=square_box(hand_boxes, square_box_px), object_boxes=object_boxes,
             hand_keypoints=np.zeros((T, 2, 21, 3), np.float32), hand_score=np.ones((T, 2), np.float32),
             object_score=np.ones(T, np.float32))
    (run_dir / HANDS).mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / HANDS / "mano.npz", vertices=verts.astype(np.float32), faces=faces, K=K,
             valid=np.ones((T, 2), bool), joints=joints.astype(np.float32))
    (run_dir / SEGMENT).mkdir(parents=True, exist_ok=True)
    po, shape = pack_masks(obj)
    ph, _ = pack_masks(hand)
    np.savez(run_dir / SEGMENT / "masks.npz", object=po, hand=ph, shape=shape)
    return SyntheticRun(run_dir, K, verts, faces, obj, hand, hand_boxes, object_boxes)


def _run_render_stages(run_dir: Path, names: list[str]) -> dict:
    """Run 04_mlo / 05_silhouette / 06_layout's own ``run`` on the synthetic inputs; their params."""
    every = {MLO: (mlo, mlo.Params(workers=1)),
             SILHOUETTE: (silhouette, silhouette.Params(write_video=False)),
             LAYOUT: (layout, layout.Params(write_video=False))}
    for name in names:
        module, params = every[name]
        tmp = run_dir / f".{name}.tmp"
        tmp.mkdir()
        summary = module.run(StageContext(run_dir, tmp, params))
        (tmp / "manifest.json").write_text(json.dumps({"stage": name, "synthetic": True, "summary": summary}))
        tmp.rename(run_dir / name)
    return {name: every[name][1] for name in names}


def _write_tracked_hands(run_dir: Path, T: int, width: int, height: int) -> SyntheticRun:
    from .handmodel.synthetic import synthetic_track  # imports torch: only this scene needs it

    frames_dir = run_dir / FRAMES / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for t in range(T):
        write_image(frames_dir / f"{t:06d}.png", np.full((height, width, 3), 90, np.uint8))
    _write_frames_meta(run_dir, T, width, height, FPS["tracked"])
    kp = np.full((T, 2, 21, 3), np.nan)
    world = np.full((T, 2, 21, 3), np.nan)
    tracks = {}
    for s, side in enumerate(("left", "right")):
        track = synthetic_track(load_hand_model(side), np.random.default_rng(10 + s), T=T, width=width,
                                height=height)
        kp[:, s, :, :2] = track["kp2d"]
        kp[:, s, :, 2] = 0.9
        world[:, s] = track["world"]
        tracks[side] = track
    kp[:3, 0] = np.nan  # the left hand appears at frame 3
    world[:3, 0] = np.nan
    interpolated = np.zeros((T, 2), bool)
    interpolated[min(5, T - 1), 1] = True
    det = run_dir / DETECT
    det.mkdir(parents=True, exist_ok=True)
    np.savez(det / "detections.npz", hand_keypoints=kp.astype(np.float32), hand_world=world.astype(np.float32),
             hand_score=np.where(np.isfinite(kp[..., 0, 0]), 0.9, np.nan).astype(np.float32),
             hand_interpolated=interpolated, hand_boxes=np.full((T, 2, 4), np.nan, np.float32))
    return SyntheticRun(run_dir, default_intrinsics(width, height), tracks=tracks)


def write_test_clip(path: str | Path, n_frames: int = 16, width: int = 64, height: int = 48, fps: int = 12,
                    *, rotation: int = 0, seed: int = 0) -> Path:
    """A small deterministic clip for tests: VP9 in WebM (``.webm``, no frame count in the
    container, as phones' and datasets' webm) or H.264 in MP4 with the index first (``.mp4``,
    so a truncated copy still announces its frames). ``rotation`` tags the stream with a
    display matrix (degrees counter-clockwise), as phones do for portrait footage.
    Frames: a gradient with a bright block at the top-left and one moving right."""
    import av

    path = Path(path)
    rng = np.random.default_rng(seed)
    webm = path.suffix.lower() == ".webm"
    container = av.open(str(path), mode="w", options={} if webm else {"movflags": "faststart"})
    stream = container.add_stream("libvpx-vp9" if webm else "libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # fixed threads and no real-time speed control; the bytes may still differ between machines
    # (the fuzz test's invariants hold for any encoding; its mutations are seeded)
    stream.codec_context.thread_count = 4
    stream.codec_context.thread_type = "FRAME"
    if webm:
        stream.options = {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "5"}
    if rotation:
        stream.set_display_rotation(rotation)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), np.full_like(xx, 60)], -1).astype(np.uint8)
    for t in range(n_frames):
        img = base.copy()
        img[: height // 4, : width // 4] = 255  # marks the top-left corner (orientation checks)
        x = (4 + 3 * t) % (width - 8)
        img[height // 2: height // 2 + 8, x: x + 8] = (200, 40, 40)
        img = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def random_model_conditions(cfg, seed: int = 0, batch: int = 1, frames: int = 4, hw: tuple[int, int] = (32, 32),
                            source_video: bool = False) -> dict:
    """Seeded random conditions for a `hoi_cli.models.config.ModelConfig` (the batch keys of
    `hoi_cli.conditions`), with a fixed hand square and object rectangle. The draw order is fixed
    (``source_video`` last), so saved reference outputs stay valid."""
    import torch

    g = torch.Generator().manual_seed(seed)
    b, t, (h, w) = batch, frames, hw
    hand = torch.zeros(b, t, 1, h, w)
    hand[..., 4:12, 4:12] = 1.0
    obj = torch.zeros(b, t, 1, h, w)
    obj[..., 12:20, 8:16] = 1.0
    out = dict(reference=torch.rand(b, 3, h, w, generator=g) * 2 - 1,
               layout=torch.rand(b, t, 3, h, w, generator=g), hand_mask=hand, object_mask=obj,
               hand_render=torch.rand(b, t, cfg.hand_render_channels, h, w, generator=g),
               structure=torch.rand(b, t, cfg.structure_channels, h, w, generator=g),
               mlo_normals=torch.rand(b, t, 3 * cfg.mlo_layers, h, w, generator=g) * 2 - 1,
               mlo_occlusion=torch.rand(b, t, cfg.mlo_layers, h, w, generator=g))
    if source_video:
        out["source_video"] = torch.rand(b, t, 3, h, w, generator=g) * 2 - 1
    return out
