"""FVD: Fréchet Video Distance between generated and reference clips.

Definition (Unterthiner et al. 2018): the Fréchet distance (see `fid.frechet_distance`)
between Gaussians fitted to I3D (Kinetics-400) features of the generated clips and of the
reference clips, one feature vector per clip.

Network and convention: the TorchScript I3D of StyleGAN-V / "common metrics on video quality"
(``i3d_torchscript.pt``, a port of the TF-Hub ``i3d-kinetics-400`` model used by the original
FVD code), called as ``model(x, rescale=False, resize=False, return_features=True)``, which
returns the 400-d pre-softmax logits. Each clip: its first ``n_frames`` frames (16 by
default, the count recorded in the output; shorter clips are used whole and the count
recorded per clip), shorter side resized bilinearly (``align_corners=False``) to 224 then
centre-cropped to 224x224, scaled from [0, 1] to [-1, 1], laid out as ``(B, 3, T, 224, 224)``.

FVD needs at least two clips per side (a covariance); with fewer it is reported as not
computable. Published FVDs use hundreds to thousands of clips; values over few clips are
strongly biased and only comparable at equal clip counts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

I3D_FILE = "i3d_torchscript.pt"
DEFAULT_FRAMES = 16


def preprocess_clip(frames: np.ndarray, n_frames: int = DEFAULT_FRAMES, resolution: int = 224):
    """``(T, H, W, 3)`` uint8 -> float tensor ``(3, T', 224, 224)`` in [-1, 1], T' = min(T, n_frames)."""
    import torch
    import torch.nn.functional as F

    v = torch.from_numpy(np.ascontiguousarray(frames[:n_frames])).permute(0, 3, 1, 2).float() / 255.0
    t, c, h, w = v.shape
    scale = resolution / min(h, w)
    size = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)
    h, w = v.shape[-2:]
    y0, x0 = (h - resolution) // 2, (w - resolution) // 2
    v = v[:, :, y0:y0 + resolution, x0:x0 + resolution]
    return ((v - 0.5) * 2).permute(1, 0, 2, 3).contiguous()


class I3DFeatureExtractor:
    """I3D features from a local TorchScript file."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch

        self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device
        self.path = Path(path)

    def __call__(self, clips: list[np.ndarray], n_frames: int = DEFAULT_FRAMES) -> np.ndarray:
        import torch

        feats = []
        with torch.inference_mode():
            for clip in clips:
                x = preprocess_clip(clip, n_frames)[None].to(self.device)
                f = self.model(x, rescale=False, resize=False, return_features=True)
                feats.append(f.reshape(1, -1).double().cpu().numpy())
        return np.concatenate(feats) if feats else np.zeros((0, 400))


def fvd_from_features(feats_gen: np.ndarray, feats_ref: np.ndarray) -> float:
    from .fid import fid_from_features

    return fid_from_features(feats_gen, feats_ref)
