"""Sharded generate and evaluate on the toy model (real transformers generation): three
indices (``JOB_COMPLETION_INDEX`` 0..2, finishing in a scrambled order) give files
byte-identical to a 1-shard run with the same seed, the last index to finish merges, and a
crashed index redoes only its unfinished part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from polya_trainer.backends import load_generator
from polya_trainer.runtime.artifacts import read_manifest
from polya_trainer.runtime.progress import Reporter
from polya_trainer.spec import PolyaRunSpec, parse_spec
from polya_trainer.stages import evaluate, generate, outputs_of, run_stage
from polya_trainer.toy import word_problems


def _files(stage: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(stage)): p.read_bytes() for p in sorted(stage.glob(pattern))}


def _gen_spec(model: Path, data: Path, shards: int) -> PolyaRunSpec:
    return parse_spec({
        "model": {"name": str(model)}, "dataset": {"source": str(data)},
        "heuristics": {"ids": ["working_backwards", "decomposing_recombining"]},
        "arms": ["polya"], "seed": 11,
        "stages": {"generate": {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 4,
                                "temperature": 1.0, "topP": 1.0, "maxNewTokens": 40,
                                "rounds": 2, "shardSize": 2, "batchSize": 16,
                                "scorer": {"type": "none"}, "shards": shards}}})


class Crash(Exception):
    pass


class Counting:
    """Delegates to the real generator; counts calls and fails (a kill) on a call whose
    prompts hold `fail_on`."""

    def __init__(self, inner: Any, fail_on: str | None = None) -> None:
        self.inner, self.tokenizer, self.fail_on, self.calls = inner, inner.tokenizer, fail_on, 0

    def generate(self, prompts: list[Any], sampling: Any) -> list[list[Any]]:
        self.calls += 1
        if self.fail_on and any(self.fail_on in p for p in prompts):
            raise Crash("killed mid-shard")
        return self.inner.generate(prompts, sampling)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def toy_gen(toy_model_dir: Path) -> Any:
    gen = load_generator("hf", parse_spec({"model": {"name": str(toy_model_dir)}}).model,
                         batch_size=16)
    yield gen
    gen.close()


def test_three_generate_shards_equal_one(tmp_path: Path, toy_model_dir: Path, toy_gen: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "q.jsonl"
    problems = word_problems(10, 5)
    data.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]})
                            + "\n" for r in problems))
    one, three = tmp_path / "one", tmp_path / "three"
    generate.run(_gen_spec(toy_model_dir, data, 1), "polya", one, Reporter("generate", "polya"),
                 generator=Counting(toy_gen))
    spec3 = _gen_spec(toy_model_dir, data, 3)
    out3 = three / "polya" / "generate"
    # 5 data shards over 3 indices: index 0 takes shards 0-1, index 1 shards 2-3, index 2
    # shard 4. Index 0 is killed in its second shard (questions 2 and 3).
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    with pytest.raises(Crash):
        generate.run(spec3, "polya", three, Reporter("generate", "polya"),
                     generator=Counting(toy_gen, fail_on=problems[2]["question"]))
    assert (out3 / "shards" / "shard-00000.json").is_file()
    assert not (out3 / "shards" / "shard-00001.json").exists()
    reporters = {}
    for index in (2, 1, 0):  # index 0 finishes last and merges
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        reporters[index] = Reporter("generate", "polya")
        counting = Counting(toy_gen)
        generate.run(spec3, "polya", three, reporters[index], generator=counting)
        if index == 0:  # the retry redoes only its unfinished shard (two rounds at most)
            assert 1 <= counting.calls <= 2
        assert (read_manifest(out3) is not None) == (index == 0)
    # Progress per index sums to the stage's questions.
    assert sum(r.snapshot()["total"] for r in reporters.values()) == 10
    assert sum(r.snapshot()["done"] for r in reporters.values()) == 10

    out1 = one / "polya" / "generate"
    parquet1, parquet3 = _files(out1, "data/*.parquet"), _files(out3, "data/*.parquet")
    assert parquet1 and parquet3 == parquet1
    assert _files(out3, "datastats.json") == _files(out1, "datastats.json")
    card1, card3 = (json.loads((d / "card.json").read_text()) for d in (out1, out3))
    assert card3["counts"] == card1["counts"] and card3["counts"]["accepted"] > 0
    assert card3["files"] == card1["files"] and card3["indices"] == 3
    assert card3["resumedShards"] == 1
    assert read_manifest(out3)["files"].keys() == read_manifest(out1)["files"].keys()


def _eval_spec(model: Path, files: dict[str, Path], shards: int) -> PolyaRunSpec:
    return parse_spec({
        "model": {"name": str(model)}, "arms": ["vanilla"], "seed": 3,
        "stages": {"evaluate": {
            "benchmarks": [], "custom": [{"name": n, "path": str(p)} for n, p in files.items()],
            "k": [1, 2], "samples": 2, "maxNewTokens": 24, "temperature": 1.0, "topP": 1.0,
            "backend": "hf", "checkpoints": ["base"], "resources": {"gpus": 0},
            "shards": shards}}})


def test_three_evaluate_shards_equal_one(tmp_path: Path, toy_model_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYA_STAGE_CACHE", "0")  # else the 3-shard run restores the first
    files = {}
    for name, count, seed in (("big", 40, 1), ("small", 5, 2)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"question": r["question"],
                                                   "answer": r["answer"]}) + "\n"
                                       for r in word_problems(count, seed)))
    one, three = tmp_path / "one", tmp_path / "three"
    run_stage("evaluate", _eval_spec(toy_model_dir, files, 1), "vanilla", one)
    spec3 = _eval_spec(toy_model_dir, files, 3)
    # Blocks of 16: big = [0:16] [16:32] [32:40], small = [0:5]; four blocks over three
    # indices: 0 -> big[0:32], 1 -> big[32:40], 2 -> small.
    totals = {}
    for index in (1, 0, 2):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        rep = Reporter("evaluate", "vanilla")
        run_stage("evaluate", spec3, "vanilla", three, rep)
        totals[index] = rep.snapshot()["total"]
        assert (outputs_of(three, "vanilla", "evaluate") is not None) == (index == 2)
    assert totals == {0: 32, 1: 8, 2: 5}
    out1, out3 = one / "vanilla" / "evaluate", three / "vanilla" / "evaluate"
    rows1 = _files(out1, "questions/base/*.jsonl")
    assert len(rows1) == 2 and _files(out3, "questions/base/*.jsonl") == rows1
    assert (out3 / "results.json").read_bytes() == (out1 / "results.json").read_bytes()
    assert _files(out3, "parts/base/*.json") == _files(out1, "parts/base/*.json")
    results = json.loads((out1 / "results.json").read_text())
    assert results["base"]["big"]["n"] == 40 and results["base"]["small"]["n"] == 5
    # A stage already merged is skipped by every index.
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")

    def no_model(*a: Any, **k: Any) -> None:
        raise AssertionError("a finished stage must not load a model")

    monkeypatch.setattr(evaluate, "load_generator", no_model)
    assert run_stage("evaluate", spec3, "vanilla", three) == outputs_of(three, "vanilla",
                                                                         "evaluate")



def test_polya_run_fans_the_indices_out_as_processes(tmp_path: Path, toy_model_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`polya run` with generate.shards 3: three index processes (engine/fanout.py), one
    merge, and the same dataset as a 1-shard stage with the same seed."""
    import re

    import yaml
    from polya_trainer.engine.local import run_file

    monkeypatch.setenv("POLYA_STAGE_CACHE", "0")  # generate, not a restore of the reference
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]})
                            + "\n" for r in word_problems(6, 7)))
    reference = _gen_spec(toy_model_dir, data, 1)
    reference.stages.generate.max_new_tokens = 24
    run_stage("generate", reference, "polya", tmp_path / "one")
    spec = reference.model_dump(by_alias=True, exclude_none=True, mode="json")
    # Only generate is under test: midtrain takes one step and rl stops the run at once
    # (no retries, a missing dataset), so the run ends there with a failure.
    spec["stages"] = {"generate": {**spec["stages"]["generate"], "shards": 3},
                      "midtrain": {"maxSteps": 1, "perDeviceBatchSize": 2},
                      "rl": {"backoffLimit": 0,
                             "dataset": {"source": str(tmp_path / "missing.jsonl")}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun", "metadata": {"name": "fan"},
        "spec": spec}))
    work = tmp_path / "work"
    rc = run_file(tmp_path / "run.yaml", workdir=work, arms=["polya"], quiet=True)
    logs = "".join(p.read_text() for p in (work / "logs").glob("*generate*.log"))
    assert rc == 1, logs[-3000:]
    status = json.loads((work / "status.json").read_text())
    states = {(x["arm"], x["name"]): x["state"] for x in status["stages"]}
    assert states[("polya", "generate")] == "Succeeded" and states[("polya", "rl")] == "Failed"
    assert sorted(re.findall(r"--- index (\d)", logs)) == ["0", "1", "2"]
    stage = work / "polya" / "generate"
    assert read_manifest(stage, verify=True) is not None
    assert _files(stage, "data/*.parquet") == _files(tmp_path / "one" / "polya" / "generate",
                                                     "data/*.parquet")
