"""Training `HOIWan`: LoRA through peft, flow matching with Wan's shifted logit-normal timesteps,
checkpoints of LoRA + new modules in atomic step folders, and the loop (one GPU, DDP or FSDP
through accelerate).

Flow matching (diffusers' ``FlowMatchEulerDiscreteScheduler`` convention, which Wan uses):
``x_s = (1 - s) * x0 + s * noise``, the model predicts ``v = noise - x0`` at ``timestep = 1000 s``.
Training draws ``u = sigmoid(n)``, ``n ~ N(0, 1)`` (logit-normal) and shifts it as the sampler's
schedule is shifted: ``s = shift * u / (1 + (shift - 1) * u)`` (``cfg.flow_shift``, 3.0 at 480p).
The loss is the MSE on the video latent frames (the reference frame in front is noised with the
clip, as at sampling, but not scored), plus the router BCE of the MoE deltas and, from
``cfg.region_l1_after`` on, Re-HOLD's L1 of the predicted clean latents inside the hand/object regions, and CoInteract's structure-stream flow loss (the
structure latents noised at the same time; the clip attends to them only before
``cfg.structure_full_until``).

A checkpoint folder (``hoi train --base wan-vace-1.3b --out CKPT``)::

    CKPT/latest                 name of the newest complete step folder (written last)
    CKPT/step_000100/
      wan_config.json           WanHOIConfig (with the base transformer's diffusers config)
      adapter.safetensors       the trained tensors: LoRA (``...lora_A/B...``) + the new modules
                                (the whole base model too when trained in full)
      optimizer.safetensors     optimizer tensors (+ its scalars in train_state.json)
      train_state.json          step, train mode, base folder, optimizer param groups

Step folders are written to a temporary sibling and renamed into place, ``latest`` replaced after.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ...errors import BadInputError
from ..checkpoint import (_flatten_optimizer, _unflatten_optimizer, commit_step_folder, new_step_folder,
                          resolve_step_folder)
from ..conditioning import router_loss
from .conditions import LatentCache, WanInputs, build_inputs
from .config import WanHOIConfig
from .model import HOIWan, build_base

ADAPTER = "hoi"


# ----------------------------------------------------------------------------- LoRA and parameters

PROMPT_FILE = "prompt_embeds.safetensors"  # the text embedding a checkpoint folder is sampled with


def save_prompt(out: Path, emb) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeds": emb.float().cpu().contiguous()}, str(out / PROMPT_FILE))


def load_prompt(checkpoint: str | Path):
    from safetensors.torch import load_file

    ck = Path(checkpoint)
    for d in (ck, ck.parent):
        if (d / PROMPT_FILE).exists():
            return load_file(str(d / PROMPT_FILE))["prompt_embeds"]
    raise BadInputError(f"no {PROMPT_FILE} beside {checkpoint}", "give the `hoi train --base ... --out` folder")

def add_lora(model: HOIWan, rank: int | None = None, alpha: float | None = None) -> None:
    """Freeze the base and add peft LoRA adapters on its attention and FFN linears (``cfg.lora_targets``)."""
    from peft import LoraConfig

    cfg = model.cfg
    model.base.requires_grad_(False)
    model.base.add_adapter(LoraConfig(r=rank or cfg.lora_rank, lora_alpha=alpha or cfg.lora_alpha,
                                      target_modules=list(cfg.lora_targets), init_lora_weights=True),
                           adapter_name=ADAPTER)


def set_trainable(model: HOIWan, mode: str = "lora") -> list[torch.nn.Parameter]:
    """``lora``: only LoRA + the new modules train; ``full``: the whole base too. The new modules stay fp32."""
    for name, p in model.named_parameters():
        if not name.startswith("base."):
            p.requires_grad_(True)
            p.data = p.data.float()
        elif mode == "full":
            p.requires_grad_(True)
        else:
            p.requires_grad_("lora_" in name)
    return [p for p in model.parameters() if p.requires_grad]


def trainable_state_dict(model: HOIWan) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    sd = model.state_dict()
    keep = {k for k in sd if k in names or "lora_" in k or not k.startswith("base.")}
    return {k: sd[k].detach().contiguous().cpu() for k in sorted(keep)}


def weights_digest(model: HOIWan) -> str:
    """SHA-256 of the trained tensors (the same on every DDP rank when gradients are all-reduced)."""
    import hashlib

    sd = trainable_state_dict(model)
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].float().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- flow matching
def shift_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift of flow times ``u`` in [0, 1] (as ``FlowMatchEulerDiscreteScheduler(shift=...)``)."""
    return shift * u / (1 + (shift - 1) * u)


def sample_sigmas(batch: int, shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shifted logit-normal flow times ``(B,)`` (see the module docstring)."""
    u = torch.sigmoid(torch.randn(batch, generator=generator))
    return shift_sigmas(u, shift).clamp(1e-4, 1 - 1e-4)


def training_loss(model: HOIWan, inputs: WanInputs, prompt_embeds: torch.Tensor, *, generator=None,
                  step: int = 0) -> dict[str, torch.Tensor]:
    """Loss parts of one batch: ``loss`` (total), ``flow``, and ``router`` / ``region_l1`` where on."""
    m = model.module if hasattr(model, "module") else model
    cfg: WanHOIConfig = m.cfg
    x0 = inputs.target
    dev, dt = x0.device, prompt_embeds.dtype
    b = x0.shape[0]
    n_ref = inputs.n_ref
    if n_ref:
        z = x0.shape[1]
        x0 = torch.cat([inputs.control[:, :z, :n_ref].to(x0), x0], 2)  # the reference latent in front
    noise = torch.randn(x0.shape, generator=generator).to(dev, x0.dtype)
    sigma = sample_sigmas(b, cfg.flow_shift, generator).to(dev)
    s = sigma.view(b, 1, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    ref_keep = torch.rand(b, generator=generator).to(dev) >= cfg.ref_dropout
    st_t = st_target = None
    if cfg.structure_stream and inputs.structure is not None:  # CoInteract: noised with the clip, same time
        st = inputs.structure.float()
        st_noise = torch.randn(st.shape, generator=generator).to(dev)
        st_t, st_target = ((1 - s) * st + s * st_noise).to(dt), st_noise - st
    v, aux = model(xt.to(dt), sigma * 1000, prompt_embeds, inputs, ref_keep=ref_keep, return_aux=True,
                   structure_latents=st_t, structure_full=step < cfg.structure_full_until)
    v = v.float()[:, :, n_ref:]
    target = (noise - x0)[:, :, n_ref:]
    parts = {"flow": F.mse_loss(v, target.float())}
    loss = parts["flow"]
    if st_t is not None:
        parts["structure"] = F.mse_loss(aux["structure"].float(), st_target)
        loss = loss + cfg.structure_loss_weight * parts["structure"]
    if cfg.moe and aux["router_logits"]:
        parts["router"] = router_loss(aux["router_logits"], inputs.fractions["hand"])
        loss = loss + cfg.router_loss_weight * parts["router"]
    if cfg.region_l1_weight > 0 and step >= cfg.region_l1_after:
        x0_pred = xt.float()[:, :, n_ref:] - s * v
        f, h, w = x0_pred.shape[2:]
        region = inputs.fractions["region"].view(b, f, h // 2, w // 2)
        region = region.repeat_interleave(2, -2).repeat_interleave(2, -1).unsqueeze(1)
        err = (x0_pred - x0[:, :, n_ref:].float()).abs() * region
        parts["region_l1"] = err.sum() / (region.sum() * x0.shape[1]).clamp_min(1.0)
        loss = loss + cfg.region_l1_weight * parts["region_l1"]
    parts["loss"] = loss
    return parts


# ----------------------------------------------------------------------------- checkpoints
def save_wan_checkpoint(out_dir: str | Path, model: HOIWan, *, step: int, optimizer=None, train_mode: str = "lora",
                        base_dir: str | None = None, extra: dict | None = None, keep: int | None = 3,
                        full_state: dict | None = None) -> Path:
    """Write ``out_dir/step_XXXXXX`` atomically and point ``out_dir/latest`` at it.

    ``full_state``: the model's gathered state dict where its parameters are sharded (FSDP:
    ``Accelerator.get_state_dict``); the trained tensors are taken from it.
    """
    model = model.module if hasattr(model, "module") else model
    tmp, final = new_step_folder(out_dir, step)
    model.cfg.save(tmp / "wan_config.json")
    tensors = trainable_state_dict(model)
    if full_state is not None:
        tensors = {k: full_state[k].detach().contiguous().cpu() for k in tensors}
    save_file(tensors, str(tmp / "adapter.safetensors"))
    state = {"step": step, "train_mode": train_mode, "base_dir": str(base_dir) if base_dir else None,
             "extra": extra or {}}
    if optimizer is not None:
        tensors, meta = _flatten_optimizer(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state["optimizer"] = meta
    (tmp / "train_state.json").write_text(json.dumps(state))
    return commit_step_folder(tmp, final, keep)


def resolve_wan_checkpoint(path: str | Path) -> Path | None:
    return resolve_step_folder(path, "wan_config.json", "adapter.safetensors")


def load_adapter(model: HOIWan, step_dir: Path) -> None:
    """Load ``adapter.safetensors`` into a model made like the saved one; every key must match."""
    tensors = load_file(str(step_dir / "adapter.safetensors"))
    sd = model.state_dict()
    unknown = sorted(set(tensors) - set(sd))
    missing = sorted(set(trainable_state_dict(model)) - set(tensors))
    if unknown or missing:
        raise BadInputError(f"{step_dir} does not match this model ({len(unknown)} unknown, {len(missing)} missing "
                            f"tensors, e.g. {(unknown or missing)[0]})", "load it with the base it was trained on")
    model.load_state_dict(tensors, strict=False)


def load_wan_checkpoint(path: str | Path, base_dir: str | Path | None = None, *, device="cpu",
                        dtype=torch.float32, base: torch.nn.Module | None = None) -> HOIWan:
    """The trained model of a checkpoint (a step folder or a ``--out`` folder), in eval mode.

    The base comes from ``base``, else ``base_dir`` (else the folder recorded at training time),
    else random weights from the recorded config (tests, benches).
    """
    step = resolve_wan_checkpoint(path)
    if step is None:
        raise BadInputError(f"no Wan checkpoint at {path}", "give a `hoi train --base wan-...` --out folder")
    cfg = WanHOIConfig.load(step / "wan_config.json")
    state = json.loads((step / "train_state.json").read_text())
    if base is None:
        base_dir = base_dir or state.get("base_dir")
        base = build_base(cfg, base_dir, dtype=dtype)
    model = HOIWan(base, cfg)
    if state.get("train_mode", "lora") == "lora":
        add_lora(model)
    set_trainable(model, state.get("train_mode", "lora"))
    load_adapter(model, step)
    model.requires_grad_(False)
    return model.to(device).eval()


def load_training_state(step_dir: Path, model: HOIWan, optimizer) -> int:
    load_adapter(model.module if hasattr(model, "module") else model, step_dir)
    state = json.loads((step_dir / "train_state.json").read_text())
    if optimizer is not None and "optimizer" in state:
        dev = next(p for p in model.parameters() if p.requires_grad).device
        tensors = {k: (v.to(dev) if not k.endswith(".step") else v)
                   for k, v in load_file(str(step_dir / "optimizer.safetensors")).items()}
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    return int(state["step"])


# ----------------------------------------------------------------------------- text
def encode_prompt_cached(base_dir: str | Path, prompt: str, cache_dir: str | Path, device="cpu",
                         max_sequence_length: int = 512) -> torch.Tensor:
    """The UMT5 embedding ``(1, L, 4096)`` of ``prompt`` from the base folder's text encoder, encoded once
    and cached in ``cache_dir/prompt_<hash>.safetensors`` (the encoder is ~11 GB; it is freed after)."""
    import hashlib

    key = hashlib.sha256(f"{Path(base_dir).resolve()}|{prompt}|{max_sequence_length}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"prompt_{key}.safetensors"
    if path.exists():
        return load_file(str(path))["prompt_embeds"]
    from diffusers import WanVACEPipeline

    pipe = WanVACEPipeline.from_pretrained(base_dir, transformer=None, vae=None, local_files_only=True,
                                           torch_dtype=torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    pipe.text_encoder.to(device)
    emb, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=max_sequence_length,
                                device=device)
    emb = emb.float().cpu().contiguous()
    del pipe
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeds": emb}, str(path))
    return emb


# ----------------------------------------------------------------------------- the loop
@dataclass
class WanTrainOptions:
    steps: int = 1000
    batch_size: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    train_mode: str = "lora"  # or "full"
    mixed_precision: str = "no"  # "bf16" on GPUs (accelerate)
    grad_checkpointing: bool = False
    save_every: int = 250
    log_every: int = 10
    keep: int = 3
    seed: int = 0
    num_workers: int = 0
    resume: bool = True
    frame_stride: int = 1
    cpu: bool = False
    cache_latents: bool = True  # VAE-encode each window once (out_dir/latents), only the reference per step


def _collate_batch(batch: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def train_wan(runs, out_dir, cfg: WanHOIConfig, opts: WanTrainOptions, *, prompt_embeds: torch.Tensor,
              base_dir: str | Path | None = None, base: torch.nn.Module | None = None, vae=None,
              log=lambda m: None) -> dict:
    """Train (or resume) on run folders into ``out_dir``; returns a summary. One process, or one per GPU
    under ``accelerate launch`` / torchrun (DDP; FSDP with an accelerate FSDP config)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .dataset import WanRunDataset

    acc = Accelerator(mixed_precision=opts.mixed_precision, cpu=opts.cpu)
    set_seed(opts.seed, device_specific=True)
    out_dir = Path(out_dir)
    if vae is None:
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(base_dir, subfolder="vae", local_files_only=True)
    vae = vae.to(acc.device).eval().requires_grad_(False)
    if base is None:
        base = build_base(cfg, base_dir, dtype=torch.bfloat16 if opts.mixed_precision == "bf16" else torch.float32)
    model = HOIWan(base, cfg)
    if opts.train_mode == "lora":
        add_lora(model)
    params = set_trainable(model, opts.train_mode)
    model.gradient_checkpointing = opts.grad_checkpointing
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    step, resumed_from = 0, None
    prev = resolve_wan_checkpoint(out_dir) if opts.resume else None
    if prev is not None:
        if WanHOIConfig.load(prev / "wan_config.json").to_dict() != cfg.to_dict():
            raise BadInputError(f"{out_dir} holds a checkpoint of a different model configuration",
                                "use another --out, or --no-resume to start over in it")
        model.to(acc.device)
        step = load_training_state(prev, model, opt)
        resumed_from = str(prev)
        log(f"resumed from {prev} at step {step}")
    elif acc.is_main_process and out_dir.exists():
        for old in out_dir.glob("step_*"):
            shutil.rmtree(old, ignore_errors=True)
        (out_dir / "latest").unlink(missing_ok=True)

    ds = WanRunDataset(runs, num_frames=cfg.num_frames, height=cfg.height, width=cfg.width,
                       required=cfg.required_conditions(), frame_stride=opts.frame_stride,
                       seed=opts.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=opts.batch_size, shuffle=True, num_workers=opts.num_workers,
                                         drop_last=len(ds) >= opts.batch_size * acc.num_processes,
                                         generator=torch.Generator().manual_seed(opts.seed))
    model, opt, loader = acc.prepare(model, opt, loader)
    fsdp = acc.distributed_type.name == "FSDP"
    dt = torch.bfloat16 if opts.mixed_precision == "bf16" else torch.float32
    pe = prompt_embeds.to(acc.device, dt)
    gen = torch.Generator().manual_seed(opts.seed * 1000 + acc.process_index + step)
    log_path = out_dir / "loss_log.jsonl"
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        if resumed_from is None:
            log_path.unlink(missing_ok=True)
        elif log_path.exists():  # drop the lines of steps after the checkpoint resumed from
            keep = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in keep))
        if not (out_dir / PROMPT_FILE).exists():  # generation reads the training prompt from here
            save_prompt(out_dir, prompt_embeds)
        (out_dir / "train_options.json").write_text(json.dumps({**asdict(opts), "runs": [str(r) for r in runs],
                                                                "world_size": acc.num_processes}, indent=2))
    cache = LatentCache(out_dir / "latents", vae) if opts.cache_latents else None
    losses, t_last, epoch = [], time.perf_counter(), 0
    model.train()
    while step < opts.steps:
        ds.set_epoch(epoch)
        for batch in loader:
            if step >= opts.steps:
                break
            batch = _collate_batch(batch, acc.device)
            encoded = cache.get(batch, vae, ds.runs, opts.frame_stride) if cache is not None else None
            inputs = build_inputs(batch, vae, with_target=True, encoded=encoded)
            for g in opt.param_groups:
                g["lr"] = opts.lr * min(1.0, (step + 1) / opts.warmup) if opts.warmup else opts.lr
            with acc.autocast():
                parts = training_loss(model, inputs, pe.expand(inputs.target.shape[0], -1, -1), generator=gen,
                                      step=step)
            opt.zero_grad(set_to_none=True)
            acc.backward(parts["loss"])
            gnorm = acc.clip_grad_norm_(params, opts.grad_clip) if opts.grad_clip else torch.tensor(0.0)
            opt.step()
            step += 1
            losses.append(float(parts["loss"].detach()))
            now = time.perf_counter()
            if acc.is_main_process and (step % opts.log_every == 0 or step in (1, opts.steps)):
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "sec_per_step": now - t_last, "grad_norm": float(gnorm),
                                        **{k: float(v.detach()) for k, v in parts.items()}}) + "\n")
            t_last = now
            if step % opts.save_every == 0 or step == opts.steps:
                acc.wait_for_everyone()
                # FSDP: gather the sharded tensors (a collective: every rank calls it); its optimizer
                # state stays sharded and is not saved (a resumed FSDP run restarts the moments)
                full_state = acc.get_state_dict(model) if fsdp else None
                if acc.is_main_process:
                    save_wan_checkpoint(out_dir, acc.unwrap_model(model), step=step, optimizer=None if fsdp else opt,
                                        train_mode=opts.train_mode, base_dir=base_dir, keep=opts.keep,
                                        full_state=full_state)
        epoch += 1
    acc.wait_for_everyone()
    return {"steps": step, "latent_cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
            "weights_sha256": weights_digest(acc.unwrap_model(model)), "resumed_from": resumed_from, "out": str(out_dir), "world_size": acc.num_processes,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "mean_loss_last10": float(np.mean(losses[-10:])) if losses else None, "device": str(acc.device)}
