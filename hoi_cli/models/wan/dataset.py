"""`WanRunDataset`: `hoi_cli.train.dataset.HOIRunDataset` + 07_genhoi's object-removed video.

Items gain ``run_index`` (the window's run in ``runs``) and ``source_video (T, 3, H, W)`` in [-1, 1]: the exact stored removal
(`hoi_cli.conditions.read_source_video`) resized like ``video``, where 07_genhoi has run;
elsewhere the frames with the generation mask at 0, the fallback of
`hoi_cli.models.wan.conditions.source_video`, so that runs with and without 07_genhoi collate into one batch.
"""

from __future__ import annotations

import numpy as np
import torch

from ...conditions import with_source_video
from ...train.dataset import HOIRunDataset
from .conditions import generation_mask, source_video


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
        elif "hand_mask" in item and "object_mask" in item:
            item["source_video"] = source_video(item, generation_mask(item))
        return item
