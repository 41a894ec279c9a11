"""What the reliability checks cost, as ratios against a peer timed in the same run.

1. decoding: `hoi_cli.video.iter_frames` (frame count / last-timestamp / packet checks,
   rotation) against a bare PyAV decode loop (same threads, same RGB conversion);
2. re-checking a cached stage before reuse: the size+mtime check against a full re-hash;
3. encoding: `VideoWriter` with its fixed thread count against x264's automatic count.

    PYTHONPATH=$PWD python bench/bench_reliability.py [CLIP ...]   (default: the shared data's plush clip)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def bare_decode(path: str) -> int:
    import av

    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for frame in c.decode(s):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(clips: list[str]) -> None:
    from hoi_cli import pipeline as pl
    from hoi_cli.store import RunStore
    from hoi_cli.video import VideoWriter, iter_frames

    for clip in clips:
        ours = timed(lambda clip=clip: sum(1 for _ in iter_frames(clip)))
        peer = timed(lambda clip=clip: bare_decode(clip))
        print(f"decode {Path(clip).name}: iter_frames {ours:.3f}s, bare PyAV {peer:.3f}s, ratio {ours / peer:.3f}")

    clip = clips[0]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        pl.preprocess_clip(Path(clip), run, pl.load_recipe("full"), until="00_frames")
        store = RunStore(run)
        cheap = timed(lambda: store.check_outputs("00_frames"))
        from hoi_cli import digest as digest_mod

        def full():
            digest_mod._HASH_CACHE.clear()  # a real re-hash, not the in-process cache
            store.verify("00_frames")

        rehash = timed(full)
        n = len(store.manifest("00_frames")["outputs"])
        print(f"cached 00_frames ({n} files): size+mtime check {cheap * 1e3:.1f} ms, full re-hash {rehash * 1e3:.1f} ms, "
              f"ratio {cheap / rehash:.3f}")

        from hoi_cli.stages.frames import load_frames

        frames = load_frames(run)

        def encode(threads):
            import hoi_cli.video as video

            old = video.ENCODER_THREADS
            video.ENCODER_THREADS = threads
            try:
                with VideoWriter(Path(tmp) / f"t{threads}.mp4", 30) as w:
                    for f in frames:
                        w.write(f)
            finally:
                video.ENCODER_THREADS = old

        fixed = timed(lambda: encode(4))
        auto = timed(lambda: encode(0))  # 0: x264 picks from the CPUs this process may use
        print(f"encode {len(frames)} frames {frames.shape[2]}x{frames.shape[1]}: fixed 4 threads {fixed:.3f}s, "
              f"auto {auto:.3f}s, ratio {fixed / auto:.3f}")


if __name__ == "__main__":
    default = [str(Path(__file__).resolve().parents[2] / "shared/data/anchorcrafter/plush_twohand.mp4"),
               str(Path(__file__).resolve().parents[2] / "shared/data/interdyn/125021/video.webm")]
    main(sys.argv[1:] or default)
