"""Remnant of an object removal (hoi_cli.metrics.removal): exact numbers on hand-made frames."""

from __future__ import annotations

import math

import numpy as np

from hoi_cli.metrics.removal import remnant_region, removal_remnant


def _clip():
    T, H, W = 4, 20, 20
    source = np.full((T, H, W, 3), 100, np.uint8)
    obj = np.zeros((T, H, W), bool)
    hand = np.zeros((T, H, W), bool)
    obj[0, 5:15, 5:15] = True  # eroded by 2 px: rows/cols 7..12 (36 px)
    hand[0, :, 15] = True  # dilated by 3 px: cols 12..18, so col 12 leaves the region -> 30 px scored
    obj[1, 3, 3] = True  # 1 px = 0.25% of the image: below 0.3%, not scored
    obj[2, 5:15, 5:15] = True
    hand[2, 2:18, 2:18] = True  # the hand covers the whole object: nothing to score
    obj[3, 5:15, 5:15] = True  # left exactly as it was: remnant 1
    removed = source.copy()
    removed[0, 7:13, 7:10] = 150  # 18 px changed a lot
    removed[0, 7, 10, 0] = 127  # mean |diff| = 27/3 = 9 < 10: survives
    removed[0, 8, 10, 0] = 130  # mean |diff| = 30/3 = 10: not below 10, removed
    return removed, source, obj, hand


def test_remnant_region_erodes_the_object_and_avoids_the_grown_hand():
    _, _, obj, hand = _clip()
    region = remnant_region(obj[0], hand[0])
    assert region.sum() == 30
    assert region[7:13, 7:12].all() and not region[:, 12].any()


def test_remnant_exact_value():
    removed, source, obj, hand = _clip()
    r = removal_remnant(removed, source, obj, hand)
    # frame 0: of 30 scored pixels, 18 changed by 50 and one by exactly 10 -> 11 survive
    assert r["per_frame"][0] == 11 / 30
    assert math.isnan(r["per_frame"][1]) and math.isnan(r["per_frame"][2])
    assert r["per_frame"][3] == 1.0
    assert r["n_scored"] == 2
    assert r["remnant"] == (11 / 30 + 1.0) / 2


def test_remnant_without_hands_and_with_nothing_to_score():
    removed, source, obj, _ = _clip()
    r = removal_remnant(removed, source, obj)
    # frame 0 now scores all 36 eroded pixels: 18 + 1 changed, 17 survive; frame 2 (no hand): unchanged
    assert r["per_frame"][0] == 17 / 36 and r["per_frame"][2] == 1.0
    empty = removal_remnant(removed, source, np.zeros_like(obj))
    assert math.isnan(empty["remnant"]) and empty["n_scored"] == 0
