"""Artifacts on an object store (``spec.storage.uri``: ``s3://bucket/prefix``, ``gs://...``).

The store mirrors the workdir: ``<uri>/<arm>/<stage>/...``, the training checkpoints under
``<uri>/<arm>/<stage>/checkpoints/checkpoint-N/`` and the report under ``<uri>/report/``.
The uri is the run's own prefix (like a workdir): give each run its own.

Around each stage (:func:`pull` and :func:`push`, called by ``stages.run_stage``):

* **pull** downloads, into the local scratch workdir, the stage itself when the store holds
  it complete (the stage is then skipped), else its inputs (the arm's upstream stages; for
  evaluate also the other arms' generate and evaluate stages, for the report) and, for a
  training stage, the newest complete uploaded checkpoint, from which it resumes.
* **push** uploads the finished stage. Training checkpoints go up as they are saved
  (:func:`checkpoint_saved`, called from the training callback's ``on_save``).

**Atomic directories.** An upload first deletes the remote ``MANIFEST.json``, then writes
every object, then the manifest last: the local manifest's body plus ``objects``, the size
and sha256 of every object. A directory is present on the store only when its manifest
exists and every object it lists has that size and sha256 (:func:`read_dir`), so a reader
never takes a half-written or half-overwritten directory for a complete one. Single-object
writes are atomic on S3 and GCS (an object appears whole when its PUT, or its multipart
upload, completes).

**Clients.** pyarrow's filesystems (the AWS and Google Cloud C++ SDKs, already installed with
``datasets``): s3fs/gcsfs would bring botocore, whose python-dateutil<3 cap conflicts with
the Kubernetes client's. Credentials follow each SDK's default chain: environment
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from ``storage.credentialsSecret``), web
identity (EKS IRSA / Pod Identity), GKE Workload Identity, or the node's role. Nothing here
logs or records them.

**Limit.** A stage running on several nodes keeps checkpoint files on each node's scratch;
only the main process uploads, so sharded (FSDP) checkpoints of other nodes are not uploaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polya_trainer.runtime.artifacts import MANIFEST, atomic_path, read_manifest
from polya_trainer.runtime.checkpoints import CHECKPOINT_RE, checkpoint_step, newest_checkpoint
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import PolyaRunSpec, SpecError

log = logging.getLogger(__name__)

CHUNK = 8 << 20
TRAINING = ("midtrain", "rl")


@dataclass
class Store:
    """A pyarrow filesystem and the run's root path on it (no scheme)."""

    fs: Any
    root: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def open_store(uri: str, endpoint_url: str | None = None) -> Store:
    """The store behind `uri` (s3://, gs:// or file://)."""
    from pyarrow import fs as pafs

    parts = urlsplit(uri)
    if parts.scheme in ("s3", "gs") and endpoint_url:
        ep = urlsplit(endpoint_url)
        if parts.scheme == "s3":
            filesystem = pafs.S3FileSystem(endpoint_override=ep.netloc,
                                           scheme=ep.scheme or "https",
                                           region=os.environ.get("AWS_REGION", "us-east-1"))
        else:  # the GCS JSON API; credentials go over https only, an http:// endpoint (an
            # emulator: tests/trainer/test_storage_servers.py) is reached anonymously
            filesystem = pafs.GcsFileSystem(endpoint_override=ep.netloc, scheme=ep.scheme,
                                            anonymous=ep.scheme == "http")
        return Store(filesystem, f"{parts.netloc}{parts.path}")
    if parts.scheme in ("s3", "gs", "file"):
        filesystem, root = pafs.FileSystem.from_uri(uri)
        return Store(filesystem, root)
    raise SpecError([("spec.storage.uri",
                      f"scheme {parts.scheme}:// is not supported (use s3://, gs:// or file://)")])


def store_for(spec: PolyaRunSpec) -> Store | None:
    uri = spec.storage.uri
    return open_store(uri, spec.storage.endpoint_url) if uri else None


# --------------------------------------------------------------------------- objects


def _exists(store: Store, path: str) -> bool:
    from pyarrow import fs as pafs

    return store.fs.get_file_info(path).type == pafs.FileType.File


def _vanished(exc: OSError) -> bool:
    """An object that was gone by the time it was read. pyarrow's S3 input stream looks the
    object up when it opens (a missing one: FileNotFoundError) but fetches it on read, where a
    writer may have deleted it meanwhile: then a plain OSError naming the AWS SDK's error,
    RESOURCE_NOT_FOUND (a 404 without a body) or NO_SUCH_KEY (S3's NoSuchKey error body),
    both "during GetObject operation" (found by tests/trainer/test_storage_servers.py's racing
    reader, the second in a full run of the suite on 2026-12-03)."""
    return isinstance(exc, FileNotFoundError) or any(
        mark in str(exc)
        for mark in ("RESOURCE_NOT_FOUND", "NO_SUCH_KEY", "NoSuchKey", "No such object"))


def _read_json(store: Store, path: str) -> dict[str, Any] | None:
    try:
        with store.fs.open_input_stream(path) as f:
            body = json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    except OSError as exc:
        if _vanished(exc):
            return None
        raise
    return body if isinstance(body, dict) else None


def _open_out(store: Store, path: str) -> Any:
    """An output stream; object stores need no directories, a local one does."""
    if store.fs.type_name == "local":
        store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    return store.fs.open_output_stream(path)


def _put_file(store: Store, src: Path, path: str) -> dict[str, Any]:
    """Upload one file; returns its size and sha256 (hashed while it streams)."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as f, _open_out(store, path) as out:
        while block := f.read(CHUNK):
            h.update(block)
            out.write(block)
            size += len(block)
    return {"size": size, "sha256": h.hexdigest()}


def _get_file(store: Store, path: str, dest: Path | None, entry: dict[str, Any]) -> bool:
    """Stream one object (to `dest` when given); True when its size and sha256 match."""
    h = hashlib.sha256()
    size = 0
    try:
        with store.fs.open_input_stream(path) as f, \
                (open(dest, "wb") if dest else contextlib.nullcontext()) as out:
            while block := f.read(CHUNK):
                h.update(block)
                size += len(block)
                if out is not None:
                    out.write(block)
    except OSError as exc:
        if _vanished(exc):
            return False
        raise
    return size == entry.get("size") and h.hexdigest() == entry.get("sha256")


def _local_files(directory: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Files under `directory` to upload: no dot-names, not the manifest, not under `skip`."""
    out = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if (not p.is_file() or rel.as_posix() == MANIFEST
                or any(part.startswith(".") for part in rel.parts)
                or any(rel.parts[0] == s for s in skip)):
            continue
        out.append(rel.as_posix())
    return out


def push_dir(store: Store, local: str | Path, remote: str, skip: tuple[str, ...] = ()) -> \
        dict[str, Any]:
    """Upload `local` to `remote`: manifest removed, objects, manifest last. Returns the
    manifest written (the local MANIFEST.json's body, if any, plus ``objects``)."""
    local = Path(local)
    manifest = store.path(remote, MANIFEST)
    with contextlib.suppress(FileNotFoundError):
        store.fs.delete_file(manifest)
    objects = {rel: _put_file(store, local / rel, store.path(remote, rel))
               for rel in _local_files(local, skip)}
    try:
        body = json.loads((local / MANIFEST).read_text())
    except FileNotFoundError:
        body = {}
    body["objects"] = objects
    with _open_out(store, manifest) as out:
        out.write(json.dumps(body, indent=2, sort_keys=True).encode())
    return body


def read_dir(store: Store, remote: str, dest: str | Path | None = None) -> dict[str, Any] | None:
    """The remote directory's manifest if it is complete and every object verifies, else
    None. With `dest`, the objects are downloaded and the directory appears at `dest`
    (replacing what was there) only once all of them verified."""
    body = _read_json(store, store.path(remote, MANIFEST))
    if body is None or not isinstance(body.get("objects"), dict):
        return None
    if dest is None:
        ok = all(_get_file(store, store.path(remote, rel), None, entry)
                 for rel, entry in body["objects"].items())
        return body if ok else None
    with atomic_path(dest) as tmp:
        for rel, entry in body["objects"].items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _get_file(store, store.path(remote, rel), target, entry):
                raise _Incomplete
        (tmp / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return body


class _Incomplete(Exception):
    """An object is missing or differs from the manifest (being rewritten, or damaged)."""


def read_stage(uri: str, arm: str, stage: str, dest: str | Path | None = None,
               endpoint_url: str | None = None) -> dict[str, Any] | None:
    """A stage as a reader sees it: its manifest when complete and verified, else None."""
    store = open_store(uri, endpoint_url)
    try:
        return read_dir(store, f"{arm}/{stage}", dest)
    except _Incomplete:
        return None


def _pull_dir(store: Store, remote: str, dest: Path) -> bool:
    try:
        return read_dir(store, remote, dest) is not None
    except _Incomplete:
        log.warning("storage: %s changed while downloading; not used", remote)
        return False


# --------------------------------------------------------------------------- checkpoints


def remote_checkpoints(store: Store, remote: str) -> list[tuple[int, str]]:
    """(step, path) of the checkpoint directories under `remote`, newest first. Taken from
    the objects' names: on GCS, pyarrow's listing one level deep leaves out directories that
    have no `dir/` marker object (it reads the listing's items, not its prefixes), and the
    uploads write none."""
    from pyarrow import fs as pafs

    base = store.path(remote)
    sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    found = set()
    for info in store.fs.get_file_info(sel):
        top, _, rest = info.path[len(base) + 1:].partition("/")
        m = CHECKPOINT_RE.match(top)
        if m and rest and info.type == pafs.FileType.File:
            found.add((int(m.group(1)), f"{remote}/{top}"))
    return sorted(found, reverse=True)


def _pull_checkpoint(store: Store, ws: Workspace, arm: str, stage: str) -> int | None:
    """Download the newest complete uploaded checkpoint newer than the local ones."""
    local = ws.checkpoints(arm, stage)
    newest = newest_checkpoint(local)
    have = checkpoint_step(newest) if newest else None
    for step, remote in remote_checkpoints(store, ws.relative(local)):
        if have is not None and step <= have:
            return None
        if _pull_dir(store, remote, local / f"checkpoint-{step}"):
            log.info("storage: resuming from the uploaded checkpoint-%d", step)
            return step
    return None


# --------------------------------------------------------------------------- stage hooks


@dataclass
class _Active:
    store: Store
    workdir: Path


_active: _Active | None = None


def inputs(spec: PolyaRunSpec, arm: str, stage: str) -> list[tuple[str, str]]:
    """The (arm, stage) directories a stage reads: its arm's upstream stages; evaluate
    also reads every arm's generate and evaluate stage for the report."""
    own = spec.stages_for(arm)
    needed = [(arm, s) for s in own[:own.index(stage)]]
    if stage == "evaluate":
        for other in spec.arms:
            for s in ("generate", "evaluate"):
                if s in spec.stages_for(other) and (other, s) not in needed and other != arm:
                    needed.append((other, s))
    return needed


@contextlib.contextmanager
def _workdir_lock(ws: Workspace) -> Iterator[None]:
    """One process per node downloads; the stage's other processes wait for it."""
    ws.root.mkdir(parents=True, exist_ok=True)
    with open(ws.storage_lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pull(spec: PolyaRunSpec, arm: str, stage: str, workdir: RunDir) -> None:
    """Before a stage: fetch what it needs from the store (no-op without storage.uri)."""
    global _active
    store = store_for(spec)
    if store is None:
        _active = None
        return
    ws = Workspace.of(workdir)
    _active = _Active(store, ws.root)
    with _workdir_lock(ws):
        here = ws.stage(arm, stage)
        if read_manifest(here, verify=False) is not None:
            return
        if _pull_dir(store, ws.relative(here), here):
            return  # complete on the store: run_stage finds the manifest and skips
        for a, s in inputs(spec, arm, stage):
            if read_manifest(ws.stage(a, s), verify=False) is None:
                _pull_dir(store, ws.relative(ws.stage(a, s)), ws.stage(a, s))
        if stage in TRAINING:
            _pull_checkpoint(store, ws, arm, stage)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def push(spec: PolyaRunSpec, arm: str, stage: str, workdir: RunDir) -> None:
    """After a stage: upload it unless the store already holds this very manifest."""
    store = store_for(spec)
    if store is None or not _is_main():
        return
    ws = Workspace.of(workdir)
    here = ws.stage(arm, stage)
    local = read_manifest(here, verify=False)
    remote = _read_json(store, store.path(ws.relative(here), MANIFEST))
    if local is None or (remote is not None and "objects" in remote
                         and remote.get("files") == local.get("files")
                         and remote.get("created") == local.get("created")):
        return
    push_dir(store, here, ws.relative(here), skip=("checkpoints",))
    if stage == "evaluate" and ws.report.is_dir():
        push_dir(store, ws.report, ws.relative(ws.report))


def checkpoint_saved(output_dir: str | Path, step: int) -> None:
    """Upload a checkpoint just saved (main process), then drop the uploaded checkpoints the
    Trainer's rotation removed locally. No-op unless a stage with storage.uri is running."""
    active = _active
    directory = Path(output_dir) / f"checkpoint-{step}"
    if active is None or not directory.is_dir():
        return
    rel = Path(output_dir).resolve().relative_to(active.workdir.resolve()).as_posix()
    push_dir(active.store, directory, f"{rel}/checkpoint-{step}")
    for old, remote in remote_checkpoints(active.store, rel):
        if old < step and not (Path(output_dir) / f"checkpoint-{old}").is_dir():
            with contextlib.suppress(FileNotFoundError):
                active.store.fs.delete_file(active.store.path(remote, MANIFEST))
            # GCS: after the objects, pyarrow deletes a `dir/` marker object, absent here (404)
            with contextlib.suppress(FileNotFoundError):
                active.store.fs.delete_dir(active.store.path(remote))

