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


def test_the_recipe_is_the_same_on_1_2_4_and_8_gpus() -> None:
    """Global sizes in the spec (completionsPerUpdate, examplesPerUpdate, promptsPerRollout):
    the accumulation follows the GPU count, the update and rollout sizes do not."""
    from polya_trainer.stages import rl

    run = load_runs(SAMPLE)[0]
    plans = {}
    for gpus in (1, 2, 4, 8):
        stages = run.spec.stages.model_copy(update={
            stage: getattr(run.spec.stages, stage).model_copy(update={
                "resources": getattr(run.spec.stages, stage).resources.model_copy(
                    update={"gpus": gpus})})
            for stage in ("midtrain", "rl")})
        spec = run.spec.model_copy(update={"stages": stages})
        processes = spec.stages.rl.resources.processes()
        assert processes == gpus
        plan = rl.rollout_plan(spec, spec.stages.rl.trainer_args, processes)
        # Micro-steps follow the GPU count: 4 completions per GPU each.
        assert plan.pop("gradient_accumulation_steps") * 4 * gpus == 512
        assert plan.pop("steps_per_generation") * 4 * gpus == 2048
        mid = spec.stages.midtrain
        plans[gpus] = (plan, mid.accumulation(processes) * mid.per_device_batch_size * gpus)
    assert all(p == plans[4] for p in plans.values()), plans
    assert plans[4] == ({"generation_batch_size": 2048, "completions_per_update": 512,
                         "updates_per_rollout": 4, "prompts_per_rollout": 128}, 128)


def test_an_update_size_that_does_not_split_names_the_field() -> None:
    import pytest
    from polya_trainer.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match=r"spec\.stages\.rl\.completionsPerUpdate"):
        parse_spec({"model": {"name": "m"}, "stages": {"rl": {
            "completionsPerUpdate": 520, "perDeviceBatchSize": 4, "resources": {"gpus": 4}}}})
    # A global size wins over the accumulation the API server defaults in.
    rl = parse_spec({"model": {"name": "m"}, "stages": {"rl": {
        "completionsPerUpdate": 512, "perDeviceBatchSize": 4, "gradientAccumulationSteps": 8,
        "resources": {"gpus": 4}}}}).stages.rl
    assert rl.accumulation(rl.resources.processes()) == 32
    with pytest.raises(SpecError, match=r"spec\.stages\.midtrain\.examplesPerUpdate"):
        parse_spec({"model": {"name": "m"}, "stages": {"midtrain": {
            "examplesPerUpdate": 100, "perDeviceBatchSize": 4, "resources": {"gpus": 8}}}})
