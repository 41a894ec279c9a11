"""01_detect: hands (keypoints, world landmarks, handedness, boxes) and one object box per frame.

Reads ``00_frames`` only. Writes:

``detections.npz`` (the artifact contract of DESIGN.md; float32 unless noted):
    ``hand_keypoints (T,2,21,3)`` x, y px + score; ``hand_world (T,2,21,3)`` metres;
    ``hand_score (T,2)``; ``hand_interpolated (T,2)`` bool; ``hand_boxes (T,2,4)`` tight xyxy;
    ``hand_boxes_square (T,2,4)`` Re-HOLD's fixed-size squares; ``object_boxes (T,4)``;
    ``object_score (T,)``. Slot 0 = person's left hand, 1 = right; missing = NaN.
    ``hand_box_only (T,2)`` bool: the hand has a box (tight and square) and a score but no
    keypoints or world landmarks (NaN there), e.g. a prompted hand followed where the landmark
    model does not find it (absent in runs before VERSION 7: read it as all False).
    Optional (auto object mode only; absent in runs before VERSION 6): ``object_seed`` a coarse
    object mask per frame, bool ``(T,H,W)`` bit-packed along the last axis
    (`hoi_cli.conventions.pack_masks`) with ``object_seed_shape``; `load_detections` unpacks it.
``preview.mp4``: keypoints, skeletons, boxes, squares and the object box drawn.

A clip on which no hand is found is not an error: the arrays say so (NaN), the preview shows
the frames, and the summary carries ``warnings`` (e.g. "hands found in 0 of 48 frames") when
hands are found in fewer than ``warn_below`` of the frames; ``hoi preprocess --strict`` turns a
warning into an error (exit 3).

Prompts (``object_box``, ``object_point``, ``object_frame``, ``hand_boxes``) are in SOURCE video
pixels and source frame numbers (`hoi_cli.prompts`); they are converted to working pixels here,
with 00_frames' meta, and the summary records the converted values (``prompts_working``).

See `hoi_cli.detect.hands` and `hoi_cli.detect.objects` for the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..prompts import PromptFrame, parse_hand_boxes, parse_numbers
from .base import StageContext

NAME = "01_detect"
VERSION = "9"  # 4: seed search for clips with no first detection; 5: auto object boxes from segment candidates;
# 6: object_seed (the auto object's coarse mask, for 03_segment); 7: no abort without hands (warnings),
# hand prompts, prompts in source pixels, hand_box_only; 8: hands followed into lost frames (box-only tracks)
# 9: two prompted hands followed together (exclusive identities); no box-only follow from a weak static anchor
DEPENDS_ON: tuple[str, ...] = ("00_frames",)

CONTRACT_KEYS = ("hand_keypoints", "hand_world", "hand_score", "hand_interpolated", "hand_boxes",
                 "hand_boxes_square", "object_boxes", "object_score")


@dataclass
class Params:
    square_size: float = 0.0  # Re-HOLD square hand box side, px; 0 = auto (1.2 x median hand size)
    object_box: tuple | None = None  # prompt: x0,y0,x1,y1 on object_frame, source-video px
    object_point: tuple | None = None  # prompt: x,y on object_frame (grown into a box), source-video px
    object_frame: int | None = None  # source frame number of the object prompt; None = first processed frame
    hand_boxes: list = field(default_factory=list)  # prompts: [x0, y0, x1, y1, source frame or None], at most 2
    warn_below: float = 0.5  # warn when hands are found in fewer than this fraction of the frames
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


def detect(frames: np.ndarray, p: Params, progress=None, clip_name: str = "clip",
           meta: dict | None = None) -> tuple[dict, dict]:
    """Run hand and object detection on frames; returns (arrays, summary).

    ``meta`` is 00_frames' meta, which maps the prompts from source to working pixels (without
    it, prompts are taken as working pixels and frames)."""
    from ..detect.hands import HandDetectorConfig, detect_hands
    from ..detect.objects import ObjectConfig, detect_objects

    if p.object_method not in ("segments", "grabcut"):
        raise BadInputError(f"unknown 01_detect object_method {p.object_method!r}", "use segments or grabcut")
    T, H, W = frames.shape[:3]
    mapping = PromptFrame.from_meta(meta or {"width": W, "height": H, "n_frames": T})
    notes: list[str] = []
    prompts = _working_prompts(p, mapping, notes)
    passes = ("forward", "backward", "static") + (("tiles",) if p.tiles else ())
    cfg = HandDetectorConfig(min_detection_confidence=p.min_detection_confidence, min_presence=p.min_presence,
                             redetect=p.redetect, max_gap=p.max_gap, model_complexity=p.model_complexity,
                             square_size=p.square_size, full_frame_passes=passes, rescore=p.tiles,
                             palm_seed=p.palm_seed, left_hand_on_image_left=p.left_hand_on_image_left)
    extra = {"hand_prompts": prompts["hands"]} if prompts["hands"] else {}  # older detectors lack the argument
    hands = detect_hands(frames, cfg, progress=progress, **extra)
    found = np.isfinite(hands["hand_score"])
    box_only = np.asarray(hands.get("hand_box_only", np.zeros((T, 2), bool)), bool) & found
    obj = detect_objects(frames, hands, ObjectConfig(object_box=prompts["object_box"],
                                                     object_point=prompts["object_point"],
                                                     object_frame=prompts["object_frame"], auto=p.object_auto,
                                                     method=p.object_method))
    arrays = {k: hands[k] for k in CONTRACT_KEYS if k in hands}
    arrays["object_boxes"] = obj["object_boxes"].astype(np.float32)
    arrays["object_score"] = obj["object_score"].astype(np.float32)
    for k in CONTRACT_KEYS:
        arrays[k] = arrays[k].astype(bool if k == "hand_interpolated" else np.float32)
    arrays["hand_box_only"] = box_only
    if "object_seed" in obj:
        from ..conventions import pack_masks

        arrays["object_seed"], arrays["object_seed_shape"] = pack_masks(obj["object_seed"])
    real = found & ~hands["hand_interpolated"]
    n_hand = int(found.any(axis=1).sum())
    with_keypoints = found & ~box_only
    warnings = []
    if n_hand < p.warn_below * T or n_hand == 0:
        warnings.append(f"hands found in {n_hand} of {T} frames"
                        + ("; hand outputs are marked invalid (prompt a hand with --hand-box)" if n_hand == 0 else ""))
    summary = {
        "n_frames": int(T),
        "frames_with_hand": n_hand,
        "frames_with_hand_per_slot": {"left": int(found[:, 0].sum()), "right": int(found[:, 1].sum())},
        "detected_per_slot": {"left": int(real[:, 0].sum()), "right": int(real[:, 1].sum())},
        "hand_boxes_with_keypoints": int(with_keypoints.sum()),
        "hand_boxes_box_only": int(box_only.sum()),
        "interpolated": int(hands["hand_interpolated"].sum()),
        "square_size": float(hands["square_size"]) if np.isfinite(hands["square_size"]) else None,
        "object_mode": obj["object_mode"],
        "frames_with_object": int(np.isfinite(arrays["object_boxes"]).all(axis=1).sum()),
        "prompts_working": prompts["record"],
        "warnings": warnings,
    }
    if notes:
        summary["notes"] = notes
    return arrays, summary


def _working_prompts(p: Params, mapping: PromptFrame, notes: list[str]) -> dict:
    """The prompts of ``p`` (source px, source frames) in working px and working frame indices."""
    box = parse_numbers(p.object_box, 4, "object_box")
    point = parse_numbers(p.object_point, 2, "object_point", example="175,110")
    out: dict = {"object_box": None, "object_point": None, "object_frame": 0, "hands": [], "record": {}}
    if box is not None or point is not None:
        frame, note = mapping.frame(None if p.object_frame is None else int(p.object_frame), "object prompt")
        notes += [note] if note else []
        out["object_frame"] = frame
        if box is not None:
            out["object_box"] = tuple(float(v) for v in mapping.box(box, "object box"))
        if point is not None:
            out["object_point"] = tuple(float(v) for v in mapping.point(point, "object point"))
        out["record"]["object"] = {"box": out["object_box"], "point": out["object_point"], "frame": frame}
    for i, (hbox, hframe) in enumerate(parse_hand_boxes(p.hand_boxes)):
        frame, note = mapping.frame(hframe, f"hand box {i + 1}")
        notes += [note] if note else []
        out["hands"].append((frame, tuple(float(v) for v in mapping.box(hbox, f"hand box {i + 1}"))))
    if out["hands"]:
        out["record"]["hands"] = [{"box": list(b), "frame": f} for f, b in out["hands"]]
    return out


def run(ctx: StageContext) -> dict:
    from .frames import load_frames, load_meta

    ctx.input_dir("00_frames")
    p: Params = ctx.params
    meta = load_meta(ctx.run_dir)
    frames = load_frames(ctx.run_dir)
    arrays, summary = detect(frames, p, progress=ctx.progress, clip_name=ctx.run_dir.name, meta=meta)
    np.savez_compressed(ctx.out_dir / "detections.npz", **arrays)
    if p.preview:
        from ..detect.draw import write_preview

        write_preview(ctx.out_dir / "preview.mp4", frames, arrays, float(meta.get("fps") or 12.0))
    ctx.log(f"01_detect: hands in {summary['frames_with_hand']}/{summary['n_frames']} frames, "
            f"object mode {summary['object_mode']}")
    for warning in summary["warnings"]:
        ctx.log(f"01_detect: warning: {warning}")
    return summary


def load_detections(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The arrays of ``01_detect/detections.npz`` (contract keys; ``object_seed`` unpacked to
    bool ``(T,H,W)`` where present; ``hand_box_only`` all False for runs made before it existed)."""
    path = Path(run_dir) / NAME / "detections.npz"
    if not path.exists():
        raise BadInputError(f"no detections in {run_dir} ({path} missing)", "run `hoi preprocess` through 01_detect")
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    if "hand_box_only" not in out and "hand_score" in out:
        out["hand_box_only"] = np.zeros(out["hand_score"].shape, bool)
    if "object_seed" in out and "object_seed_shape" in out:
        from ..conventions import unpack_masks

        out["object_seed"] = unpack_masks(out["object_seed"], out.pop("object_seed_shape"))
    return out
