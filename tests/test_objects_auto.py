"""Automatic object box (01_detect auto mode): a synthetic held object is found and the result is deterministic."""

from __future__ import annotations

import cv2
import numpy as np

from hoi_cli.detect.objects import ObjectConfig, auto_object_boxes, grasp_point


def _draw_hand(f, ox, wrist_y, first_finger_y, finger_dy) -> np.ndarray:
    """21 keypoints of a hand left of an object whose left edge is at ``ox`` (wrist 40 px left of it,
    fingers pointing right, rows ``finger_dy`` apart from ``first_finger_y``), drawn as skin dots on ``f``."""
    pts = [np.array([ox - 40.0, wrist_y])]
    for finger in range(5):
        y = first_finger_y + finger_dy * finger
        for k in range(4):
            pts.append(np.array([ox - 28 + 8 * k, y], float))
    pts = np.array(pts)
    for p in pts:
        cv2.circle(f, tuple(int(v) for v in p), 3, (220, 170, 140), -1)
    return pts


def _scene(T: int = 7, H: int = 120, W: int = 160):
    """A grey background, a skin-coloured hand whose fingertips touch a blue block moving right."""
    import cv2

    frames, kps = [], np.full((T, 2, 21, 3), np.nan, np.float32)
    rng = np.random.default_rng(0)
    for t in range(T):
        f = np.full((H, W, 3), 128, np.uint8) + rng.integers(0, 6, (H, W, 3), dtype=np.uint8)
        ox = 60 + 2 * t
        cv2.rectangle(f, (ox, 40), (ox + 40, 80), (30, 60, 200), -1)  # the object
        # a hand to the left: wrist at (ox-40, 60), fingertips at the object's left edge
        kps[t, 1, :, :2] = _draw_hand(f, ox, 60.0, 44, 8)
        kps[t, 1, :, 2] = 1.0
        frames.append(f)
    return frames, kps


def test_auto_box_finds_the_held_object():
    frames, kps = _scene()
    boxes, score = auto_object_boxes(frames, kps, ObjectConfig())
    assert np.isfinite(boxes).all() and (score > 0).all()
    for t, b in enumerate(boxes):
        ox = 60 + 2 * t
        ref = np.array([ox, 40, ox + 41, 81], float)
        ix = max(0, min(b[2], ref[2]) - max(b[0], ref[0]))
        iy = max(0, min(b[3], ref[3]) - max(b[1], ref[1]))
        inter = ix * iy
        union = (b[2] - b[0]) * (b[3] - b[1]) + 41 * 41 - inter
        assert inter / union > 0.5, (t, b, ref)


def test_auto_box_deterministic_and_no_hands():
    frames, kps = _scene(T=5)
    a, _ = auto_object_boxes(frames, kps, ObjectConfig())
    b, _ = auto_object_boxes(frames, kps, ObjectConfig())
    np.testing.assert_array_equal(a, b)
    none, s = auto_object_boxes(frames, np.full_like(kps, np.nan), ObjectConfig())
    assert np.isnan(none).all() and (s == 0).all()


def test_grasp_point_is_fingertip_centroid():
    kp = np.zeros((21, 2))
    kp[4], kp[8], kp[12] = (0, 0), (3, 0), (0, 3)
    np.testing.assert_allclose(grasp_point(kp), [1, 1])


def _long_object_scene(T: int = 8, H: int = 120, W: int = 200):
    """A textured-free grey/green background split in two, a long red bar (about 4 hand sizes)
    held at its right end by a small hand that moves the bar; the bar's left end lies far
    outside a hand-sized window around the fingertips."""
    import cv2

    frames, kps, refs = [], np.full((T, 2, 21, 3), np.nan, np.float32), []
    rng = np.random.default_rng(1)
    for t in range(T):
        f = np.full((H, W, 3), 120, np.uint8)
        f[H // 2:] = (90, 140, 90)  # a second background colour (a table below a wall)
        f = f + rng.integers(0, 6, (H, W, 3), dtype=np.uint8)
        x0, y0 = 30 + 3 * t, 40 + t
        cv2.rectangle(f, (x0, y0), (x0 + 110, y0 + 18), (200, 40, 40), -1)  # the object
        refs.append(np.array([x0, y0, x0 + 111, y0 + 19], float))
        # a hand below-right: wrist at the bottom, fingertips on the bar's right end
        tip_x, tip_y = x0 + 104, y0 + 9
        wrist = np.array([tip_x + 6, tip_y + 30.0])
        pts = [wrist]
        for finger in range(5):
            fx = tip_x - 8 + 4 * finger
            for k in range(4):
                pts.append(np.array([fx + (3 - k) * 2.0, tip_y + 24 - 8 * k], float))
        pts = np.array(pts)
        for j in range(1, 21):
            a = pts[j]
            b = pts[0] if j % 4 == 1 else pts[j - 1]
            cv2.line(f, tuple(int(v) for v in a), tuple(int(v) for v in b), (220, 170, 140), 3)
        kps[t, 1, :, :2] = pts
        kps[t, 1, :, 2] = 1.0
        frames.append(f)
    return frames, kps, refs


def _iou(b, r):
    ix = max(0.0, min(b[2], r[2]) - max(b[0], r[0]))
    iy = max(0.0, min(b[3], r[3]) - max(b[1], r[1]))
    inter = ix * iy
    return inter / ((b[2] - b[0]) * (b[3] - b[1]) + (r[2] - r[0]) * (r[3] - r[1]) - inter)


def test_segments_method_finds_an_object_much_longer_than_the_hand():
    frames, kps, refs = _long_object_scene()
    boxes, score = auto_object_boxes(frames, kps, ObjectConfig(method="segments"))
    assert np.isfinite(boxes).all() and (score > 0).all()
    ious = [_iou(b, r) for b, r in zip(boxes, refs)]
    assert min(ious) > 0.7, ious


def test_segment_candidates_skip_hand_and_background():
    from hoi_cli.detect.objects import _segment_candidates

    frames, kps, refs = _long_object_scene(T=1)
    cands = _segment_candidates(frames[0], [kps[0, 1, :, :2].astype(float)], ObjectConfig())
    assert cands, "the fingertips touch the bar"
    H, W = frames[0].shape[:2]
    for c in cands:  # no candidate is the whole frame or mostly the (skin-coloured) hand
        b = c["box"]
        assert (b[2] - b[0]) * (b[3] - b[1]) < 0.9 * H * W
    assert max(_iou(c["box"], refs[0]) for c in cands) > 0.8


def test_segments_method_falls_back_to_grabcut_without_candidates():
    frames, kps = _scene(T=4)
    boxes, score = auto_object_boxes(frames, kps, ObjectConfig(max_area_frac=0.0))  # every region rejected
    ref, _ = auto_object_boxes(frames, kps, ObjectConfig(method="grabcut"))
    np.testing.assert_array_equal(boxes, ref)
    assert (score > 0).all()


def _fake_candidates(monkeypatch, per_frame):
    """Make `_segment_candidates` return ``per_frame[t]`` (a list of (box, hist, area, nb)) for key frame t."""
    import hoi_cli.detect.objects as objects

    def fake(frame, kps, cfg, labels=None):
        t = int(frame[0, 0, 0])  # the frame index is written into the dummy frame
        return [{"box": np.asarray(b, float), "hist": np.asarray(h, np.float32) / np.linalg.norm(h), "area": a,
                 "nb": nb} for b, h, a, nb in per_frame[t]]

    monkeypatch.setattr(objects, "_segment_candidates", fake)


def _hand_at(x, y):
    kp = np.zeros((21, 2))
    kp[:] = (x - 10, y)  # wrist side
    kp[[4, 8, 12]] = (x, y)  # grasp point at (x, y); hand size 10 px
    return kp


def test_recurrence_prefers_the_region_that_moves_with_the_hand(monkeypatch):
    """Two candidates recur in colour in every key frame: one moves with the hand (the held object),
    one stays put (background) and is closer to hand size (smaller area penalty). Colour alone picks
    the background; the hand-aligned overlap picks the object, also when only 3 reference frames are
    compared (``max_ref_frames``)."""
    from hoi_cli.detect.objects import _segment_proposals

    T, hand = 8, 10.0
    A, B = [1, 0, 0, 0], [0, 1, 0, 0]
    per_frame, kps_by_key, frames = {}, {}, []
    for t in range(T):
        x = 40 + 15 * t  # the hand moves right, the object with it
        obj = ([x, 40, x + 30, 70], A, 900.0, 0)
        bg = ([100, 100, 110, 110], B, hand * hand, 0)
        noise = ([0, 0, 5 + t, 5], np.eye(4)[2 + t % 2], 30.0, 0)
        per_frame[t] = [obj, bg, noise]
        kps_by_key[t] = [_hand_at(x, 55)]
        frames.append(np.full((4, 4, 3), t, np.uint8))
    _fake_candidates(monkeypatch, per_frame)
    colour_only = _segment_proposals(frames, kps_by_key, ObjectConfig(w_align=0.0, gate=0.0))
    assert all(np.allclose(colour_only[t], [100, 100, 110, 110]) for t in range(T))
    for cap in (24, 3):
        aligned = _segment_proposals(frames, kps_by_key, ObjectConfig(w_align=0.5, max_ref_frames=cap))
        for t in range(T):
            x = 40 + 15 * t
            np.testing.assert_allclose(aligned[t], [x, 40, x + 30, 70])


def test_gate_drops_key_frames_without_an_object_like_candidate(monkeypatch):
    """A key frame whose only candidate looks like nothing else in the clip gets no box (it is
    interpolated from its neighbours instead)."""
    from hoi_cli.detect.objects import _segment_proposals

    T = 7
    A, C = [1, 0, 0, 0], [0, 0, 0, 1]
    per_frame = {t: [([40, 40, 70, 70], A, 900.0, 0)] for t in range(T)}
    per_frame[3] = [([0, 0, 200, 100], C, 20000.0, 2)]  # the fingertips only touch the table here
    kps_by_key = {t: [_hand_at(40, 55)] for t in range(T)}
    frames = [np.full((4, 4, 3), t, np.uint8) for t in range(T)]
    _fake_candidates(monkeypatch, per_frame)
    prop = _segment_proposals(frames, kps_by_key, ObjectConfig())
    assert sorted(prop) == [0, 1, 2, 4, 5, 6]
    ungated = _segment_proposals(frames, kps_by_key, ObjectConfig(gate=0.0))
    assert sorted(ungated) == list(range(T))


def test_auto_mode_returns_a_seed_mask_of_the_held_object():
    """The segments method also gives a coarse object mask per frame (the chosen regions of the
    nearest key frame moved onto the frame's box): 03_segment anchors its GrabCut on it."""
    from hoi_cli.detect.objects import detect_objects

    frames, kps = _scene()
    out = detect_objects(frames, {"hand_keypoints": kps}, ObjectConfig())
    seeds = out["object_seed"]
    assert seeds.shape == (7, 120, 160) and seeds.dtype == bool
    for t in range(len(frames)):
        ox = 60 + 2 * t
        ref = np.zeros(seeds.shape[1:], bool)
        ref[40:81, ox:ox + 41] = True
        iou = (seeds[t] & ref).sum() / (seeds[t] | ref).sum()
        assert iou > 0.75, (t, iou)
        assert (seeds[t] & ref).sum() > 0.95 * seeds[t].sum()  # the seed is (almost) only the object
    boxes, score = auto_object_boxes(frames, kps, ObjectConfig())
    b2, s2, seeds2 = auto_object_boxes(frames, kps, ObjectConfig(), with_seeds=True)
    np.testing.assert_array_equal(boxes, b2)
    np.testing.assert_array_equal(seeds, seeds2)
    # the grabcut method and the prompt modes have no seed
    assert "object_seed" not in detect_objects(frames, {"hand_keypoints": kps}, ObjectConfig(method="grabcut"))
    assert "object_seed" not in detect_objects(frames, {"hand_keypoints": kps},
                                               ObjectConfig(object_box=(60, 40, 100, 80)))


def test_frames_after_the_last_hand_follow_the_object_flow():
    """The hand detector loses the hand for the last frames while the object keeps moving: the
    boxes there follow the object's optical flow (`_follow_held`) instead of freezing."""
    frames, kps, refs = _long_object_scene(T=12)
    kps[7:] = np.nan  # the hand is not detected any more
    for t, f in enumerate(frames):  # the bar keeps moving right, 3 px/frame, with some texture to follow
        r = refs[t].astype(int)
        f[r[1]:r[3], r[0]:r[2]:6] = (150, 30, 30)
    held, _ = auto_object_boxes(frames, kps, ObjectConfig(follow_flow=False))
    boxes, score = auto_object_boxes(frames, kps, ObjectConfig())
    np.testing.assert_array_equal(boxes[:7], held[:7])  # frames with a key before / after are unchanged
    assert np.allclose(score[7:], 0.3)
    i_held = [_iou(held[t], refs[t]) for t in range(7, 12)]
    i_flow = [_iou(boxes[t], refs[t]) for t in range(7, 12)]
    assert min(i_flow) > 0.8, i_flow
    assert np.mean(i_flow) > np.mean(i_held) + 0.05, (i_flow, i_held)


def test_key_offset_shifts_the_key_frames_and_keeps_the_first_and_last(monkeypatch):
    import hoi_cli.detect.objects as objects

    seen = []

    def record(frames, kps_by_key, cfg, masks_out=None):
        seen.append(sorted(kps_by_key))
        return {}

    monkeypatch.setattr(objects, "_segment_proposals", record)
    frames, kps = _scene(T=11)
    for offset in (0, 1, 2):
        auto_object_boxes(frames, kps, ObjectConfig(key_stride=3, key_offset=offset))
    assert seen == [[0, 3, 6, 9, 10], [0, 1, 4, 7, 10], [0, 2, 5, 8, 10]]


def _two_colour_scene(T: int = 8, H: int = 120, W: int = 160):
    """A grey background; a held object with two colours (a yellow top, a brown bottom, like a plush
    toy's head and body) moving right and down with a hand whose fingertips touch only the yellow
    top; a static green panel (the person's sweater) right below the object, touching it. Returns
    frames, keypoints and the object's true masks."""
    import cv2

    frames, kps = [], np.full((T, 2, 21, 3), np.nan, np.float32)
    refs = np.zeros((T, H, W), bool)
    rng = np.random.default_rng(2)
    obj = np.zeros((50, 41, 3), np.uint8)
    obj[:25], obj[25:] = (230, 200, 40), (110, 60, 30)  # a yellow top, a brown bottom
    # a texture that moves with the object (fur, print): optical flow needs something to follow
    obj = np.clip(obj.astype(int) + rng.integers(-25, 26, (50, 41, 1)), 0, 255).astype(np.uint8)
    obj = cv2.GaussianBlur(obj, (3, 3), 0)
    panel = np.clip(np.array([60, 150, 70]) + rng.integers(-25, 26, (H, W, 1)), 0, 255).astype(np.uint8)
    for t in range(T):
        f = np.full((H, W, 3), 128, np.uint8) + rng.integers(0, 6, (H, W, 3), dtype=np.uint8)
        ox, oy = 60 + 3 * t, 20 + t
        f[oy + 50:112, 40:150] = panel[oy + 50:112, 40:150]  # the panel, static, right under the object
        f[oy:oy + 50, ox:ox + 41] = obj
        refs[t, oy:oy + 50, ox:ox + 41] = True
        kps[t, 1, :, :2] = _draw_hand(f, ox, oy + 22.0, oy + 2, 4)
        kps[t, 1, :, 2] = 1.0
        frames.append(f)
    return frames, kps, refs


def test_auto_mask_covers_every_colour_of_the_held_object():
    """Only the yellow top is touched and matches the clip's consensus colour; the brown bottom moves
    with it (a part of the same object) and is added, the static panel it touches is not."""
    from hoi_cli.detect.objects import detect_objects

    frames, kps, refs = _two_colour_scene()
    out = detect_objects(frames, {"hand_keypoints": kps}, ObjectConfig())
    seeds, boxes = out["object_seed"], out["object_boxes"]
    bottom = refs.copy()
    bottom[:, :, :] &= np.arange(refs.shape[1])[None, :, None] >= (20 + np.arange(len(refs)) + 25)[:, None, None]
    for t in range(len(frames)):
        iou = (seeds[t] & refs[t]).sum() / (seeds[t] | refs[t]).sum()
        assert iou > 0.75, (t, iou)
        assert (seeds[t] & bottom[t]).sum() > 0.7 * bottom[t].sum(), t  # the brown part is in
        assert (seeds[t] & ~refs[t]).sum() < 0.1 * refs[t].sum(), t  # the panel is not
        ys, xs = np.nonzero(refs[t])
        assert _iou(boxes[t], (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)) > 0.75, (t, boxes[t])
