"""The run-directory layout is pinned: users' run directories and the pods' volume mounts
depend on it (issue 26, item 3).

Every literal below was taken from the code before the Workspace existed (stage_dir,
checkpoints_dir, trained_model_dir, cache.cache_root and cache.source_name, the local Runner's
attributes, storage.LOCK_FILE, the Job's ``--workdir``), computed for the sample run below,
and from the files of a reduced two-arm toy run (tests/trainer/test_local_run.py,
test_reduced_quickstart_end_to_end). A change here is a change of the on-disk layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from polya_trainer import spec as s
from polya_trainer.runtime.workspace import RunDir, Workspace

ROOT = Path(__file__).resolve().parents[2]

# (what, the Workspace's path relative to the run's root) for a run "demo"
LAYOUT = [
    ("stage", lambda w: w.stage("polya", "generate"), "polya/generate"),
    ("checkpoints", lambda w: w.checkpoints("polya", "midtrain"), "polya/midtrain/checkpoints"),
    ("model", lambda w: w.model("star", "rl"), "star/rl/model"),
    ("generated data", lambda w: w.generated_data("polya"), "polya/generate/data"),
    ("card", lambda w: w.card("polya"), "polya/generate/card.json"),
    ("datastats", lambda w: w.datastats("polya"), "polya/generate/datastats.json"),
    ("eval questions", lambda w: w.eval_questions("vanilla", "base", "toy"),
     "vanilla/evaluate/questions/base/toy.jsonl"),
    ("eval part", lambda w: w.eval_part("polya", "rl", "toy"), "polya/evaluate/parts/rl/toy.json"),
    ("report", lambda w: w.report, "report"),
    ("status", lambda w: w.status, "status.json"),
    ("spec snapshot", lambda w: w.spec_file, "polyarun.yaml"),
    ("attempts", lambda w: w.attempts, ".polya/attempts"),
    ("attempt", lambda w: w.attempt("demo-polya-rl-1"), ".polya/attempts/demo-polya-rl-1.json"),
    ("progress", lambda w: w.progress("demo-polya-rl-1"), ".polya/progress/demo-polya-rl-1.json"),
    ("progress dir", lambda w: w.progress_dir, ".polya/progress"),
    ("generation", lambda w: w.generation, ".polya/generation.json"),
    ("logs", lambda w: w.logs, "logs"),
    ("log", lambda w: w.log("demo-polya-rl-1"), "logs/demo-polya-rl-1.log"),
    ("storage lock", lambda w: w.storage_lock, ".polya-storage.lock"),
    ("variant spec", lambda w: w.variant_spec, "variant.yaml"),
    ("variant card", lambda w: w.variant_card, "variant.json"),
]


def test_every_path_of_a_sample_run(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "runs" / "demo")
    got = {what: ws.relative(path(ws)) for what, path, _ in LAYOUT}
    assert got == {what: want for what, _, want in LAYOUT}
    # the cache sits beside the run, in its parent; a run is named by its directory
    assert ws.cache == (tmp_path / "runs" / ".polya-cache").resolve()
    assert ws.name == "demo"
    assert f"{ws.name}/{ws.relative(ws.stage('polya', 'rl'))}" == "demo/polya/rl"  # cachedFrom


def test_runs_side_by_side() -> None:
    assert Workspace.for_run("polya-runs", "demo").root == Path("polya-runs/demo")
    assert str(Workspace.for_run("/workspace/", "demo")) == "/workspace/demo"  # in a pod
    sweep = Workspace.for_run(Path("runs"), "abl")
    assert Workspace.for_run(sweep, "abl-h1-s1").root == Path("runs/abl/abl-h1-s1")


def test_a_workspace_is_a_path_for_code_that_needs_only_the_root(tmp_path: Path) -> None:
    ws = Workspace.of(tmp_path)
    where: RunDir = ws
    assert Workspace.of(where) is ws and Workspace.of(str(tmp_path)) == ws
    assert os.fspath(ws) == str(ws) == str(tmp_path) and Path(ws) == tmp_path
    assert isinstance(ws, os.PathLike)


def test_the_callers_ask_the_workspace(tmp_path: Path) -> None:
    """What the local runner, the cache, tracking and the operator's Job use."""
    from polya_operator import resources as R
    from polya_trainer.engine.local import Runner, default_workdir
    from polya_trainer.runtime import tracking

    run = s.PolyaRun.model_validate(yaml.safe_load(
        (ROOT / "manifests/samples/quickstart.yaml").read_text()))
    root = tmp_path / "demo"
    Runner(run, root, list(run.spec.arms), quiet=True)  # creates its files and folders
    made = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert made == [".polya", ".polya/attempts", ".polya/generation.json", ".polya/progress",
                    "logs", "polyarun.yaml"]
    assert default_workdir("demo") == Path("polya-runs/demo")
    assert tracking.StageTracker(run.spec, "polya", "rl", root).dir == root / "polya" / "rl"
    job = R.job({"name": "demo", "namespace": "ns", "uid": "u"}, R.with_defaults(run.spec),
                "polya", "generate", 1)
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--workdir") + 1] == "/workspace/demo"

