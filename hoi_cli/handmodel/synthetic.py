"""Synthetic ground truth for the fitter: plausible hand tracks, projected with pixel noise.

Convention: camera frame OpenCV, metres; keypoints OpenPose order; the poses are drawn in
the fitter's anatomical parameterisation inside the joint limits (see `fit.dof_tables`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..conventions import default_intrinsics, project
from .fit import KeypointModel, dof_tables
from .mano_io import HandModel


def sample_theta(rng: np.random.Generator, n: int) -> np.ndarray:
    lo, hi, sig, mean = (t.numpy() for t in dof_tables())
    th = mean + rng.normal(size=(n, 15, 3)) * sig * 0.6
    curl = rng.uniform(-0.1, 1.0, size=(n, 4, 1))  # per-finger synergy: curl all three joints
    th[:, :12, 0] += np.repeat(curl, 3, axis=1)[..., 0] * 0.6
    return np.clip(th, lo + 0.02, hi - 0.02)


def random_rotation_facing(rng: np.random.Generator) -> np.ndarray:
    """A hand orientation seen from a camera: fingers roughly up/sideways, any palm facing."""
    from scipy.spatial.transform import Rotation

    base = Rotation.from_euler("z", rng.uniform(-150, -30), degrees=True)  # fingers up-ish in the image
    tilt = Rotation.from_euler("xy", rng.uniform(-60, 60, size=2), degrees=True)
    spin = Rotation.from_euler("x", rng.uniform(0, 360), degrees=True)  # about the hand's long axis
    return (tilt * base * spin).as_rotvec()


def synthetic_track(model: HandModel, rng: np.random.Generator, T: int = 30, width: int = 640,
                    height: int = 480, noise_px: float = 2.0, world_noise_m: float = 0.004,
                    n_keys: int = 3) -> dict:
    """A smooth track: key poses interpolated over T frames; truth + noisy observations."""
    from scipy.spatial.transform import Rotation, Slerp

    kpm = KeypointModel(model)
    K = default_intrinsics(width, height)
    keys_t = np.linspace(0, T - 1, n_keys)
    th_k = sample_theta(rng, n_keys)
    rots = Rotation.from_rotvec(np.stack([random_rotation_facing(rng)]
                                         + [None] * 0)).as_rotvec()
    r0 = Rotation.from_rotvec(rots[0])
    rk = [r0] + [Rotation.from_rotvec(rng.normal(size=3) * 0.35) * r0 for _ in range(n_keys - 1)]
    slerp = Slerp(keys_t, Rotation.concatenate(rk))
    tt = np.arange(T)
    go = slerp(tt).as_rotvec()
    th = np.stack([np.interp(tt, keys_t, th_k[:, j, a]) for j in range(15) for a in range(3)], -1).reshape(T, 15, 3)
    betas = np.clip(rng.normal(size=10) * 0.8, -2, 2)
    z = rng.uniform(0.35, 0.9, size=n_keys)
    xy = rng.uniform(-0.35, 0.35, size=(n_keys, 2)) * z[:, None] * np.array([width, height]) / K[0, 0]
    trk = np.concatenate([xy, z[:, None]], 1)
    tr = np.stack([np.interp(tt, keys_t, trk[:, a]) for a in range(3)], -1)
    with torch.no_grad():
        hp = kpm.hand_pose(torch.as_tensor(th, dtype=torch.float32))
        j = kpm(torch.as_tensor(go, dtype=torch.float32), hp, torch.as_tensor(betas[None], dtype=torch.float32),
                torch.as_tensor(tr, dtype=torch.float32)).numpy().astype(np.float64)
    uv = project(j, K)
    kp = uv + rng.normal(size=uv.shape) * noise_px
    rel = j - j[:, :1]
    world = rel * rng.uniform(0.9, 1.1) + rng.normal(size=rel.shape) * world_noise_m
    return {"K": K, "kp2d": kp, "uv_true": uv, "joints": j, "world": world, "global_orient": go,
            "hand_pose": hp.numpy().astype(np.float64), "betas": betas, "transl": tr, "width": width,
            "height": height}


def evaluate(fit: dict, truth: dict) -> dict:
    j, g = fit["joints"], truth["joints"]
    mpjpe = np.linalg.norm((j - j[:, :1]) - (g - g[:, :1]), axis=-1).mean() * 1000
    K = truth["K"]
    uv = project(j, K)
    err2d = np.linalg.norm(uv - truth["uv_true"], axis=-1).mean()
    return {"mpjpe_rr_mm": float(mpjpe), "err2d_px": float(err2d),
            "err2d_vs_noisy_px": float(np.nanmean(fit["reproj_error_px"]))}
