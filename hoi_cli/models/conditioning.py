"""Condition encoders of the four systems, as small modules the DiT composes.

- `ConvGuider`: Re-HOLD's 4-layer conv layout encoder, and the same shape of network used
  as ManiVideo's MLO pose guider and for Re-HOLD's hand-render structural guidance; its
  output is added to the noisy latent before patch embedding.
- `MLOTokenizer`: ManiVideo's MLO normals + occlusion confidence as conv + MLP tokens for
  cross-attention.
- `MemoryBanks`: Re-HOLD's learnable hand and object memory banks (cross-attention keys
  and values, attended only from tokens inside the hand / object masks).
- `MoEFeedForward`: CoInteract's hand/base mixture-of-experts FFN with a router whose
  output is supervised by the hand regions (`router_loss`).
- `region_fractions`: the fraction of each token's pixels inside a mask, which drives the
  memory-bank mask, the GenHOI reference gate and the router target.

All maps arrive at the latent grid resolution ``(h, w)`` as ``(B, T, C, h, w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_maps(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, T, C, H, W)`` maps to ``(B, T, C, *hw)`` (area averaging when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    b, t = x.shape[:2]
    flat = x.flatten(0, 1).float()
    mode = "area" if flat.shape[-2] >= hw[0] and flat.shape[-1] >= hw[1] else "bilinear"
    out = F.interpolate(flat, size=hw, mode=mode) if mode == "area" else \
        F.interpolate(flat, size=hw, mode=mode, align_corners=False)
    return out.unflatten(0, (b, t)).to(x.dtype)


def region_fractions(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Fraction of each token's latent pixels inside ``mask (B, T, 1, h, w)``: ``(B, T*h/p*w/p)``."""
    b, t = mask.shape[:2]
    pooled = F.avg_pool2d(mask.flatten(0, 1).float(), patch)  # (B*T, 1, h/p, w/p)
    return pooled.reshape(b, t * pooled.shape[-2] * pooled.shape[-1])


def zero_module(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class ConvGuider(nn.Module):
    """Four 3x3 conv layers, per frame: ``(B,T,C_in,h,w) -> (B,T,C_out,h,w)``.

    The last layer is zero-initialised (with ``zero_init``) so that a new guidance path
    starts as a no-op, ControlNet-style.
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: int = 16, zero_init: bool = True):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, out_ch, 3, padding=1),
        )
        if zero_init:
            zero_module(self.net[-1])

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        b, t = maps.shape[:2]
        return self.net(maps.flatten(0, 1)).unflatten(0, (b, t))


class MLOTokenizer(nn.Module):
    """MLO normals (3 channels per layer) + occlusion confidence (1 per layer) -> tokens ``(B, T*h'*w', dim)``.

    A strided conv pools ``stride x stride`` patches into one token (``h' = h/(p*stride)``),
    then a two-layer MLP.
    """

    def __init__(self, in_ch: int, dim: int, patch: int, stride: int, hidden: int = 32):
        super().__init__()
        k = patch * stride
        self.stride = stride
        self.conv = nn.Sequential(nn.Conv2d(in_ch, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, dim, k, stride=k))
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(dim, dim))

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        b, t = maps.shape[:2]
        y = self.conv(maps.flatten(0, 1))  # (B*T, dim, h', w')
        hh, ww = y.shape[-2:]
        y = y.flatten(2).transpose(1, 2).reshape(b, t * hh * ww, -1)
        return self.mlp(y), (t, hh, ww)


class MemoryBanks(nn.Module):
    """Learnable hand and object memory banks: ``(2*memory_size, dim)`` context tokens.

    The first ``memory_size`` rows are the hand bank, the rest the object bank; the DiT
    masks the cross-attention so that a video token reads the hand bank only when it lies
    inside the hand mask, and the object bank only inside the object mask.
    """

    def __init__(self, memory_size: int, dim: int):
        super().__init__()
        self.memory_size = memory_size
        self.hand = nn.Parameter(torch.empty(memory_size, dim))
        self.object = nn.Parameter(torch.empty(memory_size, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.02^2), hand bank then object bank (draws nothing on the meta device)."""
        for p in (self.hand, self.object):
            p.copy_(torch.randn(p.shape, device=p.device, dtype=p.dtype) * 0.02)

    def forward(self, batch: int) -> torch.Tensor:
        return torch.cat([self.hand, self.object], 0).unsqueeze(0).expand(batch, -1, -1)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MoEFeedForward(nn.Module):
    """Hand/base mixture of experts: ``y = g * hand(x) + (1 - g) * base(x)``, ``g = sigmoid(router(x))``.

    Soft (dense) routing with two experts; the router logit of a video token is supervised
    with binary cross-entropy against the fraction of its pixels inside the hand mask
    (`router_loss`), so the hand expert learns hand regions.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.base = FeedForward(dim, hidden)
        self.hand = FeedForward(dim, hidden)
        self.router = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.router(x).squeeze(-1)
        g = torch.sigmoid(logit).unsqueeze(-1)
        return g * self.hand(x) + (1 - g) * self.base(x), logit


def router_loss(logits: list[torch.Tensor], hand_fraction: torch.Tensor) -> torch.Tensor:
    """Mean BCE between router logits ``(B, N)`` of each block and the hand fractions ``(B, N)``."""
    target = hand_fraction.float().clamp(0, 1)
    losses = [F.binary_cross_entropy_with_logits(lg.float(), target) for lg in logits]
    return torch.stack(losses).mean()
