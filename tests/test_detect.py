"""01_detect: unit tests on synthetic inputs (no real data, no MediaPipe where avoidable)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hoi_cli.conventions import LEFT, RIGHT, box_iou
from hoi_cli.detect import hands as H
from hoi_cli.detect import objects as O
from hoi_cli.resources import sample_dir


def _hand_kp(cx: float, cy: float, size: float = 20.0) -> np.ndarray:
    """A fake upright hand: wrist at the bottom, fingers up, 21 points inside a size x size box."""
    kp = np.zeros((21, 2))
    kp[0] = (cx, cy + size / 2)
    for f in range(5):
        x = cx - size / 2 + f * size / 4
        for k in range(4):
            kp[1 + 4 * f + k] = (x, cy + size / 2 - (k + 1) * size / 4)
    return kp


def _det(cx, cy, p_right, score=0.9, size=20.0):
    return H._Det(_hand_kp(cx, cy, size), np.zeros((21, 3)), score, p_right, "test")


def test_interpolation_fills_short_gaps_only_and_flags_them():
    cfg = H.HandDetectorConfig(max_gap=2, square_size=40)
    track = {0: _det(50, 50, 0.9), 3: _det(80, 50, 0.9), 8: _det(90, 50, 0.9)}  # gap 2 then gap 4
    out = H._to_arrays([(RIGHT, track)], 10, (100, 200), cfg)
    interp = out["hand_interpolated"][:, RIGHT]
    assert interp.tolist() == [False, True, True, False, False, False, False, False, False, False]
    assert np.isnan(out["hand_score"][4:8, RIGHT]).all()
    # linear: frame 1 is a third of the way from 50 to 80 in x
    c1 = out["hand_keypoints"][1, RIGHT, :, 0].mean()
    c0 = out["hand_keypoints"][0, RIGHT, :, 0].mean()
    assert c1 == pytest.approx(c0 + 10.0, abs=1e-4)
    # interpolated score is below both neighbours'
    assert out["hand_score"][1, RIGHT] < 0.9
    # left slot untouched, NaN
    assert np.isnan(out["hand_keypoints"][:, LEFT]).all() and not out["hand_interpolated"][:, LEFT].any()
    # square boxes: fixed size, centred on the tight box
    sq = out["hand_boxes_square"][0, RIGHT]
    assert sq[2] - sq[0] == pytest.approx(40) and sq[3] - sq[1] == pytest.approx(40)
    tb = out["hand_boxes"][0, RIGHT]
    assert (sq[0] + sq[2]) / 2 == pytest.approx((tb[0] + tb[2]) / 2)


def test_interpolation_skips_jumps():
    cfg = H.HandDetectorConfig(max_gap=3)
    track = {0: _det(20, 50, 0.9), 2: _det(180, 50, 0.9)}  # 160 px in 2 frames for a 20 px hand
    out = H._to_arrays([(LEFT, track)], 3, (100, 200), cfg)
    assert not out["hand_interpolated"].any()


def test_auto_square_size_is_median_times_scale():
    boxes = np.full((4, 2, 4), np.nan, dtype=np.float32)
    boxes[0, 0] = (0, 0, 10, 20)
    boxes[1, 0] = (0, 0, 30, 10)
    boxes[2, 1] = (0, 0, 40, 40)
    assert H.auto_square_size(boxes, 1.5) == pytest.approx(1.5 * 30)
    assert np.isnan(H.auto_square_size(np.full((2, 2, 4), np.nan)))


def test_tracks_keep_one_slot_despite_handedness_flicker():
    # one hand moving right; handedness flickers but mostly says "right"
    per_frame = [[_det(20 + 5 * t, 50, 0.2 if t in (3, 7) else 0.9)] for t in range(10)]
    tracks = H._link_tracks(per_frame)
    assert len(tracks) == 1
    slotted = H._assign_slots(tracks, H.HandDetectorConfig())
    assert [s for s, _ in slotted] == [RIGHT]
    out = H._to_arrays(slotted, 10, (100, 200), H.HandDetectorConfig())
    assert np.isfinite(out["hand_score"][:, RIGHT]).all() and np.isnan(out["hand_score"][:, LEFT]).all()


def test_two_hands_same_preference_get_both_slots():
    # two hands both voted "right": the weaker-voted track moves to the free left slot
    per_frame = [[_det(30, 50, 0.95), _det(150, 50, 0.6)] for _ in range(6)]
    slotted = H._assign_slots(H._link_tracks(per_frame), H.HandDetectorConfig())
    slots = {s: tr for s, tr in slotted}
    assert set(slots) == {LEFT, RIGHT}
    assert slots[RIGHT][0].box[0] < 60  # the confident one kept "right"


def test_short_weak_tracks_are_dropped_and_nms_merges_duplicates():
    per_frame = [[_det(30, 50, 0.9, score=0.55)], [], []]
    assert H._assign_slots(H._link_tracks(per_frame), H.HandDetectorConfig()) == []
    a, b = _det(30, 50, 0.9, score=0.9), _det(31, 51, 0.1, score=0.5)
    kept = H._nms([a, b])
    assert len(kept) == 1 and kept[0].score == 0.9
    assert 0.5 < kept[0].p_right < 0.9  # pooled vote


def test_crop_affine_roundtrip_and_hand_angle():
    import cv2

    for flip in (False, True):
        for ang in (0.0, 37.0, 90.0, 270.0):
            M = H._crop_affine(100.0, 80.0, 50.0, ang, flip)
            pts = np.array([[100.0, 80.0], [110.0, 70.0], [90.0, 95.0]])
            crop_pts = pts @ M[:, :2].T + M[:, 2]
            assert crop_pts[0] == pytest.approx([112.0, 112.0])
            Minv = cv2.invertAffineTransform(M)
            back = crop_pts @ Minv[:, :2].T + Minv[:, 2]
            np.testing.assert_allclose(back, pts, atol=1e-6)
    kp = _hand_kp(50, 50)
    assert H.hand_up_angle(kp) == pytest.approx(0.0, abs=1e-6)  # fingers already up
    # fingers pointing right (+x): the crop must turn the image by +90 deg (counter-clockwise)
    rot = kp.copy()
    rot[:, 0], rot[:, 1] = 50 + (50 - kp[:, 1]), 50 + (kp[:, 0] - 50)
    ang = H.hand_up_angle(rot)
    M = H._crop_affine(50, 50, 40, ang, False)
    v = (rot[9] - rot[0]) @ M[:, :2].T
    assert v[1] < 0 and abs(v[0]) < 1e-6 * max(1, abs(v[1])) + 1e-6  # points up in the crop


def test_tile_windows_cover_the_frame():
    for W, Hh, sc in ((427, 240, 1.0), (427, 240, 0.5), (288, 512, 0.67)):
        wins = H.tile_windows(W, Hh, 0.5, sc)
        cover = np.zeros((Hh, W), bool)
        for x, y, s in wins:
            assert x >= 0 and y >= 0 and x + s <= W and y + s <= Hh
            cover[y:y + s, x:x + s] = True
        assert cover.all()


def _moving_rect_frames(T=20, W=160, Hh=120, texture=True):
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (Hh, W, 3), dtype=np.uint8)
    bg = (bg // 2 + 40).astype(np.uint8)
    frames, boxes = [], []
    for t in range(T):
        f = bg.copy()
        x0, y0 = 20 + 4 * t, 30 + t
        f[y0:y0 + 30, x0:x0 + 24] = (230, 30, 30)
        if texture:
            f[y0 + 10:y0 + 20, x0 + 6:x0 + 18] = (30, 30, 230)  # texture for the tracker
        frames.append(f)
        boxes.append((x0, y0, x0 + 24, y0 + 30))
    return np.stack(frames), np.array(boxes, dtype=np.float32)


def test_csrt_tracks_a_moving_rectangle_both_ways():
    frames, truth = _moving_rect_frames()
    mid = 10
    boxes, ok = O.track_box(frames, truth[mid], mid)
    assert ok.all()
    iou = box_iou(boxes, truth)
    assert np.nanmin(iou) > 0.6 and np.nanmean(iou) > 0.8


def test_point_prompt_grows_into_the_object_box_and_tracks():
    frames, truth = _moving_rect_frames()
    cx, cy = (truth[5, 0] + truth[5, 2]) / 2, (truth[5, 1] + truth[5, 3]) / 2
    b = O.box_from_point(frames[5], (cx, cy - 8))
    assert box_iou(b, truth[5]) > 0.7
    det = {"hand_keypoints": np.full((len(frames), 2, 21, 3), np.nan)}
    out = O.detect_objects(frames, det, O.ObjectConfig(object_point=(cx, cy - 8), object_frame=5))
    assert out["object_mode"] == "prompt_point"
    assert out["object_score"][5] == 1.0
    assert np.nanmean(box_iou(out["object_boxes"], truth)) > 0.7


def test_auto_object_proposal_next_to_a_fake_hand():
    frames, truth = _moving_rect_frames(T=6, texture=False)
    T = len(frames)
    kp = np.full((T, 2, 21, 3), np.nan)
    for t in range(T):
        # a small "hand" whose fingertips touch the rectangle's left edge
        hk = _hand_kp(truth[t, 0] - 10, (truth[t, 1] + truth[t, 3]) / 2, 20)
        hk[[4, 8, 12]] = [(truth[t, 0] - 1, (truth[t, 1] + truth[t, 3]) / 2 + d) for d in (-4, 0, 4)]
        kp[t, RIGHT, :, :2] = hk
    out = O.detect_objects(frames, {"hand_keypoints": kp}, O.ObjectConfig())
    assert out["object_mode"] == "auto"
    assert np.nanmean(box_iou(out["object_boxes"], truth)) > 0.5


def test_no_prompt_and_no_hands_gives_nan_boxes():
    frames, _ = _moving_rect_frames(T=3)
    out = O.detect_objects(frames, {"hand_keypoints": np.full((3, 2, 21, 3), np.nan)}, O.ObjectConfig())
    assert np.isnan(out["object_boxes"]).all() and (out["object_score"] == 0).all()


def make_run(tmp_path: Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """A minimal run folder with a completed 00_frames (PNG frames, meta.json, manifest.json)."""
    import cv2

    run = tmp_path / "run"
    fdir = run / "00_frames" / "frames"
    fdir.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(fdir / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    T, Hh, W = frames.shape[:3]
    (run / "00_frames" / "meta.json").write_text(json.dumps({"fps": fps, "width": W, "height": Hh, "n_frames": T}))
    (run / "00_frames" / "manifest.json").write_text("{}")
    return run


def test_stage_writes_outputs_and_warns_on_handless_clip(tmp_path):
    from hoi_cli.stages import detect as stage
    from hoi_cli.stages.base import StageContext

    frames, _ = _moving_rect_frames(T=4)
    run = make_run(tmp_path, frames)
    out = tmp_path / "out"
    out.mkdir()
    summary = stage.run(StageContext(run_dir=run, out_dir=out, params=stage.Params(redetect=False)))
    assert summary["frames_with_hand"] == 0 and summary["warnings"][0].startswith("hands found in 0 of 4 frames")
    with np.load(out / "detections.npz") as z:
        assert np.isnan(z["hand_boxes"]).all() and not z["hand_box_only"].any()
    assert (out / "preview.mp4").stat().st_size > 0


def test_stage_rejects_bad_prompt_strings():
    from hoi_cli.errors import BadInputError
    from hoi_cli.prompts import parse_numbers

    assert parse_numbers("1,2,3,4", 4, "object_box") == (1.0, 2.0, 3.0, 4.0)
    assert parse_numbers(None, 4, "object_box") is None
    with pytest.raises(BadInputError):
        parse_numbers("1,2,3", 4, "object_box")
    with pytest.raises(BadInputError):
        parse_numbers("a,b", 2, "object_point")


def test_coexisting_tracks_with_the_same_weak_vote_split_by_horizontal_order():
    # two hands both weakly voted "right" (CG hands, backs to the camera): they must differ,
    # and with about equal votes the image-left one is the left hand (egocentric default)
    per_frame = [[_det(150, 50, 0.62), _det(30, 50, 0.60)] for _ in range(6)]
    slotted = H._assign_slots(H._link_tracks(per_frame), H.HandDetectorConfig())
    slots = {s: tr for s, tr in slotted}
    assert set(slots) == {LEFT, RIGHT}
    assert slots[LEFT][0].box[0] < 60 and slots[RIGHT][0].box[0] > 100
    # the opposite convention (a person facing the camera) flips it
    cfg = H.HandDetectorConfig(left_hand_on_image_left=False)
    slots = {s: tr for s, tr in H._assign_slots(H._link_tracks(per_frame), cfg)}
    assert slots[RIGHT][0].box[0] < 60
    # a clear vote is not overridden by the order
    per_frame = [[_det(150, 50, 0.1), _det(30, 50, 0.9)] for _ in range(6)]
    slots = {s: tr for s, tr in H._assign_slots(H._link_tracks(per_frame), H.HandDetectorConfig())}
    assert slots[RIGHT][0].box[0] < 60


def test_palm_anchors_match_the_detector_output():
    a = H._palm_anchors()
    assert a.shape == (2016, 2)
    assert np.allclose(a[0], (0.5 / 24, 0.5 / 24)) and np.allclose(a[-1], (11.5 / 12, 11.5 / 12))


SAMPLE = sample_dir() / "hands_box.mp4"


def test_stage_on_the_sample_clip_finds_both_hands_in_their_slots(tmp_path):
    """The project's own CG sample (backs to the camera; left hand on the image's left): both
    slots in >= 80% of frames, the left slot left of the right one. MediaPipe labels these hands
    'Right' twice: this checks the mutual exclusion + horizontal tie-break of `_assign_slots`."""
    pytest.importorskip("mediapipe")
    from hoi_cli.stages import detect as stage
    from hoi_cli.stages.base import StageContext
    from hoi_cli.video import read_video

    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} absent")
    frames, fps = read_video(SAMPLE)
    run = make_run(tmp_path, frames, fps)
    out = run / "01_detect"
    out.mkdir()
    summary = stage.run(StageContext(run_dir=run, out_dir=out, params=stage.Params(preview=False)))
    det = np.load(out / "detections.npz")
    b = det["hand_boxes"]
    both = np.isfinite(b).all(axis=-1).all(axis=1)
    assert both.mean() >= 0.8, summary
    cx = (b[both, :, 0] + b[both, :, 2]) / 2
    assert (cx[:, LEFT] < cx[:, RIGHT]).mean() >= 0.95
    assert summary["object_mode"] == "auto" and summary["frames_with_object"] >= 0.8 * len(frames)
