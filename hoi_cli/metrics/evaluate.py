"""`hoi eval` orchestration: clip pairs in, metrics.json / per_clip.csv / a table out.

Aggregation: every per-clip metric is a mean over the clip's frames (or its frame pairs);
the reported value is the mean over clips (clips where a value is not computable, NaN, are
left out and ``n_clips`` says how many counted). FID pools the frames of all clips; FVD uses
one I3D feature vector per clip.

Skipping: a metric whose weights file is missing is reported with ``status: "skipped"``,
the file it needs and the folders looked in; it is never dropped or replaced silently.
``strict`` turns any such skip into `MissingWeightsError` (exit code 4) before any work.
Motion smoothness is the exception by design: without AMT weights its weight-free variant
``motion_smoothness_flow`` is computed and the AMT one is listed as skipped (not an error).

Batches (``hoi eval --pairs``): a pair that cannot be scored (missing, corrupt or empty clip, or
any other error) is that pair's failure, recorded in ``pairs`` with its error, hint and exit code;
the batch stops there or goes on (``on_failure``), and the means are over the pairs scored.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Literal

import numpy as np

from ..errors import BadInputError, ExitCode, MissingWeightsError, failure_of
from . import groups as _groups  # noqa: F401  (registers the metric groups)
from .groups import hoi_boxes  # noqa: F401  (re-exported: `hoi_cli.metrics.pixel` names it here)
from .registry import REGISTRY, Clip, EvalRun, Report, metric_info

SCHEMA = "hoi.eval/1"
# the ``--metrics`` choices, and each reported metric's (unit, higher_is_better, definition), in output order
# (of the groups registered when this module is imported; the functions below read `REGISTRY` itself)
METRIC_GROUPS = tuple(g.name for g in REGISTRY if g.selectable)
METRIC_INFO: dict[str, tuple[str, bool | None, str]] = metric_info()


@dataclass
class ClipPair:
    generated: Path
    reference: Path
    name: str = ""
    generated_mask: Path | None = None
    reference_mask: Path | None = None

    def __post_init__(self):
        self.generated, self.reference = Path(self.generated), Path(self.reference)
        self.generated_mask = Path(self.generated_mask) if self.generated_mask else None
        self.reference_mask = Path(self.reference_mask) if self.reference_mask else None
        if not self.name:
            g = self.generated
            self.name = g.stem if g.is_file() or g.suffix else g.name


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = METRIC_GROUPS
    weights_dir: str | None = None
    fid_weights: str | None = None
    i3d_weights: str | None = None
    dino_weights: str | None = None
    alexnet_weights: str | None = None
    amt_weights: str | None = None
    fid_resize: str = "pytorch-fid"
    fvd_frames: int = 16
    hoi_crop: bool = True
    hoi_margin: float = 0.1
    max_frames: int | None = None
    strict: bool = False
    device: str = "cpu"
    batch_size: int = 8
    reference_baselines: bool = True


def read_pairs_csv(path: str | Path) -> list[ClipPair]:
    """Clip pairs from a CSV with a header: ``generated,reference`` and optionally ``name``,
    ``generated_mask``, ``reference_mask``. Relative paths are relative to the CSV's folder."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"pairs CSV not found: {path}", "check the path")
    base = path.parent
    pairs = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"generated", "reference"} <= cols:
            raise BadInputError(f"pairs CSV {path} needs columns 'generated' and 'reference' (has: {sorted(cols)})",
                                "first line: generated,reference[,name,generated_mask,reference_mask]")

        def p(v):
            v = (v or "").strip()
            return (base / v if not Path(v).is_absolute() else Path(v)) if v else None

        for i, row in enumerate(reader):
            pairs.append(ClipPair(p(row["generated"]), p(row["reference"]), (row.get("name") or "").strip()
                                  or f"clip{i:04d}", p(row.get("generated_mask")), p(row.get("reference_mask"))))
    if not pairs:
        raise BadInputError(f"pairs CSV {path} has no rows", "add one line per clip pair")
    names = [c.name for c in pairs]
    if len(set(names)) != len(names):
        raise BadInputError(f"duplicate clip names in {path}", "give each row a distinct 'name'")
    return pairs


# ----------------------------------------------------------------------------- weights


def resolve_weights(opts: EvalOptions) -> tuple[dict[str, Path], dict[str, MissingWeightsError]]:
    """Find the weight files of the requested metrics: ``(found, missing)`` by metric group."""
    from ..model_files import KNOWN_WEIGHTS
    from ..weights import find_weights

    groups = {g.name: g for g in REGISTRY}
    found, missing = {}, {}
    for name in opts.metrics:
        if name not in groups or groups[name].weights is None:
            continue
        key, attr = groups[name].weights
        filename, what = KNOWN_WEIGHTS[key]
        try:
            found[name] = find_weights(filename, what=what, explicit=getattr(opts, attr), weights_dir=opts.weights_dir)
        except MissingWeightsError as exc:
            missing[name] = exc
    for name in list(found):  # a second file some groups need (LPIPS' linear layers)
        try:
            groups[name].check_weights(opts)
        except MissingWeightsError as exc:
            missing[name] = exc
            found.pop(name)
    return found, missing


# ----------------------------------------------------------------------------- clips


def check_paths(pair: ClipPair) -> None:
    """`BadInputError` (exit 3) naming the first of the pair's files that does not exist."""
    for path in (pair.generated, pair.reference, pair.generated_mask, pair.reference_mask):
        if path is not None and not path.exists():
            raise BadInputError(f"not found: {path}", "check the path")


def _load_pair(pair: ClipPair, opts: EvalOptions, log) -> tuple[np.ndarray, np.ndarray, dict]:
    import cv2

    from ..video import read_frames_any

    gen, fps_g = read_frames_any(pair.generated)
    ref, fps_r = read_frames_any(pair.reference)
    info = {"frames_generated": len(gen), "frames_reference": len(ref), "fps_generated": fps_g,
            "fps_reference": fps_r, "size_reference": [int(ref.shape[2]), int(ref.shape[1])],
            "size_generated": [int(gen.shape[2]), int(gen.shape[1])]}
    T = min(len(gen), len(ref))
    if opts.max_frames:
        T = min(T, opts.max_frames)
    if len(gen) != len(ref):
        log(f"{pair.name}: {len(gen)} generated vs {len(ref)} reference frames; using the first {T}")
    gen, ref = gen[:T], ref[:T]
    if gen.shape[1:3] != ref.shape[1:3]:
        log(f"{pair.name}: generated {gen.shape[2]}x{gen.shape[1]} resized to the reference's {ref.shape[2]}x{ref.shape[1]}")
        size = (ref.shape[2], ref.shape[1])
        interp = cv2.INTER_AREA if gen.shape[2] > ref.shape[2] else cv2.INTER_CUBIC
        gen = np.stack([cv2.resize(f, size, interpolation=interp) for f in gen])
        info["generated_resized"] = True
    info["n_frames"] = T
    return gen, ref, info


def _find_mask(explicit: Path | None, clip: Path) -> Path | None:
    if explicit:
        return explicit
    if clip.is_dir() and (clip / "03_segment" / "masks.npz").exists():
        return clip
    return None


def load_clip(pair: ClipPair, run: EvalRun, hands: set[str]) -> Clip:
    """Frames, object masks (where given or found in run folders) and the hand detections of
    the clips named in ``hands`` ("reference", "generated") of one pair."""
    check_paths(pair)
    gen, ref, info = _load_pair(pair, run.opts, run.log)
    record = {"name": pair.name, "generated": str(pair.generated), "reference": str(pair.reference), **info,
              "metrics": {}}
    clip = Clip(pair, gen, ref, record)
    T, H, W = clip.shape
    gmask_path, rmask_path = _find_mask(pair.generated_mask, pair.generated), _find_mask(pair.reference_mask,
                                                                                           pair.reference)
    if rmask_path is not None:
        from .objects import load_masks

        if gmask_path is not None:
            clip.generated_masks = load_masks(gmask_path, size=(W, H))[:T]
        clip.reference_masks = load_masks(rmask_path, size=(W, H))[:T]
        record["masks"] = ({"generated": str(gmask_path)} if gmask_path is not None else {}) | {
            "reference": str(rmask_path)}
    if hands:
        from .hands import detect

        clip.reference_hands, run.hand_detector = run.timed("hand_detection", detect, ref)
        if "generated" in hands:
            clip.generated_hands, run.hand_detector = run.timed("hand_detection", detect, gen)
    return clip


# ----------------------------------------------------------------------------- main


def _check(pairs: list[ClipPair], opts: EvalOptions) -> None:
    choices = [g.name for g in REGISTRY if g.selectable]
    unknown = set(opts.metrics) - set(choices)
    if unknown:
        raise BadInputError(f"unknown metric(s): {', '.join(sorted(unknown))}", f"choose from: {', '.join(choices)}")
    if not pairs:
        raise BadInputError("no clip pairs to evaluate", "give --generated and --reference, or --pairs CSV")
    for group in REGISTRY:
        group.check_options(opts)


OnFailure = Literal["raise", "stop", "continue"]


def evaluate(pairs: list[ClipPair], opts: EvalOptions, log: Callable[[str], None] = lambda m: None,
             *, on_failure: OnFailure = "raise") -> dict:
    """Run the requested metric groups over clip pairs; returns the metrics.json document.

    ``on_failure``: what a pair that cannot be scored does. ``"raise"``: its exception propagates
    (one pair; library use). ``"stop"``: the batch ends there; ``"continue"``: every pair is
    tried. With either of these (a batch) Ctrl-C ends the batch like a failure (exit code 130),
    and the document holds the pairs scored until then, the means over them, each tried pair's
    status in ``pairs`` and `batch_summary`'s counts.
    """
    _check(pairs, opts)
    found, missing = _weights_or_skips(opts, log)
    t_start = time.perf_counter()
    run = EvalRun(opts, found, missing, log)
    groups = [g(run) for g in REGISTRY if g.active(opts)]
    for group in groups:
        group.load()
    hands = {side for g in groups for side in g.reads_hands}
    order = [g for g in groups if g.computed_first] + [g for g in groups if not g.computed_first]
    clips: list[dict] = []
    tried: list[dict] = []  # one status record per pair tried (a batch)
    for k, pair in enumerate(pairs):
        log(f"[{k + 1}/{len(pairs)}] {pair.name}")
        if on_failure == "raise":
            clips.append(_score_pair(pair, run, groups, order, hands))
            continue
        status = {"name": pair.name, "generated": str(pair.generated), "reference": str(pair.reference)}
        t_pair = time.perf_counter()
        try:
            clips.append(_score_pair(pair, run, groups, order, hands))
            tried.append({**status, "ok": True})
        except (Exception, KeyboardInterrupt) as exc:  # this pair's failure, not the batch's
            tried.append({**status, **_pair_failure(exc)})
        tried[-1]["seconds"] = round(time.perf_counter() - t_pair, 3)  # as `hoi preprocess`/`generate` records
        if not tried[-1]["ok"]:
            log(f"error: {pair.name}: {' '.join(tried[-1]['error'].split())}")
            log(f"hint: {' '.join(tried[-1]['hint'].split())}")
            if tried[-1]["exit_code"] == ExitCode.INTERRUPTED or on_failure == "stop":
                break

    report = Report(clips)
    for group in groups:
        if clips:
            group.aggregate(report)
        else:  # no pair scored: nothing to average or pool (FID), but what was skipped is still said
            group.report_skipped(report)
    doc = _document(report, run, time.perf_counter() - t_start)
    if on_failure == "raise":
        return doc
    from ..commands.common import batch_summary

    batch = {**batch_summary(tried, len(pairs)), "n_pairs": len(pairs), "pairs": tried}
    at = list(doc).index("n_clips") + 1  # the batch's counts next to n_clips; the rest of the document as before
    return dict(list(doc.items())[:at] + list(batch.items()) + list(doc.items())[at:])


def _score_pair(pair: ClipPair, run: EvalRun, groups: list, order: list, hands: set[str]) -> dict:
    """One pair's record with its metrics; a pair failing half-way leaves nothing in the pooled groups."""
    clip = load_clip(pair, run, hands)
    before = [(group, group.checkpoint()) for group in groups]  # pooled groups (FID, FVD): what to go back to
    try:
        for group in order:
            group.compute(clip)
    except BaseException:
        for group, state in before:
            group.rollback(state)
        raise
    return clip.record


def _pair_failure(exc: BaseException) -> dict:
    """A failed pair's status: `error_json`'s shape; a bug (exit 1) also carries its traceback."""
    from ..commands.common import error_json

    failure, tb = failure_of(exc, interrupted_hint="run the same command again (the pairs scored are in the output)",
                             bug_hint="this is a bug in hoi: the traceback is in this pair's record in metrics.json "
                                      "(--out) and in --format json (rerun with one where you gave neither), "
                                      "please report it")
    record = error_json(failure)
    if isinstance(exc, KeyboardInterrupt) or tb is not None:
        record["kind"] = type(exc).__name__
    if tb is not None:
        record["traceback"] = tb
    return record


def _weights_or_skips(opts: EvalOptions, log) -> tuple[dict[str, Path], dict[str, MissingWeightsError]]:
    """`resolve_weights`; with ``strict`` a missing required file is an error, else each skip is logged."""
    found, missing = resolve_weights(opts)
    groups = {g.name: g for g in REGISTRY}
    if opts.strict:
        hard = {g: e for g, e in missing.items() if not groups[g].weights_optional}
        if hard:
            raise next(iter(hard.values()))
    for name, exc in missing.items():
        log(f"{groups[name].skip_label or name}: skipped, {exc.message}")
    return found, missing


def _document(report: Report, run: EvalRun, total_s: float) -> dict:
    """The metrics.json document."""
    from .. import __version__

    return {
        "schema": SCHEMA,
        "hoi_version": __version__,
        "n_clips": len(report.clips),
        "metrics": {k: report.entries[k] for k in sorted(report.entries, key=_order)},
        "clips": report.clips,
        "hand_detector": run.hand_detector,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run.opts).items()},
        "weights": {g: str(p) for g, p in run.found.items()},
        "versions": _versions(),
        "timing_s": {k: round(v, 3) for k, v in run.timing.items()} | {"total": round(total_s, 3)},
    }


def _versions() -> dict[str, str]:
    import platform

    import torch

    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    try:
        import cv2

        versions["opencv"] = cv2.__version__
        import mediapipe

        versions["mediapipe"] = mediapipe.__version__
    except Exception:  # pragma: no cover
        pass
    return versions


def _order(name: str) -> int:
    keys = list(metric_info())
    return keys.index(name) if name in keys else len(keys)


def _clean(x):
    """JSON-safe: NaN -> null, +-inf -> "inf"/"-inf", numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def to_json(doc: dict) -> str:
    return json.dumps(_clean(doc), indent=2)


def write_outputs(doc: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json`` and ``per_clip.csv`` into ``out_dir`` (each via a temp file + rename)."""
    import os

    from ..errors import OutputError

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        mj = out / "metrics.json"
        tmp = out / ".metrics.json.tmp"
        tmp.write_text(to_json(doc) + "\n")
        os.replace(tmp, mj)
        names = [n for n in metric_info() if any(n in c["metrics"] for c in doc["clips"])]
        pc = out / "per_clip.csv"
        tmp = out / ".per_clip.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "generated", "reference", "n_frames"] + names)
            for c in doc["clips"]:
                row = [c["name"], c["generated"], c["reference"], c["n_frames"]]
                for n in names:
                    v = c["metrics"].get(n, math.nan)
                    row.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else
                               ("inf" if isinstance(v, float) and math.isinf(v) else f"{v:.6g}"))
                w.writerow(row)
        os.replace(tmp, pc)
    except OSError as exc:
        raise OutputError(f"cannot write results to {out}: {exc}", "check --out is a writable folder") from None
    return {"metrics": mj, "per_clip": pc}


def render_table(doc: dict, console=None) -> None:
    """Print the metrics as a rich table (to stdout unless ``console`` says otherwise)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"hoi eval: {doc['n_clips']} clip pair(s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("", justify="center")
    table.add_column("notes", overflow="fold")
    for name, e in doc["metrics"].items():
        v = e.get("value")
        if e["status"] == "skipped":
            val, note = "skipped", f"needs {e['needs']}"
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            val, note = "n/a", e.get("reason", "")
        else:
            val = "inf" if isinstance(v, float) and math.isinf(v) else f"{v:.4f}"
            if e.get("unit"):
                val += f" {e['unit']}"
            note = ""
            if "convention" in e and name == "fid":
                note = f"resize={e['convention']['resize']}, {e['convention']['n_frames_generated']} frames"
            elif "convention" in e and name == "fvd":
                note = f"{e['convention']['frames_used']} frames/clip, {e['convention']['n_clips']} clips"
            elif "variant" in e:
                note = "weight-free flow variant"
        arrow = {True: "↑", False: "↓"}.get(e.get("higher_is_better"), "")
        table.add_row(name, val, arrow, note)
    if doc["metrics"]:  # no pair scored and nothing skipped: the pairs' lines below say it all
        console.print(table)
    if doc.get("hand_detector"):
        console.print(f"hand detector: {doc['hand_detector']}")
    if doc.get("n_failed") or doc.get("n_not_run"):  # a batch that did not score every pair
        console.print(f"pairs: {doc['n_ok']} of {doc['n_pairs']} scored, {doc['n_failed']} failed, "
                      f"{doc['n_not_run']} not run", highlight=False, markup=False, soft_wrap=True)
    for pair in doc.get("pairs", []):
        if not pair["ok"]:
            console.print(f"failed: {pair['name']}: {' '.join(pair['error'].split())} (exit {pair['exit_code']}; "
                          f"hint: {' '.join(pair['hint'].split())})", highlight=False, markup=False,
                          soft_wrap=True)
