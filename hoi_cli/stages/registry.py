"""The stage registry: stage folder names, their modules, and lookup by short name.

A leaf module (it imports no stage), so `hoi_cli.stages.base` and `hoi_cli.pipeline` can both
use it without importing each other.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ..errors import BadInputError, HoiError

# Stage folder name -> module. The order here is the pipeline order.
STAGES: dict[str, str] = {
    "00_frames": "hoi_cli.stages.frames",
    "01_detect": "hoi_cli.stages.detect",
    "02_hands": "hoi_cli.stages.hands",
    "03_segment": "hoi_cli.stages.segment",
    "04_mlo": "hoi_cli.stages.mlo",
    "05_silhouette": "hoi_cli.stages.silhouette",
    "06_layout": "hoi_cli.stages.layout",
    "07_genhoi": "hoi_cli.stages.genhoi",
}


def stage_name(name: str) -> str:
    """Resolve ``"detect"``, ``"01"`` or ``"01_detect"`` to the folder name."""
    for full in STAGES:
        if name in (full, full[:2], full[3:]):
            return full
    raise BadInputError(f"unknown stage {name!r}", f"stages: {', '.join(STAGES)}")


def available_stages() -> list[str]:
    return [name for name, mod in STAGES.items() if importlib.util.find_spec(mod) is not None]


def get_stage(name: str) -> ModuleType:
    full = stage_name(name)
    try:
        return importlib.import_module(STAGES[full])
    except ModuleNotFoundError as exc:
        if exc.name == STAGES[full]:
            raise HoiError(f"stage {full} is not available in this version of hoi",
                           f"available: {', '.join(available_stages())}") from None
        raise
