"""A content-addressed stage cache shared by every run in one workspace.

Key: sha256 of the stage's inputs, as JSON (:func:`key_material`):

* the model: for a local directory the sha256 of every file, else hub id + revision;
* input data: every local file or directory a stage setting names (dataset sources, custom
  benchmarks, scorer models) by content; hub ids by id, config and revision;
* the upstream stages of the arm, by their manifests (which list each file's sha256);
* the settings the stage's result depends on: the spec without scheduling fields (resources'
  placement, retries, deadlines, storage, image, queue, shards, tracking) and without the
  settings of later stages; generate uses ``stages.generate.seed`` when set;
* the arm, the stage and the versions of this package and of the training libraries.

Entries live in ``<workspace>/.polya-cache/<key>/`` beside the runs' workdirs
(``Workspace.cache``: the workdir's parent, ``/workspace`` in a pod, the sweep's directory
locally). An entry is the stage
directory without its checkpoints, published atomically: files are hard-linked (copied across
filesystems) into a temporary directory, ``entry.json`` is written last and the directory is
renamed into place, so a reader sees a whole entry or none. A hit links the files back into
the stage directory, the stage MANIFEST.json last, with ``cachedFrom: <run>/<arm>/<stage>``
in its outputs, so the stage's status says where the result came from.

Stages replace files by rename, never write into them, so a hard-linked file is never changed
under another run. ``POLYA_STAGE_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import MANIFEST, atomic_write_json, read_manifest, sha256_file
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import STAGES, PolyaRunSpec

ENTRY = "entry.json"
VERSION = 1
CACHED_FROM = "cachedFrom"
SKIPPED_DIRS = ("checkpoints",)
# Fields that choose where and how a stage runs, not what it computes.
_PLACEMENT = ("nodeSelector", "tolerations", "affinity", "priorityClassName", "cpu", "memory",
              "gpuResource")
_STAGE_OPERATIONAL = ("backoffLimit", "activeDeadlineSeconds", "shards", "shardSize")
_RUN_OPERATIONAL = ("storage", "image", "imagePullPolicy", "serviceAccountName", "suspend",
                    "activeDeadlineSeconds", "ttlSecondsAfterFinished", "queueName", "sweep",
                    "tracking")
# Setting keys whose value may name a local file or directory (hashed by content).
_PATH_KEYS = ("name", "source", "path", "model", "diversityEmbeddingModel")
_LIBRARIES = ("torch", "transformers", "trl", "peft", "vllm", "math-verify")


def enabled() -> bool:
    return os.environ.get("POLYA_STAGE_CACHE", "1") not in ("0", "false", "off")


# --------------------------------------------------------------------------- digests

_digests: dict[tuple[str, int, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file, memoised per (path, inode, size, mtime) within the process."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if memo not in _digests:
        _digests[memo] = sha256_file(path)
    return _digests[memo]


def path_digest(path: Path) -> str:
    """sha256 over a file's or a directory's files (relative names and contents)."""
    if path.is_file():
        return _file_digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{_file_digest(f)}\n".encode())
    return h.hexdigest()


def _with_digests(value: Any, bases: tuple[Path, ...]) -> Any:
    """`value` with every local path under a path-like key replaced by {path, sha256}
    (relative paths are looked up in each of `bases`, as the stages read them)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _PATH_KEYS and isinstance(v, str) and v:
                found = next((b / v for b in bases if (b / v).exists()), None)
                if found is not None:
                    out[k] = {"path": v, "sha256": path_digest(found)}
                    continue
            out[k] = _with_digests(v, bases)
        return out
    if isinstance(value, list):
        return [_with_digests(v, bases) for v in value]
    return value


def _stage_settings(section: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in section.items() if k not in _STAGE_OPERATIONAL}
    if "resources" in out:
        out["resources"] = {k: v for k, v in out["resources"].items() if k not in _PLACEMENT}
    return out


def manifest_digest(workdir: RunDir, arm: str, stage: str) -> str | None:
    """Digest of a finished stage: its manifest (file list with sha256, outputs, metrics)
    without the creation time and the cache note, plus the manifests of the directories its
    outputs name (the trained model's files)."""
    ws = Workspace.of(workdir)
    manifest = read_manifest(ws.stage(arm, stage), verify=False)
    if manifest is None:
        return None
    body = {k: v for k, v in manifest.items() if k != "created"}
    body["outputs"] = {k: v for k, v in (body.get("outputs") or {}).items() if k != CACHED_FROM}
    nested = {}
    for name, rel in sorted(body["outputs"].items()):
        sub = read_manifest(ws.root / rel, verify=False)
        if sub is not None:
            nested[name] = sub.get("files", {})
    return hashlib.sha256(json.dumps([body, nested], sort_keys=True).encode()).hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for lib in ("polyarun", *_LIBRARIES):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[lib] = metadata.version(lib)
    return out


def key_material(stage: str, spec: PolyaRunSpec, arm: str,
                 workdir: RunDir) -> dict[str, Any] | None:
    """What the stage's result depends on, or None while an upstream stage is unfinished."""
    ws = Workspace.of(workdir)
    order = spec.stages_for(arm)
    if stage not in order:
        raise ValueError(f"the {arm} arm has no {stage} stage")
    upto = order[: order.index(stage) + 1]
    body = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for field in _RUN_OPERATIONAL:
        body.pop(field, None)
    stages = body.pop("stages")
    body["stages"] = {name: _stage_settings(stages[name]) for name in upto}
    contamination = spec.contamination.action != "off"
    if contamination and "evaluate" not in upto:  # the check reads the evaluation benchmarks
        ev = stages["evaluate"]
        body["contaminationBenchmarks"] = {k: ev.get(k) for k in ("benchmarks", "custom",
                                                                  "revisions")}
    if arm == "vanilla":
        body.pop("heuristics", None)
    if stage == "generate":
        g = spec.stages.generate
        body["seed"] = g.seed if g.seed is not None else spec.seed
    upstream = {}
    for name in order[: order.index(stage)]:
        digest = manifest_digest(ws, arm, name)
        if digest is None:
            return None
        upstream[name] = digest
    return {"version": VERSION, "stage": stage, "arm": arm, "stages": list(STAGES),
            "spec": _with_digests(body, (Path.cwd(), ws.root)), "upstream": upstream,
            "libraries": _versions()}


def stage_key(stage: str, spec: PolyaRunSpec, arm: str, workdir: RunDir) -> str | None:
    material = key_material(stage, spec, arm, workdir)
    if material is None:
        return None
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- store / restore


def _link_tree(src: Path, dst: Path, skip_top: tuple[str, ...] = ()) -> None:
    """Hard-link (or copy, across filesystems) every file under `src` into `dst`, except the
    top-level entries named in `skip_top` and the manifest (linked last by the caller)."""
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = f.relative_to(src)
        if rel.parts[0] in skip_top or str(rel) in (MANIFEST, ENTRY):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(f, tmp)
        except OSError:
            shutil.copy2(f, tmp)
        os.replace(tmp, target)


def lookup(root: Path, key: str) -> dict[str, Any] | None:
    """The entry for `key` if one was published whole."""
    try:
        return json.loads((root / key / ENTRY).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def publish(root: Path, key: str, stage_path: Path, source: str) -> Path | None:
    """Store a finished stage directory under `key` (no-op if present); None if it lost a
    race with another writer or the stage is not complete."""
    final = root / key
    if lookup(root, key) is not None or read_manifest(stage_path, verify=False) is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    try:
        _link_tree(stage_path, tmp, skip_top=SKIPPED_DIRS)
        shutil.copy2(stage_path / MANIFEST, tmp / MANIFEST)
        atomic_write_json(tmp / ENTRY, {"key": key, "source": source, "version": VERSION})
        os.rename(tmp, final)  # fails if another writer got there first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    return final


def restore(root: Path, key: str, stage_path: Path) -> dict[str, str] | None:
    """Materialise the entry for `key` into `stage_path`; the stage's outputs (with
    ``cachedFrom``) on a hit, None on a miss."""
    entry = lookup(root, key)
    if entry is None:
        return None
    src = root / key
    manifest = json.loads((src / MANIFEST).read_text())
    if not _intact(src, manifest):
        _evict(root, key)  # damaged (entries share inodes with stage dirs): recompute
        return None
    _link_tree(src, stage_path)
    outputs = dict(manifest.get("outputs", {}))
    outputs[CACHED_FROM] = str(entry["source"])
    manifest["outputs"] = outputs
    atomic_write_json(stage_path / MANIFEST, manifest)  # last: the stage is now complete
    return outputs


def _intact(src: Path, manifest: dict[str, Any]) -> bool:
    """Every file the entry holds matches the size and sha256 its manifest records."""
    for name, entry in manifest.get("files", {}).items():
        if Path(name).parts[0] in SKIPPED_DIRS:
            continue
        try:
            if (src / name).stat().st_size != entry["size"] or \
                    sha256_file(src / name) != entry["sha256"]:
                return False
        except (FileNotFoundError, KeyError):
            return False
    return True


def _evict(root: Path, key: str) -> None:
    """Take a damaged entry out of the cache: renamed away first, so no reader sees half."""
    trash = root / f".evicted-{key[:16]}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(root / key, trash)
    except OSError:
        return  # another process evicted it already
    shutil.rmtree(trash, ignore_errors=True)


def try_restore(stage: str, spec: PolyaRunSpec, arm: str, workdir: RunDir,
                restored: Callable[[], Any] | None = None) -> tuple[
        str | None, dict[str, str] | None]:
    """(key, outputs on a hit). The key is None when the cache is off or an upstream stage
    is unfinished. ``restored`` runs right after a hit (the caller's side effects of the stage
    beyond its directory, e.g. the evaluate stage's cross-arm report)."""
    if not enabled():
        return None, None
    ws = Workspace.of(workdir)
    key = stage_key(stage, spec, arm, ws)
    if key is None:
        return None, None
    outputs = restore(ws.cache, key, ws.stage(arm, stage))
    if outputs is not None and restored is not None:
        restored()
    return key, outputs


def cached_run(stage: str, spec: PolyaRunSpec, arm: str, workdir: RunDir,
               execute: Callable[[], dict[str, str]], reporter: Any = None,
               restored: Callable[[], Any] | None = None) -> dict[str, str]:
    """Restore the stage from the cache (then call ``restored``), or run ``execute()`` and
    publish its result."""
    ws = Workspace.of(workdir)
    key, outputs = try_restore(stage, spec, arm, ws, restored)
    if outputs is not None:
        if reporter is not None:
            reporter.update(message=f"{CACHED_FROM}: {outputs[CACHED_FROM]}")
        return outputs
    outputs = execute()
    if key is not None and _is_main_process():
        here = ws.stage(arm, stage)
        publish(ws.cache, key, here, f"{ws.name}/{ws.relative(here)}")
    return outputs


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")
