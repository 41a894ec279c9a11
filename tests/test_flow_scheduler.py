"""The flow scheduler (time grid with shift, Euler step) and the windowed sampler it drives."""

from __future__ import annotations

import pytest
import torch

from hoi_cli.models.flow import WindowedSampler, sample_video
from hoi_cli.models.scheduler import FlowMatchEulerScheduler

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_grid_without_shift_is_the_uniform_grid_exactly():
    s = FlowMatchEulerScheduler()
    s.set_timesteps(5)
    assert torch.equal(s.sigmas, torch.linspace(1.0, 0.0, 6))
    assert s.num_steps == 5 and torch.equal(s.timesteps, s.sigmas[:-1]) and s.start_time == 1.0
    s.set_timesteps(10, strength=0.3)  # SDEdit: round(10 * 0.3) steps from t = 0.3
    assert s.num_steps == 3 and s.start_time == 0.3 and float(s.sigmas[0]) == pytest.approx(0.3)
    s.set_timesteps(10, strength=0.0)
    assert s.num_steps == 0  # nothing to integrate: the start sample is the result
    s.set_timesteps(4, strength=0.01)
    assert s.num_steps == 1  # at least one step


def test_shift_spends_steps_at_high_noise():
    s = FlowMatchEulerScheduler(shift=3.0)
    assert s.shift_time(0.5) == pytest.approx(0.75)  # 3 * 0.5 / (1 + 2 * 0.5)
    s.set_timesteps(4)
    assert s.sigmas.tolist() == pytest.approx([1.0, 0.9, 0.75, 0.5, 0.0])
    s.set_timesteps(4, strength=0.5)
    assert s.start_time == pytest.approx(0.75) and float(s.sigmas[0]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        FlowMatchEulerScheduler(shift=0.0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_steps_follow_a_straight_path_exactly(shift):
    """On the straight path x_t = (1-t) x0 + t n the velocity n - x0 is constant: any grid lands on x0."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    s = FlowMatchEulerScheduler(shift)
    s.set_timesteps(7)
    x = noise
    for i in range(s.num_steps):
        x = s.step(noise - x0, i, x)
    torch.testing.assert_close(x, x0, atol=1e-6, rtol=0)
    s.set_timesteps(7, strength=0.4)
    assert torch.allclose(s.add_noise(x0, noise), (1 - s.start_time) * x0 + s.start_time * noise)


class _ToTarget(torch.nn.Module):
    """A 'model' that knows the clean clip (given as the layout map): the exact velocity (x - x0) / t."""

    def forward(self, x, t, cond, ref_keep=None):
        return (x - cond["layout"]) / t.view(-1, 1, 1, 1, 1)


@pytest.mark.parametrize("window,overlap", [(4, 2), (3, 1), (16, 8)])
def test_windowed_sampler_integrates_every_window_to_the_target(window, overlap):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 9, 2, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    s = FlowMatchEulerScheduler(shift=2.0)
    s.set_timesteps(5)
    steps = []
    out = WindowedSampler(_ToTarget(), s, window, overlap, guidance=1.0)(noise, {"layout": x0}, None,
                                                                         progress=lambda i, n: steps.append((i, n)))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    assert steps == [(i, 5) for i in range(1, 6)]


def test_sample_video_shift_changes_the_sample():
    from hoi_cli.models.config import make_config
    from hoi_cli.models.dit import HOIVideoDiT

    torch.manual_seed(0)
    m = HOIVideoDiT(make_config("tiny", "none", ref_tokens=False, zero_init=False)).eval()
    a = sample_video(m, {"num_frames": 4}, steps=3, seed=0)
    assert torch.equal(a, sample_video(m, {"num_frames": 4}, steps=3, seed=0, shift=1.0))
    b = sample_video(m, {"num_frames": 4}, steps=3, seed=0, shift=3.0)
    assert b.shape == a.shape and not torch.equal(a, b)
