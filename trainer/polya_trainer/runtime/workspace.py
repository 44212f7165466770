"""The layout of a run directory, in one place (issue 26, item 3).

A :class:`Workspace` is one run's directory (``polya run --workdir``; ``<mountPath>/<run>`` in
a pod). Stages, the executors, the cache and the storage mirror ask it for paths instead of
joining them::

    <parent>/                                   several runs side by side (the volume, a sweep)
      .polya-cache/<key>/                       the stage cache the runs share (runtime/cache.py)
      <run>/                                    the Workspace's root
        polyarun.yaml                           the spec snapshot the local runner's stages read
        status.json                             the local runner's PolyaRunStatus
        .polya/attempts/<child>.json            the local runner's attempts (old/: archived)
        .polya/progress/<child>.json            a child's live progress (.term: its last word)
        .polya/generation.json                  the spec digest and local generation
        .polya-storage.lock                     one download per node (spec.storage.uri)
        logs/<child>.log                        a child process's output
        report/                                 the cross-arm report (a sweep's: sweep.md ...)
        <arm>/<stage>/                          a stage's files, MANIFEST.json last
          checkpoints/checkpoint-N/             a training stage's checkpoints
          model/                                a training stage's final model
        <arm>/generate/data/, card.json, datastats.json   the generated data, its card
        <arm>/evaluate/questions/<ckpt>/<bench>.jsonl, parts/<ckpt>/<bench>.json
        <variant>/                              a local sweep's variant runs, each a Workspace
          variant.yaml, variant.json            with the variant's PolyaRun, its n and seed
                                                (in a pod: <variant>/ beside <run>/, on the volume)

The object store mirrors the root: a directory's key there is :meth:`Workspace.relative`.
Files that only their own stage writes and reads (``metrics.json``, ``results.json``,
``shards/``, ``tracking.json``) are named in that stage's module, under :meth:`stage`.

A Workspace is ``os.PathLike`` (its root), and every function that takes a run directory takes
a path or a Workspace (:data:`RunDir`) and asks :meth:`Workspace.of`. It imports the
standard library only (at most the contract: tests/unit/test_layering.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RunDir = str | os.PathLike[str]  # a run directory: a path, or a Workspace

CACHE_DIR = ".polya-cache"
STATUS_FILE = "status.json"
SPEC_FILE = "polyarun.yaml"
STATE_DIR = ".polya"
LOCK_FILE = ".polya-storage.lock"
REPORT_DIR = "report"


@dataclass(frozen=True)
class Workspace:
    """One run's directory and every path in it."""

    root: Path

    @classmethod
    def of(cls, where: RunDir) -> Workspace:
        return where if isinstance(where, Workspace) else cls(Path(where))

    @classmethod
    def for_run(cls, parent: RunDir, name: str) -> Workspace:
        """The workspace of run ``name`` among the runs in ``parent`` (a volume, a sweep)."""
        return cls(Path(parent) / name)

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

    @property
    def name(self) -> str:
        """The run's name as its directory says (cache sources, tracking run names)."""
        return self.root.resolve().name

    def relative(self, path: RunDir) -> str:
        """``path`` (under the root) relative to it, with ``/``: what stage outputs record
        and the key of its copy on the object store."""
        return Path(path).relative_to(self.root).as_posix()

    # ------------------------------------------------------------------ stages
    def stage(self, arm: str, stage: str) -> Path:
        return self.root / arm / stage

    def checkpoints(self, arm: str, stage: str) -> Path:
        """The Trainer's ``output_dir``: its ``checkpoint-N`` directories."""
        return self.stage(arm, stage) / "checkpoints"

    def model(self, arm: str, stage: str) -> Path:
        """The final model a training stage writes."""
        return self.stage(arm, stage) / "model"

    def generated_data(self, arm: str) -> Path:
        """The generate stage's parquet shards."""
        return self.stage(arm, "generate") / "data"

    def card(self, arm: str) -> Path:
        return self.stage(arm, "generate") / "card.json"

    def datastats(self, arm: str) -> Path:
        """Per-question figures of the generated data (the card holds the summary)."""
        return self.stage(arm, "generate") / "datastats.json"

    def eval_questions(self, arm: str, checkpoint: str, bench: str) -> Path:
        """Every sampled answer of one (checkpoint, benchmark), one JSON line per item."""
        return self.stage(arm, "evaluate") / "questions" / checkpoint / f"{bench}.jsonl"

    def eval_part(self, arm: str, checkpoint: str, bench: str) -> Path:
        """The summary of a finished (checkpoint, benchmark), with its fingerprint."""
        return self.stage(arm, "evaluate") / "parts" / checkpoint / f"{bench}.json"

    # ------------------------------------------------------------------ the run
    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def status(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def spec_file(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def attempts(self) -> Path:
        return self.root / STATE_DIR / "attempts"

    def attempt(self, child: str) -> Path:
        """What the local runner records of one attempt (the cluster keeps it in the Job)."""
        return self.attempts / f"{child}.json"

    @property
    def progress_dir(self) -> Path:
        return self.root / STATE_DIR / "progress"

    def progress(self, child: str) -> Path:
        return self.progress_dir / f"{child}.json"

    @property
    def generation(self) -> Path:
        return self.root / STATE_DIR / "generation.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, child: str) -> Path:
        return self.logs / f"{child}.log"

    @property
    def variant_spec(self) -> Path:
        """A sweep variant's own PolyaRun, as the sweep expanded it."""
        return self.root / "variant.yaml"

    @property
    def variant_card(self) -> Path:
        """A sweep variant's parent, name, heuristics count and seed (the sweep report's)."""
        return self.root / "variant.json"

    @property
    def storage_lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def cache(self) -> Path:
        """The stage cache: beside the run, shared with the runs in the same parent."""
        return self.root.resolve().parent / CACHE_DIR
