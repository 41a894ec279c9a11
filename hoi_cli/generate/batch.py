"""Batch generation: many runs x references from a CSV.

CSV columns (header required): ``run,reference[,out]``. ``reference`` is an image path, or
``frame:N`` for self-reenactment from frame N. Relative paths are relative to the CSV's
folder. ``out`` defaults to ``<out-dir>/<run name>__<reference stem>.mp4``. Rows run in file
order; a failing row is recorded (message, hint, exit code) and the batch goes on
(``keep_going``) or stops.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from ..errors import BadInputError, failure_of


@dataclass
class BatchRow:
    run: Path
    reference: Path | None
    from_frame: int | None
    out: Path


def read_pairs(csv_path: str | Path, out_dir: str | Path) -> list[BatchRow]:
    csv_path, out_dir = Path(csv_path), Path(out_dir)
    if not csv_path.exists():
        raise BadInputError(f"batch CSV not found: {csv_path}", "give a CSV with columns run,reference[,out]")
    base = csv_path.parent
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "run" not in cols or "reference" not in cols:
            raise BadInputError(f"{csv_path}: needs the columns run,reference[,out] (found {cols})",
                                "first line: run,reference,out")
        rows = []
        seen = set()
        for i, raw in enumerate(reader, start=2):
            r = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            if not r.get("run"):
                continue
            run = Path(r["run"]) if Path(r["run"]).is_absolute() else base / r["run"]
            ref_s = r.get("reference", "")
            if not ref_s:
                raise BadInputError(f"{csv_path}:{i}: empty reference", "an image path or frame:N")
            if ref_s.startswith("frame:"):
                try:
                    frame, ref = int(ref_s.split(":", 1)[1]), None
                except ValueError:
                    raise BadInputError(f"{csv_path}:{i}: bad reference {ref_s!r}", "use frame:N") from None
                stem = f"frame{frame}"
            else:
                ref = Path(ref_s) if Path(ref_s).is_absolute() else base / ref_s
                frame, stem = None, ref.stem
            out = r.get("out") or ""
            out_p = (Path(out) if Path(out).is_absolute() else out_dir / out) if out else \
                out_dir / f"{run.name}__{stem}.mp4"
            if out_p in seen:
                raise BadInputError(f"{csv_path}:{i}: output {out_p} appears twice", "give distinct out names")
            seen.add(out_p)
            rows.append(BatchRow(run, ref, frame, out_p))
    if not rows:
        raise BadInputError(f"{csv_path}: no rows", "add lines run,reference")
    return rows


def run_batch(rows: list[BatchRow], options, keep_going: bool = True, skip_existing: bool = False,
              log: Callable[[str], None] = lambda m: None, allow_stale: bool = False,
              log_error: Callable[[str], None] | None = None) -> list[dict]:
    """Generate every row; any exception of a row is that row's failure (in its record), never the batch's.
    ``log``: progress lines; ``log_error``: a failed row's error and hint lines (default ``log``)."""
    log_error = log_error or log
    from .run import generate

    results = []
    for row in rows:
        rec = {"run": str(row.run), "reference": str(row.reference) if row.reference else f"frame:{row.from_frame}",
               "out": str(row.out), "ok": True}
        t0 = time.perf_counter()
        if skip_existing and row.out.exists() and row.out.with_suffix(".json").exists():
            rec["skipped"] = True
        else:
            try:
                side = generate(row.run, row.out, reference=row.reference, reference_from_frame=row.from_frame,
                                options=_copy(options), log=log, allow_stale=allow_stale)
                rec["sidecar"] = side["sidecar"]
            except (Exception, KeyboardInterrupt) as exc:
                exc_known, tb = failure_of(exc, interrupted_hint="run the batch again with --skip-existing",
                                           bug_hint="this is a bug in hoi: the traceback is in the --format json "
                                                    "summary, please report it")
                if tb is not None:  # a bug: its traceback in the row's record, not on the terminal
                    rec["traceback"] = tb
                rec.update(ok=False, error=exc_known.message, hint=exc_known.hint, exit_code=int(exc_known.exit_code))
                log_error(f"error: {row.run.name} x {rec['reference']}: {' '.join(exc_known.message.split())}")
                if exc_known.hint:
                    log_error(f"hint: {' '.join(exc_known.hint.split())}")
                if isinstance(exc, KeyboardInterrupt):
                    rec["seconds"] = round(time.perf_counter() - t0, 3)
                    results.append(rec)
                    break
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        results.append(rec)
        if not rec["ok"] and not keep_going:
            break
    return results


def _copy(options):
    import copy

    return copy.deepcopy(options)
