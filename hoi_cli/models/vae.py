"""Latent space: an optional diffusers ``AutoencoderKL`` from a local folder, else pixel patches.

Pixel mode (no VAE, the default) is the identity: the DiT patchifies RGB in [-1, 1]
directly, so the model trains with no pretrained weights at all. VAE mode loads a
diffusers-format folder (``config.json`` + weights, as written by ``save_pretrained``)
with ``local_files_only=True``; nothing is downloaded. The VAE is frozen, runs per frame,
and uses the posterior mean times ``scaling_factor`` (deterministic encodes).

``diffusers`` is imported only when a VAE folder is given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import BadInputError, MissingWeightsError
from .config import ModelConfig


@dataclass(frozen=True)
class VAEInfo:
    """What a diffusers VAE folder's ``config.json`` says about its latent space."""

    kind: str  # the diffusers class: AutoencoderKL (2D, per frame) or AutoencoderKLWan (3D causal)
    latent_channels: int
    spatial_factor: int  # pixels per latent pixel, per side
    temporal_factor: int  # frames per latent frame (1: per-frame)
    scaling_factor: float


def _config_file(path: Path) -> Path:
    if not (path / "config.json").exists():
        hint = ("this looks like a whole diffusers model folder: give its vae/ subfolder"
                if (path / "vae" / "config.json").exists() else
                "give --vae a folder written by AutoencoderKL.save_pretrained")
        raise MissingWeightsError("the VAE (diffusers AutoencoderKL folder)", "config.json", [str(path)], hint)
    return path / "config.json"


def read_vae_config(path: str | Path) -> VAEInfo:
    """The latent space of the diffusers VAE folder ``path`` from its ``config.json`` (nothing loaded).

    ``AutoencoderKL``: ``latent_channels``, spatial factor ``2 ** (len(block_out_channels) - 1)`` (as the
    diffusers pipelines compute it), per frame. ``AutoencoderKLWan``: ``z_dim`` channels, spatial factor
    ``scale_factor_spatial`` (else ``2 ** (len(dim_mult) - 1)`` times ``patch_size``), temporal factor
    ``scale_factor_temporal`` (else ``2 ** sum(temperal_downsample)``). Anything else: `BadInputError`."""
    import json

    path = Path(path).expanduser()
    try:
        vc = json.loads(_config_file(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}/config.json is not JSON ({exc})", "give --vae a diffusers VAE folder") from None
    kind = vc.get("_class_name") or ("AutoencoderKLWan" if "z_dim" in vc else
                                     "AutoencoderKL" if "latent_channels" in vc else "")
    if kind == "AutoencoderKL":
        return VAEInfo(kind, int(vc.get("latent_channels", 4)), 2 ** (len(vc.get("block_out_channels", [1])) - 1), 1,
                       float(vc.get("scaling_factor") or 1.0))
    if kind == "AutoencoderKLWan":
        spatial = vc.get("scale_factor_spatial") or 2 ** (len(vc.get("dim_mult", [1, 2, 4, 4])) - 1) * (
            vc.get("patch_size") or 1)
        temporal = vc.get("scale_factor_temporal") or 2 ** sum(bool(d) for d in vc.get("temperal_downsample",
                                                                                        [False, True, True]))
        return VAEInfo(kind, int(vc.get("z_dim", 16)), int(spatial), int(temporal), 1.0)
    raise BadInputError(f"{path} holds a {kind or 'VAE of unknown class'} (config.json), not an AutoencoderKL",
                        "give --vae a diffusers AutoencoderKL folder, or train without --vae (pixel mode)")


def load_vae(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A frozen diffusers AutoencoderKL from a local folder, or a clear error."""
    path = Path(path).expanduser()
    check_per_frame_vae(path, read_vae_config(path))
    try:
        from diffusers import AutoencoderKL
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BadInputError("a VAE folder was given but diffusers is not installed",
                            "pip install diffusers, or train in pixel mode without --vae") from exc
    vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
    vae.requires_grad_(False)
    return vae.to(device).eval()


def check_per_frame_vae(path: Path, info: VAEInfo) -> None:
    """The from-scratch DiT encodes frame by frame: a video VAE (temporal compression) is refused."""
    if info.kind != "AutoencoderKL" or info.temporal_factor != 1:
        raise BadInputError(
            f"{path} is an {info.kind} ({info.latent_channels} latent channels, {info.spatial_factor}x spatial, "
            f"{info.temporal_factor}x temporal compression); the from-scratch DiT encodes frame by frame",
            "give --vae a 2D AutoencoderKL folder, or fine-tune Wan on it: hoi train --base wan-vace-1.3b --base-dir ...")


def config_for_vae(cfg: ModelConfig, vae_path: str | Path, patch_size: int | None = None) -> ModelConfig:
    """``cfg`` switched to the latent space of the VAE in ``vae_path`` (reads its config only)."""
    info = read_vae_config(vae_path)
    check_per_frame_vae(Path(vae_path).expanduser(), info)
    return replace(cfg, vae_path=str(vae_path), latent_channels=info.latent_channels,
                   vae_downsample=info.spatial_factor, vae_scaling_factor=info.scaling_factor,
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

    def to(self, device) -> LatentCodec:
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
