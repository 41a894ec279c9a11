"""03_segment's GrabCut backend on real InterDyn clips (reference SAM2 masks), oracle boxes."""

from __future__ import annotations

import numpy as np
import pytest

from hoi_cli.conventions import box_from_mask
from hoi_cli.segment.grabcut import flicker, segment_sequence
from hoi_cli.stages.segment import Params

CLIPS = ("176110", "204076", "35671")


@pytest.mark.realdata
def test_grabcut_with_reference_boxes_reaches_the_iou_floor(shared_data):
    from hoi_cli.video import read_video

    gp = Params().grabcut  # 03_segment's GrabCut settings
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


@pytest.mark.slow
@pytest.mark.realdata
def test_pipeline_object_masks_from_its_own_boxes_on_all_clips(interdyn_clips, tmp_path):
    """The issue's measurement end to end: `hoi preprocess` through 03_segment on the 12 clips,
    automatic object boxes (no prompt), object IoU against the reference masks (measured 0.755; 0.711 / 0.677
    with the key frames shifted by 1 / 2, see `bench/measure_segment.py --key-offsets`)."""
    import subprocess
    import sys

    folder = interdyn_clips[0].parents[1]
    r = subprocess.run([sys.executable, "-m", "hoi_cli.cli", "preprocess", str(folder), "--out", str(tmp_path),
                        "--until", "03_segment", "--keep-going", "-q", "--format", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    from hoi_cli.stages.segment import load_masks

    per_clip = {}
    for clip in interdyn_clips:
        run = tmp_path / f"{clip.parent.name}_video"
        obj = load_masks(run)["object"]
        z = np.load(clip.parent / "masks.npz")
        ref = np.any(np.stack([z[k] for k in z.files if k.startswith("object_")]), axis=0)
        n = min(len(obj), len(ref))
        vals = [np.logical_and(a, b).sum() / np.logical_or(a, b).sum() for a, b in zip(obj[:n], ref[:n]) if b.any()]
        per_clip[clip.parent.name] = float(np.mean(vals))
    assert np.mean(list(per_clip.values())) >= 0.70, per_clip
