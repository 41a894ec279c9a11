"""Speed of 03_segment's SAM 2 backend (`hoi_cli.segment.sam2_video`) against a named peer, in the same run.

Peer: the sam2 package's own demo loop on the same frames: ``init_state`` on a folder of JPEGs
written beforehand (not timed), one box on frame 0, ``propagate_in_video`` forward. Ours:
`segment_video_sam2` with the same box (one object track, both directions, frames written as
lossless PNG data per chunk, masks to numpy), and with both hand tracks too (three tracks) where
the clip has hand detections. Frames: one InterDyn clip (427x240, 28 frames; the object box from
its reference mask on frame 0, hand boxes from its hand mask) or, where ../shared/data is absent,
a synthetic clip of the same size. Prints frames/s of each, the ratio, and peak memory.

Models (random weights: speed only, masks meaningless):
    default               the tests' tiny SAM 2 (`sam2_video.tiny_overrides`, 64 px, ~0.9 M parameters)
    --random-tiny-shapes  the real sam2.1_hiera_tiny architecture (the package config) with seeded
                          random weights, at --image-size px (default 512)
    --checkpoint PATH     a real checkpoint (config from its file name, or --config)

Peak memory: CUDA ``torch.cuda.max_memory_allocated``; CPU the process's resident set sampled
every 5 ms during the run, its peak minus its size at the start.

Usage:
    python bench/bench_sam2.py                                   # tiny model, CPU
    python bench/bench_sam2.py --random-tiny-shapes              # sam2.1_hiera_tiny shapes, 512 px, CPU
    python bench/bench_sam2.py --random-tiny-shapes --device cuda
    python bench/bench_sam2.py --checkpoint ~/weights/sam2.1_hiera_tiny.pt --device cuda --image-size 1024
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hoi_cli.conventions import box_from_mask  # noqa: E402
from hoi_cli.segment import sam2_video as sv  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "interdyn"


def load_clip(clip: str, n: int):
    """Frames, an object box on frame 0 and 01_detect-like hand arrays (from the reference masks)."""
    d = DATA / clip
    if d.is_dir():
        from hoi_cli.video import read_video

        frames, _ = read_video(d / "video.webm")
        z = np.load(d / "masks.npz")
        obj = np.any(np.stack([z[k] for k in z.files if k.startswith("object_")]), axis=0)
        hand = z["hand"] if "hand" in z.files else np.zeros_like(obj)
        T = min(len(frames), len(obj), n)
        frames, obj, hand = frames[:T], obj[:T], hand[:T]
        source = f"InterDyn {clip}"
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import synthetic_frames

        frames = synthetic_frames(n, 427, 240)
        T = len(frames)
        obj = np.zeros(frames.shape[:3], bool)
        hand = np.zeros_like(obj)
        for t in range(T):
            obj[t, 30:60, 10 + 4 * t:40 + 4 * t] = True
            hand[t, 60:110, 50 + 4 * t:90 + 4 * t] = True
        source = "synthetic"
    boxes = np.stack([box_from_mask(m) for m in obj])
    hb = np.full((T, 2, 4), np.nan, np.float32)
    kps = np.full((T, 2, 21, 3), np.nan, np.float32)
    for t in range(T):
        hb[t, 1] = box_from_mask(hand[t])
        if np.isfinite(hb[t, 1]).all():
            kps[t, 1, :, :2] = ((hb[t, 1, 0] + hb[t, 1, 2]) / 2, (hb[t, 1, 1] + hb[t, 1, 3]) / 2)
    det = {"object_boxes": boxes, "object_score": np.full(T, 0.5, np.float32), "hand_boxes": hb,
           "hand_keypoints": kps, "hand_score": np.where(np.isfinite(hb[..., 0]), 0.9, np.nan).astype(np.float32)}
    return frames, det, source


def official_loop(predictor, frames, box, device):
    """The package's demo: a JPEG folder, one box, forward propagation. Returns seconds (excl. JPEG writing)."""
    import torch
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(frames):
            Image.fromarray(f).save(Path(tmp) / f"{i:05d}.jpg", quality=95)
        sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode(), sv._autocast(device):
            state = predictor.init_state(tmp, offload_video_to_cpu=True)
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
            masks = [(m[:, 0] > 0).cpu().numpy() for _, _, m in predictor.propagate_in_video(state)]
        sync(device)
        assert len(masks) == len(frames)
        return time.perf_counter() - t0


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Peak:
    """Peak memory during a block: CUDA allocator peak, or the process's peak RSS growth (MB)."""

    def __init__(self, device):
        self.device = str(device)

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        else:
            self.rss0 = self.peak = rss_mb()
            self.stop = threading.Event()

            def sample():
                while not self.stop.wait(0.005):
                    self.peak = max(self.peak, rss_mb())

            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            self.mb = torch.cuda.max_memory_allocated() / 2**20
            self.what = "CUDA peak allocated"
        else:
            self.stop.set()
            self.thread.join()
            self.mb = max(self.peak, rss_mb()) - self.rss0
            self.what = "peak RSS growth"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="a real SAM 2 checkpoint (e.g. sam2.1_hiera_tiny.pt)")
    ap.add_argument("--config", default="", help="the package config when the file name does not tell")
    ap.add_argument("--random-tiny-shapes", action="store_true", help="sam2.1_hiera_tiny architecture, random weights")
    ap.add_argument("--image-size", type=int, default=512, help="model input size for --random-tiny-shapes / --checkpoint")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clip", default="176110")
    ap.add_argument("--frames", type=int, default=28)
    ap.add_argument("--threads", type=int, default=-1,
                    help="torch CPU threads (0 = torch's default; default: 1 for the tiny model, whose ops are "
                         "too small to split, else torch's default)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest counts")
    args = ap.parse_args(argv)

    import torch

    threads = args.threads if args.threads >= 0 else (0 if args.checkpoint or args.random_tiny_shapes else 1)
    if threads:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=r".*cannot import name '_C'.*")
    frames, det, source = load_clip(args.clip, args.frames)
    T, H, W = frames.shape[:3]
    with tempfile.TemporaryDirectory() as tmp:
        size = [f"++model.image_size={args.image_size}"]
        if args.checkpoint:
            ckpt, cfg, overrides, what = args.checkpoint, args.config, size, f"{Path(args.checkpoint).name}"
        elif args.random_tiny_shapes:
            cfg = "configs/sam2.1/sam2.1_hiera_t.yaml"
            ckpt = sv.save_random_checkpoint(Path(tmp) / "sam2.1_hiera_tiny.pt", cfg, seed=0)
            overrides, what = size, "sam2.1_hiera_tiny shapes, random weights"
        else:
            ckpt = sv.save_random_checkpoint(Path(tmp) / "sam2.1_hiera_tiny.pt", overrides=sv.tiny_overrides(64))
            cfg, overrides, what = "", sv.tiny_overrides(64), "tiny test model"
        predictor = sv.load_predictor(ckpt, cfg, overrides, args.device)
    n_params = sum(p.numel() for p in predictor.parameters())
    print(f"model: {what}, {n_params / 1e6:.2f} M parameters, {predictor.image_size} px, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"clip: {source}, {T} frames {W}x{H}")
    box = det["object_boxes"][0]
    with_hands = dict(det)
    object_only = {k: v for k, v in det.items() if k.startswith("object_")}

    def ours(d):
        sync(args.device)
        t0 = time.perf_counter()
        res = sv.segment_video_sam2(predictor, frames, d, device=args.device)
        sync(args.device)
        assert res["object"].shape == (T, H, W)
        return time.perf_counter() - t0, res

    official_loop(predictor, frames[:2], box, args.device)  # warm-up (lazy initialisation, caches), not timed
    rows = []
    with Peak(args.device) as peak_ours:
        t_ours = min(ours(object_only)[0] for _ in range(args.repeat))
    t_peer = min(official_loop(predictor, frames, box, args.device) for _ in range(args.repeat))
    rows.append(("ours, object track (both directions)", t_ours, peak_ours))
    rows.append(("peer: package demo loop, object, forward", t_peer, None))
    if np.isfinite(det["hand_boxes"]).any():
        with Peak(args.device) as peak3:
            t3, res = min((ours(with_hands) for _ in range(args.repeat)), key=lambda r: r[0])
        rows.append((f"ours, object + hand tracks ({len(res['prompts'])} tracks)", t3, peak3))
    for name, t, peak in rows:
        mem = f", {peak.what} {peak.mb:.0f} MB" if peak is not None else ""
        print(f"{name:45s} {T / t:8.3g} frames/s ({t / T:.3g} s/frame){mem}")
    print(f"ratio ours/peer (object only): {t_ours / t_peer:.2f}x the peer's time")


if __name__ == "__main__":
    main()
