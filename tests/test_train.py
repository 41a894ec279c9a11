"""Training data over synthetic run folders, the training loop (log, EMA, resume) and `hoi train`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hoi_cli.errors import BadInputError
from hoi_cli.models.checkpoint import load_checkpoint
from hoi_cli.models.config import make_config
from hoi_cli.models.flow import sample_video
from hoi_cli.testing import SYNTHETIC_STAGES, make_synthetic_run
from hoi_cli.train.dataset import HOIRunDataset, rasterize_boxes
from hoi_cli.train.loop import TrainOptions, train

ALL_STAGES = SYNTHETIC_STAGES  # 01_detect, 03_segment and the real 04_mlo, 05_silhouette, 06_layout


# one torch thread: ~5x faster than two on this 2-core machine (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A 10-frame 64x48 run whose 04/05/06 folders were written by the real stages (read-only here)."""
    return make_synthetic_run(tmp_path_factory.mktemp("runs") / "clipA", n_frames=10, stages=ALL_STAGES).path


def test_dataset_item_shapes_and_ranges(full_run):
    ds = HOIRunDataset([full_run], 4, 32, 32, required=make_config("tiny", "all").required_conditions())
    assert len(ds) == 4  # windows start every 2 frames: 0, 2, 4, 6
    item = ds[1]
    expect = {"video": (4, 3, 32, 32), "reference": (3, 32, 32), "layout": (4, 3, 32, 32),
              "hand_mask": (4, 1, 32, 32), "object_mask": (4, 1, 32, 32), "hand_render": (4, 2, 32, 32),
              "structure": (4, 3, 32, 32), "mlo_normals": (4, 39, 32, 32), "mlo_occlusion": (4, 13, 32, 32)}
    for k, shape in expect.items():
        assert tuple(item[k].shape) == shape, k
        assert item[k].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["hand_mask"].max() > 0 and item["object_mask"].max() > 0
    assert item["mlo_normals"].min() >= -1 and item["mlo_normals"].max() <= 1
    assert 0 <= item["mlo_occlusion"].min() and item["mlo_occlusion"].max() <= 1
    assert bool(item["reference_valid"])
    assert int(item["start"]) == 2
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["video"].shape == (2, 4, 3, 32, 32)
    cfg = make_config("tiny", "all")
    assert cfg.mlo_layers * 3 == 39 and cfg.hand_render_channels == 2 and cfg.structure_channels == 3
    assert len(HOIRunDataset.for_config([full_run], cfg)) == 4


def test_conditions_are_the_stage_outputs(full_run):
    """At the working resolution (no resize) every map equals what the stage's own loader returns."""
    from hoi_cli.conventions import MLO_LAYERS, decode_normals
    from hoi_cli.stages.layout import load_layout
    from hoi_cli.stages.mlo import load_mlo
    from hoi_cli.stages.silhouette import load_silhouette

    ds = HOIRunDataset([full_run], 4, 48, 64)
    item = ds[0]
    lay = load_layout(full_run)["layout"][:4] / 255.0
    np.testing.assert_array_equal(item["layout"].numpy(), lay)
    sil = load_silhouette(full_run)
    np.testing.assert_allclose(item["structure"].numpy(), sil["structure"][:4].transpose(0, 3, 1, 2) / 255.0,
                               atol=1e-6)
    hr = item["hand_render"].numpy()
    labels = sil["labels"][:4]
    assert (hr[:, 0] > 0).sum() == (labels == 1).sum() and (hr[:, 1] > 0).sum() == (labels == 2).sum()
    assert (hr[:, 0] > 0).any() and (hr[:, 1] > 0).any()  # both hands
    mlo = load_mlo(full_run, frames=[0, 1, 2, 3])
    code, conf = mlo["normals"], mlo["confidence"]  # (4, 13, H, W, 3), (4, 13, H, W)
    covered = (code != 0).any(-1)
    normals = item["mlo_normals"].numpy().reshape(4, len(MLO_LAYERS), 3, 48, 64).transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(normals[covered], decode_normals(code[covered]), atol=1e-6)
    assert np.all(normals[~covered] == 0)  # absent layer pixels are 0, not the -1 of decoding code 0
    np.testing.assert_allclose(item["mlo_occlusion"].numpy(), conf / 255.0, atol=1e-6)
    # layer order: both hands' palms are drawn, at the hands' pixels
    assert covered[:, MLO_LAYERS.index("left_palm")].any() and covered[:, MLO_LAYERS.index("right_palm")].any()


def test_reference_is_the_clips_own_object_on_white(full_run):
    ds = HOIRunDataset([full_run], 4, 32, 32)
    ref = ds[0]["reference"]
    corner = ref[:, 0, 0]
    assert torch.allclose(corner, torch.ones(3))  # outside the object mask: white
    centre = ref[:, 16, 16]
    expect = torch.tensor([200, 60, 40]) / 127.5 - 1  # the synthetic object's colour (hoi_cli.testing)
    assert torch.allclose(centre, expect, atol=0.1)
    # deterministic per (seed, epoch, index); the epoch changes the drawn frame's position only
    assert torch.equal(ds[0]["reference"], ds[0]["reference"])


def test_layout_falls_back_to_rasterised_detections(full_run, tmp_path):
    run = make_synthetic_run(tmp_path / "clipC", n_frames=6, stages=("01_detect", "03_segment")).path
    ds = HOIRunDataset([run], 4, 24, 32)  # the synthetic clip is 48x64 px: scale 0.5
    item = ds[0]
    from hoi_cli.stages.detect import load_detections

    ob = load_detections(run)["object_boxes"][0] * 0.5
    expected = rasterize_boxes(ob[None, None], (24, 32), (24, 32))[0, 0]
    assert np.array_equal(item["layout"][0, 2].numpy(), expected)
    assert item["layout"][0, 0].sum() > 0 and item["layout"][0, 1].sum() > 0  # two hands
    # at the working resolution the fallback draws exactly what 06_layout draws
    a = HOIRunDataset([run], 4, 48, 64)[0]["layout"]
    b = HOIRunDataset([full_run], 4, 48, 64)[0]["layout"]
    assert torch.equal(a, b)


def test_missing_optional_stage_is_zeros_required_is_an_error(tmp_path):
    run = make_synthetic_run(tmp_path / "clipB", n_frames=6, stages=("01_detect",)).path
    ds = HOIRunDataset([run], 4, 32, 32, required=make_config("tiny", "rehold").required_conditions() - {
        "hand_mask", "object_mask", "hand_render"})
    item = ds[0]
    assert item["mlo_normals"].abs().sum() == 0 and item["hand_mask"].sum() == 0
    assert item["mlo_normals"].shape[1] == 39 and item["structure"].shape[1] == 3
    assert bool(item["reference_valid"])  # from the detection box alone
    with pytest.raises(BadInputError) as err:
        HOIRunDataset([run], 4, 32, 32, required=make_config("tiny", "manivideo").required_conditions())
    assert "mlo_normals" in err.value.message and "04_mlo" in err.value.message
    with pytest.raises(BadInputError):
        HOIRunDataset([run], 8, 32, 32)  # too short for the window
    with pytest.raises(BadInputError):  # a model built for another MLO layout
        HOIRunDataset([run], 4, 32, 32, mlo_layers=7)


def test_train_loop_logs_checkpoints_and_resumes(full_run, tmp_path):
    cfg = make_config("tiny", "all")
    out = tmp_path / "ckpt"
    opts = TrainOptions(steps=3, batch_size=2, log_every=1, save_every=2, progress=False)
    s1 = train([full_run], cfg, out, opts)
    assert s1["steps"] == 3 and s1["resumed_from"] is None
    assert (out / "latest").read_text().strip() == "step_000003"
    for name in ("config.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors",
                 "train_state.json"):
        assert (out / "step_000003" / name).exists(), name
    lines = [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert {"loss", "video", "structure", "router", "lr"} <= set(lines[0])
    s2 = train([full_run], cfg, out, TrainOptions(steps=5, batch_size=2, log_every=1, save_every=10,
                                                  progress=False))
    assert s2["resumed_from"].endswith("step_000003") and s2["steps"] == 5
    lines = [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5]
    with pytest.raises(BadInputError):  # another config into the same folder
        train([full_run], make_config("tiny", "none"), out, TrainOptions(steps=6, progress=False))
    model = load_checkpoint(out)
    video = sample_video(model, {k: v.unsqueeze(0) for k, v in HOIRunDataset([full_run], 4, 32, 32)[0].items()
                                 if k not in ("video", "start", "reference_valid")}, steps=2, seed=0)
    assert video.shape == (1, 4, 3, 32, 32)


def test_train_command_through_typer(full_run, tmp_path):
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from hoi_cli.commands.train import resolve_pipeline, train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("noop")(lambda: None)  # keep "train" a subcommand
    out = tmp_path / "ck"
    res = CliRunner().invoke(app, ["train", str(full_run), "--out", str(out), "--config", "tiny", "--system",
                                   "genhoi", "--steps", "2", "--batch-size", "1", "--format", "json",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["system"] == "genhoi"
    assert load_checkpoint(out).config.head_sliding_rope
    assert resolve_pipeline("rehold") == ("rehold", {})
    assert resolve_pipeline("full")[0] == "all"
    assert resolve_pipeline(None) == (None, {})


def test_pipeline_toml_model_table(tmp_path):
    from hoi_cli.commands.train import resolve_pipeline

    p = tmp_path / "mine.toml"
    p.write_text('[model]\nsystem = "manivideo"\nmemory_size = 4\n')
    assert resolve_pipeline(str(p)) == ("manivideo", {"memory_size": 4})
    with pytest.raises(BadInputError):
        resolve_pipeline("no-such-recipe")


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(full_run, tmp_path):
    """Two Gloo ranks train one step each and rank 0 writes the checkpoint."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(str(full_run), str(tmp_path / "ck"), port), nprocs=2, join=True)
    assert (tmp_path / "ck" / "step_000002").exists()


def _ddp_worker(rank: int, run: str, out: str, port: int) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train([run], make_config("tiny", "all"), out, TrainOptions(steps=2, batch_size=1, progress=False,
                                                               device="cpu"))
    torch.distributed.destroy_process_group()


def test_no_resume_starts_over(full_run, tmp_path):
    out = tmp_path / "ck"
    train([full_run], make_config("tiny", "none"), out, TrainOptions(steps=3, log_every=1, save_every=1,
                                                                     progress=False))
    s = train([full_run], make_config("tiny", "genhoi"), out, TrainOptions(steps=2, log_every=1, save_every=1,
                                                                           progress=False, resume=False))
    assert s["resumed_from"] is None
    assert sorted(p.name for p in out.glob("step_*")) == ["step_000001", "step_000002"]
    assert [json.loads(x)["step"] for x in (out / "loss_log.jsonl").read_text().splitlines()] == [1, 2]
    assert load_checkpoint(out).config.system == "genhoi"
