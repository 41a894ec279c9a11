"""The conditions of the HOI video models, built from run folders: one module that training
(`hoi_cli.train.dataset`, `hoi_cli.models.wan.dataset`) and sampling (`hoi_cli.generate.diffusion`,
`hoi_cli.models.wan.cli`) both import.

The condition dict (a training batch after default collation; ``B`` = batch, ``T`` = frames, ``H x W`` pixels,
``L = 13`` MLO layers in `hoi_cli.conventions.MLO_LAYERS` order):

====================  ===================  =====================================================
key                   shape                meaning (source)
====================  ===================  =====================================================
``video``             (B, T, 3, H, W)      RGB in [-1, 1] (00_frames)
``reference``         (B, 3, H, W)         object crop in [-1, 1], white background outside its mask
``reference_valid``   (B,) bool            False when no frame had an object box/mask (ref zeros)
``layout``            (B, T, 3, H, W)      [0, 1]: left-hand square box, right-hand square box,
                                           object box (06_layout; else 01_detect's boxes rasterised)
``hand_mask``         (B, T, 1, H, W)      [0, 1] (area-resized from 03_segment)
``object_mask``       (B, T, 1, H, W)      [0, 1] (03_segment)
``hand_render``       (B, T, 2, H, W)      [0, 1] hand-mesh render, Re-HOLD's structural guidance:
                                           05_silhouette's grey hand shading, split by hand
                                           (channel 0 where ``labels`` = left, 1 = right)
``structure``         (B, T, 3, H, W)      [0, 1] CoInteract's HOI structure: 05_silhouette's RGB
                                           (grey shaded hands, object in its flat colour) / 255
``mlo_normals``       (B, T, 3L, H, W)     [-1, 1] MLO normals (04_mlo), layer-major (object nx, ny,
                                           nz, left_palm nx, ny, nz, ...); 0 where a layer is absent
``mlo_occlusion``     (B, T, L, H, W)      [0, 1] occlusion confidence (04_mlo), 0 where absent
``start``             (B,) int             first frame index of the window
``source_video``      (B, T, 3, H, W)      [-1, 1], only for models with ``source_video``: 07_genhoi's
                                           object-removed video, else the frames with the hand and
                                           object masks at 0 (`source_window`)
====================  ===================  =====================================================

A stage counts as present when its ``manifest.json`` exists (DESIGN.md: the manifest is
written last). A condition whose stage is missing is all zeros; `check_required` raises
`BadInputError` up front where the model configuration requires it
(`ModelConfig.required_conditions`).

Every file is read through its stage's own loader (via `hoi_cli.stages.base.RunReader`), once per run
(`run_conditions`), and turned into float maps at the model's resolution by one ``read_*``
function per condition; nothing here parses a stage's files itself. `window_maps` cuts a
window of frames out of them (zeros for a missing condition), `reference_crop` makes the
self-reenactment reference of training, `square_reference` the cut-out reference of sampling,
and `clip_conditions` the whole clip's conditions for sampling.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .conventions import MLO_LAYERS, box_from_mask, decode_normals
from .errors import BadInputError
from .stages import detect as detect_stage
from .stages import frames as frames_stage
from .stages import genhoi as genhoi_stage
from .stages import layout as layout_stage
from .stages import mlo as mlo_stage
from .stages import segment as segment_stage
from .stages import silhouette as silhouette_stage
from .stages.base import RunReader

N_MLO = len(MLO_LAYERS)
HAND_RENDER_CHANNELS = 2  # left-hand shading, right-hand shading
STRUCTURE_CHANNELS = 3  # 05_silhouette RGB

# Which stage provides each condition (for error messages).
CONDITION_STAGES = {
    "video": frames_stage.NAME, "reference": f"{detect_stage.NAME} or {segment_stage.NAME}",
    "layout": f"{layout_stage.NAME} or {detect_stage.NAME}", "hand_mask": segment_stage.NAME,
    "object_mask": segment_stage.NAME, "hand_render": silhouette_stage.NAME, "structure": silhouette_stage.NAME,
    "mlo_normals": mlo_stage.NAME, "mlo_occlusion": mlo_stage.NAME,
}
MAP_CHANNELS = {  # the per-frame maps besides the video, in batch order: their channels
    "layout": 3, "hand_mask": 1, "object_mask": 1, "hand_render": HAND_RENDER_CHANNELS,
    "structure": STRUCTURE_CHANNELS, "mlo_normals": 3 * N_MLO, "mlo_occlusion": N_MLO,
}


def stage_done(run: Path, name: str) -> bool:
    """A stage folder is complete when its manifest exists (DESIGN.md, "The run folder")."""
    return RunReader(run).has(name)


# ------------------------------------------------------------------ readers (one per condition)
def frame_paths(run: Path) -> list[Path]:
    paths = frames_stage.load(run).paths  # listed whether or not 00_frames has its manifest yet
    if not paths:
        raise BadInputError(f"{run} has no frames in 00_frames/frames", "run `hoi preprocess` on it first")
    return paths


def read_frames(run: Path, indices: list[int] | None = None) -> np.ndarray:
    """RGB uint8 ``(T, H0, W0, 3)`` from 00_frames."""
    return frames_stage.load(run).load(indices)


def read_detections(run: Path) -> dict | None:
    """``hand_boxes_square (T,2,4)`` and ``object_boxes (T,4)`` xyxy px (NaN = missing), or None."""
    det = RunReader(run).read(detect_stage, optional=True)
    if det is None:
        return None
    return {k: np.asarray(det[k], np.float32) for k in ("hand_boxes_square", "object_boxes") if k in det}


def read_masks(run: Path) -> dict | None:
    """``hand``, ``object`` bool ``(T, H0, W0)`` from 03_segment, or None."""
    return RunReader(run).read(segment_stage, optional=True)


def read_layout(run: Path, hw: tuple[int, int]) -> np.ndarray | None:
    """06_layout's maps ``(T, 3, h, w)`` in [0, 1] ([left, right, object]), or None."""
    lay = RunReader(run).read(layout_stage, optional=True)
    if lay is None:
        return None
    return _resize_stack(lay["layout"].astype(np.float32) / 255.0, hw)


def read_silhouette(run: Path, hw: tuple[int, int]) -> dict | None:
    """``hand_render (T, 2, h, w)`` and ``structure (T, 3, h, w)`` in [0, 1] from 05_silhouette, or None.

    05_silhouette draws the hands grey (shaded by how much they face the camera) and the
    object over them in a flat colour, with ``labels`` 1 = left hand, 2 = right hand. The hand
    render keeps the grey of each hand in its own channel (hand pixels hidden by the object
    mask are not in 05_silhouette's output, so they are 0 here too); the structure is the RGB.
    """
    sil = RunReader(run).read(silhouette_stage, optional=True)
    if sil is None:
        return None
    rgb = sil["structure"].astype(np.float32) / 255.0  # (T, H, W, 3)
    labels = sil["labels"]
    grey = rgb[..., 0]
    render = np.stack([np.where(labels == 1, grey, 0.0), np.where(labels == 2, grey, 0.0)], 1)
    return {"hand_render": _resize_stack(render.astype(np.float32), hw),
            "structure": _resize_stack(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)), hw)}


def read_mlo(run: Path, hw: tuple[int, int], n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """MLO ``normals (T, 3L, h, w)`` in [-1, 1] and ``occlusion (T, L, h, w)`` in [0, 1], or None.

    Read frame by frame through `hoi_cli.stages.mlo.load_mlo` (a whole clip of dense 13-layer
    maps at the working resolution would not fit comfortably in memory) and resized at once.
    A pixel where a layer is absent has normal code (0, 0, 0) on disk; it becomes 0 here (not
    the -1 that decoding the code gives), and its confidence is 0.
    """
    reader = RunReader(run)
    if not reader.has(mlo_stage):
        return None
    n = len(mlo_stage.frame_files(run))
    if n_frames is not None and n != n_frames:
        raise BadInputError(f"{run.name}: 04_mlo has {n} frames, 00_frames {n_frames}", "rerun 04_mlo (hoi preprocess)")
    normals, occ = [], []
    for t in range(n):
        f = reader.read(mlo_stage, frames=[t])
        code = f["normals"][0]  # (L, H, W, 3) uint8
        if code.shape[0] != N_MLO:
            raise BadInputError(f"{run.name}: 04_mlo has {code.shape[0]} layers, expected {N_MLO}",
                                "rerun 04_mlo with this version (hoi preprocess --force 04_mlo)")
        covered = (code != 0).any(-1, keepdims=True)
        nrm = np.where(covered, decode_normals(code), 0.0).astype(np.float32)  # (L, H, W, 3)
        nrm = np.ascontiguousarray(nrm.transpose(0, 3, 1, 2)).reshape(N_MLO * 3, *code.shape[1:3])
        normals.append(_resize_stack(nrm[None], hw)[0])
        occ.append(_resize_stack(f["confidence"][0][None].astype(np.float32) / 255.0, hw)[0])
    return np.stack(normals), np.stack(occ)


def read_source_video(run: Path, frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray | None:
    """07_genhoi's object-removed video ``(T, 3, h, w)`` in [-1, 1] (the exact stored removal of the
    run's ``frames``, area-resized like ``video``), or None where 07_genhoi has not run."""
    outputs = RunReader(run).read(genhoi_stage, optional=True, frames=frames)
    removed = None if outputs is None else outputs["object_removed"]
    if removed is None:
        return None
    h, w = hw
    bg = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in removed[0]])
    return bg.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


# ------------------------------------------------------------------ helpers
def rasterize_boxes(boxes: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Binary maps ``(T, K, h, w)`` of xyxy boxes ``(T, K, 4)`` in source px (NaN -> empty)."""
    t, k = boxes.shape[:2]
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    ys = (np.arange(dst_hw[0]) + 0.5)[:, None]
    xs = (np.arange(dst_hw[1]) + 0.5)[None, :]
    out = np.zeros((t, k, *dst_hw), dtype=np.float32)
    for i in range(t):
        for j in range(k):
            b = boxes[i, j]
            if not np.isfinite(b).all():
                continue
            x0, y0, x1, y1 = b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy
            out[i, j] = ((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)).astype(np.float32)
    return out


def _resize_stack(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize ``(T, C, H0, W0)`` float maps to ``(T, C, h, w)`` (area when shrinking)."""
    t, c = a.shape[:2]
    interp = cv2.INTER_AREA if a.shape[-2] >= hw[0] else cv2.INTER_LINEAR
    flat = a.reshape(t * c, *a.shape[-2:])
    out = np.stack([cv2.resize(m, (hw[1], hw[0]), interpolation=interp) for m in flat])
    return out.reshape(t, c, *hw).astype(np.float32)


# ------------------------------------------------------------------ checks
def check_model_channels(hand_render_channels: int = HAND_RENDER_CHANNELS, structure_channels: int = STRUCTURE_CHANNELS,
                         mlo_layers: int = N_MLO) -> None:
    """Raise `BadInputError` where a model's condition channels differ from what run folders give."""
    for name, got, want in (("hand_render_channels", hand_render_channels, HAND_RENDER_CHANNELS),
                            ("structure_channels", structure_channels, STRUCTURE_CHANNELS),
                            ("mlo_layers", mlo_layers, N_MLO)):
        if got != want:
            raise BadInputError(f"the model expects {name} = {got}; the run folders give {want}",
                                "train a new model with this version's config (hoi train)")


def available_conditions(run: Path) -> set[str]:
    """The conditions whose stages have run in ``run``."""
    have = {"video"}
    det = stage_done(run, detect_stage.NAME)
    seg = stage_done(run, segment_stage.NAME)
    if det or seg:
        have.add("reference")
    if det or stage_done(run, layout_stage.NAME):
        have.add("layout")
    if seg:
        have |= {"hand_mask", "object_mask"}
    if stage_done(run, silhouette_stage.NAME):
        have |= {"hand_render", "structure"}
    if stage_done(run, mlo_stage.NAME):
        have |= {"mlo_normals", "mlo_occlusion"}
    return have


def check_required(run: Path, available: set[str], required: set[str] | frozenset) -> None:
    """Raise `BadInputError` naming the stages to run where ``run`` lacks a required condition."""
    missing = set(required) - available
    if missing:
        detail = ", ".join(f"{k} (from {CONDITION_STAGES.get(k, '?')})" for k in sorted(missing))
        raise BadInputError(f"{run.name} lacks conditions the model requires: {detail}",
                            "run those stages with `hoi preprocess`, or pick a --system that does not need them")


# ------------------------------------------------------------------ building
def run_conditions(run: Path, hw: tuple[int, int]) -> dict:
    """Every condition of one run at ``hw = (h, w)``, all frames: ``video`` and the maps present
    (keys of `MAP_CHANNELS`), plus what the reference crop reads (``n``, ``src_hw``, the full-size
    ``frames``, ``det``, ``masks_full``)."""
    frames = read_frames(run)
    n = len(frames)
    src_hw = frames.shape[1:3]
    h, w = hw
    video = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    d: dict = {"n": n, "src_hw": src_hw, "frames": frames,
               "video": video.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0}
    det = read_detections(run)
    masks = read_masks(run)
    d["det"], d["masks_full"] = det, masks

    def check(name: str, a: np.ndarray) -> np.ndarray:
        if a.shape[0] != n:
            raise BadInputError(f"{run.name}: {name} has {a.shape[0]} frames, 00_frames {n}",
                                "rerun the stages (hoi preprocess); they are out of date")
        return a

    layout = read_layout(run, hw)
    if layout is not None:
        d["layout"] = check(layout_stage.NAME, layout)
    elif det is not None and "hand_boxes_square" in det and "object_boxes" in det:
        boxes = np.concatenate([det["hand_boxes_square"], det["object_boxes"][:, None]], 1)
        d["layout"] = check(detect_stage.NAME, rasterize_boxes(boxes, src_hw, hw))
    if masks is not None:
        for k in ("hand", "object"):
            d[f"{k}_mask"] = check(segment_stage.NAME, _resize_stack(masks[k][:, None].astype(np.float32), hw))
    sil = read_silhouette(run, hw)
    if sil is not None:
        d["hand_render"] = check(silhouette_stage.NAME, sil["hand_render"])
        d["structure"] = sil["structure"]
    mlo = read_mlo(run, hw, n)
    if mlo is not None:
        d["mlo_normals"], d["mlo_occlusion"] = mlo
    return d


def with_source_video(d: dict, run: Path) -> dict:
    """`run_conditions`' ``d`` with ``source_video``: `read_source_video` (or None), read on first use."""
    if "source_video" not in d:
        d["source_video"] = read_source_video(Path(run), d["frames"], d["video"].shape[-2:])
    return d


def source_window(d: dict, window: list[int]) -> np.ndarray:
    """The source clip of ``window`` (frame indices) from `with_source_video`'s ``d``, ``(T, 3, h, w)`` in [-1, 1]:
    07_genhoi's object-removed frames, or where that stage has not run the frames with the hand-or-object
    region (masks > 0.5) at 0, as `hoi_cli.models.wan.conditions.source_video` does for a batch."""
    if d.get("source_video") is not None:
        return d["source_video"][window]
    video = d["video"][window]
    region = np.zeros((len(window), 1, *video.shape[-2:]), np.float32)
    for k in ("hand_mask", "object_mask"):
        if k in d:
            region = np.maximum(region, d[k][window])
    return video * (1.0 - (region > 0.5))


def window_maps(d: dict, window: list[int], hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The per-frame maps of ``window`` (frame indices) from `run_conditions`' ``d``, in batch order;
    zeros where the run lacks a condition."""
    h, w = hw
    return {k: d[k][window] if k in d else np.zeros((len(window), c, h, w), np.float32)
            for k, c in MAP_CHANNELS.items()}


def object_box(d: dict, i: int) -> np.ndarray | None:
    """Frame ``i``'s object box: its 03_segment mask's box, else 01_detect's box, else None."""
    if d["masks_full"] is not None and d["masks_full"]["object"][i].any():
        return box_from_mask(d["masks_full"]["object"][i])
    if d["det"] is not None:
        b = d["det"]["object_boxes"][i]
        if np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1]:
            return b
    return None


def reference_crop(d: dict, window: list[int], rng: np.random.Generator, hw: tuple[int, int],
                   margin: float) -> tuple[np.ndarray, bool]:
    """Training's reference: the clip's own object from a frame outside ``window`` where there is one
    (drawn with ``rng``), square-cropped around its box grown by ``margin``, white outside its mask;
    ``(3, h, w)`` in [-1, 1] and True, or zeros and False where no frame has an object."""
    h, w = hw
    outside = [i for i in range(d["n"]) if i not in set(window)]
    for pool in (outside, list(window)):
        cands = [i for i in pool if object_box(d, i) is not None]
        if cands:
            i = int(rng.choice(cands))
            break
    else:
        return np.zeros((3, h, w), np.float32), False
    box = object_box(d, i)
    img = d["frames"][i].astype(np.float32)
    if d["masks_full"] is not None and d["masks_full"]["object"][i].any():
        img = np.where(d["masks_full"]["object"][i][..., None], img, 255.0)
    H0, W0 = d["src_hw"]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * margin)
    x0, y0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
    s = max(2, int(np.ceil(side)))
    canvas = np.full((s, s, 3), 255.0, np.float32)  # pad outside the frame with white
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W0, x0 + s), min(H0, y0 + s)
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    crop = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return crop.transpose(2, 0, 1) / 127.5 - 1.0, True


def square_reference(ref, h: int, w: int) -> np.ndarray:
    """The cut-out reference on white, square-padded, resized to ``h x w``: ``(3, h, w)`` in [-1, 1]."""
    import cv2

    side = max(ref.rgb.shape[:2])
    canvas = np.full((side, side, 3), 255.0, np.float32)
    a = ref.alpha[..., None].astype(np.float32)
    y0, x0 = (side - ref.rgb.shape[0]) // 2, (side - ref.rgb.shape[1]) // 2
    canvas[y0:y0 + ref.rgb.shape[0], x0:x0 + ref.rgb.shape[1]] = ref.rgb * a + 255.0 * (1 - a)
    img = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return (img.transpose(2, 0, 1) / 127.5 - 1.0).astype(np.float32)


def clip_conditions(run: str | Path, hw: tuple[int, int], num_frames: int | None = None, *,
                    required: set[str] | frozenset = frozenset(), hand_render_channels: int = HAND_RENDER_CHANNELS,
                    structure_channels: int = STRUCTURE_CHANNELS, mlo_layers: int = N_MLO,
                    source_video: bool = False) -> dict:
    """Sampling's conditions: the maps of the first ``num_frames`` (default: all) frames of ``run`` at
    ``hw`` as tensors ``(T, C, h, w)`` (the keys of `MAP_CHANNELS`, zeros where a stage has not run),
    after the checks training makes (channels, frames, required conditions). The reference is the
    caller's (`square_reference`). ``source_video``: also the source clip (`source_window`)."""
    import torch

    run = Path(run)
    check_model_channels(hand_render_channels, structure_channels, mlo_layers)
    if not run.is_dir():
        raise BadInputError(f"run folder not found: {run}", "pass runs/<clip-id> folders made by `hoi preprocess`")
    n = len(frame_paths(run))
    num_frames = n if num_frames is None else num_frames
    if n < num_frames:
        raise BadInputError(f"{run} has {n} frames; a window needs {num_frames}",
                            "use fewer --frames or a smaller --frame-stride")
    check_required(run, available_conditions(run), required)
    d = run_conditions(run, hw)
    maps = window_maps(d, list(range(num_frames)), hw)
    if source_video:
        maps["source_video"] = source_window(with_source_video(d, run), list(range(num_frames)))
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in maps.items()}
