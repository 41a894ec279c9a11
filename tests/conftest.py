"""Shared fixtures. Real-data tests read ../shared/data (or $HOI_SHARED_DATA) and skip where absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("HOI_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set HOI_SHARED_DATA to use another)")
    return path


@pytest.fixture(scope="session")
def interdyn_clips(shared_data) -> list[Path]:
    clips = sorted((shared_data / "interdyn").glob("*/video.webm"))
    if not clips:
        pytest.skip(f"no InterDyn clips under {shared_data / 'interdyn'}")
    return clips


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch CPU thread (tiny models run several times faster so)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def synthetic_frames(n: int = 12, width: int = 160, height: int = 96, seed: int = 0) -> np.ndarray:
    """Deterministic RGB frames: a gradient background and a coloured square moving right."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                     np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    frames = []
    for t in range(n):
        f = base.copy()
        x0 = 10 + t * 4
        f[30:60, x0:x0 + 30] = (220, 40 + 10 * (t % 5), 40)
        f += r.integers(0, 3, f.shape, dtype=np.uint8)
        frames.append(f)
    return np.stack(frames)


def make_clip(path: Path, n: int = 12, width: int = 160, height: int = 96, fps: float = 12.0) -> Path:
    from hoi_cli.video import write_video

    write_video(path, synthetic_frames(n, width, height), fps, crf=10)
    return path


@pytest.fixture
def synthetic_clip(tmp_path) -> Path:
    return make_clip(tmp_path / "synthetic.mp4")
