"""`hoi eval` end to end: outputs, skipped metrics, --strict, pairs CSV, batches with failures, and the real
AnchorCrafter pair."""

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
from hoi_cli.metrics.registry import Metric, MetricGroup


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


# ----------------------------------------------------------------------------- batches with failures


def _psnr_by_hand(generated, reference) -> float:
    """Mean over frames of 10 log10(255^2 / MSE), from the decoded frames (not the metric code)."""
    from hoi_cli.video import read_frames_any

    g, r = (read_frames_any(p)[0].astype(np.float64) for p in (generated, reference))
    mse = ((g - r) ** 2).reshape(len(g), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0 ** 2 / mse)))


@pytest.fixture
def batch_csv(clips, tmp_path):
    """Four pairs: scored, missing file, scored, corrupt video."""
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("name,generated,reference\n"
                        f"first,{clips / 'b.mp4'},{clips / 'a.mp4'}\n"
                        f"gone,{tmp_path / 'missing.mp4'},{clips / 'a.mp4'}\n"
                        f"third,{clips / 'mask.mp4'},{clips / 'a.mp4'}\n"
                        f"broken,corrupt.mp4,{clips / 'a.mp4'}\n")  # relative: to the CSV's folder
    return csv_path


BATCH_ARGS = ["--metrics", "psnr,ssim", "--no-hoi-crop", "--format", "json"]


def test_pairs_batch_stops_at_the_first_failure_and_keeps_what_was_scored(app, clips, batch_csv, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--pairs", str(batch_csv), "--out", str(out), *BATCH_ARGS])
    assert r.exit_code == int(ExitCode.BAD_INPUT), r.output  # the missing file's code
    doc = json.loads(_stdout(r))
    assert doc == json.loads((out / "metrics.json").read_text())  # written before the exit
    assert (doc["ok"], doc["n_ok"], doc["n_failed"], doc["n_not_run"], doc["n_pairs"]) == (False, 1, 1, 2, 4)
    assert [(p["name"], p["ok"]) for p in doc["pairs"]] == [("first", True), ("gone", False)]
    assert doc["pairs"][1]["exit_code"] == 3 and "missing.mp4" in doc["pairs"][1]["error"]
    assert doc["n_clips"] == 1 and doc["clips"][0]["name"] == "first"
    first = _psnr_by_hand(clips / "b.mp4", clips / "a.mp4")
    assert doc["clips"][0]["metrics"]["psnr"] == pytest.approx(first, abs=1e-9)
    assert doc["metrics"]["psnr"]["value"] == pytest.approx(first, abs=1e-9) and doc["metrics"]["psnr"]["n_clips"] == 1
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert [row["name"] for row in rows] == ["first"] and float(rows[0]["psnr"]) == pytest.approx(first, rel=1e-5)
    assert not list(out.glob(".*tmp"))  # no temp file left behind
    assert "error: gone: not found:" in r.stderr and "[3/4]" not in r.stderr


def test_pairs_batch_keep_going_scores_the_rest_and_means_only_them(app, clips, batch_csv, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--pairs", str(batch_csv), "--out", str(out), "--keep-going", *BATCH_ARGS])
    assert r.exit_code == int(ExitCode.BAD_INPUT), r.output  # both failures are exit 3: batch_exit_code gives 3
    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["ok"], doc["n_ok"], doc["n_failed"], doc["n_not_run"], doc["n_pairs"]) == (False, 2, 2, 0, 4)
    failed = {p["name"]: p for p in doc["pairs"] if not p["ok"]}
    assert set(failed) == {"gone", "broken"}
    for p in failed.values():
        assert p["exit_code"] == 3 and p["kind"] == "BadInputError" and p["hint"] and p["error"]
    assert "not found" in failed["gone"]["error"]
    assert all(p["seconds"] >= 0 for p in doc["pairs"]) and sum(p["seconds"] for p in doc["pairs"]) > 0
    assert failed["broken"]["error"].startswith("not a readable video:") and "corrupt.mp4" in failed["broken"]["error"]
    assert [c["name"] for c in doc["clips"]] == ["first", "third"]
    first = _psnr_by_hand(clips / "b.mp4", clips / "a.mp4")
    third = _psnr_by_hand(clips / "mask.mp4", clips / "a.mp4")
    assert abs(first - third) > 1  # distinct values, so the mean below says which pairs it is over
    assert [c["metrics"]["psnr"] for c in doc["clips"]] == pytest.approx([first, third], abs=1e-9)
    psnr, ssim = doc["metrics"]["psnr"], doc["metrics"]["ssim"]
    assert psnr["value"] == pytest.approx((first + third) / 2, abs=1e-9) and psnr["n_clips"] == 2
    assert ssim["value"] == pytest.approx(np.mean([c["metrics"]["ssim"] for c in doc["clips"]])) and ssim["n_clips"] == 2
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    assert list(rows[0]) == ["name", "generated", "reference", "n_frames", "psnr", "ssim"]  # the shape of before
    assert [row["name"] for row in rows] == ["first", "third"]
    # text: the table over the scored pairs, then one line per failed pair
    r = CliRunner().invoke(app, ["eval", "--pairs", str(batch_csv), "--keep-going", "--metrics", "psnr",
                                 "--no-hoi-crop"], terminal_width=200)
    assert r.exit_code == 3
    assert "hoi eval: 2 clip pair(s)" in _stdout(r) and "pairs: 2 of 4 scored, 2 failed, 0 not run" in _stdout(r)
    assert f"{(first + third) / 2:.4f} dB" in _stdout(r)
    assert "failed: gone: not found:" in _stdout(r) and "hint: check the path" in _stdout(r)


def test_pairs_batch_interrupted_writes_what_was_done_and_exits_130(app, clips, batch_csv, tmp_path, monkeypatch):
    import hoi_cli.metrics.evaluate as ev

    load_clip = ev.load_clip

    def ctrl_c_on_the_third(pair, run, hands):
        if pair.name == "third":
            raise KeyboardInterrupt
        return load_clip(pair, run, hands)

    monkeypatch.setattr(ev, "load_clip", ctrl_c_on_the_third)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--pairs", str(batch_csv), "--out", str(out), "--keep-going", *BATCH_ARGS])
    assert r.exit_code == int(ExitCode.INTERRUPTED), r.output
    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["n_ok"], doc["n_failed"], doc["n_not_run"]) == (1, 2, 1)
    assert doc["pairs"][-1]["name"] == "third" and doc["pairs"][-1]["exit_code"] == 130
    assert doc["pairs"][-1]["kind"] == "KeyboardInterrupt"
    assert doc["metrics"]["psnr"]["value"] == pytest.approx(_psnr_by_hand(clips / "b.mp4", clips / "a.mp4"), abs=1e-9)


def test_pairs_batch_stopped_by_sigterm_writes_what_was_done_and_exits_130(app, clips, batch_csv, tmp_path,
                                                                           monkeypatch):
    """SLURM's time limit sends SIGTERM: the batch ends like Ctrl-C, the pairs scored are kept."""
    import os
    import signal

    import hoi_cli.metrics.evaluate as ev

    load_clip = ev.load_clip

    def sigterm_on_the_third(pair, run, hands):
        if pair.name == "third":
            os.kill(os.getpid(), signal.SIGTERM)
        return load_clip(pair, run, hands)

    monkeypatch.setattr(ev, "load_clip", sigterm_on_the_third)
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    r = CliRunner().invoke(app, ["eval", "--pairs", str(batch_csv), "--out", str(out), "--keep-going", *BATCH_ARGS])
    assert r.exit_code == int(ExitCode.INTERRUPTED), r.output
    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["n_ok"], doc["n_failed"], doc["n_not_run"]) == (1, 2, 1)
    assert doc["pairs"][-1]["name"] == "third" and doc["pairs"][-1]["exit_code"] == 130
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back


class _PooledTest(MetricGroup):
    """Pools something per clip (like FID's features) and reports how many clips it pooled."""

    name = "pooled_test"
    metrics = (Metric("pooled_test", "", None, "clips pooled"),)
    pooled_lists = ("pooled",)  # undone for a pair that fails half-way

    def load(self) -> None:
        self.pooled: list[str] = []

    def compute(self, clip) -> None:
        self.pooled.append(clip.pair.name)

    def finish(self, report) -> None:
        report.entry(self.metrics[0], len(self.pooled), names=list(self.pooled))


class _FailsOnBoom(MetricGroup):
    """Raises an unexpected error (a bug) on the pair named "boom", after `_PooledTest` pooled it."""

    name = "boom_test"
    metrics = (Metric("boom_test", "", None, "1 per clip"),)

    def compute(self, clip) -> None:
        if clip.pair.name == "boom":
            raise RuntimeError("kaboom")
        clip.metrics["boom_test"] = 1.0


def _eval_pairs_with_groups(app, groups, rows, tmp_path, args):
    """`hoi eval --pairs --keep-going --format json` over ``rows`` (name, generated, reference) with the
    test metric ``groups`` registered for the call only."""
    from hoi_cli.metrics import registry

    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("name,generated,reference\n" + "".join(f"{n},{g},{r}\n" for n, g, r in rows))
    for group in groups:
        registry.register(group)
    try:
        return CliRunner().invoke(app, ["eval", "--pairs", str(csv_path), "--keep-going", *args, "--format", "json"])
    finally:
        for group in groups:
            registry.REGISTRY.remove(group)


def test_pairs_batch_bug_in_one_pair_is_recorded_and_undone(app, clips, tmp_path):

    rows = [("one", clips / "b.mp4", clips / "a.mp4"), ("boom", clips / "a.mp4", clips / "b.mp4"),
            ("gone", tmp_path / "missing.mp4", clips / "a.mp4"), ("two", clips / "a.mp4", clips / "a.mp4")]
    r = _eval_pairs_with_groups(app, (_PooledTest, _FailsOnBoom), rows, tmp_path,
                                ["--metrics", "pooled_test,boom_test"])
    assert r.exit_code == int(ExitCode.FAILED), r.output  # a bug (1) and a missing file (3): mixed codes give 1
    doc = json.loads(_stdout(r))
    boom = doc["pairs"][1]
    assert boom["ok"] is False and boom["exit_code"] == 1 and boom["kind"] == "RuntimeError"
    assert "kaboom" in boom["error"] and "RuntimeError" in boom["traceback"] and "bug" in boom["hint"]
    # the failed pair was pooled before the error: undone, so the pool holds the scored pairs only
    assert doc["metrics"]["pooled_test"]["value"] == 2 and doc["metrics"]["pooled_test"]["names"] == ["one", "two"]
    assert doc["metrics"]["boom_test"]["n_clips"] == 2


def test_one_pair_failing_is_as_before(app, clips, batch_csv, tmp_path):
    """A single pair without --keep-going is no batch: its failure is the command's error (error JSON, its code),
    nothing written."""
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "-g", str(batch_csv.parent / "corrupt.mp4"), "-r", str(clips / "a.mp4"),
                                 "--out", str(out), *BATCH_ARGS])
    assert r.exit_code == int(ExitCode.BAD_INPUT)
    doc = json.loads(_stdout(r))
    assert set(doc) == {"ok", "error", "hint", "exit_code", "kind"} and "not a readable video" in doc["error"]
    assert not (out / "metrics.json").exists()
    r = CliRunner().invoke(app, ["eval", "-g", str(clips / "b.mp4"), "-r", str(clips / "a.mp4"), *BATCH_ARGS])
    assert r.exit_code == 0
    assert not {"pairs", "n_ok", "n_failed"} & set(json.loads(_stdout(r)))  # no batch keys for one pair


class _CountsFrames(MetricGroup):
    """Pools a number, not a list (a frame count), so it declares its own checkpoint and rollback."""

    name = "frames_test"
    metrics = (Metric("frames_test", "", None, "frames pooled"),)

    def load(self) -> None:
        self.n_frames = 0
        self.asked: list[str] = []  # every pair it was asked to score, failed ones too: a log, not a pool

    def compute(self, clip) -> None:
        self.asked.append(clip.pair.name)
        self.n_frames += clip.shape[0]

    def checkpoint(self):
        return self.n_frames

    def rollback(self, state) -> None:
        self.n_frames = state

    def finish(self, report) -> None:
        report.entry(self.metrics[0], self.n_frames, asked=list(self.asked))


def test_pooled_groups_undo_a_failed_pair_through_their_own_hook(app, clips, tmp_path):
    """Only what a group declares pooled is undone: a non-list pool is rolled back, a list that is no pool is kept."""

    rows = [("one", clips / "b.mp4", clips / "a.mp4"), ("boom", clips / "a.mp4", clips / "b.mp4"),
            ("two", clips / "a.mp4", clips / "a.mp4")]
    r = _eval_pairs_with_groups(app, (_CountsFrames, _FailsOnBoom), rows, tmp_path,
                                ["--max-frames", "4", "--metrics", "frames_test,boom_test"])
    assert r.exit_code == int(ExitCode.FAILED), r.output
    entry = json.loads(_stdout(r))["metrics"]["frames_test"]
    assert entry["value"] == 8  # 4 frames of "one" and of "two"; "boom"'s 4 were pooled, then undone
    assert entry["asked"] == ["one", "boom", "two"]  # not a pool: left alone


def test_fid_and_fvd_declare_what_they_pool():
    """FID's and FVD's per-clip features (and FVD's frame counts) go back to a checkpoint."""
    from hoi_cli.metrics.evaluate import EvalOptions
    from hoi_cli.metrics.groups import FID, FVD
    from hoi_cli.metrics.registry import EvalRun

    run = EvalRun(EvalOptions(metrics=("fid", "fvd")), found={}, missing={})
    for group_class in (FID, FVD):
        group = group_class(run)
        group.load()  # no weights: the lists are made, no network
        group.generated_features.append(np.zeros((3, 4)))
        group.reference_features.append(np.ones((3, 4)))
        state = group.checkpoint()
        group.generated_features.append(np.zeros((2, 4)))
        group.reference_features.append(np.ones((2, 4)))
        if group_class is FVD:
            group.frames_used += [16, 16]
        group.rollback(state)
        assert [f.shape for f in group.generated_features] == [(3, 4)]
        assert [f.shape for f in group.reference_features] == [(3, 4)]
        if group_class is FVD:
            assert group.frames_used == []


def test_pairs_batch_with_no_pair_scored_still_lists_pairs_and_skipped_metrics(app, clips, tmp_path, monkeypatch):
    """All pairs failed: the summary still has every pair's failure and the metrics skipped for missing weights,
    as a batch with scored pairs has."""
    monkeypatch.setenv("HOI_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("name,generated,reference\n"
                        f"gone,{tmp_path / 'missing.mp4'},{clips / 'a.mp4'}\n"
                        f"broken,corrupt.mp4,{clips / 'a.mp4'}\n")
    out = tmp_path / "out"
    args = ["eval", "--pairs", str(csv_path), "--keep-going", "--metrics", "psnr,lpips,fid,motion_smoothness",
            "--no-hoi-crop"]
    r = CliRunner().invoke(app, [*args, "--out", str(out), "--format", "json"])
    assert r.exit_code == int(ExitCode.BAD_INPUT), r.output
    doc = json.loads(_stdout(r))
    assert doc == json.loads((out / "metrics.json").read_text())
    assert (doc["ok"], doc["n_ok"], doc["n_failed"], doc["n_not_run"], doc["n_pairs"], doc["n_clips"]) == \
        (False, 0, 2, 0, 2, 0)
    assert [(p["name"], p["ok"], p["exit_code"]) for p in doc["pairs"]] == [("gone", False, 3), ("broken", False, 3)]
    m = doc["metrics"]
    assert m["lpips"]["status"] == "skipped" and m["lpips"]["needs"] == "alexnet-owt-7be5be79.pth"
    assert m["fid"]["status"] == "skipped" and m["fid"]["needs"] == "pt_inception-2015-12-05-6726825d.pth"
    assert m["motion_smoothness"]["status"] == "skipped" and m["motion_smoothness"]["needs"] == "amt-s_torchscript.pt"
    assert m["fid"]["looked_in"] and m["fid"]["hint"]
    assert "psnr" not in m  # nothing to average: no value, as for a metric no scored pair had
    assert (out / "per_clip.csv").read_text().splitlines() == ["name,generated,reference,n_frames"]
    r = CliRunner().invoke(app, args, terminal_width=200)  # the table says the same
    assert r.exit_code == 3
    assert "pairs: 0 of 2 scored, 2 failed, 0 not run" in _stdout(r) and "failed: broken:" in _stdout(r)
    assert "needs pt_inception-2015-12-05-6726825d.pth" in _stdout(r)


def test_one_pair_with_keep_going_is_a_one_pair_batch(app, clips, batch_csv, tmp_path):
    """--keep-going on a single pair: its failure is recorded in the written summary and the exit code is the
    batch's, as for a one-row --pairs CSV."""
    out = tmp_path / "out"
    for generated, why in ((batch_csv.parent / "corrupt.mp4", "not a readable video"),
                           (tmp_path / "missing.mp4", "not found")):
        r = CliRunner().invoke(app, ["eval", "-g", str(generated), "-r", str(clips / "a.mp4"), "--out", str(out),
                                     "--keep-going", *BATCH_ARGS])
        assert r.exit_code == int(ExitCode.BAD_INPUT), r.output
        doc = json.loads(_stdout(r))
        assert doc == json.loads((out / "metrics.json").read_text())
        assert (doc["ok"], doc["n_ok"], doc["n_failed"], doc["n_not_run"], doc["n_pairs"]) == (False, 0, 1, 0, 1)
        (pair,) = doc["pairs"]
        assert pair["name"] == generated.stem and pair["exit_code"] == 3 and why in pair["error"] and pair["hint"]
        assert doc["n_clips"] == 0 and doc["clips"] == []
    r = CliRunner().invoke(app, ["eval", "-g", str(tmp_path / "missing.mp4"), "-r", str(clips / "a.mp4"),
                                 "--keep-going", "--metrics", "psnr"], terminal_width=200)
    assert r.exit_code == int(ExitCode.BAD_INPUT)
    assert _stdout(r).splitlines() == ["pairs: 0 of 1 scored, 1 failed, 0 not run",
                                       f"failed: missing: not found: {tmp_path / 'missing.mp4'} (exit 3; hint: check "
                                       "the path)"]  # no empty table
    r = CliRunner().invoke(app, ["eval", "-g", str(clips / "b.mp4"), "-r", str(clips / "a.mp4"), "--keep-going",
                                 *BATCH_ARGS])
    assert r.exit_code == 0, r.output
    doc = json.loads(_stdout(r))
    assert (doc["ok"], doc["n_ok"], doc["n_failed"], doc["n_pairs"]) == (True, 1, 0, 1)
    assert doc["metrics"]["psnr"]["value"] == pytest.approx(_psnr_by_hand(clips / "b.mp4", clips / "a.mp4"), abs=1e-9)


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
