"""Temporal metrics of one clip: subject consistency (VBench) and motion smoothness.

Both are computed on each clip alone (the generated one; `evaluate` also reports the
reference clip's value as a baseline).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DINO_FILE = "dino_vitbase16_pretrain.pth"
AMT_FILE = "amt-s_torchscript.pt"

# ----------------------------------------------------------------------------- DINO ViT-B/16


def build_dino_vit(dim: int = 768, depth: int = 12, heads: int = 12, patch: int = 16):
    """DINO's ViT (facebookresearch/dino ``vision_transformer``; defaults = ``vit_base``, i.e.
    ViT-B/16), random init.

    Same parameter names as ``dino_vitbase16_pretrain.pth``; ``forward`` returns the
    final-norm CLS token (768-d for ViT-B), with DINO's bicubic position-embedding
    interpolation for inputs other than 224x224.
    """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3, bias=True)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(dim, dim * 4)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(dim * 4, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = Attention()
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = Mlp()

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_size = patch
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = PatchEmbed()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, (224 // patch) ** 2 + 1, dim))
            self.blocks = nn.ModuleList([Block() for _ in range(depth)])
            self.norm = nn.LayerNorm(dim, eps=1e-6)

        def interpolate_pos_encoding(self, x, w, h):
            npatch = x.shape[1] - 1
            N = self.pos_embed.shape[1] - 1
            if npatch == N and w == h:
                return self.pos_embed
            class_pos = self.pos_embed[:, 0]
            patch_pos = self.pos_embed[:, 1:]
            w0, h0 = w // patch + 0.1, h // patch + 0.1
            s = int(math.sqrt(N))
            patch_pos = nn.functional.interpolate(
                patch_pos.reshape(1, s, s, dim).permute(0, 3, 1, 2),
                scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)), mode="bicubic")
            patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
            return torch.cat((class_pos.unsqueeze(0), patch_pos), dim=1)

        def forward(self, x):
            B, nc, w, h = x.shape  # DINO's naming: w is the height here
            x = self.patch_embed(x)
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
            x = x + self.interpolate_pos_encoding(x, w, h)
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)[:, 0]

    return ViT()


class DinoFeatures:
    """VBench's DINO image features: ``dino_transform(224)`` then the CLS token.

    Transform (VBench ``utils.dino_transform``): resize the shorter side to 224 (torchvision
    ``Resize(224, antialias=False)``, bilinear, aspect kept, no crop), ``/255``, ImageNet
    normalisation (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225).
    """

    def __init__(self, weights_path: str | Path, device: str = "cpu"):
        import torch

        sd = torch.load(str(weights_path), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "teacher" in sd and isinstance(sd["teacher"], dict):
            sd = {k.replace("backbone.", ""): v for k, v in sd["teacher"].items() if k.startswith("backbone.")}
        sd = {k.replace("module.", ""): v for k, v in sd.items() if not k.startswith("head.")}
        # the architecture from the file (ViT-B/16 for the real one): width, depth, 64-d heads
        dim = int(sd["pos_embed"].shape[-1])
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        patch = int(sd["patch_embed.proj.weight"].shape[-1])
        net = build_dino_vit(dim, depth, max(1, dim // 64), patch)
        net.load_state_dict(sd)
        self.net = net.eval().to(device)
        self.device = device
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def __call__(self, frames: np.ndarray, batch: int = 4) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 -> ``(T, 768)`` L2-normalised features."""
        import torch
        import torch.nn.functional as F
        from torchvision.transforms import functional as TF

        out = []
        with torch.inference_mode():
            for s in range(0, len(frames), batch):
                x = torch.from_numpy(np.ascontiguousarray(frames[s:s + batch])).permute(0, 3, 1, 2)
                x = TF.resize(x, 224, antialias=False).float() / 255.0
                x = ((x - self.mean) / self.std).to(self.device)
                out.append(F.normalize(self.net(x), dim=-1, p=2).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 768))


def subject_consistency_from_features(feats: np.ndarray) -> float:
    """VBench subject consistency of one clip from its per-frame unit features.

    Definition (VBench ``subject_consistency``): for frames ``i = 1..T-1``,
    ``(max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2``, averaged over the ``T-1``
    frames. In [0, 1]; 1 = every frame's subject looks like the first and previous frame's.
    (VBench's overall score divides the sum over all clips by the number of such frames; with
    equal-length clips that is the mean of the clip values.)
    """
    f = np.asarray(feats, dtype=np.float64)
    if len(f) < 2:
        return math.nan
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    prev = np.maximum(0.0, (f[:-1] * f[1:]).sum(1))
    first = np.maximum(0.0, (f[:1] * f[1:]).sum(1))
    return float(((prev + first) / 2).mean())


# ----------------------------------------------------------------------------- motion smoothness


def _vfi_score(frames: np.ndarray, interpolate) -> float:
    """VBench's motion-smoothness scoring around an interpolator.

    The even frames ``0, 2, 4, ...`` are kept; between each consecutive pair the midpoint
    frame is interpolated and compared with the real odd frame: mean absolute difference
    over pixels and channels on uint8 (``cv2.absdiff``), averaged over the odd frames; the
    score is ``(255 - mean_diff) / 255`` (VBench ``MotionSmoothness.motion_score``).
    """
    import cv2

    diffs = []
    for i in range(1, len(frames) - 1, 2):
        mid = interpolate(frames[i - 1], frames[i + 1])
        diffs.append(float(np.mean(cv2.absdiff(np.ascontiguousarray(frames[i]), mid))))
    if not diffs:
        return math.nan
    return (255.0 - float(np.mean(diffs))) / 255.0


def flow_midpoint(f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """Weight-free midpoint interpolation with Farneback optical flow.

    Flows ``F01`` and ``F10`` (OpenCV Farneback on grey frames: pyr_scale 0.5, 5 levels,
    window 21, 5 iterations, poly_n 7, sigma 1.5); flows from the midpoint by Super SloMo's
    linear approximation at ``t = 0.5``: ``F_t0 = -0.25 F01 + 0.25 F10``, ``F_t1 = -F_t0``;
    both frames backward-warped (bilinear, replicated border) and averaged.
    """
    import cv2

    g0 = cv2.cvtColor(f0, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(f1, cv2.COLOR_RGB2GRAY)
    args = (None, 0.5, 5, 21, 5, 7, 1.5, 0)
    f01 = cv2.calcOpticalFlowFarneback(g0, g1, *args)
    f10 = cv2.calcOpticalFlowFarneback(g1, g0, *args)
    ft0 = -0.25 * f01 + 0.25 * f10
    ft1 = -ft0
    h, w = g0.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    w0 = cv2.remap(f0, gx + ft0[..., 0], gy + ft0[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    w1 = cv2.remap(f1, gx + ft1[..., 0], gy + ft1[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return ((w0.astype(np.float32) + w1.astype(np.float32)) / 2 + 0.5).astype(np.uint8)


def motion_smoothness_flow(frames: np.ndarray) -> float:
    """Motion smoothness, weight-free optical-flow-interpolation variant ("motion_smoothness_flow").

    VBench's scoring (`_vfi_score`) with `flow_midpoint` in place of the AMT-S network. Not
    numerically comparable with VBench's AMT-based values (Farneback interpolation is
    worse than AMT, so scores are lower on the same video), but it ranks clips the same way
    in spirit: jerky or flickering motion interpolates badly. In [0, 1], higher = smoother.
    """
    return _vfi_score(np.asarray(frames), flow_midpoint)


class AMTInterpolator:
    """AMT-S frame interpolation from a local TorchScript export (``amt-s_torchscript.pt``).

    Contract of the file: ``model(img0, img1, embt) -> imgt`` with ``img0, img1`` float
    ``(1, 3, H, W)`` in [0, 1], ``embt`` ``(1, 1, 1, 1)`` = 0.5, returning the interpolated
    frame ``(1, 3, H, W)`` in [0, 1] (a wrapper around the official AMT ``Model.forward(...,
    eval=True)['imgt_pred']``). Frames are padded to a multiple of 16 (replicate) as VBench's
    ``InputPadder`` does and cropped back. The official ``amt-s.pth`` state dict is not
    loadable directly: this toolkit does not carry the AMT architecture.
    """

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch

        self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device

    def __call__(self, f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = f0.shape[:2]
        ph, pw = (16 - h % 16) % 16, (16 - w % 16) % 16

        def t(x):
            x = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0
            return F.pad(x, (0, pw, 0, ph), mode="replicate").to(self.device)

        with torch.inference_mode():
            out = self.model(t(f0), t(f1), torch.full((1, 1, 1, 1), 0.5, device=self.device))
        out = out[0, :, :h, :w].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return (out * 255.0 + 0.5).astype(np.uint8)


def motion_smoothness_amt(frames: np.ndarray, interpolator: AMTInterpolator) -> float:
    """Motion smoothness (VBench): `_vfi_score` with AMT-S midpoint interpolation."""
    return _vfi_score(np.asarray(frames), interpolator)
