"""The Wan backend behind `hoi train --base ...` and `hoi generate --backend wan` (small hooks in
`hoi_cli.commands.train` / `hoi_cli.commands.generate` / `hoi_cli.generate.run` call these).

Weights come from a local diffusers folder only (``from_pretrained(..., local_files_only=True)``)::

    huggingface-cli download Wan-AI/Wan2.1-VACE-1.3B-diffusers --local-dir weights/Wan2.1-VACE-1.3B-diffusers

The prompt is encoded once with the folder's UMT5 encoder and cached next to the checkpoint
(``CKPT/prompt_embeds.safetensors``); generation reads it from there, so the 11 GB encoder is not
loaded again.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...errors import BadInputError, MissingWeightsError

DEFAULT_PROMPT = "a hand holding and moving an object, realistic video"
def check_base_dir(base_dir: str | Path | None, base: str = "wan-vace-1.3b", need_text: bool = False) -> Path:
    """The diffusers folder, or a one-line `MissingWeightsError` (exit 4) naming the download command."""
    from .config import HF_REPOS

    repo = HF_REPOS.get(base, "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    hint = f"huggingface-cli download {repo} --local-dir {base_dir or 'weights/' + repo.split('/')[1]}"
    if base_dir is None:
        raise MissingWeightsError(repo, "transformer/config.json", [], hint=f"give --base-dir DIR; get it with: {hint}")
    base_dir = Path(base_dir)
    need = ["transformer/config.json", "vae/config.json"] + (["text_encoder/config.json"] if need_text else [])
    for rel in need:
        if not (base_dir / rel).is_file():
            raise MissingWeightsError(repo, rel, [str(base_dir)], hint=hint)
    return base_dir


def train_from_cli(runs, out: Path, *, base: str, base_dir: Path | None, system: str, prompt: str, steps: int,
                   batch_size: int, lr: float, frames: int | None, height: int | None, width: int | None,
                   train_mode: str, grad_checkpointing: bool, save_every: int, resume: bool, seed: int,
                   frame_stride: int, warmup: int, log, device: str = "auto") -> dict:
    import json

    from ...device import resolve_device
    from .config import make_wan_config
    from .train import PROMPT_FILE, WanTrainOptions, encode_prompt_cached, load_prompt, save_prompt, train_wan

    base_dir = check_base_dir(base_dir, base, need_text=not (Path(out) / PROMPT_FILE).exists())
    tcfg = json.loads((base_dir / "transformer" / "config.json").read_text())
    geometry = {k: v for k, v in (("num_frames", frames), ("height", height), ("width", width)) if v is not None}
    try:
        cfg = make_wan_config(base, system, base_config=tcfg, **geometry)
    except ValueError as exc:
        raise BadInputError(f"bad Wan configuration: {exc}", "frames must be 4k + 1; height/width multiples of 16") from None
    gpu = resolve_device(device).startswith("cuda")  # --device cpu trains on the CPU even where a GPU is seen
    if (Path(out) / PROMPT_FILE).exists():
        emb = load_prompt(out)
    else:
        emb = encode_prompt_cached(base_dir, prompt, Path(out) / ".cache", device="cuda" if gpu else "cpu")
        save_prompt(Path(out), emb)
    opts = WanTrainOptions(steps=steps, batch_size=batch_size, lr=lr, train_mode=train_mode, warmup=warmup,
                           mixed_precision="bf16" if gpu else "no", grad_checkpointing=grad_checkpointing,
                           save_every=save_every, resume=resume, seed=seed, frame_stride=frame_stride, cpu=not gpu)
    return train_wan(runs, out, cfg, opts, prompt_embeds=emb, base_dir=base_dir, log=log)


def wan_clip(run_dir: Path, frames: np.ndarray, masks: dict, ref, hand_boxes, object_boxes, opts, out_path: Path,
             fps: float, log=lambda m: None, progress=None):
    """`hoi generate --backend wan`: same inputs and returns as `hoi_cli.generate.diffusion.diffusion_clip`.

    The clip's conditions come from `WanRunDataset` over the whole clip at the model's size, with the
    adjusted layout, the object mask united with the adjusted object box and the cut-out reference
    (as the diffusion backend does); `sample_clip` windows it. Output frames are upsampled to the
    working resolution.
    """
    import cv2
    import torch

    from ...conventions import box_from_mask
    from ...stages.base import resolve_device
    from ...conditions import rasterize_boxes
    from ...conditions import square_reference as _square_reference
    from ...video import write_video
    from ..wan.dataset import WanRunDataset
    from .sample import sample_clip
    from .train import load_prompt, load_wan_checkpoint, resolve_wan_checkpoint
    from ...generate.layout import adjust_layout, shift_hand_maps

    if not opts.checkpoint:
        raise BadInputError("--backend wan needs --checkpoint CKPT", "give a `hoi train --base ... --out` folder")
    if float(getattr(opts, "strength", 1.0)) < 1.0:
        raise BadInputError("--strength < 1 (start from the composite) is not available with --backend wan",
                            "drop --strength; VACE keeps everything outside the hand/object masks from the source")
    step = resolve_wan_checkpoint(opts.checkpoint)
    if step is None:
        raise BadInputError(f"no Wan checkpoint at {opts.checkpoint}", "give a `hoi train --base ... --out` folder")
    import json

    state = json.loads((step / "train_state.json").read_text())
    base_dir = check_base_dir(getattr(opts, "base_dir", None) or state.get("base_dir"))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    device = resolve_device(opts.device)
    gpu = str(device).startswith("cuda")
    model = load_wan_checkpoint(step, base_dir, device=device, dtype=torch.bfloat16 if gpu else torch.float32)
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(base_dir, subfolder="vae", local_files_only=True).to(device).eval()
    emb = load_prompt(opts.checkpoint)
    cfg = model.cfg
    T, H, W = frames.shape[:3]
    h, w = cfg.height, cfg.width
    try:
        item = WanRunDataset([run_dir], num_frames=T, height=h, width=w,
                             required=cfg.required_conditions(training=False) - {"reference"})[0]
    except BadInputError as exc:
        raise BadInputError(f"the checkpoint's model ({cfg.system}) cannot run on {Path(run_dir).name}: {exc.message}",
                            exc.hint) from None
    boxes = np.stack([box_from_mask(m) for m in masks["object"]]).astype(np.float32)
    if object_boxes is not None:
        miss = ~np.isfinite(boxes).all(-1)
        boxes[miss] = object_boxes[miss]
    layout = adjust_layout(hand_boxes, boxes, ref.aspect, opts.layout)
    lay = rasterize_boxes(np.concatenate([layout.hand_boxes, layout.object_boxes[:, None]], 1), (H, W), (h, w))
    item.update(shift_hand_maps(item, layout, hand_boxes, (H, W)))  # the hand conditions follow the hand boxes
    item["layout"] = torch.from_numpy(lay)
    item["object_mask"] = torch.maximum(item["object_mask"], torch.from_numpy(lay[:, 2:3]))
    item["reference"] = torch.from_numpy(_square_reference(ref, h, w))
    item.pop("structure", None)  # training only
    batch = {k: v.unsqueeze(0).to(device) for k, v in item.items() if torch.is_tensor(v) and v.ndim >= 1}
    timings["wan_load_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with torch.autocast(device.type if hasattr(device, "type") else str(device), dtype=torch.bfloat16, enabled=gpu):
        video = sample_clip(model, vae, batch, emb, steps=opts.steps, guidance=opts.guidance, seed=opts.seed,
                            shift=getattr(opts, "shift", None), progress=(lambda i, n: progress(i, n)) if progress else None)
    timings["sample_s"] = time.perf_counter() - t1
    vid = ((video.float().cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    up = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_CUBIC) for f in vid])
    t2 = time.perf_counter()
    write_video(out_path, up, fps, crf=opts.crf)
    timings["write_s"] = time.perf_counter() - t2
    info = {"model_size": [h, w], "steps": opts.steps, "system": cfg.system, "base": cfg.base_name,
            "window": cfg.num_frames, "flow_shift": cfg.flow_shift if getattr(opts, "shift", None) is None else float(opts.shift), "start": "noise",
            "sampling_frames_per_s": round(T / max(timings["sample_s"], 1e-9), 3)}
    return layout, timings, info
