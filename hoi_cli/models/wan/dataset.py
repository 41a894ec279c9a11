"""`WanRunDataset`: `hoi_cli.train.dataset.HOIRunDataset` + 07_genhoi's object-removed video.

Items gain ``run_index`` (the window's run in ``runs``) and ``source_video (T, 3, H, W)`` in [-1, 1]: the exact stored removal
(`hoi_cli.stages.genhoi.load`'s ``object_removed``) resized like ``video``, where 07_genhoi has run;
elsewhere the key is absent and `hoi_cli.models.wan.conditions.source_video` falls back to the
frames with the generation mask at 0.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ...stages import genhoi as genhoi_stage
from ...stages.base import RunReader
from ...train.dataset import HOIRunDataset


class WanRunDataset(HOIRunDataset):
    def _run_data(self, ri: int) -> dict:
        d = super()._run_data(ri)
        if "source_video" not in d:
            outputs = RunReader(self.runs[ri]).read(genhoi_stage, optional=True, frames=d["frames"])
            removed = None if outputs is None else outputs["object_removed"]
            d["source_video"] = None
            if removed is not None:
                h, w = self.hw
                bg = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in removed[0]])
                d["source_video"] = bg.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
        return d

    def __getitem__(self, idx: int) -> dict:
        item = super().__getitem__(idx)
        ri, start = self.items[idx]
        item["run_index"] = torch.tensor(ri)  # with ``start``: the window's key in `LatentCache`
        src = self._run_data(ri)["source_video"]
        if src is not None:
            window = list(range(start, start + self.T * self.stride, self.stride))
            item["source_video"] = torch.from_numpy(np.ascontiguousarray(src[window]))
        return item
