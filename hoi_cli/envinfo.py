"""What `hoi env` reports: versions, devices, offscreen rendering, weights."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

from . import __version__

PACKAGES = ("numpy", "torch", "torchvision", "mediapipe", "opencv-contrib-python", "av", "smplx", "trimesh",
            "pyrender", "PyOpenGL", "segment-anything", "typer", "rich", "safetensors", "diffusers",
            "huggingface-hub")

_RENDER_PROBE = """
import os, sys
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
import numpy as np, pyrender, trimesh
r = pyrender.OffscreenRenderer(8, 8)
s = pyrender.Scene()
s.add(pyrender.Mesh.from_trimesh(trimesh.creation.box()))
s.add(pyrender.PerspectiveCamera(yfov=1.0), pose=np.array([[1,0,0,0],[0,1,0,0],[0,0,1,3],[0,0,0,1.]]))
color, depth = r.render(s)
from OpenGL import GL
print(GL.glGetString(GL.GL_RENDERER).decode())
r.delete()
"""


def offscreen_rendering(timeout: float = 60.0) -> dict:
    """Try a tiny pyrender render in a subprocess (a broken GL stack cannot take us down)."""
    platform_ = os.environ.get("PYOPENGL_PLATFORM", "egl")
    try:
        proc = subprocess.run([sys.executable, "-c", _RENDER_PROBE], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "PYOPENGL_PLATFORM": platform_})
    except subprocess.TimeoutExpired:
        return {"available": False, "platform": platform_, "error": "timed out"}
    if proc.returncode == 0:
        return {"available": True, "platform": platform_, "renderer": proc.stdout.strip().splitlines()[-1]}
    lines = (proc.stderr.strip() or "unknown error").splitlines()
    return {"available": False, "platform": platform_, "error": lines[-1][:200],
            "hint": "install Mesa's EGL (libegl1, libgl1-mesa-dri) or use a GPU driver with EGL"}


def torch_devices() -> dict:
    """The torch build (CUDA or CPU-only) and whether a GPU is seen.

    A CUDA build on a machine without a GPU is what a plain ``pip install torch`` gives on
    Linux (several GB of CUDA libraries that go unused); the README says how to install the
    CPU-only build instead.
    """
    try:
        import torch
    except ImportError:
        return {"torch_build": "not installed", "cuda": False}
    cuda_version = torch.version.cuda  # None on a CPU-only (or ROCm) build
    hip_version = getattr(torch.version, "hip", None)
    build = f"CUDA {cuda_version}" if cuda_version else (f"ROCm {hip_version}" if hip_version else "CPU-only")
    devices = {"torch_build": build, "cuda": torch.cuda.is_available()}
    if devices["cuda"]:
        devices["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    elif cuda_version:
        devices["note"] = "CUDA build of torch but no GPU is seen (a CPU-only torch is much smaller; see README)"
    return devices


def collect_env(weights_dir: str | None = None) -> dict:
    from .weights import weights_report

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = torch_devices()
    from .pipeline import available_stages, list_recipes

    return {
        "hoi": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "devices": devices,
        "offscreen_rendering": offscreen_rendering(),
        "stages": available_stages(),
        "pipelines": list_recipes(),
        "weights": weights_report(weights_dir),
    }
