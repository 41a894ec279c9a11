"""`hoi_cli.conditions`: the one builder of model conditions that training and sampling share."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hoi_cli import conditions
from hoi_cli.errors import BadInputError
from hoi_cli.testing import make_synthetic_run
from hoi_cli.train.dataset import HOIRunDataset


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("cond") / "clip", n_frames=6).path


def test_sampling_conditions_are_the_training_window_of_the_whole_clip(run):
    item = HOIRunDataset([run], 6, 24, 32)[0]
    maps = conditions.clip_conditions(run, (24, 32))
    assert list(maps) == list(conditions.MAP_CHANNELS)
    for k, v in maps.items():
        assert v.dtype == torch.float32 and v.shape == (6, conditions.MAP_CHANNELS[k], 24, 32), k
        assert torch.equal(v, item[k]), k
    assert maps["layout"].sum() > 0 and maps["object_mask"].sum() > 0  # 01_detect boxes and 03_segment masks
    assert maps["mlo_normals"].abs().sum() == 0  # no 04_mlo in this run: zeros
    assert torch.equal(conditions.clip_conditions(run, (24, 32), 4)["hand_mask"], maps["hand_mask"][:4])


def test_checks_name_the_missing_stage(run):
    with pytest.raises(BadInputError, match=r"mlo_normals \(from 04_mlo\)"):
        conditions.clip_conditions(run, (24, 32), required={"mlo_normals"})
    with pytest.raises(BadInputError, match="mlo_layers"):
        conditions.clip_conditions(run, (24, 32), mlo_layers=5)
    with pytest.raises(BadInputError, match="a window needs 9"):
        conditions.clip_conditions(run, (24, 32), 9)
    assert conditions.available_conditions(run) == {"video", "reference", "layout", "hand_mask", "object_mask"}


def test_square_reference_pads_with_white():
    rgb = np.zeros((10, 20, 3), np.float32)  # a black object, twice as wide as tall
    ref = SimpleNamespace(rgb=rgb, alpha=np.ones((10, 20), np.float32))
    out = conditions.square_reference(ref, 8, 8)
    assert out.shape == (3, 8, 8) and out.dtype == np.float32
    assert np.allclose(out[:, 0], 1.0) and np.allclose(out[:, -1], 1.0)  # white bands above and below
    assert np.allclose(out[:, 3:5], -1.0)  # the black object in the middle rows


def test_sampling_does_not_import_training():
    code = ("import sys, hoi_cli.conditions, hoi_cli.generate.diffusion, hoi_cli.models.flow; "
            "sys.exit(1 if any(m.startswith('hoi_cli.train') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
