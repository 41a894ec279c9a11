"""The HOI video diffusion model: config, DiT, condition encoders, flow matching, VAE, checkpoints.

The entry points for other code (``hoi generate --backend diffusion``, notebooks)::

    from hoi_cli.models import load_checkpoint, sample_video
    model = load_checkpoint("ckpts/run1")            # EMA weights, eval mode, model.codec set
    video = sample_video(model, conditions, steps=25, guidance=3.0, seed=0,
                         init_video=composite, strength=0.6)

They are imported lazily, so importing this package does not import torch.
"""

from __future__ import annotations

_EXPORTS = {
    "ModelConfig": "config", "make_config": "config", "HOIVideoDiT": "dit",
    "sample_video": "flow", "training_losses": "flow", "WindowedSampler": "flow",
    "FlowMatchEulerScheduler": "scheduler", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint", "EMA": "checkpoint", "LatentCodec": "vae",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
