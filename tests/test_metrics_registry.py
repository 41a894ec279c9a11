"""The metric-group registry of `hoi eval`: the built-in groups, and a new metric added as one class."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hoi_cli.errors import MissingWeightsError
from hoi_cli.metrics import registry
from hoi_cli.metrics.evaluate import (METRIC_GROUPS, METRIC_INFO, ClipPair, EvalOptions, evaluate, to_json,
                                      write_outputs)
from hoi_cli.metrics.registry import Clip, Metric, MetricGroup, Report, register


class MeanAbsError(MetricGroup):
    """A metric written for this test only: mean absolute pixel difference / 255, per clip."""

    name = "mae_test"
    metrics = (Metric("mae_test", "", False, "mean |generated - reference| / 255"),)

    def compute(self, clip: Clip) -> None:
        diff = clip.generated.astype(np.float64) - clip.reference.astype(np.float64)
        clip.metrics["mae_test"] = float(np.abs(diff).mean() / 255)


class NeedsDino(MetricGroup):
    """A weighted metric written for this test: skipped where its weights are missing."""

    name = "dino_test"
    metrics = (Metric("dino_test", "", True, "needs DINO", needs_weights=True),
               Metric("dino_test_free", "", True, "the weight-free part"))
    weights = ("dino_vitb16", "dino_weights")
    weights_optional = True

    def compute(self, clip: Clip) -> None:
        clip.metrics["dino_test_free"] = 0.5

    def finish(self, report: Report) -> None:
        report.entries["dino_test_free"]["note"] = "finished"


@pytest.fixture
def extra_groups():
    for group in (MeanAbsError, NeedsDino):
        register(group)
    yield
    for group in (MeanAbsError, NeedsDino):
        registry.REGISTRY.remove(group)


@pytest.fixture
def clips(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 200, size=(4, 32, 48, 3)).astype(np.uint8)
    for name, frames in (("ref", ref), ("gen", ref + 40)):  # lossless folders: the difference stays 40
        d = tmp_path / name
        d.mkdir()
        for i, f in enumerate(frames):
            cv2.imwrite(str(d / f"{i:06d}.png"), f[..., ::-1])
    return tmp_path / "gen", tmp_path / "ref"


def test_builtin_groups_in_output_order():
    assert METRIC_GROUPS == ("psnr", "ssim", "lpips", "fid", "fvd", "hands", "subject_consistency",
                             "motion_smoothness", "objects")
    names = list(METRIC_INFO)
    assert names[:4] == ["psnr", "ssim", "psnr_hoi", "ssim_hoi"]  # the HOI crop follows the full frame
    assert names.index("fvd") < names.index("hand_agreement") < names.index("object_mask_iou")
    assert len(names) == len(set(names)) == 22
    weighted = {m.name for g in registry.REGISTRY for m in g.metrics if m.needs_weights}
    assert weighted == {"lpips", "fid", "fvd", "subject_consistency", "motion_smoothness", "object_appearance_dino"}
    with pytest.raises(ValueError, match="twice"):
        register(registry.REGISTRY[0])


def test_a_new_metric_is_one_class(extra_groups, clips, tmp_path, monkeypatch):
    monkeypatch.setenv("HOI_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    gen, ref = clips
    logs: list[str] = []
    doc = evaluate([ClipPair(gen, ref, name="c0"), ClipPair(ref, ref, name="c1")],
                   EvalOptions(metrics=("psnr", "mae_test", "dino_test"), hoi_crop=False), log=logs.append)
    m = doc["metrics"]
    assert list(m) == ["psnr", "mae_test", "dino_test", "dino_test_free"]  # registration order
    assert m["mae_test"]["value"] == pytest.approx((40 / 255 + 0) / 2)
    assert m["mae_test"]["n_clips"] == 2 and m["mae_test"]["higher_is_better"] is False
    assert [c["metrics"]["mae_test"] for c in doc["clips"]] == pytest.approx([40 / 255, 0.0])
    assert m["dino_test"]["status"] == "skipped" and m["dino_test"]["needs"] == "dino_vitbase16_pretrain.pth"
    assert m["dino_test_free"]["value"] == 0.5 and m["dino_test_free"]["note"] == "finished"
    assert any(line.startswith("dino_test: skipped") for line in logs)
    paths = write_outputs(doc, tmp_path / "out")
    header = next(csv.reader(paths["per_clip"].open()))
    assert header == ["name", "generated", "reference", "n_frames", "psnr", "mae_test", "dino_test_free"]
    assert json.loads(to_json(doc))["metrics"]["psnr"]["value"] is not None


def test_unknown_and_strict(extra_groups, clips, tmp_path, monkeypatch):
    from hoi_cli.errors import BadInputError

    monkeypatch.setenv("HOI_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    gen, ref = clips
    with pytest.raises(BadInputError, match="hoi_crop"):  # switched on by --hoi-crop, not a --metrics choice
        evaluate([ClipPair(gen, ref)], EvalOptions(metrics=("hoi_crop",)))
    # an optional weight file is not an error with --strict; a required one is
    evaluate([ClipPair(gen, ref)], EvalOptions(metrics=("dino_test",), strict=True, hoi_crop=False))
    NeedsDino.weights_optional = False
    try:
        with pytest.raises(MissingWeightsError):
            evaluate([ClipPair(gen, ref)], EvalOptions(metrics=("dino_test",), strict=True, hoi_crop=False))
    finally:
        NeedsDino.weights_optional = True


def test_report_mean_leaves_out_nan_and_keeps_inf():
    metric = Metric("x", "", True, "x")
    report = Report([{"metrics": {"x": 1.0}}, {"metrics": {"x": float("nan")}}, {"metrics": {"x": 3.0}}, {"metrics": {}}])
    e = report.mean(metric, "why")
    assert e["value"] == 2.0 and e["n_clips"] == 2 and e["status"] == "ok"
    e = Report([{"metrics": {"x": float("inf")}}]).mean(metric, "why")
    assert e["value"] == float("inf")
    e = Report([{"metrics": {"x": float("nan")}}]).mean(metric, "why")
    assert e["status"] == "not_computable" and e["reason"] == "why" and e["n_clips"] == 0
