"""Synthetic run folders for the render stages' tests and benchmark (no clip, no detector).

`make_synthetic_run` writes 00_frames, 01_detect, 02_hands and 03_segment outputs following
the artifact contract (DESIGN.md) with placeholder manifests: two built-in-model hands in
their rest pose, rotated to face the camera, moving slightly over time, and a round object
held between them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..conventions import box_from_mask, default_intrinsics, pack_masks, square_box


def _rot(axis: str, deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(axis, deg, degrees=True).as_matrix()


def template_hands() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left (V,3), right (V,3), faces (F,3)) of the built-in hand model's rest pose, centred."""
    from ..resources import hand_model_dir

    d = hand_model_dir()
    out = []
    for side in ("LEFT", "RIGHT"):
        with np.load(d / f"MANO_{side}.npz", allow_pickle=False) as z:
            v = z["v_template"].astype(np.float64)
            faces = z["f"].astype(np.int64)
        out.append(v - v.mean(0))
    return out[0], out[1], faces


def make_synthetic_run(run_dir: str | Path, n_frames: int = 4, width: int = 512, height: int = 512,
                       object_radius_px: float = 60.0, write_pngs: bool = True) -> dict:
    """Write a synthetic run; returns the ground truth (vertices, K, masks, boxes)."""
    from ..render.raster import mesh_mask
    from ..video import write_image

    run_dir = Path(run_dir)
    K = default_intrinsics(width, height)
    left, right, faces = template_hands()
    T = n_frames
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
    hand = np.stack([mesh_mask(verts[t, 0], faces, K, height, width) | mesh_mask(verts[t, 1], faces, K, height, width)
                     for t in range(T)])
    joints = np.zeros((T, 2, 21, 3))
    for t in range(T):
        for s in range(2):
            v = verts[t, s]
            sel = np.linspace(0, len(v) - 1, 21).astype(int)
            joints[t, s] = v[sel]
    # folders
    frames_dir = run_dir / "00_frames" / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for t in range(T):
        img = np.full((height, width, 3), 90, np.uint8)
        img[obj[t]] = (200, 60, 40)
        img[hand[t]] = (220, 180, 150)
        img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
        if write_pngs:
            write_image(frames_dir / f"{t:06d}.png", img)
    meta = {"fps": 10.0, "width": width, "height": height, "n_frames": T,
            "source": {"path": "synthetic"}, "timestamps": [t / 10 for t in range(T)]}
    (run_dir / "00_frames" / "meta.json").write_text(json.dumps(meta))
    hand_boxes = np.full((T, 2, 4), np.nan, np.float32)
    for t in range(T):
        for s in range(2):
            hand_boxes[t, s] = box_from_mask(mesh_mask(verts[t, s], faces, K, height, width))
    object_boxes = np.stack([box_from_mask(m) for m in obj])
    (run_dir / "01_detect").mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / "01_detect" / "detections.npz", hand_boxes=hand_boxes,
             hand_boxes_square=square_box(hand_boxes, 128), object_boxes=object_boxes,
             hand_keypoints=np.zeros((T, 2, 21, 3), np.float32), hand_score=np.ones((T, 2), np.float32),
             object_score=np.ones(T, np.float32))
    (run_dir / "02_hands").mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / "02_hands" / "mano.npz", vertices=verts.astype(np.float32), faces=faces, K=K,
             valid=np.ones((T, 2), bool), joints=joints.astype(np.float32))
    (run_dir / "03_segment").mkdir(parents=True, exist_ok=True)
    po, shape = pack_masks(obj)
    ph, _ = pack_masks(hand)
    np.savez(run_dir / "03_segment" / "masks.npz", object=po, hand=ph, shape=shape)
    adopt_stages(run_dir, ("00_frames", "01_detect", "02_hands", "03_segment"))
    return {"vertices": verts, "faces": faces, "K": K, "object": obj, "hand": hand,
            "hand_boxes": hand_boxes, "object_boxes": object_boxes}


def adopt_stages(run_dir: Path, stages, params: dict | None = None) -> None:
    """Give synthetic stage folders real manifests (in pipeline order), so they read as fresh."""
    from ..pipeline import get_stage
    from ..store import RunStore

    store = RunStore(run_dir)
    for name in stages:
        store.adopt(get_stage(name), (params or {}).get(name), summary={"synthetic": True})


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
