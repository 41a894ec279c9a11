"""`hoi weights get`: downloads of registry files, only when asked.

A plain URL is fetched through ``NAME.part`` (HTTP Range resumes it, an flock keeps two
processes apart) and moved into place only after its size and checksum pass; a Hugging Face
repository is fetched with ``huggingface_hub.snapshot_download`` into ``FOLDER.part`` and renamed
when complete. Failures raise `DownloadError` (exit code 4) with the URL and what to do by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
from pathlib import Path
from collections.abc import Callable

from .errors import ExitCode, HoiError, MissingWeightsError, OutputError
from .weights import ENV_VAR, download_dir, locate, weights_dirs

MIRROR_ENV = "HOI_WEIGHTS_MIRROR"  # a base URL holding the same file names (a mirror; the tests' local server)
CHUNK = 1 << 20


class DownloadError(HoiError):
    """A download that did not end with a checked file in place (offline, refused, torn, wrong checksum)."""

    exit_code = ExitCode.MISSING_WEIGHTS


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
    a wrong checksum deletes the ``.part`` (resuming would keep the bad bytes). The ``.part`` is
    locked, so two processes fetching the same file do not interleave their bytes.
    """
    import urllib.error
    import urllib.request

    part = dest.with_name(dest.name + ".part")
    by_hand = f"download it by hand from {url} and save it as {dest}"
    with _locked(part) as f:
        have = f.seek(0, os.SEEK_END)
        headers = {"User-Agent": "hoi-weights", **({"Range": f"bytes={have}-"} if have else {})}
        total: int | None = None
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            content_range = exc.headers.get("Content-Range", "") if exc.headers else ""
            if exc.code == 416 and have and content_range.endswith(f"/{have}"):  # the .part is already whole
                resp, total = None, have
            else:
                if exc.code == 416:  # a .part longer than the file: start again next time
                    f.truncate(0)
                raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}", by_hand) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"cannot reach {url} ({reason})", f"check the connection, or {by_hand}") from None
        if resp is not None:
            with resp:
                if have and resp.status == 206:
                    total = _content_range_total(resp.headers.get("Content-Range", ""))
                else:  # the server ignored the range (or there was none): start from zero
                    have = 0
                    f.seek(0)
                    f.truncate()
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                _copy(resp, f, have, total, progress, part)
            size = f.tell()
            if total is not None and size < total:
                raise DownloadError(f"download of {url} stopped at {size} of {total} bytes",
                                    f"run the same command again to resume ({part} is kept), or {by_hand}")
            if total is not None and size > total:
                f.truncate(0)
                raise DownloadError(f"download of {url} is longer than the server said ({size} > {total} bytes)",
                                    f"run the same command again, or {by_hand}")
        if sha256 or sha256_prefix:
            digest = sha256_of(part)
            expected = sha256 or sha256_prefix
            if not digest.startswith(expected):
                f.truncate(0)  # emptied, so removed on release: resuming would keep the bad bytes
                raise DownloadError(f"sha256 of the file from {url} is {digest[:16]}..., expected {expected}",
                                    f"the download was corrupted or the file changed; try again, or {by_hand} "
                                    "and check its sha256")
        os.replace(part, dest)
    return dest


def _copy(resp, f, done: int, total: int | None, progress, part: Path) -> None:
    """Stream the response into ``f``; a dropped connection just ends the copy (the caller checks the size)."""
    if progress:
        progress(done, total)
    while True:
        try:
            chunk = resp.read(CHUNK)
        except (OSError, http.client.HTTPException):
            return
        if not chunk:
            return
        try:
            f.write(chunk)
        except OSError as exc:
            raise OutputError(f"cannot write {part}: {exc.strerror or exc}",
                              f"free some space, or set {ENV_VAR} to another folder") from None
        done += len(chunk)
        if progress:
            progress(done, total)


@contextlib.contextmanager
def _locked(part: Path):
    """``part`` opened for read/write without truncation, under an exclusive lock; removed if left empty."""
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write {part}: {exc.strerror or exc}", f"set {ENV_VAR} to a writable folder") from None
    with os.fdopen(fd, "r+b") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no flock (Windows): no guard against a concurrent download
            pass
        except OSError:
            raise DownloadError(f"{part} is being downloaded by another process",
                                "wait for it to finish, then run the command again") from None
        try:
            yield f
        finally:
            f.flush()
            if part.exists() and os.fstat(f.fileno()).st_size == 0 and os.path.samefile(part, f.fileno()):
                part.unlink()


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
