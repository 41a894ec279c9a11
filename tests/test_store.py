"""The store: atomic commits, fingerprints and staleness, locks, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from dataclasses import dataclass

import numpy as np
import pytest

from hoi_cli.errors import RunLockedError
from hoi_cli.store import MANIFEST, RunStore, file_digest


def make_stage(name: str, depends_on=(), version: str = "1", fail: bool = False, n_files: int = 3):
    """A tiny stage module: writes ``n_files`` arrays derived from its params and upstream digests."""

    @dataclass
    class Params:
        scale: float = 1.0

    def run(ctx):
        if fail:
            raise RuntimeError("boom")
        base = sum(len(json.loads((ctx.input_dir(d) / MANIFEST).read_text())["output_digest"]) for d in depends_on)
        for i in range(n_files):
            np.save(ctx.out_dir / f"a{i}.npy", np.arange(4) * ctx.params.scale + base + i)
        return {"n": n_files}

    mod = types.ModuleType(f"stage_{name}")
    mod.NAME, mod.VERSION, mod.DEPENDS_ON, mod.Params, mod.run = name, version, tuple(depends_on), Params, run
    return mod


A = make_stage("00_a")
B = make_stage("01_b", depends_on=("00_a",))


def test_commit_writes_manifest_with_hashes(tmp_path):
    with RunStore(tmp_path / "run") as store:
        m = store.run_stage(A, A.Params())
    folder = tmp_path / "run" / "00_a"
    assert (folder / MANIFEST).exists()
    assert set(m["outputs"]) == {"a0.npy", "a1.npy", "a2.npy"}
    assert m["outputs"]["a1.npy"]["sha256"] == file_digest(folder / "a1.npy")
    assert m["summary"] == {"n": 3}
    assert m["params"] == {"scale": 1.0}
    assert "numpy" in m["packages"] and m["packages"]["hoi"]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_up_to_date_then_stale_on_params_and_upstream(tmp_path):
    with RunStore(tmp_path / "run") as store:
        store.run_stage(A, A.Params())
        store.run_stage(B, B.Params())
        assert store.state(A, A.Params()).status == "ok"
        assert store.state(B, B.Params()).status == "ok"
        changed = store.state(A, A.Params(scale=2.0))
        assert changed.status == "stale" and "scale: 1.0 -> 2.0" in changed.reason
        store.run_stage(A, A.Params(scale=2.0))  # upstream outputs change
        b = store.state(B, B.Params())
        assert b.status == "stale" and "upstream 00_a changed" in b.reason
        newer = make_stage("00_a", version="2")
        assert "stage version 1 -> 2" in store.state(newer, newer.Params(scale=2.0)).reason


def test_failed_stage_keeps_previous_output(tmp_path):
    with RunStore(tmp_path / "run") as store:
        store.run_stage(A, A.Params())
        before = (tmp_path / "run" / "00_a" / MANIFEST).read_text()
        with pytest.raises(RuntimeError):
            store.run_stage(make_stage("00_a", fail=True), A.Params())
        assert (tmp_path / "run" / "00_a" / MANIFEST).read_text() == before
        state = store.state(A, A.Params())
        assert state.status == "failed" and "boom" in state.reason and "previous output kept" in state.reason
        store.run_stage(A, A.Params())
        assert store.state(A, A.Params()).status == "ok"
    assert not list((tmp_path / "run").glob(".tmp-*"))


def test_lock_excludes_a_second_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from hoi_cli.store import RunStore
        s = RunStore({str(tmp_path / 'run')!r}); s.acquire_lock(); print('locked', flush=True); time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
            RunStore(tmp_path / "run").acquire_lock()
    finally:
        holder.kill()
        holder.wait()
    with RunStore(tmp_path / "run"):  # the OS released the dead process's lock
        pass


def test_interrupted_swap_restores_old_folder(tmp_path):
    """A crash between moving the old folder aside and moving the new one in loses nothing."""
    with RunStore(tmp_path / "run") as store:
        store.run_stage(A, A.Params())
    run = tmp_path / "run"
    os.rename(run / "00_a", run / ".old-00_a-999-abcd1234")
    (run / ".tmp-00_a-999-ffff0000").mkdir()  # a half-written temp folder
    with RunStore(run) as store:
        assert store.state(A, A.Params()).status == "ok"
    assert not [p for p in run.iterdir() if p.name.startswith((".tmp-", ".old-"))]


SLOW_STAGE = textwrap.dedent("""
    import sys, time, types
    from dataclasses import dataclass
    import numpy as np
    from hoi_cli.store import RunStore

    @dataclass
    class Params:
        n: int = 20

    def run(ctx):
        for i in range(ctx.params.n):
            np.save(ctx.out_dir / f"f{i:03d}.npy", np.full(1000, i))
            time.sleep(float(sys.argv[2]))
        return {}

    mod = types.ModuleType("slow")
    mod.NAME, mod.VERSION, mod.DEPENDS_ON, mod.Params, mod.run = "00_slow", "1", (), Params, run
    with RunStore(sys.argv[1]) as store:
        store.run_stage(mod, Params())
    """)


def test_sigkill_mid_stage_then_rerun_completes_identically(tmp_path):
    script = tmp_path / "slow_stage.py"
    script.write_text(SLOW_STAGE)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run), "0.05"])
    deadline = time.time() + 60
    while time.time() < deadline:
        tmps = list(run.glob(".tmp-00_slow-*")) if run.exists() else []
        if tmps and len(list(tmps[0].glob("*.npy"))) >= 3:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "00_slow").exists(), "a killed stage must not look complete"
    subprocess.run([sys.executable, str(script), str(run), "0"], check=True)
    clean = tmp_path / "clean"
    subprocess.run([sys.executable, str(script), str(clean), "0"], check=True)
    m1 = json.loads((run / "00_slow" / MANIFEST).read_text())
    m2 = json.loads((clean / "00_slow" / MANIFEST).read_text())
    assert m1["output_digest"] == m2["output_digest"]
    assert not list(run.glob(".tmp-*"))


def test_verify_catches_modified_outputs(tmp_path):
    with RunStore(tmp_path / "run") as store:
        store.run_stage(A, A.Params())
    np.save(tmp_path / "run" / "00_a" / "a0.npy", np.zeros(4))
    assert RunStore(tmp_path / "run").verify("00_a") == ["a0.npy modified"]
