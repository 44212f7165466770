"""Summarise bench/results/*.json into bench/results/SUMMARY.md.

One table (figure | ours | baseline | ratio | goal | met?) over every result file, then
notes: skipped parts, findings, run failures (bench/results/runs.tsv, written by run.sh) and,
for files that follow no known shape, their numbers as "raw".

Files with a top-level ``"figures"`` list (the convention in bench/common.py) are read as
they are. For the benchmarks written before that convention (answers, generation,
operator_burst, sandbox, training) an adapter below derives the figures from their own keys; when an
adapter finds none of its keys the file is shown raw instead.

    .venv/bin/python bench/summary.py [--results bench/results] [--out SUMMARY.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, figure

Figures = list[dict[str, Any]]
Notes = list[str]


def _get(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]... or None."""
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def _rng(d: Any, lo: str = "min", hi: str = "max") -> list[float] | None:
    if isinstance(d, dict) and isinstance(d.get(lo), (int, float)) \
            and isinstance(d.get(hi), (int, float)):
        return [d[lo], d[hi]]
    return None


# --------------------------------------------------------------------------- adapters


def adapt_answers(d: dict[str, Any]) -> tuple[Figures, Notes]:
    ours = _get(d, "ours_check_many_serial", "checks_per_s")
    base = _get(d, "math_verify_alone_serial", "checks_per_s")
    if not isinstance(ours, dict):
        return [], []
    goal = d.get("goal_checks_per_s", 2000)
    acc = _get(d, "ours_check_many_serial", "accuracy_vs_labels")
    note = f"accuracy vs labels {acc}" if acc is not None else ""
    return [figure("answer checks per second (check_many vs math-verify alone)",
                   ours.get("median"), (base or {}).get("median"), unit="checks/s",
                   goal=goal, goal_op=">=", goal_on="ours", ours_range=_rng(ours),
                   baseline_range=_rng(base), note=note)], []


def adapt_generation(d: dict[str, Any]) -> tuple[Figures, Notes]:
    figs: Figures = []
    notes: Notes = []
    for backend, bare in (("hf", "bare model.generate"), ("vllm", "bare vLLM LLM.generate")):
        part = d.get(backend)
        if not isinstance(part, dict):
            continue
        if "skipped" in part or "error" in part:
            why = part.get("skipped") or str(part.get("error"))[-300:]
            notes.append(f"generation/{backend}: not measured ({why})")
            continue
        o, b = part.get("ours") or {}, part.get("bare") or {}
        key = "tokens_per_second_median"
        if key not in o:
            continue
        figs.append(figure(f"generation tokens/s, {backend} backend vs {bare}", o[key],
                           b.get(key), unit="tokens/s", goal=part.get("goal", 0.97),
                           goal_op=">=", goal_on="ratio", ours_range=_rng(o),
                           baseline_range=_rng(b)))
    return figs, notes


def adapt_operator_burst(d: dict[str, Any]) -> tuple[Figures, Notes]:
    figs: Figures = []
    runs = _get(d, "params", "runs")
    ttfj = d.get("time_to_first_job") or {}
    o, b = _get(ttfj, "polya", "median_s"), _get(ttfj, "bare", "median_s")
    if isinstance(o, dict) and isinstance(b, dict):
        figs.append(figure(f"median time to first Job, {runs} PolyaRuns at once vs bare kopf",
                           o.get("median"), b.get("median"), unit="s",
                           goal=d.get("goal_ratio_max", 1.25), goal_op="<=", goal_on="ratio",
                           ours_range=_rng(o), baseline_range=_rng(b)))
    o, b = _get(ttfj, "polya", "all_first_jobs_s"), _get(ttfj, "bare", "all_first_jobs_s")
    if isinstance(o, dict) and isinstance(b, dict):
        figs.append(figure(f"time until all {runs} runs have a Job vs bare kopf",
                           o.get("median"), b.get("median"), unit="s", ours_range=_rng(o),
                           baseline_range=_rng(b), note="no goal of its own"))
    o, b = _get(d, "rss_mib_at_all_runs", "polya"), _get(d, "rss_mib_at_all_runs", "bare")
    if isinstance(o, dict):
        figs.append(figure(f"operator RSS at {runs} runs (bare kopf as baseline)",
                           o.get("median"), (b or {}).get("median"), unit="MiB",
                           goal=d.get("goal_rss_mib_max", 200), goal_op="<=", goal_on="ours",
                           ours_range=_rng(o), baseline_range=_rng(b)))
    req = _get(d, "requests_per_finished_four_stage_run", "requests_per_finished_run")
    if isinstance(req, (int, float)):
        figs.append(figure("API requests per finished four-stage run", req, unit="requests",
                           goal=d.get("goal_requests_max", 40), goal_op="<=", goal_on="ours"))
    return figs, []


def adapt_sandbox(d: dict[str, Any]) -> tuple[Figures, Notes]:
    figs: Figures = []
    o, b = _get(d, "single", "sandbox"), _get(d, "single", "bare")
    if isinstance(o, dict) and isinstance(b, dict):
        figs.append(figure("seconds per program, sandbox vs bare `python -I`",
                           o.get("median_s"), b.get("median_s"), unit="s",
                           ours_range=_rng(o, "min_s", "max_s"),
                           baseline_range=_rng(b, "min_s", "max_s"), note="no goal set"))
    o, b = _get(d, "batch", "sandbox"), _get(d, "batch", "bare")
    if isinstance(o, dict) and isinstance(b, dict):
        n = _get(d, "batch", "programs")
        figs.append(figure(f"seconds per batch of {n} programs, run_many vs bare threads",
                           o.get("median_s"), b.get("median_s"), unit="s",
                           ours_range=_rng(o, "min_s", "max_s"),
                           baseline_range=_rng(b, "min_s", "max_s"), note="no goal set"))
    return figs, []


def adapt_training(d: dict[str, Any]) -> tuple[Figures, Notes]:
    figs: Figures = []
    for stage, trainer in (("midtrain", "SFTTrainer"), ("rl", "GRPOTrainer")):
        part = _get(d, "stages", stage)
        if not isinstance(part, dict):
            continue
        o, b = part.get("ours_s") or {}, part.get("bare_s") or {}
        if "median" not in o:
            continue
        figs.append(figure(f"{stage} step time, ours vs bare TRL {trainer}", o["median"],
                           b.get("median"), unit="s", goal=part.get("goal_ratio", 1.03),
                           goal_op="<=", goal_on="ratio", ours_range=_rng(o),
                           baseline_range=_rng(b)))
    return figs, []


ADAPTERS: dict[str, Callable[[dict[str, Any]], tuple[Figures, Notes]]] = {
    "answers": adapt_answers, "generation": adapt_generation,
    "operator_burst": adapt_operator_burst, "sandbox": adapt_sandbox,
    "training": adapt_training,
}


# --------------------------------------------------------------------------- raw


def raw_numbers(d: Any, prefix: str = "", depth: int = 2, limit: int = 40) -> list[tuple[str, Any]]:
    """Numeric and boolean leaves down to `depth` levels, as (dotted key, value)."""
    out: list[tuple[str, Any]] = []
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, (bool, int, float)):
            out.append((key, v))
        elif isinstance(v, dict) and depth > 1 and k not in ("machine", "versions"):
            out.extend(raw_numbers(v, key + ".", depth - 1, limit))
        if len(out) >= limit:
            return out[:limit]
    return out


# --------------------------------------------------------------------------- reading


def load(path: Path) -> tuple[str, Figures, Notes, list[tuple[str, Any]] | None]:
    """(name, figures, notes, raw numbers or None) for one result file."""
    name = path.stem
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return name, [], [f"{path.name}: unreadable ({exc})"], None
    if not isinstance(data, dict):
        return name, [], [f"{path.name}: not a JSON object"], None
    name = str(data.get("benchmark") or name) if path.stem not in ADAPTERS else path.stem
    notes: Notes = []
    for key in ("skipped", "notes", "findings"):
        val = data.get(key)
        if isinstance(val, str):
            notes.append(f"{name}: {val}")
        elif isinstance(val, list):
            notes.extend(f"{name}: {v}" for v in val)
        elif isinstance(val, dict):
            notes.extend(f"{name}/{k}: {v}" for k, v in val.items())
    figs = data.get("figures")
    if isinstance(figs, list) and all(isinstance(f, dict) for f in figs):
        return name, figs, notes, None
    adapter = ADAPTERS.get(path.stem)
    if adapter is not None:
        try:
            figs, more = adapter(data)
        except (TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
            figs, more = [], [f"{name}: adapter failed ({exc}); shown raw"]
        notes.extend(more)
        if figs:
            return name, figs, notes, None
    return name, [], notes, raw_numbers(data)


def _num(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int) or (isinstance(x, float) and abs(x) >= 100):
        return f"{x:,.0f}"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def _cell(v: Any, unit: str, rng: Any) -> str:
    if v is None:
        return "–"
    s = f"{_num(v)} {unit}".strip()
    if isinstance(rng, list) and len(rng) == 2:
        s += f" ({_num(rng[0])}–{_num(rng[1])})"
    return s


def _goal(f: dict[str, Any]) -> str:
    if f.get("goal") is None:
        return "–"
    op = "≥" if f.get("goal_op", ">=") == ">=" else "≤"
    if f.get("goal_on") == "ratio":
        return f"ratio {op} {_num(f['goal'])}"
    return f"{op} {_num(f['goal'])} {f.get('unit', '')}".strip()


def _met(f: dict[str, Any]) -> str:
    return {True: "yes", False: "**no**"}.get(f.get("met"), "–")  # type: ignore[arg-type]


def read_runs(results: Path) -> list[list[str]]:
    tsv = results / "runs.tsv"
    if not tsv.exists():
        return []
    return [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]


def render(results: Path) -> str:
    rows: list[str] = []
    notes: Notes = []
    raws: list[tuple[str, list[tuple[str, Any]]]] = []
    machines: dict[str, str] = {}
    for path in sorted(p for p in results.glob("*.json") if not p.name.startswith(".")):
        name, figs, file_notes, raw = load(path)
        notes.extend(file_notes)
        for f in figs:
            rows.append(f"| {name}: {f.get('name', '?')} | "
                        f"{_cell(f.get('ours'), f.get('unit', ''), f.get('ours_range'))} | "
                        f"{_cell(f.get('baseline'), f.get('unit', ''), f.get('baseline_range'))}"
                        f" | {_num(f.get('ratio'))} | {_goal(f)} | {_met(f)} |")
            if f.get("note"):
                notes.append(f"{name}: {f['name']}: {f['note']}")
        if raw is not None:
            raws.append((name, raw))
        try:
            m = json.loads(path.read_text()).get("machine") or {}
        except (OSError, ValueError, AttributeError):
            m = {}
        if isinstance(m, dict) and m:
            cores = m.get("nproc") or m.get("cpus") or m.get("cpu_count")
            gpus = ", ".join(g.get("name", "?") for g in m.get("gpus") or []) or None
            machines[name] = "; ".join(str(x) for x in (
                f"{cores} cores" if cores else None, m.get("cpu_model"),
                f"{m['ram_gib']} GiB RAM" if m.get("ram_gib") else None, gpus) if x)
    out = ["# Benchmark summary", "",
           f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by "
           "`bench/summary.py` from `bench/results/*.json`. Ours and baseline are medians over "
           "repetitions in the same run (min–max in brackets); ratio = ours / baseline.", ""]
    if rows:
        out += ["| figure | ours | baseline | ratio | goal | met? |",
                "|---|---|---|---|---|---|", *rows, ""]
    else:
        out += ["No figures yet: run `make bench`.", ""]
    runs = read_runs(results)
    failed = [r for r in runs
              if len(r) >= 2 and r[1] not in ("ok", "0") and not r[1].startswith("skipped")]
    if runs:
        out += ["## Runs", "", "| benchmark | status | seconds |", "|---|---|---|"]
        out += [f"| {r[0]} | {r[1] if len(r) > 1 else '?'} | {r[2] if len(r) > 2 else ''} |"
                for r in runs]
        out.append("")
    if notes or failed:
        out += ["## Notes", ""]
        out += [f"- {n}" for n in notes]
        out += [f"- {r[0]}: {r[1]} (see bench/results/{r[0]}.log)" for r in failed]
        out.append("")
    if raws:
        out += ["## Raw (files in no known shape)", ""]
        for name, nums in raws:
            out.append(f"- **{name}**: " + (", ".join(f"`{k}` = {_num(v)}" for k, v in nums)
                                           or "no numbers at the top level"))
        out.append("")
    if machines:
        out += ["## Machines", ""]
        out += [f"- {name}: {desc}" for name, desc in machines.items()]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=None, help="default: <results>/SUMMARY.md")
    args = ap.parse_args(argv)
    text = render(args.results)
    out = args.out or args.results / "SUMMARY.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
