"""What a stage is: a module with a Params dataclass and one ``run(ctx)`` function.

A stage module defines:

- ``NAME``: its folder name, e.g. ``"01_detect"``;
- ``VERSION``: a string bumped whenever its outputs change for the same inputs;
- ``DEPENDS_ON``: the stage folders it reads (never the clip itself, except ``00_frames``);
- ``Params``: a dataclass of its parameters (JSON-serialisable field values);
- ``run(ctx: StageContext) -> dict``: writes its files into ``ctx.out_dir`` and returns a
  small JSON-able summary that goes into the manifest (counts, quality figures);
- optionally ``model_files(params, weights_dir) -> dict[str, Path]``: model files whose
  hashes are part of the fingerprint (raise `MissingWeightsError` when one is absent);
- one loader function for its outputs (e.g. ``load_detections(run_dir)``).

The store (`hoi_cli.store`) owns folders, manifests, fingerprints and atomic commits; a
stage never writes outside ``ctx.out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..device import resolve_device  # noqa: F401  (re-exported: stages import it from here)
from ..errors import BadInputError
from ..params import params_from_dict  # noqa: F401  (built, checked and coerced there; re-exported)


def _no_progress(done: int, total: int | None = None) -> None:
    pass


def _no_log(message: str) -> None:
    pass


@dataclass
class StageContext:
    run_dir: Path  # runs/<clip-id>
    out_dir: Path  # the temporary folder the stage writes into
    params: Any  # the stage's Params instance
    source: Path | None = None  # the raw clip; only 00_frames may read it
    weights_dir: str | None = None
    device: str = "auto"  # resolve with resolve_device() where torch is used
    progress: Callable[[int, int | None], None] = field(default=_no_progress)
    log: Callable[[str], None] = field(default=_no_log)

    def input_dir(self, stage_name: str) -> Path:
        """A completed upstream stage folder (its manifest exists)."""
        path = self.run_dir / stage_name
        if not (path / "manifest.json").exists():
            raise BadInputError(f"stage {stage_name} has not been run for {self.run_dir.name}",
                                f"run `hoi preprocess` with --until {stage_name} first")
        return path


def params_to_dict(params: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(params), default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
