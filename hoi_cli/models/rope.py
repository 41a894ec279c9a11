"""3D rotary position embedding over (time, height, width), and GenHOI's head-sliding RoPE.

Convention (positions):
    A token's position is a float triple ``(t, y, x)`` in token-grid units: ``t`` is the
    latent frame index inside the current window (0 .. T-1), ``y``/``x`` the patch row and
    column (0 .. h/p-1, 0 .. w/p-1). Coarser tokens (MLO tokens pooled over ``s x s``
    patches) sit at the centre of the patches they cover: ``y = s*i + (s-1)/2``.

Convention (split of the head dimension):
    The ``D/2`` rotation pairs of a head of size ``D`` are split into time, height and width
    groups: ``n_y = n_x = (D/2) // 3`` and ``n_t = D/2 - 2*n_y``. Pair ``k`` of an axis group of
    size ``n`` rotates by ``pos * theta**(-k/n)``. Pairs are adjacent channels ``(2k, 2k+1)``.

Head-sliding RoPE (GenHOI):
    Reference-object tokens have no time of their own. With ordinary RoPE they would sit at
    one time position and be attended by nearby frames more than by far ones. Head-sliding
    RoPE gives them a different time position in every attention head, spread evenly over
    the clip's time span, so that across heads the reference is "near" every frame:

        t_ref(h) = h * (T - 1) / (H - 1)     for heads h = 0 .. H-1 (H > 1)
        t_ref(0) = (T - 1) / 2                for H = 1

    where ``T`` is the number of latent frames in the window and ``H`` the number of heads.
    The reference tokens keep their spatial ``(y, x)`` patch positions. Without head
    sliding, every head places the reference at ``t = 0``.
"""

from __future__ import annotations

import torch


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Number of rotation pairs given to (t, y, x) for a head of size ``head_dim``."""
    pairs = head_dim // 2
    n_s = pairs // 3
    return pairs - 2 * n_s, n_s, n_s


def head_sliding_times(num_heads: int, num_frames: int) -> torch.Tensor:
    """Time position of the reference in each head, ``(H,)`` float: see the module docstring."""
    if num_heads == 1:
        return torch.tensor([(num_frames - 1) / 2.0])
    h = torch.arange(num_heads, dtype=torch.float64)
    return (h * (num_frames - 1) / (num_heads - 1)).float()


def grid_positions(t: int, h: int, w: int, stride: int = 1, device=None) -> torch.Tensor:
    """Positions ``(t*h*w, 3)`` of a (t, h, w) token grid, t-major then row-major.

    ``stride`` > 1 places each token at the centre of the ``stride x stride`` patches it pools.
    """
    off = (stride - 1) / 2.0
    tt = torch.arange(t, dtype=torch.float32, device=device)
    yy = torch.arange(h, dtype=torch.float32, device=device) * stride + off
    xx = torch.arange(w, dtype=torch.float32, device=device) * stride + off
    g = torch.stack(torch.meshgrid(tt, yy, xx, indexing="ij"), dim=-1)
    return g.reshape(-1, 3)


def reference_positions(h: int, w: int, num_heads: int, num_frames: int, sliding: bool,
                        device=None) -> torch.Tensor:
    """Positions ``(H, h*w, 3)`` of reference tokens per head (head-sliding or t = 0)."""
    sp = grid_positions(1, h, w, device=device)  # (R, 3) with t = 0
    pos = sp.unsqueeze(0).repeat(num_heads, 1, 1)
    if sliding:
        pos[..., 0] = head_sliding_times(num_heads, num_frames).to(pos).unsqueeze(1)
    return pos


def rope_angles(pos: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles ``(..., L, D/2)`` for positions ``(..., L, 3)``."""
    n_t, n_y, n_x = axis_pairs(head_dim)
    parts = []
    for axis, n in enumerate((n_t, n_y, n_x)):
        if n == 0:
            continue
        inv = theta ** (-torch.arange(n, dtype=torch.float32, device=pos.device) / n)
        parts.append(pos[..., axis:axis + 1].float() * inv)
    return torch.cat(parts, dim=-1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, H, L, D)`` by ``angles`` broadcastable to ``(B, H, L, D/2)``."""
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x2 = x.unflatten(-1, (-1, 2))
    a, b = x2[..., 0], x2[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return out.flatten(-2)
