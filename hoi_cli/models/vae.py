"""Latent space: an optional diffusers ``AutoencoderKL`` from a local folder, else pixel patches.

Pixel mode (no VAE, the default) is the identity: the DiT patchifies RGB in [-1, 1]
directly, so the model trains with no pretrained weights at all. VAE mode loads a
diffusers-format folder (``config.json`` + weights, as written by ``save_pretrained``)
with ``local_files_only=True``; nothing is downloaded. The VAE is frozen, runs per frame,
and uses the posterior mean times ``scaling_factor`` (deterministic encodes).

``diffusers`` is imported only when a VAE folder is given.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..errors import BadInputError, MissingWeightsError
from .config import ModelConfig


def load_vae(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A frozen diffusers AutoencoderKL from a local folder, or a clear error."""
    path = Path(path).expanduser()
    if not (path / "config.json").exists():
        raise MissingWeightsError("the VAE (diffusers AutoencoderKL folder)", "config.json", [str(path)],
                                  "give --vae a folder written by AutoencoderKL.save_pretrained")
    try:
        from diffusers import AutoencoderKL
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BadInputError("a VAE folder was given but diffusers is not installed",
                            "pip install diffusers, or train in pixel mode without --vae") from exc
    vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
    vae.requires_grad_(False)
    return vae.to(device).eval()


def config_for_vae(cfg: ModelConfig, vae_path: str | Path, patch_size: int | None = None) -> ModelConfig:
    """``cfg`` switched to the latent space of the VAE in ``vae_path`` (reads its config only)."""
    import json

    vc = json.loads((Path(vae_path).expanduser() / "config.json").read_text())
    down = 2 ** (len(vc.get("block_out_channels", [1])) - 1)
    return replace(cfg, vae_path=str(vae_path), latent_channels=int(vc.get("latent_channels", 4)),
                   vae_downsample=down, vae_scaling_factor=float(vc.get("scaling_factor", 1.0) or 1.0),
                   patch_size=patch_size or min(cfg.patch_size, 2)).validate()


class LatentCodec:
    """Video <-> latent. ``vae=None`` is pixel mode (identity)."""

    def __init__(self, vae=None, scaling_factor: float = 1.0, chunk: int = 16):
        self.vae = vae
        self.scaling_factor = scaling_factor
        self.chunk = chunk

    @property
    def is_pixel(self) -> bool:
        return self.vae is None

    def to(self, device) -> "LatentCodec":
        if self.vae is not None:
            self.vae.to(device)
        return self

    @torch.no_grad()
    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] -> ``(N, C, h, w)``."""
        if self.vae is None:
            return x
        dt = next(self.vae.parameters()).dtype
        outs = [self.vae.encode(c.to(dt)).latent_dist.mean for c in x.split(self.chunk)]
        return (torch.cat(outs) * self.scaling_factor).to(x.dtype)

    @torch.no_grad()
    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return z
        dt = next(self.vae.parameters()).dtype
        outs = [self.vae.decode((c / self.scaling_factor).to(dt)).sample for c in z.split(self.chunk)]
        return torch.cat(outs).to(z.dtype)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, T, C, h, w)``."""
        b, t = video.shape[:2]
        return self.encode_images(video.flatten(0, 1)).unflatten(0, (b, t))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, t = latents.shape[:2]
        return self.decode_images(latents.flatten(0, 1)).unflatten(0, (b, t))


def codec_for(cfg: ModelConfig, device: str | torch.device = "cpu", vae_path: str | Path | None = None) -> LatentCodec:
    """The codec a config needs: pixel mode, or the VAE at ``vae_path`` / ``cfg.vae_path``."""
    path = vae_path or cfg.vae_path
    if not path:
        return LatentCodec()
    return LatentCodec(load_vae(path, device), cfg.vae_scaling_factor)
