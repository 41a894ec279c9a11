"""Speed of the hand fitter on the long two-hand clip; prints ms/frame/hand and a ratio.

    python bench/bench_fit.py [--clip PATH] [--iters 160] [--threads 1]

The clip (../shared/data/anchorcrafter/plush_twohand.mp4, 186 frames 1080x1920) is decoded at
512 px on its long side, hands detected once by the real 00_frames + 01_detect stages
(cached, see measure_fit.make_run; not timed), then both slots fitted as in
stage 02_hands. The peer, measured in the same run on the same batches: the smplx.MANO
forward + backward passes the fit needs (one per iteration per hand track, full mesh, the
same batch of frames), i.e. ratio = fit time / (iterations x smplx fwd+bwd time). Below 1
means the fit costs less than its model evaluations would through smplx (it evaluates only
the 21 keypoints per iteration; the final mesh is one smplx forward, included in the fit time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def smplx_pass_time(model, T: int, reps: int = 5) -> float:
    """Seconds for one smplx forward + backward over a batch of T frames."""
    import torch

    go = torch.zeros(T, 3, requires_grad=True)
    hp = (torch.randn(T, 45) * 0.2).requires_grad_(True)
    b = torch.zeros(T, 10, requires_grad=True)
    tr = torch.zeros(T, 3, requires_grad=True)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        v, j = model.forward(go, hp, b, tr)
        (j.square().sum() + v.square().sum() * 1e-3).backward()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser()
    data = Path(os.environ.get("HOI_SHARED_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("--clip", type=Path, default=data / "anchorcrafter" / "plush_twohand.mp4")
    ap.add_argument("--iters", type=int, default=160)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    from hoi_cli.conventions import default_intrinsics
    from hoi_cli.handmodel.fit import FitConfig, KeypointModel, fit_track, mesh_vertices
    from hoi_cli.handmodel.mano_io import load_hand_model
    from measure_fit import make_run

    torch.set_num_threads(a.threads)
    run = make_run(a.clip, max_side=512)  # real 00_frames + 01_detect, cached (not timed)
    meta = json.loads((run / "00_frames" / "meta.json").read_text())
    det = dict(np.load(run / "01_detect" / "detections.npz"))
    K = default_intrinsics(meta["width"], meta["height"])
    kp = det["hand_keypoints"]
    fit_s, peer_s, frames = 0.0, 0.0, 0
    per_slot = {}
    for s, side in enumerate(("left", "right")):
        present = np.isfinite(kp[:, s, :, :2]).all(axis=2).sum(1) >= 6
        if not present.any():
            continue
        idx = np.nonzero(present)[0]
        sl = slice(idx[0], idx[-1] + 1)
        m = load_hand_model(side)
        fw = present[sl].astype(float)
        t0 = time.perf_counter()
        res = fit_track(m, kp[sl, s, :, :2], K, world=det["hand_world"][sl, s], frame_weight=fw,
                        cfg=FitConfig(iters=a.iters), fps=meta["fps"], kp_model=KeypointModel(m))
        mesh_vertices(m, res["global_orient"], res["hand_pose"], res["betas"], res["transl"])
        dt = time.perf_counter() - t0
        T = int(sl.stop - sl.start)
        peer = smplx_pass_time(m, T) * a.iters
        fit_s += dt
        peer_s += peer
        frames += T
        per_slot[side] = {"frames": T, "fit_s": round(dt, 3), "smplx_passes_s": round(peer, 3),
                          "reproj_px": float(np.nanmean(res["reproj_error_px"]))}
    report = {"clip": str(a.clip), "size": [meta["width"], meta["height"]], "iters": a.iters,
              "threads": a.threads, "hand_tracks": len(per_slot), "frames_fitted": frames,
              "ms_per_frame_per_hand": round(1000 * fit_s / max(frames, 1), 3),
              "smplx_fwd_bwd_ms_per_frame_per_hand": round(1000 * peer_s / max(frames, 1), 3),
              "ratio_fit_to_smplx_passes": round(fit_s / max(peer_s, 1e-9), 3), "per_slot": per_slot}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
