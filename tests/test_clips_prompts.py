"""Issue 12's plumbing: frame folders and GIFs as clips, no abort without hands (warnings,
--strict, status), hand and object prompts in source pixels, the prompts CSV."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_clip, synthetic_frames
from hoi_cli.cli import app
from hoi_cli.errors import BadInputError, ExitCode

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [*map(str, args)])


def preprocess(*args):
    return invoke("preprocess", *args, "--format", "json", "-q")


def no_hand_result(T: int, box_only: dict | None = None) -> dict:
    """What `detect_hands` returns on frames without a hand (its contract: all NaN, no raise);
    ``box_only`` {(t, slot): box} adds hands followed as a box without keypoints."""
    out = {"hand_keypoints": np.full((T, 2, 21, 3), np.nan, np.float32),
           "hand_world": np.full((T, 2, 21, 3), np.nan, np.float32),
           "hand_score": np.full((T, 2), np.nan, np.float32), "hand_interpolated": np.zeros((T, 2), bool),
           "hand_boxes": np.full((T, 2, 4), np.nan, np.float32),
           "hand_boxes_square": np.full((T, 2, 4), np.nan, np.float32),
           "hand_source": np.full((T, 2), "", object), "square_size": np.float32(np.nan),
           "hand_box_only": np.zeros((T, 2), bool)}
    for (t, s), box in (box_only or {}).items():
        out["hand_boxes"][t, s] = out["hand_boxes_square"][t, s] = box
        out["hand_score"][t, s] = 0.9
        out["hand_box_only"][t, s] = True
    return out


@pytest.fixture
def fake_hands(monkeypatch):
    """Replace the hand detector; record what 01_detect passes it."""
    calls = []

    def fake(frames, cfg=None, progress=None, hand_prompts=None):
        calls.append({"T": len(frames), "hand_prompts": hand_prompts})
        return no_hand_result(len(frames), {(f, i): b for i, (f, b) in enumerate(hand_prompts or [])})

    monkeypatch.setattr("hoi_cli.detect.hands.detect_hands", fake)
    return calls


# ---------------------------------------------------------------- frame folders and GIFs
def write_frame_folder(folder: Path, names: list[str], size=(64, 48)) -> list[np.ndarray]:
    """Frames whose red level encodes their order in natural name order (names given shuffled)."""
    from hoi_cli.clips import natural_key

    folder.mkdir(parents=True)
    frames = []
    for rank, name in enumerate(sorted(names, key=natural_key)):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[..., 0] = 20 + 20 * rank
        img[..., 1] = 100
        frames.append(img)
        cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
    return frames


def test_natural_order():
    from hoi_cli.clips import natural_key

    names = ["10.jpg", "2.jpg", "1.jpg", "frame_20.png", "frame_3.png"]
    assert sorted(names, key=natural_key) == ["1.jpg", "2.jpg", "10.jpg", "frame_3.png", "frame_20.png"]


def test_frame_folder_is_a_clip_in_natural_order_with_fps(tmp_path):
    from hoi_cli.stages.frames import load_frames, load_meta

    clip = tmp_path / "clip7"
    write_frame_folder(clip, ["10.jpg", "2.jpg", "1.jpg", "3.jpg", "11.jpg"])
    result = preprocess(clip, "--out", tmp_path / "runs", "--until", "frames", "--fps", "6")
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["clips"][0]["run"])
    assert run.name == "clip7"
    meta = load_meta(run)
    assert meta["source"]["kind"] == "frames" and meta["source"]["fps_given"] is True
    assert meta["source"]["frame_files"] == ["1.jpg", "2.jpg", "3.jpg", "10.jpg", "11.jpg"]
    assert meta["fps"] == 6 and meta["timestamps"] == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6, 4 / 6], abs=1e-5)
    red = load_frames(run)[..., 0].mean(axis=(1, 2))
    np.testing.assert_allclose(red, [20, 40, 60, 80, 100], atol=3)  # 10.jpg is the 4th frame, not the 2nd
    # the default rate is the one the help states, and the fingerprint covers the images
    again = preprocess(clip, "--out", tmp_path / "runs2", "--until", "frames")
    assert load_meta(tmp_path / "runs2" / "clip7")["fps"] == 12 and again.exit_code == 0
    img = cv2.imread(str(clip / "3.jpg"))
    cv2.imwrite(str(clip / "3.jpg"), 255 - img)
    status = json.loads(invoke("status", tmp_path / "runs2", "--format", "json").stdout)
    assert status["runs"][str(tmp_path / "runs2" / "clip7")]["00_frames"] == {
        "status": "stale", "reason": "source clip changed"}


def test_frame_folder_with_mixed_sizes_is_a_one_line_error(tmp_path):
    clip = tmp_path / "mixed"
    write_frame_folder(clip, ["1.png", "2.png"])
    cv2.imwrite(str(clip / "3.png"), np.zeros((10, 10, 3), np.uint8))
    result = preprocess(clip, "--out", tmp_path / "runs", "--until", "frames")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "frame 3.png is 10x10" in result.output and "hint:" in result.output


def test_gif_decodes_with_its_frame_timing(tmp_path):
    from PIL import Image

    from hoi_cli.stages.frames import load_frames, load_meta

    frames = synthetic_frames(6, 64, 48)
    Image.fromarray(frames[0]).save(tmp_path / "anim.gif", save_all=True, duration=100, loop=0,
                                    append_images=[Image.fromarray(f) for f in frames[1:]])
    result = preprocess(tmp_path / "anim.gif", "--out", tmp_path / "runs", "--until", "frames")
    assert result.exit_code == 0, result.output
    meta = load_meta(tmp_path / "runs" / "anim")
    assert meta["source"]["kind"] == "gif" and meta["n_frames"] == 6
    assert meta["fps"] == pytest.approx(10.0) and meta["timestamps"][:3] == pytest.approx([0, 0.1, 0.2])
    back = load_frames(tmp_path / "runs" / "anim").astype(float)
    assert np.abs(back - frames).mean() < 12  # GIF palette quantisation only


def test_expand_clips_finds_frame_folders_videos_and_gifs(tmp_path):
    from hoi_cli.pipeline import expand_clips, run_ids

    data = tmp_path / "data"
    for name in ("3201", "22983", "2"):  # like ../shared/data/something_else/<id>/0001.jpg
        write_frame_folder(data / "something_else" / name, ["0001.jpg", "0002.jpg"])
    (data / "something_else" / "annotations.json").write_text("{}")
    (data / "videos").mkdir()
    make_clip(data / "videos" / "a.mp4", 3, 32, 32)
    (data / "videos" / "thumbnail.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1])
    (data / "videos" / "b.gif").write_bytes((data / "videos" / "a.mp4").read_bytes())
    clips = expand_clips([str(data / "something_else")])
    assert [c.name for c in clips] == ["2", "22983", "3201"]
    assert run_ids(clips) == ["2", "22983", "3201"]
    everything = expand_clips([str(data)])
    assert [c.name for c in everything] == ["2", "22983", "3201", "a.mp4", "b.gif"]  # the thumbnail is no clip
    assert expand_clips([str(data / "something_else" / "2")]) == [data / "something_else" / "2"]
    assert run_ids([Path("x/c1/frames"), Path("x/c2/frames")]) == ["c1_frames", "c2_frames"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no clips under"):
        expand_clips([str(tmp_path / "empty")])


# ---------------------------------------------------------------- prompts
def test_prompt_text_forms():
    from hoi_cli.prompts import detect_prompt_params, parse_hand_boxes

    p = detect_prompt_params(object_box="10,20,110,220@5", hand_boxes=["1,2,30,40@3", "50,60,90,99"], hand_frame=7)
    assert p == {"object_box": [10, 20, 110, 220], "object_frame": 5,
                 "hand_boxes": [[1, 2, 30, 40, 3], [50, 60, 90, 99, 7]]}
    assert detect_prompt_params(object_point="4,5", object_frame=2) == {"object_point": [4, 5], "object_frame": 2}
    assert detect_prompt_params() == {}
    assert parse_hand_boxes("1,2,30,40@3;50,60,90,99") == [((1, 2, 30, 40), 3), ((50, 60, 90, 99), None)]
    assert parse_hand_boxes([[1, 2, 30, 40, None]]) == [((1, 2, 30, 40), None)]
    for bad in (dict(hand_boxes=["1,2,3,4"] * 3), dict(hand_boxes=["30,2,10,40"]), dict(object_box="1,2,3"),
                dict(object_box="1,2,3,4@x"), dict(object_box="1,2,3,4", object_point="1,2"),
                dict(hand_boxes=["a,b,c,d"])):
        with pytest.raises(BadInputError):
            detect_prompt_params(**bad)


def test_source_to_working_mapping():
    from hoi_cli.prompts import PromptFrame

    meta = {"width": 160, "height": 90, "n_frames": 4, "source_frame_indices": [2, 4, 6, 8],
            "source": {"width": 1920, "height": 1080}}
    m = PromptFrame.from_meta(meta)
    np.testing.assert_allclose(m.box([960, 540, 1920, 1080]), [80, 45, 160, 90])
    np.testing.assert_allclose(m.point([192, 108]), [16, 9])
    assert m.frame(6) == (2, None) and m.frame(None) == (0, None)
    assert m.frame(7)[0] in (2, 3) and "not kept" in m.frame(7)[1]
    with pytest.raises(BadInputError, match="outside the processed source frames"):
        m.frame(40)
    with pytest.raises(BadInputError, match="outside the 1920x1080 source frame"):
        m.box([2000, 10, 2100, 50])


def test_prompts_are_converted_to_working_pixels_and_recorded(tmp_path, fake_hands):
    from hoi_cli.stages.detect import load_detections

    make_clip(tmp_path / "big.mp4", 12, 320, 192)  # working size 160x96: half the source
    result = preprocess(tmp_path / "big.mp4", "--out", tmp_path / "runs", "--until", "detect", "--max-side", 160,
                        "--start", 2, "--stride", 2, "--hand-box", "40,60,120,140@6", "--hand-box", "200,20,260,100",
                        "--hand-frame", 4, "--object-box", "40,60,100,120@8")
    assert result.exit_code == 0, result.output
    # source frames 2,4,6,8,10 are kept: source frame 6 is working frame 2, 4 is 1, 8 is 3
    assert fake_hands[-1]["hand_prompts"] == [(2, (20.0, 30.0, 60.0, 70.0)), (1, (100.0, 10.0, 130.0, 50.0))]
    run = tmp_path / "runs" / "big"
    manifest = json.loads((run / "01_detect" / "manifest.json").read_text())
    assert manifest["params"]["hand_boxes"] == [[40, 60, 120, 140, 6], [200, 20, 260, 100, 4]]
    assert manifest["params"]["object_box"] == [40, 60, 100, 120] and manifest["params"]["object_frame"] == 8
    assert manifest["summary"]["prompts_working"]["object"] == {"box": [20, 30, 50, 60], "point": None, "frame": 3}
    det = load_detections(run)
    np.testing.assert_allclose(det["object_boxes"][3], [20, 30, 50, 60], atol=0.5)  # the prompt frame keeps it
    assert det["hand_box_only"][2, 0] and det["hand_box_only"][1, 1] and det["hand_box_only"].sum() == 2
    # a prompt drawn outside the source frame is a one-line error, exit 3
    bad = preprocess(tmp_path / "big.mp4", "--out", tmp_path / "runs", "--until", "detect", "--max-side", 160,
                     "--hand-box", "400,10,500,90")
    assert bad.exit_code == ExitCode.BAD_INPUT and "outside the 320x192 source frame" in bad.output


def test_no_prompt_passes_no_hand_prompts_argument(tmp_path, fake_hands):
    make_clip(tmp_path / "c.mp4", 4, 64, 48)
    assert preprocess(tmp_path / "c.mp4", "--out", tmp_path / "runs", "--until", "detect").exit_code == 0
    assert fake_hands[-1]["hand_prompts"] is None


def test_prompts_csv_per_clip(tmp_path, fake_hands):
    (tmp_path / "clips").mkdir()
    for name in ("alpha", "beta"):
        make_clip(tmp_path / "clips" / f"{name}.mp4", 4, 64, 48)
    csv = tmp_path / "prompts.csv"
    csv.write_text('clip,object_box,object_point,object_frame,hand_boxes,hand_frame\n'
                   'beta.mp4,"10,10,30,30",,1,"2,2,20,20@0;30,5,60,40",2\n')
    result = preprocess(tmp_path / "clips", "--out", tmp_path / "runs", "--until", "detect", "--prompts", csv)
    assert result.exit_code == 0, result.output
    params = {n: json.loads((tmp_path / "runs" / n / "01_detect" / "manifest.json").read_text())["params"]
              for n in ("alpha", "beta")}
    assert params["alpha"]["hand_boxes"] == [] and params["alpha"]["object_box"] is None
    assert params["beta"]["hand_boxes"] == [[2, 2, 20, 20, 0], [30, 5, 60, 40, 2]]
    assert params["beta"]["object_box"] == [10, 10, 30, 30] and params["beta"]["object_frame"] == 1
    # an unknown clip, an unknown column, and mixing with flags: one-line errors
    csv.write_text("clip,object_box\ngamma,\"1,1,5,5\"\n")
    bad = preprocess(tmp_path / "clips", "--out", tmp_path / "runs", "--prompts", csv)
    assert bad.exit_code == ExitCode.BAD_INPUT and "line 2: clip 'gamma' is not among the clips given" in bad.output
    csv.write_text("clip,box\nalpha,\"1,1,5,5\"\n")
    bad = preprocess(tmp_path / "clips", "--out", tmp_path / "runs", "--prompts", csv)
    assert bad.exit_code == ExitCode.BAD_INPUT and "unknown column(s) box" in bad.output
    bad = preprocess(tmp_path / "clips", "--out", tmp_path / "runs", "--prompts", csv, "--hand-box", "1,1,5,5")
    assert bad.exit_code == ExitCode.BAD_INPUT and "cannot be combined" in bad.output


# ---------------------------------------------------------------- no abort without hands
def test_handless_clip_goes_through_every_stage_with_a_warning(tmp_path, fake_hands):
    from hoi_cli.stages.hands import load_mano
    from hoi_cli.stages.layout import load_layout
    from hoi_cli.stages.mlo import load_mlo
    from hoi_cli.stages.silhouette import load_silhouette

    make_clip(tmp_path / "box.mp4", 5, 96, 64)
    runs = tmp_path / "runs"
    result = preprocess(tmp_path / "box.mp4", "--out", runs, "--object-box", "10,30,40,60")
    assert result.exit_code == 0, result.output
    clip = json.loads(result.stdout)["clips"][0]
    assert [s for s, v in clip["stages"].items() if v["action"] == "ran"] == [
        "00_frames", "01_detect", "02_hands", "03_segment", "04_mlo", "05_silhouette", "06_layout", "07_genhoi"]
    assert clip["warnings"][0] == ("01_detect: hands found in 0 of 5 frames; hand outputs are marked invalid "
                                   "(prompt a hand with --hand-box)")
    assert clip["warnings"][1].startswith("02_hands: no hand to fit")
    run = runs / "box"
    mano = load_mano(run)
    assert not mano["valid"].any() and list(mano["slot_status"]) == ["no hand detected"] * 2
    assert load_layout(run)["layout"][:, :2].max() == 0 and load_layout(run)["layout"][:, 2].max() == 255
    labels = load_silhouette(run)["labels"]
    assert not np.isin(labels, (1, 2)).any() and (labels == 3).any()  # the prompted object, no hand
    assert load_mlo(run, keys=("depth",))["depth"][:, 1:].max() == 0  # hand layers empty
    # text mode prints the warning; status shows it; --strict makes it exit 3 (cached run: no rerun)
    text = invoke("preprocess", tmp_path / "box.mp4", "--out", runs, "--object-box", "10,30,40,60", "-q")
    assert text.exit_code == 0 and "warning: box 01_detect: hands found in 0 of 5 frames" in text.stdout
    status = invoke("status", runs)
    assert "box 01_detect: warning: hands found in 0 of 5 frames" in status.stdout
    assert json.loads(invoke("status", runs, "--format", "json").stdout)["runs"][str(run)]["01_detect"][
        "warnings"][0].startswith("hands found in 0 of 5 frames")
    strict = preprocess(tmp_path / "box.mp4", "--out", runs, "--object-box", "10,30,40,60", "--strict")
    assert strict.exit_code == ExitCode.BAD_INPUT
    record = json.loads(strict.stdout)["clips"][0]
    assert record["error"].startswith("01_detect: hands found in 0 of 5 frames") and "--hand-box" in record["hint"]
    # generate still runs with the prompted object
    gen = invoke("generate", run, "--reference-from-frame", 2, "--out", tmp_path / "gen.mp4", "--format", "json")
    assert gen.exit_code == 0, gen.output
    from hoi_cli.video import read_video

    assert read_video(tmp_path / "gen.mp4")[0].shape == (5, 64, 96, 3)


def test_box_only_hand_is_not_fitted_and_says_why(tmp_path, fake_hands):
    from hoi_cli.stages.hands import load_mano

    make_clip(tmp_path / "c.mp4", 4, 64, 48)
    result = preprocess(tmp_path / "c.mp4", "--out", tmp_path / "runs", "--until", "hands",
                        "--hand-box", "10,10,30,30@1")
    assert result.exit_code == 0, result.output
    mano = load_mano(tmp_path / "runs" / "c")
    assert list(mano["slot_status"]) == ["box only: no keypoints to fit", "no hand detected"]
    summary = json.loads(result.stdout)["clips"][0]["stages"]["01_detect"]["summary"]
    assert summary["hand_boxes_box_only"] == 1 and summary["hand_boxes_with_keypoints"] == 0
    assert summary["warnings"] == ["hands found in 1 of 4 frames"]


def test_old_detections_without_box_only_flag_still_load(tmp_path):
    from hoi_cli.stages.detect import load_detections

    (tmp_path / "01_detect").mkdir()
    np.savez(tmp_path / "01_detect" / "detections.npz", hand_score=np.ones((3, 2), np.float32))
    det = load_detections(tmp_path)
    assert det["hand_box_only"].shape == (3, 2) and not det["hand_box_only"].any()


def test_preview_draws_box_only_hands_and_says_when_none_is_found():
    from hoi_cli.detect.draw import SLOT_COLOURS, draw_frame

    det = no_hand_result(2, {(0, 0): [10, 10, 30, 30]})
    det["object_boxes"] = np.full((2, 4), np.nan, np.float32)
    frame = np.zeros((48, 64, 3), np.uint8)
    boxed = draw_frame(frame, det, 0)
    edge = boxed[12:28, 10].astype(float)  # the box's left edge (anti-aliased): the left hand's colour, dimmed
    colour = np.array(SLOT_COLOURS[0], float)
    np.testing.assert_allclose(edge / edge.max(axis=1, keepdims=True), np.tile(colour / colour.max(), (16, 1)),
                               atol=0.03)
    assert not boxed[16:, 34:].any()  # nothing right of the box (its label runs along the top)
    empty = draw_frame(frame, det, 1)
    assert (empty[:16] > 0).any() and not (empty[20:] > 0).any()  # only the "no hand found" note, top left


def test_fps_applies_to_frame_folders_only(tmp_path):
    make_clip(tmp_path / "v.mp4", 3, 32, 32, fps=12)
    result = preprocess(tmp_path / "v.mp4", "--out", tmp_path / "runs", "--until", "frames", "--fps", 5)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "runs" / "v" / "00_frames" / "manifest.json").read_text())
    assert manifest["params"]["fps"] == 0 and manifest["summary"]["fps"] == pytest.approx(12)
