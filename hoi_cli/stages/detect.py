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

import json
from dataclasses import field
from pathlib import Path
from typing import Literal

import numpy as np

from ..detect.hands import HandDetectorConfig
from ..detect.objects import ObjectConfig
from ..errors import BadInputError
from ..params import config_from, typed
from ..prompts import PromptFrame, parse_hand_boxes, parse_numbers
from .base import StageContext
from . import frames as frames_stage

NAME = "01_detect"
VERSION = "10"  # 4: seed search for clips with no first detection; 5: auto object boxes from segment candidates;
# 6: object_seed (the auto object's coarse mask, for 03_segment); 7: no abort without hands (warnings),
# hand prompts, prompts in source pixels, hand_box_only; 8: hands followed into lost frames (box-only tracks)
# 9: two prompted hands followed together (exclusive identities); no box-only follow from a weak static anchor
# 10: auto object boxes and seeds take the object's other parts (adjacent regions moving with it)
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME,)

CONTRACT_KEYS = ("hand_keypoints", "hand_world", "hand_score", "hand_interpolated", "hand_boxes",
                 "hand_boxes_square", "object_boxes", "object_score")


@typed
class Params:
    square_size: float = HandDetectorConfig.square_size
    """Re-HOLD square hand box side, px; 0 = auto (1.2 x the median hand size)."""
    object_box: tuple[float, float, float, float] | None = None
    """Object prompt: x0,y0,x1,y1 on object_frame, in source-video px (--object-box)."""
    object_point: tuple[float, float] | None = None
    """Object prompt: x,y on object_frame (grown into a box), in source-video px (--object-point)."""
    object_frame: int | None = None
    """Source frame number of the object prompt; None = the first processed frame."""
    hand_boxes: list | str = field(default_factory=list)
    """Hand prompts: [x0, y0, x1, y1, source frame or None] each, at most 2 (--hand-box), or the text
    form x0,y0,x1,y1@F;x0,y0,x1,y1@F."""
    warn_below: float = 0.5
    """Warn when hands are found in fewer than this fraction of the frames."""
    object_auto: bool = ObjectConfig.auto
    """With no prompt, propose the held object near the hands."""
    object_method: Literal["segments", "grabcut"] = ObjectConfig.method
    """Automatic object proposals: segments (clip-level, ~50 fps) or grabcut (~300 fps, poorer)."""
    min_detection_confidence: float = HandDetectorConfig.min_detection_confidence
    """MediaPipe palm detection threshold of the full-frame passes."""
    min_presence: float = HandDetectorConfig.min_presence
    """Landmark-model hand presence needed to accept a crop re-detection."""
    redetect: bool = HandDetectorConfig.redetect
    """Crop re-detection around neighbouring frames' hands."""
    tiles: bool = False
    """An extra multi-scale tile pass (more recall, more false hands, slower); also re-scores every
    full-frame detection with the landmark model."""
    palm_seed: bool = HandDetectorConfig.palm_seed
    """Seed hands from MediaPipe's palm detector on upscaled tiles (opt-in: adds false hands on InterDyn)."""
    left_hand_on_image_left: bool = HandDetectorConfig.left_hand_on_image_left
    """Slot tie-break for equal handedness votes: the left hand is on the image's left (egocentric view)."""
    max_gap: int = HandDetectorConfig.max_gap
    """Interpolate gaps of at most this many frames inside a hand track (flagged hand_interpolated)."""
    model_complexity: Literal[0, 1] = HandDetectorConfig.model_complexity
    """MediaPipe landmark model: 0 = lite, 1 = full."""
    preview: bool = True
    """Write preview.mp4 (keypoints, boxes, squares and the object box drawn)."""


def hand_config(p: Params):
    """01_detect's `HandDetectorConfig`: the fields it shares with ``p`` (same names, defaults taken
    from the config), plus the tile pass."""
    passes = ("forward", "backward", "static") + (("tiles",) if p.tiles else ())
    return config_from(HandDetectorConfig, p, full_frame_passes=passes, rescore=p.tiles)


def detect(frames: np.ndarray, p: Params, progress=None, clip_name: str = "clip",
           meta: dict | None = None) -> tuple[dict, dict]:
    """Run hand and object detection on frames; returns (arrays, summary).

    ``meta`` is 00_frames' meta, which maps the prompts from source to working pixels (without
    it, prompts are taken as working pixels and frames)."""
    from ..detect.hands import detect_hands
    from ..detect.objects import detect_objects

    T, H, W = frames.shape[:3]
    mapping = PromptFrame.from_meta(meta or {"width": W, "height": H, "n_frames": T})
    notes: list[str] = []
    prompts = _working_prompts(p, mapping, notes)
    cfg = hand_config(p)
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
    p: Params = ctx.params
    source = ctx.read(frames_stage)
    meta = source.meta
    frames = source.load()
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


class Detections(dict):
    """The arrays of ``detections.npz`` (a dict), and ``prompts``: the one record of the user's
    prompts as this stage used them, in working pixels and working frame indices (its
    manifest's ``summary.prompts_working``: ``{"object": {"box", "point", "frame"}, "hands":
    [...]}``, each only where given; {} in automatic mode)."""

    def __init__(self, arrays: dict, prompts: dict | None = None):
        super().__init__(arrays)
        self.prompts = dict(prompts or {})

    @property
    def object_prompt(self) -> dict | None:
        """``{"box", "point", "frame"}`` of the user's object prompt, or None without one."""
        return self.prompts.get("object") or None


def load_prompts(run_dir: str | Path) -> dict:
    """The prompt record of a run's 01_detect (`Detections.prompts`); {} without a manifest or prompt."""
    try:
        manifest = json.loads((Path(run_dir) / NAME / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict((manifest.get("summary") or {}).get("prompts_working") or {})


def load_detections(run_dir: str | Path) -> Detections:
    """The arrays of ``01_detect/detections.npz`` (contract keys; ``object_seed`` unpacked to
    bool ``(T,H,W)`` where present; ``hand_box_only`` all False for runs made before it existed),
    with the prompt record (`Detections.prompts`)."""
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
    return Detections(out, load_prompts(run_dir))


load = load_detections  # the stage's loader (`StageContext.read`)
