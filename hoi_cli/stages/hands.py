"""Stage 02_hands: one MANO track per detected hand slot, fitted over the whole clip.

Reads ``01_detect/detections.npz`` and ``00_frames`` (size, fps, frames for the preview).
For each slot (0 = left, 1 = right) with detections, the frames from its first to its last
detection are fitted jointly (`hoi_cli.handmodel.fit.fit_track`): per-frame pose, global
orientation and translation, one shape per track; interpolated frames get a lower weight,
missing frames inside the span none (they are still solved, through temporal smoothness,
but reported as not valid). Outside a track's span everything is NaN.

Model: the official MANO files when ``mano_dir`` (``--mano-dir``) or ``$HOI_MANO_DIR`` is set,
else the project's built-in MANO-format hand (hoi_cli/assets/hand_model); both through smplx.MANO.

Camera: ``K = conventions.default_intrinsics(W, H, focal)``; default focal = 1.0 * max(W, H) px,
``focal`` (px) overrides.

Outputs (DESIGN.md contract), ``02_hands/mano.npz``:
    ``global_orient (T,2,3)``, ``hand_pose (T,2,45)`` (absolute axis-angle, flat_hand_mean),
    ``betas (2,10)``, ``transl (T,2,3)`` metres camera frame, ``joints (T,2,21,3)`` OpenPose order,
    camera frame metres, fingertips from the model's tip vertices, ``vertices (T,2,V,3)``
    float32, ``faces (F,3)``, ``K (3,3)``, ``reproj_error_px (T,2)`` (mean over the detected
    keypoints), ``valid (T,2)`` bool; plus ``model_kind`` ("builtin" | "mano") and
    ``slot_faces (2,F,3)``.

Faces: both sides share one topology (the same vertex-index triangles), but the left model is
the x-mirror of the right one, so its triangles wind the other way. ``faces`` is the right
model's (outward normals for slot 1; for slot 0 they point inwards); ``slot_faces[s]`` is
the faces of the model used for slot ``s``, outward for both. Silhouettes and masks may use
either; anything that needs normals or back-face culling should use ``slot_faces``.

A slot with no detected hand has no track: all its per-slot arrays are NaN (``betas[s]``
included), ``valid[:, s]`` is False and ``reproj_error_px[:, s]`` NaN; ``slot_faces[s]`` is still
the faces of that side's model, so every per-slot array has the same meaning in every run.
``slot_status (2,)`` str says why per slot: ``"fitted"``, ``"no hand detected"``, or ``"box only:
no keypoints to fit"`` (01_detect followed the hand as a box, ``hand_box_only``; no fit can
exist without keypoints). A clip with no fitted hand is not an error: the file is written
with ``valid`` all False and the summary carries a warning.
``02_hands/preview.mp4``: the meshes drawn over the frames (blue left, orange right).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import HAND_SLOTS, default_intrinsics
from ..errors import BadInputError
from ..params import typed
from .base import StageContext
from . import detect as detect_stage, frames as frames_stage

NAME = "02_hands"
VERSION = "3"  # 2: smoothness in physical units, world weight 0.1, slot_faces; 3: no abort without hands, slot_status
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME, detect_stage.NAME)
MANO_FILE = "mano.npz"


@typed
class Params:
    focal: float = 0.0
    """Focal length in px; 0 = default (1.0 * max(W, H))."""
    mano_dir: str = ""
    """Folder with MANO_RIGHT/LEFT.pkl|.npz; "" = $HOI_MANO_DIR or the built-in hand."""
    iters: int = 160
    """Optimiser iterations per track."""
    world_weight: float = 0.1
    """Weight of the MediaPipe world-landmark term (0 = 2D only)."""
    interpolated_weight: float = 0.3
    """Weight of frames flagged as interpolated."""
    smooth_weight: float = 0.5
    """Weight of the 3D joint acceleration (smoothness) term."""
    preview: bool = True
    """Write preview.mp4 (the fitted meshes over the frames)."""
    threads: int = 1
    """Torch CPU threads of the fit."""


def model_files(params: Params, weights_dir=None) -> dict[str, Path]:
    from ..handmodel.mano_io import resolve_model_file

    return {f"hand_{side}": resolve_model_file(side, params.mano_dir or None)[0] for side in ("left", "right")}


def fit_run(run_dir: Path, params: Params, log=print) -> tuple[dict, dict]:
    """Fit both slots of a run folder (`fit_detections` on its 01_detect and 00_frames' meta,
    read by their loaders whether or not the stages have manifests: benches make such folders)."""
    return fit_detections(dict(detect_stage.load(run_dir)), frames_stage.load(run_dir).meta, params, log=log)


def fit_detections(det: dict, meta: dict, params: Params, log=print) -> tuple[dict, dict]:
    """Fit both slots of a clip from 01_detect's arrays and 00_frames' meta; returns the arrays of
    mano.npz and the summary (no files written)."""
    import torch

    from ..handmodel.fit import FitConfig, KeypointModel, fit_track, mesh_vertices
    from ..handmodel.mano_io import load_hand_model

    if params.threads:
        torch.set_num_threads(int(params.threads))
    W, H = int(meta["width"]), int(meta["height"])
    fps = float(meta.get("fps") or 30.0)
    K = default_intrinsics(W, H, params.focal or None)
    kp = np.asarray(det["hand_keypoints"], dtype=np.float64)  # (T,2,21,3)
    T = kp.shape[0]
    world = det.get("hand_world")
    interp = np.asarray(det.get("hand_interpolated", np.zeros((T, 2), bool)), dtype=bool)
    models = {s: load_hand_model(side, params.mano_dir or None) for s, side in enumerate(HAND_SLOTS)}
    V = models[1].n_vertices
    out = {
        "global_orient": np.full((T, 2, 3), np.nan), "hand_pose": np.full((T, 2, 45), np.nan),
        "betas": np.full((2, 10), np.nan), "transl": np.full((T, 2, 3), np.nan),
        "joints": np.full((T, 2, 21, 3), np.nan), "vertices": np.full((T, 2, V, 3), np.nan, np.float32),
        "faces": np.asarray(models[1].faces, np.int64),
        "slot_faces": np.stack([np.asarray(models[s].faces, np.int64) for s in range(2)]),
        "K": K, "reproj_error_px": np.full((T, 2), np.nan),
        "valid": np.zeros((T, 2), bool),
    }
    cfg = FitConfig(iters=params.iters, w_world=params.world_weight, w_smooth_j=params.smooth_weight,
                    interpolated_weight=params.interpolated_weight)
    summary: dict = {"warnings": []}
    status = []
    box_only = np.asarray(det.get("hand_box_only", np.zeros((T, 2), bool)), bool)
    for s in range(2):
        xy = kp[:, s, :, :2]
        present = np.isfinite(xy).all(axis=2).sum(axis=1) >= 6
        if not present.any():
            status.append("box only: no keypoints to fit" if box_only[:, s].any() else "no hand detected")
            summary[HAND_SLOTS[s]] = {"frames": 0, "status": status[-1]}
            continue
        status.append("fitted")
        idx = np.nonzero(present)[0]
        a, b = idx[0], idx[-1] + 1
        fw = np.where(present[a:b], np.where(interp[a:b, s], params.interpolated_weight, 1.0), 0.0)
        conf = np.nan_to_num(kp[a:b, s, :, 2], nan=1.0) if kp.shape[-1] > 2 else None
        if conf is not None:
            conf = np.clip(conf, 0.05, 1.0)
        wl = None
        if world is not None and params.world_weight > 0:
            wl = np.asarray(world[a:b, s], dtype=np.float64)
        m = models[s]
        res = fit_track(m, xy[a:b], K, conf=conf, world=wl, frame_weight=fw, cfg=cfg, fps=fps,
                        kp_model=KeypointModel(m))
        sl = slice(a, b)
        out["global_orient"][sl, s] = res["global_orient"]
        out["hand_pose"][sl, s] = res["hand_pose"]
        out["betas"][s] = res["betas"]
        out["transl"][sl, s] = res["transl"]
        out["joints"][sl, s] = res["joints"]
        out["vertices"][sl, s] = mesh_vertices(m, res["global_orient"], res["hand_pose"], res["betas"], res["transl"])
        out["reproj_error_px"][sl, s] = np.where(present[a:b], res["reproj_error_px"], np.nan)
        out["valid"][sl, s] = present[a:b]
        summary[HAND_SLOTS[s]] = {"frames": int(present.sum()), "span": [int(a), int(b)],
                                  "reproj_error_px": float(np.nanmean(res["reproj_error_px"][present[a:b]]))}
        log(f"02_hands: {HAND_SLOTS[s]} hand, {int(present.sum())} frames, "
            f"reprojection {summary[HAND_SLOTS[s]]['reproj_error_px']:.2f} px")
    out["slot_status"] = np.array(status)
    if not out["valid"].any():
        summary["warnings"].append("no hand to fit: " + "; ".join(f"{HAND_SLOTS[s]} {status[s]}" for s in range(2))
                                   + " (valid = False everywhere)")
    out["model_kind"] = np.array(models[1].kind)
    summary["model"] = models[1].kind
    summary["vertices"] = int(V)
    return out, summary


def write_preview(frames, res: dict, path: Path, fps: float) -> None:
    """``frames``: the clip's frames in order (an iterable of RGB images)."""
    from ..handmodel.render import SLOT_COLORS, draw_mesh
    from ..video import VideoWriter

    with VideoWriter(path, fps, crf=23) as w:
        for t, img in enumerate(frames):
            for s in range(2):
                if t < len(res["valid"]) and np.isfinite(res["vertices"][t, s]).all():
                    img = draw_mesh(img, res["vertices"][t, s], res["slot_faces"][s], res["K"], SLOT_COLORS[s],
                                    alpha=0.6 if res["valid"][t, s] else 0.3)
            w.write(img)


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    source = ctx.read(frames_stage)
    res, summary = fit_detections(dict(ctx.read(detect_stage)), source.meta, p, log=ctx.log)
    np.savez_compressed(ctx.out_dir / MANO_FILE, **res)
    if p.preview:
        write_preview(source.iter(), res, ctx.out_dir / "preview.mp4", float(source.meta.get("fps") or 30.0))
    summary["mean_reproj_error_px"] = float(np.nanmean(res["reproj_error_px"])) if res["valid"].any() else None
    for warning in summary["warnings"]:
        ctx.log(f"02_hands: warning: {warning}")
    return summary


def load_mano(run_dir: str | Path) -> dict:
    """The arrays of ``02_hands/mano.npz`` (see the module docstring for keys and units);
    ``slot_faces`` is ``faces`` for both slots in runs made before VERSION 2."""
    path = Path(run_dir) / NAME / MANO_FILE
    if not path.exists():
        raise BadInputError(f"no hand fits in {run_dir} ({path} missing)", "run 02_hands first")
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for key in ("vertices", "faces", "K", "valid"):
        if key not in out:
            raise BadInputError(f"02_hands output lacks {key!r}", "rerun 02_hands")
    if "slot_faces" not in out:  # 02_hands before version 2: one winding for both hands
        out["slot_faces"] = np.stack([out["faces"], out["faces"]])
    return out


load = load_mano  # the stage's loader (`StageContext.read`)
