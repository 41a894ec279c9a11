"""01_detect: hands (keypoints, world landmarks, handedness, boxes) and one object box per frame.

Reads ``00_frames`` only. Writes:

``detections.npz`` (the artifact contract of DESIGN.md; float32 unless noted):
    ``hand_keypoints (T,2,21,3)`` x, y px + score; ``hand_world (T,2,21,3)`` metres;
    ``hand_score (T,2)``; ``hand_interpolated (T,2)`` bool; ``hand_boxes (T,2,4)`` tight xyxy;
    ``hand_boxes_square (T,2,4)`` Re-HOLD's fixed-size squares; ``object_boxes (T,4)``;
    ``object_score (T,)``. Slot 0 = person's left hand, 1 = right; missing = NaN.
    Optional (auto object mode only; absent in runs before VERSION 6): ``object_seed`` a coarse
    object mask per frame, bool ``(T,H,W)`` bit-packed along the last axis
    (`hoi_cli.conventions.pack_masks`) with ``object_seed_shape``; `load_detections` unpacks it.
``preview.mp4``: keypoints, skeletons, boxes, squares and the object box drawn.

See `hoi_cli.detect.hands` and `hoi_cli.detect.objects` for the methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError, NoHandsError
from .base import StageContext

NAME = "01_detect"
VERSION = "7"  # 7: hands followed into lost frames (box-only tracks, issue 12); 4: seed search for clips with no first detection; 5: auto object boxes from segment candidates;
# 6: object_seed (the auto object's coarse mask, for 03_segment)
DEPENDS_ON: tuple[str, ...] = ("00_frames",)

CONTRACT_KEYS = ("hand_keypoints", "hand_world", "hand_score", "hand_interpolated", "hand_boxes",
                 "hand_boxes_square", "object_boxes", "object_score")


@dataclass
class Params:
    square_size: float = 0.0  # Re-HOLD square hand box side, px; 0 = auto (1.2 x median hand size)
    object_box: tuple | None = None  # prompt: x0,y0,x1,y1 on object_frame
    object_point: tuple | None = None  # prompt: x,y on object_frame (grown into a box)
    object_frame: int = 0
    object_auto: bool = True  # with no prompt, propose the held object near the hands
    object_method: str = "segments"  # auto proposals: segments (clip-level, ~50 fps) | grabcut (~300 fps, poorer)
    min_detection_confidence: float = 0.5  # MediaPipe palm detection threshold
    min_presence: float = 0.5  # hand presence needed for a crop re-detection
    redetect: bool = True  # crop re-detection around neighbouring frames' hands
    tiles: bool = False  # extra multi-scale tile pass (more recall, more false hands, slower)
    palm_seed: bool = False  # seed hands from MediaPipe's palm detector on upscaled tiles (opt-in)
    left_hand_on_image_left: bool = True  # slot tie-break for equal handedness votes (egocentric view)
    max_gap: int = 3  # interpolate gaps of at most this many frames (flagged)
    model_complexity: int = 1
    preview: bool = True


def _parse_tuple(value, n: int, what: str):
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise BadInputError(f"bad {what}: {value!r}", f"give {n} numbers separated by commas") from None
    if len(out) != n:
        raise BadInputError(f"bad {what}: expected {n} numbers, got {len(out)}", f"give {n} numbers separated by commas")
    return out


def detect(frames: np.ndarray, p: Params, progress=None, clip_name: str = "clip") -> tuple[dict, dict]:
    """Run hand and object detection on frames; returns (arrays, summary)."""
    from ..detect.hands import HandDetectorConfig, detect_hands
    from ..detect.objects import ObjectConfig, detect_objects

    if p.object_method not in ("segments", "grabcut"):
        raise BadInputError(f"unknown 01_detect object_method {p.object_method!r}", "use segments or grabcut")
    passes = ("forward", "backward", "static") + (("tiles",) if p.tiles else ())
    cfg = HandDetectorConfig(min_detection_confidence=p.min_detection_confidence, min_presence=p.min_presence,
                             redetect=p.redetect, max_gap=p.max_gap, model_complexity=p.model_complexity,
                             square_size=p.square_size, full_frame_passes=passes, rescore=p.tiles,
                             palm_seed=p.palm_seed, left_hand_on_image_left=p.left_hand_on_image_left)
    T = len(frames)
    hands = detect_hands(frames, cfg, progress=progress)
    found = np.isfinite(hands["hand_score"])
    if not found.any():
        raise NoHandsError(f"no hand found in {T} frames of {clip_name}",
                           hint="check the clip shows hands; try --set detect.tiles=true or a lower "
                                "detect.min_detection_confidence")
    box = _parse_tuple(p.object_box, 4, "object_box")
    point = _parse_tuple(p.object_point, 2, "object_point")
    if (box is not None or point is not None) and not 0 <= int(p.object_frame) < T:
        raise BadInputError(f"object_frame {p.object_frame} is outside the clip (0..{T - 1})",
                            "pick a frame index of the working frames")
    obj = detect_objects(frames, hands, ObjectConfig(object_box=box, object_point=point,
                                                     object_frame=int(p.object_frame), auto=p.object_auto,
                                                     method=p.object_method))
    arrays = {k: hands[k] for k in CONTRACT_KEYS if k in hands}
    arrays["object_boxes"] = obj["object_boxes"].astype(np.float32)
    arrays["object_score"] = obj["object_score"].astype(np.float32)
    for k in CONTRACT_KEYS:
        arrays[k] = arrays[k].astype(bool if k == "hand_interpolated" else np.float32)
    if "object_seed" in obj:
        from ..conventions import pack_masks

        arrays["object_seed"], arrays["object_seed_shape"] = pack_masks(obj["object_seed"])
    real = found & ~hands["hand_interpolated"]
    summary = {
        "n_frames": int(T),
        "frames_with_hand": int(found.any(axis=1).sum()),
        "frames_with_hand_per_slot": {"left": int(found[:, 0].sum()), "right": int(found[:, 1].sum())},
        "detected_per_slot": {"left": int(real[:, 0].sum()), "right": int(real[:, 1].sum())},
        "interpolated": int(hands["hand_interpolated"].sum()),
        "square_size": float(hands["square_size"]),
        "object_mode": obj["object_mode"],
        "frames_with_object": int(np.isfinite(arrays["object_boxes"]).all(axis=1).sum()),
    }
    return arrays, summary


def run(ctx: StageContext) -> dict:
    from .frames import load_frames, load_meta

    ctx.input_dir("00_frames")
    p: Params = ctx.params
    meta = load_meta(ctx.run_dir)
    frames = load_frames(ctx.run_dir)
    arrays, summary = detect(frames, p, progress=ctx.progress, clip_name=ctx.run_dir.name)
    np.savez_compressed(ctx.out_dir / "detections.npz", **arrays)
    if p.preview:
        from ..detect.draw import write_preview

        write_preview(ctx.out_dir / "preview.mp4", frames, arrays, float(meta.get("fps") or 12.0))
    ctx.log(f"01_detect: hands in {summary['frames_with_hand']}/{summary['n_frames']} frames, "
            f"object mode {summary['object_mode']}")
    return summary


def load_detections(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The arrays of ``01_detect/detections.npz`` (contract keys; ``object_seed`` unpacked to
    bool ``(T,H,W)`` where present)."""
    path = Path(run_dir) / NAME / "detections.npz"
    if not path.exists():
        raise BadInputError(f"no detections in {run_dir} ({path} missing)", "run `hoi preprocess` through 01_detect")
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    if "object_seed" in out and "object_seed_shape" in out:
        from ..conventions import unpack_masks

        out["object_seed"] = unpack_masks(out["object_seed"], out.pop("object_seed_shape"))
    return out
