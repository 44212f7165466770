"""bench/common.py, bench/summary.py (on synthetic result files) and `bench/gpu.py --dry-run`.

No timing assertions: only that the tools compute, read and write what they claim.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402
import summary  # noqa: E402


def test_stats_median_range_spread() -> None:
    s = common.stats([3.0, 1.0, 2.0, 10.0])
    assert s["n"] == 4 and s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0
    assert s["spread"] == pytest.approx((10 - 1) / 2.5)
    assert common.stats([])["median"] is None


def test_alternate_runs_each_callable_and_reverses_order() -> None:
    calls: list[str] = []
    res = common.alternate({"a": lambda: calls.append("a") or 10,
                            "b": lambda: calls.append("b") or 20}, reps=3, warmup=1,
                           rate=lambda secs, n: n)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert res["a"]["median"] == 10 and res["b"]["values"] == [20, 20, 20]


@pytest.mark.parametrize(("kw", "ratio", "met"), [
    ({"goal": 2000}, 10.0, True),
    ({"goal": 5000}, 10.0, False),
    ({"goal": 1.25, "goal_op": "<=", "goal_on": "ratio"}, 10.0, False),
    ({"goal": 12, "goal_op": "<=", "goal_on": "ratio"}, 10.0, True),
    ({}, 10.0, None),
])
def test_figure_ratio_and_goal(kw: dict, ratio: float, met: bool | None) -> None:
    f = common.figure("x", 3000.0, 300.0, unit="/s", **kw)
    assert f["ratio"] == ratio and f["met"] is met
    assert {"name", "ours", "baseline", "ratio", "unit", "goal", "goal_op", "met"} <= set(f)


def test_figure_rejects_bad_goal_op() -> None:
    with pytest.raises(ValueError):
        common.figure("x", 1.0, goal=1.0, goal_op=">")


def test_machine_and_versions() -> None:
    m = common.machine_info()
    assert m["nproc"] >= 1 and m["python"] and isinstance(m["gpus"], list)
    v = common.package_versions(["pytest", "surely-not-installed-pkg"])
    assert v["pytest"] == pytest.__version__ and v["surely-not-installed-pkg"] is None


def test_write_result_fills_metadata_and_checks_figures(tmp_path: Path) -> None:
    path = common.write_result("demo", {"figures": [common.figure("f", 1.0, 2.0)]},
                               tmp_path / "demo.json", packages=["pytest"])
    data = json.loads(path.read_text())
    assert data["benchmark"] == "demo" and data["versions"]["pytest"] == pytest.__version__
    assert data["machine"]["nproc"] >= 1 and data["figures"][0]["ratio"] == 0.5
    with pytest.raises(ValueError, match="lacks"):
        common.write_result("bad", {"figures": [{"name": "f"}]}, tmp_path / "bad.json")


def _write(d: Path, name: str, obj: object) -> None:
    (d / f"{name}.json").write_text(json.dumps(obj))


def test_summary_table_adapters_raw_and_runs(tmp_path: Path) -> None:
    _write(tmp_path, "conv", {"benchmark": "conv", "figures": [
        common.figure("widgets per second", 120.0, 100.0, unit="w/s", goal=1.1,
                      goal_on="ratio")], "skipped": {"gpu": "no GPU here"}})
    _write(tmp_path, "answers", {  # the shape bench/answers.py writes
        "ours_check_many_serial": {"checks_per_s": {"median": 1500.0, "min": 1000.0,
                                                    "max": 1600.0}},
        "math_verify_alone_serial": {"checks_per_s": {"median": 300.0, "min": 200.0,
                                                      "max": 310.0}},
        "goal_checks_per_s": 2000})
    _write(tmp_path, "generation", {"hf": {"ours": {"tokens_per_second_median": 97.0},
                                           "bare": {"tokens_per_second_median": 100.0},
                                           "goal": 0.97},
                                    "vllm": {"skipped": ".venv-vllm is absent"}})
    _write(tmp_path, "mystery", {"alpha": 1.5, "nested": {"beta": 7}, "text": "x"})
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "runs.tsv").write_text("answers\tok\t12\nmystery\tfailed (exit 1)\t3\n")
    assert summary.main(["--results", str(tmp_path)]) == 0
    md = (tmp_path / "SUMMARY.md").read_text()
    assert "| figure | ours | baseline | ratio | goal | met? |" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()
            if line.startswith("| ") and ":" in line.split("|")[1]}
    conv = rows["conv: widgets per second"]
    assert "1.2" in conv and "ratio ≥ 1.1" in conv and conv.rstrip().endswith("| yes |")
    ans = next(v for k, v in rows.items() if k.startswith("answers:"))
    assert "1,500" in ans and "300" in ans and "≥ 2,000" in ans and "**no**" in ans
    gen = next(v for k, v in rows.items() if k.startswith("generation:"))
    assert "0.97" in gen and gen.rstrip().endswith("| yes |")
    assert "generation/vllm: not measured (.venv-vllm is absent)" in md
    assert "conv/gpu: no GPU here" in md
    assert "**mystery**" in md and "`alpha` = 1.5" in md and "`nested.beta` = 7" in md
    assert "broken.json: unreadable" in md
    assert "mystery: failed (exit 1)" in md


def test_summary_of_empty_results(tmp_path: Path) -> None:
    assert "No figures yet" in summary.render(tmp_path)


def test_gpu_dry_run_writes_json(tmp_path: Path) -> None:
    """The GPU benchmark's tiny CPU run: the script works end to end (not its numbers)."""
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"benchmark", "dry_run", "device", "settings", "machine", "versions", "sft", "grpo",
            "vllm", "figures", "skipped"} <= set(data)
    assert data["dry_run"] is True and data["device"] == "cpu"
    sft = data["sft"]
    assert sft["flops_per_token"] > 6 * sft["model"]["parameters"]
    loop = sft["torch_loop"]
    assert loop["tokens_per_second"] > 0 and loop["step_seconds"]["n"] >= 1
    for part in ("ours", "trl_bare"):  # TRL is installed here, so both must have run
        assert sft[part].get("tokens_per_second", 0) > 0, sft[part]
    for part in ("ours", "trl_bare"):
        assert data["grpo"][part]["step_seconds"]["n"] >= 1, data["grpo"][part]
    assert data["vllm"] == {"skipped": "dry run"}
    names = [f["name"] for f in data["figures"]]
    assert any("SFT step time" in n for n in names) and any("GRPO" in n for n in names)
