"""Training data over run folders, as self-reenactment.

Each item is a window of ``num_frames`` consecutive frames (every ``frame_stride``-th) of
one run, resized to ``height x width`` (no crop: boxes scale with the frame), with every
condition the model may use. The reference image is the clip's *own* object, cropped by
its box (and cut out by its mask where 03_segment exists) from a frame outside the window
when there is one, which is what makes it self-reenactment.

The batch dict is `hoi_cli.conditions`' condition dict (its module docstring has the table of
keys, shapes and sources), windowed to ``num_frames``.

A stage counts as present when its ``manifest.json`` exists (DESIGN.md: the manifest is
written last). A condition whose stage is missing is all zeros; the dataset raises
`BadInputError` up front if the model configuration requires it
(`ModelConfig.required_conditions`).

The conditions are built by `hoi_cli.conditions` (the module sampling uses too): every file
is read through its stage's own loader, once per run, and turned into float maps at the
training resolution by one ``read_*`` function per condition; nothing here parses a stage's
files itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..conditions import (HAND_RENDER_CHANNELS, N_MLO, STRUCTURE_CHANNELS, available_conditions, check_model_channels,
                          check_required, frame_paths, reference_crop, run_conditions, source_window, window_maps,
                          with_source_video)
from ..conditions import rasterize_boxes  # noqa: F401  (kept importable from here)
from ..errors import BadInputError


class HOIRunDataset(Dataset):
    """Windows of run folders with all conditions; see the module docstring for the batch."""

    def __init__(self, runs: list[str | Path], num_frames: int, height: int, width: int, *,
                 required: set[str] | frozenset = frozenset(), frame_stride: int = 1,
                 window_step: int | None = None, hand_render_channels: int = HAND_RENDER_CHANNELS,
                 structure_channels: int = STRUCTURE_CHANNELS, mlo_layers: int = N_MLO, seed: int = 0,
                 ref_margin: float = 0.1, source_video: bool = False):
        self.runs = [Path(r) for r in runs]
        if not self.runs:
            raise BadInputError("no run folders given", "pass one or more runs/<clip-id> folders")
        check_model_channels(hand_render_channels, structure_channels, mlo_layers)
        self.T, self.hw = num_frames, (height, width)
        self.stride, self.seed, self.margin = frame_stride, seed, ref_margin
        self.epoch = 0
        self.source_video = source_video  # items gain ``source_video`` (`hoi_cli.conditions.source_window`)
        self.items: list[tuple[int, int]] = []
        self.available: dict[Path, set[str]] = {}
        span = (num_frames - 1) * frame_stride + 1
        step = window_step or max(1, span // 2)
        for ri, run in enumerate(self.runs):
            if not run.is_dir():
                raise BadInputError(f"run folder not found: {run}", "pass runs/<clip-id> folders made by `hoi preprocess`")
            n = len(frame_paths(run))
            if n < span:
                raise BadInputError(f"{run} has {n} frames; a window needs {span}",
                                    "use fewer --frames or a smaller --frame-stride")
            self.items += [(ri, s) for s in range(0, n - span + 1, step)]
            self.available[run] = available_conditions(run)
            check_required(run, self.available[run], required)
        self._cache: dict[int, dict] = {}

    @classmethod
    def for_config(cls, runs: list[str | Path], cfg, **kwargs) -> HOIRunDataset:
        """The dataset a `ModelConfig` trains on (its clip size, channels and required conditions)."""
        kwargs.setdefault("num_frames", cfg.num_frames)
        kwargs.setdefault("required", cfg.required_conditions())
        kwargs.setdefault("source_video", getattr(cfg, "source_video", False))
        return cls(runs, height=cfg.height, width=cfg.width, hand_render_channels=cfg.hand_render_channels,
                   structure_channels=cfg.structure_channels, mlo_layers=cfg.mlo_layers, **kwargs)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Change the reference-frame draw (call once per epoch)."""
        self.epoch = epoch

    def _run_data(self, ri: int) -> dict:
        if ri not in self._cache:
            self._cache[ri] = run_conditions(self.runs[ri], self.hw)
        return self._cache[ri]

    def __getitem__(self, idx: int) -> dict:
        ri, start = self.items[idx]
        d = self._run_data(ri)
        window = list(range(start, start + self.T * self.stride, self.stride))
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        ref, ref_ok = reference_crop(d, window, rng, self.hw, self.margin)
        item = {"video": d["video"][window], "reference": ref.astype(np.float32), "reference_valid": np.bool_(ref_ok),
                **window_maps(d, window, self.hw), "start": np.int64(start)}
        if self.source_video:
            item["source_video"] = source_window(with_source_video(d, self.runs[ri]), window)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else torch.tensor(v)
                for k, v in item.items()}
