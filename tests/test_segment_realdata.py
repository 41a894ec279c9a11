"""03_segment's GrabCut backend on real InterDyn clips (reference SAM2 masks), oracle boxes."""

from __future__ import annotations

import numpy as np
import pytest

from hoi_cli.conventions import box_from_mask
from hoi_cli.segment.grabcut import GrabCutParams, flicker, segment_sequence
from hoi_cli.stages.segment import Params

CLIPS = ("176110", "204076", "35671")


@pytest.mark.realdata
def test_grabcut_with_reference_boxes_reaches_the_iou_floor(shared_data):
    from hoi_cli.video import read_video

    p = Params()
    gp = GrabCutParams(max_side=p.max_side, iterations=p.iterations, margin=p.margin, vote=p.vote)
    ious = []
    for clip in CLIPS:
        d = shared_data / "interdyn" / clip
        if not d.is_dir():
            pytest.skip(f"clip folder {d} is absent")
        frames, _ = read_video(d / "video.webm")
        z = np.load(d / "masks.npz")
        ref = np.any(np.stack([z[k] for k in z.files if k.startswith("object_")]), axis=0)[:len(frames)]
        frames = frames[:len(ref)]
        boxes = np.stack([box_from_mask(m) for m in ref])
        masks = segment_sequence(frames, boxes, params=gp)
        vals = [np.logical_and(a, b).sum() / np.logical_or(a, b).sum() for a, b in zip(masks, ref) if b.any()]
        ious.append(np.mean(vals))
        assert flicker(masks) < flicker(ref) + 0.05
    assert np.mean(ious) >= 0.85, ious
