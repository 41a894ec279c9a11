"""SAM 2 video backend of 03_segment (``backend = "sam2"``): object and hand masks through a clip.

Built on the official ``sam2`` package (the ``sam2`` extra): `build_sam2_video_predictor`,
``init_state``, ``add_new_points_or_box`` / ``add_new_mask``, ``propagate_in_video`` (forward,
then ``reverse=True`` for the frames before a track's first prompt). No weights are downloaded:
the checkpoint is a local file in the official format (``{"model": state_dict}``).

Checkpoint: ``segment.sam2_checkpoint``, else the first of `LOOKUP_ORDER` found in the weights
folders (largest first). The package config comes from the file name (`config_for_checkpoint`,
e.g. ``sam2.1_hiera_tiny.pt`` -> ``configs/sam2.1/sam2.1_hiera_t.yaml``) unless
``segment.sam2_config`` names one; ``segment.sam2_overrides`` adds Hydra overrides (a model
trained with other dimensions; the tests' tiny model).

Tracks (SAM 2 object ids): `OBJECT_ID` the object, `HAND_IDS` the left and right hand slots.

- Object (`object_prompt`): the user's prompt to 01_detect (``object_box`` or ``object_point`` on
  ``object_frame``, read from its manifest), else 01_detect's box on its first automatic key frame
  (``object_score`` 0.5, the best-supported frames; the highest-scored box if there is none).
- Hands (`hand_prompts`): each slot on its ``n`` most confident MediaPipe frames (detected, not
  interpolated, at least ``min_gap`` frames apart) per chunk: 01_detect's tight hand box, positive
  points on the wrist and the four knuckles (`PALM_JOINTS`: palm points, rarely hidden behind
  the held object, unlike fingertips), negative points on the object (its box's centre and the
  four points halfway to its corners, those outside the hand's box). A slot with no detection
  gets no track (a clip where 01_detect found no hand: object only).

Long clips run in chunks of ``chunk`` frames (one SAM 2 session each, so memory stays flat)
overlapping by one frame: a track's mask on a chunk's last frame prompts the next chunk (as a
mask, ``add_new_mask``); tracks that start later are carried back chunk by chunk the same way.
Frames reach ``init_state`` as a folder (it accepts only a JPEG folder or an MP4 file): see
`_write_frames`.

The SAM 2 hand masks also cover frames where MediaPipe lost the hand; their boxes are written to
``masks.npz`` as ``hand_boxes_from_masks (T,2,4)`` (NaN where the mask is empty), since
03_segment cannot rewrite 01_detect.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conventions import box_from_mask, empty_boxes
from ..errors import BadInputError, HoiError, MissingWeightsError

# checkpoint name (file stem) -> the sam2 package's Hydra config
SAM2_CONFIGS: dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}
# looked up in the weights folders when no checkpoint is given: the most accurate one present
LOOKUP_ORDER = ("sam2.1_hiera_large", "sam2.1_hiera_base_plus", "sam2.1_hiera_small", "sam2.1_hiera_tiny")
OFFICIAL_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{name}.pt"
WHAT = "SAM 2 (03_segment --set segment.backend=sam2)"
MISSING_HINT = ("run `hoi weights get sam2.1_hiera_tiny` (or download it from "
                + OFFICIAL_URL.format(name="sam2.1_hiera_tiny") + " into the weights folder), pass "
                "--set segment.sam2_checkpoint=PATH, or use the weight-free default --set segment.backend=grabcut")
INSTALL_HINT = ('install the extra: pip install "torch>=2.5.1" && SAM2_BUILD_CUDA=0 pip install '
                '--no-build-isolation "sam2==1.1.0" (see README: SAM 2)')

OBJECT_ID = 1
HAND_IDS = (2, 3)  # hand slots 0 (left), 1 (right)
PALM_JOINTS = (0, 5, 9, 13, 17)  # wrist, index/middle/ring/pinky knuckles (OpenPose order)
KEY_SCORE = 0.5  # 01_detect's object_score on an automatic key frame (see hoi_cli.detect.objects)


# ---------------------------------------------------------------- checkpoint and model
def checkpoint_path(explicit: str | Path | None = None, weights_dir: str | Path | None = None) -> Path:
    """The SAM 2 checkpoint: ``explicit``, else the first of `LOOKUP_ORDER` in the weights folders."""
    from ..weights import weights_dirs

    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        raise MissingWeightsError(WHAT, str(path), [str(path.parent)], MISSING_HINT)
    dirs = weights_dirs(weights_dir)
    for name in LOOKUP_ORDER:
        for d in dirs:
            if (d / f"{name}.pt").is_file():
                return d / f"{name}.pt"
    names = "sam2.1_hiera_{tiny,small,base_plus,large}.pt"
    raise MissingWeightsError(WHAT, names, [str(d) for d in dirs], MISSING_HINT)


def config_for_checkpoint(path: str | Path, config: str = "") -> str:
    """The package config for a checkpoint: ``config`` if given, else from the file name."""
    if config:
        return config
    stem = Path(path).name.lower().replace("-", "_")
    for name in sorted(SAM2_CONFIGS, key=len, reverse=True):
        if name in stem:
            return SAM2_CONFIGS[name]
    raise BadInputError(f"cannot tell the SAM 2 model from the file name {Path(path).name!r}",
                        "name it like sam2.1_hiera_tiny.pt or set segment.sam2_config=configs/sam2.1/sam2.1_hiera_t.yaml")


def split_overrides(overrides: str | list | tuple) -> list[str]:
    """``segment.sam2_overrides`` (space-separated Hydra overrides) as a list."""
    if isinstance(overrides, (list, tuple)):
        return [str(o) for o in overrides]
    return [o for o in str(overrides or "").split() if o]


def load_predictor(checkpoint: str | Path, config: str = "", overrides: str | list = "", device: str = "cpu"):
    """A `SAM2VideoPredictor` with the checkpoint's weights, on ``device``, in eval mode."""
    try:
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as exc:
        raise HoiError(f"the sam2 package is not installed ({exc})", INSTALL_HINT) from None
    cfg = config_for_checkpoint(checkpoint, config)
    _check_config(cfg)
    try:
        predictor = build_sam2_video_predictor(cfg, ckpt_path=str(checkpoint), device=device,
                                               hydra_overrides_extra=split_overrides(overrides))
    except (RuntimeError, KeyError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        # the official loader raises a bare RuntimeError on missing/unexpected keys (logged)
        detail = str(exc).splitlines()[0][:160] if str(exc) else "state dict does not match the config"
        raise BadInputError(f"cannot load the SAM 2 checkpoint {checkpoint} with {cfg}: {detail}",
                            "give the matching config with --set segment.sam2_config=... (file names like "
                            "sam2.1_hiera_tiny.pt pick it), or re-download the file") from None
    if not str(device).startswith("cuda"):
        _float_memory_on_cpu(predictor)
    return predictor


def _float_memory_on_cpu(predictor) -> None:
    """The package stores each frame's memory features in bfloat16 and relies on CUDA autocast to
    mix them with float32; without autocast (the CPU) memory attention fails with "mat1 and mat2
    must have the same dtype" whenever no object pointer (float32) joins the memory, e.g. on frames
    before a track's first prompt (facebookresearch/sam2#308, open). A forward pre-hook casts the
    memory to the model's float32 at the one module that reads it; the package is untouched."""
    import torch

    def to_float(x):
        return x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x

    def hook(module, args, kwargs):
        return tuple(to_float(a) for a in args), {k: to_float(v) for k, v in kwargs.items()}

    predictor.memory_attention.register_forward_pre_hook(hook, with_kwargs=True)


def _check_config(cfg: str) -> None:
    from importlib.resources import files

    if not files("sam2").joinpath(cfg).is_file():
        raise BadInputError(f"no SAM 2 config {cfg!r} in the sam2 package",
                            "use one of: " + ", ".join(sorted(set(SAM2_CONFIGS.values()))))


def tiny_overrides(image_size: int = 64) -> list[str]:
    """Hydra overrides that shrink ``sam2.1_hiera_t.yaml`` to a ~0.9 M-parameter model of the same
    code paths (Hiera trunk with q-pooling and a global block, FPN neck, memory attention with
    RoPE, memory encoder, SAM heads): the tests' and the bench's stand-in for real weights."""
    d, m, e = 32, 16, 16  # d_model (prompt/memory-attention width), memory width, Hiera width
    fs = image_size // 16  # the backbone's stride-16 feature map, RoPE's grid
    return [
        f"++model.image_size={image_size}",
        f"++model.image_encoder.trunk.embed_dim={e}",
        "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",  # not a q-pool block
        "++model.image_encoder.trunk.window_spec=[4,4,4,2]",
        "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[2,2]",
        f"++model.image_encoder.neck.d_model={d}",
        f"++model.image_encoder.neck.position_encoding.num_pos_feats={d}",
        f"++model.image_encoder.neck.backbone_channel_list=[{8 * e},{4 * e},{2 * e},{e}]",
        f"++model.memory_attention.d_model={d}",
        "++model.memory_attention.num_layers=1",
        f"++model.memory_attention.layer.d_model={d}",
        f"++model.memory_attention.layer.dim_feedforward={2 * d}",
        f"++model.memory_attention.layer.self_attention.embedding_dim={d}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{fs},{fs}]",
        f"++model.memory_attention.layer.cross_attention.embedding_dim={d}",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{fs},{fs}]",
        f"++model.memory_attention.layer.cross_attention.kv_in_dim={m}",
        f"++model.memory_encoder.out_dim={m}",
        f"++model.memory_encoder.in_dim={d}",
        f"++model.memory_encoder.position_encoding.num_pos_feats={m}",
        f"++model.memory_encoder.mask_downsampler.embed_dim={d}",
        f"++model.memory_encoder.fuser.layer.dim={d}",
        "++model.memory_encoder.fuser.num_layers=1",
    ]


def save_random_checkpoint(path: str | Path, config: str = "configs/sam2.1/sam2.1_hiera_t.yaml",
                           overrides: list[str] | None = None, seed: int = 0, object_always_present: bool = True) -> Path:
    """Build a SAM 2 with seeded random weights and save it in the official format
    (``{"model": state_dict}``), for tests and benchmarks without the real weights.

    ``object_always_present``: bias the occlusion head so that the object is always judged
    visible; otherwise a random model blanks about half of its masks (SAM 2 empties the mask of
    an object it judges absent) and a test of the hand-over between chunks would see nothing."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(seed)
    model = build_sam2_video_predictor(config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides or [])
    state = model.state_dict()
    if object_always_present:
        state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"].fill_(10.0)
    torch.save({"model": state}, path)
    return Path(path)


# ---------------------------------------------------------------- prompts
@dataclass
class Prompt:
    """One prompt for one track on one frame (pixel coordinates of the working frames)."""

    frame: int
    box: np.ndarray | None = None  # (4,) xyxy
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (N, 2) x, y
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (N,) 1 positive, 0 negative

    def to_json(self) -> dict:
        out: dict = {"frame": int(self.frame)}
        if self.box is not None:
            out["box"] = [round(float(v), 2) for v in self.box]
        if len(self.points):
            out["points"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]
            out["labels"] = [int(v) for v in self.labels]
        return out


def object_prompt(det: dict, detect_params: dict | None = None) -> Prompt | None:
    """The object's prompt: the user's box or point to 01_detect (working px: its prompt record, which
    `hoi_cli.stages.segment` passes in),
    else its first automatic key box."""
    from ..prompts import parse_numbers

    dp = detect_params or {}
    frame = int(dp.get("object_frame") or 0)
    box = parse_numbers(dp.get("object_box"), 4, "object_box")
    if box is not None:
        return Prompt(frame, box=np.asarray(box, np.float32))
    point = parse_numbers(dp.get("object_point"), 2, "object_point")
    if point is not None:
        return Prompt(frame, points=np.asarray([point], np.float32), labels=np.ones(1, np.int32))
    boxes = np.asarray(det.get("object_boxes", np.zeros((0, 4))), np.float64)
    ok = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not ok.any():
        return None
    score = np.nan_to_num(np.asarray(det.get("object_score", np.ones(len(boxes))), np.float64), nan=0.0)
    key = np.flatnonzero(ok & (score >= KEY_SCORE))
    t = int(key[0]) if len(key) else int(np.flatnonzero(ok)[np.argmax(score[ok])])
    return Prompt(t, box=boxes[t].astype(np.float32))


def object_negative_points(object_box: np.ndarray, hand_box: np.ndarray) -> np.ndarray:
    """Points on the object for a hand prompt: the object box's centre and the four points
    halfway from it to the corners, those outside the hand's box; ``(N, 2)``."""
    b = np.asarray(object_box, np.float64)
    if not np.isfinite(b).all():
        return np.zeros((0, 2), np.float32)
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    qx, qy = (b[2] - b[0]) / 4, (b[3] - b[1]) / 4
    cand = np.array([[cx, cy], [cx - qx, cy - qy], [cx + qx, cy - qy], [cx - qx, cy + qy], [cx + qx, cy + qy]])
    h = np.asarray(hand_box, np.float64)
    inside = (cand[:, 0] >= h[0]) & (cand[:, 0] <= h[2]) & (cand[:, 1] >= h[1]) & (cand[:, 1] <= h[3])
    return cand[~inside].astype(np.float32)


def hand_prompt_frames(det: dict, slot: int, start: int, end: int, n: int, min_gap: int) -> list[int]:
    """The slot's ``n`` most confident detected (not interpolated) frames in ``[start, end)``,
    at least ``min_gap`` frames apart, in time order."""
    boxes = np.asarray(det.get("hand_boxes", np.zeros((0, 2, 4))), np.float64)
    if len(boxes) == 0 or n <= 0:
        return []
    score = np.asarray(det.get("hand_score", np.ones(boxes.shape[:2])), np.float64)[:, slot]
    interp = np.asarray(det.get("hand_interpolated", np.zeros(boxes.shape[:2], bool)), bool)[:, slot]
    t = np.arange(start, min(end, len(boxes)))
    ok = np.isfinite(boxes[t, slot]).all(axis=1) & np.isfinite(score[t]) & ~interp[t]
    t = t[ok]
    chosen: list[int] = []
    for i in t[np.argsort(-score[t], kind="stable")]:
        if all(abs(int(i) - c) >= min_gap for c in chosen):
            chosen.append(int(i))
        if len(chosen) == n:
            break
    return sorted(chosen)


def hand_prompt(det: dict, slot: int, t: int, object_boxes: np.ndarray | None, width: int, height: int) -> Prompt:
    """A hand's prompt on frame ``t``: its box, positive palm points, negative points on the object."""
    box = np.asarray(det["hand_boxes"][t, slot], np.float32)
    kps = np.asarray(det["hand_keypoints"][t, slot, list(PALM_JOINTS), :2], np.float64)
    keep = np.isfinite(kps).all(axis=1) & (kps[:, 0] >= 0) & (kps[:, 0] < width) & (kps[:, 1] >= 0) & (kps[:, 1] < height)
    pos = kps[keep].astype(np.float32)
    neg = (object_negative_points(object_boxes[t], box) if object_boxes is not None and t < len(object_boxes)
           else np.zeros((0, 2), np.float32))
    return Prompt(t, box=box, points=np.concatenate([pos, neg]).astype(np.float32),
                  labels=np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)]))


def chunk_bounds(n_frames: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each chunk; consecutive chunks share one frame (the hand-over)."""
    if chunk <= 1 or n_frames <= chunk:
        return [(0, n_frames)]
    out, s = [], 0
    while True:
        e = min(s + chunk, n_frames)
        out.append((s, e))
        if e == n_frames:
            return out
        s = e - 1


def build_prompts(det: dict, n_frames: int, width: int, height: int, *, detect_params: dict | None = None,
                  object_boxes: np.ndarray | None = None, hands: bool = True, hand_prompts_per_chunk: int = 3,
                  min_gap: int = 5, chunk: int = 0) -> dict[int, list[Prompt]]:
    """``{track id: [Prompt, ...]}``: the object's one prompt and each found hand's most confident
    frames (per chunk, so every chunk where a hand was seen has its own prompts)."""
    tracks: dict[int, list[Prompt]] = {}
    op = object_prompt(det, detect_params)
    if op is not None and 0 <= op.frame < n_frames:
        tracks[OBJECT_ID] = [op]
    if hands and "hand_boxes" in det and "hand_keypoints" in det:
        obj_boxes = object_boxes if object_boxes is not None else det.get("object_boxes")
        for slot, oid in enumerate(HAND_IDS):
            frames: set[int] = set()
            for s, e in chunk_bounds(n_frames, chunk):
                frames.update(hand_prompt_frames(det, slot, s, e, hand_prompts_per_chunk, min_gap))
            if frames:
                tracks[oid] = [hand_prompt(det, slot, t, obj_boxes, width, height) for t in sorted(frames)]
    return tracks


# ---------------------------------------------------------------- tracking
def _write_frames(frames: np.ndarray, folder: Path) -> None:
    """The chunk's frames as ``<index>.jpg`` files holding lossless PNG data. ``init_state`` takes
    only a path (a JPEG folder, or an MP4 that it decodes with decord, a second decode we avoid);
    its loader lists ``*.jpg`` names sorted by index and opens them with PIL, which reads a file by
    its content, not its name. So the frames go through the package's own resizing and
    normalisation unchanged, without a lossy JPEG round trip or a copy of its internals."""
    import cv2

    for i, f in enumerate(frames):
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(f[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 0])
        if not ok:
            raise BadInputError(f"cannot encode frame {i} for SAM 2", "check the frames of 00_frames")
        (folder / f"{i}.jpg").write_bytes(buf.tobytes())


def _autocast(device: str):
    """bfloat16 autocast on CUDA, as the official examples run SAM 2; nothing on the CPU."""
    import contextlib

    import torch

    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def track_chunk(predictor, frames: np.ndarray, conds: dict[int, dict[int, Prompt | np.ndarray]],
                device: str = "cpu", reverse_only: bool = False) -> dict[int, dict[int, np.ndarray]]:
    """One SAM 2 session over ``frames`` (a chunk): add each track's prompts (`Prompt`, or a bool
    mask ``(H, W)``) on its local frames, propagate forward from the first prompt and backward
    (``reverse=True``) over the frames before each track's first prompt. ``{track: {frame: mask}}``."""
    import torch

    first = {oid: min(c) for oid, c in conds.items()}
    with tempfile.TemporaryDirectory(prefix="hoi-sam2-") as tmp, torch.inference_mode(), _autocast(device):
        _write_frames(frames, Path(tmp))
        # the video stays in host memory (a chunk of 1024 px frames is 12 MB each); the chunk bounds the state
        state = predictor.init_state(tmp, offload_video_to_cpu=True)
    with torch.inference_mode(), _autocast(device):
        for oid, c in conds.items():
            for t, prompt in sorted(c.items()):
                if isinstance(prompt, np.ndarray):
                    predictor.add_new_mask(state, frame_idx=t, obj_id=oid, mask=torch.from_numpy(prompt))
                else:
                    predictor.add_new_points_or_box(
                        state, frame_idx=t, obj_id=oid,
                        points=prompt.points if len(prompt.points) else None,
                        labels=prompt.labels if len(prompt.points) else None,
                        box=prompt.box)
        out: dict[int, dict[int, np.ndarray]] = {oid: {} for oid in conds}

        def collect(gen, backward: bool):
            for t, ids, logits in gen:
                masks = (logits[:, 0] > 0).cpu().numpy()
                for oid, m in zip(ids, masks):
                    if (t < first[oid]) == backward or t == first[oid]:
                        out[oid].setdefault(t, m)

        if not reverse_only:
            collect(predictor.propagate_in_video(state), backward=False)
        start_back = max(first.values())
        if start_back > 0 or reverse_only:
            collect(predictor.propagate_in_video(state, start_frame_idx=start_back, reverse=True), backward=True)
        predictor.reset_state(state)
    return out


def track_video(predictor, frames: np.ndarray, tracks: dict[int, list[Prompt]], *, chunk: int = 0,
                device: str = "cpu", progress=None) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Masks ``{track: (T, H, W) bool}`` for every track, propagated through the whole clip in
    chunks (see the module docstring), and which frames got a SAM 2 output ``{track: (T,) bool}``."""
    T, H, W = frames.shape[:3]
    masks = {oid: np.zeros((T, H, W), bool) for oid in tracks}
    covered = {oid: np.zeros(T, bool) for oid in tracks}
    bounds = chunk_bounds(T, chunk)
    done = 0

    def store(s: int, res: dict) -> None:
        for oid, per_frame in res.items():
            for t, m in per_frame.items():
                masks[oid][s + t] = m
                covered[oid][s + t] = True

    for s, e in bounds:  # forward sweep: own prompts + the hand-over mask from the previous chunk
        conds: dict[int, dict] = {}
        for oid, prompts in tracks.items():
            c: dict = {p.frame - s: p for p in prompts if s <= p.frame < e}
            if s > 0 and 0 not in c and covered[oid][s] and masks[oid][s].any():
                c[0] = masks[oid][s]
            if c:
                conds[oid] = c
        if conds:
            store(s, track_chunk(predictor, frames[s:e], conds, device))
        done += e - s
        if progress is not None:
            progress(min(done, T), T)
    for s, e in reversed(bounds[:-1]):  # backward sweep: tracks whose first prompt came later
        conds = {oid: {e - 1 - s: masks[oid][e - 1]} for oid in tracks
                 if not covered[oid][s] and covered[oid][e - 1] and masks[oid][e - 1].any()}
        if conds:
            store(s, track_chunk(predictor, frames[s:e], conds, device, reverse_only=True))
    return masks, covered


def hand_boxes_from_masks(hand_masks: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """``(T, 2, 4)`` tight xyxy boxes of the two hand tracks' masks (NaN where empty)."""
    T = len(hand_masks[0])
    out = empty_boxes(T, 2)
    for slot, m in enumerate(hand_masks):
        for t in range(T):
            out[t, slot] = box_from_mask(m[t])
    return out


def segment_video_sam2(predictor, frames: np.ndarray, det: dict, *, detect_params: dict | None = None,
                       object_boxes: np.ndarray | None = None, hands: bool = True, hand_prompts_per_chunk: int = 3,
                       chunk: int = 100, device: str = "cpu", progress=None) -> dict:
    """The backend's work on arrays: ``object`` and ``hand`` bool ``(T, H, W)`` masks (``hand`` the
    union of the two hand tracks; None when ``hands`` is off), ``hand_boxes_from_masks (T,2,4)``,
    ``prompts`` (JSON, for the manifest), ``hand_frames_filled`` (per slot, frames where its track
    has a mask but 01_detect had no box) and ``frames_tracked`` (per track, frames with an output)."""
    T, H, W = frames.shape[:3]
    tracks = build_prompts(det, T, W, H, detect_params=detect_params, object_boxes=object_boxes, hands=hands,
                           hand_prompts_per_chunk=hand_prompts_per_chunk, chunk=chunk)
    with warnings.catch_warnings():
        # without the optional CUDA extension (SAM2_BUILD_CUDA=0) the package skips filling holes
        # of <= 8 px in its 256 px low-res masks and warns on every frame
        warnings.filterwarnings("ignore", message=r".*cannot import name '_C'.*")
        masks, covered = track_video(predictor, frames, tracks, chunk=chunk, device=device, progress=progress)
    empty = np.zeros((T, H, W), bool)
    obj = masks.get(OBJECT_ID, empty)
    hand_tracks = [masks.get(oid, empty) for oid in HAND_IDS]
    boxes = hand_boxes_from_masks(hand_tracks)
    det_boxes = np.asarray(det.get("hand_boxes", np.full((T, 2, 4), np.nan)), np.float64)
    filled = np.isfinite(boxes).all(-1) & ~np.isfinite(det_boxes[:T]).all(-1)
    return {
        "object": obj,
        "hand": (hand_tracks[0] | hand_tracks[1]) if hands else None,
        "hand_boxes_from_masks": boxes,
        "prompts": {_track_name(oid): [p.to_json() for p in ps] for oid, ps in tracks.items()},
        "hand_frames_filled": [int(v) for v in filled.sum(0)],
        "frames_tracked": {_track_name(oid): int(c.sum()) for oid, c in covered.items()},
    }


def _track_name(oid: int) -> str:
    return "object" if oid == OBJECT_ID else ("left_hand", "right_hand")[HAND_IDS.index(oid)]


def describe_model(checkpoint: str | Path, config: str = "", overrides: str | list = "") -> dict:
    """For the manifest: the checkpoint's name, the config and the overrides (its hash is in the
    fingerprint through 03_segment's ``model_files``)."""
    return {"checkpoint": os.path.basename(str(checkpoint)), "config": config_for_checkpoint(checkpoint, config),
            "overrides": split_overrides(overrides)}
