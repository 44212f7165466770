"""A real sweep on this machine: 3 heuristic counts x 2 seeds through `polya run`, with the
real stages (in-process), generating once and sharing it through the stage cache.

The base model is the tiny untrained model after a few real mid-training steps on answers
that are always 1 (\\boxed{1}), so that generation, which keeps only verified answers, has
data to keep without the minutes the arithmetic toy model takes to build.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from polya_trainer import spec as s
from polya_trainer.runtime import cache
from polya_trainer.runtime.artifacts import read_manifest, write_manifest
from polya_trainer.runtime.workspace import CACHE_DIR

ANSWER = "The answer is \\boxed{1}."


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def answer_one_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model mid-trained (real SFT steps) to answer \\boxed{1}."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from polya_trainer.runtime.progress import Reporter
    from polya_trainer.stages import midtrain
    from polya_trainer.toy import build_tiny_model

    root = tmp_path_factory.mktemp("answer-one")
    tiny = build_tiny_model(root / "tiny")
    gen = root / "w" / "polya" / "generate"
    (gen / "data").mkdir(parents=True)
    rows = [{"question": f"Question {i}: how many moons does the Earth have?",
             "completion": ANSWER, "heuristic": "any"} for i in range(16)]
    pq.write_table(pa.Table.from_pylist(rows), gen / "data" / "shard-00000.parquet")
    write_manifest(gen, outputs={})
    spec = s.parse_spec({"model": {"name": str(tiny), "dtype": "float32"}, "seed": 0,
                         "stages": {"midtrain": {
                             "maxSteps": 24, "learningRate": 1.0e-2, "perDeviceBatchSize": 8,
                             "gradientAccumulationSteps": 1, "maxLength": 96,
                             "saveSteps": 1000, "resources": {"gpus": 0}}}})
    midtrain.run(spec, "polya", root / "w", Reporter("midtrain", "polya"))
    return root / "w" / "polya" / "midtrain" / "model"


def sweep_body(model: Path, data: Path) -> dict[str, Any]:
    train = _jsonl(data / "train.jsonl", [
        {"question": f"Sam has {i} bags and one of them is red. How many are red?",
         "answer": "1"} for i in range(6)])
    rl = _jsonl(data / "rl.jsonl", [{"question": f"How many suns in sky {i}?", "answer": "1"}
                                    for i in range(4)])
    ev = _jsonl(data / "eval.jsonl", [{"question": f"Count {i}: how many?",
                                       "answer": str(1 + i % 2)} for i in range(4)])
    return {"apiVersion": s.API_VERSION, "kind": s.KIND, "metadata": {"name": "abl"},
            "spec": {
                "model": {"name": str(model), "dtype": "float32"},
                "dataset": {"source": str(train)}, "arms": ["polya"], "seed": 5,
                "sweep": {"heuristicsCount": [1, 2, 3], "seeds": [1, 2]},
                "stages": {
                    "generate": {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 2,
                                 "rounds": 2, "maxNewTokens": 12, "temperature": 1.0,
                                 "batchSize": 36, "shardSize": 6, "scorer": {"type": "none"},
                                 "resources": {"gpus": 0}},
                    "midtrain": {"maxSteps": 1, "perDeviceBatchSize": 4,
                                 "gradientAccumulationSteps": 1, "learningRate": 1.0e-3,
                                 "maxLength": 96, "resources": {"gpus": 0}},
                    "rl": {"dataset": {"source": str(rl)}, "maxSteps": 1, "saveSteps": 1,
                           "numGenerations": 2, "perDeviceBatchSize": 4,
                           "maxCompletionLength": 12, "learningRate": 1.0e-5,
                           "resources": {"gpus": 0}},
                    "evaluate": {"benchmarks": [], "custom": [{"name": "toy", "path": str(ev)}],
                                 "k": [1, 2], "samples": 2, "temperature": 1.0,
                                 "maxNewTokens": 12, "backend": "hf", "checkpoints": ["rl"],
                                 "resources": {"gpus": 0}}}}}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sweep_generates_once_and_reports_the_ablation(
        tmp_path: Path, answer_one_model: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from polya_trainer.cli import main
    from polya_trainer.stages import generate

    runs: list[str] = []
    real = generate.run

    @functools.wraps(real)  # the same name and module, as the stage dispatch sees it
    def counted(spec: s.PolyaRunSpec, arm: str, workdir: Path, *a: Any, **kw: Any) -> Any:
        runs.append(Path(workdir).name)
        return real(spec, arm, workdir, *a, **kw)

    monkeypatch.setattr(generate, "run", counted)
    monkeypatch.setenv("POLYA_LOCAL_INPROCESS", "1")  # one process: the counter sees every run
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_body(answer_one_model, tmp_path / "data")))
    root = tmp_path / "sweep"
    assert main(["run", str(path), "--workdir", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out

    names = ["abl-h1-s1", "abl-h1-s2", "abl-h2-s1", "abl-h2-s2", "abl-h3-s1", "abl-h3-s2"]
    assert sorted(p.parent.name for p in root.glob("*/variant.json")) == names
    # Generation ran once, in the first variant; the five others restored it from the cache.
    assert runs == ["abl-h1-s1"]
    sources = {}
    for name in names:
        status = json.loads((root / name / "status.json").read_text())
        entry = next(e for e in status["stages"] if e["name"] == "generate")
        assert entry["state"] == "Succeeded"
        sources[name] = entry["outputs"].get(cache.CACHED_FROM)
        assert all(e["state"] == "Succeeded" for e in status["stages"]), status["stages"]
    assert sources == {n: (None if n == "abl-h1-s1" else "abl-h1-s1/polya/generate")
                       for n in names}
    entries = [json.loads(p.read_text()) for p in root.glob(f"{CACHE_DIR}/*/entry.json")]
    assert [e["source"] for e in entries].count("abl-h1-s1/polya/generate") == 1
    # Each variant mid-trained on the first n heuristics' share of the same data.
    import pyarrow.parquet as pq
    from polya_trainer.data.heuristics import CATALOG

    data_dir = root / "abl-h1-s1" / "polya" / "generate" / "data"
    rows = [r for f in sorted(data_dir.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    for name in names:
        n = int(name.split("-")[1][1:])
        expected = sum(r["heuristic"] in {h.id for h in CATALOG[:n]} for r in rows)
        manifest = read_manifest(root / name / "polya" / "midtrain", verify=False)
        assert manifest is not None and manifest["metrics"]["examples"] == expected > 0, name
    # The sweep report: mean +- std over the two seeds per n, and the ablation curve.
    report = json.loads((root / "report" / "sweep.json").read_text())
    cells = report["summary"]["polya/rl"][report["headline"]]
    assert [(c["n"], c["seeds"]) for c in cells] == [(1, 2), (2, 2), (3, 2)]
    md = (root / "report" / "sweep.md").read_text()
    assert md.count(" ± ") >= 3 and "![ablation](ablation.png)" in md
    assert (root / "report" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert f"sweep report: {root / 'report' / 'sweep.md'}" in out
    # The sweep's own status (the sweep planner's, as the operator writes on the parent).
    status = json.loads((root / "status.json").read_text())
    assert (status["sweep"]["succeeded"], status["report"]) == (6, "report/sweep.md")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
    # The operator's report Job runs this command over the volume (resources.py,
    # sweep_report_job): the same report from the same variant outputs, written elsewhere.
    spec = tmp_path / "snapshot.yaml"
    spec.write_text(path.read_text())
    assert main(["sweep-report", "--spec", str(spec), "--workdir", str(tmp_path / "parent"),
                 "--variants", str(root)]) == 0
    again = json.loads((tmp_path / "parent" / "report" / "sweep.json").read_text())
    assert again["summary"] == report["summary"] and again["points"] == report["points"]
