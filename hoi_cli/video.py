"""Reading and writing video: the one place that touches codecs.

Decoding streams frame by frame through PyAV (never the whole clip in memory); writing
uses PyAV's libx264, since OpenCV's wheels cannot encode H.264.

Convention: frames are ``uint8`` RGB arrays of shape ``(H, W, 3)``; timestamps are seconds
from the stream's start (``pts * time_base``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import BadInputError

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    n_frames: int | None  # from the container; None where it does not say
    codec: str
    duration_s: float | None


def _open(path: Path):
    import av

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"video not found: {path}", "check the path")
    if path.is_dir():
        raise BadInputError(f"expected a video file, got a folder: {path}",
                            "pass the clip file (mp4, webm, mov)")
    if path.stat().st_size == 0:
        raise BadInputError(f"video file is empty (0 bytes): {path}", "re-export or re-copy the clip")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise BadInputError(f"not a readable video: {path} ({type(exc).__name__})",
                            "is it a video file? try `ffprobe` on it") from None
    if not container.streams.video:
        container.close()
        raise BadInputError(f"no video stream in {path}", "pass a file with a video track")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, frame rate and length without decoding it."""
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        n = stream.frames or None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        if n is None and duration and fps:
            n = int(round(duration * fps))
        return VideoInfo(Path(path), stream.codec_context.width, stream.codec_context.height, fps, n,
                         stream.codec_context.name, duration)
    finally:
        container.close()


def working_size(width: int, height: int, max_side: int | None, upscale: bool = False) -> tuple[int, int]:
    """The (width, height) at which frames are processed.

    The longest side becomes ``max_side`` (aspect kept, rounded to even pixels so that
    video encoders accept it); never larger than the source unless ``upscale``.
    """
    if not max_side:
        return width, height
    scale = max_side / max(width, height)
    if scale >= 1 and not upscale:
        return width, height
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def iter_frames(path: str | Path, *, size: tuple[int, int] | None = None, start: int = 0,
                end: int | None = None, stride: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, timestamp_s, rgb)`` for frames ``start <= index < end`` every ``stride``.

    Frames are decoded one at a time; ``size=(w, h)`` resizes each with area averaging.
    A stream that breaks off mid-way raises `BadInputError` naming the frame reached.
    """
    import av
    import cv2

    if stride < 1:
        raise BadInputError(f"stride must be >= 1, got {stride}", "use --stride 1 or more")
    container = _open(Path(path))
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                index += 1
                if index < start or (index - start) % stride:
                    continue
                if end is not None and index >= end:
                    break
                rgb = frame.to_ndarray(format="rgb24")
                if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
                    interp = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_CUBIC
                    rgb = cv2.resize(rgb, tuple(size), interpolation=interp)
                t = float(frame.pts * frame.time_base) if frame.pts is not None else math.nan
                yield index, t, rgb
        except av.error.FFmpegError as exc:
            raise BadInputError(
                f"corrupt or truncated video {path}: decoding failed after {index + 1} frames ({exc})",
                "re-download or re-encode the clip; --end can stop before the damage") from None
    finally:
        container.close()


def read_video(path: str | Path, *, size: tuple[int, int] | None = None, max_frames: int | None = None
               ) -> tuple[np.ndarray, float]:
    """Read a whole (short) video into ``(T, H, W, 3)`` uint8 and return it with its fps."""
    info = probe(path)
    frames = [rgb for _, _, rgb in iter_frames(path, size=size, end=max_frames)]
    if not frames:
        raise BadInputError(f"video has no frames: {path}", "check that the clip is not empty")
    return np.stack(frames), info.fps


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB (or RGBA where it has alpha) uint8."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"image not found: {path}", "check the path")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadInputError(f"not a readable image: {path}", "use PNG or JPEG")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.dtype != np.uint8:  # 16-bit PNGs
        img = (img / 257).astype(np.uint8)
    return img


def write_image(path: str | Path, rgb: np.ndarray, *, png_compression: int = 1) -> None:
    import cv2

    arr = np.asarray(rgb)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), arr, [cv2.IMWRITE_PNG_COMPRESSION, png_compression]):
        raise OSError(f"could not write image {path}")


class VideoWriter:
    """H.264 (yuv420p) mp4 writer through PyAV. Use as a context manager.

    Odd frame sizes are padded by one pixel on the right/bottom (yuv420p needs even sizes).
    """

    def __init__(self, path: str | Path, fps: float, *, crf: int = 18, codec: str = "libx264"):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.codec = codec
        self._container = None
        self._stream = None

    def __enter__(self) -> "VideoWriter":
        return self

    def write(self, rgb: np.ndarray) -> None:
        import av
        from fractions import Fraction

        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        if h % 2 or w % 2:
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            h, w = rgb.shape[:2]
        if self._container is None:
            self._container = av.open(str(self.path), mode="w")
            rate = Fraction(self.fps).limit_denominator(1001) if self.fps else Fraction(25)
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf)}
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | Path, frames, fps: float, *, crf: int = 18) -> Path:
    """Write an iterable of RGB frames as an H.264 mp4."""
    with VideoWriter(path, fps, crf=crf) as writer:
        n = 0
        for frame in frames:
            writer.write(frame)
            n += 1
    if n == 0:
        raise ValueError("write_video got no frames")
    return Path(path)


def read_frames_any(path: str | Path, *, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Frames from a video file, a folder of images, or a run folder (its 00_frames).

    Returns ``(T, H, W, 3)`` uint8 RGB and the fps (``nan`` for an image folder without meta).
    """
    import json

    import cv2

    path = Path(path)
    if path.is_dir():
        frames_dir, fps = path, math.nan
        if (path / "00_frames" / "frames").is_dir():
            frames_dir = path / "00_frames" / "frames"
        elif (path / "frames").is_dir():
            frames_dir = path / "frames"
        meta = frames_dir.parent / "meta.json"
        if meta.exists():
            fps = float(json.loads(meta.read_text()).get("fps", math.nan))
        files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BadInputError(f"no image frames in folder {frames_dir}",
                                "pass a video, a folder of PNG/JPEG frames, or a run folder")
        out = []
        for f in files:
            img = read_image(f)[..., :3]
            if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
                img = cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA)
            out.append(img)
        return np.stack(out), fps
    return read_video(path, size=size)
