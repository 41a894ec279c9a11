"""03_segment: an object mask and a hand mask per frame.

Inputs: 00_frames (pixels), 01_detect (object box per frame, hand keypoints and boxes),
02_hands (fitted hand meshes, rendered to silhouettes).

Outputs:
    ``masks.npz``   ``object``, ``hand``: bool ``(T, H, W)`` masks bit-packed along the last
                    axis (`hoi_cli.conventions.pack_masks`); ``shape`` = (T, H, W). Read them
                    with `load_masks`. Since VERSION 6 also ``object_boxes`` float32 ``(T, 4)``:
                    the object mask's tight xyxy box per frame (NaN where the mask is empty;
                    `load_object_boxes`). With a prompt these follow the object far better than
                    01_detect's tracked box (see bench/measure_objects.py), and 06_layout can
                    take them (``object_box_from = "mask"``). Since VERSION 8, with a prompt,
                    frames where the mask was lost take 01_detect's tracked box when the track
                    agreed with the mask where the loss began (`boxes_through_losses`);
                    ``object_box_source`` uint8 ``(T,)`` says which: 1 mask, 2 track, 0 none.
                    Since VERSION 9, with a box prompt, the boxes keep the margins the user's
                    box had around the mask on the prompt frame (``prompt_box_margins``; where
                    the cut there filled the box, ``prompt_anchor`` cut or box).
    ``preview.mp4`` the frames with the object (green) and hand (red) masks and the object box.

Prompted object (01_detect ran with ``object_box`` / ``object_point``; its record, `object_prompt`): with the
GrabCut backend the object's mask is cut out on the prompt frame and propagated through the clip in
both directions by dense optical flow, refined by GrabCut around the warped mask, the hand kept
out, and found again by its colour after it was lost (`hoi_cli.segment.propagate`;
``prompt_propagate``). 01_detect's tracked boxes are then not used past the prompt frame: they
keep the prompt's shape while the object turns, and the mask gives tighter boxes.

Backends (``backend``):
    ``grabcut`` (default, no weights): GrabCut on a small ROI around the object box of 01_detect
        (missing boxes interpolated across short gaps), with the hand mask as sure background,
        seeded by the previous frame's mask and colour models and anchored on 01_detect's coarse
        object mask (``object_seed``, where present: its core is sure object); a frame whose mask
        collapses (``grabcut.collapse_frac`` of its box) is rerun afresh, then filled from the nearest good
        frame (``grabcut.collapse_fill``); then a temporal majority vote; see `hoi_cli.segment.grabcut`.
    ``sam``: segment-anything from a local checkpoint (``sam_checkpoint``, or ``sam_vit_b``/
        ``sam_vit_h`` in the weights dir), prompted by the object box with negative points on
        the hand keypoints inside it; see `hoi_cli.segment.sam`.
    ``sam2``: SAM 2 video masks from a local checkpoint (``sam2_checkpoint``, or
        ``sam2.1_hiera_{large,base_plus,small,tiny}.pt`` in the weights dir; the ``sam2`` extra):
        the object prompted once (the user's 01_detect prompt or its first automatic key box), each
        hand on its most confident detections, all propagated both ways through the clip in chunks;
        ``masks.npz`` also holds ``hand_boxes_from_masks (T,2,4)``, the hand tracks' boxes (they
        cover frames where MediaPipe lost a hand); see `hoi_cli.segment.sam2_video`.

Hand mask: the union of the two fitted meshes' silhouettes (02_hands, frames where the fit is
valid) and a mask drawn from the 01_detect keypoints (``hand_keypoints``), refined against the
image (skin colour model learnt from the clip + GrabCut in a band around the outline;
`hoi_cli.segment.hand`). The object's GrabCut takes the refined mesh silhouette alone (the
keypoint mask where there is no fit) as background. With ``backend = "sam"`` and ``sam_hands``, SAM segments
the hands from their boxes and keypoints instead. Object pixels are removed from the hand mask
(the object occludes the fingers behind it).
"""

from __future__ import annotations

import time
from dataclasses import field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ..conventions import pack_masks, unpack_masks
from ..errors import BadInputError
from ..params import typed
from ..segment.grabcut import GrabCutParams
from .base import StageContext, resolve_device
from . import detect as detect_stage, frames as frames_stage, hands as hands_stage

NAME = "03_segment"
VERSION = "12"  # 3: 01_detect's object_seed anchors the object's GrabCut; 4: growth past cut box sides;
# 5: collapsed masks rerun afresh, then filled from the nearest good frame; 6: a prompted object's mask is
# propagated by optical flow; masks.npz gains object_boxes
# 7: a prompt whose cut misses its box is anchored on a sharper frame or the box; a lost object is found near a hand
# 8: a prompted object's box goes on through the mask's losses by the box track (object_box_source)
# 9: a box-prompted object's boxes keep the prompt box's margins around the mask (prompt_box_margins)
# 10: a weak anchor (a smeared prompt frame under the fingers) is redone from a clearer frame (`clearer_anchor`); a
# lost object is searched for against the whole anchor frame's colours, where it was last seen moved with the scene,
# and near the hands only if it was near one when lost; margins only from a cut that fills the box
# 11: a prompted mask loses at most 1 - 1/1.05 (~5%) of its warped area to GrabCut a frame, unless what is dropped looks like
# the surroundings (`max_area_drop`); a lost object is not found again in a look-alike that was beside it
# 12: hand masks: the skin model has 2 brightness bins and drops pixels below skin probability 0.35 (was 0.2); a
# prompted object takes the hand mask's pixels in its colours (`hand_object_prob`); no box anchor on a smeared frame
DEPENDS_ON: tuple[str, ...] = (frames_stage.NAME, detect_stage.NAME, hands_stage.NAME)


def _pipeline_grabcut() -> GrabCutParams:
    # 03_segment crops GrabCut's ROI larger and iterates less than GrabCutParams' own defaults
    # (112 px, 3), the values its object-mask figures in the README were measured with
    return GrabCutParams(max_side=200, iterations=2)


@typed
class Params:
    backend: Literal["grabcut", "sam", "sam2"] = "grabcut"
    """The segmenter: grabcut (weight-free), sam (segment-anything, a local checkpoint) or sam2
    (SAM 2 video masks, the sam2 extra and a local checkpoint)."""
    sam_checkpoint: str = ""
    """sam backend: path to a segment-anything checkpoint; "" = look in the weights dir."""
    sam_model_type: Literal["auto", "vit_b", "vit_l", "vit_h"] = "auto"
    """sam backend: the model size; auto = read from the checkpoint."""
    sam_hands: bool = False
    """sam backend: segment the hands with SAM too (else mesh + refinement)."""
    sam2_checkpoint: str = ""
    """sam2 backend: a SAM 2 checkpoint; "" = sam2.1_hiera_{large,base_plus,small,tiny}.pt in the weights dir."""
    sam2_config: str = ""
    """sam2 backend: the sam2 package's config, e.g. configs/sam2.1/sam2.1_hiera_t.yaml; "" = from the file name."""
    sam2_overrides: str = ""
    """sam2 backend: extra Hydra overrides for the model, space-separated."""
    sam2_hands: bool = True
    """sam2 backend: track the hands with SAM 2 too (else mesh + refinement)."""
    sam2_hand_prompts: int = 3
    """sam2 backend: prompt frames per hand per chunk (its most confident detections)."""
    sam2_chunk: int = 100
    """sam2 backend: frames per SAM 2 session, so memory stays flat on long clips."""
    grabcut: GrabCutParams = field(default_factory=_pipeline_grabcut)
    """grabcut backend: GrabCut's settings (`hoi_cli.segment.grabcut.GrabCutParams`); set one as
    segment.grabcut.NAME=VALUE, or segment.NAME=VALUE."""
    min_object_score: float = 0.0
    """grabcut backend: ignore 01_detect object boxes scored below this."""
    max_box_gap: int = 6
    """grabcut backend: interpolate missing object boxes across gaps of at most this many frames."""
    object_seed: bool = True
    """grabcut backend: anchor GrabCut on 01_detect's coarse object mask (``object_seed``) where there
    is one: its core is sure object (see grabcut.seed_sure_frac)."""
    prompt_propagate: bool = True
    """A prompted object (01_detect's object_box / object_point): propagate its mask from the prompt
    frame with optical flow (`hoi_cli.segment.propagate`) instead of cutting it out of 01_detect's
    tracked box in every frame."""
    prompt_box_margins: bool = True
    """A box prompt, with prompt_propagate: the object boxes keep the margins the user's box had around
    the mask's box on the prompt frame (`boxes_in_prompt_convention`): a box as the user draws it,
    reaching behind the fingers, not the visible mask's tight box. The masks are unchanged."""
    refine_hands: bool = True
    """Hand mask: refine the mesh silhouette against the image (skin colour + GrabCut in a band)."""
    hand_keypoints: bool = True
    """Hand mask: add the 01_detect keypoint mask to the mesh silhouette in every frame."""
    hand_band_px: int = 6
    """Hand mask: the refined outline stays within this many px of the mesh's."""
    preview: bool = True
    """Write preview.mp4 (the frames with the masks and the object box)."""

    # renamed when the GrabCut settings moved into `grabcut` (manifests and scripts may use it)
    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {"propagate": ("grabcut.use_prior", "grabcut.reuse_models")}


def model_files(params: Params, weights_dir=None) -> dict[str, Path]:
    if params.backend == "sam2":
        from ..segment.sam2_video import checkpoint_path

        return {"sam2": checkpoint_path(params.sam2_checkpoint, weights_dir)}
    if params.backend != "sam":
        return {}
    return {"sam": sam_checkpoint_path(params, weights_dir)}


def sam_checkpoint_path(params: Params, weights_dir=None) -> Path:
    from ..model_files import KNOWN_WEIGHTS
    from ..weights import find_weights

    names = "|".join(KNOWN_WEIGHTS[k][0] for k in ("sam_vit_b", "sam_vit_h"))
    return find_weights(names, what="segment-anything (03_segment --set segment.backend=sam)",
                        explicit=params.sam_checkpoint or None, weights_dir=weights_dir,
                        hint="run `hoi weights get sam_vit_b`, pass --set segment.sam_checkpoint=PATH, "
                             "or use the weight-free default --set segment.backend=grabcut")


# ---------------------------------------------------------------- hand silhouettes
def mesh_masks(mano: dict, T: int, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Union of the valid hand meshes' silhouettes ``(T, H, W)`` and which frames had one ``(T,)``."""
    from ..render.raster import mesh_mask

    out = np.zeros((T, H, W), bool)
    have = np.zeros(T, bool)
    verts, faces, K = mano["vertices"], mano["faces"], mano["K"]
    valid = mano.get("valid", np.ones(verts.shape[:2], bool))
    for t in range(min(T, len(verts))):
        for h in range(verts.shape[1]):
            if valid[t, h] and np.all(np.isfinite(verts[t, h])):
                out[t] |= mesh_mask(verts[t, h], faces, K, H, W)
                have[t] = True
    return out, have


def hand_masks_from_inputs(frames: np.ndarray, det: dict, mano: dict | None, p: Params,
                           with_object_bg: bool = False):
    """Hand masks ``(T, H, W)``; with ``with_object_bg`` also the part of them that is sure
    background for the object's GrabCut (see below): ``(hand, object_bg)``."""
    from ..segment.hand import HandRefineParams, keypoint_hand_mask, refine_hand_masks

    T, H, W = frames.shape[:3]
    if mano is not None:
        mesh, have = mesh_masks(mano, T, H, W)
    else:
        mesh, have = np.zeros((T, H, W), bool), np.zeros(T, bool)
    kps = det.get("hand_keypoints")
    kp = np.zeros((T, H, W), bool)
    if kps is not None:
        for t in range(T):
            if p.hand_keypoints or not have[t]:
                kp[t] = keypoint_hand_mask(kps[t], H, W)
    coarse = np.where(have[:, None, None], mesh, kp)  # the mesh; the keypoints where it is missing
    hp = HandRefineParams(band_px=p.hand_band_px)
    base = refine_hand_masks(frames, coarse, hp) if p.refine_hands else coarse
    hand = base
    if p.hand_keypoints and (kp & ~coarse).any():
        # The output hand mask also refines the union of the mesh silhouette and the 2-D
        # keypoint mask: the fitted mesh is often a few pixels off or too thin, the keypoints
        # are the direct image evidence, and the refinement trims the union to the skin. On
        # InterDyn this raises hand IoU from 0.53 to 0.64 (mean of 12 clips).
        hand = refine_hand_masks(frames, coarse | kp, hp) if p.refine_hands else coarse | kp
    if not with_object_bg:
        return hand
    # Sure background for the object: the mesh-only mask. The keypoint mask's thick bones also
    # cover fingers hidden behind the object and the object between the fingers; as sure
    # background they cut the object (ball clip 208810: oracle object IoU 0.70 -> 0.05).
    object_bg = base
    return hand, object_bg


def object_boxes_from_detections(det: dict, p: Params) -> np.ndarray:
    from ..segment.grabcut import fill_missing_boxes

    boxes = np.array(det["object_boxes"], np.float64)
    score = det.get("object_score")
    if score is not None and p.min_object_score > 0:
        boxes[~(np.nan_to_num(score, nan=0.0) >= p.min_object_score)] = np.nan
    return fill_missing_boxes(boxes, p.max_box_gap)


def object_prompt(det: dict) -> dict | None:
    """The user's object prompt to 01_detect, ``{"box", "point", "frame"}`` in working px and
    frames, or None in automatic mode: its one record, ``det.prompts`` of the detections its loader
    returns (`hoi_cli.stages.detect.Detections`). Hand-made detections without a record (tests,
    benches) are read by what 01_detect writes for a prompt (`hoi_cli.detect.objects`): an
    ``object_score`` of 1.0 on the prompt frame and only there."""
    prompts = getattr(det, "prompts", None)
    if prompts is not None:
        return prompts.get("object") or None
    score = det.get("object_score")
    boxes = det.get("object_boxes")
    if score is None or boxes is None:
        return None
    hit = np.flatnonzero((np.nan_to_num(np.asarray(score, np.float64)) >= 1.0)
                         & np.isfinite(np.asarray(boxes, np.float64)).all(axis=1))
    return {"box": np.asarray(boxes, np.float64)[hit[0]].tolist(), "point": None, "frame": int(hit[0])} \
        if len(hit) == 1 else None


def prompt_frame(det: dict) -> int | None:
    """The frame of the user's object prompt (`object_prompt`) where 01_detect has its box there, else None."""
    prompt = object_prompt(det)
    boxes = det.get("object_boxes")
    if prompt is None or boxes is None or not len(boxes):
        return None
    f = int(np.clip(int(prompt.get("frame") or 0), 0, len(boxes) - 1))
    return f if np.isfinite(np.asarray(boxes[f], np.float64)).all() else None


def _sam2_prompt(det: dict) -> dict:
    """`object_prompt` in the keys `hoi_cli.segment.sam2_video.object_prompt` takes; {} without one."""
    prompt = object_prompt(det)
    if prompt is None:
        return {}
    return {"object_box": prompt.get("box"), "object_point": prompt.get("point"),
            "object_frame": prompt.get("frame", 0)}


def segment_clip(frames: np.ndarray, det: dict, mano: dict | None, p: Params, *, sam_model=None,
                 progress=None, propagate_params=None, device: str = "cpu") -> dict:
    """The stage's work on arrays: ``{"object": (T,H,W) bool, "hand": (T,H,W) bool, "boxes": (T,4),
    "object_boxes": (T,4)}`` (``boxes``: the boxes the object was segmented in; ``object_boxes``: the
    object mask's tight box per frame, NaN where empty; with a prompt, carried through the mask's
    losses by the box track, `hoi_cli.segment.propagate.boxes_through_losses`, whose per-frame source
    is ``arrays["object_box_source"]``). ``det``: 01_detect's detections, with
    their prompt record (`object_prompt`). ``propagate_params``: a
    `hoi_cli.segment.propagate.PropagateParams` for a prompted object (default: its defaults)."""
    from ..segment.grabcut import segment_sequence
    from ..segment.propagate import boxes_from_masks, boxes_in_prompt_convention, boxes_through_losses

    boxes = object_boxes_from_detections(det, p)
    extra: dict = {}
    if p.backend == "sam2" and sam_model is not None:
        from ..segment.sam2_video import segment_video_sam2

        res = segment_video_sam2(sam_model, frames, det, detect_params=_sam2_prompt(det), object_boxes=boxes,
                                 hands=p.sam2_hands, hand_prompts_per_chunk=p.sam2_hand_prompts,
                                 chunk=p.sam2_chunk, device=device, progress=progress)
        obj = res["object"]
        hand = res["hand"] if res["hand"] is not None else hand_masks_from_inputs(frames, det, mano, p)
        extra = {"arrays": {"hand_boxes_from_masks": res["hand_boxes_from_masks"]},
                 "summary": {"sam2_prompts": res["prompts"], "sam2_hand_frames_filled": res["hand_frames_filled"],
                             "sam2_frames_tracked": res["frames_tracked"]}}
    elif p.backend == "sam" and sam_model is not None:
        from ..segment.sam import SamSegmenter, segment_hands_sam, segment_object_sam

        seg = SamSegmenter(sam_model)
        if p.sam_hands and "hand_boxes" in det:
            hand = segment_hands_sam(seg, frames, det["hand_boxes"], det["hand_keypoints"])
        else:
            hand = hand_masks_from_inputs(frames, det, mano, p)
        obj = segment_object_sam(seg, frames, boxes, det.get("hand_keypoints"), hand_masks=hand, progress=progress)
    elif p.prompt_propagate and prompt_frame(det) is not None:
        from ..segment.propagate import propagate_masks

        hand, hand_bg = hand_masks_from_inputs(frames, det, mano, p, with_object_bg=True)
        f = prompt_frame(det)
        obj, info = propagate_masks(frames, boxes[f], f, hand_masks=hand_bg, soft_hand_masks=hand,
                                    params=propagate_params, track_boxes=boxes, progress=progress)
        size = (frames.shape[2], frames.shape[1])
        object_boxes = mask_boxes = boxes_from_masks(obj)
        prompt = object_prompt(det) or {}
        # the margins are measured where the user's box and a cut that fills it (or the box itself) meet:
        # not from a cut on another frame, nor from a weak cut that fills little of the box
        if p.prompt_box_margins and prompt.get("box") is not None and info.get("anchor") in ("cut", "box") \
                and info.get("anchor_frame", f) == f:
            object_boxes = boxes_in_prompt_convention(object_boxes, boxes[f], f, image_size=size)
        object_boxes, source = boxes_through_losses(object_boxes, boxes, info.get("anchor_frame", f),
                                                    image_size=size)
        boxes = mask_boxes
        extra = {"object_boxes": object_boxes, "arrays": {"object_box_source": source},
                 "summary": {"object_boxes_from_track": int((source == 2).sum()),
                             # how the prompt was anchored: cut, near, box, weak or later (`propagate_masks`)
                             "prompt_anchor": info.get("anchor"), "prompt_anchor_frame": info.get("anchor_frame")}}
    else:
        hand, hand_bg = hand_masks_from_inputs(frames, det, mano, p, with_object_bg=True)
        seeds = det.get("object_seed") if p.object_seed else None
        if seeds is not None and seeds.shape != frames.shape[:3]:
            seeds = None  # from frames of another size
        obj = segment_sequence(frames, boxes, hand_masks=hand_bg if p.grabcut.hand_erode_px >= 0 else None,
                               params=p.grabcut,
                               progress=progress, seeds=seeds)
    hand = hand & ~obj
    object_boxes = extra.pop("object_boxes", None)
    if object_boxes is None:
        object_boxes = boxes_from_masks(obj)
    return {"object": obj, "hand": hand, "boxes": boxes.astype(np.float32), "object_boxes": object_boxes, **extra}


def run(ctx: StageContext) -> dict:
    from ..segment.grabcut import flicker

    p: Params = ctx.params
    source = ctx.read(frames_stage)
    frames, meta = source.load(), source.meta
    det = ctx.read(detect_stage)  # with its prompt record (`object_prompt`)
    has_fits = ctx.path(hands_stage, hands_stage.MANO_FILE).exists()  # a fake 02_hands in tests may write none
    mano = ctx.read(hands_stage) if has_fits else None
    sam_model = None
    if p.backend == "sam":
        from ..segment.sam import load_sam

        sam_model = load_sam(sam_checkpoint_path(p, ctx.weights_dir), p.sam_model_type,
                             resolve_device(ctx.device))
    sam2_model = None
    if p.backend == "sam2":
        from ..segment.sam2_video import checkpoint_path, describe_model, load_predictor

        ckpt = checkpoint_path(p.sam2_checkpoint, ctx.weights_dir)
        sam_model = load_predictor(ckpt, p.sam2_config, p.sam2_overrides, resolve_device(ctx.device))
        sam2_model = describe_model(ckpt, p.sam2_config, p.sam2_overrides)  # config and overrides, for the manifest
        ctx.log(f"03_segment: SAM 2 {sam2_model['config']} from {ckpt}")
    started = time.perf_counter()
    res = segment_clip(frames, det, mano, p, sam_model=sam_model, progress=ctx.progress,
                       device=str(getattr(sam_model, "device", "cpu")))
    seconds = time.perf_counter() - started
    save_masks(ctx.out_dir / "masks.npz", res["object"], res["hand"], res["object_boxes"], **res.get("arrays", {}))
    if p.preview:
        write_preview(ctx.out_dir / "preview.mp4", frames, res["object"], res["hand"], res["object_boxes"],
                      meta.get("fps") or 12.0)
    T = len(frames)
    return {
        "backend": p.backend,
        "n_frames": T,
        "frames_with_object": int(res["object"].reshape(T, -1).any(1).sum()),
        "frames_with_hand": int(res["hand"].reshape(T, -1).any(1).sum()),
        "object_area_frac": round(float(res["object"].mean()), 5),
        "hand_area_frac": round(float(res["hand"].mean()), 5),
        "object_flicker": round(flicker(res["object"]), 4),
        "frames_per_s": round(T / max(seconds, 1e-6), 2),
        **res.get("summary", {}),
        **({"sam2_model": sam2_model} if sam2_model else {}),
    }


def save_masks(path: Path, obj: np.ndarray, hand: np.ndarray, object_boxes: np.ndarray | None = None,
               **extra: np.ndarray) -> None:
    """``extra``: backend-specific arrays next to the contract keys (sam2: ``hand_boxes_from_masks``)."""
    po, shape = pack_masks(obj)
    ph, shape_h = pack_masks(hand)
    assert tuple(shape) == tuple(shape_h)
    if object_boxes is not None:
        extra["object_boxes"] = np.asarray(object_boxes, np.float32)
    np.savez_compressed(path, object=po, hand=ph, shape=shape, **extra)


def overlay(frame: np.ndarray, obj: np.ndarray, hand: np.ndarray, box=None) -> np.ndarray:
    import cv2

    f = frame.astype(np.float32)
    f[obj] = 0.5 * f[obj] + 0.5 * np.array([0, 255, 0], np.float32)
    f[hand] = 0.5 * f[hand] + 0.5 * np.array([255, 0, 0], np.float32)
    out = f.astype(np.uint8)
    if box is not None and np.all(np.isfinite(box)):
        b = np.round(np.asarray(box)).astype(int)
        cv2.rectangle(out, (b[0], b[1]), (b[2] - 1, b[3] - 1), (255, 255, 0), 1)
    return out


def write_preview(path: Path, frames: np.ndarray, obj: np.ndarray, hand: np.ndarray, boxes, fps: float) -> None:
    from ..video import write_video

    write_video(path, (overlay(frames[t], obj[t], hand[t], None if boxes is None else boxes[t])
                       for t in range(len(frames))), fps, crf=20)


def load_object_boxes(run_dir: str | Path) -> np.ndarray | None:
    """The object's box per frame ``(T, 4)`` from ``03_segment/masks.npz``: its mask's tight box (NaN
    where the mask is empty), with a prompt carried through the mask's losses by the box track since
    VERSION 8, and with a box prompt in the prompt box's margins around the mask since VERSION 9;
    computed from the masks for runs made before VERSION 6; None without masks."""
    path = Path(run_dir) / NAME / "masks.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if "object_boxes" in z.files:
            return np.asarray(z["object_boxes"], np.float32)
    from ..segment.propagate import boxes_from_masks

    return boxes_from_masks(load_masks(run_dir)["object"])


def load_masks(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``{"object": (T,H,W) bool, "hand": (T,H,W) bool}`` from ``03_segment/masks.npz``."""
    path = Path(run_dir) / NAME / "masks.npz"
    if not path.exists():
        raise BadInputError(f"no masks in {run_dir} ({path} missing)", "run `hoi preprocess` through 03_segment")
    with np.load(path, allow_pickle=False) as z:
        shape = z["shape"]
        return {"object": unpack_masks(z["object"], shape), "hand": unpack_masks(z["hand"], shape)}


def load(run_dir: str | Path, what: str = "masks"):
    """The stage's loader (`StageContext.read`): ``what`` = "masks" (`load_masks`) or "object_boxes"
    (`load_object_boxes`)."""
    if what == "object_boxes":
        boxes = load_object_boxes(run_dir)
        if boxes is None:
            raise BadInputError(f"no masks in {run_dir}", "run `hoi preprocess` through 03_segment")
        return boxes
    if what != "masks":
        raise ValueError(f"03_segment has no output {what!r}")
    return load_masks(run_dir)
