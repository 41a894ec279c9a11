"""`hoi train RUN... --out CKPT_DIR`: train the HOI video diffusion model on run folders.

Registered by the CLI as ``app.command("train")(train_command)``. torch is imported inside
the function so that ``hoi --help`` stays cheap.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInputError
from .common import DEFAULT_DEVICE, DeviceOption, Format, FormatOption, fail, recipe_help

PIPELINE_SYSTEMS = {"rehold": "rehold", "manivideo": "manivideo", "cointeract": "cointeract",
                    "genhoi": "genhoi", "full": "all", "all": "all"}


def resolve_pipeline(name: str | None) -> tuple[str | None, dict]:
    """(system, model overrides) from a pipeline recipe name or TOML path.

    The recipe is found by the pipeline's own lookup (`hoi_cli.pipeline.load_recipe`: the
    package's recipes, or ``HOI_PIPELINES_DIR``), so `hoi train --pipeline X` reads the file
    `hoi preprocess --pipeline X` ran. The system comes from a ``[model] system = ...`` entry,
    else from the recipe's name (rehold, manivideo, cointeract, genhoi; full -> all). Other keys
    of ``[model]`` override config fields (e.g. ``memory_size = 16``). ``all`` names the system
    without a recipe.
    """
    if not name:
        return None, {}
    from ..pipeline import list_recipes, load_recipe

    if name in PIPELINE_SYSTEMS and name not in list_recipes():
        return PIPELINE_SYSTEMS[name], {}
    try:
        recipe = load_recipe(name)
    except BadInputError as exc:
        raise BadInputError(exc.message, f"{exc.hint}; or give --system rehold|manivideo|cointeract|genhoi|all "
                                         "instead") from None
    with open(recipe.path, "rb") as f:
        model = dict(tomllib.load(f).get("model", {}))
    system = model.pop("system", None) or PIPELINE_SYSTEMS.get(recipe.path.stem)
    return system, model


def train_command(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="run folders (runs/<clip-id>) to train on")],
    out: Annotated[Path, typer.Option("--out", "-o", help="checkpoint folder (resumed if it holds one)")],
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", "-p", help=recipe_help("Recipe that picks the system (and [model] overrides)"))] = None,
    config: Annotated[str, typer.Option(help="size preset: tiny | small | base")] = "tiny",
    system: Annotated[str | None, typer.Option(
        help="conditioning switches: rehold | manivideo | cointeract | genhoi | all | none")] = None,
    steps: Annotated[int, typer.Option(help="total optimisation steps")] = 200,
    batch_size: Annotated[int, typer.Option(help="clips per step (per process)")] = 2,
    lr: Annotated[float, typer.Option(help="AdamW learning rate")] = 3e-4,
    warmup: Annotated[int, typer.Option(help="linear warm-up steps")] = 0,
    frames: Annotated[int | None, typer.Option(help="frames per clip (default: the preset's)")] = None,
    height: Annotated[int | None, typer.Option(help="training height in px (default: the preset's)")] = None,
    width: Annotated[int | None, typer.Option(help="training width in px (default: the preset's)")] = None,
    frame_stride: Annotated[int, typer.Option(help="take every n-th frame")] = 1,
    vae: Annotated[Path | None, typer.Option(help="local diffusers AutoencoderKL folder (latent mode)")] = None,
    patch_size: Annotated[int | None, typer.Option(help="patch size on the latent grid")] = None,
    ema_decay: Annotated[float, typer.Option(help="EMA decay")] = 0.999,
    amp: Annotated[bool, typer.Option(help="mixed precision on CUDA")] = True,
    grad_checkpointing: Annotated[bool, typer.Option(help="gradient checkpointing (less memory)")] = False,
    save_every: Annotated[int, typer.Option(help="checkpoint every n steps")] = 100,
    log_every: Annotated[int, typer.Option(help="loss-log line every n steps")] = 10,
    resume: Annotated[bool, typer.Option(help="resume from --out if it holds a checkpoint; --no-resume starts over, deleting its checkpoints")] = True,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: DeviceOption = DEFAULT_DEVICE,
    num_workers: Annotated[int, typer.Option(help="data-loader worker processes")] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch")] = None,
    fmt: FormatOption = Format.text,
    base: Annotated[str | None, typer.Option(help="pretrained base, LoRA-fine-tuned: wan-vace-1.3b (needs --base-dir)")] = None,
    base_dir: Annotated[Path | None, typer.Option(help="Wan: local diffusers folder of the base model")] = None,
    prompt: Annotated[str | None, typer.Option(help="Wan: text prompt (encoded once, cached beside --out)")] = None,
    full: Annotated[bool, typer.Option(help="Wan: fine-tune the whole base instead of LoRA")] = False,
) -> None:
    """Train the HOI video diffusion model on run folders (self-reenactment)."""
    args = dict(locals())
    try:
        _train(**args)
    except Exception as exc:  # a known error: its line, hint and code (and JSON with --format json)
        fail(exc, fmt)


def _train(runs, out, pipeline, config, system, steps, batch_size, lr, warmup, frames, height, width, frame_stride,
           vae, patch_size, ema_decay, amp, grad_checkpointing, save_every, log_every, resume, seed, device,
           num_workers, threads, fmt, base, base_dir, prompt, full) -> None:
    import torch

    if base is not None or base_dir is not None:  # the pretrained Wan backbone (hoi_cli.models.wan)
        from ..models.wan.cli import DEFAULT_PROMPT, train_from_cli

        pipe_system, _ = resolve_pipeline(pipeline)
        summary = train_from_cli(runs, out, base=base or "wan-vace-1.3b", base_dir=base_dir,
                                 system=system or pipe_system or "all", prompt=prompt or DEFAULT_PROMPT, steps=steps,
                                 batch_size=batch_size, lr=lr, frames=frames, height=height, width=width,
                                 train_mode="full" if full else "lora", grad_checkpointing=grad_checkpointing,
                                 save_every=save_every, resume=resume, seed=seed, frame_stride=frame_stride,
                                 warmup=warmup, log=lambda m: print(m, file=sys.stderr), device=device)
        print(json.dumps(summary) if fmt == Format.json else
              f"trained {summary['steps']} steps (wan/{base or 'wan-vace-1.3b'}) -> {out}; "
              f"loss {summary['first_loss']} -> {summary['last_loss']}")
        return

    from ..models.config import make_config
    from ..models.vae import config_for_vae
    from ..train.loop import TrainOptions, train

    if threads:
        torch.set_num_threads(threads)
    pipe_system, overrides = resolve_pipeline(pipeline)
    system = system or pipe_system or "all"
    for key, val in (("num_frames", frames), ("height", height), ("width", width), ("patch_size", patch_size)):
        if val is not None:
            overrides[key] = val
    try:
        cfg = make_config(config, system, **overrides)
        if vae is not None:
            cfg = config_for_vae(cfg, vae, patch_size)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"bad model configuration: {exc}", "check --config/--system/--frames/--height/--width") from exc
    opts = TrainOptions(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, ema_decay=ema_decay, amp=amp,
                        grad_checkpointing=grad_checkpointing, save_every=save_every, log_every=log_every,
                        seed=seed, device=device, num_workers=num_workers, resume=resume,
                        frame_stride=frame_stride)
    summary = train(runs, cfg, out, opts, log=lambda m: print(m, file=sys.stderr))
    summary["system"], summary["preset"] = cfg.system, cfg.preset
    if fmt == Format.json:
        print(json.dumps(summary))
    else:
        print(f"trained {summary['steps']} steps ({cfg.preset}/{cfg.system}) -> {out}; "
              f"loss {summary['first_loss']} -> {summary['last_loss']}")
