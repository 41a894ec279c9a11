"""What `hoi generate` reads from a run folder beyond the frames, masks and detections: each
through its stage's own loader (`hoi_cli.stages.base.RunReader`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import MLO_LAYERS
from ..stages import mlo
from ..stages.base import RunReader


def load_hand_in_front(run_dir: Path, shape: tuple[int, int, int], log=lambda m: None,
                       margin_m: float = 0.01) -> np.ndarray | None:
    """``(T,H,W)`` bool: where a hand layer is nearer the camera than the object layer (04_mlo), else None.

    Reads 04_mlo through its loader. A hand pixel is behind where both the object layer and a
    hand layer are rendered there and the object is nearer by more than ``margin_m`` metres.
    Returns None when 04_mlo has not been run or its outputs carry no per-layer depth.
    """
    layers = RunReader(run_dir).read(mlo, optional=True, keys=("depth",))
    if layers is None:
        return None
    depth = layers["depth"]  # (T, L, H, W) float16 metres, 0 = layer absent
    oi = MLO_LAYERS.index("object")
    obj = depth[:, oi]
    hand_layers = depth[:, [i for i in range(len(MLO_LAYERS)) if i != oi]]
    hand = np.where(hand_layers > 0, hand_layers, np.inf).min(axis=1)  # nearest hand surface
    # hidden only where both surfaces are rendered and the object is nearer by more than the margin:
    # where the hand mesh misses a visible hand pixel, the pixel stays in front
    behind = (obj > 0) & np.isfinite(hand) & (obj.astype(np.float32) + margin_m < hand)
    front = ~behind
    if front.shape[1:] != tuple(shape[1:]):
        import cv2

        front = np.stack([cv2.resize(f.astype(np.uint8), (shape[2], shape[1]), interpolation=cv2.INTER_NEAREST) > 0
                          for f in front])
    return front
