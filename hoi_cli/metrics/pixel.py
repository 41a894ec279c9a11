"""Pixel metrics: PSNR, SSIM and LPIPS between a generated and a reference clip.

Convention (all pixel metrics):
    Frames are ``uint8`` RGB ``(T, H, W, 3)``, compared frame ``t`` with frame ``t``. A metric is
    computed per frame, averaged over the frames of a clip, and the clip means are averaged
    over clips (by `evaluate`). The generated and reference frames must have the same size
    (`evaluate` resizes the generated clip to the reference's size when they differ, and
    records it).

HOI-region mode (ManiVideo reports PSNR/SSIM on the hand-object region): each frame is
cropped to one box (the union of the reference's hand boxes and object box, with a margin;
see `evaluate.hoi_boxes`), the same box in both clips; frames without a box are left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- PSNR


def psnr_frames(gen: np.ndarray, ref: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-frame PSNR in dB.

    Definition: ``PSNR = 10 log10(MAX^2 / MSE)``, MSE over all pixels and the three RGB
    channels of the frame, ``MAX = data_range = 255`` for uint8 frames (the convention of
    ``skimage.metrics.peak_signal_noise_ratio`` and of the video-generation papers that report
    PSNR per frame). Identical frames give ``inf``.
    """
    g = np.asarray(gen, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"shape mismatch {g.shape} vs {r.shape}")
    if g.ndim == 3:
        g, r = g[None], r[None]
    mse = ((g - r) ** 2).reshape(len(g), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range ** 2 / mse)


def mean_psnr(values: np.ndarray, cap: float | None = None) -> float:
    """Mean of per-frame PSNRs (``inf`` stays ``inf`` unless ``cap`` is given)."""
    v = np.asarray(values, dtype=np.float64)
    if cap is not None:
        v = np.minimum(v, cap)
    return float(v.mean()) if len(v) else math.nan


# ----------------------------------------------------------------------------- SSIM

SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def ssim_frame(gen: np.ndarray, ref: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of one RGB frame pair.

    Definition (Wang et al. 2004, as ``skimage.metrics.structural_similarity(...,
    channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255)`` computes it): local means, variances and covariance under an 11x11
    Gaussian window (sigma 1.5, truncated at 3.5 sigma), ``K1 = 0.01``, ``K2 = 0.03``,
    ``C_i = (K_i * 255)^2``; the SSIM map is averaged after dropping a 5-px border (skimage's
    crop), and the three channels are averaged.
    """
    import cv2

    g = np.asarray(gen, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"shape mismatch {g.shape} vs {r.shape}")
    if g.ndim == 2:
        g, r = g[..., None], r[..., None]
    radius = int(3.5 * SSIM_SIGMA + 0.5)  # scipy.ndimage.gaussian_filter's truncate=3.5
    ksize = 2 * radius + 1
    if min(g.shape[:2]) < ksize:
        return math.nan
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (ksize, ksize), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    vals = []
    for c in range(g.shape[2]):
        x, y = np.ascontiguousarray(g[..., c]), np.ascontiguousarray(r[..., c])
        ux, uy = blur(x), blur(y)
        vx = blur(x * x) - ux * ux
        vy = blur(y * y) - uy * uy
        vxy = blur(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        vals.append(s[radius:-radius, radius:-radius].mean())
    return float(np.mean(vals))


def ssim_frames(gen: np.ndarray, ref: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-frame SSIM (see `ssim_frame`) over ``(T, H, W, 3)`` clips."""
    return np.array([ssim_frame(g, r, data_range) for g, r in zip(gen, ref)], dtype=np.float64)


# ----------------------------------------------------------------------------- crops


def crop_pairs(gen: np.ndarray, ref: np.ndarray, boxes: np.ndarray):
    """Yield ``(t, gen_crop, ref_crop)`` for frames with a finite xyxy box (pixel edges, clipped)."""
    H, W = ref.shape[1:3]
    for t, b in enumerate(np.asarray(boxes, dtype=np.float64)):
        if not np.all(np.isfinite(b)):
            continue
        x0, y0 = max(0, int(math.floor(b[0]))), max(0, int(math.floor(b[1])))
        x1, y1 = min(W, int(math.ceil(b[2]))), min(H, int(math.ceil(b[3])))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        yield t, gen[t, y0:y1, x0:x1], ref[t, y0:y1, x0:x1]


# ----------------------------------------------------------------------------- LPIPS

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_LIN_FILE = "lpips_alex_v0.1.pth"
# AlexNet `features` indices of the five LPIPS slices (lpips.pretrained_networks.alexnet)
_ALEX_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
_ALEX_CHANNELS = (64, 192, 384, 256, 256)


def lpips_lin_path(weights_dir=None, explicit=None) -> Path:
    """The LPIPS v0.1 linear-layer weights for AlexNet.

    Looked up as ``lpips_alex_v0.1.pth`` in the weights folders, else the ``weights/v0.1/alex.pth``
    that the ``lpips`` PyPI package ships (BSD-2, found without importing the package).
    """
    import importlib.util

    from ..errors import MissingWeightsError
    from ..weights import find_weights

    try:
        return find_weights(LPIPS_LIN_FILE, what="LPIPS v0.1 AlexNet linear layers", explicit=explicit,
                            weights_dir=weights_dir)
    except MissingWeightsError as exc:
        spec = importlib.util.find_spec("lpips")
        if spec is not None and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
            if p.exists():
                return p
        raise exc


class LPIPSAlex:
    """LPIPS (Zhang et al. 2018, v0.1, AlexNet backbone) from local files.

    Definition: inputs scaled to [-1, 1], then LPIPS's ScalingLayer (shift
    ``[-.030, -.088, -.188]``, scale ``[.458, .448, .450]``); AlexNet ``features`` activations
    after relu1..relu5; each unit-normalised over channels (eps 1e-10); squared difference;
    a learned non-negative 1x1 conv per layer (the v0.1 "lin" weights); spatial mean; summed
    over the five layers. Same as ``lpips.LPIPS(net='alex', version='0.1')`` at the frame's own
    resolution (no resizing). Lower is more similar; identical frames give 0.

    Weights: torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``) and the LPIPS lin
    layers (`lpips_lin_path`).
    """

    def __init__(self, alexnet_path: str | Path, lin_path: str | Path, device: str = "cpu"):
        import torch
        import torchvision

        alex = torchvision.models.alexnet(weights=None)
        sd = torch.load(str(alexnet_path), map_location="cpu", weights_only=True)
        alex.load_state_dict(sd)
        self.features = alex.features[:12].eval().to(device)
        lin_sd = torch.load(str(lin_path), map_location="cpu", weights_only=True)
        self.lins = []
        for k, ch in enumerate(_ALEX_CHANNELS):
            conv = torch.nn.Conv2d(ch, 1, 1, bias=False)
            conv.weight.data.copy_(lin_sd[f"lin{k}.model.1.weight"])
            self.lins.append(conv.eval().to(device))
        self.shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1).to(device)
        self.scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1).to(device)
        self.device = device

    def _feats(self, x):
        x = (x - self.shift) / self.scale
        outs = []
        for a, b in _ALEX_SLICES:
            for i in range(a, b):
                x = self.features[i](x)
            outs.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return outs

    def __call__(self, gen: np.ndarray, ref: np.ndarray, batch: int = 4) -> np.ndarray:
        """Per-frame LPIPS of uint8 RGB clips ``(T, H, W, 3)``."""
        import torch

        out = []
        with torch.inference_mode():
            for s in range(0, len(gen), batch):
                g = torch.from_numpy(np.ascontiguousarray(gen[s:s + batch])).to(self.device)
                r = torch.from_numpy(np.ascontiguousarray(ref[s:s + batch])).to(self.device)
                g = g.permute(0, 3, 1, 2).float() / 127.5 - 1
                r = r.permute(0, 3, 1, 2).float() / 127.5 - 1
                val = 0
                for lin, fg, fr in zip(self.lins, self._feats(g), self._feats(r)):
                    val = val + lin((fg - fr) ** 2).mean(dim=(2, 3))
                out.append(val[:, 0].double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)
