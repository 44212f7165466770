"""The paper sample (manifests/samples/paper-llama3b.yaml) measures what the paper measured:
its headline averages exactly the six math benchmarks, and HumanEval and MuSR are evaluated
and reported apart (paper: pass@k on six math benchmarks; out of domain HumanEval and MuSR)."""

from __future__ import annotations

from pathlib import Path

from polya_trainer.data import benchmarks
from polya_trainer.spec import load_runs

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "paper-llama3b.yaml"
SIX = {"gsm8k", "math500", "aime24", "aime25", "amc23", "minerva_math"}


def test_the_headline_averages_exactly_the_six_math_benchmarks() -> None:
    ev = load_runs(SAMPLE)[0].spec.stages.evaluate
    resolved = benchmarks.resolve(ev.benchmarks, ev.custom)
    assert {b.name for b in resolved if b.headline} == SIX
    apart = {b.name for b in resolved if not b.headline}
    assert apart == {"humaneval", *benchmarks.GROUPS["musr"]}
    assert max(ev.k) == 64
