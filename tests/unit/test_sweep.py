"""Sweeps (spec.sweep), their expansion into variant runs, the stage cache's keys and store,
and the sweep report's aggregation. Fast: no model runs here (tests/trainer/test_sweep_run.py
runs a real sweep)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from crdcheck import api_errors, names_field
from polya_trainer import spec as s
from polya_trainer.engine import sweep as sw
from polya_trainer.engine.sweep import MAX_NAME, SWEEP_LABEL, expand, variant_name
from polya_trainer.runtime import cache
from polya_trainer.runtime.artifacts import atomic_write_json, read_manifest, write_manifest
from polya_trainer.runtime.workspace import CACHE_DIR


def sweep_run(sweep: dict[str, Any] | None = None, name: str = "abl",
              **spec: Any) -> dict[str, Any]:
    return {"apiVersion": s.API_VERSION, "kind": s.KIND,
            "metadata": {"name": name, "namespace": "lab", "labels": {"team": "x"}},
            "spec": {"model": {"name": "org/model"}, "arms": ["vanilla", "polya"], "seed": 7,
                     "sweep": sweep if sweep is not None else
                     {"heuristicsCount": [4, 1, 2], "seeds": [2, 1]}, **spec}}


def errors_of(obj: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        s.parse_run(copy.deepcopy(obj))
    except s.SpecError as exc:
        return exc.errors
    return []


# --------------------------------------------------------------------------- the contract

INVALID = [
    ("empty", sweep_run({}), "spec.sweep"),
    ("count-zero", sweep_run({"heuristicsCount": [0, 2]}), "spec.sweep.heuristicsCount"),
    ("count-too-big", sweep_run({"heuristicsCount": [65]}), "spec.sweep.heuristicsCount"),
    ("seed-negative", sweep_run({"seeds": [-1]}), "spec.sweep.seeds"),
    ("count-repeats", sweep_run({"heuristicsCount": [2, 2]}), "spec.sweep"),
    ("with-heuristics-count", sweep_run({"heuristicsCount": [1, 2]}, heuristics={"count": 4}),
     "sweep.heuristicsCount"),
    ("with-heuristics-ids", sweep_run({"heuristicsCount": [1]},
                                      heuristics={"ids": ["working_backwards"]}),
     "sweep.heuristicsCount"),
]


@pytest.mark.parametrize(("case", "obj", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_sweeps_rejected_by_both_layers(case: str, obj: dict[str, Any],
                                                field: str) -> None:
    p_errors, a_errors = errors_of(obj), api_errors(copy.deepcopy(obj))
    assert p_errors and names_field(p_errors, field), (case, p_errors)
    if case != "count-repeats":  # the schema's list-type set: uniqueness is the API server's
        assert a_errors and names_field(a_errors, field), (case, a_errors)


def test_count_beyond_the_catalog_is_rejected_by_the_contract() -> None:
    from polya_trainer.data.heuristics import CATALOG

    assert len(CATALOG) >= 64  # the schema's bound is then the tighter one
    assert errors_of(sweep_run()) == [] and api_errors(sweep_run()) == []


def test_sweep_is_immutable_once_created() -> None:
    old = sweep_run()
    new = copy.deepcopy(old)
    new["spec"]["sweep"]["seeds"] = [1, 2, 3]
    assert names_field(api_errors(new, old=old), "spec.sweep")
    plain = copy.deepcopy(old)
    del plain["spec"]["sweep"]
    assert names_field(api_errors(new, old=plain), "spec.sweep")  # may not be added


# --------------------------------------------------------------------------- expansion


def test_expand_is_deterministic_and_shares_generation() -> None:
    run = s.parse_run(sweep_run())
    variants = expand(run)
    assert [v.name for v in variants] == ["abl-h1-s1", "abl-h1-s2", "abl-h2-s1", "abl-h2-s2",
                                          "abl-h4-s1", "abl-h4-s2"]
    assert [v.name for v in expand(run)] == [v.name for v in variants]
    for v in variants:
        sp = v.run.spec
        assert sp.sweep is None and sp.heuristics.count == 4
        assert sp.stages.generate.seed == 7  # the parent's: one generation for all
        assert (sp.stages.midtrain.heuristics_count, sp.seed) == (v.heuristics, v.seed)
        assert v.run.metadata.model_extra["labels"] == {"team": "x", SWEEP_LABEL: "abl"}
        assert v.run.metadata.namespace == "lab"
    gens = {json.dumps(v.run.spec.stages.generate.dump(), sort_keys=True) for v in variants}
    assert len(gens) == 1


def test_expand_seeds_only_and_counts_only() -> None:
    seeds = expand(s.parse_run(sweep_run({"seeds": [3, 1]})))
    assert [(v.name, v.heuristics, v.seed) for v in seeds] == [("abl-s1", None, 1),
                                                              ("abl-s3", None, 3)]
    assert all(v.run.spec.heuristics.count is None for v in seeds)
    counts = expand(s.parse_run(sweep_run({"heuristicsCount": [8, 2]})))
    assert [(v.name, v.seed) for v in counts] == [("abl-h2", 7), ("abl-h8", 7)]
    assert expand(s.parse_run({**sweep_run(), "spec": {"model": {"name": "m"}}})) == []


def test_variant_names_stay_valid_and_distinct_for_long_parents() -> None:
    a, b = "a" * 38 + "xy", "a" * 38 + "zw"
    names = {variant_name(p, "h16-s12345") for p in (a, b)}
    assert len(names) == 2
    for n in names:
        assert len(n) <= MAX_NAME
        s.ObjectMeta(name=n)  # RFC 1035, as run names must be
    assert variant_name("short", "h1-s1") == "short-h1-s1"


def test_store_prefix_per_variant() -> None:
    run = s.parse_run(sweep_run({"seeds": [1, 2]}, storage={"uri": "s3://b/abl/"}))
    assert [v.run.spec.storage.uri for v in expand(run)] == ["s3://b/abl/abl-s1",
                                                             "s3://b/abl/abl-s2"]


# --------------------------------------------------------------------------- the planner

NOW = datetime(2025, 1, 1, tzinfo=UTC)
RUN = s.parse_run(sweep_run({"heuristicsCount": [1, 2], "seeds": [1, 2]}))
NAMES = ["abl-h1-s1", "abl-h1-s2", "abl-h2-s1", "abl-h2-s2"]
RUNNING, GENERATED = sw.Child("Running"), sw.Child("Running", generated=True, progress=30.0)
DONE, FAILED = sw.Child("Succeeded", True, 100.0), sw.Child("Failed", True, 50.0)


def _plan(children: dict[str, sw.Child], report: str | None = None,
          parallel: int | None = None, run: s.PolyaRun = RUN) -> sw.SweepPlan:
    return sw.plan(run, children, report, None, NOW, generation=3,
                   policy=sw.Policy(max_parallel=parallel))


@pytest.mark.parametrize("parallel", [None, 1])
def test_first_variant_alone_until_it_generated(parallel: int | None) -> None:
    assert [v.name for v in _plan({}, parallel=parallel).starts] == NAMES[:1]
    assert _plan({NAMES[0]: RUNNING}, parallel=parallel).actions == []
    later = _plan({NAMES[0]: GENERATED}, parallel=parallel).starts
    assert [v.name for v in later] == (NAMES[1:] if parallel is None else [])
    after = _plan({NAMES[0]: DONE}, parallel=parallel).starts
    assert [v.name for v in after] == (NAMES[1:] if parallel is None else NAMES[1:2])


def test_one_at_a_time_in_order() -> None:
    assert _plan({NAMES[0]: DONE, NAMES[1]: RUNNING}, parallel=1).actions == []
    plan = _plan({NAMES[0]: DONE, NAMES[1]: DONE}, parallel=1)
    assert [v.name for v in plan.starts] == [NAMES[2]]
    assert plan.status.sweep.created == 3


def test_vanilla_only_sweep_does_not_wait_for_generation() -> None:
    run = s.parse_run(sweep_run({"seeds": [1, 2]}, arms=["vanilla"]))
    assert [v.name for v in _plan({"abl-s1": RUNNING}, run=run).starts] == ["abl-s2"]


def test_a_failed_variant_stops_further_starts_and_fails_the_sweep() -> None:
    plan = _plan({NAMES[0]: DONE, NAMES[1]: FAILED, NAMES[2]: RUNNING})
    assert plan.actions == []
    cond = {c.type: c for c in plan.status.conditions}
    assert (cond["Failed"].status, cond["Failed"].message) == ("True", NAMES[1])
    assert cond["Running"].status == cond["Succeeded"].status == "False"
    assert [row.state for row in plan.status.sweep.children] == [
        "Succeeded", "Failed", "Running", "Pending"]
    assert plan.status.progress == 37.5  # (100 + 50 + 0 + 0) / 4


def test_report_step_then_success() -> None:
    done = dict.fromkeys(NAMES, DONE)
    writing = _plan(done)
    assert writing.report and not writing.starts
    cond = {c.type: c for c in writing.status.conditions}
    assert (cond["Running"].status, cond["Running"].reason) == ("True", "WritingReport")
    assert cond["Succeeded"].status == "False" and writing.status.completion_time is None
    assert _plan(done, "Running").actions == []
    ok = _plan(done, "Succeeded")
    cond = {c.type: c for c in ok.status.conditions}
    assert (cond["Succeeded"].status, cond["Succeeded"].reason) == ("True",
                                                                   "AllVariantsSucceeded")
    assert ok.status.report == "report/sweep.md" and ok.status.completion_time == NOW
    assert ok.status.observed_generation == 3 and ok.status.progress == 100.0
    failed = _plan(done, "Failed")  # the variants did succeed: so does the sweep
    cond = {c.type: c for c in failed.status.conditions}
    assert cond["Succeeded"].status == "True" and failed.status.report is None
    assert "not written" in cond["Succeeded"].message


def test_transition_times_move_only_on_a_flip() -> None:
    first = _plan({NAMES[0]: RUNNING})
    later = sw.plan(RUN, {NAMES[0]: GENERATED}, None, first.status,
                    NOW.replace(hour=5), generation=3)
    before = {c.type: c.last_transition_time for c in first.status.conditions}
    assert {c.type: c.last_transition_time for c in later.status.conditions} == before
    assert later.status.start_time == NOW


# --------------------------------------------------------------------------- cache keys


def _finish(workdir: Path, arm: str, stage: str, payload: str) -> None:
    d = workdir / arm / stage
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "data" / "part.txt").write_text(payload)
    (d / "checkpoints").mkdir(exist_ok=True)
    (d / "checkpoints" / "big.bin").write_text("optimizer state")
    write_manifest(d, files=["data/part.txt"], outputs={"data": f"{arm}/{stage}/data"})


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"w1")
    return d


def _key(spec: s.PolyaRunSpec, stage: str, arm: str, workdir: Path) -> str | None:
    return cache.stage_key(stage, spec, arm, workdir)


def test_keys_share_generation_across_variants_and_split_downstream(
        tmp_path: Path, model_dir: Path) -> None:
    run = s.parse_run(sweep_run())
    run.spec.model.name = str(model_dir)
    variants = expand(run)
    gen = {_key(v.run.spec, "generate", "polya", tmp_path / v.name) for v in variants}
    assert len(gen) == 1 and None not in gen
    vanilla = {(v.seed, _key(v.run.spec, "rl", "vanilla", tmp_path / v.name)) for v in variants}
    assert len({k for _, k in vanilla}) == 2  # one per seed, shared across n
    for v in variants:  # the same upstream data for every variant
        _finish(tmp_path / v.name, "polya", "generate", "rows")
    mid = {_key(v.run.spec, "midtrain", "polya", tmp_path / v.name) for v in variants}
    assert len(mid) == 6 and None not in mid
    # Upstream unfinished: no key.
    assert _key(variants[0].run.spec, "rl", "polya", tmp_path / variants[0].name) is None


def test_keys_follow_content_not_scheduling(tmp_path: Path, model_dir: Path) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    body = {"model": {"name": str(model_dir)}, "dataset": {"source": str(data)}}
    key = _key(s.parse_spec(body), "generate", "polya", tmp_path / "w")
    moved = s.parse_spec({**body, "storage": {"pvc": "other"}, "queueName": "q",
                          "stages": {"generate": {"backoffLimit": 9, "resources": {
                              "gpus": 1, "nodeSelector": {"a": "b"}}},
                              "midtrain": {"epochs": 5.0}}})
    assert _key(moved, "generate", "polya", tmp_path / "other") == key
    assert _key(s.parse_spec({**body, "seed": 1}), "generate", "polya", tmp_path / "w") != key
    assert _key(s.parse_spec(body), "generate", "star", tmp_path / "w") != key
    data.write_text('{"question": "1+1", "answer": "3"}\n')
    assert _key(s.parse_spec(body), "generate", "polya", tmp_path / "w") != key
    (model_dir / "weights.bin").write_bytes(b"w2")
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    assert _key(s.parse_spec(body), "generate", "polya", tmp_path / "w") != key


def test_publish_then_restore_marks_the_source(tmp_path: Path, model_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec = s.parse_spec({"model": {"name": str(model_dir)}})
    runs = [tmp_path / "one", tmp_path / "two"]
    calls: list[str] = []

    def execute(workdir: Path) -> Any:
        def go() -> dict[str, str]:
            calls.append(workdir.name)
            _finish(workdir, "polya", "generate", "rows")
            return {"data": "polya/generate/data"}
        return go

    first = cache.cached_run("generate", spec, "polya", runs[0], execute(runs[0]))
    second = cache.cached_run("generate", spec, "polya", runs[1], execute(runs[1]))
    assert calls == ["one"]
    assert first == {"data": "polya/generate/data"}
    assert second == {**first, cache.CACHED_FROM: "one/polya/generate"}
    restored = runs[1] / "polya" / "generate"
    assert read_manifest(restored, verify=True)["outputs"] == second
    assert (restored / "data" / "part.txt").read_text() == "rows"
    assert not (restored / "checkpoints").exists()  # checkpoints are not cached
    entries = list((tmp_path / CACHE_DIR).iterdir())
    assert len(entries) == 1 and json.loads((entries[0] / cache.ENTRY).read_text())[
        "source"] == "one/polya/generate"
    # The restored stage digests like the original, so downstream keys are shared too.
    assert cache.manifest_digest(runs[1], "polya", "generate") == cache.manifest_digest(
        runs[0], "polya", "generate")
    # Off: the stage runs again.
    monkeypatch.setenv("POLYA_STAGE_CACHE", "0")
    cache.cached_run("generate", spec, "polya", tmp_path / "three", execute(tmp_path / "three"))
    assert calls == ["one", "three"]


def test_half_published_entry_is_a_miss(tmp_path: Path, model_dir: Path) -> None:
    spec = s.parse_spec({"model": {"name": str(model_dir)}})
    key = cache.stage_key("generate", spec, "polya", tmp_path / "one")
    assert key is not None
    partial = tmp_path / CACHE_DIR / key
    (partial / "data").mkdir(parents=True)  # no entry.json: a writer died before the end
    assert cache.restore(tmp_path / CACHE_DIR, key, tmp_path / "one" / "g") is None


def test_damaged_entry_is_evicted_and_recomputed(tmp_path: Path, model_dir: Path) -> None:
    """Entries hard-link the stage's files, so damage written in place into a stage dir
    reaches its entry too: restore checks every file's sha256 and drops such an entry."""
    spec = s.parse_spec({"model": {"name": str(model_dir)}})
    calls: list[str] = []

    def go(workdir: Path) -> Any:
        def execute() -> dict[str, str]:
            calls.append(workdir.name)
            _finish(workdir, "polya", "generate", "rows")
            return {"data": "polya/generate/data"}
        return execute

    one, two = tmp_path / "one", tmp_path / "two"
    cache.cached_run("generate", spec, "polya", one, go(one))
    (one / "polya/generate/data/part.txt").write_text("rot!")  # same size, in place
    cache.cached_run("generate", spec, "polya", two, go(two))
    assert calls == ["one", "two"]  # the damaged entry was not used
    assert (two / "polya/generate/data/part.txt").read_text() == "rows"
    key = cache.stage_key("generate", spec, "polya", two)
    assert key is not None and cache.lookup(tmp_path / CACHE_DIR, key) is not None
    three = tmp_path / "three"  # republished from the recomputed stage
    cache.cached_run("generate", spec, "polya", three, go(three))
    assert calls == ["one", "two"]
    assert (three / "polya/generate/data/part.txt").read_text() == "rows"


# --------------------------------------------------------------------------- report


def test_sweep_report_mean_std_and_curve(tmp_path: Path) -> None:
    from polya_trainer.report import sweep_table, write_sweep_report

    figures = {(1, 1): 0.25, (1, 2): 0.75, (2, 1): 0.5, (2, 2): 0.5}
    for (n, seed), value in figures.items():
        vdir = tmp_path / f"abl-h{n}-s{seed}"
        atomic_write_json(vdir / "variant.json", {"name": vdir.name, "heuristics": n,
                                                  "seed": seed, "parent": "abl"})
        atomic_write_json(vdir / "polya" / "evaluate" / "results.json", {"rl": {
            "gsm8k": {"pass@1": value, "pass@2": 1.0, "greedy": value, "n": 4},
            "humaneval": {"pass@1": 0.0, "pass@2": 0.0, "greedy": 0.0, "n": 4}}})
    data = sweep_table(tmp_path)
    cells = data["summary"]["polya/rl"]["pass@1"]
    assert [(c["n"], c["seeds"]) for c in cells] == [(1, 2), (2, 2)]
    assert cells[0]["mean"] == pytest.approx(0.5)  # humaneval is not a math benchmark
    assert cells[0]["std"] == pytest.approx(0.3535533906)  # sample std of 0.25, 0.75
    assert cells[1]["std"] == 0.0
    assert data["headline"] == "pass@2"
    md = write_sweep_report(tmp_path).read_text()
    assert "| 1 | 50.0 ± 35.4 (2) |" in md and "![ablation](ablation.png)" in md
    assert (tmp_path / "report" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (tmp_path / "report" / "sweep.html").read_text()


def _evaluated(workdir: Path, value: float) -> None:
    stage = workdir / "polya" / "evaluate"
    atomic_write_json(stage / "results.json", {"rl": {
        "gsm8k": {"pass@1": value, "pass@2": 1.0, "greedy": value, "n": 4}}})
    write_manifest(stage, outputs={})


@pytest.mark.parametrize("store", [False, True])
def test_sweep_report_command_over_a_volume(tmp_path: Path, store: bool) -> None:
    """The report Job's command (resources.sweep_report_job): the variants side by side on
    the volume (no variant.json: the planner names them), the report in the parent's
    workspace; with storage.uri, read from the variants' prefixes and uploaded."""
    import yaml
    from polya_trainer.cli import main
    from polya_trainer.runtime import storage

    body = sweep_run({"heuristicsCount": [1, 2], "seeds": [1, 2]}, arms=["polya"])
    volume, uri = tmp_path / "workspace", (tmp_path / "bucket").as_uri()
    if store:
        body["spec"]["storage"] = {"uri": uri}
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(body))
    for name, value in zip(NAMES, (0.25, 0.75, 0.5, 0.5), strict=True):
        _evaluated(tmp_path / "done" / name if store else volume / name, value)
        if store:
            storage.push_dir(storage.open_store(sw.variant_uri(uri, name)),
                             tmp_path / "done" / name / "polya" / "evaluate", "polya/evaluate")
    assert main(["sweep-report", "--spec", str(spec), "--workdir", str(volume / "abl"),
                 "--variants", str(volume)]) == 0
    data = json.loads((volume / "abl" / "report" / "sweep.json").read_text())
    cells = data["summary"]["polya/rl"]["pass@1"]
    assert [(c["n"], c["seeds"], c["mean"]) for c in cells] == [(1, 2, 0.5), (2, 2, 0.5)]
    assert sorted(p["variant"] for p in data["points"]) == NAMES
    if store:
        up = storage.read_dir(storage.open_store(uri), "report", tmp_path / "down")
        assert up is not None and (tmp_path / "down" / "sweep.md").is_file()


def test_seed_sweep_reports_the_spread_of_each_preregistered_delta(tmp_path: Path) -> None:
    """A seed sweep (one n): each pre-registered difference per seed, then mean ± sample std
    and range across seeds, in sweep.json and the Markdown."""
    from polya_trainer.report import write_sweep_report

    runs = {1: {"vanilla": {"base": 0.2, "rl": 0.3}, "polya": {"rl": 0.35}},
            2: {"vanilla": {"base": 0.4, "rl": 0.6}, "polya": {"rl": 0.55}}}
    for seed, arms in runs.items():
        vdir = tmp_path / f"toy-s{seed}"
        atomic_write_json(vdir / "variant.json", {"name": vdir.name, "heuristics": None,
                                                  "seed": seed, "parent": "toy"})
        for arm, ckpts in arms.items():
            atomic_write_json(vdir / arm / "evaluate" / "results.json", {
                ckpt: {"gsm8k": {"pass@1": v, "greedy": v, "n": 4}}
                for ckpt, v in ckpts.items()})
    md = write_sweep_report(tmp_path).read_text()
    data = json.loads((tmp_path / "report" / "sweep.json").read_text())
    by = {d["comparison"]: d for d in data["deltas"] if d["metric"] == "pass@1"}
    rl = by["vanilla/rl - vanilla/base"]
    assert [(s["seed"], round(s["value"], 6)) for s in rl["seeds"]] == [(1, 0.1), (2, 0.2)]
    assert rl["mean"] == pytest.approx(0.15) and rl["std"] == pytest.approx(0.0707106781)
    polya = by["polya/rl - vanilla/rl"]
    assert (polya["min"], polya["max"]) == (pytest.approx(-0.05), pytest.approx(0.05))
    assert "star/rl - vanilla/rl" not in by  # no star arm ran
    assert "| vanilla/rl - vanilla/base | pass@1 | all | +10.0 (seed 1), +20.0 (seed 2) | " \
           "+15.0 ± 7.1 | +10.0 to +20.0 |" in md
