"""Training data over run folders, as self-reenactment.

Each item is a window of ``num_frames`` consecutive frames (every ``frame_stride``-th) of
one run, resized to ``height x width`` (no crop: boxes scale with the frame), with every
condition the model may use. The reference image is the clip's *own* object, cropped by
its box (and cut out by its mask where 03_segment exists) from a frame outside the window
when there is one, which is what makes it self-reenactment.

The batch dict (after default collation; ``B`` = batch, ``T`` = frames, ``H x W`` pixels):

====================  ===================  =====================================================
key                   shape                meaning
====================  ===================  =====================================================
``video``             (B, T, 3, H, W)      RGB in [-1, 1]
``reference``         (B, 3, H, W)         object crop in [-1, 1], white background outside its mask
``reference_valid``   (B,) bool            False when no frame had an object box/mask (ref zeros)
``layout``            (B, T, 3, H, W)      [0, 1]: left-hand square box, right-hand square box,
                                           object box (Re-HOLD layout)
``hand_mask``         (B, T, 1, H, W)      [0, 1] (area-resized from 03_segment)
``object_mask``       (B, T, 1, H, W)      [0, 1]
``hand_render``       (B, T, Ch, H, W)     hand-mesh render, [0, 1] (Re-HOLD structural guidance)
``structure``         (B, T, Cs, H, W)     HOI structure: hand-mesh silhouette, object mask [0, 1]
``mlo_normals``       (B, T, 21, H, W)     MLO normals in [-1, 1], 7 layers x (nx, ny, nz), in the
                                           order object, palm, thumb, index, middle, ring, pinky
``mlo_occlusion``     (B, T, 7, H, W)      occlusion confidence in [0, 1], same layer order
``start``             (B,) int             first frame index of the window
====================  ===================  =====================================================

A condition whose stage is missing is all zeros; the dataset raises `BadInputError` up
front if the model configuration requires it (`ModelConfig.required_conditions`).

Each condition has exactly one reader function below (``read_*``). The files of
04_mlo / 05_silhouette / 06_layout are not fixed yet; their names are the constants
``MLO_FILE``, ``SILHOUETTE_FILE`` and ``LAYOUT_FILE`` and their keys are documented in the
readers; change them there when those stages land. The layout falls back to rasterising
01_detect's boxes, which is what the layout maps are.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..conventions import box_from_mask, unpack_masks
from ..errors import BadInputError

MLO_FILE = "04_mlo/mlo.npz"  # normals (T,7,3,H,W) or (T,21,H,W) in [-1,1]; occlusion (T,7,H,W) in [0,1]
SILHOUETTE_FILE = "05_silhouette/silhouette.npz"  # hand_render (T,Ch,H,W); structure (T,Cs,H,W), [0,1]
LAYOUT_FILE = "06_layout/layout.npz"  # layout (T,3,H,W) in [0,1]

# Which stage provides each condition (for error messages).
CONDITION_STAGES = {
    "video": "00_frames", "reference": "01_detect or 03_segment", "layout": "01_detect or 06_layout",
    "hand_mask": "03_segment", "object_mask": "03_segment", "hand_render": "05_silhouette",
    "structure": "05_silhouette", "mlo_normals": "04_mlo", "mlo_occlusion": "04_mlo",
}


# ------------------------------------------------------------------ readers (one per condition)
def read_meta(run: Path) -> dict:
    path = run / "00_frames" / "meta.json"
    if not path.exists():
        raise BadInputError(f"{run} has no 00_frames/meta.json", "run `hoi preprocess` on it first")
    return json.loads(path.read_text())


def frame_paths(run: Path) -> list[Path]:
    paths = sorted((run / "00_frames" / "frames").glob("*.png"))
    if not paths:
        raise BadInputError(f"{run} has no frames in 00_frames/frames", "run `hoi preprocess` on it first")
    return paths


def read_frames(run: Path, indices: list[int]) -> np.ndarray:
    """RGB uint8 ``(len(indices), H0, W0, 3)`` from 00_frames."""
    paths = frame_paths(run)
    out = []
    for i in indices:
        img = cv2.imread(str(paths[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise BadInputError(f"cannot read frame {paths[i]}")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out)


def read_detections(run: Path) -> dict | None:
    """``hand_boxes_square (T,2,4)`` and ``object_boxes (T,4)`` xyxy px (NaN = missing), or None."""
    path = run / "01_detect" / "detections.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].astype(np.float32) for k in ("hand_boxes_square", "object_boxes") if k in z}


def read_masks(run: Path) -> dict | None:
    """``hand``, ``object`` bool ``(T, H0, W0)`` from 03_segment, or None."""
    path = run / "03_segment" / "masks.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        shape = z["shape"]
        return {k: unpack_masks(z[k], shape) for k in ("hand", "object")}


def _npz_key(run: Path, rel: str, key: str) -> np.ndarray | None:
    path = run / rel
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return z[key].astype(np.float32) if key in z else None


def read_layout_file(run: Path) -> np.ndarray | None:
    return _npz_key(run, LAYOUT_FILE, "layout")


def read_hand_render(run: Path) -> np.ndarray | None:
    return _npz_key(run, SILHOUETTE_FILE, "hand_render")


def read_structure(run: Path) -> np.ndarray | None:
    return _npz_key(run, SILHOUETTE_FILE, "structure")


def read_mlo(run: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """MLO ``normals (T,21,H,W)`` and ``occlusion (T,7,H,W)``, or None."""
    normals = _npz_key(run, MLO_FILE, "normals")
    occ = _npz_key(run, MLO_FILE, "occlusion")
    if normals is None or occ is None:
        return None
    if normals.ndim == 5:
        normals = normals.reshape(normals.shape[0], -1, *normals.shape[-2:])
    return normals, occ


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
                 window_step: int | None = None, hand_render_channels: int = 3,
                 structure_channels: int = 2, seed: int = 0, ref_margin: float = 0.1):
        self.runs = [Path(r) for r in runs]
        if not self.runs:
            raise BadInputError("no run folders given", "pass one or more runs/<clip-id> folders")
        self.T, self.hw = num_frames, (height, width)
        self.stride, self.seed, self.margin = frame_stride, seed, ref_margin
        self.ch_render, self.ch_struct = hand_render_channels, structure_channels
        self.epoch = 0
        self.items: list[tuple[int, int]] = []
        self.available: dict[Path, set[str]] = {}
        span = (num_frames - 1) * frame_stride + 1
        step = window_step or max(1, span // 2)
        for ri, run in enumerate(self.runs):
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

    @staticmethod
    def _available(run: Path) -> set[str]:
        have = {"video"}
        det = (run / "01_detect" / "detections.npz").exists()
        seg = (run / "03_segment" / "masks.npz").exists()
        if det or seg:
            have.add("reference")
        if det or (run / LAYOUT_FILE).exists():
            have.add("layout")
        if seg:
            have |= {"hand_mask", "object_mask"}
        if (run / SILHOUETTE_FILE).exists():
            with np.load(run / SILHOUETTE_FILE, allow_pickle=False) as z:
                have |= {k for k in ("hand_render", "structure") if k in z}
        if (run / MLO_FILE).exists():
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
        n = len(frame_paths(run))
        frames = read_frames(run, list(range(n)))
        src_hw = frames.shape[1:3]
        h, w = self.hw
        video = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
        d: dict = {"n": n, "src_hw": src_hw, "frames": frames,
                   "video": video.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0}
        det = read_detections(run)
        masks = read_masks(run)
        d["det"], d["masks_full"] = det, masks
        layout = read_layout_file(run)
        if layout is not None:
            d["layout"] = _resize_stack(layout, self.hw)
        elif det is not None:
            boxes = np.concatenate([det["hand_boxes_square"], det["object_boxes"][:, None]], 1)
            d["layout"] = rasterize_boxes(boxes, src_hw, self.hw)
        if masks is not None:
            for k in ("hand", "object"):
                d[f"{k}_mask"] = _resize_stack(masks[k][:, None].astype(np.float32), self.hw)
        hr = read_hand_render(run)
        if hr is not None:
            d["hand_render"] = _resize_stack(hr, self.hw)
        st = read_structure(run)
        if st is not None:
            d["structure"] = _resize_stack(st, self.hw)
        mlo = read_mlo(run)
        if mlo is not None:
            d["mlo_normals"] = _resize_stack(mlo[0], self.hw)
            d["mlo_occlusion"] = _resize_stack(mlo[1], self.hw)
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
            "hand_render": d["hand_render"][window] if "hand_render" in d else zeros(self.ch_render),
            "structure": d["structure"][window] if "structure" in d else zeros(self.ch_struct),
            "mlo_normals": d["mlo_normals"][window] if "mlo_normals" in d else zeros(21),
            "mlo_occlusion": d["mlo_occlusion"][window] if "mlo_occlusion" in d else zeros(7),
            "start": np.int64(start),
        }
        return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else torch.tensor(v)
                for k, v in item.items()}


def make_synthetic_run(run: Path, n_frames: int = 8, height: int = 48, width: int = 64, *,
                       stages: tuple[str, ...] = ("01_detect", "03_segment"), seed: int = 0) -> Path:
    """Write a tiny synthetic run folder (a moving coloured 'object' and 'hand') for tests/benches."""
    rng = np.random.default_rng(seed)
    (run / "00_frames" / "frames").mkdir(parents=True, exist_ok=True)
    hand = np.zeros((n_frames, height, width), bool)
    obj = np.zeros((n_frames, height, width), bool)
    hb = np.full((n_frames, 2, 4), np.nan, np.float32)
    ob = np.full((n_frames, 4), np.nan, np.float32)
    side = height // 3
    for i in range(n_frames):
        img = np.full((height, width, 3), 40, np.uint8) + rng.integers(0, 10, (height, width, 3), dtype=np.uint8)
        ox, oy = 4 + i * 2 % (width - side - 8), height // 3
        obj[i, oy:oy + side, ox:ox + side] = True
        img[obj[i]] = (200, 60, 30)
        hx, hy = ox + side // 2, oy - side // 3
        hand[i, hy:hy + side // 2, hx:hx + side // 2] = True
        img[hand[i]] = (230, 180, 150)
        ob[i] = [ox, oy, ox + side, oy + side]
        c = np.array([hx + side / 4, hy + side / 4])
        hb[i, 1] = [c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2]
        cv2.imwrite(str(run / "00_frames" / "frames" / f"{i:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (run / "00_frames" / "meta.json").write_text(json.dumps(
        {"fps": 10, "width": width, "height": height, "n_frames": n_frames, "source": {}, "timestamps": []}))
    (run / "00_frames" / "manifest.json").write_text("{}")
    if "01_detect" in stages:
        (run / "01_detect").mkdir(exist_ok=True)
        np.savez(run / "01_detect" / "detections.npz", hand_boxes_square=hb, object_boxes=ob)
    if "03_segment" in stages:
        (run / "03_segment").mkdir(exist_ok=True)
        np.savez(run / "03_segment" / "masks.npz", hand=np.packbits(hand, axis=-1),
                 object=np.packbits(obj, axis=-1), shape=np.array(hand.shape))
    if "04_mlo" in stages:
        (run / "04_mlo").mkdir(exist_ok=True)
        normals = rng.uniform(-1, 1, (n_frames, 7, 3, height, width)).astype(np.float32)
        np.savez(run / MLO_FILE, normals=normals, occlusion=rng.uniform(0, 1, (n_frames, 7, height, width)).astype(np.float32))
    if "05_silhouette" in stages:
        (run / "05_silhouette").mkdir(exist_ok=True)
        render = np.repeat(hand[:, None].astype(np.float32), 3, 1)
        structure = np.stack([hand, obj], 1).astype(np.float32)
        np.savez(run / SILHOUETTE_FILE, hand_render=render, structure=structure)
    return run
