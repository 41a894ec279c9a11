"""07_genhoi: GenHOI's conditioning videos (object-mask video, object-removed video, reference image).

GenHOI conditions on the object mask video, the video with the object removed, and a
reference image of the object. This stage makes them from 00_frames and 03_segment:

    ``object_mask.mp4``     the object mask, white on black
    ``object_removed.mp4``  the frames with the object region (`hoi_cli.inpaint.removal_regions`:
                            the mask dilated by ``dilate_px``, holes filled, less the hands,
                            completed where the detector missed one)
                            filled from other frames where the background shows there, by
                            `hoi_cli.inpaint.remove_object` (see its docs); the hands are kept
    ``reference.png``       the object crop (box of the mask grown by ``reference_pad``) of the
                            frame where the object mask is largest, object pixels only
                            (others set to white)
    ``genhoi.npz``          ``reference_frame ()``, ``reference_box (4,)`` xyxy px, and
                            ``removed_fraction (T,)`` the share of pixels replaced per frame;
                            ``removed_mask`` (bit-packed, with ``shape`` (T,H,W)) and
                            ``removed_fill (N,3)`` uint8: the exact removal, read back with
                            `load_object_removed` (the mp4 is lossy; generation reuses this)

The lossless masks stay in 03_segment (this stage does not copy them).
Read with `load_genhoi(run_dir)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..conventions import pack_masks, unpack_masks
from ..errors import BadInputError
from ..params import typed
from .base import StageContext
from . import frames as frames_stage, segment as segment_stage

NAME = "07_genhoi"
VERSION = "10"  # 4: removal mask with holes filled, less the hands, missed hands carried over; 5: grown by colour
# 6: the colour growth does not run out of an image edge the object does not reach; the hands' missed rim is kept
# 7: a fill that equals the object's own pixel (a source frame showing the object there) is rejected, inpainted
# 8: fill sources in the object's or the hands' colours (pieces their masks missed) are not background; a camera
#    homography counts only where it aligns the background better than no motion; the colour growth's background
#    model is the whole clip away from the masks, not a ring around them
# 9: the margin around the object keeps the background its frame shows (a fill equal to the frame is rejected on
#    the object only); a sighting from a frame that disagrees with the target around the hole is not taken
# 10: the hands' missed rim is kept inside the object mask too (a finger lying on the object); a missed hand is
#     carried over from a frame up to 8 away (was 4)
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME, segment_stage.NAME)


@typed
class Params:
    dilate_px: int = 5
    """Grow the object mask before removal (covers soft edges and shadows' rims)."""
    reference_pad: float = 0.1
    """Grow the reference crop by this fraction of its size."""
    crf: int = 18
    """x264 quality of the written videos (lower = better, larger)."""


def object_removal(frames: np.ndarray, object_masks: np.ndarray, hand_masks: np.ndarray | None,
                   dilate_px: int) -> tuple[np.ndarray, np.ndarray]:
    """``(object-removed frames, removed mask)``: what this stage stores and `hoi generate` reuses."""
    from ..inpaint import removal_regions, remove_object

    regions = removal_regions(frames, object_masks, hand_masks, dilate_px)
    # the hands are kept, and never used as background: they move with the object
    out = remove_object(frames, regions.remove, keep_masks=regions.keep, object_masks=regions.object)
    return np.asarray(out), regions.remove


def run(ctx: StageContext) -> dict:
    from ..conventions import box_from_mask
    from ..video import write_image, write_video

    p: Params = ctx.params
    source = ctx.read(frames_stage)
    meta = source.meta
    fps = float(meta.get("fps") or 10.0)
    frames = source.load()
    masks = ctx.read(segment_stage)
    obj = np.asarray(masks["object"], bool)
    if obj.shape != frames.shape[:3]:
        raise BadInputError(f"object masks {obj.shape} do not match the frames {frames.shape[:3]}", "rerun 03_segment")
    hands = np.asarray(masks["hand"], bool) if "hand" in masks else None
    removed, remove = object_removal(frames, obj, hands, p.dilate_px)
    write_video(ctx.out_dir / "object_mask.mp4", [np.repeat(m[..., None], 3, -1).astype(np.uint8) * 255 for m in obj],
                fps, crf=p.crf)
    write_video(ctx.out_dir / "object_removed.mp4", list(removed), fps, crf=p.crf)
    areas = obj.reshape(len(obj), -1).sum(1)
    t_ref = int(np.argmax(areas))
    box = box_from_mask(obj[t_ref])
    if np.isfinite(box).all():
        H, W = obj.shape[1:]
        pw, ph = (box[2] - box[0]) * p.reference_pad, (box[3] - box[1]) * p.reference_pad
        x0, y0 = int(max(0, box[0] - pw)), int(max(0, box[1] - ph))
        x1, y1 = int(min(W, np.ceil(box[2] + pw))), int(min(H, np.ceil(box[3] + ph)))
        crop = frames[t_ref, y0:y1, x0:x1].copy()
        crop[~obj[t_ref, y0:y1, x0:x1]] = 255
        write_image(ctx.out_dir / "reference.png", crop)
        ref_box = np.array([x0, y0, x1, y1], np.float32)
    else:
        ref_box = np.full(4, np.nan, np.float32)
    frac = remove.reshape(len(remove), -1).mean(1).astype(np.float32)
    packed, shape = pack_masks(remove)
    # exact removal (mask + filled values), so `hoi generate` reuses it instead of recomputing
    np.savez(ctx.out_dir / "genhoi.npz", reference_frame=np.int64(t_ref), reference_box=ref_box, removed_fraction=frac,
             removed_mask=packed, shape=shape, removed_fill=removed[remove])
    return {"n_frames": len(frames), "reference_frame": t_ref, "mean_removed_fraction": round(float(frac.mean()), 5)}


def load_object_removed(run_dir: str | Path, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(background frames, removed mask (T,H,W), dilate_px)`` from the stored removal, or None.

    ``frames`` are the run's 00_frames; the removed pixels get their stored fill, exactly.
    None where 07_genhoi has not run or predates the stored fill.
    """
    d = Path(run_dir) / NAME
    if not (d / "manifest.json").exists():
        return None
    with np.load(d / "genhoi.npz", allow_pickle=False) as z:
        if "removed_fill" not in z.files:
            return None
        mask = unpack_masks(z["removed_mask"], z["shape"])
        fill = z["removed_fill"]
    if mask.shape != frames.shape[:3]:
        return None
    background = frames.copy()
    background[mask] = fill
    dilate_px = json.loads((d / "manifest.json").read_text())["params"]["dilate_px"]
    return background, mask, int(dilate_px)


def load(run_dir: str | Path, frames: np.ndarray | None = None) -> dict:
    """The stage's loader (`StageContext.read`): `load_genhoi`'s paths and arrays; given the run's
    ``frames``, also ``object_removed``, `load_object_removed`'s exact removal (or None)."""
    out = load_genhoi(run_dir)
    if frames is not None:
        out["object_removed"] = load_object_removed(run_dir, frames)
    return out


def load_genhoi(run_dir: str | Path) -> dict:
    """Paths of the videos and the reference image, plus the arrays of genhoi.npz."""
    d = Path(run_dir) / NAME
    if not (d / "genhoi.npz").exists():
        raise BadInputError(f"no GenHOI outputs in {run_dir}", "run 07_genhoi first (--pipeline genhoi)")
    with np.load(d / "genhoi.npz", allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out.update(object_mask_video=d / "object_mask.mp4", object_removed_video=d / "object_removed.mp4",
               reference_image=d / "reference.png" if (d / "reference.png").exists() else None)
    return out
