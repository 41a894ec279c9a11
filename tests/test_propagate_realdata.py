"""A prompted object's mask on the validation InterDyn clips, end to end through `hoi preprocess`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hoi_cli.conventions import box_from_mask

# the validation split of bench/measure_objects.py (nothing was tuned on these)
VALIDATION = ("204076", "208810", "243", "24815", "33576", "35671")


@pytest.mark.slow
@pytest.mark.realdata
def test_prompted_object_masks_on_the_validation_clips(shared_data, tmp_path):
    """Prompt = the reference object's box on its first frame; object IoU against the reference,
    mean over the 6 validation clips. Measured 0.814 (per clip 0.93 / 0.81 / 0.74 / 0.85 / 0.67 / 0.89;
    0.707 before the failed cut of the transparent glass 24815 (0.21) fell back to its prompt box);
    the old CSRT box track + GrabCut path gave 0.58 on the same prompts
    (`bench/measure_objects.py --splits val`)."""
    from hoi_cli.stages.segment import load_masks, load_object_boxes

    per_clip = {}
    for clip in VALIDATION:
        d = shared_data / "interdyn" / clip
        if not d.is_dir():
            pytest.skip(f"clip folder {d} is absent")
        z = np.load(d / "masks.npz")
        ref = np.any(np.stack([z[k] for k in z.files if k.startswith("object_")]), axis=0)
        first = int(np.flatnonzero(ref.reshape(len(ref), -1).any(axis=1))[0])
        box = ",".join(f"{v:g}" for v in box_from_mask(ref[first]))
        r = subprocess.run([sys.executable, "-m", "hoi_cli.cli", "preprocess", str(d / "video.webm"), "--out",
                            str(tmp_path), "--run-id", clip, "--until", "03_segment", "-q", "--object-box", box,
                            "--object-frame", str(first)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        obj = load_masks(tmp_path / clip)["object"]
        n = min(len(obj), len(ref))
        vals = [np.logical_and(a, b).sum() / np.logical_or(a, b).sum() for a, b in zip(obj[:n], ref[:n]) if b.any()]
        per_clip[clip] = float(np.mean(vals))
        boxes = load_object_boxes(tmp_path / clip)
        assert boxes.shape == (len(obj), 4)
        assert np.allclose(boxes[first], box_from_mask(obj[first]))
    assert np.mean(list(per_clip.values())) >= 0.78, per_clip
    assert per_clip["24815"] >= 0.7, per_clip  # the glass: anchored on its box
