"""`hoi eval` end to end: outputs, skipped metrics, --strict, pairs CSV, and the real AnchorCrafter pair."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hoi_cli.commands.eval import eval_command
from hoi_cli.errors import ExitCode


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    a.command("eval")(eval_command)

    @a.command("noop")
    def _noop():  # a second command keeps "eval" as a subcommand
        pass

    return a


def _stdout(result) -> str:
    try:
        return result.stdout
    except ValueError:  # pragma: no cover
        return result.output


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two small synthetic clips (a textured background with a moving square) and masks."""
    import cv2

    from hoi_cli.video import write_video

    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(0, 256, size=(64, 96, 3)).astype(np.uint8), (7, 7), 2)
    frames, masks = [], []
    for t in range(6):
        f = bg.copy()
        m = np.zeros((64, 96), bool)
        m[20:40, 10 + 4 * t:30 + 4 * t] = True
        f[m] = (200, 40, 40)
        frames.append(f)
        masks.append(np.repeat(m[..., None] * 255, 3, axis=-1).astype(np.uint8))
    frames = np.stack(frames)
    write_video(d / "a.mp4", frames, 12)
    write_video(d / "b.mp4", np.clip(frames.astype(int) + 25, 0, 255).astype(np.uint8), 12)
    write_video(d / "mask.mp4", np.stack(masks), 12)
    return d


def test_identical_pair_is_perfect_and_outputs_written(app, clips, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--generated", str(clips / "a.mp4"), "--reference", str(clips / "a.mp4"),
                                 "--generated-mask", str(clips / "mask.mp4"), "--reference-mask", str(clips / "mask.mp4"),
                                 "--metrics", "psnr,ssim,objects,motion_smoothness", "--no-hoi-crop",
                                 "--format", "json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(_stdout(r))
    m = doc["metrics"]
    assert m["psnr"]["value"] == "inf"
    assert m["ssim"]["value"] == pytest.approx(1.0)
    assert m["object_mask_iou"]["value"] == pytest.approx(1.0)
    assert m["object_appearance_colour"]["value"] == pytest.approx(1.0)
    assert m["motion_smoothness_flow"]["value"] > 0.9
    assert m["motion_smoothness"]["status"] == "skipped" and m["motion_smoothness"]["needs"] == "amt-s_torchscript.pt"
    assert json.loads((out / "metrics.json").read_text())["n_clips"] == 1
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert rows[0]["psnr"] == "inf" and float(rows[0]["ssim"]) == pytest.approx(1.0)


def test_missing_weights_are_skipped_not_dropped_and_strict_fails(app, clips, tmp_path, monkeypatch):
    monkeypatch.setenv("HOI_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    args = ["eval", "-g", str(clips / "b.mp4"), "-r", str(clips / "a.mp4"), "--metrics", "psnr,lpips,fid,fvd,subject_consistency",
            "--no-hoi-crop", "--format", "json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    m = json.loads(_stdout(r))["metrics"]
    assert 5 < m["psnr"]["value"] < 40
    for name, file in (("lpips", "alexnet-owt-7be5be79.pth"), ("fid", "pt_inception-2015-12-05-6726825d.pth"),
                       ("fvd", "i3d_torchscript.pt"), ("subject_consistency", "dino_vitbase16_pretrain.pth")):
        assert m[name]["status"] == "skipped" and m[name]["needs"] == file and m[name]["value"] is None
    r = CliRunner().invoke(app, args + ["--strict"])
    assert r.exit_code == int(ExitCode.MISSING_WEIGHTS)
    assert "pt_inception" in r.output or "alexnet" in r.output


def test_pairs_csv_with_fid_and_fvd_from_weights_dir(app, clips, tmp_path):
    import torch

    from hoi_cli.metrics import fid, fvd

    wd = tmp_path / "weights"
    wd.mkdir()
    torch.manual_seed(0)
    torch.save(fid.build_fid_inception().state_dict(), wd / fid.FID_WEIGHTS_FILE)

    class TinyI3D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 400)

        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
            return self.fc(x.mean(dim=(2, 3, 4)))

    torch.jit.save(torch.jit.script(TinyI3D()), str(wd / fvd.I3D_FILE))
    (tmp_path / "pairs.csv").write_text(f"name,generated,reference\none,{clips / 'b.mp4'},{clips / 'a.mp4'}\n"
                                        f"two,{clips / 'a.mp4'},{clips / 'b.mp4'}\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--pairs", str(tmp_path / "pairs.csv"), "--metrics", "psnr,fid,fvd",
                                 "--no-hoi-crop", "--weights-dir", str(wd), "--max-frames", "2", "--fvd-frames", "2",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["n_clips"] == 2 and [c["name"] for c in doc["clips"]] == ["one", "two"]
    # pytorch-fid's formula can land a rounding error below zero on near-identical sets (-1.3e-29 seen)
    assert doc["metrics"]["fid"]["status"] == "ok" and doc["metrics"]["fid"]["value"] > -1e-6
    assert doc["metrics"]["fid"]["convention"]["resize"] == "pytorch-fid"
    assert doc["metrics"]["fid"]["convention"]["n_frames_generated"] == 4  # pooled over both clips
    assert doc["metrics"]["fvd"]["status"] == "ok"
    assert doc["metrics"]["fvd"]["convention"]["frames_used"] == [2]
    assert "fid" in _stdout(r)  # the table


def test_bad_usage_exit_codes(app, clips):
    r = CliRunner().invoke(app, ["eval", "--generated", str(clips / "a.mp4")])
    assert r.exit_code == int(ExitCode.USAGE)
    r = CliRunner().invoke(app, ["eval", "-g", str(clips / "nope.mp4"), "-r", str(clips / "a.mp4")])
    assert r.exit_code == int(ExitCode.BAD_INPUT)
    r = CliRunner().invoke(app, ["eval", "-g", str(clips / "a.mp4"), "-r", str(clips / "a.mp4"), "--metrics", "psnr,bogus"])
    assert r.exit_code == int(ExitCode.BAD_INPUT)


def test_importing_eval_command_is_cheap():
    code = ("import sys; import hoi_cli.commands.eval, hoi_cli.metrics.evaluate; "
            "bad = [m for m in ('torch', 'cv2', 'mediapipe', 'scipy') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_anchorcrafter_pair(shared_data):
    from hoi_cli.metrics.evaluate import ClipPair, EvalOptions, evaluate

    d = shared_data / "anchorcrafter" / "eval_example"
    if not (d / "gt.mp4").exists():
        pytest.skip(f"{d} is absent")
    pair = ClipPair(d / "generated.mp4", d / "gt.mp4", generated_mask=d / "generated_object_mask.mp4",
                    reference_mask=d / "gt_object_mask.mp4")
    doc = evaluate([pair], EvalOptions(metrics=("psnr", "ssim", "objects"), hoi_crop=True))
    m = doc["metrics"]
    assert m["psnr"]["value"] == pytest.approx(9.72, abs=0.1)  # "about 9.7 dB by design"
    assert 0.3 < m["ssim"]["value"] < 0.7
    assert m["psnr_hoi"]["value"] > m["psnr"]["value"]  # hands and object line up, faces do not
    assert m["object_mask_iou"]["value"] > 0.9


@pytest.mark.realdata
def test_real_pair_hand_metrics_few_frames(shared_data):
    from hoi_cli.metrics.evaluate import ClipPair, EvalOptions, evaluate

    d = shared_data / "anchorcrafter" / "eval_example"
    if not (d / "gt.mp4").exists():
        pytest.skip(f"{d} is absent")
    doc = evaluate([ClipPair(d / "generated.mp4", d / "gt.mp4")],
                   EvalOptions(metrics=("hands",), max_frames=3))
    m = doc["metrics"]
    assert m["hand_agreement"]["value"] > 0.4
    assert m["hand_miss_rate"]["value"] < 0.5
    assert "MediaPipe" in doc["hand_detector"] or "mediapipe" in doc["hand_detector"]
