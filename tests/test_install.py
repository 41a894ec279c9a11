"""Any install finds the recipes and assets: they are package data, found through hoi_cli/resources.py.

The wheel is built from a copy of the source (no dependency is installed: ``--no-deps
--no-build-isolation --no-index``), inspected, unpacked, and imported from another folder in a
subprocess, so a recipe or asset left out of the package data fails here, not on a user's machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hoi_cli"
SHIPPED = sorted(str(p.relative_to(REPO)) for d in ("recipes", "assets/hand_model", "assets/sample")
                 for p in (PACKAGE / d).iterdir() if p.is_file())

_PROBE = """
import json, numpy as np
import hoi_cli
from hoi_cli.pipeline import list_recipes, load_recipe
from hoi_cli.handmodel.mano_io import resolve_model_file
from hoi_cli.sample import SAMPLE_CLIP, SAMPLE_REFERENCE
path, kind = resolve_model_file("right")
with np.load(path, allow_pickle=False) as z:
    n_vertices = len(z["v_template"])
print(json.dumps({"package": hoi_cli.__file__, "recipes": list_recipes(), "full": load_recipe("full").stages,
                  "hand": str(path), "kind": kind, "n_vertices": n_vertices,
                  "sample": [str(SAMPLE_CLIP), SAMPLE_CLIP.stat().st_size, str(SAMPLE_REFERENCE)]}))
"""


def test_package_data_lists_what_is_shipped():
    """The folders hold what the wheel must carry (a moved or renamed asset shows up here first)."""
    assert {"hoi_cli/recipes/full.toml", "hoi_cli/assets/hand_model/MANO_RIGHT.npz",
            "hoi_cli/assets/hand_model/MANO_LEFT.npz", "hoi_cli/assets/sample/hands_box.mp4",
            "hoi_cli/assets/sample/reference_mug.png"} <= set(SHIPPED)
    assert not (REPO / "pipelines").exists() and not (REPO / "assets").exists()


def test_wheel_carries_recipes_and_assets_and_runs_from_elsewhere(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "hoi_cli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("hoi-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = [f for f in SHIPPED if f not in names]
        assert not missing, f"not in the wheel: {missing}"
        assert zf.read("hoi_cli/assets/hand_model/MANO_RIGHT.npz") == (PACKAGE / "assets/hand_model/MANO_RIGHT.npz").read_bytes()
        zf.extractall(tmp_path / "unpacked")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HOI_PIPELINES_DIR", "HOI_MANO_DIR")}
    env["PYTHONPATH"] = str(tmp_path / "unpacked")
    run = subprocess.run([sys.executable, "-c", _PROBE], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    unpacked = str(tmp_path / "unpacked" / "hoi_cli")
    assert got["package"].startswith(unpacked)  # the unpacked copy, not the checkout
    assert got["recipes"] == sorted(p.stem for p in (PACKAGE / "recipes").glob("*.toml"))
    assert got["full"][0] == "00_frames" and got["full"][-1] == "07_genhoi"
    assert got["hand"].startswith(unpacked) and got["kind"] == "builtin" and got["n_vertices"] > 700
    assert got["sample"][0].startswith(unpacked) and got["sample"][1] > 10_000


def test_pipelines_dir_env_still_replaces_the_recipes(tmp_path, monkeypatch):
    from hoi_cli.pipeline import list_recipes, load_recipe

    (tmp_path / "mine.toml").write_text('name = "mine"\nstages = ["00_frames"]\n')
    monkeypatch.setenv("HOI_PIPELINES_DIR", str(tmp_path))
    assert list_recipes() == ["mine"]
    assert load_recipe("mine").stages == ["00_frames"]


def test_hand_model_build_names_the_extra_it_needs(monkeypatch):
    """Without scikit-image the build stops with one line and ``pip install "hoi[build-hand]"``."""
    import importlib.util

    from hoi_cli.errors import HoiError
    from hoi_cli.handmodel import build

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(HoiError) as exc:
        build.check_build_dependencies()
    assert "scikit-image" in exc.value.message and 'pip install "hoi[build-hand]"' in exc.value.hint
    # and that extra (with what it pulls in) really holds every library the build checks for
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["build-hand"] + extras["mesh"]
    names = {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}
    assert set(build.BUILD_MODULES.values()) <= names


def test_env_reports_the_torch_build_and_the_gpu():
    torch = pytest.importorskip("torch")
    from typer.testing import CliRunner

    from hoi_cli.cli import app

    r = CliRunner().invoke(app, ["env", "--format", "json"])
    assert r.exit_code == 0, r.output
    devices = json.loads(r.stdout)["devices"]
    expected = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    if getattr(torch.version, "hip", None):
        expected = f"ROCm {torch.version.hip}"
    assert devices["torch_build"] == expected
    assert devices["cuda"] == torch.cuda.is_available()
    assert ("note" in devices) == bool(torch.version.cuda and not torch.cuda.is_available())
