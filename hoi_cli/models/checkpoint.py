"""Checkpoints: safetensors weights + a config JSON (no pickle), EMA, resumable training state.

A checkpoint directory (``hoi train --out CKPT_DIR``)::

    CKPT_DIR/
      latest                  name of the newest complete step folder (written last)
      loss_log.jsonl          one JSON line per logged step
      step_000100/
        config.json           ModelConfig.to_dict()
        model.safetensors     the trained weights
        ema.safetensors       the EMA weights (what generation uses by default)
        optimizer.safetensors optimizer tensors; its param groups and scalars in train_state.json
        train_state.json      step, epoch, optimizer scalars, RNG states (as lists), extra

A step folder is written into a temporary sibling and renamed into place, and ``latest``
is replaced atomically after it, so a crash never leaves a half checkpoint that looks
complete. `load_checkpoint` accepts either ``CKPT_DIR`` (follows ``latest``) or a step
folder, and needs no CLI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import BadInputError
from .config import ModelConfig


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()
                       if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float | None = None) -> None:
        d = self.decay if decay is None else decay
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(state[k])

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        sd = model.state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v.to(sd[k].dtype))


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{name}"] = val
            else:
                scalars[f"{idx}.{name}"] = val
    return _contiguous(tensors), {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, val in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def new_step_folder(out_dir: str | Path, step: int) -> tuple[Path, Path]:
    """``(tmp, final)`` for step ``step``: write into ``tmp``, then `commit_step_folder`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    tmp = out_dir / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp, out_dir / name


def commit_step_folder(tmp: Path, final: Path, keep: int | None = None) -> Path:
    """Rename a written step folder into place, point ``latest`` at it, keep the newest ``keep``."""
    out_dir = final.parent
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = out_dir / f".latest.tmp{os.getpid()}"
    latest_tmp.write_text(final.name + "\n")
    os.replace(latest_tmp, out_dir / "latest")
    if keep:
        for old in sorted(p for p in out_dir.glob("step_*") if p.is_dir())[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_step_folder(path: str | Path, marker: str, weights: str) -> Path | None:
    """The step folder for ``path``: itself when it holds ``marker`` and ``weights``, else the one
    its ``latest`` names (holding ``weights``); None if absent."""
    path = Path(path)
    if (path / marker).exists() and (path / weights).exists():
        return path
    latest = path / "latest"
    if latest.exists():
        step = path / latest.read_text().strip()
        if (step / weights).exists():
            return step
    return None


def save_checkpoint(out_dir: str | Path, model: torch.nn.Module, *, step: int = 0,
                    ema: EMA | None = None, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict | None = None, keep: int | None = None) -> Path:
    """Write ``out_dir/step_XXXXXX`` atomically and point ``out_dir/latest`` at it."""
    tmp, final = new_step_folder(out_dir, step)
    m = _unwrap(model)
    m.config.save(tmp / "config.json")
    save_file(_contiguous(m.state_dict()), str(tmp / "model.safetensors"))
    if ema is not None:
        save_file(_contiguous(ema.state_dict()), str(tmp / "ema.safetensors"))
    state: dict[str, Any] = {"step": step, "extra": extra or {}}
    if optimizer is not None:
        tensors, meta = _flatten_optimizer(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state["optimizer"] = meta
    state["torch_rng"] = torch.get_rng_state().tolist()
    (tmp / "train_state.json").write_text(json.dumps(state))
    return commit_step_folder(tmp, final, keep)


def resolve_checkpoint(path: str | Path) -> Path | None:
    """The step folder for ``path`` (a step folder, or a CKPT_DIR with ``latest``); None if absent."""
    return resolve_step_folder(path, "config.json", "model.safetensors")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True,
                    with_codec: bool = True, vae_path: str | Path | None = None):
    """The model in a checkpoint (EMA weights if present and ``use_ema``), in eval mode.

    ``model.codec`` is set to its latent codec (pixel mode, or the VAE named in the config)
    when ``with_codec``; ``vae_path`` overrides the VAE folder recorded in the config (for a
    checkpoint moved to another machine). ``path`` is a step folder or a ``hoi train --out``
    directory.
    """
    from .dit import HOIVideoDiT
    from .vae import codec_for

    step = resolve_checkpoint(path)
    if step is None:
        raise BadInputError(f"no checkpoint at {path}",
                            "give a `hoi train --out` folder or one of its step_* folders")
    cfg = ModelConfig.load(step / "config.json")
    model = HOIVideoDiT(cfg)
    weights = step / ("ema.safetensors" if use_ema and (step / "ema.safetensors").exists() else "model.safetensors")
    state = load_file(str(weights))
    full = model.state_dict()
    full.update(state)  # EMA holds float tensors only; anything else comes from model.safetensors
    if weights.name == "ema.safetensors":
        full.update({k: v for k, v in load_file(str(step / "model.safetensors")).items() if k not in state})
    model.load_state_dict(full)
    model.to(device).eval()
    if with_codec:
        model.codec = codec_for(cfg, device, vae_path)
    return model


def load_training_state(step_dir: Path, model: torch.nn.Module, ema: EMA | None,
                        optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore model, EMA, optimizer and RNG from a step folder; returns train_state.json."""
    _unwrap(model).load_state_dict(load_file(str(step_dir / "model.safetensors")))
    if ema is not None and (step_dir / "ema.safetensors").exists():
        ema.load_state_dict(load_file(str(step_dir / "ema.safetensors")))
    state = json.loads((step_dir / "train_state.json").read_text())
    if optimizer is not None and "optimizer" in state:
        dev = next(_unwrap(model).parameters()).device
        tensors = {k: (v.to(dev) if not k.endswith(".step") else v)
                   for k, v in load_file(str(step_dir / "optimizer.safetensors")).items()}
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    if "torch_rng" in state:
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return state
