"""What `hoi generate` reads from a run folder, through the stages' own loaders.

Each function imports the stage module's loader; only while a stage module has not landed in
this checkout does it fall back to reading the stage's file as the artifact contract in
DESIGN.md names it (as `hoi_cli.stages.hands` does for 01_detect).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError

try:
    from ..conventions import MLO_LAYERS
except ImportError:  # older checkout
    MLO_LAYERS = ("object", "palm", "thumb", "index", "middle", "ring", "pinky")


def load_detections(run_dir: Path) -> dict:
    try:
        from ..stages.detect import load_detections as loader  # 01_detect's loader
    except ImportError:
        loader = None
    if loader is not None:
        return dict(loader(run_dir))
    path = Path(run_dir) / "01_detect" / "detections.npz"
    if not path.exists():
        raise BadInputError(f"no detections in {run_dir} ({path} missing)",
                            "run `hoi preprocess` with 01_detect on the clip first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_masks(run_dir: Path) -> dict:
    """``{"object": (T,H,W) bool, "hand": (T,H,W) bool}``."""
    try:
        from ..stages.segment import load_masks as loader  # 03_segment's loader
    except ImportError:
        loader = None
    if loader is not None:
        return dict(loader(run_dir))
    path = Path(run_dir) / "03_segment" / "masks.npz"
    if not path.exists():
        raise BadInputError(f"no object/hand masks in {run_dir} ({path} missing)",
                            "run `hoi preprocess` with 03_segment on the clip first (the composite backend needs "
                            "the object mask to remove the source object)")
    from ..conventions import unpack_masks

    with np.load(path, allow_pickle=False) as z:
        shape = z["shape"]
        return {k: unpack_masks(z[k], shape) for k in ("object", "hand")}


def load_hand_in_front(run_dir: Path, shape: tuple[int, int, int], log=lambda m: None,
                       margin_m: float = 0.01) -> np.ndarray | None:
    """``(T,H,W)`` bool: where a hand layer is nearer the camera than the object layer (04_mlo), else None.

    Reads 04_mlo through its loader. A hand pixel is behind where both the object layer and a
    hand layer are rendered there and the object is nearer by more than ``margin_m`` metres.
    Returns None when 04_mlo has not been run or its outputs carry no per-layer depth.
    """
    if not (Path(run_dir) / "04_mlo" / "manifest.json").exists():
        return None
    try:
        from ..stages.mlo import load_mlo
    except ImportError:
        log("04_mlo output exists but hoi_cli.stages.mlo is not importable; hands are kept in front")
        return None
    mlo = load_mlo(run_dir)
    get = mlo.get if isinstance(mlo, dict) else (lambda k, d=None: getattr(mlo, k, d))
    depth = get("depth")
    if depth is None:
        log("04_mlo has no per-layer 'depth'; hands are kept in front")
        return None
    depth = np.asarray(depth, np.float32)  # (T, L, H, W), inf/0/NaN where a layer is absent
    layers = get("layers")
    layers = tuple(str(x) for x in (MLO_LAYERS if layers is None else layers))
    if depth.ndim != 4 or depth.shape[1] != len(layers) or "object" not in layers:
        log(f"04_mlo depth has an unexpected shape {depth.shape}; hands are kept in front")
        return None
    oi = layers.index("object")
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, depth, np.inf)
    obj = d[:, oi]
    hand = np.min(np.delete(d, oi, axis=1), axis=1)
    # hidden only where both surfaces are rendered and the object is nearer by more than the margin:
    # where the hand mesh misses a visible hand pixel, the pixel stays in front
    behind = np.isfinite(obj) & np.isfinite(hand) & (obj + margin_m < hand)
    front = ~behind
    if front.shape[1:] != tuple(shape[1:]):
        import cv2

        front = np.stack([cv2.resize(f.astype(np.uint8), (shape[2], shape[1]), interpolation=cv2.INTER_NEAREST) > 0
                          for f in front])
    return front


def remove_object(frames: np.ndarray, remove_masks: np.ndarray, keep_masks: np.ndarray | None = None,
                  log=lambda m: None) -> np.ndarray:
    """The frames with the source object removed, by `hoi_cli.inpaint.remove_object`."""
    try:
        from ..inpaint import remove_object as remover
    except ImportError:
        remover = None
    if remover is not None:
        return np.asarray(remover(frames, remove_masks, keep_masks=keep_masks))
    log("hoi_cli.inpaint is not in this checkout: using a nearest-frame + cv2.inpaint stand-in")
    return _stand_in_remove(frames, remove_masks, keep_masks)


def _stand_in_remove(frames: np.ndarray, remove: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Stand-in until hoi_cli.inpaint lands: nearest unmasked frame in time per pixel, then cv2.inpaint."""
    import cv2

    T = len(frames)
    out = frames.copy()
    ys, xs = np.nonzero(remove.any(0))
    if len(xs) == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    roi_f = frames[:, y0:y1, x0:x1]
    roi_m = remove[:, y0:y1, x0:x1]
    vis = ~roi_m if keep is None else ~(roi_m | keep[:, y0:y1, x0:x1])
    for t in range(T):
        need = roi_m[t].copy()
        patch = out[t, y0:y1, x0:x1]
        for dt in range(1, T):
            for u in (t - dt, t + dt):
                if 0 <= u < T and need.any():
                    take = need & vis[u]
                    patch[take] = roi_f[u][take]
                    need &= ~take
            if not need.any():
                break
        if need.any():
            patch[:] = cv2.inpaint(np.ascontiguousarray(patch), need.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return out
