"""FID: Fréchet Inception Distance between the frames of generated and reference videos.

Definition (Heusel et al. 2017): ``FID = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))``
over 2048-d Inception-v3 pool3 features (the final average pool) of all frames, the frames of
all clips pooled into one set per side. Covariances are unbiased (``np.cov``, N-1).
``frechet_distance`` is pytorch-fid's formula (``scipy.linalg.sqrtm``, its eps fallback and
imaginary-part tolerance); `fid_from_features` computes the same number with an exact
eigenvalue route for the trace term (`trace_sqrt_product`), which is much faster for 2048-d
features and agrees with pytorch-fid within 1e-3 relative (tested).

Network: the TF-ported FID Inception (``pt_inception-2015-12-05-6726825d.pth``, the weights of
pytorch-fid and of TTUR's TensorFlow FID), 1008 classes, with pytorch-fid's patched blocks
(average pools without padding counted, max pool in the last block). Loaded from a local file.

Convention (resizing, recorded in the output as ``resize``):
    ``pytorch-fid`` (default): uint8 frame -> float in [0, 1] -> ``F.interpolate`` bilinear,
    ``align_corners=False``, no antialias, to 299x299 -> ``2x - 1``. This is what
    ``pytorch_fid.fid_score`` computes on PNG frames.
    ``clean-fid``: clean-fid's "clean" resize: each channel as a float32 PIL image resized
    bicubically (PIL's antialiased filter) to 299x299, clipped to [0, 255], then ``x/255*2-1``
    (clean-fid's ``pytorch_inception`` feature path, i.e. the same weights without the internal
    resize). Numbers from the two conventions are not comparable with each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
RESIZE_CONVENTIONS = ("pytorch-fid", "clean-fid")


def build_fid_inception():
    """The FID Inception-v3 graph (random init, no weights): torchvision's Inception-v3 with
    pytorch-fid's patched InceptionA/C/E blocks. ``state_dict()`` has the pt_inception keys."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from torchvision.models import inception as tvi

    class A(tvi.InceptionA):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return torch.cat([b1, b5, b3, bp], 1)

    class C(tvi.InceptionC):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = self.branch7x7dbl_1(x)
            for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                bd = m(bd)
            bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return torch.cat([b1, b7, bd, bp], 1)

    class E(tvi.InceptionE):
        def __init__(self, in_channels, max_pool: bool):
            super().__init__(in_channels)
            self.max_pool = max_pool

        def forward(self, x):
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            if self.max_pool:
                bp = F.max_pool2d(x, 3, 1, 1)
            else:
                bp = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            return torch.cat([b1, b3, bd, self.branch_pool(bp)], 1)

    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = A(192, pool_features=32)
    net.Mixed_5c = A(256, pool_features=64)
    net.Mixed_5d = A(288, pool_features=64)
    net.Mixed_6b = C(768, channels_7x7=128)
    net.Mixed_6c = C(768, channels_7x7=160)
    net.Mixed_6d = C(768, channels_7x7=160)
    net.Mixed_6e = C(768, channels_7x7=192)
    net.Mixed_7b = E(1280, max_pool=False)
    net.Mixed_7c = E(2048, max_pool=True)
    return net


class FIDFeatureExtractor:
    """2048-d pool3 features of uint8 RGB frames with the FID Inception from a local file."""

    def __init__(self, weights_path: str | Path, resize: str = "pytorch-fid", device: str = "cpu",
                 batch_size: int = 16):
        import torch

        if resize not in RESIZE_CONVENTIONS:
            raise ValueError(f"resize must be one of {RESIZE_CONVENTIONS}, got {resize!r}")
        net = build_fid_inception()
        sd = torch.load(str(weights_path), map_location="cpu", weights_only=True)
        net.load_state_dict(sd)
        net.eval().to(device)
        self.net = net
        self.resize = resize
        self.device = device
        self.batch_size = batch_size
        self.weights_path = Path(weights_path)

    def _trunk(self, x):
        n = self.net
        for m in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1,
                  n.Conv2d_4a_3x3, n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b,
                  n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = m(x)
        return x.mean(dim=(2, 3))

    def _prepare(self, frames: np.ndarray):
        import torch
        import torch.nn.functional as F

        if self.resize == "pytorch-fid":
            x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
            x = x.to(self.device)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            return 2 * x - 1
        from PIL import Image

        out = np.empty((len(frames), 3, 299, 299), dtype=np.float32)
        for i, f in enumerate(frames):
            for c in range(3):
                img = Image.fromarray(f[..., c].astype(np.float32), mode="F")
                out[i, c] = np.asarray(img.resize((299, 299), resample=Image.BICUBIC), dtype=np.float32)
        out = np.clip(out, 0, 255) / 255.0
        return torch.from_numpy(2 * out - 1).to(self.device)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 -> ``(N, 2048)`` float64 features."""
        import torch

        feats = []
        with torch.inference_mode():
            for s in range(0, len(frames), self.batch_size):
                x = self._prepare(frames[s:s + self.batch_size])
                feats.append(self._trunk(x).double().cpu().numpy())
        return np.concatenate(feats) if feats else np.zeros((0, 2048))


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``(N, D)`` features (N >= 2)."""
    f = np.asarray(feats, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` across SciPy versions (``disp`` is deprecated in 1.17, where
    some inputs still return ``(sqrtm, errest)``)."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = linalg.sqrtm(a)
    if isinstance(out, tuple):
        out = out[0]
    return np.asarray(out)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians (pytorch-fid's numerics)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"imaginary component {m} in the covariance square root")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def trace_sqrt_product(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """``Tr((S1 S2)^(1/2))`` for the unbiased covariances of two feature sets, without ``sqrtm``.

    ``S1 S2`` is similar to the PSD matrix ``S1^(1/2) S2 S1^(1/2)``, so the trace is the sum of
    the square roots of its (real, non-negative) eigenvalues. With centred features ``X1, X2``
    these are the squared singular values of ``X1 X2^T / sqrt((N1-1)(N2-1))``: an
    ``N1 x N2`` problem instead of a ``D x D`` one when there are fewer frames than
    feature dimensions. Exact, and equal to pytorch-fid's ``sqrtm`` route up to its numerical
    error (tested), at a fraction of the time.
    """
    x1 = np.asarray(feats1, dtype=np.float64)
    x2 = np.asarray(feats2, dtype=np.float64)
    x1 = x1 - x1.mean(0)
    x2 = x2 - x2.mean(0)
    n1, n2, d = len(x1), len(x2), x1.shape[1]
    if min(n1, n2) <= d:
        sv = np.linalg.svd(x1 @ x2.T, compute_uv=False)
        return float(sv.sum() / np.sqrt((n1 - 1) * (n2 - 1)))
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def fid_from_features(feats_gen: np.ndarray, feats_ref: np.ndarray) -> float:
    """FID between two feature sets (each needs at least 2 rows).

    Same value as ``frechet_distance(*feature_stats(g), *feature_stats(r))`` (pytorch-fid's
    formula) but with the trace term from `trace_sqrt_product`.
    """
    if len(feats_gen) < 2 or len(feats_ref) < 2:
        raise ValueError("FID needs at least 2 frames on each side")
    g = np.asarray(feats_gen, dtype=np.float64)
    r = np.asarray(feats_ref, dtype=np.float64)
    diff = g.mean(0) - r.mean(0)
    tr1 = float(np.var(g, axis=0, ddof=1).sum())
    tr2 = float(np.var(r, axis=0, ddof=1).sum())
    return float(diff @ diff + tr1 + tr2 - 2 * trace_sqrt_product(g, r))
