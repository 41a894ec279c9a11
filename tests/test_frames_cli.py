"""00_frames and the CLI: decoding, working resolution, caching, bad input, exit codes, JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_clip, synthetic_frames
from hoi_cli.cli import app
from hoi_cli.errors import ExitCode
from hoi_cli.stages.frames import load_frames, load_meta
from hoi_cli.video import read_video, working_size

runner = CliRunner()


def preprocess(*args):
    return runner.invoke(app, ["preprocess", *map(str, args), "--until", "frames", "--format", "json", "-q"])


def test_working_size_keeps_aspect_and_never_upscales():
    assert working_size(1080, 1920, 512) == (288, 512)
    assert working_size(427, 240, 512) == (427, 240)
    assert working_size(427, 240, 512, upscale=True) == (512, 288)
    assert working_size(640, 480, 0) == (640, 480)


def test_video_round_trip_is_close(tmp_path):
    frames = synthetic_frames(8, 64, 48)
    make_clip(tmp_path / "c.mp4", 8, 64, 48, fps=10)
    back, fps = read_video(tmp_path / "c.mp4")
    assert back.shape == frames.shape and fps == pytest.approx(10)
    mse = ((back.astype(float) - frames) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 24  # yuv420 chroma subsampling blurs the sharp edges
    flat = np.zeros((3, 32, 32, 3), np.uint8)
    flat[...] = (200, 60, 30)
    make = __import__("hoi_cli.video", fromlist=["write_video"]).write_video
    make(tmp_path / "flat.mp4", flat, 10, crf=0)
    back, _ = read_video(tmp_path / "flat.mp4")
    assert np.abs(back.astype(int) - flat).max() <= 3  # colour conversion is right (no matrix swap)


def test_frames_stage_outputs_and_meta(tmp_path, synthetic_clip):
    result = preprocess(synthetic_clip, "--out", tmp_path / "runs", "--max-side", 80)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = Path(summary["clips"][0]["run"])
    meta = load_meta(run)
    assert (meta["width"], meta["height"], meta["n_frames"]) == (80, 48, 12)
    assert meta["fps"] == pytest.approx(12.0)
    assert meta["timestamps"][:3] == pytest.approx([0, 1 / 12, 2 / 12], abs=1e-3)
    frames = load_frames(run)
    assert frames.shape == (12, 48, 80, 3) and frames.dtype == np.uint8
    # the square (red) moves right: its centroid x grows frame to frame
    xs = [np.nonzero((f[..., 0] > 180) & (f[..., 1] < 120))[1].mean() for f in frames]
    assert np.all(np.diff(xs) > 0)


def test_stride_and_range(tmp_path, synthetic_clip):
    result = preprocess(synthetic_clip, "--out", tmp_path / "runs", "--start", 2, "--end", 10, "--stride", 3)
    assert result.exit_code == 0, result.output
    meta = load_meta(tmp_path / "runs" / "synthetic")
    assert meta["source_frame_indices"] == [2, 5, 8]
    assert meta["fps"] == pytest.approx(4.0)


def test_second_run_is_cached_and_force_reruns(tmp_path, synthetic_clip):
    out = tmp_path / "runs"
    assert json.loads(preprocess(synthetic_clip, "--out", out).stdout)["clips"][0]["stages"]["00_frames"]["action"] == "ran"
    again = json.loads(preprocess(synthetic_clip, "--out", out).stdout)
    assert again["clips"][0]["stages"]["00_frames"]["action"] == "cached"
    forced = json.loads(preprocess(synthetic_clip, "--out", out, "--force", "frames").stdout)
    assert forced["clips"][0]["stages"]["00_frames"]["action"] == "ran"
    changed = json.loads(preprocess(synthetic_clip, "--out", out, "--max-side", 64).stdout)
    assert changed["clips"][0]["stages"]["00_frames"]["action"] == "ran"


def test_status_reports_stale_with_reason(tmp_path, synthetic_clip):
    out = tmp_path / "runs"
    preprocess(synthetic_clip, "--out", out)
    make_clip(synthetic_clip, n=10)  # the source changes
    result = runner.invoke(app, ["status", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)["runs"][str(out / "synthetic")]["00_frames"]
    assert state == {"status": "stale", "reason": "source clip changed"}


@pytest.mark.parametrize("content, expected", [
    (None, "clip not found"),
    (b"", "empty"),
    (b"this is not a video at all" * 50, "not a readable video"),
], ids=["missing", "empty", "not-a-video"])
def test_bad_input_is_one_line_with_hint_and_exit_code(tmp_path, content, expected):
    clip = tmp_path / "bad.mp4"
    if content is not None:
        clip.write_bytes(content)
    result = preprocess(clip, "--out", tmp_path / "runs")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert expected in json.loads(result.stdout)["clips"][0]["error"]
    assert "hint:" in result.stderr and "Traceback" not in result.output


def test_truncated_video_fails_cleanly(tmp_path):
    clip = make_clip(tmp_path / "full.mp4", n=40, width=320, height=240)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    result = preprocess(cut, "--out", tmp_path / "runs")
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert not (tmp_path / "runs" / "cut" / "00_frames").exists()


def test_keep_going_finishes_other_clips(tmp_path, synthetic_clip):
    missing = tmp_path / "missing.mp4"
    result = runner.invoke(app, ["preprocess", str(missing), str(synthetic_clip), "--out", str(tmp_path / "runs"),
                                 "--until", "frames", "--format", "json", "-q", "--keep-going"])
    summary = json.loads(result.stdout)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert [c["ok"] for c in summary["clips"]] == [False, True]
    # without --keep-going the batch stops at the first failure (clips run in sorted path order)
    result = runner.invoke(app, ["preprocess", str(missing), str(synthetic_clip), "--out", str(tmp_path / "r2"),
                                 "--until", "frames", "--format", "json", "-q"])
    assert json.loads(result.stdout)["n_skipped"] == 1


def test_unwritable_output(tmp_path, synthetic_clip):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = preprocess(synthetic_clip, "--out", locked / "runs")
        assert result.exit_code == ExitCode.OUTPUT
    finally:
        locked.chmod(0o700)


def test_unwritable_output_file_in_the_way(tmp_path, synthetic_clip):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder should be")
    result = preprocess(synthetic_clip, "--out", blocker)
    assert result.exit_code == ExitCode.OUTPUT, result.output
    assert "hint" in json.loads(result.stdout)["clips"][0]


def test_sharding_is_deterministic_and_complete(tmp_path):
    clips = [make_clip(tmp_path / f"c{i}.mp4", n=3, width=32, height=32) for i in range(5)]
    seen = []
    for index in range(2):
        result = runner.invoke(app, ["preprocess", *map(str, reversed(clips)), "--out", str(tmp_path / "runs"),
                                     "--until", "frames", "--format", "json", "-q",
                                     "--shard-index", str(index), "--num-shards", "2"])
        seen.append([Path(c["clip"]).name for c in json.loads(result.stdout)["clips"]])
    assert seen == [["c0.mp4", "c2.mp4", "c4.mp4"], ["c1.mp4", "c3.mp4"]]


def test_shard_defaults_from_slurm(monkeypatch):
    from hoi_cli.pipeline import shard_from_env

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert shard_from_env() == (2, 4)


def test_run_ids_disambiguate_generic_names():
    from hoi_cli.pipeline import run_ids

    assert run_ids([Path("a/243/video.webm"), Path("a/35671/video.webm"), Path("x/clip7.mp4")]) == \
        ["243_video", "35671_video", "clip7"]


def test_sigkill_during_frames_then_rerun_matches_clean_run(tmp_path):
    clip = make_clip(tmp_path / "long.mp4", n=100, width=320, height=240)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "hoi_cli", "preprocess", str(clip), "--out", str(out),
                             "--until", "frames", "-q", "--set", "frames.png_compression=9"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        tmps = list((out / "long").glob(".tmp-00_frames-*/frames")) if (out / "long").exists() else []
        if tmps and len(list(tmps[0].glob("*.png"))) >= 5:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "long" / "00_frames" / "manifest.json").exists()
    for target in (out, tmp_path / "clean"):
        r = runner.invoke(app, ["preprocess", str(clip), "--out", str(target), "--until", "frames", "-q",
                                "--format", "json", "--set", "frames.png_compression=9"])
        assert r.exit_code == 0, r.output
    digest = [json.loads((d / "long" / "00_frames" / "manifest.json").read_text())["output_digest"]
              for d in (out, tmp_path / "clean")]
    assert digest[0] == digest[1]
    assert not list((out / "long").glob(".tmp-*"))


def test_env_json_parses():
    result = runner.invoke(app, ["env", "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["packages"]["numpy"].startswith("1.")
    assert "available" in info["offscreen_rendering"]
    assert "search_path" in info["weights"]
