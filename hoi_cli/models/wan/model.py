"""`HOIWan`: diffusers' Wan transformer (VACE or T2V) with the four systems' conditioning added.

The base model is used as it is (its modules, its weights, its attention dispatch); this module
runs its forward pass block by block so that the added paths can enter, each a no-op at
initialisation (zero-initialised output or gate), so the untouched model's output is reproduced
exactly until training moves them:

=====================  ===========================================================================
path                   where it enters
=====================  ===========================================================================
VACE context           the base model's own ``vace_patch_embedding`` + context blocks (VACE base);
                       on a T2V base a zero-initialised ``control_embedding`` Conv3d added to the
                       patch embedding (= widening the patch embedding with zero input channels)
reference              VACE's reference frame in front of the clip (see ``conditions``)
GenHOI gate            the self-attention processor of every block (`GatedRefAttnProcessor`):
                       ``o = Attn(all) + tanh(a_l) * m_q * Attn(q_video, reference)``, ``a_l = 0``
GenHOI head sliding    the reference keys of the gated term rotate at per-head time positions
                       (`reference_rope`), spread over the window's latent frames
ManiVideo MLO guider   ``mlo_guider``: strided Conv3d tokens added to the video patch tokens
ManiVideo MLO tokens   same-frame cross-attention to MLO tokens after the text cross-attention, in
                       ``cfg.extra_layers``
Re-HOLD layout         ``layout_encoder`` (and ``hand_render`` guidance): guiders like the MLO one
Re-HOLD memory banks   hand / object banks as extra keys/values, read only inside the hand / object
                       masks, zero-initialised output, in ``cfg.extra_layers``
CoInteract MoE         a hand/base mixture of low-rank deltas on every block's FFN, router
                       supervised by the hand fractions (``router_loss``)
CoInteract structure   training only: the structure video's latents as a second token stream
                       (``structure_latents``); the clip never attends to it after stage 1
=====================  ===========================================================================

The "base attention" in the gate keeps the pretrained behaviour (every token attends to every
token, the reference frame included); the gated term adds a reference read that only the hand /
object region receives, with head-sliding positions. Its output is exactly zero outside the
region (``m_q = 0``) and for samples whose reference is dropped (CFG).
"""

from __future__ import annotations


import types

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import ConvGuider, MemoryBanks, MLOTokenizer, resize_maps, zero_module
from ..rope import head_sliding_times
from .conditions import group_frames
from .config import N_MLO_CHANNELS, VAE_STRIDE, WanHOIConfig


# ----------------------------------------------------------------------------- rotary helpers
def wan_rope_at(pos: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's rotary ``(cos, sin)`` at arbitrary (fractional) positions ``pos (..., 3)`` = (t, y, x).

    Same split and interleaving as ``diffusers.models.transformers.transformer_wan.WanRotaryPosEmbed``
    (h and w get ``2 * (D // 6)`` channels each, t the rest; pairs are adjacent channels), computed in
    float64 and returned in float32 as diffusers does, so integer positions reproduce its tables exactly.
    """
    h_dim = w_dim = 2 * (head_dim // 6)
    t_dim = head_dim - h_dim - w_dim
    parts = []
    for axis, dim in enumerate((t_dim, h_dim, w_dim)):
        inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim)
        parts.append(pos[..., axis:axis + 1].double() * inv)
    ang = torch.cat(parts, -1).repeat_interleave(2, -1)
    return ang.cos().float(), ang.sin().float()


def reference_rope(num_heads: int, head_dim: int, ref_hw: tuple[int, int], n_ref: int, video_frames: int,
                   sliding: bool, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-head rotary of the reference tokens: ``cos, sin (1, R, H, D)`` and positions ``(H, R, 3)``.

    With ``sliding`` (GenHOI's head-sliding RoPE), head ``h`` places the reference at time
    ``n_ref + t_h``, ``t_h = h * (F - 1) / (H - 1)`` (`hoi_cli.models.rope.head_sliding_times`): spread
    over the window's video latent frames, which sit at ``n_ref .. n_ref + F - 1``. Without it every
    head keeps the reference frame's own time 0. Spatial positions are the reference patches' rows
    and columns, as in the base RoPE.
    """
    hh, ww = ref_hw
    yy, xx = torch.meshgrid(torch.arange(hh, dtype=torch.float64), torch.arange(ww, dtype=torch.float64),
                            indexing="ij")
    sp = torch.stack([torch.zeros_like(yy), yy, xx], -1).reshape(-1, 3)  # (R, 3) at t = 0
    pos = sp.unsqueeze(0).repeat(num_heads, 1, 1)
    if sliding:
        pos[..., 0] = n_ref + head_sliding_times(num_heads, video_frames).double().unsqueeze(1)
    pos = pos.to(device)
    cos, sin = wan_rope_at(pos, head_dim)
    return cos.transpose(0, 1).unsqueeze(0), sin.transpose(0, 1).unsqueeze(0), pos


def apply_wan_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, L, H, D)`` as ``WanAttnProcessor`` does."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)
    return out.type_as(x)


# ----------------------------------------------------------------------------- gated attention
class GatedRefAttnProcessor:
    """``WanAttnProcessor`` (self-attention) + GenHOI's two-level spatial gate on a reference read.

    Called with ``hoi = dict(gate=a_l (scalar tensor), region=(B, Nv) in [0, 1], n_ref_tokens=R,
    ref_cos/ref_sin=(1, R, H, D), ref_keep=(B,))``; without ``hoi`` it is exactly ``WanAttnProcessor``.
    CoInteract's structure stream: with ``n_struct = S`` the last ``S`` tokens are structure tokens;
    they attend to everything, while the clip's tokens attend to the structure tokens only with
    ``struct_full`` (training stage 1) -- otherwise (asymmetric) the clip's attention is exactly
    what it is without the structure stream.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 hoi: dict | None = None):
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections

        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        q_rot, k_rot = query, key
        if rotary_emb is not None:
            q_rot = apply_wan_rotary(query, *rotary_emb)
            k_rot = apply_wan_rotary(key, *rotary_emb)
        n_s = hoi.get("n_struct", 0) if hoi is not None else 0
        end = query.shape[1] - n_s  # the clip's tokens (reference frame + video) come first

        def sdpa(q, k, v, mask=None):
            return dispatch_attention_fn(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False,
                                         backend=self._attention_backend)

        if n_s and not hoi.get("struct_full", False):
            out = torch.cat([sdpa(q_rot[:, :end], k_rot[:, :end], value[:, :end], attention_mask),
                             sdpa(q_rot[:, end:], k_rot, value)], 1)
        else:
            out = sdpa(q_rot, k_rot, value, attention_mask)
        out = out.flatten(2, 3).type_as(query)
        if hoi is not None and hoi.get("gate") is not None and hoi["n_ref_tokens"] > 0:
            r = hoi["n_ref_tokens"]
            k_ref = apply_wan_rotary(key[:, :r], hoi["ref_cos"], hoi["ref_sin"])
            ref_read = sdpa(q_rot[:, r:end], k_ref, value[:, :r]).flatten(2, 3).type_as(query)
            weight = torch.tanh(hoi["gate"]) * hoi["region"] * hoi["ref_keep"].to(hoi["region"]).unsqueeze(1)
            out = torch.cat([out[:, :r], out[:, r:end] + weight.unsqueeze(-1).to(out.dtype) * ref_read,
                             out[:, end:]], 1)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


# ----------------------------------------------------------------------------- added modules
class FrameGuider(nn.Module):
    """Pixel maps ``(B, T, C, H, W)`` -> tokens ``(B, F*hh*ww, dim)`` added to the video patch tokens.

    Maps are area-resized to the latent grid, run per frame through `ConvGuider` (the four-layer
    conv encoder of `hoi_cli.models.conditioning`), padded in front by 3 copies of frame 0 (Wan's
    causal frame grouping) and pooled by a strided Conv3d with Wan's patch ``(4, 2, 2)``; the
    Conv3d is zero-initialised, so the path starts as a no-op.
    """

    def __init__(self, in_ch: int, dim: int, hidden: int):
        super().__init__()
        self.encoder = ConvGuider(in_ch, hidden, hidden, zero_init=False)
        self.pool = zero_module(nn.Conv3d(hidden, dim, kernel_size=(VAE_STRIDE[0], 2, 2), stride=(VAE_STRIDE[0], 2, 2)))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        H, W = maps.shape[-2:]
        x = self.encoder(resize_maps(maps.float(), (H // VAE_STRIDE[1], W // VAE_STRIDE[2])))  # (B, T, c, h, w)
        x = torch.cat([x[:, :1].expand(-1, VAE_STRIDE[0] - 1, -1, -1, -1), x], 1).transpose(1, 2)
        return self.pool(x).flatten(2).transpose(1, 2)


class MaskedCrossAttention(nn.Module):
    """Video tokens read a set of context tokens; output ``to_out(weight * Attn)``, ``to_out`` zero-initialised."""

    def __init__(self, dim: int, inner: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.norm_q, self.norm_k = nn.RMSNorm(inner, eps=1e-6), nn.RMSNorm(inner, eps=1e-6)
        self.to_out = zero_module(nn.Linear(inner, dim))

    def attend(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(self.to_q(self.norm(x))).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k = self.norm_k(self.to_k(ctx)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = self.to_v(ctx).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


class MLOFrameAttention(MaskedCrossAttention):
    """ManiVideo's MLO tokens in cross-attention, same latent frame only (block-diagonal over frames)."""

    def forward(self, x: torch.Tensor, mlo_tokens: torch.Tensor, frames: int) -> torch.Tensor:
        b = x.shape[0]
        o = self.attend(x.unflatten(1, (frames, -1)).flatten(0, 1), mlo_tokens.unflatten(1, (frames, -1)).flatten(0, 1))
        return self.to_out(o.unflatten(0, (b, frames)).flatten(1, 2))


class MemoryBankAttention(MaskedCrossAttention):
    """Re-HOLD's memory banks: hand bank read inside the hand mask, object bank inside the object mask."""

    def forward(self, x: torch.Tensor, banks: torch.Tensor, in_hand: torch.Tensor, in_object: torch.Tensor):
        m = banks.shape[1] // 2
        o = in_hand.unsqueeze(-1) * self.attend(x, banks[:, :m]) + in_object.unsqueeze(-1) * self.attend(x, banks[:, m:])
        return self.to_out(o)


class LowRankMoE(nn.Module):
    """CoInteract's hand/base mixture of experts as low-rank FFN deltas: ``g * B_h A_h x + (1 - g) * B_b A_b x``.

    ``g = sigmoid(router(x))``; the up projections are zero-initialised (a no-op at start).
    """

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.router = nn.Linear(dim, 1)
        self.hand_down, self.base_down = nn.Linear(dim, rank, bias=False), nn.Linear(dim, rank, bias=False)
        self.hand_up, self.base_up = zero_module(nn.Linear(rank, dim)), zero_module(nn.Linear(rank, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        logit = self.router(x).squeeze(-1)
        g = torch.sigmoid(logit).unsqueeze(-1)
        return g * self.hand_up(self.hand_down(x)) + (1 - g) * self.base_up(self.base_down(x)), logit


# ----------------------------------------------------------------------------- the model
def build_base(cfg: WanHOIConfig, base_dir=None, dtype=None, device=None):
    """The diffusers transformer: from ``base_dir`` (``transformer/`` of a diffusers folder, local files only)
    or random-initialised from ``cfg.base_config``."""
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    cls = WanVACETransformer3DModel if cfg.base_kind == "vace" else WanTransformer3DModel
    if base_dir is not None:
        return cls.from_pretrained(base_dir, subfolder="transformer", local_files_only=True,
                                   torch_dtype=dtype or torch.float32)
    kw = {k: v for k, v in cfg.base_config.items() if not k.startswith("_")}
    kw["patch_size"] = tuple(kw["patch_size"])
    model = cls(**kw)
    if dtype or device:
        model = model.to(device=device, dtype=dtype)
    keep = set(cls._keep_in_fp32_modules)  # as from_pretrained(torch_dtype=...) keeps them
    for name, p in model.named_parameters():
        if keep & set(name.split(".")):
            p.data = p.data.float()
    return model


class HOIWan(nn.Module):
    """The base transformer (``self.base``) + the added modules; see the module docstring."""

    def __init__(self, base: nn.Module, cfg: WanHOIConfig):
        super().__init__()
        self.cfg = cfg
        self.base = base
        self.is_vace = hasattr(base, "vace_blocks")
        bc = base.config
        dim, heads = bc.num_attention_heads * bc.attention_head_dim, bc.num_attention_heads
        self.heads, self.head_dim, self.dim = heads, bc.attention_head_dim, dim
        self.gradient_checkpointing = False
        z = bc.in_channels
        ctrl_ch = 2 * z + VAE_STRIDE[1] * VAE_STRIDE[2]
        if not self.is_vace:
            self.control_embedding = zero_module(nn.Conv3d(ctrl_ch, dim, kernel_size=tuple(bc.patch_size),
                                                           stride=tuple(bc.patch_size)))
        hid = cfg.guider_hidden
        self.guiders = nn.ModuleDict()
        if cfg.layout_encoder:
            self.guiders["layout"] = FrameGuider(3, dim, hid)
        if cfg.hand_render_guidance:
            self.guiders["hand_render"] = FrameGuider(2, dim, hid)
        if cfg.mlo_guider:
            self.guiders["mlo"] = FrameGuider(N_MLO_CHANNELS, dim, hid)
        inner = cfg.extra_inner or max(heads, (dim // 2) // heads * heads)
        layers = [str(i) for i in cfg.extra_layers]
        if cfg.mlo_tokens:
            self.mlo_tokenizer = MLOTokenizer(N_MLO_CHANNELS, dim, patch=2, stride=cfg.mlo_token_stride, hidden=hid)
            self.mlo_attn = nn.ModuleDict({i: MLOFrameAttention(dim, inner, heads) for i in layers})
        if cfg.memory_banks:
            self.banks = MemoryBanks(cfg.memory_size, dim)
            self.bank_attn = nn.ModuleDict({i: MemoryBankAttention(dim, inner, heads) for i in layers})
        if cfg.moe:
            self.moe = nn.ModuleList([LowRankMoE(dim, cfg.moe_rank) for _ in range(bc.num_layers)])
        if cfg.ref_gate:
            self.ref_gate = nn.Parameter(torch.zeros(bc.num_layers))
        if cfg.structure_stream:  # tells structure tokens from the clip's (they share positions)
            self.structure_tag = nn.Parameter(torch.zeros(dim))
        if cfg.ref_gate or cfg.structure_stream:
            for block in base.blocks:
                block.attn1.set_processor(GatedRefAttnProcessor())
        for block in base.blocks:  # through the block's own __call__, so FSDP/hooks wrapping a block still run
            block.forward = types.MethodType(hoi_block_forward, block)

    # ------------------------------------------------------------------ parameters
    def new_modules(self) -> dict[str, nn.Module | nn.Parameter]:
        return {n: m for n, m in self.named_children() if n != "base"} | (
            {"ref_gate": self.ref_gate} if self.cfg.ref_gate else {})

    def new_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base.")}

    # ------------------------------------------------------------------ forward
    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, prompt_embeds: torch.Tensor,
                inputs, ref_keep: torch.Tensor | None = None, return_aux: bool = False,
                structure_latents: torch.Tensor | None = None, structure_full: bool = False):
        """Velocity ``(B, z, n_ref + F, h, w)`` for noisy ``latents`` of the same shape.

        ``inputs``: a `WanInputs` (its ``control`` has the same latent frames as ``latents``);
        ``ref_keep (B,)`` bool: False drops the reference for that sample (its control latent is
        zeroed and the gated read is off) -- CFG's unconditional branch and reference dropout.
        With ``return_aux`` also returns ``{"router_logits": [...], "structure": velocity or None}``.

        ``structure_latents (B, z, F, h, w)``: CoInteract's noisy structure latents (training only), run
        as a second token stream with the same positions as the video frames and the same timestep;
        ``structure_full`` lets the clip attend to it (stage 1), otherwise it only reads the clip.
        """
        base, cfg = self.base, self.cfg
        b, _, nf, h, w = latents.shape
        p_t, p_h, p_w = base.config.patch_size
        hh, ww = h // p_h, w // p_w
        n_ref = inputs.n_ref
        r_tok = n_ref * hh * ww
        video_frames = nf - n_ref
        control = inputs.control.to(latents.dtype)
        if ref_keep is None:
            ref_keep = torch.ones(b, dtype=torch.bool, device=latents.device)
        if n_ref:
            keep = ref_keep.to(control.dtype).view(b, 1, 1, 1, 1)
            control = torch.cat([control[:, :, :n_ref] * keep, control[:, :, n_ref:]], 2)

        rotary = base.rope(latents)
        x = base.patch_embedding(latents).flatten(2).transpose(1, 2)
        if not self.is_vace:
            x = x + self.control_embedding(control).flatten(2).transpose(1, 2)
        x = x.contiguous()
        if len(self.guiders):
            guide = sum(g(inputs.maps[k]) for k, g in self.guiders.items())
            x = torch.cat([x[:, :r_tok], x[:, r_tok:] + guide.to(x.dtype)], 1)

        n_main, n_struct = x.shape[1], 0
        if structure_latents is not None:
            if not cfg.structure_stream:
                raise ValueError("structure_latents given to a model built without structure_stream")
            st = base.patch_embedding(structure_latents.to(latents.dtype)).flatten(2).transpose(1, 2)
            n_struct = st.shape[1]
            x = torch.cat([x, st + self.structure_tag.to(st.dtype)], 1)
            rotary = tuple(torch.cat([r, r[:, r_tok:]], 1) for r in rotary)  # the video frames' positions

        temb, tproj, enc, _ = base.condition_embedder(timestep, prompt_embeds, None)
        tproj = tproj.unflatten(1, (6, -1))

        hoi_attn = None
        if (cfg.ref_gate and n_ref) or n_struct:
            hoi_attn = dict(n_ref_tokens=r_tok, n_struct=n_struct, struct_full=structure_full)
        if cfg.ref_gate and n_ref:
            cos, sin, _ = reference_rope(self.heads, self.head_dim, (hh, ww), n_ref, video_frames,
                                         cfg.head_sliding_rope, device=x.device)
            hoi_attn.update(ref_cos=cos, ref_sin=sin, ref_keep=ref_keep,
                            region=(inputs.fractions["region"] > cfg.gate_threshold).float())
        extras = {}
        if cfg.mlo_tokens:
            mlo = group_frames(inputs.maps["mlo"].float())  # (B, F, C, H, W)
            mlo = resize_maps(mlo, (mlo.shape[-2] // VAE_STRIDE[1], mlo.shape[-1] // VAE_STRIDE[2]))
            extras["mlo"] = self.mlo_tokenizer(mlo)[0]
        if cfg.memory_banks:
            extras["banks"] = self.banks(b)
            extras["in_hand"] = (inputs.fractions["hand"] > cfg.gate_threshold).float()
            extras["in_object"] = (inputs.fractions["object"] > cfg.gate_threshold).float()

        hints = []
        if self.is_vace:
            c = base.vace_patch_embedding(control).flatten(2).transpose(1, 2)
            c = torch.cat([c, c.new_zeros(b, n_main - c.shape[1], c.shape[2])], 1)
            rot_main = tuple(r[:, :n_main] for r in rotary)
            for blk in base.vace_blocks:
                hint, c = self._run(blk, x[:, :n_main], enc, c, tproj, rot_main)
                hints.append(hint)
            hints = hints[::-1]
        logits = []
        for i, blk in enumerate(base.blocks):
            hoi = dict(model=self, layer=i, attn=hoi_attn, extras=extras, r_tok=r_tok, end=n_main, frames=video_frames)
            x, lg = self._run(blk, x, enc, tproj, rotary, hoi)
            if lg is not None:
                logits.append(lg)
            if self.is_vace and i in base.config.vace_layers:
                x = x + hints.pop() if not n_struct else torch.cat([x[:, :n_main] + hints.pop(), x[:, n_main:]], 1)

        shift, scale = (base.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (base.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = base.proj_out(x)

        def unpatchify(t, frames):
            t = t.reshape(b, frames // p_t, hh, ww, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
            return t.flatten(6, 7).flatten(4, 5).flatten(2, 3)

        out = unpatchify(x[:, :n_main], nf)
        if not return_aux:
            return out
        return out, {"router_logits": logits,
                     "structure": unpatchify(x[:, n_main:], video_frames) if n_struct else None}

    def _run(self, fn, *args):
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

def hoi_block_forward(blk, hidden_states, encoder_hidden_states, temb, rotary_emb, hoi: dict | None = None):
    """``WanTransformerBlock.forward`` with the added paths (identical when they are zero); installed as
    the forward of every main block. Without ``hoi`` it is diffusers' forward; with it, returns
    ``(hidden_states, router_logit or None)``."""
    from diffusers.models.transformers.transformer_wan import WanTransformerBlock

    if hoi is None:
        return WanTransformerBlock.forward(blk, hidden_states, encoder_hidden_states, temb, rotary_emb)
    m, i, x, enc = hoi["model"], hoi["layer"], hidden_states, encoder_hidden_states
    r_tok, end, extras, hoi_attn = hoi["r_tok"], hoi["end"], hoi["extras"], hoi["attn"]
    shift, scale, gate, c_shift, c_scale, c_gate = (blk.scale_shift_table + temb.float()).chunk(6, dim=1)
    n = (blk.norm1(x.float()) * (1 + scale) + shift).type_as(x)
    if hoi_attn is not None:
        a = blk.attn1(n, None, None, rotary_emb, hoi={**hoi_attn, "gate": m.ref_gate[i] if "ref_cos" in hoi_attn else None})
    else:
        a = blk.attn1(n, None, None, rotary_emb)
    x = (x.float() + a * gate).type_as(x)
    n = blk.norm2(x.float()).type_as(x)
    x = x + blk.attn2(n, enc, None, None)
    key = str(i)
    mlo_attn, bank_attn = getattr(m, "mlo_attn", {}), getattr(m, "bank_attn", {})
    if key in mlo_attn or key in bank_attn:
        xv = x[:, r_tok:end]  # the video tokens (not the reference frame, not the structure stream)
        add = 0
        if key in mlo_attn:
            add = add + mlo_attn[key](xv.float(), extras["mlo"], hoi["frames"])
        if key in bank_attn:
            add = add + bank_attn[key](xv.float(), extras["banks"], extras["in_hand"], extras["in_object"])
        x = torch.cat([x[:, :r_tok], xv + add.to(x.dtype), x[:, end:]], 1)
    n = (blk.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
    ff = blk.ffn(n)
    logit = None
    if m.cfg.moe:
        delta, logit = m.moe[i](n[:, r_tok:end])
        ff = torch.cat([ff[:, :r_tok], ff[:, r_tok:end] + delta.to(ff.dtype), ff[:, end:]], 1)
    x = (x.float() + ff.float() * c_gate).type_as(x)
    return x, logit


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["HOIWan", "GatedRefAttnProcessor", "reference_rope", "wan_rope_at", "build_base", "param_count",
           "FrameGuider", "LowRankMoE"]
