"""Hand, temporal and object metrics on hand-made inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hoi_cli.metrics import hands, objects, temporal


def _det(T=4):
    kp = np.full((T, 2, 21, 3), np.nan, dtype=np.float32)
    grid = np.stack(np.meshgrid(np.linspace(0, 40, 7), np.linspace(0, 60, 3)), -1).reshape(21, 2)
    kp[:, 1, :, :2] = grid + 100  # right hand, box 100..140 x 100..160
    kp[:, 1, :, 2] = 0.9
    score = np.full((T, 2), np.nan, dtype=np.float32)
    score[:, 1] = 0.9
    boxes = np.full((T, 2, 4), np.nan, dtype=np.float32)
    boxes[:, 1] = [100, 100, 140, 160]
    return {"hand_keypoints": kp, "hand_score": score, "hand_boxes": boxes,
            "hand_interpolated": np.zeros((T, 2), dtype=bool)}


def test_hand_metrics_identical():
    d = _det()
    m = hands.hand_metrics(d, d)
    assert m["hand_agreement"] == pytest.approx(1.0)
    assert m["hand_fidelity"] == pytest.approx(0.9)
    assert m["hand_mpjpe_px"] == 0.0 and m["hand_miss_rate"] == 0.0


def test_hand_metrics_shift_and_miss():
    ref, gen = _det(), _det()
    gen["hand_keypoints"][:, 1, :, 0] += 3
    gen["hand_keypoints"][:, 1, :, 1] += 4  # 5 px per joint
    gen["hand_boxes"][:, 1] += [3, 4, 3, 4]
    gen["hand_score"][0, 1] = np.nan  # missed in frame 0
    gen["hand_boxes"][0, 1] = np.nan
    m = hands.hand_metrics(gen, ref)
    inter = 37 * 56
    iou = inter / (2 * 40 * 60 - inter)
    assert m["hand_agreement"] == pytest.approx(iou * 3 / 4)  # the miss counts as 0
    assert m["hand_miss_rate"] == pytest.approx(0.25)
    assert m["hand_mpjpe_px"] == pytest.approx(5.0, abs=1e-4)
    assert m["hand_mpjpe_norm"] == pytest.approx(5.0 / 60, abs=1e-5)
    assert m["hand_fidelity"] == pytest.approx(0.9 * 3 / 4)
    assert m["hand_fidelity_detected"] == pytest.approx(0.9)


def test_hand_metrics_match_by_handedness_and_ignore_interpolated():
    ref, gen = _det(), _det()
    for k in ("hand_keypoints", "hand_score", "hand_boxes"):
        gen[k] = gen[k][:, ::-1].copy()  # the generated hand is labelled left
    m = hands.hand_metrics(gen, ref)
    assert m["hand_agreement"] == 0.0 and m["hand_miss_rate"] == 1.0 and math.isnan(m["hand_mpjpe_px"])
    gen = _det()
    gen["hand_interpolated"][:2, 1] = True
    assert hands.hand_metrics(gen, ref)["hand_miss_rate"] == pytest.approx(0.5)
    empty = _det()
    empty["hand_score"][:] = np.nan
    assert math.isnan(hands.hand_metrics(gen, empty)["hand_agreement"])


def test_subject_consistency_formula():
    f = np.array([[1.0, 0], [1, 0], [0, 1], [-1, 0]])
    # i=1: (1+1)/2; i=2: (0+0)/2; i=3: (max(0,0)+max(0,-1))/2 = 0
    assert temporal.subject_consistency_from_features(f) == pytest.approx((1 + 0 + 0) / 3)
    assert temporal.subject_consistency_from_features(np.ones((5, 8))) == pytest.approx(1.0)


def test_dino_loading_tiny_random(tmp_path, rng):
    import torch

    torch.manual_seed(0)
    net = temporal.build_dino_vit(dim=64, depth=2, heads=1)
    path = tmp_path / temporal.DINO_FILE
    torch.save(net.state_dict(), path)
    feats = temporal.DinoFeatures(path)
    frames = rng.integers(0, 256, size=(3, 90, 160, 3)).astype(np.uint8)  # non-square: pos-embed interpolation
    f = feats(frames)
    assert f.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-6)
    same = np.repeat(frames[:1], 4, axis=0)
    assert temporal.subject_consistency_from_features(feats(same)) == pytest.approx(1.0)


def _moving(T=7, step=2, rng=None):
    import cv2

    rng = rng or np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, size=(80, 120 + T * step, 3)).astype(np.uint8), (9, 9), 3)
    return np.stack([base[:, t * step:t * step + 120] for t in range(T)])


def test_motion_smoothness_flow():
    rng = np.random.default_rng(0)
    static = np.repeat(_moving(1, rng=rng), 5, axis=0)
    assert temporal.motion_smoothness_flow(static) == pytest.approx(1.0)
    smooth = temporal.motion_smoothness_flow(_moving(7, rng=rng))
    jitter = rng.integers(0, 256, size=(7, 80, 120, 3)).astype(np.uint8)
    rough = temporal.motion_smoothness_flow(jitter)
    assert smooth > 0.98 and rough < 0.8 and smooth > rough
    assert math.isnan(temporal.motion_smoothness_flow(static[:2]))


def test_motion_smoothness_amt_torchscript(tmp_path):
    import torch

    class Avg(torch.nn.Module):  # the file contract: (img0, img1, embt) -> imgt
        def forward(self, img0, img1, embt):
            return img0 * (1 - embt) + img1 * embt

    path = tmp_path / temporal.AMT_FILE
    torch.jit.save(torch.jit.script(Avg()), str(path))
    interp = temporal.AMTInterpolator(path)
    clip = _moving(5)
    mid = interp(clip[0], clip[2])
    assert mid.shape == clip[0].shape and mid.dtype == np.uint8
    static = np.repeat(clip[:1], 5, axis=0)
    assert temporal.motion_smoothness_amt(static, interp) == pytest.approx(1.0)


def test_mask_iou_and_appearance(rng):
    g = np.zeros((3, 10, 10), bool)
    r = np.zeros((3, 10, 10), bool)
    g[0, :5], r[0, :5] = True, True  # IoU 1
    g[1, :4], r[1, 2:6] = True, True  # 20 / 60
    res = objects.mask_iou(g, r)  # frame 2 empty on both: left out
    assert res["object_mask_iou"] == pytest.approx((1 + 20 / 60) / 2)
    assert res["n_empty"] == 1
    frames = rng.integers(0, 256, size=(3, 10, 10, 3)).astype(np.uint8)
    assert objects.appearance_colour(frames, frames, g, g) == pytest.approx(1.0)
    other = (255 - frames) // 2
    assert objects.appearance_colour(other, frames, g, r) < 0.5


def test_load_masks_npz_and_video(tmp_path):
    from hoi_cli.conventions import pack_masks
    from hoi_cli.video import write_video

    m = np.zeros((4, 32, 48), bool)
    m[:, 8:24, 10:30] = True
    packed, shape = pack_masks(m)
    np.savez(tmp_path / "masks.npz", object=packed, shape=shape)
    np.testing.assert_array_equal(objects.load_masks(tmp_path / "masks.npz"), m)
    rgb = np.zeros((4, 32, 48, 3), np.uint8)
    rgb[m] = (240, 113, 176)  # a coloured mask video, like AnchorCrafter's
    write_video(tmp_path / "mask.mp4", rgb, 10)
    got = objects.load_masks(tmp_path / "mask.mp4")
    assert got.shape == m.shape and (got == m).mean() > 0.98
    assert objects.load_masks(tmp_path / "mask.mp4", size=(24, 16)).shape == (4, 16, 24)
