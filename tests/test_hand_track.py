"""Following a hand by box tracking (hoi_cli.detect.track) and hand prompts in detect_hands."""

import numpy as np
import pytest

from hoi_cli.detect.hands import HandDetectorConfig, detect_hands
from hoi_cli.detect.track import FollowConfig, flow_box, follow, gray_frames


def _textured_blob_clip(T=10, size=160, side=40, step=(4, 2), seed=0):
    """A grey background with a textured square moving by ``step`` px per frame: the landmark
    model sees no hand in it, the flow can follow it."""
    rng = np.random.default_rng(seed)
    tex = (rng.random((side, side, 3)) * 255).astype(np.uint8)
    import cv2

    tex = cv2.GaussianBlur(tex, (5, 5), 1.0)
    frames, boxes = [], []
    for t in range(T):
        f = np.full((size, size, 3), 128, np.uint8)
        x0, y0 = 20 + step[0] * t, 30 + step[1] * t
        f[y0:y0 + side, x0:x0 + side] = tex
        frames.append(f)
        boxes.append([x0, y0, x0 + side, y0 + side])
    return np.stack(frames), np.array(boxes, float)


def test_flow_box_follows_a_shift():
    frames, boxes = _textured_blob_clip(T=2)
    g = gray_frames(frames)
    box, q = flow_box(g[0], g[1], boxes[0], FollowConfig())
    assert q > 0.5
    np.testing.assert_allclose(box, boxes[1], atol=1.0)


def test_follow_keeps_a_box_where_nothing_redetects():
    frames, boxes = _textured_blob_clip()
    g = gray_frames(frames)
    steps = follow(frames, g, 0, boxes[0], None, +1, lambda t, pred, kp: None, FollowConfig())
    assert sorted(steps) == list(range(1, len(frames)))
    for t, st in steps.items():
        assert st.det is None and 0 < st.score <= 1
        np.testing.assert_allclose(st.box, boxes[t], atol=2.0)
    # backward from the last frame, and the box-only limit
    back = follow(frames, g, 9, boxes[9], None, -1, lambda t, pred, kp: None, FollowConfig(max_box_only=3))
    assert sorted(back) == [6, 7, 8]


def test_prompted_blob_is_followed_box_only():
    frames, boxes = _textured_blob_clip()
    out = detect_hands(frames, HandDetectorConfig(seed_search=False), hand_prompts=[(4, tuple(boxes[4]))])
    have = np.isfinite(out["hand_boxes"]).all(-1)
    slot = int(np.argmax(have.sum(0)))
    assert have[:, slot].all() and not have[:, 1 - slot].any()
    assert out["hand_box_only"][:, slot].all() and not out["hand_box_only"][:, 1 - slot].any()
    assert np.isnan(out["hand_keypoints"][:, slot]).all() and np.isnan(out["hand_world"]).all()
    sc = out["hand_score"][:, slot]
    assert np.all((sc > 0) & (sc <= 1))
    np.testing.assert_allclose(out["hand_boxes"][:, slot], boxes, atol=2.5)
    assert np.isfinite(out["hand_boxes_square"][:, slot]).all()
    # no keypoints: the slot comes from the image side (box centre left of the middle at its
    # frame, egocentric default: the person's left hand)
    assert slot == 0


def test_no_hands_gives_nan_not_an_exception():
    rng = np.random.default_rng(1)
    frames = (rng.random((6, 96, 128, 3)) * 40 + 100).astype(np.uint8)
    out = detect_hands(frames, HandDetectorConfig(seed_search=False))
    assert np.isnan(out["hand_boxes"]).all() and np.isnan(out["hand_score"]).all()
    assert out["hand_box_only"].shape == (6, 2) and not out["hand_box_only"].any()
    assert np.isnan(out["hand_boxes_square"]).all()
    empty = detect_hands(np.zeros((0, 96, 128, 3), np.uint8))
    assert empty["hand_boxes"].shape == (0, 2, 4) and empty["hand_box_only"].shape == (0, 2)


def test_bad_prompt_is_refused():
    frames, boxes = _textured_blob_clip(T=3)
    with pytest.raises(ValueError, match="hand prompt"):
        detect_hands(frames, hand_prompts=[(5, tuple(boxes[0]))])
    with pytest.raises(ValueError, match="hand prompt"):
        detect_hands(frames, hand_prompts=[(0, (10, 10, 5, 20))])


def test_follow_stops_where_the_box_no_longer_looks_like_the_hand():
    frames, boxes = _textured_blob_clip()
    grays = gray_frames(frames)  # the flow sees the same texture throughout ...
    recoloured = frames.copy()
    for t in range(5, len(frames)):  # ... but from frame 5 the patch is blue, not grey-red
        x0, y0, x1, y1 = boxes[t].astype(int)
        patch = recoloured[t, y0:y1, x0:x1]
        patch[..., 2] = patch.mean(-1).astype(np.uint8)
        patch[..., :2] //= 4
    red = recoloured.copy()
    red[..., 1:] //= 2  # reddish everywhere before frame 5
    steps = follow(red, grays, 0, boxes[0], None, +1, lambda t, pred, kp: None, FollowConfig())
    assert sorted(steps) == [1, 2, 3, 4]
    no_check = follow(red, grays, 0, boxes[0], None, +1, lambda t, pred, kp: None,
                      FollowConfig(max_colour_distance=2.0))
    assert sorted(no_check) == list(range(1, len(frames)))
