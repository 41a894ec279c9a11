"""Fuzz `hoi preprocess` with damaged clips: every outcome is all frames (exit 0) or a clean exit 3.

Seeded mutations of a small WebM (VP9, no frame count in the container) and MP4 (H.264,
index first): byte flips, truncation and inserted bytes. The whole batch runs through the
real command in a subprocess (so a hang is a timeout, a traceback is on stderr), with
``--keep-going --format json`` so each clip has its own record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hoi_cli.testing import write_test_clip

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 16


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One seeded mutation: flip 1-8 bytes, truncate, or insert 1-300 random bytes."""
    kind = ("flip", "truncate", "insert")[int(rng.integers(3))]
    if kind == "flip":
        b = bytearray(data)
        for pos in rng.integers(0, len(b), int(rng.integers(1, 9))):
            b[int(pos)] ^= int(rng.integers(1, 256))
        return kind, bytes(b)
    if kind == "truncate":
        return kind, data[: int(rng.integers(1, len(data)))]
    pos = int(rng.integers(0, len(data)))
    return kind, data[:pos] + rng.integers(0, 256, int(rng.integers(1, 301)), dtype=np.uint8).tobytes() + data[pos:]


def make_corpus(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """``n`` mutated clips in ``folder`` (half WebM, half MP4); returns {run id: mutation}."""
    folder.mkdir(parents=True, exist_ok=True)
    clean = {ext: write_test_clip(folder.parent / f"clean.{ext}", N_FRAMES).read_bytes() for ext in ("webm", "mp4")}
    rng = np.random.default_rng(seed)
    kinds = {}
    for i in range(n):
        ext = ("webm", "mp4")[i % 2]
        kind, data = mutate(clean[ext], rng)
        name = f"fz{i:03d}_{kind}"
        (folder / f"{name}.{ext}").write_bytes(data)
        kinds[name] = kind
    return kinds


def run_fuzz(tmp_path: Path, n: int, timeout: int) -> dict:
    kinds = make_corpus(tmp_path / "clips", n)
    proc = subprocess.run(
        [sys.executable, "-m", "hoi_cli", "preprocess", str(tmp_path / "clips"), "--out", str(tmp_path / "runs"),
         "--until", "00_frames", "--keep-going", "--format", "json", "-q", "--max-side", "0"],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert len(summary["clips"]) == n
    outcomes = {"all frames": 0, "exit 3": 0}
    for rec in summary["clips"]:
        name = Path(rec["clip"]).stem
        if rec["ok"]:
            meta = json.loads((Path(rec["run"]) / "00_frames" / "meta.json").read_text())
            assert meta["n_frames"] == N_FRAMES, f"{name} ({kinds[name]}): {meta['n_frames']} of {N_FRAMES} frames"
            outcomes["all frames"] += 1
        else:
            assert rec["exit_code"] == 3 and "traceback" not in rec, f"{name} ({kinds[name]}): {rec}"
            outcomes["exit 3"] += 1
    assert proc.returncode == (3 if outcomes["exit 3"] else 0)
    # a failed clip leaves no folder holding only the lock and its failure record
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        Path(r["run"]).name for r in summary["clips"] if r["ok"])
    return outcomes


def test_fuzzed_clips_give_all_frames_or_a_clean_exit_3(tmp_path):
    outcomes = run_fuzz(tmp_path, 36, timeout=300)  # generous: a hang, not a busy machine, should fail it
    assert outcomes["exit 3"] > 0 and outcomes["all frames"] > 0  # the corpus exercises both


@pytest.mark.slow
def test_fuzz_300(tmp_path):
    run_fuzz(tmp_path, 300, timeout=900)
