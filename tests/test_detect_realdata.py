"""01_detect on real InterDyn clips (../shared/data; skipped where absent). Checks numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hoi_cli.conventions import RIGHT, box_from_mask, box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

pytestmark = [pytest.mark.realdata]


def _clip(shared_data, name):
    import measure_detect as md

    d = shared_data / "interdyn" / name
    if not (d / "video.webm").exists():
        pytest.skip(f"clip {d} absent")
    return md.load_clip(d)


@pytest.fixture(scope="module")
def det_243(shared_data):
    from hoi_cli.detect.hands import detect_hands

    frames, hand, obj, fps = _clip(shared_data, "243")
    return frames, hand, obj, detect_hands(frames)


@pytest.mark.slow
def test_recall_iou_and_right_hand_slot_on_243(det_243):
    """243 masks only the interacting RIGHT hand: the detection on it must be in slot 1."""
    import measure_detect as md

    frames, hand, obj, det = det_243
    r = md.score_hands("243", det["hand_boxes"], hand)
    assert r["hit_on"] / r["eligible"] >= 0.9  # measured 1.0
    assert np.mean(r["iou_cc"]) >= 0.6  # measured 0.71
    assert r["false"] == 0
    assert r["on_mask_slot"][0] == 0 and r["on_mask_slot"][1] >= 0.9 * r["eligible"]
    # the slot-1 track never jumps to the other hand: its boxes keep overlapping the mask
    for t in range(len(frames)):
        if np.isfinite(det["hand_boxes"][t, RIGHT]).all():
            assert md.mask_frac_in_box(hand[t], det["hand_boxes"][t, RIGHT]) >= md.ON_MASK
    # contract shapes and dtypes
    T = len(frames)
    assert det["hand_keypoints"].shape == (T, 2, 21, 3) and det["hand_keypoints"].dtype == np.float32
    assert det["hand_world"].shape == (T, 2, 21, 3) and det["hand_interpolated"].dtype == bool
    w = det["hand_world"][np.isfinite(det["hand_world"][..., 0])]
    assert np.abs(w).max() < 0.3  # metres, hand-sized


@pytest.mark.slow
def test_object_prompt_tracking_on_243(det_243):
    import measure_detect as md
    from hoi_cli.detect.objects import ObjectConfig, detect_objects, prompt_from_mask_box

    frames, hand, obj, det = det_243
    vis = [t for t in range(len(obj)) if obj[t].any()]
    box, f = prompt_from_mask_box(obj[vis[0]], vis[0])
    out = detect_objects(frames, det, ObjectConfig(object_box=box, object_frame=f))
    iou = md.score_objects(out["object_boxes"], obj)
    assert np.mean(iou) >= 0.5  # measured 0.63
    assert box_iou(out["object_boxes"][f], box_from_mask(obj[f])) == pytest.approx(1.0)


@pytest.mark.slow
def test_object_auto_proposal_on_243(det_243):
    """No prompt: the fast key-frame proposal (GrabCut + co-moving pixels) near the hand."""
    import measure_detect as md
    from hoi_cli.detect.objects import ObjectConfig, detect_objects

    frames, hand, obj, det = det_243
    out = detect_objects(frames, det, ObjectConfig())
    assert out["object_mode"] == "auto"
    assert np.isfinite(out["object_boxes"]).all()  # every frame has a box (key, interpolated or held)
    iou = md.score_objects(out["object_boxes"], obj)
    assert np.mean(iou) >= 0.6  # measured 0.78
    # deterministic
    again = detect_objects(frames, det, ObjectConfig())
    assert np.array_equal(again["object_boxes"], out["object_boxes"])


@pytest.mark.slow
def test_stage_end_to_end_on_real_clip(shared_data, tmp_path):
    from test_detect import make_run

    from hoi_cli.stages import detect as stage
    from hoi_cli.stages.base import StageContext

    frames, hand, obj, fps = _clip(shared_data, "141667")
    run = make_run(tmp_path, frames, fps)
    out = run / "01_detect"
    out.mkdir()
    summary = stage.run(StageContext(run_dir=run, out_dir=out, params=stage.Params()))
    (out / "manifest.json").write_text("{}")
    det = stage.load_detections(run)
    assert set(stage.CONTRACT_KEYS) <= set(det)
    assert det["hand_boxes_square"].dtype == np.float32 and det["hand_interpolated"].dtype == bool
    assert (out / "preview.mp4").stat().st_size > 1000
    assert summary["frames_with_hand"] >= 0.9 * len(frames)
    assert summary["object_mode"] == "auto"
    import measure_detect as md

    r = md.score_hands("141667", det["hand_boxes"], hand)
    assert r["hit_on"] / r["eligible"] >= 0.9 and r["false"] == 0
