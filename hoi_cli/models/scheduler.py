"""The rectified-flow scheduler of the HOI DiT: its time grid (with shift) and the Euler step.

Convention (flow time, as in `hoi_cli.models.flow`):
    ``x_t = (1 - t) * x0 + t * noise``, ``t`` in [0, 1], ``t = 0`` data, ``t = 1`` noise; the
    model predicts ``v = noise - x0``; a step from ``t`` to ``t_next < t`` is
    ``x <- x + (t_next - t) * v``.

Shift (SD3 / Wan's ``flow_shift``): a uniform grid ``u`` is mapped to
``t = shift * u / (1 + (shift - 1) * u)``; ``shift > 1`` spends more steps at high noise. With
``shift = 1`` (the default, what `hoi train` models are sampled with) the map is exactly the
identity, in float32 and in float64.

SDEdit (``strength = s < 1``): the grid starts at ``shift(s)`` with ``max(1, round(steps * s))``
steps, and `add_noise` makes the start sample at that time.

Like a diffusers scheduler: ``set_timesteps`` once, then ``step`` per model evaluation.
"""

from __future__ import annotations

import torch


class FlowMatchEulerScheduler:
    def __init__(self, shift: float = 1.0):
        if not shift > 0:
            raise ValueError(f"flow shift must be positive, got {shift}")
        self.shift = float(shift)
        self.sigmas = torch.zeros(0)  # the time grid, ``n_steps + 1`` values from ``start_time`` to 0
        self.start_time = 1.0

    def shift_time(self, t):
        """The shifted time of ``t`` (a float or a tensor)."""
        return self.shift * t / (1 + (self.shift - 1) * t)

    def set_timesteps(self, steps: int, strength: float = 1.0) -> None:
        """The grid of a sampling run: ``steps`` from noise, or fewer from ``strength`` (SDEdit)."""
        strength = float(min(max(strength, 0.0), 1.0))
        n_steps = steps if strength >= 1.0 else max(1, round(steps * strength))
        self.start_time = self.shift_time(strength)
        self.sigmas = self.shift_time(torch.linspace(strength, 0.0, n_steps + 1))

    @property
    def timesteps(self) -> torch.Tensor:
        """The time of each step's model evaluation (the grid without its final 0)."""
        return self.sigmas[:-1]

    @property
    def num_steps(self) -> int:
        return max(0, len(self.sigmas) - 1) if self.start_time > 0 else 0

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The sample at ``start_time``: ``(1 - t) * x0 + t * noise``."""
        t = self.start_time
        return (1 - t) * x0 + t * noise

    def step(self, velocity: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step from ``sigmas[i]`` to ``sigmas[i + 1]``."""
        t_cur, t_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        return sample + (t_next - t_cur) * velocity.to(sample.dtype)
