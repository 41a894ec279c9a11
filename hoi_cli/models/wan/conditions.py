"""One place that turns a batch of `hoi_cli.train.dataset` conditions into the Wan model's inputs.

Used by training (`hoi_cli.models.wan.train`) and sampling (`hoi_cli.models.wan.sample`) alike,
from the same batch keys (``video`` is needed for training only):

- VACE context (``control``, ``(B, 2z + 64, [1 +] F, h, w)``): the *source video* and the
  *generation mask* encoded as VACE does (``WanVACEPipeline.prepare_video_latents`` /
  ``prepare_masks``): ``inactive = src * (1 - m)`` and ``reactive = src * m`` VAE-encoded and
  normalised, and the mask's 8x8 pixel blocks as 64 channels at the latent frame rate.
  The source is 07_genhoi's object-removed video (``source_video``; `WanRunDataset` reads it)
  or, where that stage has not run, the frames with the mask region set to 0 (mid-grey).
  The mask is the union of the object and hand masks: the region the model repaints.
- Reference (VACE's reference image): the reference crop VAE-encoded as one extra latent frame
  *in front* of the clip (``n_ref = 1``), in the control (its latent + zeros, mask 0) and in the
  noisy latents (the model's output there is discarded), exactly as the VACE pipeline does.
- Token maps for the added paths: ``layout``, ``mlo`` (normals + occlusion), ``hand_render`` as
  pixel maps ``(B, T, C, H, W)``; ``region`` / ``hand`` / ``object``: per video token, the
  fraction of its pixels inside the hand-or-object / hand / object masks ``(B, F*hh*ww)``.

Frames to latent frames: Wan's causal VAE maps ``T = 4k + 1`` frames to ``F = k + 1`` latent
frames, frame 0 alone, then groups of 4 (`frame_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..conditioning import resize_maps
from .config import VAE_STRIDE


def frame_groups(num_frames: int) -> list[list[int]]:
    """The pixel frames behind each latent frame: ``[[0], [1..4], [5..8], ...]``."""
    if num_frames % VAE_STRIDE[0] != 1:
        raise ValueError(f"{num_frames} frames: Wan needs 4k + 1")
    return [[0]] + [list(range(i, i + 4)) for i in range(1, num_frames, 4)]


def group_frames(maps: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, T, C, H, W)`` maps over each latent frame's pixel frames: ``(B, F, C, H, W)``."""
    return torch.stack([maps[:, g].mean(1) for g in frame_groups(maps.shape[1])], 1)


def token_fractions(mask: torch.Tensor, token_hw: tuple[int, int]) -> torch.Tensor:
    """Fraction of each video token's pixels inside ``mask (B, T, 1, H, W)``: ``(B, F*hh*ww)``."""
    g = resize_maps(group_frames(mask.float()), token_hw)  # area average
    return g.flatten(1)


@dataclass
class WanInputs:
    control: torch.Tensor  # (B, 2z + s*s, n_ref + F, h, w)
    n_ref: int  # latent frames of reference in front (0 or 1)
    maps: dict = field(default_factory=dict)  # pixel maps (B, T, C, H, W): layout, mlo, hand_render
    fractions: dict = field(default_factory=dict)  # region, hand, object: (B, F*hh*ww)
    target: torch.Tensor | None = None  # (B, z, F, h, w) clean latents of ``video`` (training)
    structure: torch.Tensor | None = None  # (B, z, F, h, w) latents of CoInteract's structure video (training)

    def to(self, device, dtype=None) -> WanInputs:
        mv = lambda t: t.to(device=device, dtype=dtype or t.dtype)  # noqa: E731
        return WanInputs(mv(self.control), self.n_ref, {k: mv(v) for k, v in self.maps.items()},
                         {k: v.to(device) for k, v in self.fractions.items()},
                         None if self.target is None else mv(self.target),
                         None if self.structure is None else mv(self.structure))

    def window(self, f0: int, f1: int, t0: int, t1: int) -> WanInputs:
        """Latent frames ``f0:f1`` (plus the reference frame) and pixel frames ``t0:t1``."""
        ctrl = torch.cat([self.control[:, :, :self.n_ref], self.control[:, :, self.n_ref + f0:self.n_ref + f1]], 2)
        per = {k: v.unflatten(1, (-1, self.tokens_per_frame))[:, f0:f1].flatten(1) for k, v in self.fractions.items()}
        return WanInputs(ctrl, self.n_ref, {k: v[:, t0:t1] for k, v in self.maps.items()}, per,
                         None if self.target is None else self.target[:, :, f0:f1],
                         None if self.structure is None else self.structure[:, :, f0:f1])

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.control.shape[-2:]
        return (h // 2) * (w // 2)


def latent_stats(vae, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(1, z, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(1, z, 1, 1, 1)
    return mean, inv_std


@torch.no_grad()
def vae_encode(vae, video: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> normalised latents ``(B, z, F, h, w)`` (the posterior mode)."""
    lat = vae.encode(video.to(vae.dtype)).latent_dist.mode().float()
    mean, inv_std = latent_stats(vae, lat.device)
    return (lat - mean) * inv_std


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    mean, inv_std = latent_stats(vae, latents.device)
    return vae.decode((latents.float() / inv_std + mean).to(vae.dtype)).sample.float()


def mask_channels(mask: torch.Tensor, latent_frames: int) -> torch.Tensor:
    """VACE's mask context: ``(B, T, 1, H, W)`` -> ``(B, 64, F, H/8, W/8)`` (8x8 pixel blocks as channels,
    nearest-exact in time), as ``WanVACEPipeline.prepare_masks``."""
    b, t, _, H, W = mask.shape
    s = VAE_STRIDE[1]
    m = mask[:, :, 0].reshape(b, t, H // s, s, W // s, s).permute(0, 3, 5, 1, 2, 4).flatten(1, 2)
    return F.interpolate(m.float(), size=(latent_frames, H // s, W // s), mode="nearest-exact")


def generation_mask(batch: dict) -> torch.Tensor:
    """The region the model repaints: hand or object, ``(B, T, 1, H, W)`` in {0, 1}."""
    m = torch.maximum(batch["object_mask"], batch["hand_mask"])
    return (m > 0.5).float()


def source_video(batch: dict, mask: torch.Tensor) -> torch.Tensor:
    """07_genhoi's object-removed video where the batch has it, else the frames with the mask region at 0."""
    if batch.get("source_video") is not None:
        return batch["source_video"].float()
    return batch["video"].float() * (1 - mask)


def encode_clip(batch: dict, vae, *, with_target: bool) -> dict[str, torch.Tensor]:
    """The VAE part of a batch that does not change between epochs: the VACE context of the clip
    ``video_control (B, 2z + 64, F, h, w)`` and, ``with_target``, the clean latents ``target`` and,
    where the batch has it, ``structure``: 05_silhouette's structure video (RGB in [0, 1]) encoded."""
    mask = generation_mask(batch)
    src = source_video(batch, mask).permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)
    m5 = mask.permute(0, 2, 1, 3, 4)
    inactive = vae_encode(vae, src * (1 - m5))
    reactive = vae_encode(vae, src * m5)
    out = {"video_control": torch.cat([inactive, reactive, mask_channels(mask, inactive.shape[2])], 1)}
    if with_target:
        out["target"] = vae_encode(vae, batch["video"].float().permute(0, 2, 1, 3, 4))
        if batch.get("structure") is not None:
            out["structure"] = vae_encode(vae, batch["structure"].float().permute(0, 2, 1, 3, 4) * 2 - 1)
    return out


def build_inputs(batch: dict, vae, *, with_target: bool, with_reference: bool = True,
                 encoded: dict | None = None) -> WanInputs:
    """The model inputs of a batch (see the module docstring); ``with_target`` encodes ``video`` too.

    ``encoded``: `encode_clip`'s output for this batch, when cached (`LatentCache`); only the
    reference is encoded then.
    """
    enc = encoded if encoded is not None else encode_clip(batch, vae, with_target=with_target)
    control = enc["video_control"]
    n_ref = 0
    if with_reference and batch.get("reference") is not None:
        ref = vae_encode(vae, batch["reference"].float()[:, :, None])  # (B, z, 1, h, w)
        ref_ctrl = torch.cat([ref, torch.zeros_like(ref), control.new_zeros(ref.shape[0], control.shape[1] - 2 * ref.shape[1],
                                                                          1, *ref.shape[-2:])], 1)
        control = torch.cat([ref_ctrl.to(control.dtype), control], 2)
        n_ref = 1
    H, W = batch["hand_mask"].shape[-2:]
    token_hw = (H // (VAE_STRIDE[1] * 2), W // (VAE_STRIDE[2] * 2))
    maps = {"layout": batch["layout"].float(), "hand_render": batch["hand_render"].float(),
            "mlo": torch.cat([batch["mlo_normals"], batch["mlo_occlusion"]], 2).float()}
    fr = {"hand": token_fractions(batch["hand_mask"], token_hw), "object": token_fractions(batch["object_mask"], token_hw)}
    fr["region"] = torch.maximum(fr["hand"], fr["object"])
    return WanInputs(control, n_ref, maps, fr, enc.get("target") if with_target else None,
                     enc.get("structure") if with_target else None)


class LatentCache:
    """`encode_clip` outputs of training windows on disk, so each window is VAE-encoded once per run.

    One safetensors file per window in ``folder``, named by a digest of everything it depends on:
    the window (run folder, first frame, stride, frames, size), the manifests of the stages the
    conditions are read from (a rerun stage changes its manifest, so a stale entry is never
    reused) and the VAE (its config and a checksum of its weights). Files are written to a
    temporary name and renamed into place.
    """

    STAGES = ("00_frames", "03_segment", "07_genhoi")

    def __init__(self, folder, vae):
        import hashlib
        import json

        from pathlib import Path

        self.folder = Path(folder)
        h = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
        with torch.no_grad():
            for p in list(vae.parameters())[:8]:
                h.update(p.detach().float().cpu().numpy().tobytes())
        self.vae_tag = h.hexdigest()[:16]
        self.hits = self.misses = 0

    def key(self, run, start: int, stride: int, shape) -> str:
        import hashlib

        from pathlib import Path

        h = hashlib.sha256(f"{Path(run).resolve()}|{start}|{stride}|{tuple(shape)}|{self.vae_tag}".encode())
        for stage in self.STAGES:
            m = Path(run) / stage / "manifest.json"
            h.update(m.read_bytes() if m.exists() else b"-")
        return h.hexdigest()[:24]

    def get(self, batch: dict, vae, runs, stride: int) -> dict:
        """`encode_clip` of ``batch`` (``run_index`` and ``start`` per sample), from disk where cached."""
        import os

        from safetensors.torch import load_file, save_file

        parts = []
        for i in range(batch["hand_mask"].shape[0]):
            run = runs[int(batch["run_index"][i])]
            path = self.folder / f"{self.key(run, int(batch['start'][i]), stride, batch['hand_mask'].shape[1:])}.safetensors"
            if path.exists():
                self.hits += 1
                parts.append({k: v.to(batch["hand_mask"].device) for k, v in load_file(str(path)).items()})
                continue
            self.misses += 1
            one = {k: (v[i:i + 1] if torch.is_tensor(v) and v.ndim >= 1 else v) for k, v in batch.items()}
            enc = encode_clip(one, vae, with_target=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            save_file({k: v.detach().contiguous().cpu() for k, v in enc.items()}, str(tmp))
            os.replace(tmp, path)
            parts.append(enc)
        return {k: torch.cat([p[k] for p in parts], 0) for k in parts[0]}
