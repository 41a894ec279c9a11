"""Files that ship inside the package: the recipes and the built-in assets.

One place resolves them, through `importlib.resources`, so an editable install, ``pip install .``
and a wheel all find the same files (a path computed from a repository root does not exist in
site-packages). ``HOI_PIPELINES_DIR`` replaces the recipe folder.

    hoi_cli/recipes/*.toml           the pipelines (`--pipeline NAME`)
    hoi_cli/assets/hand_model/       the built-in MANO-format hand (MANO_RIGHT.npz, MANO_LEFT.npz)
    hoi_cli/assets/sample/           the quick start's clip and reference image
"""

from __future__ import annotations

import atexit
import contextlib
import os
from importlib import resources
from pathlib import Path

PIPELINES_ENV = "HOI_PIPELINES_DIR"

_extracted = contextlib.ExitStack()  # only used when the package is not a folder on disk (a zip import)
atexit.register(_extracted.close)


def package_path(*parts: str) -> Path:
    """A file or folder shipped inside ``hoi_cli``, as a real path on disk."""
    item = resources.files("hoi_cli").joinpath(*parts)
    if isinstance(item, Path):
        return item
    return _extracted.enter_context(resources.as_file(item))


def recipes_dir() -> Path:
    """The folder of pipeline recipes: ``$HOI_PIPELINES_DIR``, else the package's own."""
    env = os.environ.get(PIPELINES_ENV)
    return Path(env).expanduser() if env else package_path("recipes")


def hand_model_dir() -> Path:
    """The built-in hand model's folder (MANO_RIGHT.npz, MANO_LEFT.npz, build_info.json)."""
    return package_path("assets", "hand_model")


def sample_dir() -> Path:
    """The bundled sample clip and reference image."""
    return package_path("assets", "sample")
