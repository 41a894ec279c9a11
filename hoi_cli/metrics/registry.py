"""The metric-group registry of `hoi eval`: a metric group is one class.

A group (a name ``--metrics`` accepts, e.g. ``fid``) declares, in one place:

- ``metrics``: the values it reports, each with unit, direction and definition (`Metric`);
- ``weights``: the model file it needs (a `hoi_cli.model_files.KNOWN_WEIGHTS` key and the
  `EvalOptions` attribute that names the file explicitly), whether the group still runs
  without it (``weights_optional``), and which of its metrics are skipped then;
- ``load``: its networks, once per evaluation (`EvalRun.network` shares one between groups);
- ``compute``: its per-clip values, written into ``clip.metrics``;
- ``aggregate``: what it adds to the report after the per-clip means (`Report`): a pooled value
  (FID, FVD), notes, conventions;
- ``pooled_lists`` (or ``checkpoint``/``rollback``): what it accumulates over the clips for
  ``aggregate``, so that a pair failing half-way in a batch is undone (`checkpoint` before the
  pair, `rollback` when it fails) and the pool holds the scored pairs only. A pool that is not a
  list (a running sum) overrides both methods.

`hoi_cli.metrics.evaluate.evaluate` runs the registered groups in registration order; the
order of ``REGISTRY`` is the order of the metrics in metrics.json and per_clip.csv.
Importing this module is cheap (no torch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from collections.abc import Callable

import numpy as np

if TYPE_CHECKING:
    from ..errors import MissingWeightsError
    from .evaluate import ClipPair, EvalOptions


@dataclass(frozen=True)
class Metric:
    """One reported value. ``needs_weights``: reported as skipped when the group's weights are missing."""

    name: str
    unit: str
    higher_is_better: bool | None
    definition: str
    needs_weights: bool = False


@dataclass
class EvalRun:
    """State shared by the groups over one evaluation: options, weight files, networks, timings."""

    opts: EvalOptions
    found: dict[str, Path]
    missing: dict[str, MissingWeightsError]
    log: Callable[[str], None] = lambda m: None
    timing: dict[str, float] = field(default_factory=dict)
    networks: dict[str, Any] = field(default_factory=dict)
    hand_detector: str | None = None  # name of the hand detector used, once one ran

    def timed(self, key: str, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``, its time added to ``timing[key]``."""
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timing[key] = self.timing.get(key, 0.0) + time.perf_counter() - t0

    def network(self, key: str, build: Callable[[], Any]) -> Any:
        """The network stored under ``key``, built on first use (one DINO for two groups)."""
        if key not in self.networks:
            self.networks[key] = build()
        return self.networks[key]


@dataclass
class Clip:
    """One loaded clip pair: frames cut to a common length and size, masks, hand detections, and
    its record in metrics.json (``record``, whose ``metrics`` dict the groups fill)."""

    pair: ClipPair
    generated: np.ndarray  # (T, H, W, 3) uint8
    reference: np.ndarray
    record: dict
    generated_masks: np.ndarray | None = None  # (T, H, W) bool object masks
    reference_masks: np.ndarray | None = None
    reference_hands: dict | None = None  # `hoi_cli.metrics.hands.detect` output
    generated_hands: dict | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return self.record["metrics"]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of the reference (the generated clip is resized to it)."""
        return self.reference.shape[:3]


def mean_over_clips(values) -> float:
    """The mean of the computable values (NaN and None left out); NaN when none is."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return math.nan
    v = v[~np.isnan(v)]  # NaN = not computable on that clip; inf (identical frames' PSNR) stays inf
    return float(v.mean()) if len(v) else math.nan


@dataclass
class Report:
    """The ``metrics`` section of metrics.json being assembled (name -> entry)."""

    clips: list[dict]
    entries: dict[str, dict] = field(default_factory=dict)

    def entry(self, metric: Metric, value, **extra) -> dict:
        e = {"status": "ok", "value": value, "unit": metric.unit, "higher_is_better": metric.higher_is_better,
             "definition": metric.definition}
        e.update(extra)
        self.entries[metric.name] = e
        return e

    def computed(self, name: str) -> bool:
        """Whether any clip has a per-clip value of ``name``."""
        return any(name in c["metrics"] for c in self.clips)

    def mean(self, metric: Metric, why_not: str) -> dict:
        """The per-clip values' mean (``n_clips`` counted); ``not_computable`` with ``why_not`` when none is."""
        vals = [c["metrics"].get(metric.name, math.nan) for c in self.clips]
        n_ok = int(sum(1 for v in vals if v is not None and not math.isnan(v)))
        e = self.entry(metric, mean_over_clips(vals), n_clips=n_ok)
        if n_ok == 0:
            e["status"] = "not_computable"
            e["reason"] = why_not
        return e

    def skipped(self, metric: Metric, exc: MissingWeightsError, reason: str | None = None) -> dict:
        e = {"status": "skipped", "value": None, "reason": "missing weights", "needs": exc.filename,
             "looked_in": exc.looked_in, "hint": exc.hint, "definition": metric.definition}
        if reason:
            e["reason"] = reason
        self.entries[metric.name] = e
        return e

    def not_computable(self, metric: Metric, reason: str) -> dict:
        e = {"status": "not_computable", "value": None, "definition": metric.definition, "reason": reason}
        self.entries[metric.name] = e
        return e


class MetricGroup:
    """One metric group; subclass it, fill the class attributes, and decorate it with `register`."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    selectable: ClassVar[bool] = True  # a ``--metrics`` choice (False: switched on by options, see `active`)
    weights: ClassVar[tuple[str, str] | None] = None  # (KNOWN_WEIGHTS key, EvalOptions attribute)
    weights_optional: ClassVar[bool] = False  # a weight-free variant is computed without them
    skip_label: ClassVar[str | None] = None  # what the log line calls the part skipped without weights
    skip_reason: ClassVar[str | None] = None  # the skipped entries' reason, when not "missing weights"
    reads_hands: ClassVar[tuple[str, ...]] = ()  # "reference", "generated": hand detections it reads
    computed_first: ClassVar[bool] = False  # computed before the other groups of a clip
    # attributes (lists) that gather per-clip values for `aggregate`: a group that pools into a list must name it
    # here (or override checkpoint/rollback), else a pair failing half-way leaves its values in the pool
    pooled_lists: ClassVar[tuple[str, ...]] = ()
    not_computable_reason: ClassVar[str] = "not computable on these clips (too few frames or empty masks)"

    def __init__(self, run: EvalRun):
        self.run = run
        self.opts = run.opts

    @classmethod
    def active(cls, opts: EvalOptions) -> bool:
        return cls.name in opts.metrics

    @classmethod
    def check_options(cls, opts: EvalOptions) -> None:
        """Raise `BadInputError` for options this group cannot use (checked before any work)."""

    @classmethod
    def check_weights(cls, opts: EvalOptions) -> None:
        """Raise `MissingWeightsError` for a second file the group needs besides ``weights``."""

    @property
    def weights_path(self) -> Path | None:
        return self.run.found.get(self.name)

    @property
    def missing(self) -> MissingWeightsError | None:
        return self.run.missing.get(self.name)

    def load(self) -> None:
        """Load the group's networks (called once, before the first clip)."""

    def compute(self, clip: Clip) -> None:
        """Write this clip's values into ``clip.metrics`` (and notes into ``clip.record``)."""

    def checkpoint(self) -> Any:
        """The state of the group's pools before a clip (its ``pooled_lists``' lengths), for `rollback`."""
        return {name: len(getattr(self, name)) for name in self.pooled_lists}

    def rollback(self, state: Any) -> None:
        """Undo what the clips after ``checkpoint`` (which returned ``state``) added to the pools."""
        for name, length in state.items():
            del getattr(self, name)[length:]

    def aggregate(self, report: Report) -> None:
        """Per-clip means of the group's metrics, skipped entries, then `finish`."""
        for metric in self.metrics:
            if report.computed(metric.name):
                report.mean(metric, self.not_computable_reason)
        self.report_skipped(report)
        self.finish(report)

    def report_skipped(self, report: Report) -> None:
        """The entries of the metrics skipped for missing weights (also when no clip was scored)."""
        if self.missing is not None:
            for metric in self.metrics:
                if metric.needs_weights:
                    report.skipped(metric, self.missing, self.skip_reason)

    def finish(self, report: Report) -> None:
        """Group-level values and notes, after the per-clip means."""

    @classmethod
    def metric(cls, name: str) -> Metric:
        return next(m for m in cls.metrics if m.name == name)


REGISTRY: list[type[MetricGroup]] = []


def register(group: type[MetricGroup]) -> type[MetricGroup]:
    """Add a group to `REGISTRY` (its position there is its place in the outputs)."""
    if any(g.name == group.name for g in REGISTRY):
        raise ValueError(f"metric group {group.name!r} is registered twice")
    REGISTRY.append(group)
    return group


def metric_info() -> dict[str, tuple[str, bool | None, str]]:
    """``name -> (unit, higher_is_better, definition)`` of every registered metric, in output order."""
    return {m.name: (m.unit, m.higher_is_better, m.definition) for g in REGISTRY for m in g.metrics}
