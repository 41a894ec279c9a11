"""bench/measure_fill.py's core on tiny synthetic clips: its scores, its composite and a removal it can rank."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

HERE = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("measure_fill", HERE / "bench" / "measure_fill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_fill_scores_known_errors(bench):
    rng = np.random.default_rng(0)
    plate = rng.integers(0, 200, (3, 8, 8, 3), dtype=np.uint8)
    region = np.ones((3, 8, 8), bool)
    s = bench.fill_scores(plate + 10, plate, region)  # a constant error: no flicker
    assert s["mae"] == pytest.approx(10.0)
    assert s["psnr"] == pytest.approx(10 * np.log10(255.0 ** 2 / 100.0))  # 28.13 dB
    assert s["flicker"] == pytest.approx(0.0)
    out = plate.copy()
    out[1] += 10  # one frame off: the error jumps up, then back
    s = bench.fill_scores(out, plate, region)
    assert s["mae"] == pytest.approx(10 / 3)
    assert s["flicker"] == pytest.approx(10.0)
    # the plate's own change is no flicker: a fill that follows it exactly scores 0
    moving = plate.copy()
    moving[2] = np.roll(moving[2], 1, axis=1)
    assert bench.fill_scores(moving, moving, region)["flicker"] == 0.0
    assert bench.fill_scores(moving, moving, region)["psnr"] == float("inf")
    # only the region counts
    out = plate.copy()
    out[:, :4] = 0
    part = np.zeros_like(region)
    part[:, 4:] = True
    assert bench.fill_scores(out, plate, part)["mae"] == 0.0


def test_pairing_crosses_the_splits(bench):
    pairs = bench.pairing(0)
    assert pairs == bench.pairing(0)
    assert set(pairs) == set(bench.SPLITS["tune"]) | set(bench.SPLITS["val"])
    for plate_split, source_split in (("tune", "val"), ("val", "tune")):
        sources = [pairs[c] for c in bench.SPLITS[plate_split]]
        assert sorted(sources) == sorted(bench.SPLITS[source_split])  # each used once, from the other split


def test_cut_and_paste(bench):
    T, H, W = 2, 40, 50
    src = np.zeros((T, H, W, 3), np.uint8)
    src[..., 0] = 200
    masks = np.zeros((T, H, W), bool)
    masks[:, 10:30, 10:30] = True  # 400 px
    masks[1] = False  # the object gone in frame 1
    cuts = bench.cut_object(src, masks, max_area=100)  # scaled by 0.5
    assert cuts[1] is None
    assert cuts[0].mask.shape == (10, 10) and cuts[0].mask.all()
    assert cuts[0].centre == pytest.approx((4.5, 4.5))
    plate = np.full((T, H, W, 3), 50, np.uint8)
    front = np.zeros((T, H, W), bool)
    front[:, :, :22] = True  # the hand covers the object's left 2 columns
    path = np.array([[24.5, 20.5], [24.5, 20.5]])
    comp, visible, pasted = bench.paste(plate, front, cuts, path)
    assert pasted[0].sum() == 100 and pasted[0, 16:26, 20:30].all()
    assert not pasted[1].any()
    assert np.array_equal(visible, pasted & ~front)
    assert visible[0].sum() == 80
    assert (comp[visible] == (200, 0, 0)).all()
    assert np.array_equal(comp[~visible], plate[~visible])  # the hand in front, the rest the plate


def _textured_plate(T: int, H: int, W: int) -> np.ndarray:
    """A fine blue-grey texture (a tablecloth) that no inpainting can guess from the hole's rim."""
    rng = np.random.default_rng(1)
    v = cv2.GaussianBlur(rng.uniform(0, 1, (H, W)).astype(np.float32), (0, 0), 1.2)
    v = np.clip((v - v.mean()) / v.std() * 0.25 + 0.5, 0, 1) * 160 + 40
    tex = np.stack([0.6 * v, 0.7 * v, 0.9 * v], -1).astype(np.uint8)
    return np.repeat(tex[None], T, 0)


def test_removal_scored_against_the_plate(bench):
    """A still camera over a texture, a 'hand' sweeping across with a green object beside it: the
    background under the object shows in other frames, so 07_genhoi's removal recovers it almost
    exactly, while the per-frame Telea peer cannot guess the texture."""
    T, H, W = 10, 64, 96
    plate = _textured_plate(T, H, W)
    hand = np.zeros((T, H, W), bool)
    for t in range(T):
        cv2.circle(hand[t].view(np.uint8), (20 + 6 * t, 30), 9, 1, -1)
        plate[t][hand[t]] = (205, 150, 120)  # skin-coloured, in front
    src = np.zeros((T, H, W, 3), np.uint8)
    src[...] = (30, 200, 40)
    obj = np.zeros((T, H, W), bool)
    obj[:, 20:34, 20:34] = True
    cuts = bench.cut_object(src, obj, max_area=10_000)
    path = bench.object_path(hand, np.zeros_like(hand), cuts, np.random.default_rng(0))
    comp, visible, pasted = bench.paste(plate, hand, cuts, path)
    assert visible.sum() > 0.5 * pasted.sum() and (pasted & hand).any()  # partly under the hand
    composite = {"plate": plate, "hand": hand, "plate_object": np.zeros_like(hand), "composite": comp,
                 "visible": visible, "pasted": pasted}
    row, images = bench.score_removal(composite)
    assert row["none_mae"] > 20  # green on blue-grey
    # under the object the background shows in other frames: taken from there, exactly
    assert row["mae_object"] < 3
    assert row["peer_mae_object"] > 20
    assert row["mae"] < 0.5 * row["peer_mae"]
    assert row["psnr"] > row["peer_psnr"] + 4
    assert images["remove"][visible].all()
    # exactly what 07_genhoi stores for these masks
    from hoi_cli.stages.genhoi import Params, object_removal

    stored, removed = object_removal(comp, visible, hand, Params().dilate_px)
    assert np.array_equal(images["ours"], stored) and np.array_equal(images["remove"], removed)


def test_remove_settings(bench):
    assert bench.remove_settings(["unchanged_diff=0", "observations=8"]) == {"unchanged_diff": 0.0, "observations": 8}
    assert isinstance(bench.remove_settings(["unchanged_diff=0"])["unchanged_diff"], float)
    for bad in (["nope=1"], ["unchanged_diff"], ["unchanged_diff=abc"], ["frames=1"]):
        with pytest.raises(SystemExit):
            bench.remove_settings(bad)


def test_solid_fills_holes_without_growing(bench):
    m = np.zeros((1, 20, 20), bool)
    m[0, 0:8, 0:8] = True  # against the image's corner
    m[0, 3, 3] = m[0, 4, 5] = False  # speckle inside
    m[0, 14:18, 14:18] = True
    out = bench.solid(m)
    assert out[0, 0:8, 0:8].all() and out[0, 14:18, 14:18].all()
    assert out.sum() == 64 + 16  # nothing added outside the two squares


def test_moving_content_is_what_changes_unmasked(bench):
    plate = np.full((5, 20, 20, 3), 100, np.uint8)
    for t in range(5):
        plate[t, 5:10, 2 + 3 * t:6 + 3 * t] = 220  # a bright bar sliding right: an unmasked arm
    front = np.zeros((5, 20, 20), bool)
    front[:, :, 14:] = True  # masked: not counted
    moving = bench.moving_content(plate, front)
    assert moving[0, 5:10, 2:6].all()  # the bar where it is not in most frames
    assert not moving[:, :5].any() and not moving[:, 10:].any()  # still background
    assert not moving[:, :, 14:].any()
