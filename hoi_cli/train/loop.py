"""The training loop: flow matching, AMP on CUDA, gradient checkpointing, EMA, resume, DDP.

Multi-GPU: launch with ``torchrun --nproc_per_node N -m hoi_cli.cli train ...`` or
``accelerate launch`` (which sets the same ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
variables); the loop then initialises ``torch.distributed`` itself (NCCL on CUDA, Gloo on
the CPU), wraps the model in DDP, shards the windows with a ``DistributedSampler`` and
lets rank 0 alone write checkpoints, the loss log and the progress bar.

Outputs in ``out_dir``: step folders and ``latest`` (`hoi_cli.models.checkpoint`) and
``loss_log.jsonl`` (one line per ``log_every`` steps: step, loss and its parts, lr,
seconds per step). Progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..device import resolve_device
from ..models.checkpoint import EMA, load_training_state, resolve_checkpoint, save_checkpoint
from ..models.config import ModelConfig
from ..models.dit import HOIVideoDiT
from ..models.flow import training_losses
from ..models.vae import codec_for
from .dataset import HOIRunDataset


@dataclass
class TrainOptions:
    steps: int = 200
    batch_size: int = 2
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    amp: bool = True  # CUDA only: bf16 where supported, else fp16 with a grad scaler
    grad_checkpointing: bool = False
    save_every: int = 100
    log_every: int = 10
    keep: int = 3  # step folders kept
    seed: int = 0
    num_workers: int = 0
    device: str | None = None  # None or "auto": cuda (this process's LOCAL_RANK) where torch sees a GPU, else cpu
    resume: bool = True
    frame_stride: int = 1
    progress: bool = True


def _dist_info() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _progress(enabled: bool, total: int, start: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled, transient=False)
    task = prog.add_task("train", total=total, completed=start, info="")
    return prog, task


def _reset_outputs(out_dir: Path, log_path: Path, resumed_step: int | None) -> None:
    """Starting over: remove old step folders and the log. Resuming: drop log lines past the checkpoint."""
    import shutil

    if resumed_step is None:
        for old in out_dir.glob("step_*"):
            shutil.rmtree(old, ignore_errors=True)
        (out_dir / "latest").unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)
    elif log_path.exists():
        keep = [line for line in log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resumed_step]
        log_path.write_text("".join(line + "\n" for line in keep))


def train(runs: list[str | Path], cfg: ModelConfig, out_dir: str | Path, opts: TrainOptions | None = None,
          log=None) -> dict:
    """Train (or resume) a model on ``runs`` into ``out_dir``; returns a summary dict."""
    opts = opts or TrainOptions()
    log = log or (lambda msg: None)
    out_dir = Path(out_dir)
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    device = torch.device(resolve_device(opts.device))
    if device.type == "cuda" and device.index is None:  # each process of a torchrun job on its own GPU
        device = torch.device("cuda", local_rank)
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    is_main = rank == 0
    torch.manual_seed(opts.seed + rank)

    dataset = HOIRunDataset.for_config(runs, cfg, frame_stride=opts.frame_stride, seed=opts.seed)
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=opts.seed) if distributed else None
    gen = torch.Generator().manual_seed(opts.seed)
    loader = DataLoader(dataset, batch_size=opts.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=opts.num_workers, drop_last=len(dataset) >= opts.batch_size * world,
                        generator=gen, pin_memory=device.type == "cuda")

    model = HOIVideoDiT(cfg).to(device)
    model.gradient_checkpointing = opts.grad_checkpointing
    codec = codec_for(cfg, device)
    ema = EMA(model, opts.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    step = 0
    resumed_from = None
    if opts.resume:
        prev = resolve_checkpoint(out_dir)
        if prev is not None:
            prev_cfg = ModelConfig.load(prev / "config.json")
            if prev_cfg.to_dict() != cfg.to_dict():
                from ..errors import BadInputError
                raise BadInputError(f"{out_dir} holds a checkpoint of a different model configuration",
                                    "use another --out, or --no-resume to start over in it")
            state = load_training_state(prev, model, ema, opt)
            step = int(state["step"])
            resumed_from = str(prev)
            log(f"resumed from {prev} at step {step}")
    ddp_model = model
    if distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    use_amp = opts.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if use_amp else nullcontext

    log_path = out_dir / "loss_log.jsonl"
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _reset_outputs(out_dir, log_path, step if resumed_from else None)
        (out_dir / "train_options.json").write_text(json.dumps(
            {**asdict(opts), "runs": [str(r) for r in runs], "world_size": world}, indent=2))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses: list[float] = []
    sgen = torch.Generator().manual_seed(opts.seed * 1000 + rank + step)
    prog, task = _progress(opts.progress and is_main, opts.steps, step)
    epoch = step // max(1, len(loader))
    t_last = time.perf_counter()
    model.train()
    with prog:
        while step < opts.steps:
            dataset.set_epoch(epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            for batch in loader:
                if step >= opts.steps:
                    break
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                lr = opts.lr * min(1.0, (step + 1) / opts.warmup) if opts.warmup else opts.lr
                for g in opt.param_groups:
                    g["lr"] = lr
                with autocast():
                    parts = training_losses(ddp_model, codec, batch, generator=sgen)
                opt.zero_grad(set_to_none=True)
                scaler.scale(parts["loss"]).backward()
                scaler.unscale_(opt)
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
                scaler.step(opt)
                scaler.update()
                ema.update(model, min(opts.ema_decay, (1 + step) / (10 + step)))
                step += 1
                loss = float(parts["loss"].detach())
                losses.append(loss)
                now = time.perf_counter()
                if is_main and (step % opts.log_every == 0 or step == opts.steps or step == 1):
                    rec = {"step": step, "epoch": epoch, "lr": lr, "grad_norm": float(gnorm),
                           "sec_per_step": now - t_last, **{k: float(v.detach()) for k, v in parts.items()}}
                    with open(log_path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                t_last = now
                prog.update(task, completed=step, info=f"loss {loss:.4f}")
                if is_main and (step % opts.save_every == 0 or step == opts.steps):
                    save_checkpoint(out_dir, model, step=step, ema=ema, optimizer=opt, keep=opts.keep,
                                    extra={"epoch": epoch})
            epoch += 1
    summary = {"steps": step, "resumed_from": resumed_from, "out": str(out_dir),
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
               "device": str(device), "world_size": world, "windows": len(dataset)}
    if device.type == "cuda":
        summary["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    if distributed:
        torch.distributed.barrier()
    return summary
