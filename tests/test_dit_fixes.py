"""Issue 18's fixes in the from-scratch DiT: deferred (meta) init, Wan VAE folders, frame-aligned MLO
tokens, the timestep shift in training and sampling, hand conditions that follow ``shift_hands``, and
the source-video condition. Tiny seeded models on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hoi_cli.errors import BadInputError, MissingWeightsError
from hoi_cli.models.config import ModelConfig, make_config
from hoi_cli.models.dit import HOIVideoDiT
from hoi_cli.models.flow import sample_t, sample_video, training_losses
from hoi_cli.testing import random_model_conditions
from hoi_cli.models.scheduler import FlowMatchEulerScheduler
from hoi_cli.models.vae import LatentCodec

pytestmark = pytest.mark.usefixtures("torch_one_thread")
B, T, H, W = 1, 4, 32, 32


def _conditions(cfg, seed: int = 0, t: int = T) -> dict:
    return random_model_conditions(cfg, seed, B, t, (H, W), source_video=True)


def _model_cond(c: dict) -> dict:
    cond = {k: v for k, v in c.items() if k not in ("reference", "structure", "source_video")}
    cond["reference_latent"] = c["reference"]
    cond["source_latent"] = c["source_video"]  # pixel mode: the codec is the identity
    return cond


# ------------------------------------------------------------------ 1. meta device
@pytest.mark.parametrize("zero_init", [True, False])
def test_meta_build_then_reset_equals_a_seeded_build(zero_init):
    cfg = make_config("tiny", "all", zero_init=zero_init, source_video=True)
    torch.manual_seed(3)
    normal = HOIVideoDiT(cfg)
    torch.manual_seed(0)
    with torch.device("meta"):
        deferred = HOIVideoDiT(cfg)
    assert all(p.is_meta for p in deferred.parameters())
    n_params = sum(p.numel() for p in normal.parameters())
    assert sum(p.numel() for p in deferred.parameters()) == n_params
    deferred.to_empty(device="cpu")
    torch.manual_seed(3)
    deferred.reset_parameters()
    a, b = normal.state_dict(), deferred.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the same draws happen in the same order: the generator ends where a normal build leaves it
    torch.manual_seed(3)
    HOIVideoDiT(cfg)
    after_build = torch.rand(3)
    torch.manual_seed(3)
    deferred.reset_parameters()
    assert torch.equal(torch.rand(3), after_build)
    # what is exactly zero: linear and LayerNorm biases, the type embeddings, the source embedding and,
    # with zero_init, adaLN-Zero, cross-attention outputs, the final layers and the guiders' last convs
    modules = dict(deferred.named_modules())
    expected = {n for n in a if n.endswith(".bias") and isinstance(modules[n.rsplit(".", 1)[0]],
                                                                 (torch.nn.Linear, torch.nn.LayerNorm))}
    expected |= {"ref_type", "struct_type", "source_embed.weight"}
    if zero_init:
        zero_parts = (".ada.", ".ada_struct.", ".cproj.", "final.", "guider.net.6.", "encoder.net.6.")
        expected |= {n for n in a if any(part in n or n.startswith(part) for part in zero_parts)}
    assert {n for n, p in deferred.named_parameters() if not p.any()} == expected


def test_meta_build_draws_no_random_numbers():
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    with torch.device("meta"):
        HOIVideoDiT(make_config("tiny", "all"))
    assert torch.equal(torch.rand(4), expected)


# ------------------------------------------------------------------ 2. VAE folders
def _write_config(folder, cfg: dict):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_wan_vae_folder_is_read_and_refused(tmp_path):
    from hoi_cli.models.vae import config_for_vae, load_vae, read_vae_config

    diffusers = pytest.importorskip("diffusers")
    folder = tmp_path / "wan_vae"
    diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True]).save_pretrained(folder)
    info = read_vae_config(folder)
    assert (info.kind, info.latent_channels, info.spatial_factor, info.temporal_factor) == ("AutoencoderKLWan", 4, 8, 4)
    for call in (lambda: config_for_vae(make_config("tiny", "none"), folder), lambda: load_vae(folder)):
        with pytest.raises(BadInputError) as exc:
            call()
        assert "4 latent channels, 8x spatial, 4x temporal" in exc.value.message
        assert "--base wan-vace-1.3b" in exc.value.hint and "\n" not in exc.value.message


def _factors(info) -> tuple[int, int, int]:
    return info.latent_channels, info.spatial_factor, info.temporal_factor


def test_vae_configs_in_the_official_format(tmp_path):
    from hoi_cli.models.vae import config_for_vae, read_vae_config

    # Wan 2.1's vae/config.json as published before diffusers added scale_factor_*: z_dim 16, 8x, 4x
    wan21 = _write_config(tmp_path / "wan21", {"_class_name": "AutoencoderKLWan", "base_dim": 96, "z_dim": 16,
                                               "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                               "temperal_downsample": [False, True, True]})
    assert _factors(read_vae_config(wan21)) == (16, 8, 4)
    # Wan 2.2's: 48 channels, patchified 2x2 -> 16x spatial
    wan22 = _write_config(tmp_path / "wan22", {"_class_name": "AutoencoderKLWan", "z_dim": 48, "patch_size": 2,
                                               "dim_mult": [1, 2, 4, 4], "temperal_downsample": [False, True, True]})
    assert _factors(read_vae_config(wan22)) == (48, 16, 4)
    # no _class_name (hand-written): recognised by z_dim
    assert read_vae_config(_write_config(tmp_path / "anon", {"z_dim": 16})).kind == "AutoencoderKLWan"
    diffusers = pytest.importorskip("diffusers")
    kl = tmp_path / "kl"
    diffusers.AutoencoderKL(block_out_channels=(8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
                            up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=6, norm_num_groups=4,
                            layers_per_block=1).save_pretrained(kl)
    cfg = config_for_vae(make_config("tiny", "none", height=32, width=32), kl)
    assert (cfg.latent_channels, cfg.vae_downsample, cfg.vae_scaling_factor) == (6, 4, 0.18215)
    other = _write_config(tmp_path / "cog", {"_class_name": "AutoencoderKLCogVideoX", "latent_channels": 16})
    with pytest.raises(BadInputError, match="AutoencoderKLCogVideoX"):
        read_vae_config(other)
    _write_config(tmp_path / "model" / "vae", {"_class_name": "AutoencoderKLWan", "z_dim": 16})
    with pytest.raises(MissingWeightsError) as exc:
        read_vae_config(tmp_path / "model")
    assert "vae/ subfolder" in exc.value.hint


# ------------------------------------------------------------------ 3. frame-aligned MLO tokens
def _mlo_change(same_frame: bool, frame: int = 2) -> torch.Tensor:
    # depth 1 and no MLO guider: self-attention runs before the cross-attention, the rest is per token,
    # so MLO tokens can reach another frame's output only through the cross-attention itself
    cfg = make_config("tiny", "manivideo", mlo_guider=False, depth=1, zero_init=False, mlo_same_frame=same_frame)
    torch.manual_seed(0)
    m = HOIVideoDiT(cfg).eval()
    c = _conditions(cfg)
    x = torch.randn(B, T, 3, H, W, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.6])
    changed = _model_cond(c)
    changed["mlo_normals"] = changed["mlo_normals"].clone()
    changed["mlo_normals"][:, frame] = -changed["mlo_normals"][:, frame]
    changed["mlo_occlusion"] = changed["mlo_occlusion"].clone()
    changed["mlo_occlusion"][:, frame] = 1 - changed["mlo_occlusion"][:, frame]
    with torch.no_grad():
        return (m(x, t, changed) - m(x, t, _model_cond(c))).abs().flatten(2).amax(-1)[0]  # (T,)


def test_mlo_tokens_reach_only_their_own_frame():
    diff = _mlo_change(True)
    assert diff[2] > 1e-3
    assert torch.equal(diff[[0, 1, 3]], torch.zeros(3))  # exactly zero elsewhere
    legacy = _mlo_change(False)  # every frame's MLO tokens (the defect): the change leaks
    assert (legacy[[0, 1, 3]] > 1e-4).all()


def test_mlo_cross_mask_is_block_diagonal_and_old_configs_keep_their_behaviour():
    cfg = make_config("tiny", "manivideo")
    m = HOIVideoDiT(cfg).eval()
    c = _conditions(cfg)
    cond = _model_cond(c)
    seq = m.embed_tokens(m.guided_input(torch.zeros(B, T, 3, H, W), cond), cond, None, None)
    ctx = m.cross_context(cond, seq, m.regions(cond, T, (H, W), B, "cpu"), (H, W), torch.float32)
    assert ctx.mask.shape == (B, 4 * 64, 4 * 16)  # 8x8 tokens, 4x4 MLO tokens (stride 2) per frame
    assert ctx.mask.sum(-1).unique().tolist() == [16]
    assert ctx.mask[0, 64 * 2 + 5].nonzero()[:, 0].tolist() == list(range(32, 48))
    saved = cfg.to_dict()
    assert ModelConfig.from_dict(saved).mlo_same_frame is True
    del saved["mlo_same_frame"]  # a config.json written before the fix
    assert ModelConfig.from_dict(saved).mlo_same_frame is False


# ------------------------------------------------------------------ 4. timestep shift
def test_shifted_grid_worked_numbers():
    s = FlowMatchEulerScheduler(3.0)
    s.set_timesteps(4)  # u = 1, .75, .5, .25, 0 -> 3u / (1 + 2u)
    assert torch.allclose(s.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]), atol=1e-7)
    s.set_timesteps(4, strength=0.5)  # SDEdit, 2 steps from u = .5: t = .75, then u = .25 -> .5
    assert s.start_time == 0.75 and torch.allclose(s.sigmas, torch.tensor([0.75, 0.5, 0.0]))
    one = FlowMatchEulerScheduler(1.0)
    one.set_timesteps(5)
    assert torch.equal(one.sigmas, torch.linspace(1, 0, 6))


def test_training_draws_the_shifted_times():
    g = torch.Generator().manual_seed(0)
    plain = sample_t(20000, "logit_normal", g)
    g = torch.Generator().manual_seed(0)
    shifted = sample_t(20000, "logit_normal", g, shift=3.0)
    assert torch.allclose(shifted, (3 * plain / (1 + 2 * plain)).clamp(1e-4, 1 - 1e-4), atol=1e-6)
    assert abs(plain.median().item() - 0.5) < 0.02 and abs(shifted.median().item() - 0.75) < 0.02
    # training_losses uses the config's flow_shift: the same loss as giving it those shifted times
    cfg = make_config("tiny", "none", zero_init=False, flow_shift=3.0)
    torch.manual_seed(0)
    m = HOIVideoDiT(cfg)
    c = _conditions(cfg)
    batch = dict(reference=c["reference"], video=torch.rand(B, T, 3, H, W) * 2 - 1)
    auto = training_losses(m, LatentCodec(), batch, generator=torch.Generator().manual_seed(4))["loss"]
    g = torch.Generator().manual_seed(4)
    t = sample_t(B, "logit_normal", g, shift=3.0)
    given = training_losses(m, LatentCodec(), batch, generator=g, t=t)["loss"]
    assert torch.equal(auto, given)
    g = torch.Generator().manual_seed(4)
    unshifted = training_losses(m, LatentCodec(), batch, generator=g, t=sample_t(B, "logit_normal", g))["loss"]
    assert not torch.equal(auto, unshifted)


def test_sampling_defaults_to_the_models_shift():
    models = []
    for shift in (1.0, 2.5):
        torch.manual_seed(0)
        models.append(HOIVideoDiT(make_config("tiny", "none", zero_init=False, flow_shift=shift)))
    c = {"reference": _conditions(models[0].config)["reference"], "num_frames": T}
    own = sample_video(models[1], c, steps=3, seed=1)
    assert torch.equal(own, sample_video(models[0], c, steps=3, seed=1, shift=2.5))
    assert not torch.equal(own, sample_video(models[0], c, steps=3, seed=1))


# ------------------------------------------------------------------ 5. hand conditions follow shift_hands
def _two_hand_layout(smooth: float = 0.0):
    from hoi_cli.generate.layout import LayoutParams, adjust_layout

    n = 3
    hands = np.tile(np.array([[8, 16, 24, 32], [40, 16, 56, 32]], np.float32), (n, 1, 1))  # 64x64 px
    obj = np.tile(np.array([24, 16, 40, 32], np.float32), (n, 1))  # both hands at its sides
    params = LayoutParams(size_mode="height", smooth_sigma=smooth, contact_window=1)
    return hands, adjust_layout(hands, obj, 2.0, params)  # twice as wide: sides move by -8 / +8 px


def test_hand_maps_move_with_the_layout_boxes():
    from hoi_cli.conditions import rasterize_boxes
    from hoi_cli.conventions import MLO_LAYERS
    from hoi_cli.generate.layout import shift_hand_maps

    hands, layout = _two_hand_layout()
    assert np.allclose(layout.hand_shift, [[-8, 8]] * 3)
    src = rasterize_boxes(hands, (64, 64), (32, 32))  # (T, 2, 32, 32): the maps at the model's size
    new = rasterize_boxes(layout.hand_boxes, (64, 64), (32, 32))
    obj = rasterize_boxes(np.tile([[[24, 16, 40, 32]]], (3, 1, 1)).astype(np.float32), (64, 64), (32, 32))
    L = len(MLO_LAYERS)
    left, right = MLO_LAYERS.index("left_palm"), MLO_LAYERS.index("right_pinky")
    occ = np.zeros((3, L, 32, 32), np.float32)
    occ[:, left], occ[:, right], occ[:, 0] = src[:, 0], src[:, 1], obj[:, 0]
    maps = {"hand_mask": torch.from_numpy(src.max(1, keepdims=True)),
            "hand_render": torch.from_numpy(src * np.array([0.7, 0.4], np.float32)[:, None, None]),
            "mlo_occlusion": occ, "mlo_normals": np.repeat(occ, 3, axis=1), "layout": "untouched"}
    out = shift_hand_maps(maps, layout, hands, (64, 64))
    assert set(out) == {"hand_mask", "hand_render", "mlo_occlusion", "mlo_normals"}
    mask = out["hand_mask"].numpy()[:, 0]
    assert np.array_equal(mask, new.max(1))  # the hand mask's boxes are the shifted layout boxes
    for t in range(3):  # left hand's box: columns 0..7 (was 4..11); right: 24..31 (was 20..27)
        cols = np.flatnonzero(mask[t].any(0))
        assert cols.tolist() == list(range(0, 8)) + list(range(24, 32))
    assert np.array_equal(out["hand_render"].numpy(), new * np.array([0.7, 0.4], np.float32)[:, None, None])
    assert np.array_equal(out["mlo_occlusion"][:, left], new[:, 0])
    assert np.array_equal(out["mlo_occlusion"][:, right], new[:, 1])
    assert np.array_equal(out["mlo_occlusion"][:, 0], obj[:, 0])  # the object layer stays
    assert np.array_equal(out["mlo_normals"][:, 3 * right:3 * right + 3], np.repeat(new[:, 1:2], 3, 1))
    assert maps["hand_mask"].sum() == out["hand_mask"].sum()  # nothing pushed out of the frame here


def test_fractional_shift_and_owner():
    from hoi_cli.generate.layout import hand_owner, shift_columns

    a = np.zeros((1, 4, 8), np.float32)
    a[..., 2] = 1.0
    half = shift_columns(a, 1.5)
    assert half[0, 0].tolist() == [0, 0, 0, 0.5, 0.5, 0, 0, 0]
    assert shift_columns(a, -3)[0, 0].tolist() == [0] * 8  # column 2 - 3 leaves the frame
    owner = hand_owner(np.array([[0, 0, 2, 4], [6, 0, 8, 4]], np.float32), (4, 8))
    assert owner[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    only_right = hand_owner(np.array([[np.nan] * 4, [6, 0, 8, 4]], np.float32), (4, 8))
    assert (only_right == 1).all()


# ------------------------------------------------------------------ 6. source video condition
def test_source_video_is_a_no_op_at_init_and_learns():
    torch.manual_seed(0)
    base = HOIVideoDiT(make_config("tiny", "all", zero_init=False)).eval()
    torch.manual_seed(0)
    with_src = HOIVideoDiT(make_config("tiny", "all", zero_init=False, source_video=True)).eval()
    assert set(with_src.state_dict()) - set(base.state_dict()) == {"source_embed.weight"}
    assert with_src.source_embed.weight.shape == (64, 3 + 2, 4, 4) and not with_src.source_embed.weight.any()
    c = _conditions(base.config)
    x = torch.randn(B, T, 3, H, W, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.4])
    with torch.no_grad():
        assert torch.equal(with_src(x, t, _model_cond(c)), base(x, t, _model_cond(c)))  # exact no-op
    with pytest.raises(ValueError, match="source_latent"):
        with_src(x, t, {k: v for k, v in _model_cond(c).items() if k != "source_latent"})
    # the gradient reaches the new weights, and after one step the source changes the output
    with_src.train()
    batch = dict(c, video=torch.rand(B, T, 3, H, W) * 2 - 1)
    training_losses(with_src, LatentCodec(), batch, generator=torch.Generator().manual_seed(0))["loss"].backward()
    grad = with_src.source_embed.weight.grad
    assert grad is not None and grad.abs().sum() > 1e-3
    with torch.no_grad():
        with_src.source_embed.weight -= 0.1 * grad / grad.abs().max()
        other = dict(_model_cond(c), source_latent=-_model_cond(c)["source_latent"])
        assert (with_src(x, t, other) - with_src(x, t, _model_cond(c))).abs().max() > 1e-4


def test_source_video_condition_from_run_folders(tmp_path):
    """One builder for training and sampling: the dataset item and clip_conditions agree; 07_genhoi's
    removal is used where it ran, else the frames with the hand and object masks at 0."""
    from hoi_cli import conditions
    from hoi_cli.testing import SYNTHETIC_STAGES, make_synthetic_run
    from hoi_cli.train.dataset import HOIRunDataset

    run = make_synthetic_run(tmp_path / "run", n_frames=5, height=32, width=32, stages=SYNTHETIC_STAGES).path
    cfg = make_config("tiny", "none", num_frames=5, source_video=True)
    assert {"hand_mask", "object_mask"} <= cfg.required_conditions()
    item = HOIRunDataset.for_config([run], cfg)[0]
    clip = conditions.clip_conditions(run, (32, 32), 5, source_video=True)
    assert torch.equal(item["source_video"], clip["source_video"])
    region = torch.maximum(item["hand_mask"], item["object_mask"]) > 0.5
    assert region.any() and torch.equal(item["source_video"], item["video"] * ~region)
    assert "source_video" not in HOIRunDataset([run], 5, 32, 32)[0]  # only when the model asks for it
    # 07_genhoi ran: its object-removed frames
    from hoi_cli.stages import genhoi
    from hoi_cli.stages.base import StageContext

    tmp = run / ".07_genhoi.tmp"
    tmp.mkdir()
    params = genhoi.Params()
    summary = genhoi.run(StageContext(run, tmp, params))
    (tmp / "manifest.json").write_text(json.dumps({"stage": "07_genhoi", "params": vars(params), "summary": summary}))
    tmp.rename(run / "07_genhoi")
    item = HOIRunDataset.for_config([run], cfg)[0]
    frames = conditions.read_frames(run)
    removed = conditions.read_source_video(run, frames, (32, 32))
    assert torch.equal(item["source_video"], torch.from_numpy(removed))
    assert not torch.equal(item["source_video"], item["video"] * ~region)
    # and the model trains on it
    torch.manual_seed(0)
    m = HOIVideoDiT(cfg)
    batch = {k: v.unsqueeze(0) for k, v in item.items()}
    assert torch.isfinite(training_losses(m, LatentCodec(), batch)["loss"])


def test_generate_diffusion_uses_the_source_video_the_shift_and_moved_hands(tmp_path, monkeypatch):
    """`hoi generate --backend diffusion --shift` on a tiny source-video model trained here for two steps:
    the sampler gets the source clip, the given shift, and hand maps that agree with the layout's hand boxes."""
    from typer.testing import CliRunner

    import hoi_cli.models.flow as flow
    from hoi_cli.cli import app
    from hoi_cli.conditions import clip_conditions, read_detections
    from hoi_cli.generate.layout import hand_owner
    from hoi_cli.testing import SYNTHETIC_STAGES, make_synthetic_run
    from hoi_cli.train.loop import TrainOptions, train

    run = make_synthetic_run(tmp_path / "runs" / "clip", n_frames=6, stages=SYNTHETIC_STAGES).path
    cfg = make_config("tiny", "rehold", source_video=True, flow_shift=2.0)
    train([run], cfg, tmp_path / "ckpt", TrainOptions(steps=2, batch_size=1, save_every=2, progress=False, device="cpu"))
    seen = {}
    real = flow.sample_video

    def spy(model, conditions, **kw):
        seen.update(conditions=conditions, shift=kw.get("shift"), flow_shift=model.config.flow_shift)
        return real(model, conditions, **kw)

    monkeypatch.setattr(flow, "sample_video", spy)
    out = tmp_path / "g.mp4"
    args = ["generate", str(run), "--reference-from-frame", "1", "--backend", "diffusion", "--checkpoint",
            str(tmp_path / "ckpt"), "--out", str(out), "--steps", "2", "--device", "cpu", "--format", "json", "-q",
            "--shift", "3", "--object-scale", "1.6"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["params"]["shift"] == 3.0 and side["track"]["flow_shift"] == 3.0 and side["track"]["source_video"]
    assert seen["shift"] == 3.0 and seen["flow_shift"] == 2.0
    cond = seen["conditions"]
    assert cond["source_video"].shape == (6, 3, 32, 32)
    hand_boxes = np.asarray(side["layout"]["hand_boxes"], np.float32)  # the adjusted boxes, working px
    assert side["layout"]["mean_abs_hand_shift_px"] == [6.0, 6.0]  # both hands moved 6 px = 3 model px

    source_boxes = read_detections(run)["hand_boxes_square"]
    dx = (hand_boxes - source_boxes)[..., 0] * 32 / 64  # model px
    assert np.allclose(np.abs(dx), 3.0)

    def offsets(mask: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        """(T, 2): x of each hand's mask centroid minus its box centre, model px."""
        b = boxes * 0.5
        out = np.zeros((len(b), 2))
        for t in range(len(b)):
            owner = hand_owner(b[t], (32, 32))
            for k in range(2):
                m = mask[t, 0].numpy() * (owner == k)
                out[t, k] = (m.sum(0) * (np.arange(32) + 0.5)).sum() / m.sum() - (b[t, k, 0] + b[t, k, 2]) / 2
        return out

    before = clip_conditions(run, (32, 32), 6)["hand_mask"]
    assert torch.equal(cond["hand_mask"].sum(), before.sum())  # moved, not cut
    # the mask keeps its place relative to its hand box (it would be 3 px off had it stayed put); exact in
    # 4 of 6 frames, within 0.25 px where the two boxes overlap and this split by nearest box reassigns pixels
    kept = np.abs(offsets(cond["hand_mask"], hand_boxes) - offsets(before, source_boxes))
    assert (kept < 1e-4).sum() >= 8 and kept.max() < 0.25
    assert np.abs(offsets(before, hand_boxes) - offsets(before, source_boxes)).min() > 2.7
