"""Speed of 01_detect: frames/s on one InterDyn clip and on the 1080p AnchorCrafter clip
(downscaled to the 512 px working resolution), and the ratio of 01_detect's time to bare
MediaPipe (``mp.solutions.hands`` in video mode, default settings) on the same frames,
measured in the same run. Decoding/resizing is excluded from both timings.

Usage: python bench/bench_detect.py [--max-frames N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hoi_cli.video import iter_frames, probe, working_size  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def bare_mediapipe(frames) -> float:
    import mediapipe as mp

    t0 = time.perf_counter()
    with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=2) as hands:
        for f in frames:
            hands.process(f)
    return time.perf_counter() - t0


def detect_stage(frames) -> float:
    from hoi_cli.stages.detect import Params, detect

    t0 = time.perf_counter()
    detect(frames, Params(), clip_name="bench")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args(argv)
    clips = [DATA / "interdyn" / "243" / "video.webm", DATA / "anchorcrafter" / "plush_twohand.mp4"]
    rows = []
    for clip in clips:
        if not clip.exists():
            print(f"skip {clip} (absent)", file=sys.stderr)
            continue
        info = probe(clip)
        size = working_size(info.width, info.height, 512)
        frames = np.stack([rgb for _, _, rgb in iter_frames(clip, size=size, end=args.max_frames)])
        t_bare = bare_mediapipe(frames)
        t_det = detect_stage(frames)
        T = len(frames)
        row = {"clip": str(clip.relative_to(DATA)), "frames": T, "size": list(size),
               "detect_fps": T / t_det, "bare_mediapipe_fps": T / t_bare, "ratio_detect_to_bare": t_det / t_bare}
        rows.append(row)
        print(f"{row['clip']:<40} {T:4d} frames {size[0]}x{size[1]}: 01_detect {row['detect_fps']:.2f} fps, "
              f"bare MediaPipe {row['bare_mediapipe_fps']:.2f} fps, ratio {row['ratio_detect_to_bare']:.1f}x",
              flush=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
