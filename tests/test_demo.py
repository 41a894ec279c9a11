"""The quick start's main job, end to end on the bundled sample clip: every stage for real."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from hoi_cli.cli import app
from hoi_cli.pipeline import run_status
from hoi_cli.stages.frames import load_frames
from hoi_cli.stages.segment import load_masks
from hoi_cli.video import read_video


def test_demo_runs_every_stage_and_replaces_the_object(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    run = tmp_path / "hands_box"
    assert set(out["stages"]) == {"00_frames", "01_detect", "02_hands", "03_segment", "04_mlo", "05_silhouette",
                                  "06_layout", "07_genhoi"}
    assert all(s["status"] == "ok" for s in run_status(run).values())

    frames = load_frames(run)
    masks = load_masks(run)
    video, fps = read_video(out["video"])
    assert video.shape == frames.shape and fps == 12
    # the striped box is found in (nearly) every frame and the new object replaces it
    assert masks["object"].reshape(len(frames), -1).any(axis=1).mean() > 0.9
    diff = np.abs(video.astype(np.int16) - frames).mean(axis=-1)
    grow = np.ones((15, 15), np.uint8)
    near = np.stack([cv2.dilate((o | h).astype(np.uint8), grow) > 0 for o, h in zip(masks["object"], masks["hand"])])
    assert diff[masks["object"] & ~masks["hand"]].mean() > 20  # the object region changed
    assert diff[~near].mean() < 4  # far from the object and hands, only codec noise
    sidecar = json.loads(open(out["sidecar"]).read())
    assert sidecar["run"]["stages"]["01_detect"]["output_digest"]
    assert (run / "show" / "show.png").exists()

    # generation reused 07_genhoi's removal, and it is exactly what removing afresh gives
    from hoi_cli.inpaint import remove_object
    from hoi_cli.stages.genhoi import load_object_removed

    background, removed, dilate_px = load_object_removed(run, frames)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1,) * 2)
    expected_mask = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks["object"]])
    assert np.array_equal(removed, expected_mask)
    fresh = remove_object(frames, expected_mask & ~masks["hand"], keep_masks=masks["hand"])
    assert np.array_equal(background, fresh)
