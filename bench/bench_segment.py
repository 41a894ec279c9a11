"""Speed of 03_segment's GrabCut backend against a named peer, measured in the same run.

Peer: plain per-frame ``cv2.grabCut`` at full resolution on the whole frame, initialised with
the box (GC_INIT_WITH_RECT, 5 iterations) - the reference setup (~300 ms per 427x240 frame).
Ours: `hoi_cli.segment.grabcut.segment_sequence` with 03_segment's default parameters (ROI
around the box, downscaled, 2 iterations, previous mask and colour models carried over,
temporal vote). Both get the reference object boxes of one InterDyn clip (or a synthetic clip
where ../shared/data is absent). Prints frames/s of each and the ratio.

Also a prompted object (box on the first frame): the old path (01_detect's CSRT box track, then the
GrabCut above in each tracked box) against mask propagation (`hoi_cli.segment.propagate`).

Usage: python bench/bench_segment.py [--clip 176110] [--frames 28] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hoi_cli.conventions import box_from_mask  # noqa: E402
from hoi_cli.segment.grabcut import segment_sequence  # noqa: E402
from hoi_cli.stages.segment import Params  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "interdyn"


def load(clip: str, n: int):
    d = DATA / clip
    if d.is_dir():
        from hoi_cli.video import read_video

        frames, _ = read_video(d / "video.webm")
        z = np.load(d / "masks.npz")
        ref = np.any(np.stack([z[k] for k in z.files if k.startswith("object_")]), axis=0)
        T = min(len(frames), len(ref), n)
        return frames[:T], np.stack([box_from_mask(m) for m in ref[:T]])
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import synthetic_frames

    frames = synthetic_frames(n, 427, 240)
    return frames, np.stack([[10 + 4 * t - 5, 25, 45 + 4 * t, 65] for t in range(n)]).astype(np.float32)


def peer(frames, boxes):
    out = []
    for f, b in zip(frames, boxes):
        mask = np.zeros(f.shape[:2], np.uint8)
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        x0, y0, x1, y1 = [int(v) for v in b]
        cv2.grabCut(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, 5,
                    cv2.GC_INIT_WITH_RECT)
        out.append((mask == 1) | (mask == 3))
    return np.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="176110")
    ap.add_argument("--frames", type=int, default=28)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    frames, boxes = load(a.clip, a.frames)
    gp = Params().grabcut  # 03_segment's GrabCut settings
    t0 = time.perf_counter()
    peer(frames, boxes)
    t_peer = time.perf_counter() - t0
    t0 = time.perf_counter()
    segment_sequence(frames, boxes, params=gp)
    t_ours = time.perf_counter() - t0
    n = len(frames)
    print(f"{n} frames {frames.shape[2]}x{frames.shape[1]}")
    print(f"peer  full-frame grabCut (rect, 5 it): {n / t_peer:6.1f} frames/s ({1000 * t_peer / n:.0f} ms/frame)")
    print(f"ours  03_segment grabcut defaults:     {n / t_ours:6.1f} frames/s ({1000 * t_ours / n:.0f} ms/frame)")
    print(f"ratio ours/peer: {t_peer / t_ours:.1f}x")
    # a prompted object: the box on the first frame, the old path (CSRT box track, then GrabCut in each
    # box as above) against mask propagation (`hoi_cli.segment.propagate`), best of --repeat runs each
    from hoi_cli.detect.objects import track_box
    from hoi_cli.segment.propagate import propagate_masks

    def old_path():
        tracked, _ = track_box(frames, boxes[0], 0)
        segment_sequence(frames, tracked, params=gp)

    def new_path():
        propagate_masks(frames, boxes[0], 0)

    t_old, t_new = [], []
    for _ in range(a.repeat):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        old_path()
        t_old.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        new_path()
        t_new.append(time.perf_counter() - t0)
    print(f"prompted, old: CSRT box track + GrabCut per box: {n / min(t_old):6.1f} frames/s")
    print(f"prompted, new: mask propagation (DIS flow + GrabCut): {n / min(t_new):6.1f} frames/s")
    print(f"ratio new/old speed: {min(t_old) / min(t_new):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
