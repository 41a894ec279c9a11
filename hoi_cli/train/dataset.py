"""Training data over run folders, as self-reenactment.

Each item is a window of ``num_frames`` consecutive frames (every ``frame_stride``-th) of
one run, resized to ``height x width`` (no crop: boxes scale with the frame), with every
condition the model may use. The reference image is the clip's *own* object, cropped by
its box (and cut out by its mask where 03_segment exists) from a frame outside the window
when there is one, which is what makes it self-reenactment.

The batch dict (after default collation; ``B`` = batch, ``T`` = frames, ``H x W`` pixels,
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
====================  ===================  =====================================================

A stage counts as present when its ``manifest.json`` exists (DESIGN.md: the manifest is
written last). A condition whose stage is missing is all zeros; the dataset raises
`BadInputError` up front if the model configuration requires it
(`ModelConfig.required_conditions`).

Every file is read through its stage's own loader (``load_frames``, ``load_detections``,
``load_masks``, ``load_mlo``, ``load_silhouette``, ``load_layout``), once per run, and
turned into float maps at the training resolution by one ``read_*`` function per
condition below; nothing here parses a stage's files itself.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..conventions import MLO_LAYERS, box_from_mask, decode_normals
from ..errors import BadInputError
from ..stages import detect as detect_stage
from ..stages import frames as frames_stage
from ..stages import layout as layout_stage
from ..stages import mlo as mlo_stage
from ..stages import segment as segment_stage
from ..stages import silhouette as silhouette_stage
from ..stages.base import RunReader

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


def stage_done(run: Path, name: str) -> bool:
    """A stage folder is complete when its manifest exists (DESIGN.md, "The run folder")."""
    return RunReader(run).has(name)


# ------------------------------------------------------------------ readers (one per condition)
def read_meta(run: Path) -> dict:
    return RunReader(run).read(frames_stage).meta


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


class HOIRunDataset(Dataset):
    """Windows of run folders with all conditions; see the module docstring for the batch."""

    def __init__(self, runs: list[str | Path], num_frames: int, height: int, width: int, *,
                 required: set[str] | frozenset = frozenset(), frame_stride: int = 1,
                 window_step: int | None = None, hand_render_channels: int = HAND_RENDER_CHANNELS,
                 structure_channels: int = STRUCTURE_CHANNELS, mlo_layers: int = N_MLO, seed: int = 0,
                 ref_margin: float = 0.1):
        self.runs = [Path(r) for r in runs]
        if not self.runs:
            raise BadInputError("no run folders given", "pass one or more runs/<clip-id> folders")
        for name, got, want in (("hand_render_channels", hand_render_channels, HAND_RENDER_CHANNELS),
                                ("structure_channels", structure_channels, STRUCTURE_CHANNELS),
                                ("mlo_layers", mlo_layers, N_MLO)):
            if got != want:
                raise BadInputError(f"the model expects {name} = {got}; the run folders give {want}",
                                    "train a new model with this version's config (hoi train)")
        self.T, self.hw = num_frames, (height, width)
        self.stride, self.seed, self.margin = frame_stride, seed, ref_margin
        self.epoch = 0
        self.items: list[tuple[int, int]] = []
        self.available: dict[Path, set[str]] = {}
        span = (num_frames - 1) * frame_stride + 1
        step = window_step or max(1, span // 2)
        for ri, run in enumerate(self.runs):
            if not run.is_dir():
                raise BadInputError(f"run folder not found: {run}", "pass runs/<clip-id> folders made by `hoi preprocess`")
            n = len(frame_paths(run))
            if n < span:
                raise BadInputError(f"{run} has {n} frames; a window needs {span}",
                                    "use fewer --frames or a smaller --frame-stride")
            self.items += [(ri, s) for s in range(0, n - span + 1, step)]
            self.available[run] = self._available(run)
            missing = set(required) - self.available[run]
            if missing:
                detail = ", ".join(f"{k} (from {CONDITION_STAGES.get(k, '?')})" for k in sorted(missing))
                raise BadInputError(f"{run.name} lacks conditions the model requires: {detail}",
                                    "run those stages with `hoi preprocess`, or pick a --system that does not need them")
        self._cache: dict[int, dict] = {}

    @classmethod
    def for_config(cls, runs: list[str | Path], cfg, **kwargs) -> "HOIRunDataset":
        """The dataset a `ModelConfig` trains on (its clip size, channels and required conditions)."""
        kwargs.setdefault("num_frames", cfg.num_frames)
        kwargs.setdefault("required", cfg.required_conditions())
        return cls(runs, height=cfg.height, width=cfg.width, hand_render_channels=cfg.hand_render_channels,
                   structure_channels=cfg.structure_channels, mlo_layers=cfg.mlo_layers, **kwargs)

    @staticmethod
    def _available(run: Path) -> set[str]:
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

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Change the reference-frame draw (call once per epoch)."""
        self.epoch = epoch

    def _run_data(self, ri: int) -> dict:
        if ri in self._cache:
            return self._cache[ri]
        run = self.runs[ri]
        frames = read_frames(run)
        n = len(frames)
        src_hw = frames.shape[1:3]
        h, w = self.hw
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

        layout = read_layout(run, self.hw)
        if layout is not None:
            d["layout"] = check(layout_stage.NAME, layout)
        elif det is not None and "hand_boxes_square" in det and "object_boxes" in det:
            boxes = np.concatenate([det["hand_boxes_square"], det["object_boxes"][:, None]], 1)
            d["layout"] = check(detect_stage.NAME, rasterize_boxes(boxes, src_hw, self.hw))
        if masks is not None:
            for k in ("hand", "object"):
                d[f"{k}_mask"] = check(segment_stage.NAME, _resize_stack(masks[k][:, None].astype(np.float32),
                                                                         self.hw))
        sil = read_silhouette(run, self.hw)
        if sil is not None:
            d["hand_render"] = check(silhouette_stage.NAME, sil["hand_render"])
            d["structure"] = sil["structure"]
        mlo = read_mlo(run, self.hw, n)
        if mlo is not None:
            d["mlo_normals"], d["mlo_occlusion"] = mlo
        self._cache[ri] = d
        return d

    def _object_box(self, d: dict, i: int) -> np.ndarray | None:
        if d["masks_full"] is not None and d["masks_full"]["object"][i].any():
            return box_from_mask(d["masks_full"]["object"][i])
        if d["det"] is not None:
            b = d["det"]["object_boxes"][i]
            if np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1]:
                return b
        return None

    def _reference(self, d: dict, window: list[int], rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        h, w = self.hw
        outside = [i for i in range(d["n"]) if i not in set(window)]
        for pool in (outside, list(window)):
            cands = [i for i in pool if self._object_box(d, i) is not None]
            if cands:
                i = int(rng.choice(cands))
                break
        else:
            return np.zeros((3, h, w), np.float32), False
        box = self._object_box(d, i)
        img = d["frames"][i].astype(np.float32)
        if d["masks_full"] is not None and d["masks_full"]["object"][i].any():
            img = np.where(d["masks_full"]["object"][i][..., None], img, 255.0)
        H0, W0 = d["src_hw"]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * self.margin)
        x0, y0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
        s = max(2, int(np.ceil(side)))
        canvas = np.full((s, s, 3), 255.0, np.float32)  # pad outside the frame with white
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W0, x0 + s), min(H0, y0 + s)
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
        crop = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
        return crop.transpose(2, 0, 1) / 127.5 - 1.0, True

    def __getitem__(self, idx: int) -> dict:
        ri, start = self.items[idx]
        d = self._run_data(ri)
        window = list(range(start, start + self.T * self.stride, self.stride))
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        T, (h, w) = self.T, self.hw
        zeros = lambda c: np.zeros((T, c, h, w), np.float32)  # noqa: E731
        ref, ref_ok = self._reference(d, window, rng)
        item = {
            "video": d["video"][window],
            "reference": ref.astype(np.float32),
            "reference_valid": np.bool_(ref_ok),
            "layout": d["layout"][window] if "layout" in d else zeros(3),
            "hand_mask": d["hand_mask"][window] if "hand_mask" in d else zeros(1),
            "object_mask": d["object_mask"][window] if "object_mask" in d else zeros(1),
            "hand_render": d["hand_render"][window] if "hand_render" in d else zeros(HAND_RENDER_CHANNELS),
            "structure": d["structure"][window] if "structure" in d else zeros(STRUCTURE_CHANNELS),
            "mlo_normals": d["mlo_normals"][window] if "mlo_normals" in d else zeros(3 * N_MLO),
            "mlo_occlusion": d["mlo_occlusion"][window] if "mlo_occlusion" in d else zeros(N_MLO),
            "start": np.int64(start),
        }
        return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else torch.tensor(v)
                for k, v in item.items()}


SYNTHETIC_STAGES = ("01_detect", "03_segment", "04_mlo", "05_silhouette", "06_layout")


def make_synthetic_run(run: Path, n_frames: int = 8, height: int = 48, width: int = 64, *,
                       stages: tuple[str, ...] = ("01_detect", "03_segment"), seed: int = 0) -> Path:
    """A small run folder in the real file formats, for tests and benches.

    `hoi_cli.render.testing.make_synthetic_run` writes 00_frames..03_segment (two built-in-model
    hands facing the camera and a round object between them); 04_mlo, 05_silhouette and
    06_layout, where named in ``stages``, are then made by the stages' own ``run`` functions
    (so the dataset reads exactly what `hoi preprocess` writes). 01_detect / 03_segment are
    removed afterwards when not named. The hands' Re-HOLD squares are rescaled to 60 % of the
    frame height (the helper's fixed 128 px would cover a small frame). ``seed`` is unused
    (the scene is deterministic); it is kept for callers.
    """
    import json
    import shutil

    from ..conventions import square_box
    from ..render.testing import adopt_stages, make_synthetic_run as make_base
    from ..stages.base import StageContext

    unknown = set(stages) - set(SYNTHETIC_STAGES)
    if unknown:
        raise ValueError(f"unknown synthetic stages {sorted(unknown)}; choose from {SYNTHETIC_STAGES}")
    run = Path(run)
    make_base(run, n_frames=n_frames, width=width, height=height, object_radius_px=0.2 * min(height, width))
    det_path = run / "01_detect" / "detections.npz"
    with np.load(det_path, allow_pickle=False) as z:
        det = {k: z[k] for k in z.files}
    det["hand_boxes_square"] = square_box(det["hand_boxes"], 0.6 * height)
    np.savez(det_path, **det)
    mods = {"04_mlo": (mlo_stage, mlo_stage.Params(workers=1)),
            "05_silhouette": (silhouette_stage, silhouette_stage.Params(write_video=False)),
            "06_layout": (layout_stage, layout_stage.Params(write_video=False))}
    for name, (mod, params) in mods.items():
        if name not in stages:
            continue
        tmp = run / f".{name}.tmp"
        tmp.mkdir()
        summary = mod.run(StageContext(run, tmp, params))
        (tmp / "manifest.json").write_text(json.dumps({"stage": name, "synthetic": True, "summary": summary}))
        tmp.rename(run / name)
    for name in ("01_detect", "03_segment"):
        if name not in stages:
            shutil.rmtree(run / name)
    # real manifests over the final files (01_detect was rewritten above), so the run reads as fresh
    present = [n for n in ("00_frames", "01_detect", "02_hands", "03_segment", *mods) if (run / n).is_dir()]
    adopt_stages(run, present, {n: p for n, (_, p) in mods.items()})
    return run
