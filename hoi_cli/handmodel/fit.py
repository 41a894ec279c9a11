"""Batched torch fitting of one MANO-format hand track to 2D keypoints (+ MediaPipe world landmarks).

Convention (parameters): per frame ``global_orient (3)`` axis-angle, ``hand_pose (45)`` absolute
axis-angle (no hands_mean added, see `mano_io`), ``transl (3)`` metres, OpenCV camera frame;
one ``betas (10)`` per track. Keypoints are in the 21-joint OpenPose order, pixels.

Method: the fingers are optimised in an anatomical parameterisation (per joint: flexion,
abduction, twist about axes derived from the model's own rest skeleton, so the same code
works for the built-in and the official model); ``hand_pose`` is the linear map of it.
Losses: robust 2D reprojection (relative to the hand's box size), root-relative and
scale-normalised 3D shape against MediaPipe's world landmarks, a Gaussian pose prior,
joint-limit hinges, a shape prior, and temporal smoothness (3D joint acceleration, pose
velocity; weighted in physical units, i.e. per second, so a 12 fps clip is smoothed as lightly as
the same motion at 30 fps: at 12 fps frame-to-frame motion is 2.5x larger and must not be damped). Frames flagged as interpolated get a lower weight, missing frames none (they are
filled by the smoothness terms only inside a track and reported as not valid).

The loss is evaluated with a keypoint-only forward pass (the 16 joints and the 5 tip
vertices: the exact smplx LBS restricted to those points, see `KeypointModel`), which is
what makes the fit cheaper than running smplx's full-mesh forward+backward per iteration;
the final vertices come from smplx itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..conventions import MANO21_TO_OPENPOSE, project
from .mano_io import HandModel

# OpenPose indices of the palm (wrist + four MCPs) used for the initial pose
PALM_OP = np.array([0, 5, 9, 13, 17])


@dataclass
class FitConfig:
    iters: int = 160
    lr: float = 0.04
    w_2d: float = 1.0  # on (px error / hand box size)^2 * 1e4
    # on scale-normalised root-relative 3D (x100)^2. Low: MediaPipe's world landmarks are a separate
    # regression that disagrees with its own 2D keypoints; 0.3 cost ~1 % of the box in real 2D error
    # and bought ~0.4 mm synthetic MPJPE (bench/measure_fit.py)
    w_world: float = 0.1
    w_prior: float = 0.02
    w_limits: float = 50.0
    w_betas: float = 0.05
    w_smooth_j: float = 0.5  # 3D joint acceleration (mm/frame^2)^2 / 100, at 30 fps (scaled by (fps/30)^4)
    w_smooth_pose: float = 5.0  # pose velocity, at 30 fps (scaled by (fps/30)^2)
    interpolated_weight: float = 0.3
    robust_sigma: float = 40.0  # percent of the box size; GMoF robustifier on the 2D term


# per-DOF [flex, abduct, twist] limits (radians) and prior sigmas, by joint role
_LIMITS = {
    "mcp": ((-0.35, 1.65), (-0.45, 0.45), (-0.25, 0.25)),
    "pip": ((-0.15, 1.95), (-0.08, 0.08), (-0.10, 0.10)),
    "dip": ((-0.25, 1.45), (-0.08, 0.08), (-0.10, 0.10)),
    "tcmc": ((-0.80, 1.20), (-0.90, 0.90), (-0.80, 0.80)),
    "tmcp": ((-0.40, 1.20), (-0.40, 0.40), (-0.40, 0.40)),
    "tip_": ((-0.40, 1.50), (-0.10, 0.10), (-0.20, 0.20)),
}
_SIGMA = {"mcp": (0.8, 0.25, 0.12), "pip": (0.9, 0.05, 0.06), "dip": (0.7, 0.05, 0.06),
          "tcmc": (0.6, 0.5, 0.4), "tmcp": (0.6, 0.25, 0.25), "tip_": (0.7, 0.08, 0.12)}
_MEAN = {"mcp": (0.25, 0.0, 0.0), "pip": (0.35, 0.0, 0.0), "dip": (0.2, 0.0, 0.0),
         "tcmc": (0.1, 0.0, 0.0), "tmcp": (0.15, 0.0, 0.0), "tip_": (0.15, 0.0, 0.0)}
ROLES = ["mcp", "pip", "dip"] * 4 + ["tcmc", "tmcp", "tip_"]  # joints 1..15


def dof_tables(dtype=torch.float32):
    lo = torch.tensor([[l[0] for l in _LIMITS[r]] for r in ROLES], dtype=dtype)
    hi = torch.tensor([[l[1] for l in _LIMITS[r]] for r in ROLES], dtype=dtype)
    sig = torch.tensor([_SIGMA[r] for r in ROLES], dtype=dtype)
    mean = torch.tensor([_MEAN[r] for r in ROLES], dtype=dtype)
    return lo, hi, sig, mean


class KeypointModel(torch.nn.Module):
    """The 21 keypoints (OpenPose order) of a MANO-format model: smplx's LBS on 21 points."""

    def __init__(self, model: HandModel):
        super().__init__()
        a = model.arrays
        vt = torch.as_tensor(a["v_template"], dtype=torch.float32)
        sd = torch.as_tensor(a["shapedirs"][:, :, :10], dtype=torch.float32)
        jr = torch.as_tensor(a["J_regressor"], dtype=torch.float32)
        tips = torch.as_tensor(model.tip_ids)
        self.register_buffer("J_t", jr @ vt)  # (16,3)
        self.register_buffer("J_sd", torch.einsum("jv,vck->jck", jr, sd))  # (16,3,10)
        self.register_buffer("T_t", vt[tips])  # (5,3)
        self.register_buffer("T_sd", sd[tips])
        pd = torch.as_tensor(np.asarray(a["posedirs"]).reshape(len(vt), 3, -1)[model.tip_ids], dtype=torch.float32)
        self.register_buffer("T_pd", pd.reshape(15, -1).T.contiguous())  # (135, 15)
        self.register_buffer("T_w", torch.as_tensor(a["weights"], dtype=torch.float32)[tips])  # (5,16)
        self.register_buffer("parents", model.layer.parents.clone())
        self.register_buffer("axes", torch.as_tensor(model.anatomical_axes()[1:], dtype=torch.float32))  # (15,3,3)
        self.register_buffer("to_op", torch.as_tensor(MANO21_TO_OPENPOSE))

    def hand_pose(self, theta):  # (B,15,3) anatomical -> (B,45) axis-angle
        return torch.einsum("jab,tjb->tja", self.axes, theta).reshape(theta.shape[0], 45)

    def forward(self, global_orient, hand_pose, betas, transl):
        from smplx.lbs import batch_rigid_transform, batch_rodrigues

        B = global_orient.shape[0]
        betas = betas.expand(B, -1) if betas.shape[0] == 1 else betas
        J = self.J_t + torch.einsum("jck,bk->bjc", self.J_sd, betas)
        T = self.T_t + torch.einsum("jck,bk->bjc", self.T_sd, betas)
        full = torch.cat([global_orient, hand_pose], dim=1).reshape(-1, 3)
        rot = batch_rodrigues(full).reshape(B, 16, 3, 3)
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        feat = (rot[:, 1:] - eye).reshape(B, -1)
        T = T + (feat @ self.T_pd).reshape(B, 5, 3)
        Jp, A = batch_rigid_transform(rot, J, self.parents, dtype=rot.dtype)
        M = torch.einsum("vj,bjrc->bvrc", self.T_w, A)
        Tp = torch.einsum("bvrc,bvc->bvr", M[:, :, :3, :3], T) + M[:, :, :3, 3]
        j21 = torch.cat([Jp, Tp], dim=1)[:, self.to_op]
        return j21 + transl[:, None]


def _rotvec_from_matrix(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """R minimising ||R src - dst|| (both centred inside)."""
    a = src - src.mean(0)
    b = dst - dst.mean(0)
    U, _, Vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    return Vt.T @ np.diag([1, 1, d]) @ U.T


def initial_pose(rest21: np.ndarray, kp: np.ndarray, conf: np.ndarray, K: np.ndarray,
                 world: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (R (3,3), t (3)) with X_cam = R X_rest + t, from palm points."""
    import cv2

    src = rest21[PALM_OP]
    ok = np.isfinite(kp[PALM_OP]).all()
    if world is not None and np.isfinite(world[PALM_OP]).all():
        R = _kabsch(src, world[PALM_OP] - world[PALM_OP].mean(0))
    elif ok:
        _, rvec, tvec = cv2.solvePnP(src.astype(np.float64), kp[PALM_OP].astype(np.float64), K, None,
                                     flags=cv2.SOLVEPNP_SQPNP)
        R = cv2.Rodrigues(rvec)[0]
    else:
        return np.eye(3), np.array([0.0, 0.0, 0.5])
    # translation by linear least squares on all finite points with R fixed
    X = rest21 @ R.T
    good = np.isfinite(kp).all(axis=1)
    f, c = np.array([K[0, 0], K[1, 1]]), K[:2, 2]
    rows, rhs = [], []
    for i in np.nonzero(good)[0]:
        for a in range(2):
            # (u - c) (Xz + tz) = f (Xa + ta)
            d = kp[i, a] - c[a]
            row = np.zeros(3)
            row[a] = f[a]
            row[2] = -d
            rows.append(row)
            rhs.append(d * X[i, 2] - f[a] * X[i, a])
    t, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    if t[2] < 0.05:
        t[2] = 0.5
    return R, t


def fit_track(model: HandModel, kp2d: np.ndarray, K: np.ndarray, *, conf: np.ndarray | None = None,
              world: np.ndarray | None = None, frame_weight: np.ndarray | None = None,
              cfg: FitConfig | None = None, fps: float = 30.0, kp_model: KeypointModel | None = None) -> dict:
    """Fit one hand track. ``kp2d (T,21,2)`` px (NaN = missing), ``world (T,21,3)`` metres or None,
    ``conf (T,21)``, ``frame_weight (T,)`` in [0,1] (0 = no observation). Returns numpy params."""
    cfg = cfg or FitConfig()
    kpm = kp_model or KeypointModel(model)
    T = kp2d.shape[0]
    kp2d = np.asarray(kp2d, dtype=np.float64)
    obs = np.isfinite(kp2d).all(axis=2)  # (T,21)
    if conf is None:
        conf = np.ones((T, 21))
    conf = np.where(obs, np.nan_to_num(conf, nan=0.0), 0.0)
    fw = np.ones(T) if frame_weight is None else np.asarray(frame_weight, dtype=np.float64)
    fw = fw * (obs.sum(1) >= 6)
    have = fw > 0
    if not have.any():
        raise ValueError("no frame with keypoints")
    go0, tr0 = _initial_poses(kpm, kp2d, conf, K, world, have)
    dt = torch.float32
    kp_t = torch.as_tensor(np.nan_to_num(kp2d), dtype=dt)
    w2d = torch.as_tensor(conf * fw[:, None], dtype=dt)
    inv_size = torch.as_tensor(100.0 / _keypoint_box_size(kp2d, have), dtype=dt)[:, None, None]
    Kt = torch.as_tensor(K, dtype=dt)
    if world is not None:
        w_t, wok_t = _world_target(world, have, fw, dt)
    lo, hi, sig, mean = dof_tables()
    go = torch.tensor(go0, dtype=dt, requires_grad=True)
    tr = torch.tensor(tr0, dtype=dt, requires_grad=True)
    theta = mean.expand(T, 15, 3).clone().requires_grad_(True)
    betas = torch.zeros(1, 10, requires_grad=True)
    opt = torch.optim.Adam([{"params": [go, theta], "lr": cfg.lr}, {"params": [tr], "lr": cfg.lr * 0.05},
                            {"params": [betas], "lr": cfg.lr}])
    n_obs = max(float(fw.sum()), 1.0)
    # smoothness in physical units, normalised at 30 fps: acceleration per frame^2 scales as
    # fps^-2 (its square as fps^-4), velocity per frame as fps^-1 (its square fps^-2)
    acc_scale = (max(fps, 1.0) / 30.0) ** 4
    vel_scale = (max(fps, 1.0) / 30.0) ** 2
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(cfg.iters * 0.7)], 0.3)
    for _ in range(cfg.iters):
        opt.zero_grad(set_to_none=True)
        j = kpm(go, kpm.hand_pose(theta), betas, tr)  # (T,21,3)
        uv = project(j, Kt, min_depth=1e-3)
        e = (uv - kp_t) * inv_size  # percent of the box size
        sq = (e ** 2).sum(-1)
        s2 = cfg.robust_sigma ** 2
        loss = cfg.w_2d * (w2d * sq * s2 / (sq + s2)).sum() / n_obs
        if world is not None:
            jr = j - j[:, :1]
            jr = jr / jr.norm(dim=2).mean(dim=1, keepdim=True)[..., None].clamp(min=1e-6)
            loss = loss + cfg.w_world * (wok_t[:, None] * (((jr - w_t) * 100) ** 2).sum(-1)).sum() / n_obs / 21
        d = theta - mean
        loss = loss + cfg.w_prior * ((d / sig) ** 2).sum() / T
        viol = torch.relu(theta - hi) + torch.relu(lo - theta)
        loss = loss + cfg.w_limits * (viol ** 2).sum() / T * 100
        loss = loss + cfg.w_betas * (betas ** 2).sum()
        if T >= 3:
            acc = (j[2:] - 2 * j[1:-1] + j[:-2]) * 1000.0
            loss = loss + cfg.w_smooth_j * acc_scale * (acc ** 2).sum(-1).mean() / 100 * 21
            loss = loss + cfg.w_smooth_pose * vel_scale * ((theta[1:] - theta[:-1]) ** 2).sum() / T
            loss = loss + cfg.w_smooth_pose * vel_scale * ((go[1:] - go[:-1]) ** 2).sum() / T
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        hp = kpm.hand_pose(theta)
        j = kpm(go, hp, betas, tr)
        uv = project(j, Kt, min_depth=1e-3)
        err = (uv - kp_t).norm(dim=-1).numpy()
    err = np.where(obs, err, np.nan)
    cnt = np.isfinite(err).sum(axis=1)
    reproj = np.where(cnt > 0, np.nansum(err, axis=1) / np.maximum(cnt, 1), np.nan)
    return {"global_orient": go.detach().numpy().astype(np.float64), "hand_pose": hp.numpy().astype(np.float64),
            "theta": theta.detach().numpy(), "betas": betas.detach().numpy()[0].astype(np.float64),
            "transl": tr.detach().numpy().astype(np.float64), "joints": j.numpy().astype(np.float64),
            "reproj_error_px": reproj, "iters": cfg.iters}


def _initial_poses(kpm: KeypointModel, kp2d, conf, K, world, have) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame global orientation and translation ``(T,3)`` each, from the rest hand posed onto
    the keypoints (frames without an observation copy the nearest observed frame's)."""
    T = len(kp2d)
    with torch.no_grad():
        rest = kpm(torch.zeros(1, 3), kpm.hand_pose(kpm_mean(kpm)[None]), torch.zeros(1, 10),
                   torch.zeros(1, 3))[0].numpy().astype(np.float64)
    J0 = kpm.J_t[0].numpy().astype(np.float64)
    go0 = np.zeros((T, 3))
    tr0 = np.zeros((T, 3))
    idx_obs = np.nonzero(have)[0]
    for t in range(T):
        s = idx_obs[np.argmin(np.abs(idx_obs - t))]
        w = world[s] if world is not None else None
        R, tt = initial_pose(rest, kp2d[s], conf[s], K, w)
        go0[t] = _rotvec_from_matrix(R)
        tr0[t] = tt + R @ J0 - J0
    return go0, tr0


def _keypoint_box_size(kp2d: np.ndarray, have: np.ndarray) -> np.ndarray:
    """``(T,)`` diagonal of each frame's keypoint box in px (at least 8; 1 where unobserved):
    the 2D residual is measured in percent of it."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        box = np.nanmax(kp2d, axis=1) - np.nanmin(kp2d, axis=1)
    size = np.nan_to_num(np.linalg.norm(box, axis=1), nan=1.0)
    return np.where(have, np.maximum(size, 8.0), 1.0)


def _world_target(world, have, fw, dt) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrist-relative world keypoints ``(T,21,3)`` scaled to a mean distance of 1 from the wrist,
    and each frame's weight (0 where any world keypoint is missing)."""
    wv = np.asarray(world, dtype=np.float64)
    wok = np.isfinite(wv).all(axis=(1, 2)) & have
    wv = np.nan_to_num(wv - wv[:, :1])
    wsc = np.linalg.norm(wv, axis=2).mean(axis=1, keepdims=True)
    wv = wv / np.maximum(wsc, 1e-6)[..., None]
    return torch.as_tensor(wv, dtype=dt), torch.as_tensor(wok * fw, dtype=dt)


def kpm_mean(kpm: KeypointModel) -> torch.Tensor:
    return dof_tables()[3]


def mesh_vertices(model: HandModel, global_orient, hand_pose, betas, transl, chunk: int = 256) -> np.ndarray:
    """Full smplx forward for the final vertices (T,V,3)."""
    T = len(global_orient)
    out = []
    with torch.no_grad():
        for s in range(0, T, chunk):
            sl = slice(s, s + chunk)
            n = len(global_orient[sl])
            v, _ = model.forward(torch.as_tensor(global_orient[sl], dtype=torch.float32),
                                 torch.as_tensor(hand_pose[sl], dtype=torch.float32),
                                 torch.as_tensor(np.tile(np.asarray(betas)[None], (n, 1)), dtype=torch.float32),
                                 torch.as_tensor(transl[sl], dtype=torch.float32))
            out.append(v.numpy())
    return np.concatenate(out).astype(np.float32)
