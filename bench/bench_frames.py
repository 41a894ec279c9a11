"""00_frames speed: frames/s of the stage against bare decoding of the same clip, in the same run.

Peers: PyAV decode to RGB only (the floor the stage builds on) and OpenCV's VideoCapture;
for a frame folder, OpenCV's imread of its images. The stage also resizes to the working
resolution, writes lossless PNGs and hashes them (a frame folder's images are hashed twice:
for the fingerprint and for meta.json's source record).

    python bench/bench_frames.py [CLIP ...]    (default: the shared 1080p clip, one InterDyn clip,
                                                a Something-Else frame folder and a GIF)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hoi_cli.stages import frames as frames_stage  # noqa: E402
from hoi_cli.store import RunStore  # noqa: E402
from hoi_cli.video import iter_frames  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = [SHARED / "anchorcrafter" / "plush_twohand.mp4", SHARED / "interdyn" / "137875" / "video.webm",
           SHARED / "something_else" / "22983", SHARED / "wild" / "mixkit-hands-of-a-baker-kneading-a-dough.gif"]


def bare_pyav(clip: Path) -> int:
    return sum(1 for _ in iter_frames(clip))


def bare_imread(folder: Path) -> int:
    from hoi_cli.clips import frame_files

    return sum(cv2.imread(str(f)) is not None for f in frame_files(folder))


def bare_opencv(clip: Path) -> int:
    cap = cv2.VideoCapture(str(clip))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def stage(clip: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp) / "run") as store:
        manifest = store.run_stage(frames_stage, frames_stage.Params(), source=clip)
        return manifest["summary"]["n_frames"]


def timed(fn, clip, repeats=2):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn(clip)
        best = min(best, time.perf_counter() - t0)
    return n, best


def main(clips: list[Path]) -> None:
    for clip in clips:
        if not clip.exists():
            print(f"skip {clip}: absent")
            continue
        n, t_stage = timed(stage, clip)
        if clip.is_dir():
            _, t_read = timed(bare_imread, clip)
            print(f"{clip.parent.name}/{clip.name}: {n} frames | 00_frames {n / t_stage:7.1f} fps | "
                  f"bare imread {n / t_read:7.1f} fps | stage/imread time ratio {t_stage / t_read:.2f}")
            continue
        _, t_av = timed(bare_pyav, clip)
        _, t_cv = timed(bare_opencv, clip)
        print(f"{clip.parent.name}/{clip.name}: {n} frames | 00_frames {n / t_stage:7.1f} fps | "
              f"bare PyAV decode {n / t_av:7.1f} fps | OpenCV decode {n / t_cv:7.1f} fps | "
              f"stage/PyAV time ratio {t_stage / t_av:.2f}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or DEFAULT)
