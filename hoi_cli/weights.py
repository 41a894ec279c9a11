"""Where model files are found.

Lookup order for a file: an explicit per-model path (a flag), then each folder of
``--weights-dir`` / ``HOI_WEIGHTS_DIR`` (``os.pathsep``-separated), then ``~/.cache/hoi/weights``.
A missing file raises `MissingWeightsError` naming the file and every place looked in.
Nothing is downloaded here; `hoi weights get NAME` (hoi_cli/download.py) writes into the first
of those folders when asked.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingWeightsError

ENV_VAR = "HOI_WEIGHTS_DIR"
DEFAULT_DIR = Path.home() / ".cache" / "hoi" / "weights"


def weights_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for weight files, in order."""
    dirs: list[Path] = []
    if weights_dir:
        dirs += [Path(p).expanduser() for p in str(weights_dir).split(os.pathsep) if p]
    env = os.environ.get(ENV_VAR)
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs.append(DEFAULT_DIR)
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_weights(filename: str, *, what: str, explicit: str | Path | None = None,
                 weights_dir: str | Path | None = None, hint: str = "") -> Path:
    """Resolve a weights file or raise `MissingWeightsError`.

    ``filename`` may hold alternatives separated by ``|`` (the first found wins).
    """
    if explicit:
        path = Path(explicit).expanduser()
        if path.exists():
            return path
        raise MissingWeightsError(what, str(path), [str(path.parent)], hint)
    names = filename.split("|")
    dirs = weights_dirs(weights_dir)
    for d in dirs:
        for name in names:
            if (d / name).exists():
                return d / name
    raise MissingWeightsError(what, names[0], [str(d) for d in dirs], hint)


def weights_report(weights_dir: str | Path | None = None) -> dict:
    """For `hoi env`: the folders searched and the known files found in them."""
    from .model_files import KNOWN_WEIGHTS

    report = {"search_path": [str(d) for d in weights_dirs(weights_dir)], "files": {}}
    for key, (filename, what) in KNOWN_WEIGHTS.items():
        try:
            report["files"][key] = {"what": what, "path": str(find_weights(filename, what=what,
                                                                             weights_dir=weights_dir))}
        except MissingWeightsError:
            report["files"][key] = {"what": what, "path": None, "expected": filename.split("|")[0]}
    return report


def download_dir(weights_dir: str | Path | None = None) -> Path:
    """Where `hoi weights get` writes: the first folder of --weights-dir / HOI_WEIGHTS_DIR, else the default."""
    return weights_dirs(weights_dir)[0]


def locate(entry, weights_dir: str | Path | None = None) -> Path | None:
    """Where a registry entry's file (or folder) is found, or None."""
    own = os.environ.get(entry.env_dir) if entry.env_dir else None
    if own:
        weights_dir = os.pathsep.join([own, str(weights_dir)]) if weights_dir else own
    try:
        return find_weights(entry.filename, what=entry.purpose, weights_dir=weights_dir)
    except MissingWeightsError:
        return None
