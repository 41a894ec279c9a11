"""06_layout: Re-HOLD's layout maps (two fixed-size square hand boxes and one object box per frame).

Channels, in this order: [left hand, right hand, object] (`CHANNELS`). A pixel is inside a
box when its centre lies in it: pixel (row i, column j), centre (j + 0.5, i + 0.5), is on in
the map of box [x0, y0, x1, y1] iff x0 <= j + 0.5 < x1 and y0 <= i + 0.5 < y1; so an integer
box [10, 20, 30, 40] sets columns 10..29 and rows 20..39 exactly. A missing (NaN) box gives an
empty channel. Boxes are clipped to the image.

Hand boxes are 01_detect's ``hand_boxes_square`` (Re-HOLD's fixed-size squares); the object
box is 03_segment's object box (``object_box_from = "mask"``, the default: its object mask's
box; with a box prompt, in the prompt box's margins, and with a prompt carried through the mask's
losses by the box track: `hoi_cli.stages.segment.load_object_boxes`), so the stage depends on 03_segment
(`depends_on`): the pipeline runs it first and a rerun of it makes this stage stale. With
``object_box_from = "detect"`` it is 01_detect's ``object_boxes`` (the rehold recipe, which
runs no 03_segment).

Outputs (``06_layout/``):
    ``layout.npz``  ``layout (T,3,H,W) uint8`` with 0 / 255 (channels-first, ready for a conv
                    encoder: divide by 255), ``boxes (T,3,4) float32`` the boxes drawn
                    (xyxy px at the working resolution), ``channels`` the names;
                    at ``size`` > 0 the maps are drawn at ``size x size`` px instead, the boxes
                    scaled to it (``boxes`` stay in working-resolution pixels)
    ``layout.mp4``  the maps as RGB (R left, G right, B object), for viewing
Read with `load_layout(run_dir)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import BadInputError
from ..params import typed
from .base import StageContext
from . import detect as detect_stage, frames as frames_stage, segment as segment_stage

NAME = "06_layout"
VERSION = "2"  # 2: in mask mode, 03_segment's object boxes (kept through mask losses with a prompt)
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME, detect_stage.NAME)  # plus 03_segment with object_box_from = "mask"
CHANNELS = ("left_hand", "right_hand", "object")


@typed
class Params:
    object_box_from: Literal["detect", "mask"] = "mask"
    """Where the object box comes from: mask (03_segment's object box: its mask's box, with a box prompt
    in the prompt's margins) or detect (01_detect's object_boxes: no 03_segment needed). Box IoU, mask /
    detect (bench/measure_objects.py; detect = 01_detect's boxes themselves): prompted, tuning / validation
    InterDyn 0.913 / 0.637, 0.892 / 0.727, something_else 0.743 / 0.625; automatic, tuning 0.788 / 0.698,
    validation 0.767 / 0.655 (03_segment 11; with 03_segment 12 the mask's prompted figures are 0.911, 0.882
    and 0.762)."""
    size: int = 0
    """Map size: 0 = the working resolution, else square maps of size x size px."""
    write_video: bool = True
    """Write the layout video next to the arrays."""


def depends_on(p: Params) -> tuple[str, ...]:
    """The stages read with ``p``: the mask mode reads 03_segment's masks, so it is stale when they change."""
    return DEPENDS_ON + ((segment_stage.NAME,) if p.object_box_from == "mask" else ())


def box_pixels(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """(c0, r0, c1, r1), half-open column/row ranges of the pixels whose centres the box contains."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0 = int(np.clip(np.ceil(x0 - 0.5), 0, width))
    c1 = int(np.clip(np.ceil(x1 - 0.5), 0, width))
    r0 = int(np.clip(np.ceil(y0 - 0.5), 0, height))
    r1 = int(np.clip(np.ceil(y1 - 0.5), 0, height))
    return c0, r0, max(c0, c1), max(r0, r1)


def draw_layout(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``boxes (T,C,4)`` -> ``(T,C,H,W)`` uint8 0/255 maps."""
    boxes = np.asarray(boxes, np.float64)
    out = np.zeros((*boxes.shape[:2], height, width), np.uint8)
    for t in range(boxes.shape[0]):
        for c in range(boxes.shape[1]):
            if not np.isfinite(boxes[t, c]).all():
                continue
            c0, r0, c1, r1 = box_pixels(boxes[t, c], height, width)
            out[t, c, r0:r1, c0:c1] = 255
    return out


def run(ctx: StageContext) -> dict:
    p: Params = ctx.params
    if p.object_box_from not in ("detect", "mask"):
        raise BadInputError(f"unknown object_box_from {p.object_box_from!r}", "use detect or mask")
    meta = ctx.read(frames_stage).meta
    T, H, W = int(meta["n_frames"]), int(meta["height"]), int(meta["width"])
    det = ctx.read(detect_stage)
    hand_sq = np.asarray(det["hand_boxes_square"], np.float32)
    obj = np.asarray(det["object_boxes"], np.float32)
    if p.object_box_from == "mask":
        obj = np.asarray(ctx.read(segment_stage, what="object_boxes"), np.float32)
    if hand_sq.shape[0] != T or obj.shape[0] != T:
        raise BadInputError(f"01_detect has {hand_sq.shape[0]} frames, 00_frames {T}", "rerun 01_detect")
    boxes = np.concatenate([hand_sq, obj[:, None]], axis=1).astype(np.float32)  # (T,3,4)
    if p.size > 0:
        scale = np.array([p.size / W, p.size / H, p.size / W, p.size / H], np.float32)
        maps = draw_layout(boxes * scale, p.size, p.size)
    else:
        maps = draw_layout(boxes, H, W)
    np.savez_compressed(ctx.out_dir / "layout.npz", layout=maps, boxes=boxes, channels=np.array(CHANNELS))
    if p.write_video:
        from ..video import write_video

        write_video(ctx.out_dir / "layout.mp4", [np.moveaxis(m, 0, -1) for m in maps], float(meta.get("fps") or 10.0))
    present = np.isfinite(boxes).all(-1).sum(0)
    return {"n_frames": T, "frames_with_box": {c: int(n) for c, n in zip(CHANNELS, present)},
            "size": list(maps.shape[-2:])}


def load_layout(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``layout (T,3,H,W) uint8`` 0/255 in CHANNELS order, ``boxes (T,3,4) float32``."""
    path = Path(run_dir) / NAME / "layout.npz"
    if not path.exists():
        raise BadInputError(f"no layout maps in {run_dir}", "run 06_layout first (--pipeline rehold)")
    with np.load(path, allow_pickle=False) as z:
        return {"layout": z["layout"], "boxes": z["boxes"]}


load = load_layout  # the stage's loader (`StageContext.read`)
