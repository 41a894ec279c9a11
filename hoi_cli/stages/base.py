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


def params_from_dict(params_cls: type, values: dict) -> Any:
    """Build a Params instance, rejecting unknown keys and coercing simple types."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise BadInputError(f"unknown parameter(s) for {params_cls.__module__}: {', '.join(sorted(unknown))}",
                            f"known: {', '.join(sorted(fields))}")
    kwargs = {}
    for key, value in values.items():
        default = getattr(params_cls(), key)
        kwargs[key] = _coerce(value, default)
    return params_cls(**kwargs)


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        if isinstance(default, bool):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            from ..prompts import parse_numbers  # the one comma-list parser

            return type(default)(parse_numbers(value) or ())
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
