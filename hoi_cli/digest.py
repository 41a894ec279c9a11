"""Content digests for the stage cache: a leaf module, so `store` and `clips` both import it
(store needs a clip's digest from `clips`; `clips` needs a file's digest: one direction each)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file, cached in-process by (path, size, mtime) so large weights hash once."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]
