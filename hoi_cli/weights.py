"""Where model files are found, and `hoi weights get`'s downloads (only when asked).

Lookup order for a file: an explicit per-model path (a flag), then each folder of
``--weights-dir`` / ``HOI_WEIGHTS_DIR`` (``os.pathsep``-separated), then ``~/.cache/hoi/weights``.
A missing file raises `MissingWeightsError` naming the file and every place looked in.
Nothing is downloaded unless `hoi weights get NAME` (`fetch`) is run; it writes into the first
of those folders.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path
from typing import Callable

from .errors import ExitCode, HoiError, MissingWeightsError, OutputError

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


# ---------------------------------------------------------------- `hoi weights get`: asked-for downloads only
MIRROR_ENV = "HOI_WEIGHTS_MIRROR"  # a base URL holding the same file names (a mirror; the tests' local server)
CHUNK = 1 << 20


class DownloadError(HoiError):
    """A download that did not end with a checked file in place (offline, refused, torn, wrong checksum)."""

    exit_code = ExitCode.MISSING_WEIGHTS


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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(entry, weights_dir: str | Path | None = None, *, progress: Callable[[int, int | None], None] | None = None,
          mirror: str | None = None, hf_endpoint: str | None = None, timeout: float = 30.0) -> tuple[Path, str]:
    """Make sure ``entry`` is present: ``(path, "present" | "downloaded")``.

    Raises `MissingWeightsError` for a file that must be obtained by hand (its hint says how)
    and `DownloadError` when a download fails; nothing half-written is ever left under the
    final name.
    """
    found = locate(entry, weights_dir)
    if found is not None:
        return found, "present"
    dest_dir = download_dir(weights_dir)
    if entry.manual:
        raise MissingWeightsError(entry.purpose, entry.expected_name, [str(d) for d in weights_dirs(weights_dir)],
                                  entry.manual if entry.page in entry.manual else f"{entry.manual}; {entry.page}")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the weights folder {dest_dir}: {exc.strerror or exc}",
                          f"set {ENV_VAR} to a writable folder") from None
    if entry.hf_repo:
        return _snapshot(entry, dest_dir, hf_endpoint), "downloaded"
    base = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    url = f"{base.rstrip('/')}/{entry.expected_name}" if base else entry.url
    dest = dest_dir / entry.expected_name
    download_file(url, dest, sha256=entry.sha256, sha256_prefix=entry.sha256_prefix, progress=progress,
                  timeout=timeout)
    return dest, "downloaded"


def download_file(url: str, dest: Path, *, sha256: str = "", sha256_prefix: str = "",
                  progress: Callable[[int, int | None], None] | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a previous ``.part`` (HTTP Range).

    The file is moved into place only after its size matches the server's and its sha256 (or
    the sha256 prefix) matches; a torn download stays ``.part`` and the next call resumes it;
    a wrong checksum deletes the ``.part`` (resuming would keep the bad bytes).
    """
    import urllib.error
    import urllib.request

    part = dest.with_name(dest.name + ".part")
    by_hand = f"download it by hand from {url} and save it as {dest}"
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "hoi-weights", **({"Range": f"bytes={have}-"} if have else {})}
    total: int | None = None
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        content_range = exc.headers.get("Content-Range", "") if exc.headers else ""
        if exc.code == 416 and have and content_range.endswith(f"/{have}"):  # the .part is already whole
            resp, total = None, have
        else:
            if exc.code == 416:  # a .part longer than the file: start again
                part.unlink(missing_ok=True)
            raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}", by_hand) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot reach {url} ({reason})", f"check the connection, or {by_hand}") from None
    if resp is not None:
        with resp:
            if have and resp.status == 206:
                total = _content_range_total(resp.headers.get("Content-Range", ""))
                mode = "ab"
            else:  # the server ignored the range (or there was none): start from zero
                have, mode = 0, "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            done = have
            try:
                with open(part, mode) as f:
                    if progress:
                        progress(done, total)
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except (OSError, http.client.HTTPException):
                            break  # a dropped connection: the size check below says so and keeps the .part
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            except OSError as exc:
                raise OutputError(f"cannot write {part}: {exc.strerror or exc}",
                                  f"free some space, or set {ENV_VAR} to another folder") from None
        size = part.stat().st_size
        if total is not None and size < total:
            raise DownloadError(f"download of {url} stopped at {size} of {total} bytes",
                                f"run the same command again to resume ({part} is kept), or {by_hand}")
        if total is not None and size > total:
            part.unlink()
            raise DownloadError(f"download of {url} is longer than the server said ({size} > {total} bytes)",
                                f"run the same command again, or {by_hand}")
    if sha256 or sha256_prefix:
        digest = sha256_of(part)
        expected = sha256 or sha256_prefix
        if not digest.startswith(expected):
            part.unlink()
            raise DownloadError(f"sha256 of the file from {url} is {digest[:16]}..., expected {expected}",
                                f"the download was corrupted or the file changed; try again, or {by_hand} "
                                "and check its sha256")
    os.replace(part, dest)
    return dest


def _content_range_total(value: str) -> int | None:
    """``bytes 100-999/1000`` -> 1000."""
    total = value.rsplit("/", 1)[-1].strip()
    return int(total) if total.isdigit() else None


def _snapshot(entry, dest_dir: Path, endpoint: str | None = None) -> Path:
    """A Hugging Face repository into ``dest_dir/<folder>``, through ``<folder>.part`` (resumable).

    ``endpoint`` replaces https://huggingface.co (huggingface_hub also reads ``HF_ENDPOINT``).
    """
    import importlib.util

    if importlib.util.find_spec("huggingface_hub") is None:
        raise HoiError(f"downloading {entry.hf_repo} needs huggingface_hub, which is not installed",
                       'pip install huggingface_hub (it comes with the train extra: pip install "hoi[train]")')
    from huggingface_hub import snapshot_download

    dest = dest_dir / entry.expected_name
    part = dest.with_name(dest.name + ".part")
    url = f"{endpoint.rstrip('/')}/{entry.hf_repo}" if endpoint else entry.source
    try:
        snapshot_download(entry.hf_repo, local_dir=part, endpoint=endpoint)
    except Exception as exc:  # huggingface_hub raises its own and its HTTP client's errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DownloadError(f"cannot download {url} ({type(exc).__name__}: {first})",
                            f"check the connection and run the same command again (it resumes in {part}), or "
                            f"download it by hand: hf download {entry.hf_repo} --local-dir {dest}") from None
    os.replace(part, dest)
    return dest
