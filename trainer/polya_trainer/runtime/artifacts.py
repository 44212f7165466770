"""Atomic artifacts: write to a temporary name, fsync, rename; completion via manifests.

A stage is complete only when its ``MANIFEST.json`` exists and every file it lists has the
recorded size and sha256. Readers never see a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "MANIFEST.json"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path (file or directory) that is renamed to `path` on success.

    Used for things written by libraries (parquet shards, `save_pretrained` directories).
    An existing directory at `path` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: str | Path, files: list[str | Path] | None = None,
                   **meta: Any) -> Path:
    """Record every file under `directory` (or just `files`) with size and sha256.

    Written last, atomically: its presence means the directory is complete.
    """
    directory = Path(directory)
    if files is None:
        # Relative to `directory` (rglob yields paths that include it, even relative ones).
        files = sorted(p.relative_to(directory) for p in directory.rglob("*")
                       if p.is_file() and p.name != MANIFEST
                       and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    entries = {}
    for f in files:
        p = directory / f
        entries[str(p.relative_to(directory))] = {"size": p.stat().st_size,
                                                  "sha256": sha256_file(p)}
    body = {"files": entries, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **meta}
    return atomic_write_json(directory / MANIFEST, body)


def read_manifest(directory: str | Path, verify: bool = True) -> dict[str, Any] | None:
    """The manifest if the directory is complete (and, with `verify`, intact), else None."""
    directory = Path(directory)
    try:
        body = json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return None
    for name, entry in body.get("files", {}).items():
        p = directory / name
        try:
            if p.stat().st_size != entry["size"]:
                return None
        except FileNotFoundError:
            return None
        if verify and sha256_file(p) != entry["sha256"]:
            return None
    return body


def is_complete(directory: str | Path, verify: bool = False) -> bool:
    return read_manifest(directory, verify=verify) is not None
