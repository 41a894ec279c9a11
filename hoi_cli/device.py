"""The one place a ``--device`` value becomes a torch device string.

Every command takes ``--device`` with the same default (``auto``) and the same meaning:
``auto`` is ``cuda`` where torch sees a GPU, else ``cpu``; an explicit ``cuda`` (or ``cuda:N``)
without a GPU is a one-line error (exit 3) rather than a torch traceback minutes later.
"""

from __future__ import annotations

import os
import re

from .errors import BadInputError, ExitCode

DEFAULT_DEVICE = "auto"
DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda where torch sees a GPU, else cpu)."
_SPELLING = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def check_device(device: str | None) -> str:
    """Reject a misspelt device now, and an explicit CUDA request without a GPU; leave ``auto`` unresolved.

    For commands where torch may never be imported (a detect-only recipe, the composite
    backend): ``auto`` stays ``auto`` and is resolved by `resolve_device` where torch is used.
    """
    device = device or DEFAULT_DEVICE
    if not _SPELLING.fullmatch(device):
        raise BadInputError(f"unknown --device {device!r}", "use " + DEVICE_HELP.rstrip("."),
                            exit_code=ExitCode.USAGE)
    return resolve_device(device) if device.startswith("cuda") else device


def resolve_device(device: str | None = DEFAULT_DEVICE) -> str:
    """"auto" (or None) -> "cuda" when torch sees a GPU, else "cpu"; an explicit "cuda" without one is an error.

    In a torchrun / accelerate job (``LOCAL_RANK`` set), "auto" and a bare "cuda" become this
    process's GPU, ``cuda:LOCAL_RANK``, so the ranks of one node do not all land on GPU 0;
    an explicit ``cuda:N`` is kept.
    """
    import torch

    device = device or DEFAULT_DEVICE
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {device} but no CUDA device is visible", "use --device cpu or auto")
    local_rank = os.environ.get("LOCAL_RANK")
    if device == "cuda" and local_rank is not None and local_rank.isdigit():
        device = f"cuda:{int(local_rank) % max(1, torch.cuda.device_count())}"
    return device
