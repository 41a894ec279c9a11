"""03_segment's SAM 2 backend: prompt building on hand-made detections (exact points), and the real
loading and propagation code of the official ``sam2`` package on a tiny seeded model saved in
the official checkpoint format, through the stage and the CLI."""

from __future__ import annotations

import json
import shutil
import types
from dataclasses import dataclass

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_clip
from hoi_cli.errors import BadInputError, ExitCode, MissingWeightsError
from hoi_cli.segment import sam2_video as sv
from hoi_cli.stages import segment

H, W, T = 96, 160, 12


# ---------------------------------------------------------------- prompts (no sam2 needed)
def _detections(T=6):
    """Hand-made 01_detect arrays: the right hand (slot 1) seen on frames 1..4, the left never."""
    kps = np.full((T, 2, 21, 3), np.nan, np.float32)
    boxes = np.full((T, 2, 4), np.nan, np.float32)
    score = np.full((T, 2), np.nan, np.float32)
    interp = np.zeros((T, 2), bool)
    for t in range(1, 5):
        boxes[t, 1] = [50, 40, 90, 80]
        kps[t, 1, :, :2] = (70, 60)
        kps[t, 1, :, 2] = 1.0
        score[t, 1] = [0.0, 0.9, 0.7, 0.95, 0.8][t]
    kps[2, 1, 0, :2] = (52, 78)  # wrist
    kps[2, 1, 5, :2] = (60, 45)  # index knuckle
    kps[2, 1, 9, :2] = np.nan  # middle knuckle lost
    kps[2, 1, 13, :2] = (75, 44)  # ring knuckle
    kps[2, 1, 17, :2] = (170, 44)  # pinky knuckle outside the 160 px frame
    kps[2, 1, 8, :2] = (100, 70)  # a fingertip on the object: never a positive point
    interp[3, 1] = True  # the most confident frame was interpolated: not a prompt
    objects = np.tile(np.array([80, 50, 120, 90], np.float32), (T, 1))
    score_obj = np.array([0.3, 0.3, 0.5, 0.4, 0.5, 0.3], np.float32)[:T]
    return {"hand_keypoints": kps, "hand_boxes": boxes, "hand_score": score, "hand_interpolated": interp,
            "object_boxes": objects, "object_score": score_obj}


def test_hand_prompt_has_palm_points_and_negatives_on_the_object_outside_the_hand():
    det = _detections()
    p = sv.hand_prompt(det, 1, 2, det["object_boxes"], W, H)
    assert p.frame == 2 and p.box.tolist() == [50, 40, 90, 80]
    # positives: wrist, index and ring knuckles (middle is NaN, pinky outside the frame);
    # negatives: object centre (100, 70) and the halfway points (110, 60), (110, 80); (90, 60) and
    # (90, 80) lie on the hand box's edge and are dropped
    assert p.points.tolist() == [[52, 78], [60, 45], [75, 44], [100, 70], [110, 60], [110, 80]]
    assert p.labels.tolist() == [1, 1, 1, 0, 0, 0]
    left = sv.object_negative_points([40, 30, 100, 90], [60, 40, 90, 80])  # centre (70, 60) under the hand
    assert left.tolist() == [[55, 45], [55, 75]]  # the two left halfway points are off the hand
    assert sv.object_negative_points([40, 30, 100, 90], [50, 40, 90, 80]).shape == (0, 2)  # all on the hand


def test_hand_prompt_frames_are_the_most_confident_detections_apart():
    det = _detections()
    assert sv.hand_prompt_frames(det, 1, 0, 6, n=3, min_gap=1) == [1, 2, 4]  # 3 is interpolated
    assert sv.hand_prompt_frames(det, 1, 0, 6, n=3, min_gap=2) == [1, 4]  # 2 (0.7) is next to 1 (0.9)
    assert sv.hand_prompt_frames(det, 1, 0, 6, n=1, min_gap=1) == [1]
    assert sv.hand_prompt_frames(det, 1, 2, 4, n=3, min_gap=1) == [2]  # within the chunk only
    assert sv.hand_prompt_frames(det, 0, 0, 6, n=3, min_gap=1) == []  # the left hand was never seen


def test_object_prompt_user_box_point_or_first_key_frame():
    det = _detections()
    p = sv.object_prompt(det, {"object_box": [1, 2, 30, 40], "object_frame": 3})
    assert (p.frame, p.box.tolist(), len(p.points)) == (3, [1, 2, 30, 40], 0)
    p = sv.object_prompt(det, {"object_point": "12,34", "object_frame": 5})
    assert (p.frame, p.box, p.points.tolist(), p.labels.tolist()) == (5, None, [[12, 34]], [1])
    p = sv.object_prompt(det, {"object_box": None, "object_point": None, "object_frame": 0})
    assert p.frame == 2 and p.box.tolist() == [80, 50, 120, 90]  # first key frame (score 0.5), not frame 0
    det["object_score"][:] = 0.3
    det["object_score"][4] = 0.4
    assert sv.object_prompt(det).frame == 4  # no key frame: the best-scored box
    det["object_boxes"][:] = np.nan
    assert sv.object_prompt(det) is None


def test_user_prompt_is_read_from_01_detect_manifest(tmp_path):
    (tmp_path / "01_detect").mkdir()
    (tmp_path / "01_detect" / "manifest.json").write_text(json.dumps(
        {"params": {"object_box": "10,12,100,120@4"},  # source px: 01_detect converts them
         "summary": {"prompts_working": {"object": {"box": [5, 6, 50, 60], "point": None, "frame": 2}}}}))
    from hoi_cli.stages import segment as segment_stage
    from hoi_cli.stages.detect import Detections, load_prompts

    det = Detections(_detections(), load_prompts(tmp_path))
    p = sv.object_prompt(det, segment_stage._sam2_prompt(det))
    assert (p.frame, p.box.tolist()) == (2, [5, 6, 50, 60])
    assert load_prompts(tmp_path / "nowhere") == {}


def test_build_prompts_per_chunk_and_without_hands():
    det = _detections()
    tracks = sv.build_prompts(det, 6, W, H, hand_prompts_per_chunk=1, min_gap=1, chunk=3)
    assert sorted(tracks) == [sv.OBJECT_ID, sv.HAND_IDS[1]]  # no left-hand track
    # chunks [0,3) and [2,5) and [4,6): the most confident frame in each (1, 4, 4)
    assert [p.frame for p in tracks[sv.HAND_IDS[1]]] == [1, 4]
    det["hand_boxes"][:] = np.nan
    det["hand_keypoints"][:] = np.nan
    det["hand_score"][:] = np.nan
    assert sorted(sv.build_prompts(det, 6, W, H)) == [sv.OBJECT_ID]


def test_chunks_share_one_frame_and_cover_the_clip():
    assert sv.chunk_bounds(12, 0) == [(0, 12)]
    assert sv.chunk_bounds(12, 5) == [(0, 5), (4, 9), (8, 12)]
    assert sv.chunk_bounds(9, 5) == [(0, 5), (4, 9)]
    assert sv.chunk_bounds(5, 5) == [(0, 5)]


def test_config_is_read_from_the_file_name(tmp_path):
    assert sv.config_for_checkpoint("/w/sam2.1_hiera_tiny.pt") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert sv.config_for_checkpoint("sam2.1-hiera-base-plus.pt") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert sv.config_for_checkpoint("sam2_hiera_large.pt") == "configs/sam2/sam2_hiera_l.yaml"
    assert sv.config_for_checkpoint("mine.pt", "configs/sam2.1/sam2.1_hiera_s.yaml").endswith("_s.yaml")
    with pytest.raises(BadInputError):
        sv.config_for_checkpoint("mine.pt")


def test_missing_checkpoint_names_the_files_and_the_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("HOI_WEIGHTS_DIR", raising=False)
    with pytest.raises(MissingWeightsError) as exc:
        segment.model_files(segment.Params(backend="sam2"), weights_dir=str(tmp_path))
    msg = exc.value.one_line()
    assert "sam2.1_hiera_{tiny,small,base_plus,large}.pt" in msg and str(tmp_path) in msg
    assert "hoi weights get sam2.1_hiera_tiny" in msg and exc.value.exit_code == ExitCode.MISSING_WEIGHTS
    with pytest.raises(MissingWeightsError) as exc:
        sv.checkpoint_path(tmp_path / "none.pt")
    assert "none.pt" in exc.value.message
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"x")
    (tmp_path / "sam2.1_hiera_small.pt").write_bytes(b"x")
    assert sv.checkpoint_path(None, tmp_path).name == "sam2.1_hiera_small.pt"  # the larger one wins


# ---------------------------------------------------------------- the real package on a tiny model
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A seeded ~0.9 M-parameter SAM 2 (the package's tiny config, shrunk by Hydra overrides),
    saved as ``{"model": state_dict}`` under the official file name."""
    pytest.importorskip("sam2")
    folder = tmp_path_factory.mktemp("weights")
    return sv.save_random_checkpoint(folder / "sam2.1_hiera_tiny.pt", overrides=sv.tiny_overrides(64), seed=0)


OVERRIDES = " ".join(sv.tiny_overrides(64))


def test_checkpoint_loads_through_the_official_builder(tiny_checkpoint, torch_one_thread):
    import torch

    pred = sv.load_predictor(tiny_checkpoint, "", OVERRIDES, "cpu")
    saved = torch.load(tiny_checkpoint, weights_only=True)["model"]
    assert type(pred).__name__ == "SAM2VideoPredictor" and pred.image_size == 64
    for k, v in pred.state_dict().items():
        assert torch.equal(v, saved[k]), k
    narrower = OVERRIDES.replace("trunk.embed_dim=16", "trunk.embed_dim=8").replace("[128,64,32,16]", "[64,32,16,8]")
    with pytest.raises(BadInputError) as exc:  # weights of another width: one clear error
        sv.load_predictor(tiny_checkpoint, "", narrower, "cpu")
    assert exc.value.exit_code == ExitCode.BAD_INPUT and "sam2_config" in exc.value.hint


def test_a_file_that_is_no_checkpoint_is_a_bad_input(tmp_path):
    pytest.importorskip("sam2")
    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    bad.write_text("<html>404 not found</html>")  # a failed download
    with pytest.raises(BadInputError) as exc:
        sv.load_predictor(bad, "", OVERRIDES, "cpu")
    assert str(bad) in exc.value.message and "\n" not in exc.value.message


def _moving_square(T=T):
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([xx * 255 // W, yy * 255 // H, np.full_like(xx, 90)], -1)] * T).astype(np.uint8)
    for t in range(T):
        frames[t, 30:60, 10 + 4 * t:40 + 4 * t] = (220, 40, 40)
    return frames


def _spy(monkeypatch):
    """Record the calls into the package's predictor (the real methods still run)."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    calls = {"points": [], "mask": [], "init": []}
    real_points, real_mask, real_init = (SAM2VideoPredictor.add_new_points_or_box, SAM2VideoPredictor.add_new_mask,
                                        SAM2VideoPredictor.init_state)

    def points(self, state, frame_idx, obj_id, points=None, labels=None, box=None, **kw):
        calls["points"].append(dict(frame=frame_idx, obj=obj_id, box=None if box is None else np.asarray(box).tolist(),
                                    points=None if points is None else np.asarray(points).tolist(),
                                    labels=None if labels is None else np.asarray(labels).tolist()))
        return real_points(self, state, frame_idx, obj_id, points=points, labels=labels, box=box, **kw)

    def mask(self, state, frame_idx, obj_id, mask):
        calls["mask"].append(dict(frame=frame_idx, obj=obj_id, mask=np.asarray(mask).copy()))
        return real_mask(self, state, frame_idx, obj_id, mask)

    def init(self, video_path, **kw):
        state = real_init(self, video_path, **kw)
        calls["init"].append(state["num_frames"])
        return state

    monkeypatch.setattr(SAM2VideoPredictor, "add_new_points_or_box", points)
    monkeypatch.setattr(SAM2VideoPredictor, "add_new_mask", mask)
    monkeypatch.setattr(SAM2VideoPredictor, "init_state", init)
    return calls


def test_propagation_in_chunks_covers_every_frame_and_hands_over_masks(tiny_checkpoint, torch_one_thread,
                                                                        monkeypatch):
    pred = sv.load_predictor(tiny_checkpoint, "", OVERRIDES, "cpu")
    calls = _spy(monkeypatch)
    frames = _moving_square()
    # the object is prompted on frame 6 (chunk [4,9)): chunk [0,5) is reached by the backward sweep
    tracks = {sv.OBJECT_ID: [sv.Prompt(6, box=np.array([30, 26, 64, 64], np.float32))]}
    masks, covered = sv.track_video(pred, frames, tracks, chunk=5)
    assert masks[sv.OBJECT_ID].shape == (T, H, W) and covered[sv.OBJECT_ID].all()
    assert calls["init"] == [5, 4, 5]  # sessions: [4,9) [8,12) forward, then [0,5) backward; none above 5
    assert calls["points"] == [dict(frame=2, obj=sv.OBJECT_ID, box=[30, 26, 64, 64], points=None, labels=None)]
    # the hand-overs: the mask on frame 8 (from [4,9)) prompts [8,12) at its frame 0, the mask on
    # frame 4 prompts [0,5) at its last frame; the seeded model's masks there are not empty
    assert [(c["frame"], c["obj"]) for c in calls["mask"]] == [(0, sv.OBJECT_ID), (4, sv.OBJECT_ID)]
    for c, t in zip(calls["mask"], (8, 4)):
        assert c["mask"].shape == (H, W) and c["mask"].sum() > 50
        # a mask prompt is the model's output on that frame (use_mask_input_as_output_without_sam),
        # through the 64 px model grid and back (the random model's masks are ragged: IoU 0.88)
        inter = (c["mask"] & masks[sv.OBJECT_ID][t]).sum()
        assert inter / (c["mask"] | masks[sv.OBJECT_ID][t]).sum() > 0.8


def test_no_hand_in_01_detect_gives_object_only(tiny_checkpoint, torch_one_thread):
    pred = sv.load_predictor(tiny_checkpoint, "", OVERRIDES, "cpu")
    frames = _moving_square(4)
    det = {"object_boxes": np.tile(np.array([10, 24, 46, 66], np.float32), (4, 1)),
           "object_score": np.full(4, 0.5, np.float32),
           "hand_boxes": np.full((4, 2, 4), np.nan, np.float32),
           "hand_keypoints": np.full((4, 2, 21, 3), np.nan, np.float32),
           "hand_score": np.full((4, 2), np.nan, np.float32)}
    res = sv.segment_video_sam2(pred, frames, det, chunk=0)
    assert list(res["prompts"]) == ["object"] and res["prompts"]["object"] == [{"frame": 0, "box": [10, 24, 46, 66]}]
    assert res["object"].shape == (4, H, W) and not res["hand"].any()
    assert np.isnan(res["hand_boxes_from_masks"]).all() and res["frames_tracked"] == {"object": 4}


# ---------------------------------------------------------------- the stage and the CLI
@dataclass
class _NoParams:
    pass


def _hand_detections(T):
    """01_detect arrays for the moving-square clip: the right hand beside the square, lost on 6..8."""
    kps = np.full((T, 2, 21, 3), np.nan, np.float32)
    boxes = np.full((T, 2, 4), np.nan, np.float32)
    score = np.full((T, 2), np.nan, np.float32)
    for t in range(T):
        if 6 <= t <= 8:
            continue
        x = 45 + 4 * t
        boxes[t, 1] = [x, 35, x + 25, 70]
        kps[t, 1, :, :2] = (x + 12, 52)
        kps[t, 1, :, 2] = 1.0
        score[t, 1] = 0.5 + 0.04 * t
    objects = np.array([[10 + 4 * t - 4, 26, 40 + 4 * t + 4, 64] for t in range(T)], np.float32)
    return {"hand_keypoints": kps, "hand_world": np.zeros_like(kps), "hand_score": score,
            "hand_interpolated": np.zeros((T, 2), bool), "hand_boxes": boxes, "hand_boxes_square": boxes,
            "object_boxes": objects, "object_score": np.full(T, 0.5, np.float32)}


def _fake_stage(real, write):
    """A stage with ``real``'s name, version, dependencies and params (so the CLI sees it up to
    date) that writes hand-made outputs."""
    def run(ctx):
        write(ctx.out_dir)
        return {}

    return types.SimpleNamespace(NAME=real.NAME, VERSION=real.VERSION, DEPENDS_ON=real.DEPENDS_ON, Params=real.Params,
                                 run=run, model_files=getattr(real, "model_files", None))


@pytest.fixture
def cli_run(tmp_path):
    """A run folder made by the CLI (00_frames) with hand-made 01_detect and 02_hands outputs."""
    from hoi_cli import pipeline as pl
    from hoi_cli.cli import app
    from hoi_cli.stages import detect, hands
    from hoi_cli.store import RunStore

    clip = make_clip(tmp_path / "square.mp4", n=T, width=W, height=H)
    out = tmp_path / "runs"
    r = CliRunner().invoke(app, ["preprocess", str(clip), "--out", str(out), "--until", "frames", "-q"])
    assert r.exit_code == 0, r.output
    run = out / "square"
    recipe = pl.load_recipe("full")
    det = _hand_detections(T)
    with RunStore(run) as s:
        s.run_stage(_fake_stage(detect, lambda o: np.savez(o / "detections.npz", **det)),
                    pl.resolve_params("01_detect", recipe, {}))
        s.run_stage(_fake_stage(hands, lambda o: None), pl.resolve_params("02_hands", recipe, {}))
    return clip, out, run


def _cli(clip, out, *args):
    from hoi_cli.cli import app

    return CliRunner().invoke(app, ["preprocess", str(clip), "--out", str(out), "--until", "segment", "-q",
                                    "--device", "cpu", "--format", "json", *map(str, args)])


def test_missing_checkpoint_exits_4_through_the_cli(cli_run, tmp_path, monkeypatch):
    monkeypatch.delenv("HOI_WEIGHTS_DIR", raising=False)
    clip, out, _ = cli_run
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _cli(clip, out, "--set", "segment.backend=sam2", "--weights-dir", empty)
    assert r.exit_code == ExitCode.MISSING_WEIGHTS, r.output
    assert "sam2.1_hiera_{tiny,small,base_plus,large}.pt" in r.output and str(empty) in r.output


def test_sam2_backend_through_the_cli_records_prompts_and_goes_stale_with_the_checkpoint(
        cli_run, tiny_checkpoint, torch_one_thread, monkeypatch, tmp_path):
    from hoi_cli import pipeline as pl
    from hoi_cli.store import RunStore

    monkeypatch.delenv("HOI_WEIGHTS_DIR", raising=False)
    calls = _spy(monkeypatch)
    clip, out, run = cli_run
    weights = tmp_path / "weights"
    weights.mkdir()
    checkpoint = weights / tiny_checkpoint.name
    shutil.copy(tiny_checkpoint, checkpoint)
    sets = ["--set", "segment.backend=sam2", "--set", f"segment.sam2_overrides={OVERRIDES}",
            "--set", "segment.sam2_hand_prompts=2", "--set", "segment.preview=false"]
    r = _cli(clip, out, *sets, "--weights-dir", weights)
    assert r.exit_code == 0, r.output
    manifest = json.loads((run / "03_segment" / "manifest.json").read_text())
    summary = manifest["summary"]
    assert set(manifest["inputs"]["models"]) == {"sam2"}
    assert summary["sam2_model"] == {"checkpoint": "sam2.1_hiera_tiny.pt",
                                     "config": "configs/sam2.1/sam2.1_hiera_t.yaml",
                                     "overrides": sv.tiny_overrides(64)}
    # the object on the first key frame; the right hand on its two most confident frames (11, 10 are
    # 1 apart: 11 and 5 with the default gap), box + palm points + negatives on the object
    prompts = summary["sam2_prompts"]
    assert prompts["object"] == [{"frame": 0, "box": [6.0, 26.0, 44.0, 64.0]}]
    assert [p["frame"] for p in prompts["right_hand"]] == [5, 11] and "left_hand" not in prompts
    p11 = prompts["right_hand"][1]
    assert p11["box"] == [89.0, 35.0, 114.0, 70.0] and p11["labels"] == [1] * 5 + [0] * 5
    assert p11["points"][:5] == [[101.0, 52.0]] * 5  # the palm joints
    assert p11["points"][5] == [69.0, 45.0]  # the object's centre (its box at frame 11: 50..88 x 26..64)
    spied = [(c["frame"], c["obj"]) for c in calls["points"]]
    assert spied == [(0, sv.OBJECT_ID), (5, sv.HAND_IDS[1]), (11, sv.HAND_IDS[1])]
    assert calls["points"][2]["box"] == p11["box"] and calls["points"][2]["points"] == p11["points"]
    masks = segment.load_masks(run)
    assert masks["object"].shape == (T, H, W) and masks["hand"].shape == (T, H, W)
    assert not (masks["object"] & masks["hand"]).any()
    with np.load(run / "03_segment" / "masks.npz") as z:
        assert set(z.files) == {"object", "hand", "shape", "object_boxes", "hand_boxes_from_masks"}
        hb = z["hand_boxes_from_masks"]
    assert hb.shape == (T, 2, 4) and np.isnan(hb[:, 0]).all()
    assert summary["sam2_frames_tracked"] == {"object": T, "right_hand": T}
    # a new checkpoint file under the same name makes 03_segment stale
    recipe = pl.load_recipe("full")
    params = pl.resolve_params("03_segment", recipe, pl.parse_overrides([s for s in sets if s != "--set"]))
    with RunStore(run) as s:
        assert s.state(segment, params, weights_dir=str(weights)).status == "ok"
        sv.save_random_checkpoint(checkpoint, overrides=sv.tiny_overrides(64), seed=1)
        state = s.state(segment, params, weights_dir=str(weights))
    assert state.status == "stale" and "model file sam2 changed" in state.reason


def test_sam2_checkpoint_flag_selects_the_backend_and_names_a_missing_file(cli_run, tmp_path):
    clip, out, _ = cli_run
    missing = tmp_path / "nowhere" / "sam2.1_hiera_small.pt"
    r = _cli(clip, out, "--sam2-checkpoint", missing)
    assert r.exit_code == ExitCode.MISSING_WEIGHTS, r.output
    assert "sam2.1_hiera_small.pt" in r.output
