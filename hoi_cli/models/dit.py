"""The HOI video diffusion transformer (a DiT with adaLN-Zero blocks), velocity-predicting.

Tokens and attention:
    One joint self-attention sequence per block, ``[video (N) | reference (R) | structure (S)]``:

    ==============  =========  =====================================  ===========
    query \\ key     video      reference                              structure
    ==============  =========  =====================================  ===========
    video           all        if kept (CFG) and, with ``ref_gate``,  never
                               only from tokens inside hand|object
    reference       never      all                                    never
    structure       all        if kept                                all
    ==============  =========  =====================================  ===========

    - Video tokens: the noisy latent video plus the additive guidance (layout encoder,
      hand-render guidance, MLO pose guider), patchified (time patch 1); with ``source_video``,
      plus the source clip's latent and its object and hand masks through their own patch
      embedding, zero-initialised (the same as widening the patch embedding's input channels).
    - Reference tokens: the reference-object latent, patchified by the *same* patch
      embedding and run through the same blocks (clean: timestep 0 modulation). They attend
      only to themselves, so they do not depend on the noisy video, and dropping them
      (``ref_keep = False``) gives the unconditional branch of classifier-free guidance.
    - Structure tokens (CoInteract, training only): the noisy HOI-structure map, with its
      own patch embedding, its own adaLN modulation and its own output head. Video never
      attends to structure, so the video prediction is identical with or without the
      structure stream, which is why it can be dropped at inference at zero cost.

    Cross-attention (video tokens only) reads ManiVideo's MLO tokens (with ``mlo_same_frame``
    only those of the token's own frame, as ManiVideo and the Wan path do) and Re-HOLD's memory
    banks (hand bank only inside the hand mask, object bank only inside the object mask); a
    token with nothing to read gets a zero update.

    Positions: 3D RoPE over (t, y, x) (`hoi_cli.models.rope`), with head-sliding positions
    for the reference tokens when ``head_sliding_rope``; with ``rope3d`` off, fixed 3D
    sin-cos embeddings are added instead (the reference at t = 0).

Forward, in named steps (each a method, each output typed):
    `guided_input` (latent + additive guidance) -> `embed_tokens` (`TokenSequence`) ->
    `positions` (RoPE angles, or sin-cos added) -> `regions` (`Regions`) -> `attention_mask`
    -> `cross_context` (`CrossContext`) -> `timestep_conditioning` -> `run_blocks`
    (`BlockOutputs`) -> final layer and unpatchify (velocity; structure velocity in ``aux``).

Shapes:
    ``x (B, T, C, h, w)`` noisy latent at flow time ``t (B,)`` in [0, 1] (1 = noise);
    condition maps ``(B, T, C_k, H', W')`` at any resolution (resized to ``(h, w)``);
    ``reference_latent (B, C, h, w)``; output: velocity ``(B, T, C, h, w)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .conditioning import (ConvGuider, FeedForward, MemoryBanks, MLOTokenizer, MoEFeedForward,
                           region_fractions, resize_maps, zero_module)
from .config import ModelConfig
from .rope import apply_rope, grid_positions, reference_positions, rope_angles


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_3d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin-cos embedding ``(L, dim)`` of positions ``(L, 3)`` (used when rope3d is off)."""
    d_axis = (dim // 6) * 2
    parts = []
    for axis in range(3):
        half = d_axis // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=pos.device) / max(half, 1))
        a = pos[:, axis:axis + 1] * freqs
        parts += [a.sin(), a.cos()]
    emb = torch.cat(parts, dim=-1)
    return F.pad(emb, (0, dim - emb.shape[-1]))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis where ``mask`` is True; rows with no True key give zeros."""
    if mask is None:
        return scores.softmax(-1)
    scores = scores.masked_fill(~mask, float("-inf"))
    any_key = mask.any(-1, keepdim=True)
    scores = torch.where(any_key, scores, torch.zeros_like(scores))
    return scores.softmax(-1) * any_key


# ------------------------------------------------------------------ typed intermediates of the forward
@dataclass
class TokenSequence:
    """The joint sequence ``[video (n) | reference (r) | structure (s)]`` fed to the blocks."""

    tokens: torch.Tensor  # (B, n + r + s, dim)
    n: int
    r: int
    s: int
    video_positions: torch.Tensor  # (n, 3) as (t, y, x)
    reference_positions: torch.Tensor | None  # (heads, r, 3)
    ref_keep: torch.Tensor | None  # (B,) bool: the reference is visible (False: CFG's unconditional branch)

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.n, self.r, self.s


@dataclass
class Regions:
    """Per-video-token fractions of the hand and object masks, ``(B, n)`` each (zeros if absent)."""

    hand: torch.Tensor
    object: torch.Tensor


@dataclass
class CrossContext:
    """What the video tokens cross-attend to: MLO tokens first, then the memory banks."""

    tokens: torch.Tensor  # (B, M, dim)
    mask: torch.Tensor  # (B, n, M) bool: which of them each video token may read
    n_mlo: int  # the first n_mlo tokens are MLO tokens (RoPE'd against the video grid)
    q_angles: torch.Tensor | None  # RoPE angles of the video queries / MLO keys, with rope3d
    k_angles: torch.Tensor | None


@dataclass
class BlockOutputs:
    tokens: torch.Tensor  # the sequence after the last block
    router_logits: list[torch.Tensor]  # per MoE block, (B, n)
    attn: list[torch.Tensor]  # per block, (B, heads, L, L), with return_attn


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, self.heads = cfg.dim, cfg.heads
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6)
        self.proj = nn.Linear(d, d)
        self.has_cross = cfg.mlo_tokens or cfg.memory_banks
        if self.has_cross:
            self.norm_c = nn.LayerNorm(d, eps=1e-6)
            self.cq = nn.Linear(d, d)
            self.ckv = nn.Linear(d, 2 * d)
            self.cq_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6)
            self.ck_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6)
            self.cproj = nn.Linear(d, d)
            if cfg.zero_init:
                zero_module(self.cproj)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.moe = cfg.moe
        self.ffn = MoEFeedForward(d, hidden) if cfg.moe else FeedForward(d, hidden)
        self.ada = nn.Linear(d, 6 * d)
        self.ada_struct = nn.Linear(d, 6 * d) if cfg.structure_stream else None
        if cfg.zero_init:
            zero_module(self.ada)
            if self.ada_struct is not None:
                zero_module(self.ada_struct)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, c_vid: torch.Tensor, c_ref: torch.Tensor, c_struct: torch.Tensor,
                sizes: tuple[int, int, int], angles: torch.Tensor | None, attn_mask: torch.Tensor | None,
                ctx: CrossContext | None, return_attn: bool = False):
        n, r, s = sizes
        mods = [self.ada(F.silu(c_vid)).unsqueeze(1).expand(-1, n, -1)]
        if r:
            mods.append(self.ada(F.silu(c_ref)).unsqueeze(1).expand(-1, r, -1))
        if s:
            mods.append(self.ada_struct(F.silu(c_struct)).unsqueeze(1).expand(-1, s, -1))
        shift1, scale1, gate1, shift2, scale2, gate2 = torch.cat(mods, 1).chunk(6, dim=-1)
        out, weights = self._self_attention(modulate(self.norm1(x), shift1, scale1), angles, attn_mask, return_attn)
        x = x + gate1 * self.proj(out)
        if self.has_cross and ctx is not None and ctx.tokens is not None:
            x = torch.cat([x[:, :n] + self._cross_attention(x[:, :n], ctx), x[:, n:]], 1)
        f, logit = self._feed_forward(modulate(self.norm2(x), shift2, scale2), n)
        x = x + gate2 * f
        return x, logit, weights

    def _self_attention(self, h: torch.Tensor, angles: torch.Tensor | None, attn_mask: torch.Tensor | None,
                        return_attn: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Joint self-attention over the whole sequence; the weights too with ``return_attn``."""
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q, k, v = self.q_norm(self._heads(q)), self.k_norm(self._heads(k)), self._heads(v)
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        mask = attn_mask.unsqueeze(1) if attn_mask is not None else None
        weights = None
        if return_attn:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            weights = _masked_softmax(scores, mask)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).flatten(2), weights

    def _cross_attention(self, xv: torch.Tensor, ctx: CrossContext) -> torch.Tensor:
        """The video tokens' update from MLO tokens and memory banks (zero where a token reads none)."""
        qc = self.cq_norm(self._heads(self.cq(self.norm_c(xv))))
        kc, vc = self.ckv(ctx.tokens).chunk(2, dim=-1)
        kc, vc = self.ck_norm(self._heads(kc)), self._heads(vc)
        m = ctx.n_mlo
        scale = 1.0 / math.sqrt(qc.shape[-1])
        parts = []
        if m:
            qr, kr = qc, kc[:, :, :m]
            if ctx.q_angles is not None:
                qr, kr = apply_rope(qc, ctx.q_angles), apply_rope(kr, ctx.k_angles)
            parts.append(qr @ kr.transpose(-1, -2))
        if kc.shape[2] > m:
            parts.append(qc @ kc[:, :, m:].transpose(-1, -2))
        scores = torch.cat(parts, -1) * scale
        p = _masked_softmax(scores, ctx.mask.unsqueeze(1))
        return self.cproj((p.to(vc.dtype) @ vc).transpose(1, 2).flatten(2))

    def _feed_forward(self, h: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hand/base MoE (with its router logits over the video tokens) or a plain feed-forward."""
        if not self.moe:
            return self.ffn(h), None
        f, logit = self.ffn(h)
        return f, logit[:, :n]


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int, zero_init: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, out)
        if zero_init:
            zero_module(self.ada)
            zero_module(self.linear)

    def forward(self, x, c):
        shift, scale = self.ada(F.silu(c)).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class ZeroConv2d(nn.Conv2d):
    """A convolution that starts at exactly zero and draws no random numbers (so adding one leaves the
    seeded initialisation of every other weight as it was)."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class HOIVideoDiT(nn.Module):
    """Conditional video DiT; see the module docstring for tokens, masks and shapes."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg.validate()
        c, p, d = cfg.latent_channels, cfg.patch_size, cfg.dim
        self.gradient_checkpointing = False
        self.patch_embed = nn.Conv2d(c, d, p, stride=p)
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.final = FinalLayer(d, p * p * c, cfg.zero_init)
        hid = cfg.guider_hidden
        if cfg.layout_encoder:
            self.layout_encoder = ConvGuider(3, c, hid, cfg.zero_init)
        if cfg.hand_render_guidance:
            self.render_guider = ConvGuider(cfg.hand_render_channels, c, hid, cfg.zero_init)
        if cfg.mlo_guider:
            self.mlo_guider = ConvGuider(3 * cfg.mlo_layers, c, hid, cfg.zero_init)
        if cfg.mlo_tokens:
            self.mlo_tokenizer = MLOTokenizer(4 * cfg.mlo_layers, d, p, cfg.mlo_token_stride, 2 * hid)
        if cfg.memory_banks:
            self.memory = MemoryBanks(cfg.memory_size, d)
        if cfg.ref_tokens:
            self.ref_type = nn.Parameter(torch.zeros(d))
        if cfg.structure_stream:
            self.struct_embed = nn.Conv2d(cfg.structure_channels, d, p, stride=p)
            self.struct_type = nn.Parameter(torch.zeros(d))
            self.struct_final = FinalLayer(d, p * p * cfg.structure_channels, cfg.zero_init)
        if cfg.source_video:  # = widening patch_embed by c + 2 zero-initialised input channels
            self.source_embed = ZeroConv2d(c + 2, d, p, stride=p, bias=False)
        self._init_weights()

    def _zero_initialised(self) -> list[nn.Module | nn.Parameter]:
        """What starts at exactly zero: the type embeddings, the source-video embedding and, with
        ``zero_init``, adaLN-Zero, the cross-attention outputs, the final layers and the guiders' last convs."""
        out: list[nn.Module | nn.Parameter] = [p for n in ("ref_type", "struct_type") if (p := getattr(self, n, None)) is not None]
        if self.config.source_video:
            out.append(self.source_embed)
        if self.config.zero_init:
            for blk in self.blocks:
                out += [blk.ada] + ([blk.ada_struct] if blk.ada_struct is not None else []) + \
                       ([blk.cproj] if blk.has_cross else [])
            out += [self.final.ada, self.final.linear]
            if self.config.structure_stream:
                out += [self.struct_final.ada, self.struct_final.linear]
            out += [g.net[-1] for g in self.modules() if isinstance(g, ConvGuider)]
        return out

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Xavier-uniform linear layers (in module order, skipping the zero-initialised ones), then the zeros.

        Data-independent, so it runs on the meta device too (where it draws nothing)."""
        zeros = self._zero_initialised()
        skip = {id(m) for m in zeros}
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m) not in skip:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for z in zeros:
            if isinstance(z, nn.Parameter):
                nn.init.zeros_(z)
            else:
                zero_module(z)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise every parameter in place as ``__init__`` does, with the same random draws in the
        same order: under the same ``torch.manual_seed`` the weights equal a normal construction's.

        For deferred initialisation: build under ``torch.device("meta")``, ``to_empty(device=...)``,
        then call this (FSDP's ``param_init_fn``)."""
        for m in self.modules():  # registration order = construction order
            if m is not self and hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False)):
                m.reset_parameters()
        self._init_weights()

    # ------------------------------------------------------------------ helpers
    def _cond(self, cond: dict, key: str, switch: str) -> torch.Tensor:
        if key not in cond or cond[key] is None:
            raise ValueError(f"condition {key!r} is required by {switch} but was not given")
        return cond[key]

    def _patchify(self, x: torch.Tensor, embed: nn.Conv2d) -> torch.Tensor:
        b, t = x.shape[:2]
        y = embed(x.flatten(0, 1))  # (B*T, d, h', w')
        return y.flatten(2).transpose(1, 2).reshape(b, -1, y.shape[1])

    def _unpatchify(self, y: torch.Tensor, t: int, h: int, w: int, c: int) -> torch.Tensor:
        p = self.config.patch_size
        b = y.shape[0]
        y = y.view(b, t, h // p, w // p, c, p, p)
        return y.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, t, c, h, w)

    def region_fractions(self, cond: dict, t: int, hw: tuple[int, int], batch: int, device) -> dict:
        """Per-token fractions of the hand / object masks, ``(B, N)`` each (zeros if absent)."""
        p = self.config.patch_size
        out = {}
        for key in ("hand_mask", "object_mask"):
            m = cond.get(key)
            if m is None:
                n = t * (hw[0] // p) * (hw[1] // p)
                out[key] = torch.zeros(batch, n, device=device)
            else:
                out[key] = region_fractions(resize_maps(m.float(), hw), p)
        return out

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None = None,
                ref_keep: torch.Tensor | None = None, structure_noisy: torch.Tensor | None = None,
                return_aux: bool = False, return_attn: bool = False):
        cond = cond or {}
        b, nt, c, h, w = x.shape
        if t.ndim == 0:
            t = t.expand(b)
        seq = self.embed_tokens(self.guided_input(x, cond), cond, ref_keep, structure_noisy)
        angles = self.positions(seq)
        regions = self.regions(cond, nt, (h, w), b, x.device)
        attn_mask = self.attention_mask(seq, regions)
        ctx = self.cross_context(cond, seq, regions, (h, w), x.dtype)
        c_vid, c_ref = self.timestep_conditioning(t, seq.tokens.dtype)
        out = self.run_blocks(seq, c_vid, c_ref, angles, attn_mask, ctx, return_attn)
        n, r, s = seq.sizes
        v = self._unpatchify(self.final(out.tokens[:, :n], c_vid), nt, h, w, c)
        if not return_aux:
            return v
        aux: dict[str, Any] = dict(router_logits=out.router_logits, hand_fraction=regions.hand,
                                   object_fraction=regions.object, attn=out.attn, sizes=seq.sizes,
                                   attn_mask=attn_mask)
        if s:
            aux["structure_velocity"] = self._unpatchify(self.struct_final(out.tokens[:, n + r:], c_vid), nt, h, w,
                                                         self.config.structure_channels)
        return v, aux

    def guided_input(self, x: torch.Tensor, cond: dict) -> torch.Tensor:
        """The noisy latent plus the additive guidance (layout encoder, hand render, MLO pose guider)."""
        cfg, hw = self.config, x.shape[-2:]
        inp = x
        if cfg.layout_encoder:
            inp = inp + self.layout_encoder(resize_maps(self._cond(cond, "layout", "layout_encoder"), hw).to(x.dtype))
        if cfg.hand_render_guidance:
            inp = inp + self.render_guider(
                resize_maps(self._cond(cond, "hand_render", "hand_render_guidance"), hw).to(x.dtype))
        if cfg.mlo_guider:
            inp = inp + self.mlo_guider(resize_maps(self._cond(cond, "mlo_normals", "mlo_guider"), hw).to(x.dtype))
        return inp

    def embed_tokens(self, inp: torch.Tensor, cond: dict, ref_keep: torch.Tensor | None,
                     structure_noisy: torch.Tensor | None) -> TokenSequence:
        """Video tokens, then reference tokens (same patch embedding), then structure tokens (training only)."""
        cfg = self.config
        b, nt, _, h, w = inp.shape
        dev = inp.device
        p = cfg.patch_size
        th, tw = h // p, w // p
        tokens = [self._patchify(inp, self.patch_embed)]
        if cfg.source_video:
            tokens[0] = tokens[0] + self._patchify(self.source_input(cond, (h, w), inp.dtype), self.source_embed)
        n = tokens[0].shape[1]
        r = 0
        ref = cond.get("reference_latent") if cfg.ref_tokens else None
        if cfg.ref_tokens and ref is None:
            raise ValueError("condition 'reference_latent' is required by ref_tokens but was not given")
        if ref is not None:
            rt = self._patchify(ref.unsqueeze(1).to(inp.dtype), self.patch_embed) + self.ref_type
            r = rt.shape[1]
            tokens.append(rt)
            if ref_keep is None:
                ref_keep = torch.ones(b, dtype=torch.bool, device=dev)
        s = 0
        if structure_noisy is not None:
            if not cfg.structure_stream:
                raise ValueError("structure_noisy given but structure_stream is off")
            st = self._patchify(resize_maps(structure_noisy, (h, w)).to(inp.dtype), self.struct_embed) + self.struct_type
            s = st.shape[1]
            tokens.append(st)
        ref_pos = reference_positions(th, tw, cfg.heads, nt, cfg.head_sliding_rope, device=dev) if r else None
        return TokenSequence(torch.cat(tokens, 1), n, r, s, grid_positions(nt, th, tw, device=dev), ref_pos, ref_keep)

    def source_input(self, cond: dict, hw: tuple[int, int], dtype) -> torch.Tensor:
        """The source clip's patch-input channels ``(B, T, c + 2, h, w)``: its latent, object mask, hand mask."""
        maps = [self._cond(cond, "source_latent", "source_video"), self._cond(cond, "object_mask", "source_video"),
                self._cond(cond, "hand_mask", "source_video")]
        return torch.cat([resize_maps(m.float(), hw).to(dtype) for m in maps], 2)

    def positions(self, seq: TokenSequence) -> torch.Tensor | None:
        """3D RoPE angles ``(H or 1, L, D/2)``; without rope3d, sin-cos embeddings added to ``seq.tokens``."""
        cfg = self.config
        vid_pos, ref_pos = seq.video_positions, seq.reference_positions
        if cfg.rope3d:
            pos = [vid_pos.unsqueeze(0).expand(cfg.heads, -1, -1)]
            if seq.r:
                pos.append(ref_pos)
            if seq.s:
                pos.append(vid_pos.unsqueeze(0).expand(cfg.heads, -1, -1))
            angles = rope_angles(torch.cat(pos, 1), cfg.head_dim, cfg.rope_theta)
            return angles if cfg.head_sliding_rope else angles[:1]
        pe = [sincos_3d(vid_pos, cfg.dim)]
        if seq.r:
            pe.append(sincos_3d(ref_pos[0], cfg.dim))
        if seq.s:
            pe.append(sincos_3d(vid_pos, cfg.dim))
        seq.tokens = seq.tokens + torch.cat(pe, 0).to(seq.tokens.dtype)
        return None

    def regions(self, cond: dict, t: int, hw: tuple[int, int], batch: int, device) -> Regions:
        frac = self.region_fractions(cond, t, hw, batch, device)
        return Regions(frac["hand_mask"], frac["object_mask"])

    def attention_mask(self, seq: TokenSequence, regions: Regions) -> torch.Tensor | None:
        """The joint self-attention mask ``(B, L, L)`` of the module docstring's table (None: video only)."""
        n, r, s = seq.sizes
        if not (r or s):
            return None
        cfg = self.config
        b, L = seq.tokens.shape[0], n + r + s
        attn_mask = torch.zeros(b, L, L, dtype=torch.bool, device=seq.tokens.device)
        attn_mask[:, :n, :n] = True
        if r:
            allow = seq.ref_keep.view(b, 1).expand(b, n)
            if cfg.ref_gate:
                allow = allow & (torch.maximum(regions.hand, regions.object) > cfg.gate_threshold)
            attn_mask[:, :n, n:n + r] = allow.unsqueeze(-1)
            attn_mask[:, n:n + r, n:n + r] = True
        if s:
            attn_mask[:, n + r:, :n] = True
            attn_mask[:, n + r:, n + r:] = True
            if r:
                attn_mask[:, n + r:, n:n + r] = seq.ref_keep.view(b, 1, 1)
        return attn_mask

    def cross_context(self, cond: dict, seq: TokenSequence, regions: Regions, hw: tuple[int, int],
                      dtype) -> CrossContext | None:
        """MLO tokens (own frame only, with ``mlo_same_frame``) and memory banks (hand bank inside the hand,
        object bank inside the object)."""
        cfg = self.config
        if not (cfg.mlo_tokens or cfg.memory_banks):
            return None
        b, n, dev = seq.tokens.shape[0], seq.n, seq.tokens.device
        ctx_tokens, cmask, n_mlo, q_ang, k_ang = [], [], 0, None, None
        if cfg.mlo_tokens:
            mlo = torch.cat([self._cond(cond, "mlo_normals", "mlo_tokens"),
                             self._cond(cond, "mlo_occlusion", "mlo_tokens")], 2)
            mt, (mt_t, mh, mw) = self.mlo_tokenizer(resize_maps(mlo, hw).to(dtype))
            n_mlo = mt.shape[1]
            ctx_tokens.append(mt)
            if cfg.mlo_same_frame:  # video token i (frame i // per-frame) reads its own frame's MLO tokens
                frame_q = torch.arange(n, device=dev) // (n // mt_t)
                frame_k = torch.arange(n_mlo, device=dev) // (n_mlo // mt_t)
                cmask.append((frame_q[:, None] == frame_k[None, :]).unsqueeze(0).expand(b, n, n_mlo))
            else:
                cmask.append(torch.ones(b, n, n_mlo, dtype=torch.bool, device=dev))
            if cfg.rope3d:
                q_ang = rope_angles(seq.video_positions, cfg.head_dim, cfg.rope_theta)
                k_ang = rope_angles(grid_positions(mt_t, mh, mw, cfg.mlo_token_stride, device=dev),
                                    cfg.head_dim, cfg.rope_theta)
        if cfg.memory_banks:
            m = cfg.memory_size
            ctx_tokens.append(self.memory(b).to(dtype))
            hand_in = (regions.hand > cfg.gate_threshold).unsqueeze(-1).expand(b, n, m)
            obj_in = (regions.object > cfg.gate_threshold).unsqueeze(-1).expand(b, n, m)
            cmask += [hand_in, obj_in]
        return CrossContext(torch.cat(ctx_tokens, 1), torch.cat(cmask, -1), n_mlo, q_ang, k_ang)

    def timestep_conditioning(self, t: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """adaLN conditioning vectors: the video's flow time, and time 0 for the clean reference."""
        c_vid = self.t_embed(timestep_embedding(t, 256).to(dtype))
        c_ref = self.t_embed(timestep_embedding(torch.zeros_like(t), 256).to(dtype))
        return c_vid, c_ref

    def run_blocks(self, seq: TokenSequence, c_vid: torch.Tensor, c_ref: torch.Tensor, angles: torch.Tensor | None,
                   attn_mask: torch.Tensor | None, ctx: CrossContext | None, return_attn: bool) -> BlockOutputs:
        xs = seq.tokens
        router_logits, attns = [], []
        for blk in self.blocks:
            args = (xs, c_vid, c_ref, c_vid, seq.sizes, angles, attn_mask, ctx, return_attn)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                xs, logit, wts = checkpoint(blk, *args, use_reentrant=False)
            else:
                xs, logit, wts = blk(*args)
            if logit is not None:
                router_logits.append(logit)
            if wts is not None:
                attns.append(wts)
        return BlockOutputs(xs, router_logits, attns)
