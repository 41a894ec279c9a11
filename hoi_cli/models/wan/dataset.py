"""`WanRunDataset`: `hoi_cli.train.dataset.HOIRunDataset` + 07_genhoi's object-removed video.

Items gain ``run_index`` (the window's run in ``runs``) and ``source_video (T, 3, H, W)`` in [-1, 1]: the exact stored removal
(`hoi_cli.conditions.read_source_video`) resized like ``video``, where 07_genhoi has run;
elsewhere the key is absent and `hoi_cli.models.wan.conditions.source_video` falls back to the
frames with the generation mask at 0.
"""

from __future__ import annotations

import numpy as np
import torch

from ...conditions import with_source_video
from ...train.dataset import HOIRunDataset


class WanRunDataset(HOIRunDataset):
    def _run_data(self, ri: int) -> dict:
        return with_source_video(super()._run_data(ri), self.runs[ri])

    def __getitem__(self, idx: int) -> dict:
        item = super().__getitem__(idx)
        ri, start = self.items[idx]
        item["run_index"] = torch.tensor(ri)  # with ``start``: the window's key in `LatentCache`
        src = self._run_data(ri)["source_video"]
        if src is not None:
            window = list(range(start, start + self.T * self.stride, self.stride))
            item["source_video"] = torch.from_numpy(np.ascontiguousarray(src[window]))
        return item
