"""The project's own sample clip and reference image, rendered from the built-in hand model.

The shared research clips may not be redistributed, so the quick start runs on a clip this
module renders: both built-in hands (backs towards the camera, as in an egocentric view)
pressing on a striped box and moving it in a loop over a textured table, 36 frames at
12 fps. It is plain CG: hands with no skin texture or creases. MediaPipe finds both hands in
it (a palm-side render of the same smooth hand is read as the back of the other hand, so
the backs face the camera). ``reference_mug.png`` is a rendered mug on white, to use as the
object for `hoi generate`.

Convention: scene units metres, camera frame OpenCV (x right, y down, z forward); converted
to pyrender's OpenGL axes with `CV_TO_GL` at the render boundary only.

Rebuild with ``python -m hoi_cli.sample`` (needs the ``mesh`` extra and an EGL-capable GL).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .conventions import CV_TO_GL, default_intrinsics
from .resources import sample_dir

SAMPLE_DIR = sample_dir()
SAMPLE_CLIP = SAMPLE_DIR / "hands_box.mp4"
SAMPLE_REFERENCE = SAMPLE_DIR / "reference_mug.png"
SKIN = (0.86, 0.64, 0.52, 1.0)


def _look_rotation(finger_dir: np.ndarray, back_normal: np.ndarray, up_cam, toward_cam) -> np.ndarray:
    """Rotation taking the hand's finger direction to ``up_cam`` and its back normal to ``toward_cam``."""
    u = finger_dir / np.linalg.norm(finger_dir)
    n = back_normal - u * (back_normal @ u)
    n /= np.linalg.norm(n)
    src = np.stack([u, n, np.cross(u, n)], axis=1)
    a = np.asarray(up_cam, float)
    b = np.asarray(toward_cam, float)
    dst = np.stack([a, b, np.cross(a, b)], axis=1)
    return dst @ src.T


def _posed_hand(model, curl: float, thumb_curl: float):
    import torch

    axes = model.anatomical_axes()
    aa = [axes[j][:, 0] * (thumb_curl if j >= 13 else curl) for j in range(1, 16)]
    hand_pose = torch.tensor(np.concatenate(aa)[None], dtype=torch.float32)
    with torch.no_grad():
        verts, _ = model.forward(torch.zeros(1, 3), hand_pose, torch.zeros(1, 10))
    J, _ = model.rest_joints()
    palm_normal = np.cross(J[1] - J[0], J[7] - J[0]) * (1.0 if model.is_rhand else -1.0)
    return verts[0].numpy() - J[0], J[4] - J[0], -palm_normal  # wrist-centred, finger dir, back normal


def _striped_box(extents, n_sub: int = 5):
    import trimesh

    box = trimesh.creation.box(extents=extents)
    for _ in range(n_sub):
        box = box.subdivide()
    v = box.vertices
    stripes = (np.floor((v[:, 0] + v[:, 1]) / 0.025) % 2).astype(bool)
    colors = np.where(stripes[:, None], [230, 120, 30, 255], [40, 110, 170, 255]).astype(np.uint8)
    box.visual.vertex_colors = colors
    return box


def _table_texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    import cv2

    r = np.random.default_rng(seed)
    noise = cv2.resize(r.random((height // 16 + 1, width // 16 + 1)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width]
    grain = 0.5 + 0.5 * np.sin(xx / 9.0 + 6 * noise)
    base = np.array([70, 86, 104], np.float32)  # blue-grey: contrast with skin
    img = base[None, None] * (0.8 + 0.25 * grain[..., None]) + 12 * (noise[..., None] - 0.5)
    return np.clip(img, 0, 255).astype(np.uint8)


def _sample_scenes(n_frames: int, width: int, height: int):
    """Per frame ``(scene, box node, hand and arm nodes)`` of the sample clip (pyrender)."""
    import pyrender
    import trimesh

    from .handmodel.mano_io import load_hand_model

    K = default_intrinsics(width, height)
    hands = {}
    for side in ("left", "right"):
        model = load_hand_model(side)
        hands[side] = (model, *_posed_hand(model, curl=0.12, thumb_curl=0.1))
    box = _striped_box((0.19, 0.21, 0.05))
    skin = pyrender.MetallicRoughnessMaterial(baseColorFactor=SKIN, roughnessFactor=0.75, metallicFactor=0.0)
    for t in range(n_frames):
        phase = 2 * np.pi * t / n_frames
        angle = np.deg2rad(10 * np.sin(phase))
        group_rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        group_t = np.array([0.03 * np.sin(phase), 0.012 * np.cos(phase), 0.40])
        scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[0.2, 0.2, 0.2])
        box_pose = np.eye(4)
        box_pose[:3, :3] = CV_TO_GL @ group_rot
        box_pose[:3, 3] = CV_TO_GL @ (group_rot @ np.array([0.0, -0.055, 0.06]) + group_t)
        box_node = scene.add(pyrender.Mesh.from_trimesh(box, smooth=False), pose=box_pose)
        hand_nodes = []
        for side, x in (("left", -0.068), ("right", 0.068)):
            model, verts, finger_dir, back_normal = hands[side]
            # fingers up and tilted inwards, the back of the hand towards the camera
            tilt = np.deg2rad(12 if side == "left" else -12)
            up = np.array([np.sin(tilt), -np.cos(tilt), 0.0])
            R = _look_rotation(finger_dir, back_normal, up, [0.0, 0.0, -1.0])
            v = (verts @ R.T + np.array([x, 0.11, 0.0])) @ group_rot.T + group_t
            mesh = trimesh.Trimesh((CV_TO_GL @ v.T).T, model.faces, process=False)
            hand_nodes.append(scene.add(pyrender.Mesh.from_trimesh(mesh, material=skin, smooth=True)))
            # a forearm from the wrist out of the frame: detectors expect an arm behind a hand
            wrist = (np.array([x, 0.11, 0.0])) @ group_rot.T + group_t
            elbow = wrist + group_rot @ np.array([-up[0] * 0.25, 0.25, 0.03])
            arm = trimesh.creation.cylinder(radius=0.026, segment=[wrist + group_rot @ (0.02 * np.array([-up[0], 1, 0])),
                                                                    elbow], sections=32)
            arm.vertices = (CV_TO_GL @ arm.vertices.T).T
            hand_nodes.append(scene.add(pyrender.Mesh.from_trimesh(arm, material=skin, smooth=True)))
        scene.add(pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], znear=0.01, zfar=10), pose=np.eye(4))
        light_pose = np.eye(4)
        light_pose[:3, :3] = trimesh.transformations.rotation_matrix(np.deg2rad(-35), [1, 0.6, 0])[:3, :3]
        scene.add(pyrender.DirectionalLight(intensity=4.5), pose=light_pose)
        yield scene, box_node, hand_nodes


def render_sample_clip(path: str | Path = SAMPLE_CLIP, n_frames: int = 36, width: int = 480, height: int = 360,
                       fps: float = 12.0) -> Path:
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender

    from .video import VideoWriter

    table = _table_texture(width, height)
    renderer = pyrender.OffscreenRenderer(width, height)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps, crf=16) as writer:
        for scene, _, _ in _sample_scenes(n_frames, width, height):
            color, depth = renderer.render(scene)
            frame = np.where((depth > 0)[..., None], color[..., :3], table)
            writer.write(frame)
    renderer.delete()
    return path


def render_sample_masks(n_frames: int = 36, width: int = 480, height: int = 360) -> dict[str, np.ndarray]:
    """The sample clip's true masks, from its own scenes: ``{"object": (T,H,W), "hand": (T,H,W)}``
    bool, the visible pixels of the striped box and of the hands with their forearms."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender

    renderer = pyrender.OffscreenRenderer(width, height)
    obj, hand = [], []
    try:
        for scene, box_node, hand_nodes in _sample_scenes(n_frames, width, height):
            seg = {box_node: (255, 0, 0), **{n: (0, 255, 0) for n in hand_nodes}}
            color, _ = renderer.render(scene, flags=pyrender.RenderFlags.SEG, seg_node_map=seg)
            obj.append(color[..., 0] > 127)
            hand.append(color[..., 1] > 127)
    finally:
        renderer.delete()
    return {"object": np.stack(obj), "hand": np.stack(hand)}


def render_reference_mug(path: str | Path = SAMPLE_REFERENCE, size: int = 320) -> Path:
    """A mug (cylinder + torus handle) rendered on white."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import cv2
    import pyrender
    import trimesh

    body = trimesh.creation.cylinder(radius=0.04, height=0.1, sections=64)
    handle = trimesh.creation.torus(major_radius=0.028, minor_radius=0.008, major_sections=48, minor_sections=16)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    handle.apply_translation([0.045, 0, 0])
    scene = pyrender.Scene(bg_color=[1, 1, 1, 1], ambient_light=[0.4, 0.4, 0.4])
    mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[0.75, 0.15, 0.12, 1.0], roughnessFactor=0.4)
    tilt = trimesh.transformations.rotation_matrix(np.deg2rad(-70), [1, 0, 0])  # upright, seen from the front
    for part in (body, handle):
        scene.add(pyrender.Mesh.from_trimesh(part, material=mat), pose=tilt)
    cam_pose = np.eye(4)
    cam_pose[2, 3] = 0.32
    scene.add(pyrender.PerspectiveCamera(yfov=np.deg2rad(30)), pose=cam_pose)
    scene.add(pyrender.DirectionalLight(intensity=4.0), pose=cam_pose)
    r = pyrender.OffscreenRenderer(size, size)
    color, _ = r.render(scene)
    r.delete()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
    return Path(path)


if __name__ == "__main__":
    print(render_sample_clip())
    print(render_reference_mug())
