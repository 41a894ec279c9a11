"""What `hoi generate` reads from a run folder, through the stages' own loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import MLO_LAYERS
from ..stages.detect import load_detections  # noqa: F401  (re-exported for the generator)
from ..stages.segment import load_masks  # noqa: F401


def load_hand_in_front(run_dir: Path, shape: tuple[int, int, int], log=lambda m: None,
                       margin_m: float = 0.01) -> np.ndarray | None:
    """``(T,H,W)`` bool: where a hand layer is nearer the camera than the object layer (04_mlo), else None.

    Reads 04_mlo through its loader. A hand pixel is behind where both the object layer and a
    hand layer are rendered there and the object is nearer by more than ``margin_m`` metres.
    Returns None when 04_mlo has not been run or its outputs carry no per-layer depth.
    """
    if not (Path(run_dir) / "04_mlo" / "manifest.json").exists():
        return None
    from ..stages.mlo import load_mlo

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
