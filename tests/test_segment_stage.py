"""03_segment as a stage on a synthetic run folder, and the SAM loading path with a tiny saved model."""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np
import pytest

from hoi_cli.conventions import box_from_mask, default_intrinsics
from hoi_cli.errors import BadInputError, MissingWeightsError
from hoi_cli.stages import frames as frames_stage
from hoi_cli.stages import segment
from hoi_cli.store import RunStore

HAND_PX = (100, 58, 135, 90)  # x0, y0, x1, y1 of the synthetic "hand" quad


def iou(a, b):
    u = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / u if u else 1.0


@dataclass
class _NoParams:
    pass


def _fake_stage(name, depends, write):
    def run(ctx):
        write(ctx.out_dir)
        return {}

    return types.SimpleNamespace(NAME=name, VERSION="test", DEPENDS_ON=depends, Params=_NoParams, run=run)


def _quad_mesh(K, box_px, z=0.5):
    x0, y0, x1, y1 = box_px
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    xy = (corners - K[:2, 2]) / np.array([K[0, 0], K[1, 1]]) * z
    verts = np.concatenate([xy, np.full((4, 1), z)], axis=1)
    return verts, np.array([[0, 1, 2], [0, 2, 3]], np.int64)


@pytest.fixture
def synthetic_run(tmp_path, synthetic_clip):
    """A run with real 00_frames and hand-written 01_detect / 02_hands outputs (contract keys)."""
    run = tmp_path / "run"
    with RunStore(run) as s:
        s.run_stage(frames_stage, frames_stage.Params(), source=synthetic_clip)
    T = len(frames_stage.frame_paths(run))
    meta = frames_stage.load_meta(run)
    W, H = meta["width"], meta["height"]
    # the synthetic clip's object: a square at rows 30:60, cols 10+4t : 40+4t
    gt = np.zeros((T, H, W), bool)
    boxes = np.zeros((T, 4), np.float32)
    for t in range(T):
        gt[t, 30:60, 10 + 4 * t:40 + 4 * t] = True
        boxes[t] = [10 + 4 * t - 6, 24, 40 + 4 * t + 6, 66]
    boxes[3] = np.nan  # a missed detection, interpolated
    kps = np.full((T, 2, 21, 3), np.nan, np.float32)

    def write_detect(out):
        np.savez(out / "detections.npz", object_boxes=boxes, object_score=np.ones(T, np.float32),
                 hand_keypoints=kps, hand_boxes=np.full((T, 2, 4), np.nan, np.float32))

    K = default_intrinsics(W, H)
    v, f = _quad_mesh(K, HAND_PX)
    verts = np.zeros((T, 2, 4, 3))
    verts[:, 1] = v
    valid = np.zeros((T, 2), bool)
    valid[:, 1] = True

    def write_hands(out):
        np.savez(out / "mano.npz", vertices=verts, faces=f, K=K, valid=valid)

    with RunStore(run) as s:
        s.run_stage(_fake_stage("01_detect", ("00_frames",), write_detect), _NoParams())
        s.run_stage(_fake_stage("02_hands", ("00_frames", "01_detect"), write_hands), _NoParams())
    hand = np.zeros((T, H, W), bool)
    hand[:, HAND_PX[1]:HAND_PX[3], HAND_PX[0]:HAND_PX[2]] = True
    return run, gt, hand


def test_stage_writes_object_and_hand_masks(synthetic_run):
    run, gt, hand_gt = synthetic_run
    with RunStore(run) as s:
        manifest = s.run_stage(segment, segment.Params())
    masks = segment.load_masks(run)
    assert masks["object"].shape == gt.shape and masks["object"].dtype == bool
    obj_iou = np.mean([iou(a, b) for a, b in zip(masks["object"], gt)])
    hand_iou = np.mean([iou(a, b) for a, b in zip(masks["hand"], hand_gt)])
    assert obj_iou > 0.85, obj_iou
    assert hand_iou > 0.45, hand_iou  # 0.55 measured: the keypoint hand mask against the mesh silhouette
    assert iou(masks["object"][3], gt[3]) > 0.8  # the frame whose box was interpolated
    # the refined hand never strays beyond the band around the mesh silhouette
    band = np.zeros_like(hand_gt)
    b = segment.Params().hand_band_px
    band[:, HAND_PX[1] - b:HAND_PX[3] + b, HAND_PX[0] - b:HAND_PX[2] + b] = True
    assert masks["hand"].any() and not (masks["hand"] & ~band).any()
    assert not (masks["object"] & masks["hand"]).any()
    assert (run / "03_segment" / "preview.mp4").stat().st_size > 0
    with np.load(run / "03_segment" / "masks.npz") as z:
        assert set(z.files) == {"object", "hand", "shape", "object_boxes"} and z["object"].dtype == np.uint8
        assert np.allclose(z["object_boxes"], [box_from_mask(m) for m in masks["object"]], equal_nan=True)
        assert tuple(z["shape"]) == gt.shape
    assert np.array_equal(segment.load_object_boxes(run), z_boxes(run), equal_nan=True)
    assert manifest["summary"]["frames_with_object"] == len(gt)


def z_boxes(run):
    with np.load(run / "03_segment" / "masks.npz") as z:
        return z["object_boxes"]


def test_hand_mask_is_the_mesh_silhouette_without_refinement(synthetic_run):
    run, _, hand_gt = synthetic_run
    with RunStore(run) as s:
        s.run_stage(segment, segment.Params(refine_hands=False, preview=False))
    hand = segment.load_masks(run)["hand"]
    assert np.mean([iou(a, b) for a, b in zip(hand, hand_gt)]) > 0.95


def test_unknown_backend_is_a_bad_input(synthetic_run):
    run, _, _ = synthetic_run
    with RunStore(run) as s, pytest.raises(BadInputError):
        s.run_stage(segment, segment.Params(backend="nope"))


# ---------------------------------------------------------------- SAM
TINY = dict(embed_dim=32, depth=2, num_heads=2, global_attn=(1,), img_size=64, patch_size=8, prompt_dim=32,
            window_size=4, mlp_dim=64, decoder_depth=1, decoder_heads=2, iou_head_dim=32)


@pytest.fixture
def tiny_sam(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from hoi_cli.segment import sam as sam_mod

    monkeypatch.setitem(sam_mod.SAM_CONFIGS, "tiny_test", TINY)
    torch.manual_seed(0)
    model = sam_mod.build_sam(TINY)
    path = tmp_path / "sam_tiny.pth"
    torch.save(model.state_dict(), path)  # the published checkpoints' format: a bare state dict
    return path, model


def test_sam_checkpoint_loads_through_the_stage_code(tiny_sam):
    import torch

    from hoi_cli.segment.sam import SamSegmenter, load_sam, segment_object_sam

    path, ref = tiny_sam
    model = load_sam(path)  # architecture read from the state dict
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 40, 40], [np.nan] * 4], np.float32)
    kps = np.full((2, 2, 21, 3), np.nan, np.float32)
    kps[0, 1, :, :] = (20, 20, 1.0)
    masks = segment_object_sam(SamSegmenter(model), frames, boxes, kps)
    assert masks.shape == (2, 48, 80) and masks.dtype == bool and not masks[1].any()
    with pytest.raises(BadInputError):
        load_sam(path, model_type="vit_b")  # the wrong architecture is one clear error


def test_sam_backend_runs_as_a_stage(tiny_sam, synthetic_run):
    path, _ = tiny_sam
    run, gt, _ = synthetic_run
    with RunStore(run) as s:
        manifest = s.run_stage(segment, segment.Params(backend="sam", sam_checkpoint=str(path)), device="cpu")
    assert "sam" in manifest["inputs"]["models"]
    assert segment.load_masks(run)["object"].shape == gt.shape


def test_missing_sam_checkpoint_says_where_it_looked(tmp_path):
    with pytest.raises(MissingWeightsError) as exc:
        segment.model_files(segment.Params(backend="sam", sam_checkpoint=str(tmp_path / "none.pth")))
    assert "none.pth" in exc.value.message
    assert segment.model_files(segment.Params()) == {}


def test_hand_mask_adds_the_keypoint_mask_but_object_background_does_not():
    from hoi_cli.segment.hand import keypoint_hand_mask

    T, H, W = 2, 96, 128
    frames = np.full((T, H, W, 3), 120, np.uint8)
    K = default_intrinsics(W, H)
    v, f = _quad_mesh(K, (20, 20, 50, 50))
    mano = {"vertices": np.stack([np.stack([v, v])] * T), "faces": f, "K": K,
            "valid": np.array([[False, True]] * T)}
    kps = np.full((T, 2, 21, 3), np.nan, np.float32)
    rng = np.random.default_rng(0)
    kps[:, 0, :, :2] = rng.uniform([70, 40], [100, 70], (21, 2))  # a hand the fit missed
    kps[:, 0, :, 2] = 1.0
    p = segment.Params(refine_hands=False)
    hand, bg = segment.hand_masks_from_inputs(frames, {"hand_keypoints": kps}, mano, p, with_object_bg=True)
    kp = keypoint_hand_mask(kps[0], H, W)
    assert kp.sum() > 100
    assert hand[0][kp].all() and hand[0, 20:50, 20:50].all()
    assert not (bg[0] & kp).any() and bg[0, 20:50, 20:50].all()  # the object's background: mesh only
    off = segment.hand_masks_from_inputs(frames, {"hand_keypoints": kps}, mano,
                                         segment.Params(refine_hands=False, hand_keypoints=False))
    assert not off[0, 60:80, 75:95].any()


def test_object_seed_round_trips_and_anchors_the_object(tmp_path):
    """01_detect's ``object_seed`` (bit-packed in detections.npz) is unpacked by `load_detections`
    and used by `segment_clip`; runs without it, or with one of another size, still work."""
    from hoi_cli.conventions import pack_masks
    from hoi_cli.stages.detect import load_detections

    T, H, W = 3, 120, 200
    r = np.random.default_rng(4)
    obj = np.zeros((H, W), bool)
    obj[45:75, 60:95] = True
    img = np.zeros((H, W, 3), np.int32)
    img[:] = (200, 70, 50)  # the object's colour all around the box, a blue cloth beside it
    img[35:85, 100:145] = (40, 60, 200)
    img[obj] = (190, 80, 60)
    frames = np.stack([np.clip(img + r.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)] * T)
    seeds = np.stack([obj] * T)
    packed, shape = pack_masks(seeds)
    (tmp_path / "01_detect").mkdir()
    np.savez(tmp_path / "01_detect" / "detections.npz", object_boxes=np.tile([50, 30, 150, 90], (T, 1)).astype(
        np.float32), object_score=np.ones(T, np.float32), hand_keypoints=np.full((T, 2, 21, 3), np.nan, np.float32),
        object_seed=packed, object_seed_shape=shape)
    det = load_detections(tmp_path)
    assert det["object_seed"].dtype == bool and np.array_equal(det["object_seed"], seeds)
    assert "object_seed_shape" not in det
    p = segment.Params(refine_hands=False, preview=False)
    recall = lambda m: np.mean([(a & obj).sum() / obj.sum() for a in m])  # noqa: E731
    assert recall(segment.segment_clip(frames, det, None, p)["object"]) > 0.9
    plain = {k: v for k, v in det.items() if k != "object_seed"}
    assert recall(segment.segment_clip(frames, plain, None, p)["object"]) < 0.1
    assert recall(segment.segment_clip(frames, det, None, segment.Params(object_seed=False, refine_hands=False))[
        "object"]) < 0.1
    other = dict(det, object_seed=np.zeros((T, H // 2, W // 2), bool))  # frames of another size: ignored
    assert recall(segment.segment_clip(frames, other, None, p)["object"]) < 0.1
