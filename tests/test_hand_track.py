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


# ----------------------------------------------------------------- two hands crossing
class _FakeDet:
    """A detection as `detect_hands` makes them: box, 21 keypoints, score, P(right)."""

    def __init__(self, box, layout, p_right, score=0.95):
        x0, y0, x1, y1 = box
        u = np.linspace(0, 1, 21)
        v = u if layout == "diag" else 1 - u  # the two hands' keypoints lie differently
        self.kp = np.stack([x0 + u * (x1 - x0), y0 + v * (y1 - y0)], 1)
        self.box = np.array(box, float)
        self.p_right, self.score, self.source, self.origin = p_right, score, "fake", "fake"


def _crossing_clip(T=26, side=40, speed=3, hide_below=20):
    """Hand A (left hand, P(right) 0.1) moves right, hand B (right hand, 0.9) moves left in
    front of it, 5 px lower; the detector misses A where B covers it (centres closer than
    ``hide_below`` px: boxes overlapping by IoU > 0.28, which `detect_hands`' merging of
    duplicates would join). Returns frames, true boxes (T, 2, 4) and per-frame detections."""
    import cv2

    rng = np.random.default_rng(3)
    tex = [cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (5, 5), 1.0) for _ in range(2)]
    W, H = 20 + side + speed * T, 120  # they cross in the middle of the clip
    frames, boxes, dets = [], [], []
    for t in range(T):
        f = np.full((H, W, 3), 128, np.uint8)
        xa, xb = 10 + speed * t, W - 10 - side - speed * t
        ya, yb = 40, 45
        f[ya:ya + side, xa:xa + side] = tex[0]
        f[yb:yb + side, xb:xb + side] = tex[1]  # B in front
        frames.append(f)
        ba, bb = [xa, ya, xa + side, ya + side], [xb, yb, xb + side, yb + side]
        boxes.append([ba, bb])
        d = [_FakeDet(bb, "anti", 0.9)]
        if abs(xa - xb) >= hide_below:
            d.append(_FakeDet(ba, "diag", 0.1))
        dets.append(d)
    return np.stack(frames), np.array(boxes, float), dets


def _anchor_redetect(dets):
    """`detect_hands`' redetect without the landmark model: the detection overlapping the
    predicted box most (IoU >= 0.3), else (as a crop re-detection would) the one nearest to it
    within 0.75 box sizes; never an excluded one."""
    from hoi_cli.conventions import box_iou

    def redetect(t, pred, kp, exclude=None):
        ok = [d for d in dets[t] if not (exclude and exclude(d.box))]
        near = [d for d in ok if box_iou(d.box, pred) >= 0.3]
        if near:
            return max(near, key=lambda d: box_iou(d.box, pred))
        size = max(pred[2] - pred[0], pred[3] - pred[1])
        dist = {id(d): np.hypot(*((d.box[:2] + d.box[2:] - pred[:2] - pred[2:]) / 2)) / size for d in ok}
        ok = [d for d in ok if dist[id(d)] <= 0.75]
        return min(ok, key=lambda d: dist[id(d)]) if ok else None

    return redetect


def test_crossing_hands_keep_their_identities():
    from hoi_cli.conventions import box_iou
    from hoi_cli.detect.track import TrackStep, follow_together

    frames, boxes, dets = _crossing_clip()
    T = len(frames)
    grays = gray_frames(frames)
    hidden = [t for t in range(T) if len(dets[t]) == 1]
    assert len(hidden) == 7 and 0 < hidden[0] and hidden[-1] < T - 3
    a0 = next(d for d in dets[0] if d.p_right < 0.5)
    b0 = next(d for d in dets[0] if d.p_right > 0.5)
    starts = [(0, TrackStep(a0.box, a0.score, a0)), (0, TrackStep(b0.box, b0.score, b0))]
    out = follow_together(frames, grays, starts, +1, _anchor_redetect(dets), FollowConfig())
    for k in (0, 1):
        assert sorted(out[k]) == list(range(1, T))  # both hands in every frame
        for t, st in out[k].items():  # each on its own hand: never on the other one
            assert box_iou(st.box, boxes[t, k]) > box_iou(st.box, boxes[t, 1 - k]) or t in hidden
            assert box_iou(st.box, boxes[t, k]) >= 0.3, (k, t)
            if st.det is not None:
                assert (st.det.p_right > 0.5) == (k == 1)
    # A is box-only (held where B hides it) only there, and never shares B's detection
    assert {t for t, st in out[0].items() if st.det is None} == set(hidden)
    assert all(out[0][t].det is not out[1][t].det for t in range(1, T) if out[0][t].det is not None)
    # backward from the last frame too
    aT = next(d for d in dets[-1] if d.p_right < 0.5)
    bT = next(d for d in dets[-1] if d.p_right > 0.5)
    back = follow_together(frames, grays, [(T - 1, TrackStep(aT.box, aT.score, aT)),
                                           (T - 1, TrackStep(bT.box, bT.score, bT))], -1,
                           _anchor_redetect(dets), FollowConfig())
    for k in (0, 1):
        assert box_iou(back[k][0].box, boxes[0, k]) >= 0.5 and (back[k][0].det.p_right > 0.5) == (k == 1)


def test_crossing_hands_one_at_a_time_lose_the_hidden_hand():
    """The case `follow_together` exists for: followed alone, A's flow box and re-detections
    are taken over by B in front of it, and A's follow ends on B."""
    from hoi_cli.conventions import box_iou

    frames, boxes, dets = _crossing_clip()
    grays = gray_frames(frames)
    a0 = next(d for d in dets[0] if d.p_right < 0.5)
    alone = follow(frames, grays, 0, a0.box, a0.kp, +1, _anchor_redetect(dets), FollowConfig())
    last = max(alone)
    assert box_iou(alone[last].box, boxes[last, 1]) > box_iou(alone[last].box, boxes[last, 0])


def test_weak_anchor_needs_motion():
    """A follow from a weak detection (score < weak_anchor) keeps no box-only box on a static
    patch (issue 12: a 0.62 detection was followed back over two static red cups); from a
    confident one, or where the patch moves like a hand, it does."""
    frames, boxes = _textured_blob_clip(step=(0, 0))  # static
    g = gray_frames(frames)
    none = lambda t, pred, kp: None  # noqa: E731
    assert follow(frames, g, 0, boxes[0], None, +1, none, FollowConfig(), start_score=0.62) == {}
    assert sorted(follow(frames, g, 0, boxes[0], None, +1, none, FollowConfig(), start_score=0.9)) == list(range(1, 10))
    moving, mboxes = _textured_blob_clip()  # 4.5 px per frame on a 40 px box
    mg = gray_frames(moving)
    steps = follow(moving, mg, 0, mboxes[0], None, +1, none, FollowConfig(), start_score=0.62)
    assert sorted(steps) == list(range(1, 10))


def test_ambiguous_automatic_run_joins_its_slots_hand():
    """A run of the automatic result near both prompted hands (they overlap) goes with the
    prompted hand that owns its automatic slot elsewhere; it never lands on a frame where the
    other prompted hand holds that hand with keypoints."""
    from hoi_cli.detect.hands import _join_auto_runs
    from hoi_cli.detect.track import TrackStep

    def det_step(box):
        return TrackStep(np.array(box, float), 0.9, _FakeDet(box, "diag", 0.1))

    def box_step(box):
        return TrackStep(np.array(box, float), 0.5, None)

    left, right, middle = [0, 0, 40, 40], [100, 0, 140, 40], [50, 0, 90, 40]
    # prompted hands: 0 on the left (frames 0-4), 1 on the right (0-4); both held box-only
    # in the middle in frames 5-7, where they overlap
    tracks = [{t: det_step(left) for t in range(5)}, {t: det_step(right) for t in range(5)}]
    for t in range(5, 8):
        tracks[0][t] = box_step([48, 0, 88, 40])
        tracks[1][t] = box_step([52, 0, 92, 40])
    # automatic slots: slot 1 on the left hand (frames 0-4), slot 0 on the right (0-4); then a
    # slot-1 run in the middle (5-7), as near one prompted hand as the other
    auto = [{t: det_step(right) for t in range(5)}, {t: det_step(left) for t in range(5)}]
    for t in range(6, 8):
        auto[1][t] = det_step(middle)
    _join_auto_runs(tracks, auto)
    assert all(tracks[0][t].det is not None for t in (6, 7))  # slot 1's hand: prompted hand 0
    assert all(tracks[1][t].det is None for t in (6, 7))
    # a run on a frame where the other prompted hand has that very hand with keypoints: refused
    tracks2 = [{t: det_step(left) for t in (0, 2, 3)}, {1: det_step([2, 0, 42, 40])}]
    _join_auto_runs(tracks2, [{t: det_step(left) for t in range(4)}, {}])
    assert sorted(tracks2[0]) == [0, 2, 3] and sorted(tracks2[1]) == [1]
