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
from collections.abc import Iterator

import numpy as np

from .errors import BadInputError

ENCODER_THREADS = 4  # fixed, for byte-reproducible mp4s (see VideoWriter)
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    n_frames: int | None  # from the container (a frame count, or duration x fps); None where it does not say
    codec: str
    duration_s: float | None
    rotation: int = 0  # degrees counter-clockwise the player turns the frames (display matrix); width/height are after it
    n_frames_exact: bool = False  # n_frames is the container's frame count, not duration x fps


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
    except Exception as exc:  # FFmpegError, or e.g. UnicodeDecodeError from damaged metadata: not readable either way
        raise BadInputError(f"not a readable video: {path} ({type(exc).__name__})",
                            "is it a video file? try `ffprobe` on it") from None
    if not container.streams.video:
        container.close()
        raise BadInputError(f"no video stream in {path}", "pass a file with a video track")
    if container.streams.video[0].codec_context is None:  # e.g. a damaged codec tag
        container.close()
        raise BadInputError(f"unknown or damaged video codec in {path}", "re-download or re-encode the clip")
    return container


PLAUSIBLE_FPS = (0.5, 1000.0)  # frame rates a real clip has; outside it, the header is damaged


def _announced_frames(container, stream) -> tuple[float, float | None, int | None, bool, bool]:
    """(fps, duration_s, frame count the container announces, whether that count is exact,
    whether the duration is the video stream's own rather than the container's, which may be
    a longer audio track's).

    MP4/MOV store a frame count; Matroska/WebM (VP9) usually do not, so the count is the
    stream's duration x fps, the duration coming from the stream, its ``DURATION`` tag, or the
    container header (all written before the frames, so a truncated file still announces them).
    """
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        try:
            duration = _parse_tag_duration(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
        except Exception:  # damaged (non-UTF-8) metadata: fall back to the header's duration
            duration = None
    own = duration is not None or len(container.streams) == 1
    if duration is None and container.duration:
        duration = container.duration / 1_000_000
    if stream.frames and duration and not PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1]:
        # a damaged header's rate (a flipped byte gave 6.7e-5 fps, which capped 16 frames to 1
        # below): the count over the duration is the rate the frames were written at
        fps = stream.frames / duration
    if stream.frames:
        n = int(stream.frames)
        if duration and fps:  # an edit list may end the stream before its last samples (FFmpeg drops those)
            n = min(n, math.ceil(duration * fps - 1e-3))
        return fps, duration, n, True, own
    n = int(round(duration * fps)) if duration and fps else None
    return fps, duration, n, False, own


def _parse_tag_duration(text) -> float | None:
    """Matroska's ``DURATION`` tag, ``HH:MM:SS.nnnnnnnnn``, in seconds."""
    if not text:
        return None
    try:
        h, m, sec = str(text).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def _rotation_steps(degrees) -> int:
    """Quarter turns counter-clockwise (np.rot90's k) for a display-matrix rotation in degrees."""
    try:
        return int(round(float(degrees) / 90.0)) % 4
    except (TypeError, ValueError, OverflowError):
        return 0


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, frame rate, length and rotation, decoding at most its first frame."""
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        fps, duration, n, exact, _ = _announced_frames(container, stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        rotation = 0
        try:  # the display matrix is side data of each frame in PyAV
            first = next(iter(container.decode(stream)), None)
            if first is not None:
                rotation = _rotation_steps(first.rotation) * 90
                width, height = first.width, first.height
        except Exception:  # a damaged first frame: iter_frames reports it
            pass
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(Path(path), width, height, fps, n, stream.codec_context.name, duration, rotation, exact)
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
                end: int | None = None, stride: int = 1, allow_short: bool = False,
                report: dict | None = None, short_hint: str = "") -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, timestamp_s, rgb)`` for frames ``start <= index < end`` every ``stride``.

    Frames are decoded one at a time and turned upright by the stream's rotation (display
    matrix); ``size=(w, h)`` (upright) resizes each with area averaging.

    A damaged clip is never half-read in silence: where decoding breaks off, or the stream
    ends before the frame count the container announces (a truncated or byte-damaged file;
    FFmpeg's decoders skip what they cannot read), it raises `BadInputError` "decoded N of
    M frames", unless ``allow_short``. ``report``, if given, receives ``decoded``,
    ``expected``, ``short`` and ``rotation``.
    """
    import av
    import cv2

    if stride < 1:
        raise BadInputError(f"stride must be >= 1, got {stride}", "use --stride 1 or more")
    container = _open(Path(path))
    index = -1
    report = report if report is not None else {}
    hint = "re-download or re-encode the clip" + (f"; {short_hint}" if short_hint else "")
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps, duration, expected, exact, own_duration = _announced_frames(container, stream)
        report.update(decoded=0, expected=expected, short=False, rotation=0)
        # a frame count is exact; duration x fps may round one frame up, so there the last
        # frame's time is checked as well: it must be within half a frame of duration - 1/fps
        enough = None if expected is None else expected - (0 if exact else 1)
        last_due = duration - 1.5 / fps if (not exact and own_duration and duration and fps) else None
        start_s = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        last_t = None
        broke_off = None
        stopped = False
        packets = [0]  # video packets demuxed: a frame threaded decoding drops silently still has its packet
        try:
            for frame in _decode_counting(container, stream, packets):
                index += 1
                if end is not None and index >= end:
                    stopped = True
                    break
                if frame.pts is not None:
                    last_t = float(frame.pts * frame.time_base) - start_s
                if index < start or (index - start) % stride:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                k = _rotation_steps(frame.rotation)
                if k:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k))
                    report["rotation"] = k * 90
                if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
                    interp = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_CUBIC
                    rgb = cv2.resize(rgb, tuple(size), interpolation=interp)
                t = float(frame.pts * frame.time_base) if frame.pts is not None else math.nan
                report["decoded"] = index + 1
                yield index, t, rgb
        except av.error.FFmpegError as exc:
            broke_off = f"decoding failed ({type(exc).__name__})"
        report["decoded"] = index + 1
        if stopped:
            return
        short = (broke_off is not None or (enough is not None and index + 1 < enough)
                 or (last_due is not None and last_t is not None and last_t < last_due)
                 # Matroska/WebM has no edit lists: every packet is a shown frame (MP4's may be cut)
                 or (not exact and index + 1 < packets[0]))
        expected = max(expected or 0, 0 if exact else packets[0]) or None
        report["expected"] = expected
        if short:
            of = f" of {expected}" if expected else ""
            undecodable = packets[0] - (index + 1) if not exact else 0
            why = broke_off or (f"{undecodable} frames could not be decoded" if undecodable > 0
                                else "the stream ends early")
            report["short"] = True
            if not allow_short:
                raise BadInputError(f"corrupt or truncated video {path}: decoded {index + 1}{of} frames ({why})",
                                    hint)
    finally:
        container.close()


def _decode_counting(container, stream, packets: list[int]):
    """``container.decode(stream)``, counting the stream's non-empty packets in ``packets[0]``."""
    for packet in container.demux(stream):
        if packet.size:
            packets[0] += 1
        yield from packet.decode()


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

    path = Path(path)
    arr = np.asarray(rgb)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(path.suffix or ".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, png_compression])
    if not ok:
        raise ValueError(f"could not encode image {path}")
    # written by Python, not cv2.imwrite (which only returns False): a full disk raises OSError(ENOSPC)
    with open(path, "wb") as f:
        f.write(data.tobytes())


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

    def __enter__(self) -> VideoWriter:
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
            # x264's output depends on its thread count, which "auto" takes from the CPUs this
            # process may use: a fixed count makes the same frames the same bytes on any machine
            self._stream.codec_context.thread_count = ENCODER_THREADS
            self._stream.codec_context.thread_type = "FRAME"
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
