"""The report's plots as PNG bytes (matplotlib's object API, no pyplot state): pass@k curves
with 95% bands (the base model dotted black beside the trained rows), the paired differences
versus vanilla/rl, and a sweep's ablation curve over n."""

from __future__ import annotations

import io
from typing import Any

from polya_trainer.report.numbers import REFERENCE, k_of
from polya_trainer.report.text import n_of


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    return fig, fig.add_subplot()


def _curve(ax: Any, xs: list[int], ys: list[float], cis: list[Any], row: str) -> None:
    base = row.endswith("/base")
    line = ax.plot(xs, [100 * y for y in ys], marker="o", label=row,
                   linestyle=":" if base else ("--" if row.startswith("vanilla") else "-"),
                   color="black" if base else None)
    if all(cis):
        ax.fill_between(xs, [100 * c[0] for c in cis], [100 * c[1] for c in cis],
                        color=line[0].get_color(), alpha=0.15, linewidth=0)


def _log2_ticks(ax: Any, xs: list[int]) -> None:
    if len(xs) > 1 and max(xs) / max(1, min(xs)) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])


def _axes(ax: Any, xs: list[int], xlabel: str, ylabel: str, title: str) -> None:
    _log2_ticks(ax, xs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _ks(data: dict[str, Any]) -> list[int]:
    return [k_of(m) for m in data["metrics"] if m.startswith("pass@")]


def passk_plot(data: dict[str, Any], bench: str) -> bytes:
    """pass@k against k on one benchmark, one curve per shown row."""
    fig, ax = _figure()
    ks = _ks(data)
    for row in data["display_rows"]:
        arm, ckpt = row.split("/")
        cell = data["table"].get(bench, {}).get(arm, {}).get(ckpt)
        if not cell:
            continue
        cis = data["ci"].get(bench, {}).get(arm, {}).get(ckpt, {})
        xs = [k for k in ks if f"pass@{k}" in cell]
        _curve(ax, xs, [cell[f"pass@{k}"] for k in xs], [cis.get(f"pass@{k}") for k in xs],
               row)
    _axes(ax, ks, "k", "pass@k (%)",
          f"{bench}: pass@k, 95% bands (n={n_of(data, bench)} questions)")
    return _png(fig)


def headline_plot(data: dict[str, Any]) -> bytes | None:
    """pass@k against k on the math average (the headline's rows); None without rows."""
    head = data["headline"]
    if not head["rows"]:
        return None
    fig, ax = _figure()
    ks = _ks(data)
    for row in data["display_rows"]:
        h = head["rows"].get(row)
        if not h:
            continue
        xs = [k for k in ks if f"pass@{k}" in h]
        _curve(ax, xs, [h[f"pass@{k}"]["value"] for k in xs],
               [h[f"pass@{k}"]["ci"] for k in xs], row)
    n = max((h["questions"] for h in head["rows"].values()), default=0)
    _axes(ax, ks, "k", "pass@k (%)", f"math average: pass@k, 95% bands ({n} questions)")
    return _png(fig)


def delta_plot(data: dict[str, Any]) -> bytes | None:
    """Paired differences of the headline metric (math average) and per math benchmark."""
    from matplotlib.figure import Figure

    metric = data["headline"]["metric"]
    entries = [e for e in data["paired"] if e["versus"] == "/".join(REFERENCE)
               and (e["headline"] or e["benchmarks"])]
    if not entries or metric is None:
        return None
    groups = [*data["math_benchmarks"], "math average"]
    fig = Figure(figsize=(max(6, 1.2 * len(groups)), 4))
    ax = fig.add_subplot()
    width = 0.8 / len(entries)
    for i, e in enumerate(entries):
        vals, errs = [], [[], []]
        for g in groups:
            h = e["headline"] if g == "math average" else e["benchmarks"].get(g, {}).get(metric)
            d = h["difference"] if h else 0.0
            vals.append(100 * d)
            errs[0].append(100 * (d - h["ci"][0]) if h else 0.0)
            errs[1].append(100 * (h["ci"][1] - d) if h else 0.0)
        ax.bar([j + i * width - 0.4 + width / 2 for j in range(len(groups))], vals, width,
               yerr=errs, capsize=3, label=e["row"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel(f"Δ {metric} vs {REFERENCE[0]}/{REFERENCE[1]} (points)")
    ax.set_title(f"{metric}: paired difference versus {'/'.join(REFERENCE)} (95% CI)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def ablation_plot(data: dict[str, Any]) -> bytes | None:
    """A sweep's math average at the headline metric against n, mean ± std across seeds."""
    metric = data["headline"]
    if metric is None:
        return None
    fig, ax = _figure()
    ns: set[int] = set()
    for row in data["rows"]:
        cells = data["summary"][row].get(metric, [])
        xs = [c["n"] for c in cells]
        ns |= set(xs)
        ax.errorbar(xs, [100 * c["mean"] for c in cells], yerr=[100 * c["std"] for c in cells],
                    marker="o", capsize=4, label=row,
                    linestyle="--" if row.startswith("vanilla") else "-")
    _axes(ax, sorted(ns), "heuristics n (the catalog's first n)", f"math average {metric} (%)",
          f"Ablation over n: mean ± std across seeds ({metric})")
    return _png(fig)
