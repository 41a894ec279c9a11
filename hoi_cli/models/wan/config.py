"""Configuration of the Wan HOI model: the base transformer's diffusers config + the added paths.

The switches reuse the names and the per-system sets of `hoi_cli.models.config`
(``system_switches``), so ``--system genhoi`` means the same paths on both backbones. The
from-scratch DiT's ``rope3d`` and ``ref_tokens`` are implied here (Wan has 3D RoPE; the
reference is VACE's reference frame). CoInteract's training-only structure stream is not
implemented on Wan yet: ``structure_stream`` is accepted and ignored (`WanHOIConfig.unsupported`).

Base configs:

- ``VACE_1_3B``: ``Wan-AI/Wan2.1-VACE-1.3B-diffusers`` ``transformer/config.json``, as written
  by diffusers' ``scripts/convert_wan_to_diffusers.py`` (model type ``Wan-VACE-1.3B``):
  30 layers, 12 heads of 128, FFN 8960, text dim 4096, VACE layers 0, 2, .., 28, 96 VACE
  input channels (16 inactive + 16 reactive latent channels + 64 = 8x8 mask pixels).
- ``TINY_VACE`` / ``TINY_T2V`` / ``TINY_VAE``: CPU test sizes in the spirit of diffusers' own
  Wan tests (2 heads of 12, 2 layers; a VAE of base width 3 with Wan's 4x8x8 downsampling).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

VACE_1_3B: dict[str, Any] = dict(
    added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-6, ffn_dim=8960, freq_dim=256,
    in_channels=16, num_attention_heads=12, num_layers=30, out_channels=16, patch_size=[1, 2, 2],
    qk_norm="rms_norm_across_heads", text_dim=4096, vace_layers=list(range(0, 30, 2)), vace_in_channels=96)

TINY_VACE: dict[str, Any] = dict(
    patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
    text_dim=32, freq_dim=32, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)

TINY_T2V: dict[str, Any] = {k: v for k, v in TINY_VACE.items() if not k.startswith("vace_")}

TINY_VAE: dict[str, Any] = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                temperal_downsample=[False, True, True])

BASES = {"wan-vace-1.3b": ("vace", VACE_1_3B), "tiny-vace": ("vace", TINY_VACE), "tiny-t2v": ("t2v", TINY_T2V)}
HF_REPOS = {"wan-vace-1.3b": "Wan-AI/Wan2.1-VACE-1.3B-diffusers"}

VAE_STRIDE = (4, 8, 8)  # Wan 2.1 VAE: frames 1 + 4k -> 1 + k latent frames, 8x8 pixels -> 1 latent pixel
N_MLO_CHANNELS = 4 * 13  # 04_mlo: 13 layers x (3 normal channels + 1 occlusion confidence)


@dataclass
class WanHOIConfig:
    base_kind: str = "vace"  # "vace" (WanVACETransformer3DModel) or "t2v" (WanTransformer3DModel)
    base_name: str = "tiny-vace"  # a BASES key, or "local" for a --base-dir folder
    base_config: dict = field(default_factory=lambda: dict(TINY_VACE))  # the transformer's diffusers config
    # ------------------------------------------------------------- clip geometry (pixels)
    num_frames: int = 17  # a window: 4k + 1 frames
    height: int = 480
    width: int = 832
    # ------------------------------------------------------------- switches (models.config names)
    layout_encoder: bool = True
    memory_banks: bool = True
    hand_render_guidance: bool = True
    mlo_guider: bool = True
    mlo_tokens: bool = True
    moe: bool = True
    head_sliding_rope: bool = True
    ref_gate: bool = True
    structure_stream: bool = True  # CoInteract's training-only structure stream
    # ------------------------------------------------------------- added-module sizes
    extra_every: int = 5  # MLO / memory-bank cross-attention in every n-th block (0, n, 2n, ..)
    extra_inner: int = 0  # inner width of those attentions; 0 = the model's width / 2
    memory_size: int = 16
    moe_rank: int = 16
    guider_hidden: int = 32
    mlo_token_stride: int = 2  # MLO tokens pool stride x stride patches
    gate_threshold: float = 0.0  # a token is inside a region when its mask fraction > this
    # ------------------------------------------------------------- training / sampling
    lora_rank: int = 32
    lora_alpha: float = 32.0
    lora_targets: tuple = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
    ref_dropout: float = 0.1
    flow_shift: float = 3.0  # Wan 2.1's shift at 480p (5.0 at 720p)
    router_loss_weight: float = 0.1
    region_l1_weight: float = 0.0  # Re-HOLD's late-training L1 on hand/object regions (0 = off)
    region_l1_after: int = 0  # ... from this step on
    structure_loss_weight: float = 0.5
    structure_full_until: int = 0  # CoInteract stage 1: the clip attends to the structure stream until this step
    system: str = "all"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def heads(self) -> int:
        return int(self.base_config["num_attention_heads"])

    @property
    def dim(self) -> int:
        return self.heads * int(self.base_config["attention_head_dim"])

    @property
    def num_layers(self) -> int:
        return int(self.base_config["num_layers"])

    @property
    def extra_layers(self) -> list[int]:
        return list(range(0, self.num_layers, max(1, self.extra_every)))

    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1) // VAE_STRIDE[0] + 1

    def required_conditions(self, training: bool = True) -> set[str]:
        """Batch keys (`hoi_cli.train.dataset`) this configuration cannot run without (names as
        `hoi_cli.models.config.ModelConfig.required_conditions`; the structure only in training)."""
        need = {"video", "reference", "hand_mask", "object_mask"}
        for switch, keys in (("layout_encoder", {"layout"}), ("hand_render_guidance", {"hand_render"}),
                             ("mlo_guider", {"mlo_normals", "mlo_occlusion"}),
                             ("mlo_tokens", {"mlo_normals", "mlo_occlusion"}),
                             ("structure_stream", {"structure"} if training else set())):
            if getattr(self, switch):
                need |= keys
        return need

    def validate(self) -> WanHOIConfig:
        if self.base_kind not in ("vace", "t2v"):
            raise ValueError(f"unknown base kind {self.base_kind!r}")
        if self.num_frames % VAE_STRIDE[0] != 1:
            raise ValueError(f"a window needs 4k + 1 frames (got {self.num_frames})")
        step = VAE_STRIDE[1] * int(self.base_config["patch_size"][1])
        if self.height % step or self.width % step:
            raise ValueError(f"{self.height}x{self.width} px is not divisible by {step} (VAE x patch)")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> WanHOIConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        if "lora_targets" in kw:
            kw["lora_targets"] = tuple(kw["lora_targets"])
        return cls(**kw).validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> WanHOIConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def make_wan_config(base: str = "tiny-vace", system: str = "all", base_config: dict | None = None,
                    **overrides: Any) -> WanHOIConfig:
    """A validated config: a base (BASES key, or ``local`` with its ``base_config``) + a system's switches."""
    from ..config import system_switches

    if base_config is not None:
        kind = "vace" if "vace_layers" in base_config else "t2v"
        name = base if base in BASES else "local"
        base_config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    elif base in BASES:
        kind, base_config = BASES[base]
        name = base
    else:
        raise ValueError(f"unknown base {base!r}; choose one of {', '.join(BASES)} or give its folder")
    sw = system_switches(system)
    kw = {k: sw[k] for k in ("layout_encoder", "memory_banks", "hand_render_guidance", "mlo_guider", "mlo_tokens",
                             "moe", "head_sliding_rope", "ref_gate", "structure_stream")}
    kw.update(overrides)
    return WanHOIConfig(base_kind=kind, base_name=name, base_config=dict(base_config), system=system, **kw).validate()
