"""The hand recall / false-hand metric of issue 12 on tiny hand-made cases (exact numbers)."""

import numpy as np
import pytest

from hoi_cli.metrics.hand_recall import hand_recall, mask_box, score_frame

NAN = [np.nan] * 4


def test_counts_on_a_hand_made_clip():
    refs = [
        [[0, 0, 10, 10]],  # 0: one hand, hit by IoU 81/119
        [[0, 0, 10, 10], [50, 50, 60, 60]],  # 1: first hit by IoU 0.4, second missed
        [],  # 2: no reference hand: the frame does not count (its box is neither hit nor false)
        [[0, 0, 10, 10]],  # 3: hit by cover (100%) despite IoU 0.01
    ]
    dets = [
        [[1, 1, 11, 11], NAN],
        [[0, 0, 4, 10], [100, 100, 120, 120]],  # the second is false
        [[0, 0, 5, 5]],
        [[0, 0, 100, 100], [9, 0, 30, 10], [9.5, 0, 30, 10]],  # covers 10% (not false); 5% (false)
    ]
    c = hand_recall(refs, dets)
    assert (c.frames, c.refs, c.hits, c.dets, c.false) == (3, 4, 3, 6, 2)
    assert c.recall == pytest.approx(0.75)
    assert c.false_rate == pytest.approx(2 / 6)
    assert [h for _, _, h in c.hit_flags] == [True, True, False, True]


def test_no_detection_and_no_reference():
    c = hand_recall([[], [[0, 0, 4, 4]]], [[[0, 0, 4, 4]], []])
    assert (c.frames, c.refs, c.hits, c.dets, c.false) == (1, 1, 0, 0, 0)
    assert c.false_rate == 0.0


def test_mask_decides_what_lies_on_a_hand():
    m = np.zeros((20, 20), bool)
    m[0:10, 0:5] = True  # hand pixels only in the left half of its 10x10 box ...
    ref = mask_box(m)
    assert ref.tolist() == [0, 0, 5, 10]
    # a box over the box's empty right part: by the box it lies on the hand, by the mask not
    r_box = score_frame([[0, 0, 10, 10]], [np.array([5, 0, 20, 10.0])])
    r_mask = score_frame([[0, 0, 10, 10]], [np.array([5, 0, 20, 10.0])], [m])
    assert r_box.false == [False] and r_mask.false == [True]
    # one hand pixel column of 10 in a 15x10 box: 10/150 < 10% on it, but covers 10/50 = 20% of the hand
    r = score_frame([ref], [np.array([4, 0, 19, 10.0])], [m])
    assert r.false == [False] and r.hits == [False]


def test_unverifiable_boxes_hit_but_are_never_false():
    c = hand_recall([[[0, 0, 10, 10]]], [[[0, 0, 10, 10], [50, 50, 60, 60]]],
                    unverifiable_per_frame=[[True, True]])
    assert (c.hits, c.dets, c.false, c.unverifiable) == (1, 0, 0, 2)
