"""The generate stage end to end on the toy model (real transformers, math-verify, parquet).

The toy model answers arithmetic word problems correctly a fair share of the time, so every
run here has both correct and wrong candidates. `Recorder` wraps the real generator to keep
every candidate it produced (it generates nothing itself).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from polya_trainer import stages
from polya_trainer.backends import Sampling, load_generator
from polya_trainer.backends.scorers import RewardModelScorer, ScoreRequest
from polya_trainer.data.heuristics import plain_messages
from polya_trainer.data.prompts import instruction_of
from polya_trainer.runtime.artifacts import read_manifest
from polya_trainer.runtime.progress import Reporter
from polya_trainer.spec import PolyaRunSpec, parse_spec
from polya_trainer.stages import generate
from polya_trainer.toy import word_problems
from polya_trainer.verify.answers import is_correct

IMPOSSIBLE = "-98765.4321"  # no sample will ever produce this: its question must be dropped
HEURISTICS = ["working_backwards", "decomposing_recombining"]


@pytest.fixture(scope="module")
def toy_gen(toy_model_dir: Path):
    gen = load_generator("hf", parse_spec({"model": {"name": str(toy_model_dir)}}).model,
                         batch_size=16)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def problems(toy_gen: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 toy word problems plus one whose gold answer cannot be hit.

    So that the tests do not depend on how well the toy model was trained, the gold of the
    first 6 questions is the answer the model itself gives most often (calibration samples
    with another seed); the other 2 keep their true answers. Either way the stage only sees
    (question, gold) pairs, and candidates are right for some and wrong for others.
    """
    from collections import Counter

    from polya_trainer.data.heuristics import get
    from polya_trainer.data.prompts import build
    from polya_trainer.verify.answers import extract_answer

    rows = [{"question": r["question"], "answer": r["answer"]} for r in word_problems(8, 21)]
    prompts = [build(toy_gen.tokenizer, get(h), r["question"], n_exemplars=0)[1]
               for r in rows[:6] for h in HEURISTICS]
    outs = toy_gen.generate(prompts, Sampling(n=6, temperature=1.0, top_p=1.0,
                                              max_new_tokens=48, seed=999))
    for i, r in enumerate(rows[:6]):
        votes = Counter(e.value for group in outs[2 * i:2 * i + 2] for c in group
                        if (e := extract_answer(c.text)) is not None)
        if votes:
            r["answer"] = votes.most_common(1)[0][0]
    rows.append({"question": "Ava has 3 apples and gets 4 more. How many apples?",
                 "answer": IMPOSSIBLE})
    path = tmp_path_factory.mktemp("gen-data") / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Recorder:
    """Delegates to a real generator and records (prompt, seed, candidates) of every call."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokenizer = inner, inner.tokenizer
        self.calls: list[tuple[list[str], Sampling, list[list[Any]]]] = []

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[Any]]:
        out = self.inner.generate(prompts, sampling)
        self.calls.append((prompts, sampling, out))
        return out

    def close(self) -> None:
        pass

    def candidates(self) -> dict[str, list[str]]:
        """All candidate texts per prompt string, across calls (rounds)."""
        seen: dict[str, list[str]] = {}
        for prompts, _, out in self.calls:
            for p, group in zip(prompts, out, strict=True):
                seen.setdefault(p, []).extend(c.text for c in group)
        return seen


class LengthScorer:
    """A deterministic test scorer (stands in for adherence): longer responses score higher."""

    name = "length"

    def __init__(self) -> None:
        self.seen: list[ScoreRequest] = []

    def score(self, requests: list[ScoreRequest]) -> list[float]:
        self.seen += requests
        return [float(len(r.response)) for r in requests]

    def close(self) -> None:
        pass


def make_spec(model: Path, data: Path, **generate_cfg: Any) -> PolyaRunSpec:
    cfg = {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 4, "temperature": 1.0,
           "topP": 1.0,
           "maxNewTokens": 48, "rounds": 1, "shardSize": 4, "batchSize": 16,
           "scorer": {"type": "none"}, **generate_cfg}
    return parse_spec({"model": {"name": str(model)}, "dataset": {"source": str(data)},
                       "heuristics": {"ids": HEURISTICS}, "arms": ["polya", "star"],
                       "seed": 7, "stages": {"generate": cfg}})


def load_rows(workdir: Path, arm: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    files = sorted(glob.glob(str(workdir / arm / "generate" / "data" / "*.parquet")))
    assert files, "no shards written"
    return list(load_dataset("parquet", data_files=files, split="train"))


def card(workdir: Path, arm: str) -> dict[str, Any]:
    return json.loads((workdir / arm / "generate" / "card.json").read_text())


def test_polya_keeps_best_correct_and_drops_wrong(toy_model_dir: Path, problems: Path,
                                                   toy_gen: Any, tmp_path: Path) -> None:
    # 8 samples: the toy model writes most correct solutions word for word alike, and only
    # explicit final answers count, so 4 samples seldom give two different correct ones.
    spec = make_spec(toy_model_dir, problems, samplesPerHeuristic=8)
    rec, scorer = Recorder(toy_gen), LengthScorer()
    reporter = Reporter("generate", "polya", path=tmp_path / "progress.json")
    outputs = generate.run(spec, "polya", tmp_path, reporter, generator=rec, scorer=scorer)

    assert outputs == {"data": "polya/generate/data", "card": "polya/generate/card.json"}
    rows = load_rows(tmp_path, "polya")
    seen = rec.candidates()
    all_texts = [(p, t) for p, texts in seen.items() for t in texts]
    gold_of = {r["question"]: r["answer"] for r in map(json.loads, problems.open())}
    # Both outcomes occur, so keeping/dropping is really exercised.
    n_correct = sum(is_correct(t, gold_of[_question(p)]) for p, t in all_texts)
    assert 0 < n_correct < len(all_texts)

    kept = {(r["question"], r["heuristic"]): r for r in rows}
    assert len(kept) == len(rows)  # one row per (question, heuristic)
    multi = 0
    for prompt, texts in seen.items():
        q = _question(prompt)
        hid = next(h for h in HEURISTICS if _heuristic_in(prompt, h))
        good = [t for t in texts if is_correct(t, gold_of[q])]
        row = kept.get((q, hid))
        if not good:
            assert row is None, "a pair without a correct candidate produced a row"
            continue
        assert row is not None, "a pair with a correct candidate was dropped"
        best = max(good, key=len)  # the test scorer's choice (first on ties)
        assert row["completion"] == best and row["score"] == float(len(best))
        assert row["correct_candidates"] == len(good) and row["candidates"] == 8
        assert json.loads(row["prompt_messages"])[-1]["content"].startswith(q)
        multi += len(set(good)) > 1
    assert multi >= 1, "no pair had two different correct candidates to choose between"
    for r in rows:
        assert is_correct(r["completion"], r["answer"])
        assert r["heuristic_name"] and r["round"] == 1 and r["num_tokens"] > 0
    assert IMPOSSIBLE not in {r["answer"] for r in rows}

    c = card(tmp_path, "polya")
    covered = {r["question_id"] for r in rows}
    assert c["counts"]["questions"] == 9 and c["counts"]["pairs"] == 18
    assert c["counts"]["accepted"] == len(rows)
    assert c["counts"]["dropped_questions"] == 9 - len(covered) >= 1
    assert c["heuristics"] == HEURISTICS and c["seed"] == 7 and c["shards"] == 3
    assert set(c["acceptance_rate_per_heuristic"]) == set(HEURISTICS)
    assert c["acceptance_rate_per_round"]["1"]["accepted"] == len(rows)
    assert c["tokens_generated"] > 0 and c["tokens_per_second"] > 0
    assert c["model"]["name"] == str(toy_model_dir)
    manifest = read_manifest(tmp_path / "polya" / "generate")
    assert manifest is not None and manifest["outputs"] == outputs
    assert sorted(manifest["files"]) == sorted([*c["files"], "card.json", "datastats.json"])
    # A second run of the stage is skipped: the manifest is complete.
    assert stages.run_stage("generate", spec, "polya", tmp_path) == outputs

    snap = json.loads((tmp_path / "progress.json").read_text())
    assert snap["total"] == 9 and snap["done"] == 9 and snap["unit"] == "questions"
    assert snap["metrics"]["accepted"] == len(rows)
    assert snap["metrics"]["acceptance_rate"] == pytest.approx(len(rows) / 18, abs=1e-5)
    assert snap["metrics"]["tokens_per_second"] > 0


def _question(prompt: str) -> str:
    """The question of a rendered prompt (the last user turn, before the answer request)."""
    last = prompt.rsplit("<|im_start|>user\n", 1)[1]
    return last.split("\n\nPut the final answer", 1)[0]


def _heuristic_in(prompt: str, hid: str) -> bool:
    from polya_trainer.data.heuristics import get

    return get(hid).instruction() in prompt


def test_rounds_resample_failed_pairs(toy_model_dir: Path, problems: Path, toy_gen: Any,
                                      tmp_path: Path) -> None:
    spec = make_spec(toy_model_dir, problems, samplesPerHeuristic=1, rounds=3, shardSize=9)
    rec = Recorder(toy_gen)
    generate.run(spec, "polya", tmp_path, Reporter("generate", "polya"), generator=rec)
    rows = load_rows(tmp_path, "polya")
    c = card(tmp_path, "polya")
    per_round = c["acceptance_rate_per_round"]
    assert per_round["1"]["attempted"] == 18
    for r in ("2", "3"):
        prev = per_round[str(int(r) - 1)]
        assert per_round[r]["attempted"] == prev["attempted"] - prev["accepted"]
    # Each round resamples exactly the pairs still without a correct answer, with a new seed.
    assert [len(p) for p, _, _ in rec.calls] == [per_round[r]["attempted"] for r in per_round]
    assert len({s.seed for _, s, _ in rec.calls}) == len(rec.calls)
    for (prompts, _, _), (next_prompts, _, _) in zip(rec.calls, rec.calls[1:], strict=False):
        assert set(next_prompts) <= set(prompts)
    assert any(r["round"] > 1 for r in rows), "no pair was accepted after a resample"
    for r in rows:
        assert r["candidates"] == r["round"]  # one candidate per round until accepted
    # The impossible question is tried in every round, then dropped and counted.
    impossible_prompts = [p for p in rec.calls[-1][0] if "Ava has 3 apples" in p]
    assert len(impossible_prompts) == 2
    covered = {r["question_id"] for r in rows}
    assert c["counts"]["dropped_questions"] == 9 - len(covered) >= 1
    assert "8" in c["dropped_question_ids"]
    assert sum(v["accepted"] for v in per_round.values()) == len(rows)


def _reward_model(tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                      head_dim=64, num_labels=1, pad_token_id=tok.pad_token_id)
    Qwen2ForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_star_arm_with_reward_model(toy_model_dir: Path, problems: Path, toy_gen: Any,
                                    tmp_path: Path) -> None:
    """STaR with starSelection: scorer: plain question, one correct answer per question, chosen
    by a real reward model."""
    rm_dir = _reward_model(toy_model_dir, tmp_path / "rm")
    spec = make_spec(toy_model_dir, problems, rounds=2, starSelection="scorer",
                     scorer={"type": "rewardModel", "model": str(rm_dir), "batchSize": 4})
    rec = Recorder(toy_gen)
    generate.run(spec, "star", tmp_path, Reporter("generate", "star"), generator=rec)
    rows = load_rows(tmp_path, "star")
    assert rows and len({r["question_id"] for r in rows}) == len(rows)
    rm = RewardModelScorer(str(rm_dir))
    seen = rec.candidates()
    for r in rows:
        assert r["heuristic"] == "none" and is_correct(r["completion"], r["answer"])
        assert json.loads(r["prompt_messages"]) == plain_messages(r["question"])
        prompt = next(p for p in seen if _question(p) == r["question"])
        good = [t for t in seen[prompt] if is_correct(t, r["answer"])]
        scores = rm.score([ScoreRequest(instruction_of(None), r["question"], t)
                           for t in good])
        assert r["score"] == pytest.approx(max(scores), abs=1e-4)
    c = card(tmp_path, "star")
    assert c["heuristics"] == ["none"] and c["counts"]["pairs"] == 9
    assert c["scorer"]["type"] == "rewardModel"
    assert c["counts"]["dropped_questions"] == 9 - len(rows)


def test_star_arm_keeps_the_first_correct_rationale_by_default(
        toy_model_dir: Path, problems: Path, toy_gen: Any, tmp_path: Path) -> None:
    """STaR's own rule (the default starSelection: first): the first correct, whole rationale
    sampled for a question is kept, and no scorer is asked, whatever spec.stages.generate.scorer
    says (it is the polya arm's)."""
    spec = make_spec(toy_model_dir, problems, rounds=2,
                     scorer={"type": "rewardModel", "model": "no/such-model"})
    rec = Recorder(toy_gen)
    generate.run(spec, "star", tmp_path, Reporter("generate", "star"), generator=rec)
    first: dict[str, str] = {}
    for prompts, _, out in rec.calls:
        for p, group in zip(prompts, out, strict=True):
            for c in group:
                if not c.truncated and is_correct(c.text, _answer_of(problems, _question(p))):
                    first.setdefault(_question(p), c.text)
    rows = load_rows(tmp_path, "star")
    assert rows and len(rows) == len(first)
    for r in rows:
        assert r["completion"] == first[r["question"]] and r["score"] == 0.0
    assert card(tmp_path, "star")["scorer"]["type"] == "none"


def _answer_of(problems: Path, question: str) -> str:
    rows = [json.loads(line) for line in problems.read_text().splitlines() if line.strip()]
    return next(str(r["answer"]) for r in rows if r["question"] == question)


RESUME_SCRIPT = """
import json, sys, time
from pathlib import Path
from polya_trainer.stages import generate
from polya_trainer.backends import load_generator
from polya_trainer.runtime.progress import Reporter
from polya_trainer.data.prompts import instruction_of
from polya_trainer.spec import parse_spec

spec = parse_spec(json.loads(sys.argv[1]))
workdir = Path(sys.argv[2])
gen = load_generator("hf", spec.model, batch_size=spec.stages.generate.batch_size)

class StallAfterFirstShard:
    # Delegates to the real generator; once shard 0 is on disk it stalls so the test
    # can kill the process while shard 1 is in flight.
    tokenizer = gen.tokenizer
    def generate(self, prompts, sampling):
        if (workdir / "polya/generate/shards/shard-00000.json").exists():
            print("stalling", flush=True)
            time.sleep(600)
        return gen.generate(prompts, sampling)
    def close(self):
        pass

generate.run(spec, "polya", workdir, Reporter("generate", "polya"),
             generator=StallAfterFirstShard())
"""


def test_resume_after_kill_gives_identical_dataset(toy_model_dir: Path, problems: Path,
                                                   toy_gen: Any, tmp_path: Path) -> None:
    spec = make_spec(toy_model_dir, problems, samplesPerHeuristic=2, rounds=2, shardSize=3)
    # Uninterrupted reference run.
    ref_dir = tmp_path / "ref"
    generate.run(spec, "polya", ref_dir, Reporter("generate", "polya"), generator=toy_gen)
    reference = load_rows(ref_dir, "polya")

    # A run killed (SIGKILL) while its second shard is being generated.
    work = tmp_path / "work"
    script = tmp_path / "resume_job.py"
    script.write_text(RESUME_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(spec.dump()), str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    sidecar = work / "polya" / "generate" / "shards" / "shard-00000.json"
    deadline = time.monotonic() + 300
    while not sidecar.exists():
        assert proc.poll() is None, f"job exited early:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "first shard never appeared"
        time.sleep(0.05)
    assert proc.stdout.readline().strip() == "stalling"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    out = work / "polya" / "generate"
    assert read_manifest(out) is None  # killed mid-run: not complete
    assert [p.name for p in (out / "data").iterdir() if not p.name.startswith(".")] == [
        "shard-00000.parquet"]
    first = (out / "data" / "shard-00000.parquet").read_bytes()

    # Rerun: shard 0 is reused, the rest generated; the result equals the reference.
    generate.run(spec, "polya", work, Reporter("generate", "polya"), generator=toy_gen)
    assert (out / "data" / "shard-00000.parquet").read_bytes() == first
    assert card(work, "polya")["resumedShards"] == 1
    assert load_rows(work, "polya") == reference
    assert card(work, "polya")["counts"] == card(ref_dir, "polya")["counts"]
    # A different seed gives different data (the comparison above can fail).
    other = make_spec(toy_model_dir, problems, samplesPerHeuristic=2, rounds=2, shardSize=3)
    other.seed = 8
    generate.run(other, "polya", tmp_path / "other", Reporter("generate", "polya"),
                 generator=toy_gen)
    assert load_rows(tmp_path / "other", "polya") != reference


def test_vanilla_arm_has_no_generate_stage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vanilla"):
        generate.run(PolyaRunSpec(model={"name": "m"}), "vanilla", tmp_path)


class ScriptedGenerator:
    """Returns the same fixed completions for every prompt (a stand-in for a backend's
    ``generate``, see ``polya_trainer.backends.Generator``); the tokenizer is a real one
    (the tiny test model's), so prompts are rendered as in a run. Sampling is ignored."""

    def __init__(self, tokenizer: Any, completions: list[Any]) -> None:
        self.tokenizer, self.completions = tokenizer, completions

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[Any]]:
        return [list(self.completions) for _ in prompts]


def test_strict_answers_and_truncated_candidates(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Only explicit final answers count unless the spec opts into the last-number fallback;
    a candidate cut off by the length limit is never kept; the stats say how answers were
    extracted and how many candidates were truncated."""
    from polya_trainer.backends import Completion
    from polya_trainer.spec import AnswersSpec
    from transformers import AutoTokenizer

    gen = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), [
        Completion("3 + 4 = 7, so the answer is \\boxed{7} and also", 40, "length"),
        Completion("3 + 4 gives 7", 5), Completion("\\boxed{7}", 3), Completion("#### 8", 2)])
    question = {"id": "q", "question": "Ava has 3 apples and gets 4 more. How many?",
                "answer": "7"}
    spec = make_spec(tiny_model_dir, tmp_path / "questions.jsonl")
    strict = generate.process_shard(0, [question], [None], gen, LengthScorer(), spec)
    assert [r["completion"] for r in strict.rows] == ["\\boxed{7}"]
    assert strict.rows[0]["correct_candidates"] == 1
    assert strict.stats["extraction"] == {"boxed": 2, "gsm8k": 1, "answer_line": 0,
                                          "answer_is": 0, "last_number": 0, "none": 1}
    assert strict.stats["truncated"] == 1

    opted = spec.model_copy(update={"answers": AnswersSpec(last_number_fallback=True)})
    fb = generate.process_shard(0, [question], [None], gen, LengthScorer(), opted)
    assert [r["completion"] for r in fb.rows] == ["3 + 4 gives 7"]  # longest correct one
    assert fb.rows[0]["correct_candidates"] == 2
    assert fb.stats["extraction"]["last_number"] == 1 and fb.stats["extraction"]["none"] == 0
    assert generate.fingerprint(opted, "star", []) != generate.fingerprint(spec, "star", [])

    summary = generate.summarize([{**strict.stats, "file": None}])
    assert summary["answer_extraction"] == strict.stats["extraction"]
    assert summary["truncated_candidates"] == 1 and summary["truncation_rate"] == 0.25


def test_data_insight_in_card_status_and_dedup(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Per-heuristic statistics and per-question Vendi reach the card, datastats.json, the
    stage status and Prometheus; duplicates across heuristics are counted, and removed only
    with dedup set."""
    from polya_trainer.backends import Completion
    from polya_trainer.runtime.progress import REGISTRY
    from transformers import AutoTokenizer

    gen = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), [
        Completion("Add 3 and 4 to get \\boxed{7}", 8),
        Completion("cut off \\boxed{7} and", 40, "length")])
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"Ava has 3 apples and gets 4 more ({i})?",
                                        "answer": "7"}) + "\n" for i in range(3)))
    for mode, kept in (("off", 6), ("near", 3)):
        spec = make_spec(tiny_model_dir, data, dedup=mode)
        workdir = tmp_path / mode
        rep = Reporter("generate", "polya", path=workdir / "progress.json")
        generate.run(spec, "polya", workdir, rep, generator=gen, scorer=LengthScorer())
        assert len(load_rows(workdir, "polya")) == kept
        ins = card(workdir, "polya")["data_insight"]
        for hid in HEURISTICS:
            t = ins["per_heuristic"][hid]
            assert t["acceptance_rate"] == 1.0 and t["truncation_rate"] == 0.5
            assert t["candidates"] == 6 and t["answer_extraction"] == {"boxed": 6}
            assert t["kept"] == (0 if mode == "near" and hid == HEURISTICS[1] else 3)
            assert t["length_tokens"]["p50"] == (8.0 if t["kept"] else None)
        # Heuristic 2's solution repeats heuristic 1's for every question.
        assert ins["duplicates"]["exact"] == 3
        assert ins["duplicates"]["removed"] == (0 if mode == "off" else 3)
        div = ins["diversity"]
        assert div["questions_with_several_solutions"] == (3 if mode == "off" else 0)
        if mode == "off":
            assert div["per_question"]["mean"] == pytest.approx(1.0)  # identical solutions
        side = json.loads((workdir / "polya/generate/datastats.json").read_text())
        assert set(side["vendi_per_question"]) == {"0", "1", "2"}
        snap = rep.snapshot()
        assert snap["metrics"]["truncation_rate"] == 0.5
        assert snap["metrics"]["duplicates_removed"] == ins["duplicates"]["removed"]
        assert REGISTRY.get_sample_value(
            "polyarun_generate_heuristic",
            {"arm": "polya", "heuristic": HEURISTICS[0], "figure": "acceptance_rate"}) == 1.0

    # `polya inspect` browses what was written, filtered by heuristic and score.
    from polya_trainer import browse
    from polya_trainer.cli import main
    from rich.console import Console

    con = Console(record=True, width=240)
    score = float(len("Add 3 and 4 to get \\boxed{7}"))  # LengthScorer's score
    assert browse.render(tmp_path / "off", heuristic=HEURISTICS[1], min_score=score,
                         console=con) == 3
    text = con.export_text()
    assert "polya: per heuristic" in text and HEURISTICS[1] in text and "boxed{7}" in text
    assert browse.render(tmp_path / "off", min_score=score + 1, console=Console(record=True)) == 0
    assert main(["inspect", str(tmp_path / "off"), "--limit", "2"]) == 0
    assert main(["inspect", str(tmp_path / "off"), "--heuristic", "nope"]) == 1


def test_contamination_drop_before_sampling(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A seed question planted in an evaluation benchmark is reported and, with action drop,
    never sampled; the card and the stage status carry the summary."""
    from polya_trainer.backends import Completion
    from transformers import AutoTokenizer

    planted = ("Ava has three red apples and gets four more green apples from her kind "
               "neighbour next door on Sunday. How many apples does she have?")
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "7"}) + "\n"
                            for q in ["Tom has 3 pens and buys 4 more. How many pens?", planted]))
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": planted, "answer": "7"}) + "\n")
    gen = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir),
                            [Completion("\\boxed{7}", 3)])
    base = make_spec(tiny_model_dir, data).model_dump(by_alias=True, exclude_none=True)
    base["stages"]["evaluate"] = {"benchmarks": [],
                                  "custom": [{"name": "planted", "path": str(bench)}]}
    for action, questions in (("report", 2), ("drop", 1)):
        spec = parse_spec({**base, "contamination": {"action": action}})
        workdir = tmp_path / action
        rep = Reporter("generate", "polya")
        generate.run(spec, "polya", workdir, rep, generator=gen, scorer=LengthScorer())
        c = card(workdir, "polya")
        assert c["contamination"]["seed_questions"]["overlapping"] == 1
        assert c["contamination"]["seed_questions"]["dropped"] == (action == "drop")
        assert c["counts"]["questions"] == questions
        kept = {r["question"] for r in load_rows(workdir, "polya")}
        assert (planted in kept) == (action == "report")
        assert rep.snapshot()["metrics"]["contaminated_questions"] == 1
        report = json.loads((workdir / "polya/generate/contamination.json").read_text())
        assert report["sources"]["seed_questions"]["overlapping_ids"] == ["1"]
