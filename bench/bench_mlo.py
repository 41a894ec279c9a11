"""Benchmark 04_mlo at 512 px: the fast raster path against the pyrender layer-by-layer path, same run.

Usage: python bench/bench_mlo.py [--frames 24] [--size 512] [--workers 2] [--ref-frames 8]

Builds a synthetic run (two built-in-model hands, ~2500 vertices each, plus an object mask
whose proxy surface is inflated), then times the whole stage (`hoi_cli.stages.mlo.run`:
geometry, rendering of the 13 layers, confidence, encoding and writing the per-frame files)
with each backend, and checks that the outputs agree. Prints frames/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


CPU: dict[str, float] = {}


def time_stage(run_dir: Path, out_dir: Path, params) -> float:
    from hoi_cli.stages import mlo
    from hoi_cli.stages.base import StageContext

    out_dir.mkdir(parents=True)
    t, c = time.perf_counter(), time.process_time()
    mlo.run(StageContext(run_dir, out_dir, params))
    CPU[out_dir.name] = time.process_time() - c  # CPU seconds of this process, all threads
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--ref-frames", type=int, default=8, help="frames for the (slow) pyrender path")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from hoi_cli.testing import make_synthetic_run
    from hoi_cli.stages import mlo

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_synthetic_run(tmp / "run", n_frames=args.frames, width=args.size, height=args.size,
                           object_radius_px=60)
        make_synthetic_run(tmp / "ref", n_frames=args.ref_frames, width=args.size, height=args.size,
                           object_radius_px=60)
        # warm-up (imports, EGL context) outside the timing
        time_stage(tmp / "ref", tmp / "warm_r", mlo.Params(backend="raster", workers=args.workers))
        time_stage(tmp / "ref", tmp / "warm_p", mlo.Params(backend="pyrender"))
        fast = time_stage(tmp / "run", tmp / "fast", mlo.Params(backend="raster", workers=args.workers))
        fast1 = time_stage(tmp / "run", tmp / "fast1", mlo.Params(backend="raster", workers=1))
        ref = time_stage(tmp / "ref", tmp / "pyr", mlo.Params(backend="pyrender"))
        fps_fast = args.frames / fast
        fps_fast1 = args.frames / fast1
        fps_ref = args.ref_frames / ref
        # agreement on the reference frames
        agree = []
        for t in range(args.ref_frames):
            fa = np.load(tmp / "warm_r" / "mlo" / f"{t:06d}.npz")
            fb = np.load(tmp / "pyr" / "mlo" / f"{t:06d}.npz")
            da, db = mlo.decode_frame(fa), mlo.decode_frame(fb)
            ma, mb = da["depth"] > 0, db["depth"] > 0
            both = ma & mb
            agree.append(((ma ^ mb).sum() / max(ma.sum(), 1),
                          np.abs(da["normals"][both].astype(int) - db["normals"][both].astype(int)).max(initial=0),
                          np.abs(da["confidence"][both].astype(int) - db["confidence"][both].astype(int)).mean()))
        agree = np.array(agree, dtype=float)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"04_mlo at {args.size}x{args.size}, 13 layers, 2 hands x {5000} faces + proxy object, {cores} cores")
        print(f"  raster (fast, {args.workers} workers): {fps_fast:7.1f} frames/s  ({1000 / fps_fast:6.1f} ms/frame, {args.frames} frames)")
        print(f"  raster (fast, 1 worker):   {fps_fast1:7.1f} frames/s  ({1000 / fps_fast1:6.1f} ms/frame)")
        print(f"  pyrender layer by layer:   {fps_ref:7.1f} frames/s  ({1000 / fps_ref:6.1f} ms/frame, {args.ref_frames} frames)")
        print(f"  ratio fast / pyrender:     {fps_fast / fps_ref:7.1f}x  (1 worker: {fps_fast1 / fps_ref:.1f}x)")
        print(f"  CPU time per frame (robust to other load; pyrender's EGL/llvmpipe threads included): "
              f"raster {1000 * CPU['fast'] / args.frames:.1f} ms, pyrender {1000 * CPU['pyr'] / args.ref_frames:.1f} ms")
        print(f"  load average: {os.getloadavg()[0]:.1f}")
        print(f"  agreement: layer-pixel mismatch {agree[:, 0].max():.2e}, max normal code diff "
              f"{int(agree[:, 1].max())}, mean confidence code diff {agree[:, 2].max():.3f}")


if __name__ == "__main__":
    main()
