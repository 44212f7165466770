"""Contamination: a planted 13-gram overlap with an evaluation benchmark is found (and
dropped with action drop); clean inputs report zero."""

from __future__ import annotations

import json
from pathlib import Path

from polya_trainer.data import contamination as cc
from polya_trainer.data.heuristics import get, plain_messages
from polya_trainer.spec import parse_spec

BENCH_Q = ("A train leaves the station at nine in the morning travelling at sixty miles per "
           "hour toward a city two hundred miles away; when does it arrive?")
PLANTED = ("Consider this: a train leaves the station at nine in the morning travelling at "
           "sixty miles per hour toward a city far away. How far did it go?")
CLEAN = ["Ava has 3 apples and buys 4 more. How many apples does she have now?",
         "A baker makes 12 loaves a day for 5 days. How many loaves does he make?"]


def bench() -> dict[str, list[tuple[str, str]]]:
    # As benchmark_texts builds it: the user message, with the boxed-answer request.
    return {"toybench": [("b0", plain_messages(BENCH_Q)[0]["content"]),
                         ("b1", plain_messages("What is 2 + 2?")[0]["content"])]}


def test_planted_overlap_found_clean_zero() -> None:
    report = cc.check({"seed_questions": [("q0", CLEAN[0]), ("q1", PLANTED), ("q2", CLEAN[1])],
                       "clean": [(str(i), q) for i, q in enumerate(CLEAN)]}, bench(), n=13)
    seed = report["sources"]["seed_questions"]
    assert seed["overlapping"] == 1 and seed["overlapping_ids"] == ["q1"]
    assert seed["per_benchmark"]["toybench"]["examples"][0]["shared_ngrams"] >= 1
    assert report["sources"]["clean"]["overlapping"] == 0
    # The planted run is 19 words ("a train ... a city"): n = 19 finds it, n = 20 does not.
    for n, found in ((19, 1), (20, 0)):
        got = cc.check({"s": [("q1", PLANTED)]}, bench(), n=n)["sources"]["s"]["overlapping"]
        assert got == found


def test_prompt_template_is_not_an_overlap() -> None:
    # Every benchmark prompt carries the same answer request; a training text quoting it
    # does not overlap the benchmark.
    request = plain_messages("x")[0]["content"]
    report = cc.check({"s": [("t", "Some question. " + request)]}, bench(), n=5)
    assert report["sources"]["s"]["overlapping"] == 0


def write_bench(tmp_path: Path, extra: list[str]) -> Path:
    path = tmp_path / "bench.jsonl"
    rows = [{"question": q, "answer": "1"} for q in [BENCH_Q, *extra]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec_for(tmp_path: Path, bench_path: Path, action: str) -> object:
    return parse_spec({
        "model": {"name": "toy"}, "contamination": {"action": action},
        "stages": {"evaluate": {"benchmarks": [],
                                "custom": [{"name": "toybench", "path": str(bench_path)}]}}})


def test_gate_drops_questions_and_exemplars(tmp_path: Path) -> None:
    h = get("working_backwards")
    ex = h.exemplars[0]
    bench_path = write_bench(tmp_path, [ex.question])  # plant the first exemplar's question
    questions = [{"id": "q0", "question": CLEAN[0]}, {"id": "q1", "question": PLANTED}]
    kept, heur, summary = cc.gate_questions(spec_for(tmp_path, bench_path, "drop"),
                                            "seed_questions", questions, tmp_path / "out",
                                            tmp_path, [h], 2)
    assert [q["id"] for q in kept] == ["q0"]
    assert summary["seed_questions"] == {"checked": 2, "overlapping": 1, "dropped": 1}
    assert summary["exemplars"]["overlapping"] == 1
    assert ex not in heur[0].exemplars and len(heur[0].exemplars) == 1
    report = json.loads((tmp_path / "out" / "contamination.json").read_text())
    assert report["sources"]["exemplars"]["overlapping_ids"] == ["working_backwards/0"]


def test_gate_report_keeps_everything_and_off_skips(tmp_path: Path) -> None:
    bench_path = write_bench(tmp_path, [])
    questions = [{"id": "q1", "question": PLANTED}]
    kept, _, summary = cc.gate_questions(spec_for(tmp_path, bench_path, "report"), "rl",
                                         questions, tmp_path / "r", tmp_path)
    assert kept == questions and summary["rl"] == {"checked": 1, "overlapping": 1, "dropped": 0}
    kept, _, summary = cc.gate_questions(spec_for(tmp_path, bench_path, "off"), "rl",
                                         questions, tmp_path / "o", tmp_path)
    assert kept == questions and summary is None and not (tmp_path / "o").exists()


def test_rl_prompts_drop_overlapping_questions(tmp_path: Path) -> None:
    from polya_trainer.stages import rl

    data = tmp_path / "rl.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "3"}) + "\n"
                            for q in [CLEAN[0], PLANTED, CLEAN[1]]))
    spec = parse_spec({
        "model": {"name": "toy"}, "contamination": {"action": "drop"},
        "stages": {"rl": {"dataset": {"source": str(data), "config": None}},
                   "evaluate": {"benchmarks": [], "custom": [
                       {"name": "toybench", "path": str(write_bench(tmp_path, []))}]}}})
    ds = rl.load_prompts(spec, tmp_path, "polya")
    assert len(ds) == 2 and all(PLANTED not in p["prompt"][-1]["content"] for p in ds)
    report = json.loads((tmp_path / "polya" / "rl" / "contamination.json").read_text())
    assert report["sources"]["rl_questions"]["overlapping"] == 1
