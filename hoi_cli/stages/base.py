"""What a stage is: a module with a Params dataclass and one ``run(ctx)`` function.

A stage module defines:

- ``NAME``: its folder name, e.g. ``"01_detect"``;
- ``VERSION``: a string bumped whenever its outputs change for the same inputs;
- ``DEPENDS_ON``: the stage folders it reads (never the clip itself, except ``00_frames``);
  optionally ``depends_on(params) -> tuple`` where that depends on the parameters (06_layout
  reads 03_segment only with ``object_box_from = "mask"``); `stage_dependencies` is the one
  place that resolves them, for the context, the store's fingerprints and the pipeline;
- ``Params``: a dataclass of its parameters (JSON-serialisable field values);
- ``run(ctx: StageContext) -> dict``: writes its files into ``ctx.out_dir`` and returns a
  small JSON-able summary that goes into the manifest (counts, quality figures);
- optionally ``model_files(params, weights_dir) -> dict[str, Path]``: model files whose
  hashes are part of the fingerprint (raise `MissingWeightsError` when one is absent);
- ``load(run_dir, **options)``: the one loader for its outputs (e.g. 01_detect's is
  ``load_detections``).

Upstream data has one door: ``ctx.read(stage_module)`` (the owning stage's ``load``) and
``ctx.path(stage_module, name)`` (a file of it), both refused with `UndeclaredInputError`
unless the running stage declares that stage. Code outside a stage (``hoi show``, ``hoi
generate``, the training dataset) reads a run through `RunReader`, which calls the same loaders.

The store (`hoi_cli.store`) owns folders, manifests, fingerprints and atomic commits; a
stage never writes outside ``ctx.out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from collections.abc import Callable

import numpy as np

from ..device import resolve_device  # noqa: F401  (re-exported: stages import it from here)
from ..errors import BadInputError
from .registry import get_stage
from ..params import params_from_dict  # noqa: F401  (built, checked and coerced there; re-exported)


def _no_progress(done: int, total: int | None = None) -> None:
    pass


def _no_log(message: str) -> None:
    pass


class UndeclaredInputError(RuntimeError):
    """A stage read a stage folder it does not declare (a programming error, not the user's):
    its outputs would not be fingerprinted, so a rerun upstream would leave it looking fresh."""


MANIFEST = "manifest.json"  # a stage folder is complete iff this exists (the store writes it last)


def stage_module(stage: ModuleType | str) -> ModuleType:
    """A stage module from itself or its folder name (``"01_detect"``, ``"detect"``)."""
    if isinstance(stage, str):
        return get_stage(stage)
    return stage


def stage_dependencies(stage: ModuleType, params: Any = None) -> tuple[str, ...]:
    """The stage folders ``stage`` reads when run with ``params`` (default: its defaults):
    ``stage.depends_on(params)`` where it depends on them, else ``stage.DEPENDS_ON``."""
    depends_on = getattr(stage, "depends_on", None)
    if depends_on is None:
        return tuple(getattr(stage, "DEPENDS_ON", ()))
    return tuple(depends_on(params if params is not None else stage.Params()))


@dataclass(frozen=True)
class RunReader:
    """Read-only access to a run folder's stage outputs, through each stage's own loader.

    For code outside a stage (``hoi show``, ``hoi generate``, the training dataset); a stage
    reads through its `StageContext`, which also checks its declared dependencies.
    """

    run_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    def has(self, stage: ModuleType | str) -> bool:
        """Whether the stage folder is complete (its manifest exists)."""
        return (self.run_dir / _name(stage) / MANIFEST).exists()

    def folder(self, stage: ModuleType | str) -> Path:
        """The complete stage folder; `BadInputError` naming the stage when it has not been run."""
        name = _name(stage)
        if not self.has(name):
            raise BadInputError(f"stage {name} has not been run for {self.run_dir.name}",
                                f"run `hoi preprocess` with --until {name} first")
        return self.run_dir / name

    def path(self, stage: ModuleType | str, name: str = "") -> Path:
        """A file (or, with no ``name``, the folder) of a complete stage."""
        folder = self.folder(stage)
        return folder / name if name else folder

    def manifest(self, stage: ModuleType | str) -> dict | None:
        path = self.run_dir / _name(stage) / MANIFEST
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def read(self, stage: ModuleType | str, *, optional: bool = False, **options: Any) -> Any:
        """The stage's outputs from its loader, ``stage.load(run_dir, **options)``; with
        ``optional``, None where the stage has not been run (else `BadInputError`)."""
        module = stage_module(stage)
        if optional and not self.has(module):
            return None
        self.folder(module)
        return module.load(self.run_dir, **options)


def _name(stage: ModuleType | str) -> str:
    return stage if isinstance(stage, str) else stage.NAME


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
    stage: ModuleType | None = None  # the running stage; default: the module that defines type(params)

    def __post_init__(self) -> None:
        self.run_dir, self.out_dir = Path(self.run_dir), Path(self.out_dir)
        if self.stage is None:
            self.stage = sys.modules.get(type(self.params).__module__)

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The stage folders the running stage declares with its parameters."""
        return stage_dependencies(self.stage, self.params) if self.stage is not None else ()

    def _declared(self, stage: ModuleType | str) -> str:
        name = _name(stage)
        declared = self.depends_on
        if name not in declared:
            running = getattr(self.stage, "NAME", type(self.params).__module__)
            raise UndeclaredInputError(
                f"stage {running} reads {name} but declares only ({', '.join(declared) or 'nothing'}): "
                f"add {name} to its DEPENDS_ON (or depends_on(params)) so that its fingerprint covers it")
        return name

    def read(self, stage: ModuleType | str, *, optional: bool = False, **options: Any) -> Any:
        """A declared upstream stage's outputs, from its own loader (`RunReader.read`)."""
        self._declared(stage)
        return RunReader(self.run_dir).read(stage, optional=optional, **options)

    def path(self, stage: ModuleType | str, name: str = "") -> Path:
        """A file (or the folder) of a declared, complete upstream stage."""
        self._declared(stage)
        return RunReader(self.run_dir).path(stage, name)

    def input_dir(self, stage_name: str) -> Path:
        """A declared, completed upstream stage folder (its manifest exists)."""
        return self.path(stage_name)


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
