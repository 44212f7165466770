"""Evaluation: benchmark registry and fixtures, scorers, and the evaluate stage on the toy model.

Benchmarks load from tests/fixtures/benchmarks through POLYA_BENCHMARK_DIR with the same
`datasets.load_dataset` path as the hub ids. The stage runs for real (transformers generate on
the pretrained toy model, math-verify, the sandbox) and writes results, per-question rows, the
manifest and the cross-arm report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from polya_trainer.backends import Completion, Sampling
from polya_trainer.data import benchmarks as bm
from polya_trainer.runtime.progress import REGISTRY, Reporter
from polya_trainer.spec import CustomBenchmark, EvaluateSpec, parse_spec
from polya_trainer.stages import evaluate, outputs_of, run_stage
from polya_trainer.verify.passk import pass_at_k

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "benchmarks"
ALL = ["gsm8k", "math500", "aime24", "aime25", "amc23", "humaneval", "musr"]


@pytest.fixture
def bench_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(bm.ENV_DIR, str(FIXTURES))
    return FIXTURES


# --------------------------------------------------------------------------- registry


def test_registry_declares_sources_and_expands_musr() -> None:
    names = [b.name for b in bm.resolve(ALL)]
    assert names == ["gsm8k", "math500", "aime24", "aime25", "amc23", "humaneval",
                     "musr_murder_mysteries", "musr_object_placements", "musr_team_allocation"]
    src = {b.name: (b.source.hub_id, b.source.config, b.source.split) for b in bm.resolve(ALL)}
    assert src["gsm8k"] == ("openai/gsm8k", "main", "test")
    assert src["math500"] == ("HuggingFaceH4/MATH-500", None, "test")
    assert src["humaneval"] == ("openai/openai_humaneval", None, "test")
    assert src["musr_team_allocation"] == ("TAUR-Lab/MuSR", None, "team_allocation")
    assert {b.kind for b in bm.resolve(["gsm8k", "humaneval", "musr"])} == {
        "math", "code", "choice"}
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'"):
        bm.resolve(["mmlu"])
    with pytest.raises(ValueError, match="clashes"):
        bm.resolve(["gsm8k"], [CustomBenchmark(name="gsm8k", path="x.jsonl")])


def test_without_mirror_dir_the_hub_source_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bm.ENV_DIR, raising=False)
    assert bm.REGISTRY["gsm8k"].local_file() is None


def test_fixtures_load_in_the_real_shapes(bench_dir: Path) -> None:
    loaded = {b.name: b.load() for b in bm.resolve(ALL)}
    assert all(3 <= len(items) <= 8 for items in loaded.values())
    assert bm.REGISTRY["musr_object_placements"].local_file() == \
        bench_dir / "musr" / "object_placements.jsonl"
    gsm = loaded["gsm8k"]
    assert gsm[0].reference == {"answer": "19"}
    assert gsm[4].reference == {"answer": "2400"}  # "#### 2,400"
    assert "\\boxed" in gsm[0].messages[-1]["content"]
    assert loaded["math500"][1].reference == {"answer": "\\frac{3}{4}"}
    assert loaded["math500"][0].id == "test/prealgebra/1.json"
    assert loaded["amc23"][0].reference == {"answer": "14.0"}
    he = loaded["humaneval"][1]
    assert he.id == "Fixture/1" and he.reference["entry_point"] == "running_max"
    assert "```python\nfrom typing import List" in he.messages[0]["content"]
    mm = loaded["musr_murder_mysteries"][1]
    assert mm.reference == {"choices": ["Lin", "Omar"], "index": 1}
    assert "1. Lin\n2. Omar" in mm.messages[0]["content"]
    assert len(bm.REGISTRY["gsm8k"].load(limit=2)) == 2


# --------------------------------------------------------------------------- scorers


def test_math_scorer() -> None:
    item = bm.Item("q", [], {"answer": "2400"})
    verdicts = bm.score("math", item, ["So \\boxed{2,400}.", "\\boxed{2401}", "It is 2400",
                                       "no idea"])
    assert verdicts == [True, False, False, False]  # strict: no explicit answer, no credit
    assert bm.score("math", item, ["It is 2400"], allow_fallback=True) == [True]
    assert [m for _, m in bm.verdicts("math", item, ["\\boxed{2400}", "#### 2400", "2400"])] \
        == ["boxed", "gsm8k", "none"]


def test_code_scorer_with_hand_written_completions(bench_dir: Path) -> None:
    bench = bm.REGISTRY["humaneval"]
    items = bench.load()
    rows = [json.loads(line) for line in (bench_dir / "humaneval.jsonl").read_text().splitlines()]
    for item, row in zip(items, rows, strict=True):
        ok = bench.score(item, [row["canonical_solution"],  # a body continuing the prompt
                                f"```python\n{row['prompt']}{row['canonical_solution']}```",
                                "    return None\n",
                                "```python\nimport os\nos.system('true')\n```"])
        assert ok == [True, True, False, False], item.id


@pytest.mark.parametrize("text,expected", [
    ("Thinking... so the answer is \\boxed{2}", 1),
    ("\\boxed{B}", 1),
    ("\\boxed{Omar}", 1),
    ("\\boxed{\\text{Lin}}", 0),
    ("The answer is: Lin.", 0),
    ("Option 1", 0),
    ("\\boxed{7}", None),
    ("I cannot tell, maybe Lin or Omar", None),
])
def test_choice_parser(text: str, expected: int | None) -> None:
    assert bm.parse_choice(text, ["Lin", "Omar"]) == expected


def test_custom_benchmarks(tmp_path: Path, problems_file: Path) -> None:
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"question": "def double(x):\n    '''Twice x.'''\n",
                                "answer": "def check(f):\n    assert f(2) == 4\n"}) + "\n")
    choice = tmp_path / "choice.jsonl"
    choice.write_text(json.dumps({"question": "Which is a fruit?", "choices": ["rock", "pear"],
                                  "answer": "pear"}) + "\n")
    benches = bm.resolve([], [
        CustomBenchmark(name="toyprobs", path=str(problems_file)),
        CustomBenchmark(name="mycode", path="code.jsonl", kind="code"),
        CustomBenchmark(name="mychoice", path=str(choice), kind="choice"),
    ], base=tmp_path)
    toy, mycode, mychoice = benches
    items = toy.load(limit=5)
    first = json.loads(problems_file.read_text().splitlines()[0])
    assert len(items) == 5 and items[0].reference == {"answer": first["answer"]}
    assert toy.score(items[0], [f"\\boxed{{{first['answer']}}}"]) == [True]
    [citem] = mycode.load()
    assert citem.reference["entry_point"] == "double"
    assert mycode.score(citem, ["    return 2 * x\n", "    return x\n"]) == [True, False]
    [qitem] = mychoice.load()
    assert qitem.reference["index"] == 1
    assert mychoice.score(qitem, ["\\boxed{2}", "\\boxed{1}"]) == [True, False]


class ScriptedGenerator:
    """Stands in for a model where the test needs *known* completions (a real model cannot be
    told what to write): returns canned texts per prompt, in the Generator interface."""

    def __init__(self, tokenizer: Any, answers: dict[str, list[str]]):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
        self.calls.append(sampling)
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else self.tokenizer.decode(p)
            key = next(k for k in self.answers if k in text)
            texts = self.answers[key][:1] if sampling.greedy else self.answers[key][1:]
            out.append([Completion(t, 5, "length" if t.endswith("…") else "stop")
                        for t in texts[:sampling.n]])
        return out

    def close(self) -> None:
        pass


def test_counts_and_pass_at_k_from_known_completions(bench_dir: Path,
                                                     tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    bench = bm.REGISTRY["humaneval"]
    items = bench.load()[:2]
    rows = [json.loads(line) for line in (bench_dir / "humaneval.jsonl").read_text().splitlines()]
    good = [r["canonical_solution"] for r in rows]
    gen = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), {
        "def add(": [good[0], good[0], "    return 0\n", good[0], "    return a - b\n"],
        "def running_max(": ["    return xs\n"] + ["    return []\n"] * 4,
    })
    ev = EvaluateSpec(benchmarks=["humaneval"], samples=4, k=[1, 2, 4], max_new_tokens=8)
    out = evaluate.evaluate_benchmark(gen, bench, items, ev, seed=3)
    assert [(r["id"], r["n"], r["c"], r["greedy_correct"]) for r in out] == [
        ("Fixture/0", 4, 2, True), ("Fixture/1", 4, 0, False)]
    assert out[0]["pass@2"] == pytest.approx(1 - 1 / 6)
    summary = evaluate.summarize(out, [1, 2, 4], 4)
    assert summary["pass@1"] == pytest.approx(0.25)
    assert summary["pass@4"] == pytest.approx(0.5)
    assert summary["greedy"] == pytest.approx(0.5) and summary["n"] == 2
    assert [s.greedy for s in gen.calls] == [True, False]
    assert gen.calls[1].n == 4 and gen.calls[1].temperature == ev.temperature


# --------------------------------------------------------------------------- the stage


def _spec(model: Path, problems_file: Path, checkpoints: list[str]) -> Any:
    return parse_spec({
        "model": {"name": str(model)},
        "arms": ["vanilla", "polya"],
        "stages": {"evaluate": {
            "benchmarks": ["gsm8k", "humaneval", "musr_team_allocation"],
            "custom": [{"name": "toyprobs", "path": str(problems_file)}],
            "k": [1, 2, 4], "samples": 4, "limit": 3, "maxNewTokens": 48,
            "temperature": 1.0, "topP": 1.0, "backend": "hf", "checkpoints": checkpoints,
            "resources": {"gpus": 0}}},
    })


def _copy_model(src: Path, workdir: Path, arm: str, stage: str) -> None:
    shutil.copytree(src, workdir / arm / stage / "model")


def _gauge(arm: str, bench: str, ckpt: str, k: str) -> float | None:
    return REGISTRY.get_sample_value("polyarun_eval_pass_at_k", {
        "arm": arm, "benchmark": bench, "checkpoint": ckpt, "k": k})


@pytest.mark.slow
def test_evaluate_stage_on_toy_model(tmp_path: Path, toy_model_dir: Path, problems_file: Path,
                                     bench_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "work"
    spec = _spec(toy_model_dir, problems_file, ["base", "midtrain", "rl"])
    _copy_model(toy_model_dir, workdir, "polya", "midtrain")  # a stand-in trained checkpoint
    benches = ["gsm8k", "humaneval", "musr_team_allocation", "toyprobs"]

    # vanilla: only base exists (vanilla has no midtrain; its rl has not run)
    rep = Reporter("evaluate", "vanilla")
    outputs = run_stage("evaluate", spec, "vanilla", workdir, rep)
    assert outputs == {"results": "vanilla/evaluate/results.json", "report": "report/report.md"}
    assert outputs_of(workdir, "vanilla", "evaluate") == outputs
    snap = rep.snapshot()
    assert snap["state"] == "Succeeded" and snap["unit"] == "questions"
    assert snap["total"] == 3 * len(benches) and snap["done"] == snap["total"]
    assert 0.0 <= snap["metrics"]["accuracy"] <= 1.0

    results = json.loads((workdir / outputs["results"]).read_text())
    assert set(results) == {"base"}
    for ckpt, per_bench in results.items():
        assert list(per_bench) == benches
        for bench, figs in per_bench.items():
            assert figs["n"] == 3 and figs["samples"] == 4
            assert {"pass@1", "pass@2", "pass@4", "greedy"} <= set(figs)
            assert figs["pass@1"] <= figs["pass@2"] <= figs["pass@4"] <= 1.0
            lines = (workdir / "vanilla/evaluate/questions" / ckpt / f"{bench}.jsonl"
                     ).read_text().splitlines()
            rows = [json.loads(x) for x in lines]
            assert len(rows) == 3
            for k in (1, 2, 4):
                assert figs[f"pass@{k}"] == pytest.approx(
                    sum(pass_at_k(r["n"], r["c"], k) for r in rows) / 3)
            assert figs["greedy"] == pytest.approx(sum(r["greedy_correct"] for r in rows) / 3)
            assert all(len(r["completions"]) == 2 and r["n"] == 4 for r in rows)
            assert _gauge("vanilla", bench, ckpt, "4") == pytest.approx(figs["pass@4"])
    # The stored verdicts agree with scoring the stored texts again, independently.
    from polya_trainer.verify.answers import is_correct

    for bench in ("gsm8k", "toyprobs"):
        for line in (workdir / "vanilla/evaluate/questions/base" / f"{bench}.jsonl"
                     ).read_text().splitlines():
            row = json.loads(line)
            assert row["greedy_correct"] == is_correct(row["greedy"], row["reference"])
            for comp in row["completions"]:
                assert comp["correct"] == is_correct(comp["text"], row["reference"])

    # polya: base reused from vanilla (same model and settings), midtrain evaluated, no rl.
    out2 = run_stage("evaluate", spec, "polya", workdir, Reporter("evaluate", "polya"))
    polya = json.loads((workdir / out2["results"]).read_text())
    assert set(polya) == {"base", "midtrain"}
    assert polya["base"] == results["base"]
    part = json.loads((workdir / "polya/evaluate/parts/base/gsm8k.json").read_text())
    assert part["copied_from"] == "vanilla"

    report = json.loads((workdir / "report" / "report.json").read_text())
    assert report["rows"] == ["vanilla/base", "polya/base", "polya/midtrain"]
    assert report["table"]["toyprobs"]["polya"]["midtrain"]["pass@4"] == pytest.approx(
        polya["midtrain"]["toyprobs"]["pass@4"])
    assert report["benchmarks"] == benches
    for name in report["plots"]:
        png = (workdir / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| polya/midtrain |" in (workdir / "report" / "report.md").read_text()

    # A finished stage is skipped; a restarted one reuses finished parts without a model.
    assert run_stage("evaluate", spec, "polya", workdir) == out2
    (workdir / "polya/evaluate/MANIFEST.json").unlink()
    (workdir / "polya/evaluate/results.json").unlink()

    def no_model(*a: Any, **k: Any) -> None:
        raise AssertionError("finished benchmarks must not be generated again")

    monkeypatch.setattr(evaluate, "load_generator", no_model)
    assert run_stage("evaluate", spec, "polya", workdir) == out2
    assert json.loads((workdir / out2["results"]).read_text()) == polya


def test_evaluate_fails_clearly_without_checkpoints(tmp_path: Path, problems_file: Path,
                                                    bench_dir: Path) -> None:
    spec = _spec(tmp_path / "nowhere", problems_file, ["midtrain", "rl"])
    with pytest.raises(FileNotFoundError, match="none of the checkpoints"):
        evaluate.run(spec, "vanilla", tmp_path, Reporter("evaluate", "vanilla"))


# --------------------------------------------------------------------------- truncation, presets


def test_cut_off_completions_count_as_wrong(tiny_model_dir: Path) -> None:
    """A completion that hit the token limit (finish reason length) is wrong even when its
    text holds the gold answer; the truncation rate and extraction methods are recorded."""
    from transformers import AutoTokenizer

    item = bm.Item("q1", [{"role": "user", "content": "What is 6 times 7?"}], {"answer": "42"})
    bench = bm.Benchmark("toy", "math", bm.Source("none", "test"), lambda r, i: item)
    gen = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), {"6 times 7": [
        "\\boxed{42}", "\\boxed{42}", "so \\boxed{42} and then …", "#### 42", "maybe 42"]})
    ev = EvaluateSpec(benchmarks=["gsm8k"], samples=4, k=[1, 4], max_new_tokens=8)
    [row] = evaluate.evaluate_benchmark(gen, bench, [item], ev, seed=0)
    assert row["n"] == 4 and row["c"] == 2  # the cut-off box and the bare number miss
    assert row["truncated"] == 1 and row["greedy_correct"]
    assert row["extraction"] == {"boxed": 2, "gsm8k": 1, "none": 1}
    summary = evaluate.summarize([row], [1, 4], 4)
    assert summary["truncated"] == pytest.approx(0.25)
    assert summary["extraction"]["boxed"] == 2


def test_presets_set_sampling_only() -> None:
    r1 = evaluate.effective(EvaluateSpec(preset="r1-sampling", temperature=1.0, samples=8,
                                         k=[1, 8]))
    assert (r1.temperature, r1.top_p, r1.samples) == (0.6, 0.95, 64)
    greedy = evaluate.effective(EvaluateSpec(preset="greedy", maxNewTokens=77))
    assert (greedy.temperature, greedy.samples, greedy.max_new_tokens) == (0.0, 1, 77)
    plain = EvaluateSpec(temperature=0.7)
    assert evaluate.effective(plain) is plain
    # The old names promised another harness's prompts and extraction: refused now.
    for old in ("deepseek-r1", "qwen2.5-math", "lighteval"):
        with pytest.raises(ValueError, match="preset"):
            EvaluateSpec(preset=old)


def test_greedy_preset_makes_one_engine_call_per_benchmark(tiny_model_dir: Path,
                                                           bench_dir: Path) -> None:
    from transformers import AutoTokenizer

    bench = bm.REGISTRY["gsm8k"]
    items = bench.load(limit=3)
    gen = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir),
                            {"": ["\\boxed{1}", "\\boxed{1}"]})
    ev = evaluate.effective(EvaluateSpec(preset="greedy"))
    rows = evaluate.evaluate_benchmark(gen, bench, items, ev, seed=0)
    assert len(gen.calls) == 1 and gen.calls[0].greedy
    assert all(r["n"] == 1 for r in rows)


def test_model_hash_follows_content_not_path(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec = parse_spec({"model": {"name": "org/model", "revision": "abc123"}})
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_model_dir, a)
    shutil.copytree(tiny_model_dir, b)
    assert evaluate.model_hash(spec, str(a)) == evaluate.model_hash(spec, str(b))
    (b / "extra.txt").write_text("changed")  # not in the manifest: the manifest is the key
    from polya_trainer.runtime.artifacts import write_manifest

    write_manifest(b)
    assert evaluate.model_hash(spec, str(a)) != evaluate.model_hash(spec, str(b))
    assert evaluate.model_hash(spec, "org/model") == "hub:org/model@abc123"
    bench = bm.REGISTRY["gsm8k"]
    ev = EvaluateSpec()
    key = evaluate.model_hash(spec, str(a))
    assert evaluate._fingerprint(ev, key, 0, bench) == evaluate._fingerprint(ev, key, 0, bench)
    assert evaluate._fingerprint(ev, key, 0, bench) != evaluate._fingerprint(
        ev, key, 0, bench.pinned("v2"))
