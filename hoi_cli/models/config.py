"""Model configuration: one dataclass, size presets and per-system conditioning switches.

The four systems' conditioning paths are independent boolean switches, so a recipe can
switch any subset on and the systems can be compared on one backbone:

=============  ==========================================================================
system         switches
=============  ==========================================================================
``rehold``     ``layout_encoder``, ``memory_banks``, ``hand_render_guidance``
``manivideo``  ``mlo_guider``, ``mlo_tokens``
``cointeract`` ``structure_stream``, ``moe``, ``rope3d``
``genhoi``     ``rope3d``, ``head_sliding_rope``, ``ref_gate``
``all``        every switch on
=============  ==========================================================================

Reference tokens (the reference object image patchified and run through the same
backbone, dropped with probability ``ref_dropout`` for classifier-free guidance) are on in
every system (``ref_tokens``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..conventions import MLO_LAYERS as _MLO_LAYERS

SYSTEM_SWITCHES: dict[str, dict[str, bool]] = {
    "rehold": dict(layout_encoder=True, memory_banks=True, hand_render_guidance=True),
    "manivideo": dict(mlo_guider=True, mlo_tokens=True),
    "cointeract": dict(structure_stream=True, moe=True, rope3d=True),
    "genhoi": dict(rope3d=True, head_sliding_rope=True, ref_gate=True),
}
SWITCH_NAMES = ("layout_encoder", "memory_banks", "hand_render_guidance", "mlo_guider", "mlo_tokens",
                "structure_stream", "moe", "rope3d", "head_sliding_rope", "ref_gate", "ref_tokens")
SYSTEMS = ("rehold", "manivideo", "cointeract", "genhoi", "all", "none")

# ManiVideo's MLO layers as 04_mlo writes them (`hoi_cli.conventions.MLO_LAYERS`, 13 layers):
# the object, then the left hand's palm, thumb, index, middle, ring, pinky, then the right
# hand's. The model sees them as ``mlo_normals`` (3 channels per layer, layer-major:
# object nx, ny, nz, left_palm nx, ny, nz, ...; 39 channels) and ``mlo_occlusion`` (one
# confidence channel per layer; 13 channels); see `hoi_cli.train.dataset`.
MLO_LAYERS = _MLO_LAYERS
N_MLO = len(MLO_LAYERS)


@dataclass
class ModelConfig:
    # ------------------------------------------------------------- data geometry
    num_frames: int = 4  # frames per training clip = the sampling window length
    height: int = 32  # pixel resolution the model is trained at
    width: int = 32
    # ------------------------------------------------------------- latent space
    vae_path: str | None = None  # a local diffusers AutoencoderKL folder; None = pixel patches
    latent_channels: int = 3  # 3 in pixel mode; the VAE's latent_channels otherwise
    vae_downsample: int = 1  # 1 in pixel mode; 2**(len(block_out_channels)-1) otherwise
    vae_scaling_factor: float = 1.0
    patch_size: int = 4  # spatial patch on the latent grid; time patch is 1
    # ------------------------------------------------------------- backbone
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    rope_theta: float = 10000.0
    zero_init: bool = True  # adaLN-Zero, zero final layer, zero-init condition encoders
    # ------------------------------------------------------------- conditioning switches
    layout_encoder: bool = False
    memory_banks: bool = False
    hand_render_guidance: bool = False
    mlo_guider: bool = False
    mlo_tokens: bool = False
    structure_stream: bool = False
    moe: bool = False
    rope3d: bool = True
    head_sliding_rope: bool = False
    ref_gate: bool = False
    ref_tokens: bool = True
    # The source clip (GenHOI's / VACE's input): 07_genhoi's object-removed video (encoded like the
    # video) and the object and hand masks, concatenated to the patch input through zero-initialised
    # weights (a no-op at initialisation). Not part of any system; switch it on with ``source_video = true``.
    source_video: bool = False
    # MLO tokens in cross-attention are read by the video tokens of their own frame only (ManiVideo);
    # False: every frame's (the behaviour of checkpoints saved before the fix; see `from_dict`).
    mlo_same_frame: bool = True
    # ------------------------------------------------------------- condition details
    mlo_layers: int = N_MLO  # MLO layers: mlo_normals has 3 * mlo_layers channels, mlo_occlusion mlo_layers
    hand_render_channels: int = 2  # 05_silhouette hand shading: left hand, right hand
    structure_channels: int = 3  # 05_silhouette HOI structure RGB (grey hands, coloured object)
    memory_size: int = 8  # slots per memory bank (hand, object)
    mlo_token_stride: int = 2  # MLO tokens are pooled this many patches in each direction
    guider_hidden: int = 16  # channels of the 4-layer conv encoders
    gate_threshold: float = 0.0  # a token is "inside" a region when its mask fraction > this
    ref_dropout: float = 0.1  # probability of dropping the reference (CFG)
    # ------------------------------------------------------------- losses
    structure_loss_weight: float = 0.5
    router_loss_weight: float = 0.1
    t_sampling: str = "logit_normal"  # or "uniform"
    # Timestep shift (SD3 / Wan's flow_shift): training draws t, then t -> s*t / (1 + (s-1)*t); sampling
    # uses the same s by default (`FlowMatchEulerScheduler`). 1 = no shift.
    flow_shift: float = 1.0
    # ------------------------------------------------------------- bookkeeping
    system: str = "all"
    preset: str = "tiny"
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------- derived
    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // self.vae_downsample, self.width // self.vae_downsample

    @property
    def token_hw(self) -> tuple[int, int]:
        h, w = self.latent_hw
        return h // self.patch_size, w // self.patch_size

    def validate(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.rope3d and self.head_dim % 2:
            raise ValueError("3D RoPE needs an even head dimension")
        if self.rope3d and self.head_dim < 6:
            raise ValueError("3D RoPE needs a head dimension of at least 6")
        h, w = self.latent_hw
        if h * self.vae_downsample != self.height or w * self.vae_downsample != self.width:
            raise ValueError(f"{self.height}x{self.width} px is not divisible by the VAE factor "
                             f"{self.vae_downsample}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"latent grid {h}x{w} is not divisible by patch size {self.patch_size}")
        if self.head_sliding_rope and not (self.rope3d and self.ref_tokens):
            raise ValueError("head_sliding_rope needs rope3d and ref_tokens")
        if self.ref_gate and not self.ref_tokens:
            raise ValueError("ref_gate needs ref_tokens")
        if self.mlo_layers < 1 or self.hand_render_channels < 1 or self.structure_channels < 1:
            raise ValueError("mlo_layers, hand_render_channels and structure_channels must be >= 1")
        if not self.flow_shift > 0:
            raise ValueError(f"flow_shift must be positive, got {self.flow_shift}")
        if self.t_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"unknown t_sampling {self.t_sampling!r}")
        return self

    # ------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        if "mlo_tokens" in data and "mlo_same_frame" not in data:  # saved before the same-frame fix
            data = {**data, "mlo_same_frame": False}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**kwargs, extra=extra).validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def required_conditions(self) -> set[str]:
        """Batch keys (see `hoi_cli.train.dataset`) this configuration cannot train without."""
        need = {"video"}
        if self.ref_tokens:
            need.add("reference")
        if self.layout_encoder:
            need.add("layout")
        if self.memory_banks or self.ref_gate or self.moe or self.source_video:
            need |= {"hand_mask", "object_mask"}
        if self.hand_render_guidance:
            need.add("hand_render")
        if self.mlo_guider or self.mlo_tokens:
            need.add("mlo_normals")
        if self.mlo_tokens:
            need.add("mlo_occlusion")
        if self.structure_stream:
            need.add("structure")
        return need


PRESETS: dict[str, dict[str, Any]] = {
    # CPU-runnable: 4 frames of 32x32 px, 8x8 tokens per frame.
    "tiny": dict(num_frames=4, height=32, width=32, patch_size=4, dim=64, depth=2, heads=4,
                 memory_size=8, guider_hidden=16),
    # a small GPU model: 8 frames of 128 px.
    "small": dict(num_frames=8, height=128, width=128, patch_size=8, dim=384, depth=8, heads=6,
                  memory_size=16, guider_hidden=32),
    # the reported GPU configuration: 16 frames of 256 px.
    "base": dict(num_frames=16, height=256, width=256, patch_size=16, dim=768, depth=12, heads=12,
                 memory_size=32, guider_hidden=64),
}


def system_switches(system: str) -> dict[str, bool]:
    """The switch values for a system name (every switch not named is off, except ref_tokens)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    out = {name: False for name in SWITCH_NAMES}
    out["ref_tokens"] = True
    if system == "all":
        return {name: True for name in SWITCH_NAMES}
    out.update(SYSTEM_SWITCHES.get(system, {}))
    return out


def make_config(preset: str = "tiny", system: str = "all", **overrides: Any) -> ModelConfig:
    """A validated config from a size preset, a system's switches and explicit overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    kwargs: dict[str, Any] = dict(PRESETS[preset])
    kwargs.update(system_switches(system))
    kwargs.update(overrides)
    return ModelConfig(preset=preset, system=system, **kwargs).validate()
