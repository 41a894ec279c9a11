"""Prompts: object and hand boxes (and object points) a user gives to help the automatic path.

Convention: prompts are in the pixels and frame numbers of the SOURCE clip, what a person sees
in a player: x right, y down, from the top-left corner of the full-size source frame; frame
numbers count the source's frames from 0 (for a frame folder, the image's position in name
order: the first image is frame 0). `PromptFrame` converts them to 01_detect's working pixels
and working frame indices with 00_frames' meta (source vs working size; start/stride through
``source_frame_indices``), so a box drawn on a 1080p frame lands on the same object at 288x512.

Text forms (`parse_numbers`, on `hoi_cli.params.parse_list`, the one parser for comma lists):
    box    ``x0,y0,x1,y1`` or ``x0,y0,x1,y1@FRAME``
    point  ``x,y`` or ``x,y@FRAME``
A prompt without ``@FRAME`` is on ``--object-frame`` / ``--hand-frame``, or on the first
processed frame.

The prompts CSV (``hoi preprocess --prompts prompts.csv``) gives per-clip prompts to a batch;
a header row names the columns (only ``clip`` is required, the others may be left empty)::

    clip,object_box,object_point,object_frame,hand_boxes,hand_frame
    22983,"120,40,230,190",,0,"10,60,90,200@3;300,50,400,180",0
    epic_P01_01,,"320,200",4,,

``clip`` is a run id, a clip's file or folder name, or its path; ``hand_boxes`` holds up to two
boxes separated by ``;``. A clip not in the CSV gets no prompts; a row that names no clip of
the command is an error.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from .errors import BadInputError
from .params import parse_list

MAX_HAND_PROMPTS = 2
CSV_COLUMNS = ("clip", "object_box", "object_point", "object_frame", "hand_boxes", "hand_frame")


def parse_numbers(value: Any, n: int | None = None, what: str = "value", example: str = "10,20,110,220"
                  ) -> tuple[float, ...] | None:
    """``"1,2,3,4"`` (or a sequence of numbers) -> ``(1.0, 2.0, 3.0, 4.0)``; None/"" -> None.

    ``n`` is the count required (None: any). Split by `hoi_cli.params.parse_list`, the one
    parser for comma lists on the command line, in recipes and in the prompts CSV.
    """
    out = parse_list(value, float, what, example)
    if out is None:
        return None
    if n is not None and len(out) != n:
        raise BadInputError(f"bad {what}: expected {n} numbers, got {len(out)} ({value!r})", f"e.g. {example}")
    if not all(np.isfinite(out)):
        raise BadInputError(f"bad {what}: {value!r} has a non-finite number", f"e.g. {example}")
    return out


def parse_at(text: str, n: int, what: str, example: str) -> tuple[tuple[float, ...], int | None]:
    """``"x0,y0,x1,y1@5"`` -> ((x0, y0, x1, y1), 5); without ``@`` the frame is None."""
    body, _, frame = str(text).strip().partition("@")
    numbers = parse_numbers(body, n, what, example)
    if numbers is None:
        raise BadInputError(f"bad {what}: empty", f"e.g. {example}")
    return numbers, (parse_frame(frame, what) if frame.strip() else None)


def parse_frame(value: Any, what: str = "frame") -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not np.isfinite(f) or f != int(f) or f < 0:
        raise BadInputError(f"bad frame for {what}: {value!r}", "frames are source frame numbers from 0, e.g. @12")
    return int(f)


def check_box(box: Sequence[float], what: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise BadInputError(f"bad {what} {x0:g},{y0:g},{x1:g},{y1:g}: x1 must exceed x0 and y1 exceed y0",
                            "a box is x0,y0,x1,y1: top-left then bottom-right corner")
    return x0, y0, x1, y1


def detect_prompt_params(*, object_box: str | None = None, object_point: str | None = None,
                         object_frame: Any = None, hand_boxes: Sequence[str] = (), hand_frame: Any = None
                         ) -> dict[str, Any]:
    """01_detect parameters from the text forms (flags or CSV cells); only what was given."""
    out: dict[str, Any] = {}
    frame = parse_frame(object_frame, "--object-frame")
    if object_box and object_point:
        raise BadInputError("give an object box or an object point, not both", "drop one of them")
    for key, text, n, example in (("object_box", object_box, 4, "120,40,230,190@5"),
                                  ("object_point", object_point, 2, "175,110@5")):
        if text:
            numbers, at = parse_at(text, n, key.replace("_", " "), example)
            out[key] = list(check_box(numbers, "object box") if n == 4 else numbers)
            frame = at if at is not None else frame
    if frame is not None:
        out["object_frame"] = frame
    default_hand_frame = parse_frame(hand_frame, "--hand-frame")
    boxes = [b for b in hand_boxes if b and str(b).strip()]
    if len(boxes) > MAX_HAND_PROMPTS:
        raise BadInputError(f"{len(boxes)} hand boxes given; at most {MAX_HAND_PROMPTS} (one per hand)",
                            "give one box per hand, each on a frame where the hand is in view")
    entries = []
    for text in boxes:
        numbers, at = parse_at(text, 4, "hand box", "10,20,80,120@5")
        entries.append([*check_box(numbers, "hand box"), at if at is not None else default_hand_frame])
    if entries:
        out["hand_boxes"] = entries
    return out


def parse_hand_boxes(value: Any) -> list[tuple[tuple[float, float, float, float], int | None]]:
    """01_detect's ``hand_boxes`` parameter -> [(box, source frame or None)].

    Accepts the stored form (lists ``[x0, y0, x1, y1, frame]``, frame may be null) and the text
    form ``"x0,y0,x1,y1@F;x0,y0,x1,y1@F"`` (``--set detect.hand_boxes=...``).
    """
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not len(value)):
        return []
    if isinstance(value, str):
        items = detect_prompt_params(hand_boxes=value.split(";")).get("hand_boxes", [])
    else:
        items = list(value)
        if items and not isinstance(items[0], (list, tuple)):  # one flat entry
            items = [items]
    out = []
    for item in items:
        if len(item) not in (4, 5):
            raise BadInputError(f"bad hand box {item!r}: expected x0,y0,x1,y1 and a frame", "e.g. 10,20,80,120@5")
        box = check_box(parse_numbers(list(item[:4]), 4, "hand box"), "hand box")
        out.append((box, parse_frame(item[4], "hand box") if len(item) == 5 else None))
    if len(out) > MAX_HAND_PROMPTS:
        raise BadInputError(f"{len(out)} hand boxes given; at most {MAX_HAND_PROMPTS}", "one box per hand")
    return out


# ---------------------------------------------------------------- source -> working
@dataclass(frozen=True)
class PromptFrame:
    """Maps source pixels and source frame numbers to working ones, from 00_frames' meta."""

    scale_x: float
    scale_y: float
    source_indices: tuple[int, ...]
    source_size: tuple[int, int]
    working_size: tuple[int, int]

    @classmethod
    def from_meta(cls, meta: dict) -> PromptFrame:
        W, H = int(meta["width"]), int(meta["height"])
        src = meta.get("source") or {}
        sw, sh = int(src.get("width") or W), int(src.get("height") or H)  # runs without a source record
        n = int(meta.get("n_frames") or len(meta.get("timestamps", [])))
        indices = tuple(int(i) for i in meta.get("source_frame_indices") or range(n))
        return cls(W / sw, H / sh, indices, (sw, sh), (W, H))

    def box(self, box: Sequence[float], what: str = "box") -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in box)
        sw, sh = self.source_size
        if x1 <= 0 or y1 <= 0 or x0 >= sw or y0 >= sh:
            raise BadInputError(f"{what} {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {sw}x{sh} source frame",
                                "prompts are in source-video pixels (what a player shows), x0,y0,x1,y1")
        return np.array([x0 * self.scale_x, y0 * self.scale_y, x1 * self.scale_x, y1 * self.scale_y])

    def point(self, point: Sequence[float], what: str = "point") -> np.ndarray:
        x, y = (float(v) for v in point)
        sw, sh = self.source_size
        if not (0 <= x < sw and 0 <= y < sh):
            raise BadInputError(f"{what} {x:g},{y:g} lies outside the {sw}x{sh} source frame",
                                "prompts are in source-video pixels (what a player shows), x,y")
        return np.array([x * self.scale_x, y * self.scale_y])

    def frame(self, source_frame: int | None, what: str = "prompt") -> tuple[int, str | None]:
        """(working frame index, a note where the source frame was not kept and the nearest is used)."""
        if source_frame is None:
            return 0, None
        idx = np.asarray(self.source_indices)
        lo, hi = int(idx[0]), int(idx[-1])
        step = int(np.median(np.diff(idx))) if len(idx) > 1 else 1
        if not lo - step < source_frame < hi + step:
            raise BadInputError(f"{what} frame {source_frame} is outside the processed source frames {lo}..{hi}",
                                "frames are source frame numbers from 0; check --start/--end")
        i = int(np.argmin(np.abs(idx - source_frame)))
        note = None if idx[i] == source_frame else (
            f"{what} frame {source_frame} was not kept (stride); using the nearest kept source frame {int(idx[i])}")
        return i, note


# ---------------------------------------------------------------- the prompts CSV
def read_prompts_csv(path: str | Path) -> list[tuple[int, str, dict[str, Any]]]:
    """Rows of a prompts CSV as (line number, clip, 01_detect parameters)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"prompts file not found: {path}", "pass a CSV with a header: " + ",".join(CSV_COLUMNS))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if "clip" not in header or unknown:
            what = f"unknown column(s) {', '.join(unknown)}" if unknown else "no 'clip' column"
            raise BadInputError(f"prompts file {path}: {what}", "columns: " + ",".join(CSV_COLUMNS))
        rows = []
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
            if not any(row.values()):
                continue
            line = reader.line_num
            clip = row.get("clip", "")
            if not clip:
                raise BadInputError(f"prompts file {path} line {line}: empty clip", "name the clip (run id or file)")
            try:
                params = detect_prompt_params(
                    object_box=row.get("object_box") or None, object_point=row.get("object_point") or None,
                    object_frame=row.get("object_frame"), hand_boxes=(row.get("hand_boxes") or "").split(";"),
                    hand_frame=row.get("hand_frame"))
            except BadInputError as exc:
                raise BadInputError(f"prompts file {path} line {line} ({clip}): {exc.message}", exc.hint) from None
            rows.append((line, clip, params))
    return rows


def prompts_for_clips(path: str | Path, clips: Sequence[Path], run_ids: Sequence[str]) -> dict[str, dict]:
    """Match a prompts CSV's rows to the clips of a command: ``{run_id: 01_detect parameters}``.

    A row's ``clip`` matches a clip's run id, file or folder name, stem, or path (as given, or
    relative to the CSV's folder).
    """
    keys: dict[str, set[str]] = {}
    for clip, rid in zip(clips, run_ids):
        names = {rid, clip.name, clip.stem, str(clip), str(clip.resolve())}
        for name in names:
            keys.setdefault(name, set()).add(rid)
    out: dict[str, dict] = {}
    base = Path(path).resolve().parent
    for line, clip, params in read_prompts_csv(path):
        match = keys.get(clip) or keys.get(str((base / clip).resolve())) or set()
        if len(match) != 1:
            what = "matches several clips: " + ", ".join(sorted(match)) if match else "is not among the clips given"
            raise BadInputError(f"prompts file {path} line {line}: clip {clip!r} {what}",
                                "name a clip by its run id (see `hoi status`), file name or path")
        rid = match.pop()
        if rid in out:
            raise BadInputError(f"prompts file {path} line {line}: a second row for clip {rid}",
                                "give each clip one row (hand_boxes holds both hands, separated by ;)")
        out[rid] = params
    return out
