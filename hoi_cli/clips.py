"""What a clip is: a video file, a GIF, or a folder of frames; and finding clips in folders.

Datasets often ship frames rather than videos (Something-Else, EPIC-KITCHENS, HOI4D), so a
folder that directly holds image files (PNG, JPEG, BMP, WebP) and no video is one clip:
its images, sorted by name in natural order (``2.jpg`` before ``10.jpg``), are its frames, at
the frame rate the user gives (``--fps``; `DEFAULT_FRAME_FOLDER_FPS` otherwise). GIFs decode
through PyAV like any video, with the GIF's own frame timing.

Finding clips (`expand_clips`): a path that is a clip is taken as it is; any other folder is
searched recursively, and every video or GIF in it, and every sub-folder that is a frame
folder, is a clip. A folder holding videos is never a frame folder: images beside videos
(a reference photo, a thumbnail) are not frames.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import numpy as np

from .digest import file_digest
from .errors import BadInputError
from .video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, iter_frames, probe, read_image

CLIP_SUFFIXES = VIDEO_SUFFIXES | {".gif"}
# Something-Something v2 and Something-Else (the frame-folder datasets this project is measured
# on) are 12 fps, as are the project's sample and InterDyn clips; other datasets state their rate
# (EPIC-KITCHENS frames are 60 fps, HOI4D 15), and --fps sets it.
DEFAULT_FRAME_FOLDER_FPS = 12.0


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: ``2.jpg < 10.jpg``, ``f9 < f10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", name) if part]


def frame_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder``, in natural name order (hidden files skipped)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def is_frame_folder(path: str | Path) -> bool:
    """A folder that directly holds image files and no video or GIF."""
    path = Path(path)
    if not path.is_dir():
        return False
    has_image = False
    for p in path.iterdir():
        suffix = p.suffix.lower()
        if suffix in CLIP_SUFFIXES and p.is_file():
            return False
        has_image = has_image or (suffix in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))
    return has_image


def clip_kind(path: str | Path) -> str:
    """``"frames"`` (a frame folder), ``"gif"`` or ``"video"``."""
    path = Path(path)
    if path.is_dir():
        return "frames"
    return "gif" if path.suffix.lower() == ".gif" else "video"


def expand_clips(inputs: list[str]) -> list[Path]:
    """Clips from paths (clip files, frame folders, or folders searched for both), sorted and unique."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and not is_frame_folder(p):
            found = [q for q in p.rglob("*") if q.suffix.lower() in CLIP_SUFFIXES and q.is_file()]
            found += [q for q in p.rglob("*") if q.is_dir() and is_frame_folder(q)]
            if not found:
                raise BadInputError(f"no clips under {p} (no video, GIF or folder of image frames)",
                                    "pass clip files, frame folders, or a folder of them")
            out += found
        else:
            out.append(p)  # existence is checked per clip, so --keep-going covers it
    seen, unique = set(), []
    for p in sorted(out, key=lambda q: str(q.resolve())):
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def source_digest(path: str | Path) -> str:
    """sha256 of a clip: the file's, or for a frame folder a digest over its frames' names and hashes."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    h = hashlib.sha256(b"hoi-frame-folder-v1\n")
    for f in frame_files(path):
        h.update(f"{f.name}\t{file_digest(f)}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    kind: str  # "video" | "gif" | "frames"
    width: int
    height: int
    fps: float
    n_frames: int | None
    codec: str
    rotation: int = 0  # a video's display rotation, degrees (width/height are as displayed where video.py says so)


def probe_clip(path: str | Path, fps: float = 0.0) -> ClipInfo:
    """Size, frame rate and length of a clip. ``fps`` is the rate of a frame folder
    (0 = `DEFAULT_FRAME_FOLDER_FPS`); videos and GIFs keep their own."""
    path = Path(path)
    kind = clip_kind(path)
    if kind != "frames":
        info = probe(path)
        return ClipInfo(path, kind, info.width, info.height, info.fps, info.n_frames, info.codec,
                        int(getattr(info, "rotation", 0) or 0))
    files = _checked_frame_files(path)
    first = read_image(files[0])
    return ClipInfo(path, kind, first.shape[1], first.shape[0], float(fps or DEFAULT_FRAME_FOLDER_FPS),
                    len(files), files[0].suffix.lower().lstrip("."))


def _checked_frame_files(path: Path) -> list[Path]:
    if not path.exists():
        raise BadInputError(f"clip not found: {path}", "check the path")
    files = frame_files(path)
    if not files:
        raise BadInputError(f"no image frames in folder {path}",
                            "a frame folder holds PNG or JPEG files directly (not in sub-folders)")
    return files


def iter_clip_frames(path: str | Path, *, size: tuple[int, int] | None = None, start: int = 0,
                     end: int | None = None, stride: int = 1, fps: float = 0.0, report: dict | None = None,
                     **video_options) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(index, timestamp_s, rgb)`` like `hoi_cli.video.iter_frames`, for any kind of clip.

    A frame folder's frame ``index`` is the image's position in natural name order, its
    timestamp ``index / fps``; every image must have the first one's size. ``report`` and
    ``video_options`` go to `iter_frames` for videos and GIFs; for a frame folder ``report``
    gets ``decoded`` and ``expected`` (its image count).
    """
    import cv2

    path = Path(path)
    if clip_kind(path) != "frames":
        extra = {"report": report} if report is not None else {}
        yield from iter_frames(path, size=size, start=start, end=end, stride=stride, **extra, **video_options)
        return
    if stride < 1:
        raise BadInputError(f"stride must be >= 1, got {stride}", "use --stride 1 or more")
    files = _checked_frame_files(path)
    rate = float(fps or DEFAULT_FRAME_FOLDER_FPS)
    first_size = None
    if report is not None:
        report.update(decoded=0, expected=len(files), short=False, rotation=0)
    for index in range(start, len(files) if end is None else min(end, len(files)), stride):
        rgb = read_image(files[index])[..., :3]
        shape = (rgb.shape[1], rgb.shape[0])
        first_size = first_size or shape
        if shape != first_size:
            raise BadInputError(f"frame {files[index].name} is {shape[0]}x{shape[1]}, the first kept frame "
                                f"{first_size[0]}x{first_size[1]}",
                                "a frame folder's images must all have one size")
        if size is not None and shape != tuple(size):
            interp = cv2.INTER_AREA if size[0] < shape[0] else cv2.INTER_CUBIC
            rgb = cv2.resize(rgb, tuple(size), interpolation=interp)
        if report is not None:
            report["decoded"] = index + 1
        yield index, index / rate if rate > 0 else math.nan, np.ascontiguousarray(rgb)
