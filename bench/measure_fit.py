"""Accuracy of the hand fitter: synthetic ground truth and real clips. Prints a JSON report.

    python bench/measure_fit.py [--synthetic N] [--real] [--clips K]

Synthetic: N smooth 30-frame tracks (plausible poses/shapes/camera placements, 640x480,
default K), 21 joints projected with 2 px noise; MediaPipe-like world landmarks (4 mm noise,
+-10% scale) where stated. Root-relative MPJPE (mm) and 2D error vs the noise-free
projections (px).
Real: InterDyn clips (../shared/data): 00_frames and 01_detect made by the real stages once
and cached (see `make_run`), then 02_hands' `fit_run`; mean 2D reprojection error vs the
detected keypoints as % of the hand box size (sqrt of the tight keypoint box's area, per hand
and frame, averaged over the fitted hand-frames of a clip; the reported mean is over clips),
and silhouette IoU vs the reference hand masks (union of both fitted hands vs the mask, which
merges both hands; in clips 243 and 35671 the mask holds only the right hand, so IoU is low
there by construction). Clips where the detector finds no hand are listed and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = Path(os.environ.get("HOI_BENCH_CACHE", "/tmp/hoi_fit_cache"))


def run_key(clip: Path, max_side: int = 0) -> str:
    return f"{clip.parent.name}_{clip.stem}" + (f"_{max_side}" if max_side else "")


def make_run(clip: Path, max_side: int = 0) -> Path:
    """A run folder with ``00_frames`` and ``01_detect`` for ``clip``, made by the real stages
    (``hoi preprocess --until detect``) once and then reused from the cache
    ($HOI_BENCH_CACHE or /tmp/hoi_fit_cache, ``runs/<key>``), whatever 01_detect's version is now:
    the fit is measured on fixed detections. Delete the cache folder to redetect. Read it only.
    Raises RuntimeError when the detector finds no hand (the clip is then skipped)."""
    import subprocess

    run = CACHE / "runs" / run_key(clip, max_side)
    if (run / "01_detect" / "manifest.json").exists():
        return run
    if (run / "01_detect.failed").exists():
        raise RuntimeError((run / "01_detect.failed").read_text())
    run.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hoi_cli", "preprocess", str(clip), "--out", str(run.parent),
           "--run-id", run.name, "--until", "detect"] + (["--max-side", str(max_side)] if max_side else [])
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if not (run / "01_detect" / "manifest.json").exists():
        msg = f"01_detect failed on {clip} (rc {p.returncode}): " + " ".join(
            line for line in p.stderr.splitlines() if line.startswith(("error", "hint")))[:300]
        run.mkdir(parents=True, exist_ok=True)
        (run / "01_detect.failed").write_text(msg)
        raise RuntimeError(msg)
    return run


def real_metrics(run_dir: Path, res: dict, masks_path: Path | None) -> dict:
    from hoi_cli.conventions import project
    from hoi_cli.handmodel.render import silhouette

    det = dict(np.load(run_dir / "01_detect" / "detections.npz"))
    kp = det["hand_keypoints"][..., :2]
    meta = json.loads((run_dir / "00_frames" / "meta.json").read_text())
    K = res["K"]
    j = res["joints"]
    uv = project(j, K)
    err = np.linalg.norm(uv - kp, axis=-1).mean(-1)  # (T,2)
    with warnings.catch_warnings():  # all-NaN slices (no hand) give NaN, as they should
        warnings.simplefilter("ignore", RuntimeWarning)
        box = np.nanmax(kp, axis=2) - np.nanmin(kp, axis=2)
    size = np.sqrt(box[..., 0] * box[..., 1])  # geometric mean of the tight box's sides
    ok = res["valid"] & np.isfinite(err)
    out = {"frames_fitted": int(ok.sum()), "reproj_px": float(err[ok].mean()),
           "reproj_pct_of_box": float((err[ok] / size[ok]).mean() * 100)}
    if masks_path is not None and masks_path.exists():
        with np.load(masks_path) as z:
            ref = z["hand"].astype(bool)
        ious = []
        H, W = int(meta["height"]), int(meta["width"])
        for t in range(min(len(ref), len(j))):
            if not res["valid"][t].any():
                continue
            sil = np.zeros((H, W), bool)
            for s in range(2):
                if res["valid"][t, s]:
                    sil |= silhouette(res["vertices"][t, s], res["faces"], K, (H, W))
            r = ref[t]
            if r.shape != sil.shape:
                import cv2

                r = cv2.resize(r.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
            u = (sil | r).sum()
            if u:
                ious.append((sil & r).sum() / u)
        out["silhouette_iou"] = float(np.mean(ious)) if ious else None
    return out


def synthetic(n: int, seed: int = 0, world: bool = True, iters: int = 160) -> dict:
    import torch

    from hoi_cli.handmodel.fit import FitConfig, fit_track
    from hoi_cli.handmodel.mano_io import load_hand_model
    from hoi_cli.handmodel.synthetic import evaluate, synthetic_track

    torch.set_num_threads(1)
    m = load_hand_model("right")
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        tr = synthetic_track(m, rng, T=30)
        f = fit_track(m, tr["kp2d"], tr["K"], world=tr["world"] if world else None, cfg=FitConfig(iters=iters))
        rows.append(evaluate(f, tr))
    mp = np.array([r["mpjpe_rr_mm"] for r in rows])
    e2 = np.array([r["err2d_px"] for r in rows])
    return {"tracks": n, "world_landmarks": world, "mpjpe_rr_mm_mean": float(mp.mean()),
            "mpjpe_rr_mm_median": float(np.median(mp)), "err2d_px_mean": float(e2.mean()),
            "per_track_mpjpe": np.round(mp, 1).tolist()}


def real(clips: list[Path], iters: int = 160) -> dict:
    from hoi_cli.stages import hands

    out = {}
    for clip in clips:
        t0 = time.time()
        try:
            run = make_run(clip)
            res, _ = hands.fit_run(run, hands.Params(iters=iters), log=lambda m: None)
        except Exception as exc:  # noqa: BLE001 - report and go on
            out[clip.parent.name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(clip.parent.name, out[clip.parent.name], file=sys.stderr)
            continue
        m = real_metrics(run, res, clip.parent / "masks.npz")
        m["fit_s"] = round(time.time() - t0, 2)
        out[clip.parent.name] = m
        print(clip.parent.name, m, file=sys.stderr)
    ok = [v for v in out.values() if "reproj_pct_of_box" in v]
    if ok:
        out["clips_with_detections"] = len(ok)
        out["mean"] = {"reproj_pct_of_box": float(np.mean([v["reproj_pct_of_box"] for v in ok])),
                       "reproj_px": float(np.mean([v["reproj_px"] for v in ok])),
                       "silhouette_iou": float(np.mean([v["silhouette_iou"] for v in ok
                                                        if v.get("silhouette_iou") is not None]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=10)
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--iters", type=int, default=160)
    a = ap.parse_args()
    report = {}
    if a.synthetic:
        report["synthetic_with_world"] = synthetic(a.synthetic, world=True, iters=a.iters)
        report["synthetic_2d_only"] = synthetic(a.synthetic, world=False, iters=a.iters)
    if a.real:
        data = Path(os.environ.get("HOI_SHARED_DATA", REPO.parent / "shared" / "data"))
        clips = sorted((data / "interdyn").glob("*/video.webm"))[: a.clips]
        report["real_interdyn"] = real(clips, a.iters)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
