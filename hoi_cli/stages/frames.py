"""00_frames: decode the clip once, at the working resolution, losslessly.

This is the only stage that reads the source clip; every later stage reads these frames.
A clip is a video, a GIF, or a folder of image frames (`hoi_cli.clips`: natural name order,
``fps`` frames per second, default 12).

Outputs:
    ``frames/000000.png ...``  RGB, lossless, at the working resolution (longest side
                               ``max_side``, never upscaled unless ``upscale``).
    ``meta.json``              ``fps`` (source fps / stride), ``width``, ``height``, ``n_frames``,
                               ``source`` (path, ``kind`` "video" | "gif" | "frames", sha256, width,
                               height, fps, codec; for a frame folder also ``fps_given`` (False where
                               the default rate was used) and ``frame_files``, the image names in
                               order), ``timestamps`` (s, from the source stream; index / fps for a
                               frame folder), ``source_frame_indices``;
                               ``rotation`` applied, ``frames_decoded``/``frames_announced``/``short``:
                               a damaged clip kept with ``allow_short``.

Decoding streams one frame at a time, so a 1080p clip never sits whole in memory.
"""

from __future__ import annotations

import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..params import typed
from ..clips import frame_files as source_frame_files, iter_clip_frames, probe_clip, source_digest
from ..video import read_image, working_size, write_image
from .base import StageContext

NAME = "00_frames"
VERSION = "2"  # 2: frame folders and GIFs (meta.source.kind); rotation applied; damaged clips refused unless allow_short
DEPENDS_ON: tuple[str, ...] = ()


@typed
class Params:
    max_side: int = 512
    """Longest side of the working resolution, px (0 = source size)."""
    upscale: bool = False
    """Allow max_side above the source size."""
    start: int = 0
    """First source frame index."""
    end: int | None = None
    """Stop before this source frame index (None = the end)."""
    stride: int = 1
    """Keep every stride-th frame."""
    png_compression: int = 1
    """PNG compression level of the stored frames, 0-9: lossless at any level, 1 is fast."""
    fps: float = 0.0
    """Frame rate of a frame folder (0 = 12); videos and GIFs keep their own."""
    allow_short: bool = False
    """Accept a damaged clip that decodes fewer frames than it announces (recorded in meta)."""


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    if ctx.source is None:
        raise BadInputError("00_frames needs a source clip", "pass a video, GIF or frame folder to `hoi preprocess`")
    if p.end is not None and p.end <= p.start:
        raise BadInputError(f"--end ({p.end}) must be after --start ({p.start})", "pick a non-empty frame range")
    if p.fps < 0:
        raise BadInputError(f"--fps must be positive, got {p.fps}", "e.g. --fps 12")
    info = probe_clip(ctx.source, fps=p.fps)
    if p.fps and info.kind != "frames":
        ctx.log(f"00_frames: --fps {p.fps} ignored: a {info.kind} keeps its own rate ({info.fps:.3g} fps)")
    width, height = working_size(info.width, info.height, p.max_side, p.upscale)
    frames_dir = ctx.out_dir / "frames"
    frames_dir.mkdir()
    total = None
    if info.n_frames:
        last = min(info.n_frames, p.end) if p.end is not None else info.n_frames
        total = max(0, (last - p.start + p.stride - 1) // p.stride)
    timestamps, source_indices = [], []
    decoding: dict = {}
    # PNG encoding releases the GIL: a small pool overlaps it with decoding. At most
    # `max_pending` frames wait in memory, so a long 1080p clip is never held whole.
    max_pending = 8
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        for i, (index, t, rgb) in enumerate(iter_clip_frames(
                ctx.source, size=(width, height), start=p.start, end=p.end, stride=p.stride, fps=p.fps,
                allow_short=p.allow_short, report=decoding,
                short_hint="--allow-short keeps the frames that decode, --end stops before the damage")):
            pending.append(pool.submit(write_image, frames_dir / f"{i:06d}.png", rgb,
                                       png_compression=p.png_compression))
            while len(pending) > max_pending:
                pending.popleft().result()
            timestamps.append(round(t, 6))
            source_indices.append(index)
            ctx.progress(i + 1, total)
        for future in pending:
            future.result()
    if not timestamps:
        raise BadInputError(f"no frames decoded from {ctx.source} (range start={p.start} end={p.end})",
                            "the clip is empty or the range is past its end; check --start/--end")
    source = {"path": str(Path(ctx.source).resolve()), "kind": info.kind, "sha256": source_digest(ctx.source),
              "width": info.width, "height": info.height, "fps": info.fps, "codec": info.codec,
              "rotation": info.rotation, "frames_decoded": decoding.get("decoded"),
              "frames_announced": decoding.get("expected"), "short": bool(decoding.get("short"))}
    if info.kind == "frames":
        source["fps_given"] = bool(p.fps)
        source["frame_files"] = [f.name for f in source_frame_files(ctx.source)]
    meta = {
        "fps": info.fps / p.stride if info.fps else None,
        "width": width,
        "height": height,
        "n_frames": len(timestamps),
        "source": source,
        "timestamps": timestamps,
        "source_frame_indices": source_indices,
    }
    (ctx.out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    if decoding.get("short"):
        ctx.log(f"00_frames: {ctx.source} is damaged: kept the {decoding['decoded']} of "
                f"{decoding.get('expected') or '?'} frames that decode (--allow-short)")
    return {"n_frames": len(timestamps), "width": width, "height": height, "fps": meta["fps"], "kind": info.kind,
            **({"short": True} if decoding.get("short") else {}), **({"rotation": info.rotation} if info.rotation else {})}


def load_meta(run_dir: str | Path) -> dict:
    """The run's ``00_frames/meta.json``."""
    path = Path(run_dir) / NAME / "meta.json"
    if not path.exists():
        raise BadInputError(f"no frames in {run_dir} ({path} missing)", "run `hoi preprocess` on the clip first")
    return json.loads(path.read_text())


def frame_paths(run_dir: str | Path) -> list[Path]:
    return sorted((Path(run_dir) / NAME / "frames").glob("*.png"))


def load_frames(run_dir: str | Path, indices=None) -> np.ndarray:
    """Frames as ``(T, H, W, 3)`` uint8 RGB (all, or those at ``indices``)."""
    paths = frame_paths(run_dir)
    if not paths:
        raise BadInputError(f"no frames in {run_dir}", "run `hoi preprocess` on the clip first")
    if indices is not None:
        paths = [paths[i] for i in indices]
    return np.stack([read_image(p)[..., :3] for p in paths])


def iter_frames_of_run(run_dir: str | Path):
    """Yield the run's frames one at a time (for long clips)."""
    for p in frame_paths(run_dir):
        yield read_image(p)[..., :3]


class Frames:
    """00_frames of one run, read lazily: ``meta`` (meta.json), ``paths``, ``load(indices)``, ``iter()``."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._meta: dict | None = None

    @property
    def meta(self) -> dict:
        if self._meta is None:
            self._meta = load_meta(self.run_dir)
        return self._meta

    @property
    def paths(self) -> list[Path]:
        return frame_paths(self.run_dir)

    def load(self, indices=None) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB (all frames, or those at ``indices``)."""
        return load_frames(self.run_dir, indices)

    def iter(self):
        """The frames one at a time (for long clips)."""
        return iter_frames_of_run(self.run_dir)


def load(run_dir: str | Path) -> Frames:
    """The stage's loader (`StageContext.read`): its frames and meta, read when asked for."""
    return Frames(run_dir)
