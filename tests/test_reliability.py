"""Reliability: damaged clips, failures inside a batch, a full disk, corrupt caches, stale runs, one-line errors.

Every clip here is made in the test with PyAV (`write_test_clip`); damaged copies are made
by cutting or inserting bytes, as a broken download or copy does.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hoi_cli.cli import app
from hoi_cli.testing import write_test_clip

N = 16  # frames of every test clip
REPO = Path(__file__).resolve().parents[1]


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _summary(result) -> dict:
    return json.loads(result.stdout)


def _damaged(src: Path, dst: Path, how: str) -> Path:
    data = src.read_bytes()
    if how == "truncated":
        dst.write_bytes(data[: int(len(data) * 0.6)])
    else:  # bytes inserted in the middle, as a bad copy does
        mid = len(data) // 2
        dst.write_bytes(data[:mid] + bytes(range(37, 137)) + data[mid:])
    return dst


# ---------------------------------------------------------------- 1. damaged clips
@pytest.mark.parametrize("ext", ["webm", "mp4"])
@pytest.mark.parametrize("how", ["truncated", "inserted"])
def test_damaged_clip_exits_3_naming_the_frames_decoded(tmp_path, ext, how):
    clip = _damaged(write_test_clip(tmp_path / f"clean.{ext}", N), tmp_path / f"{how}.{ext}", how)
    r = _cli("preprocess", clip, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--format", "json")
    assert r.exit_code == 3, r.output
    rec = _summary(r)["clips"][0]
    assert rec["exit_code"] == 3 and f"of {N} frames" in rec["error"] and "decoded" in rec["error"]
    assert "--allow-short" in rec["hint"]
    assert not (tmp_path / "runs" / how).exists()  # no folder holding only .lock and .failed
    assert not (tmp_path / "runs" / f"{how}.failed.json").exists()  # a known error: the summary says it all


def test_allow_short_keeps_the_frames_that_decode_and_records_it(tmp_path):
    clean = write_test_clip(tmp_path / "clean.webm", N)
    data = clean.read_bytes()
    clip = tmp_path / "cut.webm"
    clip.write_bytes(data[: int(len(data) * 0.9)])
    r = _cli("preprocess", clip, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--format", "json",
             "--allow-short")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "runs" / "cut" / "00_frames" / "meta.json").read_text())
    assert meta["source"]["short"] is True and meta["source"]["frames_announced"] == N
    assert 0 < meta["n_frames"] == meta["source"]["frames_decoded"] < N
    assert _summary(r)["clips"][0]["stages"]["00_frames"]["summary"]["short"] is True
    manifest = json.loads((tmp_path / "runs" / "cut" / "00_frames" / "manifest.json").read_text())
    assert manifest["params"]["allow_short"] is True


def test_clean_clips_give_every_frame(tmp_path):
    for ext in ("webm", "mp4"):
        clip = write_test_clip(tmp_path / f"c_{ext}.{ext}", N)
        r = _cli("preprocess", clip, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--format", "json")
        assert r.exit_code == 0, r.output
        meta = json.loads((tmp_path / "runs" / f"c_{ext}" / "00_frames" / "meta.json").read_text())
        assert meta["n_frames"] == meta["source"]["frames_decoded"] == N and not meta["source"]["short"]


# ---------------------------------------------------------------- 6. rotation
@pytest.mark.parametrize("degrees,k", [(90, 1), (-90, -1)])
def test_rotation_is_applied_and_recorded(tmp_path, degrees, k):
    """A clip tagged with a display rotation (phones: portrait) comes out upright, as a player shows it."""
    clip = write_test_clip(tmp_path / "phone.mp4", 4, width=64, height=32, rotation=degrees)
    r = _cli("preprocess", clip, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--max-side", "0")
    assert r.exit_code == 0, r.output
    from hoi_cli.stages.frames import load_frames, load_meta
    from hoi_cli.video import iter_frames

    frames = load_frames(tmp_path / "runs" / "phone")
    meta = load_meta(tmp_path / "runs" / "phone")
    assert frames.shape[1:3] == (64, 32)  # (H, W): portrait
    assert (meta["width"], meta["height"]) == (32, 64) and meta["source"]["rotation"] == degrees % 360
    # the coded frame, turned by numpy the display matrix's way, is what 00_frames stored
    import av

    with av.open(str(clip)) as c:
        coded = next(c.decode(video=0)).to_ndarray(format="rgb24")
    np.testing.assert_array_equal(frames[0], np.rot90(coded, k))
    # the white block at the coded top-left ends where a player puts it
    bright = frames[0].mean(-1) > 200
    ys, xs = np.nonzero(bright)
    assert (ys.mean() > 32) == (k == 1) and (xs.mean() < 16) == (k == 1)
    assert len(list(iter_frames(clip))) == 4


# ---------------------------------------------------------------- 2. any exception is that clip's failure
def _break_probe_for(monkeypatch, name: str, exc: BaseException):
    import hoi_cli.stages.frames as frames_stage

    real = frames_stage.probe_clip

    def probe_clip(path, **kwargs):
        if Path(path).stem == name:
            raise exc
        return real(path, **kwargs)

    monkeypatch.setattr(frames_stage, "probe_clip", probe_clip)


@pytest.mark.parametrize("keep_going", [True, False])
def test_unexpected_error_is_the_clips_failure_and_the_summary_is_written(tmp_path, monkeypatch, keep_going):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_test_clip(clips / "a_bad.mp4", 4)
    write_test_clip(clips / "b_good.mp4", 4)
    _break_probe_for(monkeypatch, "a_bad", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))
    args = ["preprocess", clips, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--format", "json"]
    r = _cli(*args, *(["--keep-going"] if keep_going else []))
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: a_bad: unexpected UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff "
                      "in position 0: invalid start byte"]
    summary = _summary(r)
    bad = summary["clips"][0]
    assert bad["ok"] is False and bad["exit_code"] == 1 and "UnicodeDecodeError" in bad["traceback"]
    # the run folder held nothing but the lock and the failure: removed, the record kept beside it
    assert not (tmp_path / "runs" / "a_bad").exists()
    record = json.loads(Path(bad["failure_record"]).read_text())
    assert "UnicodeDecodeError" in record["traceback"] and "00_frames" in record["stages"]
    if keep_going:
        assert summary["n_ok"] == 1 and summary["clips"][1]["ok"]
    else:
        assert summary["n_skipped"] == 1 and len(summary["clips"]) == 1


def test_unexpected_error_in_an_existing_run_is_recorded_inside_it(tmp_path, monkeypatch):
    clip = write_test_clip(tmp_path / "take1.mp4", 4)
    out = tmp_path / "runs"
    assert _cli("preprocess", clip, "--out", out, "--until", "00_frames", "-q").exit_code == 0
    _break_probe_for(monkeypatch, "take1", RuntimeError("boom"))
    r = _cli("preprocess", clip, "--out", out, "--until", "00_frames", "-q", "--force", "00_frames")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stdout == ""  # one failed clip: the error and hint only, no table
    record = json.loads((out / "take1" / ".failed" / "clip.json").read_text())
    assert "RuntimeError: boom" in record["traceback"]
    assert (out / "take1" / "00_frames" / "manifest.json").exists()  # the finished stage is kept
    monkeypatch.undo()
    assert _cli("preprocess", clip, "--out", out, "--until", "00_frames", "-q", "--force", "00_frames").exit_code == 0
    assert not (out / "take1" / ".failed").exists()


# ---------------------------------------------------------------- 3. disk full
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/00_frames/frames/000003.png")


def test_disk_full_in_a_stage_is_exit_6_one_line(tmp_path, monkeypatch):
    import hoi_cli.stages.frames as frames_stage

    clip = write_test_clip(tmp_path / "take1.mp4", 4)
    monkeypatch.setattr(frames_stage, "write_image", _enospc)
    r = _cli("preprocess", clip, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--format", "json")
    assert r.exit_code == 6, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: take1: disk full writing /runs/x/00_frames/frames/000003.png")
    assert lines[1].startswith("hint: free some space") and len(lines) == 2
    assert _summary(r)["clips"][0]["exit_code"] == 6


def test_disk_full_anywhere_is_exit_6_through_the_entry_point(tmp_path, monkeypatch, capsys):
    import hoi_cli.pipeline as pl
    from hoi_cli import cli

    run = tmp_path / "run"
    (run / "00_frames").mkdir(parents=True)
    monkeypatch.setattr(pl, "run_status", _enospc)
    monkeypatch.setattr(cli, "_silence_native_logs", lambda: None)
    monkeypatch.setattr(sys, "argv", ["hoi", "status", str(run)])
    with pytest.raises(SystemExit) as info:
        cli.run()
    assert info.value.code == 6
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("error: disk full") and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_on_a_real_small_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        clip = write_test_clip(tmp_path / "take1.mp4", 24, width=160, height=120)
        r = subprocess.run([sys.executable, "-m", "hoi_cli", "preprocess", str(clip), "--out", str(mnt / "runs"),
                            "--until", "00_frames", "-q", "--max-side", "0"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 6, r.stderr
        assert "Traceback" not in r.stderr and r.stderr.splitlines()[0].startswith("error: take1: disk full")
        assert not list((mnt / "runs" / "take1").glob(".tmp-*"))  # the half-written stage is gone
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ---------------------------------------------------------------- 4. corrupt caches
def _flip_bytes(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    for i in (len(data) // 3, len(data) // 2, len(data) // 2 + 1, 2 * len(data) // 3):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_corrupt_cached_stage_is_seen_by_status_and_rerun_by_preprocess(tmp_path):
    clip = write_test_clip(tmp_path / "take1.mp4", 4)
    out = tmp_path / "runs"
    assert _cli("preprocess", clip, "--out", out, "--until", "00_frames", "-q").exit_code == 0
    manifest = json.loads((out / "take1" / "00_frames" / "manifest.json").read_text())
    assert all("mtime_ns" in e for e in manifest["outputs"].values())
    _flip_bytes(out / "take1" / "00_frames" / "frames" / "000002.png")
    st = _cli("status", out / "take1", "--format", "json")
    state = json.loads(st.stdout)["runs"][str(out / "take1")]["00_frames"]
    assert state["status"] == "stale" and "000002.png modified" in state["reason"]
    r = _cli("preprocess", clip, "--out", out, "--until", "00_frames", "-q", "--format", "json")
    assert r.exit_code == 0 and _summary(r)["clips"][0]["stages"]["00_frames"]["action"] == "ran"
    # same size and mtime (silent disk corruption): the cheap check trusts it, --verify re-hashes
    _flip_bytes(out / "take1" / "00_frames" / "frames" / "000001.png", keep_mtime=True)
    st = json.loads(_cli("status", out / "take1", "--format", "json").stdout)["runs"][str(out / "take1")]
    assert st["00_frames"]["status"] == "ok"
    st = json.loads(_cli("status", out / "take1", "--verify", "--format", "json").stdout)["runs"][str(out / "take1")]
    assert st["00_frames"]["status"] == "stale"


def test_copied_run_is_rehashed_once_and_then_checked_cheaply(tmp_path, monkeypatch):
    import shutil

    from hoi_cli import store as store_mod

    clip = write_test_clip(tmp_path / "take1.mp4", 4)
    assert _cli("preprocess", clip, "--out", tmp_path / "runs", "--until", "00_frames", "-q").exit_code == 0
    shutil.copytree(tmp_path / "runs", tmp_path / "copy")  # new mtimes, same bytes
    os.utime(tmp_path / "copy" / "take1" / "00_frames" / "meta.json", ns=(1, 1))
    hashed = []
    real = store_mod.file_digest
    monkeypatch.setattr(store_mod, "file_digest", lambda p: hashed.append(Path(p).name) or real(p))
    r = _cli("preprocess", clip, "--out", tmp_path / "copy", "--until", "00_frames", "-q", "--format", "json")
    assert _summary(r)["clips"][0]["stages"]["00_frames"]["action"] == "cached"
    assert "meta.json" in hashed
    hashed.clear()
    r = _cli("preprocess", clip, "--out", tmp_path / "copy", "--until", "00_frames", "-q", "--format", "json")
    assert _summary(r)["clips"][0]["stages"]["00_frames"]["action"] == "cached"
    assert "meta.json" not in hashed  # the manifest took the new mtime under the lock


# ---------------------------------------------------------------- 5. generate: lock, staleness, 07_genhoi
@pytest.fixture
def synthetic_run(tmp_path):
    from hoi_cli.testing import make_synthetic_run

    run = tmp_path / "run"
    make_synthetic_run(run, n_frames=6, width=96, height=72, object_radius_px=60, square_box_px=128)
    return run


def _generate(run, out, *extra):
    return _cli("generate", run, "--reference-from-frame", 2, "--out", out, "-q", "--format", "json", *extra)


def test_generate_refuses_stale_and_manifestless_stages(synthetic_run, tmp_path):
    from hoi_cli.pipeline import get_stage
    from hoi_cli.store import RunStore

    r = _generate(synthetic_run, tmp_path / "ok.mp4")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "ok.json").read_text())
    assert side["run"]["stale"] == {} and side["run"]["object_removal"] == "computed"
    # 01_detect made again with other parameters: 02 and 03 were built on the old one
    det = get_stage("01_detect")
    np.savez(synthetic_run / "01_detect" / "extra.npz", x=np.ones(1))
    RunStore(synthetic_run).adopt(det)
    r = _generate(synthetic_run, tmp_path / "stale.mp4")
    assert r.exit_code == 3 and "02_hands is stale" in r.stderr and "--allow-stale" in r.stderr
    assert not (tmp_path / "stale.mp4").exists()
    r = _generate(synthetic_run, tmp_path / "forced.mp4", "--allow-stale")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "forced.json").read_text())
    assert side["run"]["allow_stale"] is True and "upstream 01_detect changed" in side["run"]["stale"]["02_hands"]
    (synthetic_run / "01_detect" / "extra.npz").unlink()
    RunStore(synthetic_run).adopt(det)  # back as it was: fresh again
    assert _generate(synthetic_run, tmp_path / "again.mp4").exit_code == 0
    (synthetic_run / "03_segment" / "manifest.json").unlink()
    r = _generate(synthetic_run, tmp_path / "nomanifest.mp4")
    assert r.exit_code == 3 and "03_segment has no manifest" in r.stderr


def test_generate_on_corrupt_outputs_is_a_clean_error(synthetic_run, tmp_path):
    masks = synthetic_run / "03_segment" / "masks.npz"
    original = masks.stat()
    _flip_bytes(masks)
    r = _generate(synthetic_run, tmp_path / "a.mp4")
    assert r.exit_code == 3 and "03_segment is stale: outputs changed on disk: masks.npz" in r.stderr
    _flip_bytes(masks)  # back to the original bytes; now damage it behind the cheap check's back
    data = bytearray(masks.read_bytes())
    data[30:60] = b"\0" * 30
    masks.write_bytes(bytes(data))
    os.utime(masks, ns=(original.st_atime_ns, original.st_mtime_ns))
    r = _generate(synthetic_run, tmp_path / "b.mp4")
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output and "cannot be read" in r.stderr and "BadZipFile" in r.stderr


def test_generate_takes_the_run_lock_for_reading(synthetic_run, tmp_path):
    from hoi_cli.store import RunStore

    with RunStore(synthetic_run):  # a preprocess writing the run
        r = _generate(synthetic_run, tmp_path / "a.mp4")
    assert r.exit_code == 5 and "being written" in r.stderr
    reader = RunStore(synthetic_run)
    reader.acquire_lock(shared=True)  # another generate reading it: fine for generate, not for a writer
    try:
        assert _generate(synthetic_run, tmp_path / "b.mp4").exit_code == 0
        from hoi_cli.errors import RunLockedError

        with pytest.raises(RunLockedError):
            RunStore(synthetic_run).acquire_lock()
    finally:
        reader.release_lock()


def test_generate_reuses_07_genhoi_only_when_fresh(synthetic_run, tmp_path):
    from hoi_cli.pipeline import get_stage
    from hoi_cli.store import RunStore

    genhoi = get_stage("07_genhoi")
    with RunStore(synthetic_run) as store:
        store.run_stage(genhoi, genhoi.Params())
    r = _generate(synthetic_run, tmp_path / "a.mp4")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["run"]["object_removal"] == "07_genhoi" and "07_genhoi" in side["run"]["stages"]
    seg = get_stage("03_segment")
    manifest = json.loads((synthetic_run / "03_segment" / "manifest.json").read_text())
    RunStore(synthetic_run).adopt(seg, seg.Params(**{k: v for k, v in manifest["params"].items()}))
    np.savez(synthetic_run / "03_segment" / "extra.npz", x=np.zeros(1))  # 03 changed: 07 is stale now
    RunStore(synthetic_run).adopt(seg, seg.Params(**{k: v for k, v in manifest["params"].items()}))
    r = _generate(synthetic_run, tmp_path / "b.mp4")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "b.json").read_text())
    assert side["run"]["object_removal"] == "computed" and "upstream 03_segment changed" in side["run"]["stale"]["07_genhoi"]


# ---------------------------------------------------------------- 7. reproducible outputs
def _encode_in_subprocess(path: Path, cpus: set[int]) -> bytes:
    code = ("import os, sys, numpy as np\n"
            f"os.sched_setaffinity(0, {sorted(cpus)!r})\n"
            "from hoi_cli.video import write_video\n"
            "rng = np.random.default_rng(0)\n"
            "base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)\n"
            "write_video(sys.argv[1], [np.roll(base, 3 * t, axis=1) for t in range(30)], 10)\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return path.read_bytes()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to vary the encoder's threads")
def test_same_frames_give_the_same_mp4_bytes_on_any_number_of_cpus(tmp_path):
    """x264 takes its thread count from the CPUs the process may use, and its output depends on it."""
    cpus = os.sched_getaffinity(0)
    one = _encode_in_subprocess(tmp_path / "one.mp4", {min(cpus)})
    all_ = _encode_in_subprocess(tmp_path / "all.mp4", cpus)
    again = _encode_in_subprocess(tmp_path / "again.mp4", cpus)
    assert one == all_ == again


# ---------------------------------------------------------------- 8/9. error lines, status, eval
def test_error_lines_never_wrap_in_a_log(tmp_path):
    long_name = "a_clip_with_a_rather_long_name_" * 6 + ".mp4"
    r = subprocess.run([sys.executable, "-m", "hoi_cli", "preprocess", str(tmp_path / long_name), "--out",
                        str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"})
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("error: ") and long_name in lines[0] and lines[1].startswith("hint: ")
    assert r.stdout == ""  # one clip: no table


def test_status_on_a_missing_path_is_exit_3(tmp_path):
    r = _cli("status", tmp_path / "nope")
    assert r.exit_code == 3 and "not found" in r.stderr


def test_eval_checks_its_output_folder_before_computing(tmp_path, monkeypatch):
    import hoi_cli.metrics.evaluate as ev

    clip = write_test_clip(tmp_path / "a.mp4", 4)
    (tmp_path / "taken").write_text("a file")
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("metrics computed before the check"))
    r = _cli("eval", "--generated", clip, "--reference", clip, "--out", tmp_path / "taken", "--metrics", "psnr")
    assert r.exit_code == 6 and "is a file" in r.stderr


def test_eval_on_a_damaged_clip_offers_no_flag_it_lacks(tmp_path):
    clean = write_test_clip(tmp_path / "a.webm", N)
    bad = _damaged(clean, tmp_path / "bad.webm", "truncated")
    r = _cli("eval", "--generated", bad, "--reference", clean, "--metrics", "psnr")
    assert r.exit_code == 3, r.output
    assert "decoded" in r.stderr and "--end" not in r.stderr and "--allow-short" not in r.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to vary the encoder's threads")
def test_rerunning_a_stage_with_a_preview_video_keeps_downstream_fresh(tmp_path):
    """`--force` on a stage whose arrays come out the same must not make the stages after it stale,
    even on a machine (here: a CPU set) that encodes its preview mp4 with other threads."""
    import types
    from dataclasses import dataclass

    from hoi_cli.store import RunStore
    from hoi_cli.video import write_video

    @dataclass
    class Params:
        n: int = 12

    def run_upstream(ctx):
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (ctx.params.n, 120, 160, 3), dtype=np.uint8)
        np.savez(ctx.out_dir / "arrays.npz", frames=frames)
        write_video(ctx.out_dir / "preview.mp4", list(frames), 10)
        return {}

    up = types.SimpleNamespace(NAME="02_up", VERSION="1", DEPENDS_ON=(), Params=Params, run=run_upstream)
    down = types.SimpleNamespace(NAME="03_down", VERSION="1", DEPENDS_ON=("02_up",), Params=Params,
                                 run=lambda ctx: (ctx.out_dir / "x.txt").write_text("x") and {})
    cpus = os.sched_getaffinity(0)
    try:
        with RunStore(tmp_path / "run") as store:
            first = store.run_stage(up, Params())
            store.run_stage(down, Params())
            os.sched_setaffinity(0, {min(cpus)})
            again = store.run_stage(up, Params())  # the forced rerun
            states = {"02_up": store.state(up, Params())}
            assert store.state(down, Params(), upstream_states=states).status == "ok"
    finally:
        os.sched_setaffinity(0, cpus)
    assert again["outputs"]["preview.mp4"]["sha256"] == first["outputs"]["preview.mp4"]["sha256"]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_writes_the_summary_of_finished_clips(tmp_path, monkeypatch, how):
    import signal

    import hoi_cli.stages.frames as frames_stage

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a1", "b2", "c3"):
        write_test_clip(clips / f"{name}.mp4", 4)
    real = frames_stage.probe_clip

    def probe_clip(path, **kwargs):
        if Path(path).stem == "b2":
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # SLURM's time limit
            raise KeyboardInterrupt
        return real(path, **kwargs)

    monkeypatch.setattr(frames_stage, "probe_clip", probe_clip)
    before = signal.getsignal(signal.SIGTERM)
    r = _cli("preprocess", clips, "--out", tmp_path / "runs", "--until", "00_frames", "-q", "--format", "json",
             "--keep-going")
    assert signal.getsignal(signal.SIGTERM) == before
    assert r.exit_code == 130, r.output
    summary = _summary(r)
    assert [c["ok"] for c in summary["clips"]] == [True, False] and summary["n_skipped"] == 1
    assert summary["clips"][1]["error"] == "interrupted"
    assert (tmp_path / "runs" / "a1" / "00_frames" / "manifest.json").exists()


def test_generate_batch_row_with_an_unexpected_error_fails_alone(synthetic_run, tmp_path, monkeypatch):
    import hoi_cli.generate.run as gen_run

    real = gen_run.generate

    def generate(run, out, **kw):
        if Path(out).stem == "bad":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return real(run, out, **kw)

    monkeypatch.setattr(gen_run, "generate", generate)
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"run,reference,out\n{synthetic_run},frame:1,bad.mp4\n{synthetic_run},frame:2,good.mp4\n")
    r = _cli("generate", "--batch", csv, "--out-dir", tmp_path / "gen", "--format", "json", "-q")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.stderr
    summary = _summary(r)
    assert [x["ok"] for x in summary["results"]] == [False, True]
    assert "UnicodeDecodeError" in summary["results"][0]["traceback"] and summary["results"][0]["exit_code"] == 1
    assert "hint: this is a bug in hoi" in r.stderr  # the failed row's hint line, as a clip's in `hoi preprocess`


def test_generate_batch_stopped_by_sigterm_keeps_the_rows_done_and_exits_130(synthetic_run, tmp_path, monkeypatch):
    """SLURM's time limit sends SIGTERM: the batch ends like Ctrl-C, with its summary and the rows done."""
    import signal

    import hoi_cli.generate.run as gen_run

    real = gen_run.generate

    def generate(run, out, **kw):
        if Path(out).stem == "second":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(run, out, **kw)

    monkeypatch.setattr(gen_run, "generate", generate)
    csv = tmp_path / "pairs.csv"
    csv.write_text("run,reference,out\n" + "".join(f"{synthetic_run},frame:1,{n}.mp4\n" for n in ("first", "second", "third")))
    before = signal.getsignal(signal.SIGTERM)
    r = _cli("generate", "--batch", csv, "--out-dir", tmp_path / "gen", "--format", "json", "-q")
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    assert r.exit_code == 130, r.output
    summary = _summary(r)
    assert [x["ok"] for x in summary["results"]] == [True, False] and summary["results"][1]["error"] == "interrupted"
    assert (tmp_path / "gen" / "first.mp4").exists() and not (tmp_path / "gen" / "third.mp4").exists()


def test_a_damaged_frame_rate_does_not_shrink_the_announced_count():
    """A fuzzed MP4 (one flipped byte) announced 16 frames at 4/60075 fps over 1.33 s; the edit-list
    cap (duration x fps) then expected 1 frame and accepted 1 decoded frame of 16 in silence."""
    from fractions import Fraction
    from types import SimpleNamespace

    from hoi_cli.video import _announced_frames

    stream = SimpleNamespace(average_rate=Fraction(4, 60075), guessed_rate=None, base_rate=None, frames=16,
                             duration=16384, time_base=Fraction(1, 12288), metadata={})
    container = SimpleNamespace(streams=[stream], duration=1_333_333)
    fps, duration, expected, exact, own = _announced_frames(container, stream)
    assert (expected, exact, own) == (16, True, True)
    assert fps == pytest.approx(12.0)
    # a sound header keeps its own rate and the edit-list cap (15 shown of 16 stored samples)
    sound = SimpleNamespace(**{**vars(stream), "average_rate": Fraction(12), "duration": 15 * 1024})
    assert _announced_frames(container, sound)[2] == 15
