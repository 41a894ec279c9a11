"""Run folders: numbered stage folders, manifests, fingerprints, atomic commits and locks.

A run folder holds one clip's stages::

    runs/<clip-id>/
      .lock                 per-run lock (fcntl; released by the OS if the process dies)
      .failed/<stage>.json  the last failure of a stage, removed when it next succeeds
      00_frames/manifest.json + outputs
      01_detect/...

Commit protocol (write the record last): a stage writes into ``.tmp-<stage>-<pid>-<rand>/``;
its ``manifest.json`` is written last (temp file + ``os.replace``); then the old folder, if
any, is renamed aside to ``.old-<stage>-...``, the temp folder is renamed into place, and the
old one deleted. A stage folder is complete iff its manifest exists, so a crash leaves the old
complete folder (restored from ``.old-*`` on the next run), or nothing; never a half folder.

Fingerprint: sha256 over the stage name and version, the schema version, its resolved
parameters, the output digests of the upstream stages it reads, the source clip's hash
(00_frames only) and the hashes of its model files. A stage whose stored fingerprint equals
the expected one is up to date. The package version is recorded but not fingerprinted: a
stage's ``VERSION`` is bumped when its outputs change, so a release does not throw away
every cache.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any
from collections.abc import Callable

import numpy as np

from . import __version__
from .conventions import CONVENTIONS_VERSION
from .digest import file_digest
from .errors import HoiError, OutputError, RunLockedError, failure_of, known_error
from .params import params_changes
from .stages.base import MANIFEST, RunReader, StageContext, _json_default, params_to_dict, stage_dependencies

SCHEMA_VERSION = 1
LOCK_FILE = ".lock"
FAILED_DIR = ".failed"
# one JSON line per video `hoi generate` made from this run, wherever it was written: `hoi show` finds it there
GENERATED_LOG = "generated.jsonl"
TRACKED_PACKAGES = ("numpy", "opencv-contrib-python", "av", "mediapipe", "torch", "smplx", "trimesh",
                    "pyrender", "segment-anything")


# ---------------------------------------------------------------- hashing
def _digest_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_outputs(folder: Path) -> dict[str, dict]:
    """Every file under ``folder`` (manifest excluded): sha256, bytes, and arrays' shapes and dtypes."""
    outputs: dict[str, dict] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        st = path.stat()
        # size + mtime let a cached stage be re-checked cheaply before reuse (full hash only when they differ)
        entry: dict[str, Any] = {"sha256": file_digest(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                entry["arrays"] = {k: {"shape": list(z[k].shape), "dtype": str(z[k].dtype)} for k in z.files}
        outputs[rel] = entry
    return outputs


def outputs_digest(outputs: dict[str, dict]) -> str:
    return _digest_json({k: v["sha256"] for k, v in outputs.items()})


def package_versions() -> dict[str, str]:
    out = {"hoi": __version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=False, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- state
@dataclass
class StageState:
    stage: str
    status: str  # "ok" | "stale" | "missing" | "failed"
    reason: str = ""

    def to_json(self) -> dict:
        return {"status": self.status, "reason": self.reason}


class RunStore:
    """One clip's run folder."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._lock_fd: int | None = None
        self._exclusive = False

    # ---- paths and records
    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    def manifest(self, name: str) -> dict | None:
        return RunReader(self.run_dir).manifest(name)

    def failure(self, name: str) -> dict | None:
        path = self.run_dir / FAILED_DIR / f"{name}.json"
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except (json.JSONDecodeError, OSError):
            return None

    def stage_names(self) -> list[str]:
        return sorted(p.name for p in self.run_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists())

    # ---- locking
    def acquire_lock(self, shared: bool = False) -> None:
        """Take the per-run lock (non-blocking); clean temp folders of dead processes.

        ``shared=True`` is a reader's lock (`hoi generate`): readers exclude a writer but not
        each other, and a reader neither records its pid nor touches the folder, but for appending a line to
        `GENERATED_LOG`.
        """
        if shared:
            self._acquire_shared()
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise OutputError(f"cannot write to {self.run_dir}", "choose an --out folder you can write to") from None
        except OSError as exc:
            if known_error(exc) is not None:
                raise
            raise OutputError(f"cannot create run folder {self.run_dir}: {exc.strerror}",
                              "check the --out path and free disk space") from None
        self._flock(fd, fcntl.LOCK_EX, "is locked by process",
                    "wait for it to finish, or stop it; the lock frees itself when it exits")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        self._exclusive = True
        self._recover_interrupted()

    def _acquire_shared(self) -> None:
        try:
            fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            try:  # a read-only copy of a run: nobody can be writing it
                fd = os.open(self.run_dir / LOCK_FILE, os.O_RDONLY)
            except OSError:
                return
        self._flock(fd, fcntl.LOCK_SH, "is being written by process",
                    "wait for `hoi preprocess` to finish; the lock frees itself when it exits")
        self._lock_fd = fd

    def _flock(self, fd: int, mode: int, held_by: str, hint: str) -> None:
        """``flock`` without waiting; a lock held elsewhere closes ``fd`` and names the holder's pid."""
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RunLockedError(f"run {self.run_dir} {held_by} {holder}", hint) from None
            raise

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
            self._exclusive = False

    def __enter__(self) -> RunStore:
        self.acquire_lock()
        return self

    def __exit__(self, *exc) -> None:
        self.release_lock()

    def _recover_interrupted(self) -> None:
        """Under the lock, nobody else is writing: finish or undo what a dead process left."""
        for path in self.run_dir.iterdir():
            if path.name.startswith(".old-") and path.is_dir():
                name = path.name[len(".old-"):].rsplit("-", 2)[0]
                final = self.stage_dir(name)
                if not final.exists() and (path / MANIFEST).exists():
                    os.rename(path, final)  # crash between the two renames: put the old one back
                else:
                    shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(".tmp-") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    # ---- fingerprints
    def expected_inputs(self, stage: ModuleType, params: Any, *, source: Path | None = None,
                        weights_dir: str | None = None) -> dict:
        """The fingerprinted inputs of ``stage`` as it would run now."""
        upstream = {}
        for dep in stage_dependencies(stage, params):
            m = self.manifest(dep)
            upstream[dep] = m["output_digest"] if m else None
        inputs: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "stage": stage.NAME,
            "stage_version": str(stage.VERSION),
            "params": params_to_dict(params),
            "upstream": upstream,
        }
        if source is not None:
            from .clips import source_digest  # a file's hash, or a frame folder's over its images

            inputs["source_sha256"] = source_digest(source)
        model_files = getattr(stage, "model_files", None)
        if model_files is not None:
            inputs["models"] = {k: file_digest(p) for k, p in sorted(model_files(params, weights_dir).items())}
        return inputs

    def state(self, stage: ModuleType, params: Any, *, source: Path | None = None,
              weights_dir: str | None = None, upstream_states: dict[str, StageState] | None = None) -> StageState:
        name = stage.NAME
        manifest = self.manifest(name)
        failure = self.failure(name)
        if manifest is None:
            if failure:
                return StageState(name, "failed", failure.get("error", ""))
            return StageState(name, "missing")
        if failure and failure.get("time", 0) > manifest.get("finished_unix", 0):
            return StageState(name, "failed", f"last run failed ({failure.get('error', '')}); previous output kept")
        for dep in stage_dependencies(stage, params):
            dep_state = (upstream_states or {}).get(dep)
            if self.manifest(dep) is None:
                return StageState(name, "stale", f"upstream {dep} is missing")
            if dep_state is not None and dep_state.status != "ok":
                return StageState(name, "stale", f"upstream {dep} is {dep_state.status}")
        if source is None and name == "00_frames":
            recorded = manifest.get("inputs", {}).get("source_path")  # a file or a frame folder
            source = Path(recorded) if recorded and Path(recorded).exists() else None
        try:
            expected = self.expected_inputs(stage, params, source=source, weights_dir=weights_dir)
        except HoiError as exc:  # e.g. a model file is now missing
            return StageState(name, "stale", exc.message)
        stored = manifest.get("inputs", {})
        if "source_sha256" in stored and "source_sha256" not in expected:
            expected["source_sha256"] = stored["source_sha256"]  # source moved away: trust the record
        reasons = _diff_inputs(stored, expected)
        if reasons:
            return StageState(name, "stale", "; ".join(reasons))
        bad = self.check_outputs(name, manifest)
        if bad:
            return StageState(name, "stale", "outputs changed on disk: " + ", ".join(bad[:3]))
        return StageState(name, "ok")

    def check_outputs(self, name: str, manifest: dict | None = None, *, full: bool = False) -> list[str]:
        """Files of a complete stage that are missing or changed: a cheap check before reuse.

        A file whose size and mtime match the manifest is taken as unchanged; any other is
        re-hashed (``full=True`` re-hashes every file). Under the run lock, the manifest's
        recorded sizes/mtimes are refreshed where the hash still matches (a copied run
        folder, a manifest written before mtimes were recorded), so the next check is cheap.
        """
        manifest = manifest if manifest is not None else (self.manifest(name) or {})
        bad, refreshed = [], False
        for rel, entry in manifest.get("outputs", {}).items():
            path = self.stage_dir(name) / rel
            try:
                st = path.stat()
            except OSError:
                bad.append(f"{rel} missing")
                continue
            if st.st_size != entry.get("bytes", st.st_size):
                bad.append(f"{rel} changed size")
            elif not full and entry.get("mtime_ns") == st.st_mtime_ns:
                continue
            elif file_digest(path) != entry["sha256"]:
                bad.append(f"{rel} modified")
            elif entry.get("mtime_ns") != st.st_mtime_ns:
                entry["mtime_ns"] = st.st_mtime_ns
                refreshed = True
        if refreshed and not bad and self._lock_fd is not None and self._exclusive:
            _write_json_atomic(self.stage_dir(name) / MANIFEST, manifest)
        return bad

    def verify(self, name: str) -> list[str]:
        """Files of a complete stage that are missing or whose hashes no longer match (every file re-hashed)."""
        return self.check_outputs(name, full=True)

    # ---- running
    def run_stage(self, stage: ModuleType, params: Any, *, source: Path | None = None,
                  weights_dir: str | None = None, device: str = "cpu",
                  progress: Callable[[int, int | None], None] | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
        """Run ``stage`` into a temp folder and commit it atomically. Returns the manifest."""
        if self._lock_fd is None or not self._exclusive:
            raise RuntimeError("run_stage needs the run lock (use `with RunStore(...)`)")
        name = stage.NAME
        inputs = self.expected_inputs(stage, params, source=source, weights_dir=weights_dir)
        if any(v is None for v in inputs["upstream"].values()):
            missing = [k for k, v in inputs["upstream"].items() if v is None]
            raise HoiError(f"{name} needs {', '.join(missing)} first", f"run the pipeline --until {name}")
        if source is not None:
            inputs["source_path"] = str(Path(source).resolve())
        tmp = self.run_dir / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
        except OSError as exc:
            if known_error(exc) is not None:
                raise
            raise OutputError(f"cannot write in {self.run_dir}: {exc.strerror}", "check permissions and disk space") from None
        ctx = StageContext(run_dir=self.run_dir, out_dir=tmp, params=params, source=source,
                           weights_dir=weights_dir, device=device, stage=stage,
                           **({"progress": progress} if progress else {}), **({"log": log} if log else {}))
        started = time.time()
        try:
            summary = stage.run(ctx) or {}
            seconds = time.time() - started
            outputs = describe_outputs(tmp)
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "stage": name,
                "stage_version": str(stage.VERSION),
                "params": params_to_dict(params),
                "inputs": inputs,
                "fingerprint": _digest_json(_fingerprinted(inputs)),
                "outputs": outputs,
                "output_digest": outputs_digest(outputs),
                "summary": summary,
                "timing": {"seconds": round(seconds, 4), "started": _iso(started)},
                "finished_unix": time.time(),
                "packages": package_versions(),
                "conventions_version": CONVENTIONS_VERSION,
                "device": device,
            }
            _write_json_atomic(tmp / MANIFEST, manifest)  # the record, last
            self._swap_in(name, tmp)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._record_failure(name, exc)
            raise
        (self.run_dir / FAILED_DIR / f"{name}.json").unlink(missing_ok=True)
        return manifest

    def adopt(self, stage: ModuleType, params: Any = None, *, summary: dict | None = None,
              weights_dir: str | None = None) -> dict:
        """Write a manifest for a stage folder made outside `run_stage` (synthetic test runs, imported
        results), as if ``stage`` had made its current files with ``params`` (default: the stage's
        defaults) from the current upstream stages. Returns the manifest."""
        name = stage.NAME
        params = params if params is not None else stage.Params()
        inputs = self.expected_inputs(stage, params, weights_dir=weights_dir)
        outputs = describe_outputs(self.stage_dir(name))
        manifest = {"schema_version": SCHEMA_VERSION, "stage": name, "stage_version": str(stage.VERSION),
                    "params": params_to_dict(params), "inputs": inputs,
                    "fingerprint": _digest_json(_fingerprinted(inputs)), "outputs": outputs,
                    "output_digest": outputs_digest(outputs), "summary": summary or {}, "adopted": True,
                    "finished_unix": time.time(), "packages": package_versions(),
                    "conventions_version": CONVENTIONS_VERSION}
        _write_json_atomic(self.stage_dir(name) / MANIFEST, manifest)
        return manifest

    def _swap_in(self, name: str, tmp: Path) -> None:
        final = self.stage_dir(name)
        old = None
        if final.exists():
            old = self.run_dir / f".old-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync_dir(self.run_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _record_failure(self, name: str, exc: BaseException) -> None:
        failure, tb = failure_of(exc, interrupted_hint="")
        try:
            (self.run_dir / FAILED_DIR).mkdir(exist_ok=True)
            _write_json_atomic(self.run_dir / FAILED_DIR / f"{name}.json", {
                "stage": name, "error": failure.one_line(), "time": time.time(), "traceback": tb})
        except OSError:  # a full disk may refuse even this; the CLI's summary still has the error
            pass


def _fingerprinted(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k != "source_path"}


def _diff_inputs(stored: dict, expected: dict) -> list[str]:
    reasons = []
    if stored.get("schema") != expected.get("schema"):
        reasons.append(f"schema {stored.get('schema')} -> {expected.get('schema')}")
    if stored.get("stage_version") != expected.get("stage_version"):
        reasons.append(f"stage version {stored.get('stage_version')} -> {expected.get('stage_version')}")
    sp, ep = stored.get("params", {}), expected.get("params", {})
    changed = params_changes(sp, ep)  # dotted keys for nested groups (hoi_cli.params)
    if changed:
        reasons.append("params changed (" + ", ".join(changed) + ")")
    for dep, digest in expected.get("upstream", {}).items():
        if stored.get("upstream", {}).get(dep) != digest:
            reasons.append(f"upstream {dep} changed")
    if stored.get("source_sha256") != expected.get("source_sha256"):
        reasons.append("source clip changed")
    sm, em = stored.get("models", {}), expected.get("models", {})
    for key in sorted(set(sm) | set(em)):
        if sm.get(key) != em.get(key):
            reasons.append(f"model file {key} changed")
    return reasons


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders named directly, or found one level below a folder of runs; sorted, unique."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            continue
        if _looks_like_run(p):
            runs.append(p)
        else:
            runs += sorted(c for c in p.iterdir() if c.is_dir() and _looks_like_run(c))
    seen, out = set(), []
    for r in runs:
        if r.resolve() not in seen:
            seen.add(r.resolve())
            out.append(r)
    return out


def _looks_like_run(p: Path) -> bool:
    return (p / LOCK_FILE).exists() or (p / FAILED_DIR).is_dir() or any(
        c.is_dir() and c.name[:2].isdigit() and c.name[2:3] == "_" for c in p.iterdir())


# ---------------------------------------------------------------- a clip's failure, kept where it is useful
CLIP_FAILURE = "clip.json"  # in FAILED_DIR: the last failure of the whole clip (any exception), with its traceback


def clip_failure(exc: BaseException, run_dir: str | Path, *, existed: bool) -> tuple[HoiError, dict]:
    """Turn any exception of one clip into its failure: a `HoiError` to print and a record for the summary.

    Known errors keep their code; Ctrl-C/SIGTERM is 130; anything else is a bug: exit 1, and its
    traceback goes to the failure record, not the terminal. The record is kept in the run
    folder (``.failed/clip.json``) where the folder holds something; a folder this attempt made
    that holds only the lock and failure records is removed and the record written beside it
    as ``<run>.failed.json``.
    """
    run_dir = Path(run_dir)
    failure, tb = failure_of(exc, interrupted_hint="run the same command again: finished stages are kept and it resumes")
    record: dict[str, Any] = {"error": failure.message, "hint": failure.hint, "exit_code": int(failure.exit_code),
                              "kind": type(exc).__name__, "time": time.time(), "traceback": tb}
    path = _keep_failure_record(run_dir, existed, record)
    if tb is not None:
        failure.hint = (f"this is a bug in hoi: the traceback is in {path}, please report it" if path
                        else "this is a bug in hoi: rerun with --format json for the traceback, please report it")
    summary = {**failure.to_json(), "kind": type(exc).__name__}
    if tb is not None:
        summary["traceback"] = tb
    if path is not None:
        summary["failure_record"] = str(path)
    return failure, summary


def _keep_failure_record(run_dir: Path, existed: bool, record: dict) -> Path | None:
    try:
        if run_dir.is_dir() and not existed and not _holds_results(run_dir):
            store = RunStore(run_dir)
            try:
                store.acquire_lock()
            except HoiError:
                return None  # another process took the run meanwhile: leave it alone
            try:
                stage_failures = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / FAILED_DIR).glob("*.json"))
                                  if p.name != CLIP_FAILURE}
                shutil.rmtree(run_dir)
            finally:
                store.release_lock()
            if record.get("traceback") is None:
                return None  # a known error: the message and the summary say it all
            path = run_dir.with_name(run_dir.name + ".failed.json")
            _write_json_atomic(path, {**record, "run": str(run_dir), "stages": stage_failures})
            return path
        if run_dir.is_dir():
            (run_dir / FAILED_DIR).mkdir(exist_ok=True)
            path = run_dir / FAILED_DIR / CLIP_FAILURE
            _write_json_atomic(path, record)
            return path
    except OSError:  # e.g. the disk is full: the summary still carries the record
        pass
    return None


def _holds_results(run_dir: Path) -> bool:
    """Whether a run folder holds anything but the lock, failure records and leftover temp folders."""
    return any(not (p.name in (LOCK_FILE, FAILED_DIR) or p.name.startswith((".tmp-", ".old-")))
               for p in run_dir.iterdir())


def clear_clip_failure(run_dir: str | Path) -> None:
    """After a clip succeeds: drop its old clip-level failure records."""
    run_dir = Path(run_dir)
    for path in (run_dir / FAILED_DIR / CLIP_FAILURE, run_dir.with_name(run_dir.name + ".failed.json")):
        path.unlink(missing_ok=True)
    try:
        (run_dir / FAILED_DIR).rmdir()  # only when empty
    except OSError:
        pass
