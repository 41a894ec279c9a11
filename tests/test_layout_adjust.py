"""Re-HOLD's adaptive layout adjustment: hand-computed cases."""

import numpy as np
import pytest

from hoi_cli.generate.layout import (LEFT_SIDE, NO_CONTACT, RIGHT_SIDE, TOP_SIDE, LayoutParams, adjust_frame,
                                     adjust_layout, detect_contact, resize_box)

NAN4 = [np.nan] * 4
P0 = LayoutParams(smooth_sigma=0, contact_window=1)


def test_contact_frame_left_side_area_mode():
    # object 100x200 at [100,100,200,300]: cx 150, bottom 300; reference aspect 2 (w/h)
    obj = np.array([100, 100, 200, 300.0])
    hands = np.array([[60, 180, 100, 220.0], NAN4])  # touches the left side centre (100, 200)
    new_obj, new_hands, sides = adjust_frame(hands, obj, 2.0, P0)
    # area 20000 -> h = sqrt(20000/2) = 100, w = 200; centred on cx 150; bottom kept at 300
    np.testing.assert_allclose(new_obj, [50, 200, 250, 300])
    assert sides[0] == LEFT_SIDE and sides[1] == NO_CONTACT
    # hand centre was 20 px left of x0 = 100; new x0 = 50 -> hand centre 30 -> box [10, 50]; y unchanged
    np.testing.assert_allclose(new_hands[0], [10, 180, 50, 220])
    assert np.isnan(new_hands[1]).all()


def test_no_contact_frame_hand_stays():
    obj = np.array([100, 100, 200, 300.0])
    hands = np.array([[0, 0, 20, 20.0], [300, 150, 340, 190.0]])  # far away (> 0.25 * 200 = 50 px)
    new_obj, new_hands, sides = adjust_frame(hands, obj, 0.5, P0)
    assert (sides == NO_CONTACT).all()
    np.testing.assert_allclose(new_hands, hands)
    np.testing.assert_allclose(new_obj, obj)  # same aspect 0.5, same area -> unchanged


def test_two_hands_left_and_right_width_grows():
    obj = np.array([100, 100, 200, 200.0])  # 100 x 100, cx 150, bottom 200
    hands = np.array([[70, 130, 110, 170.0], [190, 130, 230, 170.0]])
    new_obj, new_hands, sides = adjust_frame(hands, obj, 4.0, P0)
    # area 10000, aspect 4 -> h 50, w 200 -> x 50..250, bottom 200 -> y 150..200
    np.testing.assert_allclose(new_obj, [50, 150, 250, 200])
    assert sides[0] == LEFT_SIDE and sides[1] == RIGHT_SIDE
    # left hand centre 90 (10 px left of... inside: 90 - 100 = -10) -> 50 - 10 = 40
    np.testing.assert_allclose(new_hands[0], [20, 130, 60, 170])
    # right hand centre 210 = x1 + 10 -> 250 + 10 = 260
    np.testing.assert_allclose(new_hands[1], [240, 130, 280, 170])


def test_bottom_alignment_and_centre_mode():
    obj = np.array([0, 0, 100, 100.0])
    b = resize_box(obj, 1.0, "area", scale=0.5, align_bottom=True)
    np.testing.assert_allclose(b, [25, 50, 75, 100])  # 50x50, bottom kept
    c = resize_box(obj, 1.0, "area", scale=0.5, align_bottom=False)
    np.testing.assert_allclose(c, [25, 25, 75, 75])  # around the centre


@pytest.mark.parametrize("mode,expected", [("width", [0, 50, 100, 100]), ("height", [-50, 0, 150, 100])])
def test_aspect_change_modes(mode, expected):
    b = resize_box(np.array([0, 0, 100, 100.0]), 2.0, mode)
    np.testing.assert_allclose(b, expected)


def test_top_contact_offset_scales_with_width():
    obj = np.array([100, 100, 200, 300.0])  # cx 150
    hand = np.array([160, 60, 200, 100.0])  # top side centre (150,100): distance 10 -> contact, top
    assert detect_contact(hand, obj, 0.25) == TOP_SIDE
    new_obj, new_hands, _ = adjust_frame(np.array([hand, NAN4]), obj, 2.0, P0)  # w 100 -> 200
    # hand centre offset from cx: +30 -> scaled by 2 -> +60 around the same cx 150 -> 210
    np.testing.assert_allclose((new_hands[0, 0] + new_hands[0, 2]) / 2, 210)


def test_sequence_missing_boxes_and_smoothing():
    T = 9
    obj = np.tile(np.array([100, 100, 200, 300.0]), (T, 1))
    obj[4] = np.nan  # missing frame stays missing
    obj[6, 2] += 6  # a jittered width is smoothed
    hands = np.full((T, 2, 4), np.nan)
    hands[:, 0] = [60, 180, 100, 220]
    hands[2, 0] = [0, 0, 10, 10]  # one-frame contact dropout: the majority filter keeps the contact
    res = adjust_layout(hands, obj, 2.0, LayoutParams(smooth_sigma=1.0, contact_window=3))
    assert np.isnan(res.object_boxes[4]).all()
    assert res.contact[2, 0] and res.contact_side[2, 0] == LEFT_SIDE
    w = res.source_object_boxes[:, 2] - res.source_object_boxes[:, 0]
    assert 100 < w[6] < 106
    np.testing.assert_allclose(res.object_boxes[0], [50, 200, 250, 300], atol=1e-3)
    assert res.summary()["contact_frames"][0] == T - 1  # all but the frame without an object


def test_auto_mode_keeps_width_when_hands_span_the_object():
    T = 4
    obj = np.tile(np.array([100, 100, 200, 200.0]), (T, 1))
    hands = np.tile(np.array([[70, 130, 110, 170.0], [190, 130, 230, 170.0]]), (T, 1, 1))
    res = adjust_layout(hands, obj, 0.5, LayoutParams(size_mode="auto", smooth_sigma=0))
    assert res.size_mode == "width"
    np.testing.assert_allclose(res.object_boxes[0], [100, 0, 200, 200])
