"""The Wan HOI model (hoi_cli.models.wan) on tiny random configs, on the CPU; nothing is downloaded."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from hoi_cli.models.wan.conditions import build_inputs  # noqa: E402
from hoi_cli.models.wan.config import TINY_VAE, VACE_1_3B, make_wan_config  # noqa: E402
from hoi_cli.models.wan.model import GatedRefAttnProcessor, HOIWan, build_base, reference_rope  # noqa: E402

T, H, W = 5, 32, 32  # 5 frames -> 2 latent frames of 4x4 -> 2x2 tokens, + 1 reference frame


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    yield


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(**TINY_VAE).eval()


def make_batch(n=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    b = {"video": torch.rand(1, n, 3, H, W, generator=g) * 2 - 1, "reference": torch.rand(1, 3, H, W, generator=g) * 2 - 1,
         "layout": torch.rand(1, n, 3, H, W, generator=g), "hand_mask": torch.zeros(1, n, 1, H, W),
         "object_mask": torch.zeros(1, n, 1, H, W), "hand_render": torch.rand(1, n, 2, H, W, generator=g),
         "mlo_normals": torch.rand(1, n, 39, H, W, generator=g) * 2 - 1, "mlo_occlusion": torch.rand(1, n, 13, H, W, generator=g),
         "structure": torch.rand(1, n, 3, H, W, generator=g)}
    b["object_mask"][..., :16, :16] = 1  # top-left token of every frame
    b["hand_mask"][..., :16, 16:] = 1  # top-right token
    return b


@pytest.fixture(scope="module")
def inputs(vae):
    return build_inputs(make_batch(), vae, with_target=True)


def make_model(kind="tiny-vace", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = make_wan_config(kind, "all", num_frames=T, height=H, width=W, **kw)
    base = build_base(cfg).eval()
    return HOIWan(copy.deepcopy(base), cfg).eval(), base


def noisy(inputs, seed=2):
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(1, 16, *inputs.control.shape[2:], generator=g)
    return lat, torch.tensor([700.0]), torch.randn(1, 6, 32, generator=g)


def test_inputs_follow_vace_layout(inputs):
    # 16 inactive + 16 reactive latent channels + 64 mask channels; 1 reference + 2 video latent frames
    assert tuple(inputs.control.shape) == (1, 96, 3, 4, 4)
    assert inputs.n_ref == 1 and tuple(inputs.target.shape) == (1, 16, 2, 4, 4)
    assert torch.all(inputs.control[:, 32:, 0] == 0)  # the reference frame: mask 0, no reactive part
    assert torch.all(inputs.control[:, 16:32, 0] == 0)
    # token fractions: object top-left, hand top-right, nothing below
    assert inputs.fractions["object"][0].tolist() == [1, 0, 0, 0] * 2
    assert inputs.fractions["hand"][0].tolist() == [0, 1, 0, 0] * 2
    # mask channels are the 8x8 pixel blocks: the top-left 2x2 latent pixels are fully masked
    assert torch.all(inputs.control[0, 32:, 1:, :2, :]  == 1) and torch.all(inputs.control[0, 32:, 1:, 2:] == 0)


@pytest.mark.parametrize("kind", ["tiny-vace", "tiny-t2v"])
def test_zero_init_reproduces_the_base_model(kind, inputs):
    model, base = make_model(kind)
    lat, ts, pe = noisy(inputs)
    with torch.no_grad():
        out = model(lat, ts, pe, inputs)
        if kind == "tiny-vace":
            ref = base(hidden_states=lat, timestep=ts, encoder_hidden_states=pe, control_hidden_states=inputs.control,
                       return_dict=False)[0]
        else:
            ref = base(hidden_states=lat, timestep=ts, encoder_hidden_states=pe, return_dict=False)[0]
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-5
    # and the added paths are live: moving the zero-initialised outputs changes the result
    with torch.no_grad():
        for p in model.guiders["layout"].pool.parameters():
            p.normal_(0, 0.1)
        assert (model(lat, ts, pe, inputs) - ref).abs().max().item() > 1e-3


def _attn_outputs(model, inputs, gate_value, ref_keep=True):
    """Block 0's self-attention output with the gated processor and with diffusers' own processor."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    lat, ts, pe = noisy(inputs)
    blk = model.base.blocks[0]
    x = torch.randn(1, 12, model.dim, generator=torch.Generator().manual_seed(3))
    rotary = model.base.rope(lat)
    cos, sin, _ = reference_rope(model.heads, model.head_dim, (2, 2), 1, 2, True)
    hoi = dict(n_ref_tokens=4, ref_cos=cos, ref_sin=sin, ref_keep=torch.tensor([ref_keep]),
               region=(inputs.fractions["region"] > 0).float(), gate=torch.tensor(gate_value))
    with torch.no_grad():
        gated = blk.attn1(x, None, None, rotary, hoi=hoi)
        blk.attn1.set_processor(WanAttnProcessor())
        plain = blk.attn1(x, None, None, rotary)
        blk.attn1.set_processor(GatedRefAttnProcessor())
    return gated, plain


def test_gate_reads_the_reference_only_inside_the_region(inputs):
    model, _ = make_model()
    gated, plain = _attn_outputs(model, inputs, 1.0)
    region = (inputs.fractions["region"][0] > 0)
    video = gated[0, 4:] - plain[0, 4:]
    assert torch.equal(gated[0, :4], plain[0, :4])  # reference-frame queries: untouched
    assert torch.equal(video[~region], torch.zeros_like(video[~region]))  # exactly zero outside
    assert video[region].abs().amin(-1).gt(0).all()  # every token inside reads the reference
    # a_l = 0 (initialisation) and a dropped reference (CFG) are exact no-ops
    for g, keep in ((0.0, True), (1.0, False)):
        gated, plain = _attn_outputs(model, inputs, g, keep)
        assert torch.equal(gated, plain)


def test_head_sliding_positions_and_effect(inputs):
    from hoi_cli.models.wan.model import wan_rope_at

    heads, frames, n_ref = 4, 7, 1
    cos, sin, pos = reference_rope(heads, 12, (2, 3), n_ref, frames, sliding=True)
    assert pos[:, 0, 0].tolist() == [1.0, 3.0, 5.0, 7.0]  # n_ref + h * (F - 1) / (H - 1)
    assert pos[0, :, 1:].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    _, _, flat = reference_rope(heads, 12, (2, 3), n_ref, frames, sliding=False)
    assert torch.all(flat[..., 0] == 0)
    # integer positions reproduce diffusers' Wan RoPE tables exactly
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    rope = WanRotaryPosEmbed(12, (1, 2, 2), 32)
    t_cos, _ = rope(torch.zeros(1, 1, 8, 4, 6))  # (1, 8*2*3, 1, 12): positions (t, y, x) t-major
    for h in range(heads):
        t = int(pos[h, 0, 0])
        assert torch.equal(cos[0, :, h], t_cos[0, t * 6:(t + 1) * 6, 0])
    # fractional positions follow the same formula
    c, _ = wan_rope_at(torch.tensor([[0.5, 0.0, 0.0]]), 12)
    c1, _ = wan_rope_at(torch.tensor([[1.0, 0.0, 0.0]]), 12)
    assert 0 < (c - c1).abs().max() and torch.all(c[..., 4:] == 1)
    # with an open gate, sliding changes the output; with a closed gate it cannot
    model, _ = make_model()
    lat, ts, pe = noisy(inputs)
    with torch.no_grad():
        model.ref_gate.fill_(1.0)
        a = model(lat, ts, pe, inputs)
        model.cfg.head_sliding_rope = False
        b = model(lat, ts, pe, inputs)
    assert (a - b).abs().max() > 1e-4


def test_lora_is_a_noop_and_only_lora_and_new_modules_train(inputs):
    from hoi_cli.models.wan.train import add_lora, set_trainable

    model, _ = make_model()
    lat, ts, pe = noisy(inputs)
    with torch.no_grad():
        before = model(lat, ts, pe, inputs)
    add_lora(model)
    params = set_trainable(model, "lora")
    with torch.no_grad():
        after = model(lat, ts, pe, inputs)
    assert torch.equal(before, after)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(params) == len(names)
    assert all("lora_" in n or not n.startswith("base.") for n in names)
    assert any(".attn1.to_q.lora_A" in n for n in names) and any(".ffn.net.2.lora_B" in n for n in names)
    assert any(n.startswith("guiders.") for n in names) and "ref_gate" in names
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("base.") and "lora_" not in n for n in frozen)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if not n.startswith("base."))


def _train(model, inputs, steps, lr=3e-3):
    from hoi_cli.models.wan.train import set_trainable, training_loss

    params = [p for p in model.parameters() if p.requires_grad] or set_trainable(model)
    opt = torch.optim.AdamW(params, lr=lr)
    gen = torch.Generator()
    losses = []
    model.train()
    for s in range(steps):
        gen.manual_seed(0)  # one noise draw: overfit one clip at one noise level
        parts = training_loss(model, inputs, torch.zeros(1, 6, 32), generator=gen, step=s)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(float(parts["flow"].detach()))
    return opt, losses


def test_checkpoint_round_trip_is_bit_identical(inputs, tmp_path):
    from hoi_cli.models.wan.train import (add_lora, load_training_state, load_wan_checkpoint,
                                          save_wan_checkpoint, trainable_state_dict)

    model, base = make_model(ref_dropout=0.0)
    add_lora(model)
    opt, _ = _train(model, inputs, 2)
    step_dir = save_wan_checkpoint(tmp_path / "ck", model, step=2, optimizer=opt)
    assert (tmp_path / "ck" / "latest").read_text().strip() == "step_000002"
    loaded = load_wan_checkpoint(tmp_path / "ck", base=copy.deepcopy(base))
    a, b = trainable_state_dict(model), trainable_state_dict(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("base.") and "lora_B" in k and a[k].abs().sum() > 0 for k in a)  # LoRA moved
    model.eval()
    lat, ts, pe = noisy(inputs)
    with torch.no_grad():
        assert torch.equal(model(lat, ts, pe, inputs), loaded(lat, ts, pe, inputs))
    # resuming restores the optimizer state too
    fresh, _ = make_model(ref_dropout=0.0)
    add_lora(fresh)
    from hoi_cli.models.wan.train import set_trainable

    opt2 = torch.optim.AdamW(set_trainable(fresh), lr=3e-3)
    assert load_training_state(step_dir, fresh, opt2) == 2
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)


def test_loss_falls_when_overfitting_one_clip(inputs):
    from hoi_cli.models.wan.train import add_lora

    model, _ = make_model(ref_dropout=0.0)
    add_lora(model)
    _, losses = _train(model, inputs, 20)
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses


def test_shifted_timesteps():
    from hoi_cli.models.wan.train import sample_sigmas, shift_sigmas

    u = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.allclose(shift_sigmas(u, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0]))
    s = sample_sigmas(4000, 3.0, torch.Generator().manual_seed(0))
    assert 0 < s.min() and s.max() < 1 and abs(s.median().item() - 0.75) < 0.03  # median u = 0.5 -> 0.75
    # matches the sampler's schedule: diffusers shifts its sigmas by the same map
    from diffusers import FlowMatchEulerDiscreteScheduler

    sch = FlowMatchEulerDiscreteScheduler(shift=3.0)
    raw = torch.tensor([0.9, 0.6, 0.3, 0.1])
    sch.set_timesteps(sigmas=raw.numpy())
    assert torch.allclose(sch.sigmas[:-1], shift_sigmas(raw, 3.0), atol=1e-6)


def test_sampler_windows_shapes_and_seeds(vae):
    from hoi_cli.models.wan.sample import sample_clip, window_starts

    assert window_starts(21, 9, 4) == [0, 5, 10, 12]
    assert window_starts(13, 9, 4) == [0, 4]
    assert window_starts(5, 9, 4) == [0]
    torch.manual_seed(0)
    cfg = make_wan_config("tiny-vace", "all", num_frames=9, height=H, width=W)
    model = HOIWan(build_base(cfg), cfg).eval()
    with torch.no_grad():
        model.ref_gate.fill_(0.5)  # the reference path is live, so CFG differs from no CFG
    batch = make_batch(11)
    pe = torch.zeros(1, 6, 32)
    kw = dict(steps=2, guidance=3.0, overlap=4)
    a = sample_clip(model, vae, batch, pe, seed=0, **kw)
    assert tuple(a.shape) == (11, 3, H, W) and a.abs().max() <= 1
    b = sample_clip(model, vae, batch, pe, seed=0, **kw)
    assert torch.equal(a, b)
    c = sample_clip(model, vae, batch, pe, seed=1, **kw)
    assert (a - c).abs().max() > 1e-3
    e = sample_clip(model, vae, batch, pe, seed=0, steps=2, guidance=1.0, overlap=4, scheduler="euler")
    assert tuple(e.shape) == (11, 3, H, W) and (a - e).abs().max() > 1e-4


def test_real_vace_1_3b_config_builds_on_meta_with_its_exact_parameter_count():
    from diffusers import WanVACETransformer3DModel

    c = VACE_1_3B
    with torch.device("meta"):
        base = WanVACETransformer3DModel(**{**c, "patch_size": tuple(c["patch_size"])})
        cfg = make_wan_config("wan-vace-1.3b", "all")
        model = HOIWan(base, cfg)
    d, f, L, V, z = 1536, c["ffn_dim"], c["num_layers"], len(c["vace_layers"]), c["in_channels"]
    lin = lambda i, o: i * o + o  # noqa: E731
    attn = 4 * lin(d, d) + 2 * d  # q, k, v, out + RMS norms of q and k
    block = 2 * attn + 2 * d + lin(d, f) + lin(f, d) + 6 * d  # self, cross (+ its affine LayerNorm), FFN, modulation
    count = (lin(z * 4, d) + lin(c["vace_in_channels"] * 4, d)  # patch embeddings (1x2x2)
             + lin(256, d) + lin(d, d) + lin(d, 6 * d) + lin(4096, d) + lin(d, d)  # time + text embedders
             + L * block + V * (block + lin(d, d)) + lin(d, d)  # blocks, VACE blocks (+ proj_out), VACE proj_in
             + lin(d, z * 4) + 2 * d)  # head
    # 2,153,972,032: the 1.3B backbone (30 blocks) + 15 VACE context blocks; no published figure found to compare
    assert sum(p.numel() for p in base.parameters()) == count == 2_153_972_032
    assert all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("base.")) > 0


def test_gradient_checkpointing_gives_the_same_gradients(inputs):
    from hoi_cli.models.wan.train import add_lora, set_trainable, training_loss

    model, _ = make_model(ref_dropout=0.0)
    add_lora(model)
    params = set_trainable(model)
    with torch.no_grad():
        model.ref_gate.fill_(0.5)
    grads = []
    for ckpt in (False, True):
        model.gradient_checkpointing = ckpt
        model.zero_grad()
        loss = training_loss(model, inputs, torch.zeros(1, 6, 32), generator=torch.Generator().manual_seed(0))["loss"]
        loss.backward()
        grads.append([p.grad.clone() for p in params])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    assert any(g.abs().sum() > 0 for g in grads[1])


def test_dataset_reads_the_object_removed_video(tmp_path):
    import json as _json

    import numpy as np

    from hoi_cli.models.wan.dataset import WanRunDataset
    from hoi_cli.stages import genhoi
    from hoi_cli.stages.base import StageContext
    from hoi_cli.testing import make_synthetic_run

    run = make_synthetic_run(tmp_path / "run1", n_frames=5, height=32, width=32).path
    plain = WanRunDataset([run], num_frames=5, height=32, width=32)[0]
    # no 07_genhoi: the frames with the hand-or-object region at 0 (the fallback conditions.source_video
    # takes for a batch without the key), so runs with and without 07_genhoi collate together
    region = (np.maximum(plain["object_mask"].numpy(), plain["hand_mask"].numpy()) > 0.5)
    assert region.any() and (~region).any()
    assert torch.equal(plain["source_video"], plain["video"] * torch.from_numpy(1.0 - region.astype(np.float32)))
    plain_run = make_synthetic_run(tmp_path / "run0", n_frames=5, height=32, width=32).path
    tmp = run / ".07_genhoi.tmp"
    tmp.mkdir()
    params = genhoi.Params()
    summary = genhoi.run(StageContext(run, tmp, params))
    (tmp / "manifest.json").write_text(_json.dumps({"stage": "07_genhoi", "params": vars(params), "summary": summary}))
    tmp.rename(run / "07_genhoi")
    mixed = WanRunDataset([plain_run, run], num_frames=5, height=32, width=32)
    batch = torch.utils.data.default_collate([mixed[0], mixed[1]])
    assert batch["source_video"].shape == (2, *plain["video"].shape)
    item = WanRunDataset([run], num_frames=5, height=32, width=32)[0]
    src, video = item["source_video"].numpy(), item["video"].numpy()
    obj = item["object_mask"].numpy()[:, 0] > 0.5
    assert src.shape == video.shape
    assert np.abs(src - video).max(1)[obj].mean() > 0.05  # the object is gone ...
    far = item["object_mask"].numpy()[:, 0] + item["hand_mask"].numpy()[:, 0] == 0
    assert np.abs(src - video).max(1)[far].mean() < 0.02  # ... the rest is the clip


def test_latent_cache_reuses_only_what_is_current(vae, tmp_path):
    from hoi_cli.models.wan.conditions import LatentCache, encode_clip

    run = tmp_path / "run"
    (run / "03_segment").mkdir(parents=True)
    (run / "03_segment" / "manifest.json").write_text('{"v": 1}')
    batch = {**make_batch(), "run_index": torch.tensor([0]), "start": torch.tensor([2])}
    cache = LatentCache(tmp_path / "latents", vae)
    a = cache.get(batch, vae, [run], 1)
    b = cache.get(batch, vae, [run], 1)
    fresh = encode_clip(batch, vae, with_target=True)
    assert (cache.hits, cache.misses) == (1, 1)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], fresh[k]) for k in fresh)
    (run / "03_segment" / "manifest.json").write_text('{"v": 2}')  # the masks were remade: stale
    cache.get(batch, vae, [run], 1)
    assert cache.misses == 2 and len(list((tmp_path / "latents").glob("*.safetensors"))) == 2
    inputs = build_inputs(batch, vae, with_target=True, encoded=a)
    direct = build_inputs(batch, vae, with_target=True)
    assert torch.equal(inputs.control, direct.control) and torch.equal(inputs.target, direct.target)


def test_structure_stream_is_training_only_and_one_way(inputs):
    from hoi_cli.models.wan.train import training_loss

    assert tuple(inputs.structure.shape) == (1, 16, 2, 4, 4)
    model, _ = make_model()
    lat, ts, pe = noisy(inputs)
    st = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model.ref_gate.fill_(0.5)
        alone = model(lat, ts, pe, inputs)
        with_st, aux = model(lat, ts, pe, inputs, return_aux=True, structure_latents=st)
        full = model(lat, ts, pe, inputs, structure_latents=st, structure_full=True)
    assert tuple(aux["structure"].shape) == (1, 16, 2, 4, 4)
    assert torch.allclose(alone, with_st, atol=1e-6)  # asymmetric: the clip never reads the structure
    assert (alone - full).abs().max() > 1e-4  # stage 1: it does
    parts = training_loss(model, inputs, pe, generator=torch.Generator().manual_seed(0))
    assert parts["structure"] > 0
    parts["loss"].backward()
    assert model.structure_tag.grad is not None and model.structure_tag.grad.abs().sum() > 0
