"""Stage dispatch shared by the pod entrypoint and the local runner.

Each stage module exposes ``run(spec, arm, workdir, reporter) -> dict[str, str]`` (its
outputs, paths relative to ``workdir``); ``workdir`` is a path or a
:class:`~polya_trainer.runtime.workspace.Workspace`, which names every path in it. A stage
reads the previous stage's artifacts and finishes by writing ``MANIFEST.json`` in its
``Workspace.stage`` directory: a stage whose manifest is complete is skipped, so reruns resume.
"""

from __future__ import annotations

import importlib
import json

from polya_trainer.backends.models import require_cuda, require_engine
from polya_trainer.runtime import cache, shards, storage, tracking
from polya_trainer.runtime.artifacts import read_manifest
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import STAGES, PolyaRunSpec

MODULES = {"generate": "generate", "midtrain": "midtrain", "rl": "rl", "evaluate": "evaluate"}


def applies(spec: PolyaRunSpec, arm: str, stage: str) -> bool:
    return stage in spec.stages_for(arm)


def outputs_of(workdir: RunDir, arm: str, stage: str) -> dict[str, str] | None:
    """Outputs of a finished (arm, stage), or None when it has not completed."""
    manifest = read_manifest(Workspace.of(workdir).stage(arm, stage), verify=False)
    return None if manifest is None else dict(manifest.get("outputs", {}))


def run_stage(stage: str, spec: PolyaRunSpec, arm: str, workdir: RunDir,
              reporter: Reporter | None = None) -> dict[str, str]:
    """Run one stage for one arm unless its manifest says it is already complete."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if not applies(spec, arm, stage):
        raise ValueError(f"the {arm} arm has no {stage} stage")
    reporter = reporter or Reporter(stage, arm)
    ws = Workspace.of(workdir)
    storage.pull(spec, arm, stage, ws)  # storage.uri: inputs (or this stage) to scratch
    done = outputs_of(ws, arm, stage)
    if done is not None:
        storage.push(spec, arm, stage, ws)
        reporter.finish(done, message="already complete (manifest found)")
        return done
    module = importlib.import_module(f"polya_trainer.stages.{MODULES[stage]}")
    try:
        require_engine(spec, stage)  # vLLM asked for but missing: InvalidConfig, no fallback
        require_cuda(spec, stage)  # GPUs given but none usable: InvalidConfig, no CPU run
        outputs = cache.cached_run(  # a cache hit restores the result instead
            stage, spec, arm, ws,
            lambda: tracking.tracked(module.run)(spec, arm, ws, reporter),
            reporter, restored=lambda: after_restore(stage, ws))
    except Exception as exc:
        reporter.finish(state="Failed", message=f"{type(exc).__name__}: {exc}"[:1024])
        raise
    # One index of a sharded stage ends without the stage manifest unless it merged.
    sharded_part = shards.current_index(getattr(getattr(spec.stages, stage), "shards", 1))
    if outputs_of(ws, arm, stage) is None and sharded_part is None:
        raise RuntimeError(f"stage {stage} for arm {arm} returned without writing its manifest")
    storage.push(spec, arm, stage, ws)  # storage.uri: objects, then the manifest
    reporter.finish(outputs)
    return outputs


def after_restore(stage: str, ws: Workspace) -> None:
    """What a stage restored from the cache still owes beyond its own directory: evaluate
    rebuilds the cross-arm report, as a run of the stage does."""
    if stage == "evaluate":
        from polya_trainer.report import write_report

        write_report(ws.root)


def describe(outputs: dict[str, str]) -> str:
    return json.dumps(outputs, sort_keys=True)
