"""Sharded inference stages: the N indices of an Indexed Job split one stage's work.

``stages.generate.shards`` / ``stages.evaluate.shards`` > 1 runs the stage as an Indexed Job
(``completionMode: Indexed``). The Job controller gives every pod its completion index in the
annotation ``batch.kubernetes.io/job-completion-index`` and the env var
``JOB_COMPLETION_INDEX`` (kubernetes ``pkg/controller/job/indexed_job_utils.go``:
``addCompletionIndexEnvVariables``); the local runner sets the same variable on its child
processes. Without the variable a sharded stage simply does all the work in one process.

* **Slicing** (:func:`split`, :func:`assign`): the work is a list of units (generate: its data
  shards of ``shardSize`` questions; evaluate: blocks of benchmark items), and index ``i``
  takes a contiguous, balanced range of them. Every unit is computed exactly as a 1-shard run
  computes it (its own seed, the same batches), so the merged result is byte-identical.
* **Index manifests** (``<stage>/indices/<i>/MANIFEST.json``): written by an index after all
  its units, listing their files with sha256. A retried index skips units already written
  (their own sidecars) and rewrites its manifest with a fresh nonce.
* **One merge, by the last index to finish** (:func:`claim_merge`): after writing its
  manifest, an index checks whether all N manifests are present; if so it claims the merge
  by creating ``indices/merge-<digest>.claim`` with ``O_CREAT|O_EXCL`` (atomic on local
  filesystems and on NFSv3+, which RWX volumes are), where the digest covers the N
  manifests. Two indices finishing together see the same manifests, so exactly one wins;
  an index that is retried after dying mid-merge writes a new manifest (new nonce), so its
  digest is new and it claims and redoes the merge. The merge writes with temp + rename
  and the stage manifest last, so a redone merge is safe. Chosen over a follow-up step
  because it needs no second Job, pod start or model load, and no planner state.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import MANIFEST, atomic_write_json, sha256_file

INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_DIR = "indices"


def split(total: int, count: int, index: int) -> range:
    """Index `index`'s contiguous part of ``range(total)`` cut into `count` balanced parts
    (the first ``total % count`` parts have one more)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"need 0 <= index < count (got index={index}, count={count})")
    q, r = divmod(total, count)
    start = index * q + min(index, r)
    return range(start, start + q + (index < r))


def blocks(sizes: Sequence[int], unit: int) -> list[tuple[int, int, int]]:
    """Units of work over groups of items: ``(group, start, stop)`` blocks of `unit` items,
    group after group (the last block of a group may be shorter)."""
    if unit < 1:
        raise ValueError(f"need unit >= 1 (got {unit})")
    return [(g, start, min(start + unit, size)) for g, size in enumerate(sizes)
            for start in range(0, size, unit)]


def assign(sizes: Sequence[int], unit: int, count: int, index: int) -> dict[int, range]:
    """Items of each group that index `index` of `count` takes: a contiguous range of the
    blocks of :func:`blocks`, so at most one item range per group."""
    mine = blocks(sizes, unit)
    out: dict[int, range] = {}
    for i in split(len(mine), count, index):
        g, start, stop = mine[i]
        out[g] = range(out[g].start if g in out else start, stop)
    return out


def current_index(count: int, env: Mapping[str, str] | None = None) -> int | None:
    """This process's index of a `count`-shard stage, or None: the whole stage here (one
    shard, or no ``JOB_COMPLETION_INDEX``)."""
    raw = (os.environ if env is None else env).get(INDEX_ENV, "").strip()
    if count <= 1 or not raw:
        return None
    index = int(raw)
    if not 0 <= index < count:
        raise ValueError(f"{INDEX_ENV}={index} is outside the stage's {count} shards")
    return index


def index_dir(stage_dir: Path, index: int) -> Path:
    return Path(stage_dir) / INDEX_DIR / str(index)


def write_index_manifest(stage_dir: Path, index: int, count: int, key: str,
                         files: Sequence[str], **meta: Any) -> dict[str, Any]:
    """Mark index `index` done: its files (paths relative to the stage directory) with size
    and sha256, the work key (settings fingerprint) and a fresh nonce."""
    stage_dir = Path(stage_dir)
    entries = {f: {"size": (stage_dir / f).stat().st_size, "sha256": sha256_file(stage_dir / f)}
               for f in files}
    body = {"index": index, "count": count, "key": key, "files": entries,
            "nonce": uuid.uuid4().hex, **meta}
    atomic_write_json(index_dir(stage_dir, index) / MANIFEST, body)
    return body


def read_index_manifest(stage_dir: Path, index: int, count: int,
                        key: str) -> dict[str, Any] | None:
    """Index `index`'s manifest if written for this shard count and key and its files are
    present with their recorded sizes, else None."""
    stage_dir = Path(stage_dir)
    try:
        body = json.loads((index_dir(stage_dir, index) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return None
    if body.get("count") != count or body.get("key") != key:
        return None
    for name, entry in body.get("files", {}).items():
        try:
            if (stage_dir / name).stat().st_size != entry["size"]:
                return None
        except FileNotFoundError:
            return None
    return body


def claim_merge(stage_dir: Path, index: int, count: int, key: str) -> bool:
    """True for exactly one caller per set of N finished index manifests (see the module
    docstring); False while some index is unfinished or when another index claimed it."""
    bodies = [read_index_manifest(stage_dir, i, count, key) for i in range(count)]
    if any(b is None for b in bodies):
        return False
    digest = hashlib.sha256(json.dumps(bodies, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(stage_dir) / INDEX_DIR / f"merge-{digest}.claim"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"index": index}) + "\n")
    return True


def merged_meta(stage_dir: Path, count: int, key: str) -> list[dict[str, Any]]:
    """The N index manifests (all present: call after a successful claim)."""
    bodies = [read_index_manifest(stage_dir, i, count, key) for i in range(count)]
    missing = [i for i, b in enumerate(bodies) if b is None]
    if missing:
        raise RuntimeError(f"index manifests missing for shards {missing}")
    return [b for b in bodies if b is not None]


# Figures that add up over indices (counts, throughput); the others are averaged, weighted
# by each index's work done.
SUMMED_METRICS = frozenset({"accepted", "tokens_per_second", "duplicates_removed"})


def combine_progress(snaps: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """One progress JSON for a sharded stage from its indices' (live ``/progress`` or final
    termination-message) snapshots: done and total summed, progress from the sums, the ETA
    of the slowest index, counts summed and rates averaged by work done. Missing snapshots
    (an index not started yet) count as no work done."""
    got = [dict(x) for x in snaps if x]
    if not got:
        return None
    out = dict(got[0])
    done = sum(float(x.get("done") or 0) for x in got)
    totals = [x.get("total") for x in got]
    out["done"] = done
    if all(isinstance(t, int | float) and t for t in totals) and len(got) == len(snaps):
        total = float(sum(totals))  # type: ignore[arg-type]
        out["total"] = total
        out["progress"] = round(100.0 * min(1.0, done / total), 2)
    else:  # an index has not reported its share yet: the mean, counting it as 0
        out["total"] = None
        out["progress"] = round(sum(float(x.get("progress") or 0.0) for x in got)
                                / len(snaps), 2)
    etas = [x.get("etaSeconds") for x in got]
    out["etaSeconds"] = (max(e for e in etas if e is not None)
                         if any(e is not None for e in etas) else None)
    metrics: dict[str, float] = {}
    weights: dict[str, float] = {}
    for x in got:
        w = float(x.get("done") or 0) or 1.0
        for key, value in (x.get("metrics") or {}).items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if key in SUMMED_METRICS:
                metrics[key] = metrics.get(key, 0.0) + value
            else:
                metrics[key] = metrics.get(key, 0.0) + w * value
                weights[key] = weights.get(key, 0.0) + w
    out["metrics"] = {k: round(v / weights[k], 6) if k in weights else v
                      for k, v in metrics.items()}
    states = [x.get("state") for x in got]
    out["state"] = next((st for st in states if st != "Succeeded"), "Succeeded") \
        if len(got) == len(snaps) else "Running"
    out["shards"] = {"count": len(snaps), "reporting": len(got)}
    return out
