"""Corrupt or partial files are never read as complete: the generate stage (real HF backend
on the toy model) is run to completion, then its files are damaged the ways a crash or a bad
disk damages them; the rerun (through stages.run_stage, as the pod entrypoint and the local
runner call it) redoes exactly the damaged shards and ends with the very dataset of an
undisturbed run with the same seed.

Kill -9 in flight is covered by the stage engineers' tests, which these figures reference:
tests/trainer/test_generate.py::test_resume_after_kill_gives_identical_dataset (at most the
shard in flight is lost) and tests/trainer/test_midtrain.py::
test_sigkill_then_rerun_resumes_from_the_checkpoint / ::test_incomplete_checkpoints_are_
ignored_and_pruned (at most saveSteps optimizer steps; half-written checkpoints ignored).
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import pytest
from polya_trainer.runtime.artifacts import read_manifest
from polya_trainer.spec import PolyaRunSpec, parse_spec
from polya_trainer.stages import outputs_of, run_stage
from polya_trainer.toy import word_problems
from relkit import figures


def _spec(model: Path, data: Path) -> PolyaRunSpec:
    return parse_spec({"model": {"name": str(model)}, "dataset": {"source": str(data)},
                       "heuristics": {"ids": ["working_backwards", "decomposing_recombining"]},
                       "arms": ["polya"], "seed": 11, "stages": {"generate": {
                           "backend": "hf", "exemplars": 0, "samplesPerHeuristic": 4,
                           "rounds": 1,
                           "temperature": 1.0, "topP": 1.0,
                           "maxNewTokens": 48, "shardSize": 3, "batchSize": 16,
                           "scorer": {"type": "none"}, "resources": {"gpus": 0}}}})


def _rows(workdir: Path) -> list[dict[str, Any]]:
    from datasets import load_dataset

    files = sorted(glob.glob(str(workdir / "polya" / "generate" / "data" / "*.parquet")))
    return list(load_dataset("parquet", data_files=files, split="train")) if files else []


def _card(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "polya" / "generate" / "card.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_damaged_shards_are_redone_not_used(toy_model_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The stage's own resume is under test: with the stage cache on, the second run would
    # restore the first one's entry (tests/unit/test_sweep.py covers a damaged entry).
    monkeypatch.setenv("POLYA_STAGE_CACHE", "0")
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]})
                            + "\n" for r in word_problems(9, 21)))
    spec = _spec(toy_model_dir, data)
    ref, work = tmp_path / "ref", tmp_path / "work"
    run_stage("generate", spec, "polya", ref)
    reference = _rows(ref)
    shards = _card(ref)["shards"]
    assert shards == 3 and reference

    run_stage("generate", spec, "polya", work)
    out = work / "polya" / "generate"
    files = sorted(p.name for p in (out / "data").glob("shard-*.parquet"))
    assert len(files) >= 2, files
    cases: dict[str, dict[str, Any]] = {}

    # 1. A truncated shard (a partial write): the stage is not complete any more, and the
    #    shard is regenerated; a same-size garbage shard (bit rot) fails its sha256 check.
    first, second = out / "data" / files[0], out / "data" / files[1]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    second.write_bytes(b"\0" * second.stat().st_size)
    assert outputs_of(work, "polya", "generate") is None  # partial: not complete
    run_stage("generate", spec, "polya", work)
    redone = shards - _card(work)["resumedShards"]
    assert redone == 2, _card(work)
    assert _rows(work) == reference
    assert read_manifest(out, verify=True) is not None
    cases["truncated+garbage parquet"] = {"damaged": 2, "redone": redone}

    # 2. A truncated sidecar (the completion mark of a shard) and a garbage manifest: the
    #    stage reruns and only that shard is redone.
    side = out / "shards" / "shard-00000.json"
    side.write_text(side.read_text()[:20])
    (out / "MANIFEST.json").write_text('{"files": {"card.js')
    assert outputs_of(work, "polya", "generate") is None
    run_stage("generate", spec, "polya", work)
    redone = shards - _card(work)["resumedShards"]
    assert redone == 1, _card(work)
    assert _rows(work) == reference
    cases["truncated sidecar + manifest"] = {"damaged": 1, "redone": redone}

    # 3. Leftover temporaries of a killed writer are neither read nor kept.
    (out / "data" / ".shard-00001.parquet.tmp123").write_bytes(b"PAR1 partial")
    (out / "MANIFEST.json").unlink()
    run_stage("generate", spec, "polya", work)
    assert not [p for p in (out / "data").iterdir() if p.name.startswith(".")]
    assert _card(work)["resumedShards"] == shards and _rows(work) == reference
    cases["stale temporary"] = {"damaged": 0, "redone": 0}

    figures("trainer-corruption", {
        "shards": shards, "cases": cases, "dataset_identical_to_uninterrupted": True,
        "kill_figures_from": [
            "tests/trainer/test_generate.py::test_resume_after_kill_gives_identical_dataset",
            "tests/trainer/test_midtrain.py::test_sigkill_then_rerun_resumes_from_the_checkpoint"],
        "work_lost_per_kill": {"generate": "at most the shard in flight (shardSize questions)",
                               "midtrain/rl": "at most saveSteps optimizer steps"},
    })
