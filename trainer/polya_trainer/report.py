"""The comparison report across arms and checkpoints (``polya report WORKDIR``).

Reads every ``<workdir>/<arm>/evaluate/results.json`` present and writes ``<workdir>/report/``:

* ``report.json``: ``table[benchmark][arm][checkpoint][metric]`` (metrics ``pass@k`` and
  ``greedy``, fractions 0-1), the same per row averaged over benchmarks (``average``), and
  ``deltas`` of every row against the vanilla arm's RL checkpoint when it exists.
* ``report.md``: tables like the paper's (rows arm/checkpoint, columns benchmarks and their
  average, in percent), one per metric, plus the deltas versus vanilla RL.
* ``passk_<benchmark>.png``: pass@k against k, one line per arm/checkpoint.
* ``delta_vs_vanilla.png``: bars of the largest-k delta of each other arm's rows.

Everything is written atomically; rerunning with more arms finished rebuilds it all.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from .artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from .spec import ARMS

CHECKPOINTS = ("base", "midtrain", "rl")
REFERENCE = ("vanilla", "rl")  # the paper's baseline: vanilla RL


def _k_of(metric: str) -> int:
    return int(metric.removeprefix("pass@"))


def load_results(workdir: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{arm: {checkpoint: {benchmark: figures}}} for every arm with results, in arm order."""
    found: dict[str, Any] = {}
    for path in sorted(Path(workdir).glob("*/evaluate/results.json")):
        try:
            found[path.parent.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    order = [a for a in ARMS if a in found] + sorted(a for a in found if a not in ARMS)
    return {a: found[a] for a in order}


def build_table(results: dict[str, Any]) -> dict[str, Any]:
    """The report's data: table, averages, deltas, and the axes (arms, rows, metrics)."""
    benchmarks: list[str] = []
    metric_set: set[str] = set()
    rows: list[tuple[str, str]] = []
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for arm, ckpts in results.items():
        for ckpt in sorted(ckpts, key=lambda c: (*CHECKPOINTS, c).index(c)):
            rows.append((arm, ckpt))
            for bench, figures in ckpts[ckpt].items():
                if bench not in benchmarks:
                    benchmarks.append(bench)
                values = {m: float(v) for m, v in figures.items()
                          if m.startswith("pass@") or m == "greedy"}
                metric_set.update(values)
                table.setdefault(bench, {}).setdefault(arm, {})[ckpt] = values
    metrics = sorted((m for m in metric_set if m.startswith("pass@")), key=_k_of)
    if "greedy" in metric_set:
        metrics.append("greedy")

    def cell(bench: str, arm: str, ckpt: str, metric: str) -> float | None:
        return table.get(bench, {}).get(arm, {}).get(ckpt, {}).get(metric)

    average: dict[str, dict[str, dict[str, float]]] = {}
    for arm, ckpt in rows:
        for metric in metrics:
            vals = [cell(b, arm, ckpt, metric) for b in benchmarks]
            # Averaged only over benchmarks the row has (noted in the Markdown when partial).
            present = [v for v in vals if v is not None]
            if present:
                average.setdefault(arm, {}).setdefault(ckpt, {})[metric] = (
                    sum(present) / len(present))

    deltas: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    ref_arm, ref_ckpt = REFERENCE
    if (ref_arm, ref_ckpt) in rows:
        for arm, ckpt in rows:
            if (arm, ckpt) == REFERENCE:
                continue
            for bench in [*benchmarks, "average"]:
                for metric in metrics:
                    if bench == "average":
                        mine = average.get(arm, {}).get(ckpt, {}).get(metric)
                        ref = average.get(ref_arm, {}).get(ref_ckpt, {}).get(metric)
                    else:
                        mine, ref = cell(bench, arm, ckpt, metric), cell(bench, *REFERENCE,
                                                                          metric)
                    if mine is not None and ref is not None:
                        deltas.setdefault(f"{arm}/{ckpt}", {}).setdefault(bench, {})[metric] = (
                            mine - ref)
    # Every arm starts from the same base model: show identical base rows once.
    shown: list[str] = []
    base_seen: list[dict[str, Any]] = []
    for arm, ckpt in rows:
        if ckpt == "base":
            mine = {b: table.get(b, {}).get(arm, {}).get("base") for b in benchmarks}
            if mine in base_seen:
                continue
            base_seen.append(mine)
        shown.append(f"{arm}/{ckpt}")
    return {"arms": list(results), "rows": [f"{a}/{c}" for a, c in rows], "display_rows": shown,
            "benchmarks": benchmarks, "metrics": metrics, "table": table,
            "average": average, "reference": "/".join(REFERENCE) if deltas else None,
            "deltas": deltas}


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def render_markdown(data: dict[str, Any], plots: list[str]) -> str:
    benches, metrics = data["benchmarks"], data["metrics"]
    lines = ["# Pólya mid-training: evaluation report", "",
             "Values are percentages (pass@k with the unbiased estimator of Chen et al. 2021; "
             "greedy = accuracy of one temperature-0 answer). Rows are arm/checkpoint: "
             "base = the base model, midtrain = after mid-training, rl = after GRPO.", ""]
    head = "| arm/checkpoint | " + " | ".join(benches) + " | Average |"
    sep = "|---|" + "---:|" * (len(benches) + 1)
    for metric in metrics:
        lines += [f"## {metric}", "", head, sep]
        for row in data["display_rows"]:
            arm, ckpt = row.split("/")
            cells = [_pct(data["table"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric))
                     for b in benches]
            avg = data["average"].get(arm, {}).get(ckpt, {}).get(metric)
            partial = any(c == "–" for c in cells)
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {_pct(avg)}"
                         + ("*" if partial and avg is not None else "") + " |")
        lines.append("")
    if any("*" in line for line in lines):
        lines += ["\\* averaged over the benchmarks that row has.", ""]
    hidden = [r for r in data["rows"] if r not in data["display_rows"]]
    if hidden:
        lines += [f"Not repeated (identical to a base row above, the same model): "
                  f"{', '.join(hidden)}.", ""]
    if data["deltas"]:
        lines += [f"## Difference versus {data['reference']} (percentage points)", ""]
        for metric in metrics:
            lines += [f"### {metric}", "", head, sep]
            for row, per_bench in data["deltas"].items():
                if row not in data["display_rows"]:
                    continue
                cells = [_pct(per_bench.get(b, {}).get(metric), signed=True) for b in benches]
                avg = per_bench.get("average", {}).get(metric)
                lines.append(f"| {row} | " + " | ".join(cells) + f" | {_pct(avg, True)} |")
            lines.append("")
    else:
        lines += ["No vanilla RL results yet, so no differences versus vanilla RL.", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _passk_plot(data: dict[str, Any], bench: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ks = [_k_of(m) for m in data["metrics"] if m.startswith("pass@")]
    for row in data["display_rows"]:
        arm, ckpt = row.split("/")
        cell = data["table"].get(bench, {}).get(arm, {}).get(ckpt)
        if not cell:
            continue
        xs = [k for k in ks if f"pass@{k}" in cell]
        ax.plot(xs, [100 * cell[f"pass@{k}"] for k in xs], marker="o", label=row,
                linestyle="--" if arm == "vanilla" else "-")
    if len(ks) > 1 and max(ks) / max(1, min(ks)) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"{bench}: pass@k")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _delta_plot(data: dict[str, Any]) -> bytes | None:
    from matplotlib.figure import Figure

    pass_metrics = [m for m in data["metrics"] if m.startswith("pass@")]
    if not data["deltas"] or not pass_metrics:
        return None
    metric = pass_metrics[-1]
    rows = [r for r in data["deltas"] if r.endswith("/rl")] or list(data["deltas"])
    groups = [*data["benchmarks"], "average"]
    fig = Figure(figsize=(max(6, 1.2 * len(groups)), 4))
    ax = fig.add_subplot()
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        vals = [100 * data["deltas"][row].get(g, {}).get(metric, 0.0) for g in groups]
        ax.bar([j + i * width - 0.4 + width / 2 for j in range(len(groups))], vals, width,
               label=row)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel(f"Δ {metric} vs {data['reference']} (points)")
    ax.set_title(f"{metric}: difference versus {data['reference']}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def write_report(workdir: Path) -> Path:
    """Rebuild ``<workdir>/report/`` from all arms' results; returns the Markdown path."""
    workdir = Path(workdir)
    out = workdir / "report"
    data = build_table(load_results(workdir))
    plots: list[str] = []
    for bench in data["benchmarks"]:
        name = f"passk_{bench}.png"
        atomic_write_bytes(out / name, _passk_plot(data, bench))
        plots.append(name)
    delta = _delta_plot(data)
    if delta is not None:
        atomic_write_bytes(out / "delta_vs_vanilla.png", delta)
        plots.append("delta_vs_vanilla.png")
    atomic_write_json(out / "report.json", {**data, "plots": plots})
    return atomic_write_text(out / "report.md", render_markdown(data, plots))
