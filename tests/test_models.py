"""The diffusion model on tiny CPU configs: shapes, every conditioning path, masks, RoPE, MoE, IO, sampling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hoi_cli.models.checkpoint import EMA, load_checkpoint, load_training_state, save_checkpoint
from hoi_cli.models.config import ModelConfig, make_config, system_switches
from hoi_cli.models.dit import HOIVideoDiT
from hoi_cli.models.flow import sample_video, training_losses, window_starts
from hoi_cli.models.rope import (apply_rope, grid_positions, head_sliding_times, reference_positions,
                                 rope_angles)
from hoi_cli.models.vae import LatentCodec

B, T, H, W = 2, 4, 32, 32
_CFG = make_config("tiny", "all")
N_MLO, CH_RENDER, CH_STRUCT = _CFG.mlo_layers, _CFG.hand_render_channels, _CFG.structure_channels


# one torch thread: ~5x faster than two on this 2-core machine (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def conditions(seed: int = 0, b: int = B, t: int = T) -> dict:
    g = torch.Generator().manual_seed(seed)
    hand = torch.zeros(b, t, 1, H, W)
    hand[..., 4:12, 4:12] = 1.0  # hand in the top-left 2x2 tokens (patch 4)
    obj = torch.zeros(b, t, 1, H, W)
    obj[..., 12:20, 8:16] = 1.0
    return dict(reference=torch.rand(b, 3, H, W, generator=g) * 2 - 1,
                layout=torch.rand(b, t, 3, H, W, generator=g), hand_mask=hand, object_mask=obj,
                hand_render=torch.rand(b, t, CH_RENDER, H, W, generator=g),
                structure=torch.rand(b, t, CH_STRUCT, H, W, generator=g),
                mlo_normals=torch.rand(b, t, 3 * N_MLO, H, W, generator=g) * 2 - 1,
                mlo_occlusion=torch.rand(b, t, N_MLO, H, W, generator=g))


def model_cond(c: dict) -> dict:
    out = {k: v for k, v in c.items() if k not in ("reference", "structure")}
    out["reference_latent"] = c["reference"]
    return out


def tiny_model(system: str = "all", seed: int = 0, **kw) -> HOIVideoDiT:
    torch.manual_seed(seed)
    return HOIVideoDiT(make_config("tiny", system, zero_init=False, **kw)).eval()


def run(model, c, x=None, t=0.5, **kw):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, 3, H, W, generator=g) if x is None else x
    with torch.no_grad():
        return model(x, torch.full((B,), t), model_cond(c), **kw)


# ------------------------------------------------------------------ config
def test_config_roundtrip_and_presets(tmp_path):
    for preset in ("tiny", "small", "base"):
        for system in ("rehold", "manivideo", "cointeract", "genhoi", "all", "none"):
            cfg = make_config(preset, system)
            assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    cfg = make_config("tiny", "genhoi")
    cfg.save(tmp_path / "c.json")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    assert system_switches("rehold")["layout_encoder"] and not system_switches("rehold")["moe"]
    assert make_config("tiny", "cointeract").required_conditions() >= {"structure", "hand_mask"}
    with pytest.raises(ValueError):
        make_config("tiny", "none", rope3d=False, head_sliding_rope=True)


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("system", ["rehold", "manivideo", "cointeract", "genhoi", "all", "none"])
def test_shapes(system):
    m = tiny_model(system)
    c = conditions()
    s = torch.randn(B, T, CH_STRUCT, H, W) if m.config.structure_stream else None
    v, aux = run(m, c, structure_noisy=s, return_aux=True)
    assert v.shape == (B, T, 3, H, W)
    assert torch.isfinite(v).all()
    if system in ("cointeract", "all"):
        assert aux["structure_velocity"].shape == (B, T, CH_STRUCT, H, W)
        assert len(aux["router_logits"]) == m.config.depth
        assert aux["router_logits"][0].shape == (B, T * 8 * 8)


def test_zero_init_model_predicts_zero():
    m = HOIVideoDiT(make_config("tiny", "all")).eval()
    assert torch.equal(run(m, conditions()), torch.zeros(B, T, 3, H, W))


# ------------------------------------------------------------------ each conditioning path
PATHS = [  # (switch, batch key perturbed)
    ("layout_encoder", "layout"),
    ("hand_render_guidance", "hand_render"),
    ("mlo_guider", "mlo_normals"),
    ("mlo_tokens", "mlo_occlusion"),
    ("memory_banks", "object_mask"),
    ("ref_tokens", "reference"),
    ("ref_gate", "object_mask"),
]


def _perturb(c: dict, key: str) -> dict:
    c2 = dict(c)
    if key.endswith("_mask"):
        m = torch.zeros_like(c[key])
        m[..., 20:28, 20:28] = 1.0  # move the region
        c2[key] = m
    else:
        c2[key] = c[key] + 0.5 * torch.randn_like(c[key])
    return c2


@pytest.mark.parametrize("switch,key", PATHS)
def test_condition_path_changes_output(switch, key):
    base = dict(system_switches("none"))
    base.update({switch: True})
    if switch == "ref_gate":
        base["ref_tokens"] = True
    c = conditions()
    c2 = _perturb(c, key)
    on = tiny_model("none", **{k: v for k, v in base.items()})
    assert not torch.allclose(run(on, c), run(on, c2)), f"{switch} on: {key} has no effect"
    off_switches = dict(base, **{switch: False})
    if switch == "ref_tokens":
        off = tiny_model("none", ref_tokens=False)
        cc, cc2 = dict(c), dict(c2)
        with torch.no_grad():
            x = torch.randn(B, T, 3, H, W)
            a = off(x, torch.full((B,), 0.5), {k: v for k, v in model_cond(cc).items() if k != "reference_latent"})
            b = off(x, torch.full((B,), 0.5), {k: v for k, v in model_cond(cc2).items() if k != "reference_latent"})
        assert torch.equal(a, b)
        return
    off = tiny_model("none", **off_switches)
    assert torch.equal(run(off, c), run(off, c2)), f"{switch} off: {key} still changes the output"


def test_reference_dropout_is_the_unconditional_branch():
    m = tiny_model("genhoi")
    c, c2 = conditions(), _perturb(conditions(), "reference")
    drop = torch.zeros(B, dtype=torch.bool)
    assert torch.equal(run(m, c, ref_keep=drop), run(m, c2, ref_keep=drop))
    assert not torch.allclose(run(m, c), run(m, c2))


def test_structure_stream_is_free_at_inference():
    m = tiny_model("cointeract")
    c = conditions()
    s = torch.randn(B, T, CH_STRUCT, H, W)
    v_with, aux = run(m, c, structure_noisy=s, return_aux=True)
    v_without = run(m, c)
    torch.testing.assert_close(v_with, v_without, atol=1e-5, rtol=1e-5)  # video never attends structure
    _, aux2 = run(m, c, x=torch.randn(B, T, 3, H, W), structure_noisy=s, return_aux=True)
    assert not torch.allclose(aux["structure_velocity"], aux2["structure_velocity"])  # structure reads video


# ------------------------------------------------------------------ attention gate
def test_reference_gate_gives_exact_zero_attention_outside_regions():
    m = tiny_model("genhoi")
    c = conditions()
    _, aux = run(m, c, return_aux=True, return_attn=True)
    n, r, s = aux["sizes"]
    frac = torch.maximum(aux["hand_fraction"], aux["object_fraction"])
    outside, inside = frac == 0, frac > 0
    assert outside.any() and inside.any()
    for w in aux["attn"]:  # (B, heads, L, L)
        to_ref = w[:, :, :n, n:n + r].sum(-1)  # (B, heads, N)
        assert torch.all(to_ref.permute(0, 2, 1)[outside] == 0.0)
        assert torch.all(to_ref.permute(0, 2, 1)[inside] > 0.0)
        assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))
    # without the gate, the same tokens do attend the reference
    m2 = tiny_model("genhoi", ref_gate=False)
    _, aux2 = run(m2, c, return_aux=True, return_attn=True)
    assert torch.all(aux2["attn"][0][:, :, :n, n:n + r].sum(-1) > 0)


def test_memory_banks_read_only_inside_masks():
    m = tiny_model("none", memory_banks=True)
    c = conditions()
    c_empty = dict(c, hand_mask=torch.zeros_like(c["hand_mask"]), object_mask=torch.zeros_like(c["object_mask"]))
    with torch.no_grad():
        m.memory.hand.add_(1.0)
    a = run(m, c_empty)
    with torch.no_grad():
        m.memory.hand.add_(5.0)
        m.memory.object.add_(5.0)
    assert torch.equal(a, run(m, c_empty))  # nothing inside any mask: the banks are never read


# ------------------------------------------------------------------ RoPE
def test_head_sliding_positions_are_as_specified():
    torch.testing.assert_close(head_sliding_times(4, 5), torch.tensor([0.0, 4 / 3, 8 / 3, 4.0]))
    torch.testing.assert_close(head_sliding_times(1, 5), torch.tensor([2.0]))
    pos = reference_positions(2, 3, num_heads=4, num_frames=5, sliding=True)
    assert pos.shape == (4, 6, 3)
    for h in range(4):
        assert torch.allclose(pos[h, :, 0], torch.full((6,), h * 4 / 3))
        torch.testing.assert_close(pos[h, :, 1:], grid_positions(1, 2, 3)[:, 1:])
    assert torch.all(reference_positions(2, 3, 4, 5, sliding=False)[..., 0] == 0)
    # the model applies exactly these positions: the reference angles differ per head
    m = tiny_model("genhoi")
    cfg = m.config
    ang = rope_angles(reference_positions(8, 8, cfg.heads, T, True), cfg.head_dim)
    assert not torch.allclose(ang[0], ang[-1])


def test_rope_is_relative():
    d = 24
    q, k = torch.randn(1, 1, 1, d), torch.randn(1, 1, 1, d)
    p1 = torch.tensor([[1.0, 2.0, 3.0]])
    k1 = torch.tensor([[4.0, 0.0, 5.0]])
    shift = torch.tensor([[2.0, 3.0, -1.0]])
    s1 = (apply_rope(q, rope_angles(p1, d)) * apply_rope(k, rope_angles(k1, d))).sum()
    s2 = (apply_rope(q, rope_angles(p1 + shift, d)) * apply_rope(k, rope_angles(k1 + shift, d))).sum()
    torch.testing.assert_close(s1, s2, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ MoE routing
def test_moe_router_learns_the_hand_mask():
    torch.manual_seed(0)
    cfg = make_config("tiny", "none", moe=True, ref_tokens=False, depth=1)
    m = HOIVideoDiT(cfg)
    x = torch.randn(B, T, 3, H, W) * 0.1
    hand = torch.zeros(B, T, 1, H, W)
    hand[..., 8:24, 0:16] = 1.0
    x = x + hand * 1.5  # a hand-coloured region the router can see
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    from hoi_cli.models.conditioning import router_loss
    losses = []
    for _ in range(40):
        _, aux = m(x, torch.full((B,), 0.3), {"hand_mask": hand}, return_aux=True)
        loss = router_loss(aux["router_logits"], aux["hand_fraction"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    _, aux = m(x, torch.full((B,), 0.3), {"hand_mask": hand}, return_aux=True)
    pred = aux["router_logits"][0] > 0
    assert (pred == (aux["hand_fraction"] > 0.5)).float().mean() > 0.95


# ------------------------------------------------------------------ save / load
def test_checkpoint_roundtrip_is_bit_identical(tmp_path):
    m = tiny_model("all")
    ema = EMA(m, 0.9)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    batch = dict(conditions(), video=torch.rand(B, T, 3, H, W) * 2 - 1)
    m.train()
    for _ in range(2):
        loss = training_losses(m, LatentCodec(), batch, generator=torch.Generator().manual_seed(0))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(m)
    m.eval()
    save_checkpoint(tmp_path, m, step=2, ema=ema, optimizer=opt)
    m2 = load_checkpoint(tmp_path, use_ema=False)
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert torch.equal(run(m, conditions()), run(m2, conditions()))
    m3 = load_checkpoint(tmp_path, use_ema=True)
    for k, v in ema.state_dict().items():
        assert torch.equal(v, m3.state_dict()[k].float()), k
    # resumable state: optimizer and EMA come back exactly
    m4 = tiny_model("all", seed=5)
    ema4 = EMA(m4, 0.9)
    opt4 = torch.optim.AdamW(m4.parameters(), lr=1e-3)
    state = load_training_state(tmp_path / "step_000002", m4, ema4, opt4)
    assert state["step"] == 2
    s1, s4 = opt.state_dict(), opt4.state_dict()
    for i in s1["state"]:
        for name, val in s1["state"][i].items():
            assert torch.equal(torch.as_tensor(val), torch.as_tensor(s4["state"][i][name]))
    for k, v in ema.state_dict().items():
        assert torch.equal(v, ema4.state_dict()[k])


# ------------------------------------------------------------------ training signal
def test_loss_goes_down_overfitting_one_clip():
    torch.manual_seed(0)
    m = HOIVideoDiT(make_config("tiny", "none"))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    c = conditions(b=1)
    clip = torch.zeros(1, T, 3, H, W) - 0.5
    clip[..., 8:24, 8:24] = 0.8
    batch = dict(c, video=clip)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = training_losses(m, LatentCodec(), batch, generator=g)["video"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.7 * first, (first, last)


def test_gradient_checkpointing_matches():
    m = tiny_model("cointeract")
    batch = dict(conditions(), video=torch.rand(B, T, 3, H, W) * 2 - 1)
    m.train()

    def grads(flag):
        m.zero_grad()
        m.gradient_checkpointing = flag
        training_losses(m, LatentCodec(), batch, generator=torch.Generator().manual_seed(3))["loss"].backward()
        return [p.grad.clone() for p in m.parameters() if p.grad is not None]

    for a, b in zip(grads(False), grads(True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ sampling
def test_sampling_is_reproducible_and_windowed():
    m = tiny_model("all")
    c = conditions(b=1, t=7)  # longer than the 4-frame window
    v1 = sample_video(m, c, steps=3, guidance=2.0, seed=7)
    v2 = sample_video(m, c, steps=3, guidance=2.0, seed=7)
    v3 = sample_video(m, c, steps=3, guidance=2.0, seed=8)
    assert v1.shape == (1, 7, 3, H, W)
    assert torch.equal(v1, v2)
    assert not torch.equal(v1, v3)
    assert v1.abs().max() <= 1.0
    unb = sample_video(m, {k: v[0] for k, v in c.items()}, steps=3, guidance=2.0, seed=7)
    assert torch.equal(unb, v1[0])
    assert window_starts(7, 4, 2) == [0, 2, 3]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(12, 4, 1) == [0, 3, 6, 8]


def test_window_covering_clip_equals_single_pass():
    m = tiny_model("genhoi")
    c = conditions(b=1)
    a = sample_video(m, c, steps=2, guidance=1.0, seed=1)
    b = sample_video(m, c, steps=2, guidance=1.0, seed=1, window=8)
    assert torch.equal(a, b)


def test_sdedit_start():
    m = tiny_model("none")
    c = conditions(b=1)
    init = torch.rand(1, T, 3, H, W) * 2 - 1
    assert torch.equal(sample_video(m, c, steps=4, seed=0, init_video=init, strength=0.0), init)
    near = sample_video(m, c, steps=4, seed=0, init_video=init, strength=0.2)
    far = sample_video(m, c, steps=4, seed=0)
    assert (near - init).abs().mean() < (far - init).abs().mean()


# ------------------------------------------------------------------ optional VAE
def test_vae_latent_mode(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from hoi_cli.models.vae import codec_for, config_for_vae

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                  latent_channels=4, norm_num_groups=4, sample_size=32, layers_per_block=1)
    vae.save_pretrained(tmp_path / "vae")
    cfg = config_for_vae(make_config("tiny", "all", zero_init=False), tmp_path / "vae")
    assert (cfg.latent_channels, cfg.vae_downsample, cfg.patch_size) == (4, 2, 2)
    codec = codec_for(cfg)
    m = HOIVideoDiT(cfg).eval()
    c = conditions(b=1)
    batch = dict(c, video=torch.rand(1, T, 3, H, W) * 2 - 1)
    assert torch.isfinite(training_losses(m, codec, batch)["loss"])
    save_checkpoint(tmp_path / "ck", m, step=1)
    m2 = load_checkpoint(tmp_path / "ck")
    assert not m2.codec.is_pixel
    out = sample_video(m2, c, steps=2, guidance=1.5, seed=0)
    assert out.shape == (1, T, 3, H, W)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_and_amp_step():
    m = tiny_model("all").cuda()
    c = {k: v.cuda() for k, v in conditions(b=1).items()}
    assert sample_video(m, c, steps=2, seed=0).shape == (1, T, 3, H, W)
    batch = dict(c, video=torch.rand(1, T, 3, H, W, device="cuda") * 2 - 1)
    m.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = training_losses(m, LatentCodec(), batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)


def test_config_dataclass_has_no_untyped_extras():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    assert {"layout_encoder", "memory_banks", "mlo_tokens", "structure_stream", "moe", "head_sliding_rope",
            "ref_gate"} <= names


def test_sampling_resizes_to_the_model_and_back():
    import numpy as np

    m = tiny_model("all")
    c = conditions(b=1)
    big = {k: torch.nn.functional.interpolate(v.flatten(0, 1) if v.ndim == 5 else v, size=(48, 64)).unflatten(
        0, v.shape[:2]) if v.ndim == 5 else torch.nn.functional.interpolate(v, size=(48, 64)) for k, v in c.items()}
    out = sample_video(m, {k: v.numpy() for k, v in big.items()}, steps=2, seed=0)
    assert out.shape == (1, T, 3, 48, 64)
    small = sample_video(m, big, steps=2, seed=0, resize_back=False)
    assert small.shape == (1, T, 3, H, W)
    assert isinstance(np.asarray(out), np.ndarray)


def test_importing_models_package_is_cheap():
    import subprocess
    import sys

    code = "import sys, hoi_cli.models; assert 'torch' not in sys.modules; print(hoi_cli.models.__all__[0])"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.slow
def test_overfit_then_sample_reproduces_the_clip():
    """End-to-end sign check of loss and sampler: a model overfit on one clip samples it back."""
    torch.manual_seed(0)
    m = HOIVideoDiT(make_config("tiny", "none", ref_tokens=False, t_sampling="uniform"))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    clip = torch.zeros(1, T, 3, H, W) - 0.5
    for i in range(T):
        clip[:, i, :, 8:20, 4 + 4 * i:16 + 4 * i] = 0.8  # a square moving right
    batch = {"video": clip.repeat(4, 1, 1, 1, 1)}
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss = training_losses(m, LatentCodec(), batch, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = sample_video(m, {"num_frames": T}, steps=10, guidance=1.0, seed=0)
    psnr = 10 * torch.log10(4 / ((out - clip) ** 2).mean())
    baseline = 10 * torch.log10(4 / (clip ** 2).mean())
    assert psnr > 16 and psnr > baseline + 4, (float(psnr), float(baseline))


def test_missing_vae_folder_is_a_missing_weights_error(tmp_path):
    from hoi_cli.errors import MissingWeightsError
    from hoi_cli.models.vae import load_vae

    with pytest.raises(MissingWeightsError) as err:
        load_vae(tmp_path / "nope")
    assert "config.json" in err.value.message
