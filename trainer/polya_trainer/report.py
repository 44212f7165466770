"""The comparison report across arms and checkpoints (``polya report WORKDIR``).

Reads every ``<workdir>/<arm>/evaluate/results.json`` present, the per-question rows beside it
(``questions/<checkpoint>/<benchmark>.jsonl``) and the generate stage's data cards, and writes
``<workdir>/report/``:

* ``report.json``: ``table[benchmark][arm][checkpoint][metric]`` (fractions 0-1), ``ci`` (95%
  bootstrap intervals over questions, same keys), ``questions`` (how many questions stand
  behind each cell), the ``headline`` (pass@K averaged over the math benchmarks only; K = 64,
  else the largest k evaluated) with its intervals, the non-math benchmarks ``apart`` at pass@1
  and greedy, ``paired`` per-question comparisons between rows (difference, paired-bootstrap
  interval and p-value), ``deltas`` against vanilla/rl, and the evaluation ``settings`` of
  every number.
* ``report.md``: the same as Markdown tables (values in percent, ``value [low, high]``).
* ``report.html``: one self-contained page (plots embedded as data URIs, the tables, the
  per-heuristic data statistics of each arm's generate stage) to open in a browser.
* ``passk_<benchmark>.png`` / ``passk_headline.png``: pass@k against k with 95% bands, the base
  model's curve beside the trained ones; ``delta_vs_vanilla.png``: paired differences.

Statistics: the bootstrap resamples questions (numpy, 2000 resamples, fixed seed); the
headline's intervals resample each benchmark's questions separately (stratified) and average
the benchmark means, as the headline does. Paired comparisons use only the questions both rows
answered and resample the per-question differences; the two-sided p-value is twice the smaller
share of resampled mean differences on either side of zero (at most 1).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from polya_trainer.spec import ARMS

CHECKPOINTS = ("base", "midtrain", "rl")
REFERENCE = ("vanilla", "rl")  # the paper's baseline: vanilla RL
HEADLINE_K = 64
BOOTSTRAP = 2000
SEED = 0
Z = (2.5, 97.5)  # percentiles of a 95% interval


def _k_of(metric: str) -> int:
    return int(metric.removeprefix("pass@"))


def _kind(bench: str, figures: dict[str, Any]) -> str:
    """A benchmark's kind: recorded with its figures, else the registry's (math if unknown)."""
    if figures.get("kind"):
        return str(figures["kind"])
    from polya_trainer.data import benchmarks as bm

    entry = bm.REGISTRY.get(bench)
    return entry.kind if entry is not None else "math"


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


def load_questions(workdir: Path, results: dict[str, Any]
                   ) -> dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]]:
    """{bench: {arm: {ckpt: {question id: {metric: value}}}}} from the per-question rows."""
    out: dict[str, Any] = {}
    for arm, ckpts in results.items():
        for ckpt, benches in ckpts.items():
            for bench in benches:
                path = Path(workdir) / arm / "evaluate" / "questions" / ckpt / f"{bench}.jsonl"
                if not path.is_file():
                    continue
                rows: dict[str, dict[str, float]] = {}
                for line in path.read_text().splitlines():
                    if not line.strip():
                        continue
                    r = json.loads(line)
                    vals = {m: float(v) for m, v in r.items() if m.startswith("pass@")}
                    if "greedy_correct" in r:
                        vals["greedy"] = float(bool(r["greedy_correct"]))
                    rows[str(r["id"])] = vals
                out.setdefault(bench, {}).setdefault(arm, {})[ckpt] = rows
    return out


def load_cards(workdir: Path) -> dict[str, dict[str, Any]]:
    """Each arm's generate data card (per-heuristic acceptance, truncation), if present."""
    cards = {}
    for path in sorted(Path(workdir).glob("*/generate/card.json")):
        try:
            cards[path.parent.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    return cards


# --------------------------------------------------------------------------- statistics


def _rng(offset: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(SEED + offset)


def bootstrap_means(strata: list[Any], resamples: int = BOOTSTRAP, seed: int = 0) -> Any:
    """Resampled means of the average over strata of each stratum's mean (questions resampled
    with replacement within each stratum). `strata`: 1-d arrays of per-question values."""
    import numpy as np

    rng = _rng(seed)
    total = np.zeros(resamples)
    for values in strata:
        idx = rng.integers(0, len(values), size=(resamples, len(values)))
        total += np.asarray(values, dtype=float)[idx].mean(axis=1)
    return total / len(strata)


def interval(strata: list[Any], seed: int = 0) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean over strata of per-question values."""
    import numpy as np

    strata = [s for s in strata if len(s)]
    if not strata:
        return None
    lo, hi = np.percentile(bootstrap_means(strata, seed=seed), Z)
    return float(lo), float(hi)


def paired(diffs: list[Any], seed: int = 0) -> dict[str, Any] | None:
    """Paired comparison from per-question differences (one array per benchmark): mean
    difference, 95% paired-bootstrap interval and two-sided p-value."""
    import numpy as np

    diffs = [np.asarray(d, dtype=float) for d in diffs if len(d)]
    if not diffs:
        return None
    mean = float(np.mean([d.mean() for d in diffs]))
    boots = bootstrap_means(diffs, seed=seed)
    lo, hi = np.percentile(boots, Z)
    if all(not d.any() for d in diffs):
        p = 1.0
    else:
        p = min(1.0, 2 * min(float((boots <= 0).mean()), float((boots >= 0).mean())))
    return {"difference": mean, "ci": [float(lo), float(hi)], "p_value": p,
            "questions": int(sum(len(d) for d in diffs))}


# --------------------------------------------------------------------------- tables


def build_table(results: dict[str, Any],
                questions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's data (see the module docstring); `questions` adds intervals and pairs."""
    questions = questions or {}
    benchmarks: list[str] = []
    kinds: dict[str, str] = {}
    metric_set: set[str] = set()
    rows: list[tuple[str, str]] = []
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    truncation: dict[str, dict[str, float]] = {}
    for arm, ckpts in results.items():
        for ckpt in sorted(ckpts, key=lambda c: (*CHECKPOINTS, c).index(c)):
            rows.append((arm, ckpt))
            for bench, figures in ckpts[ckpt].items():
                if bench not in benchmarks:
                    benchmarks.append(bench)
                    kinds[bench] = _kind(bench, figures)
                values = {m: float(v) for m, v in figures.items()
                          if m.startswith("pass@") or m == "greedy"}
                metric_set.update(values)
                table.setdefault(bench, {}).setdefault(arm, {})[ckpt] = values
                counts.setdefault(bench, {}).setdefault(arm, {})[ckpt] = int(figures.get("n", 0))
                if figures.get("settings"):
                    settings.setdefault(bench, {})[f"{arm}/{ckpt}"] = figures["settings"]
                if figures.get("truncated") is not None:
                    truncation.setdefault(bench, {})[f"{arm}/{ckpt}"] = float(
                        figures["truncated"])
    metrics = sorted((m for m in metric_set if m.startswith("pass@")), key=_k_of)
    if "greedy" in metric_set:
        metrics.append("greedy")
    pass_ks = [_k_of(m) for m in metrics if m.startswith("pass@")]
    head_k = HEADLINE_K if HEADLINE_K in pass_ks else (max(pass_ks) if pass_ks else None)
    head_metric = f"pass@{head_k}" if head_k else None
    math = [b for b in benchmarks if kinds[b] == "math"]
    apart = [b for b in benchmarks if kinds[b] != "math"]

    def cell(bench: str, arm: str, ckpt: str, metric: str) -> float | None:
        return table.get(bench, {}).get(arm, {}).get(ckpt, {}).get(metric)

    def per_q(bench: str, arm: str, ckpt: str, metric: str) -> dict[str, float]:
        rows_ = questions.get(bench, {}).get(arm, {}).get(ckpt, {})
        return {q: v[metric] for q, v in rows_.items() if metric in v}

    # Intervals of every cell.
    ci: dict[str, Any] = {}
    for bi, bench in enumerate(benchmarks):
        for arm, ckpt in rows:
            for metric in metrics:
                vals = list(per_q(bench, arm, ckpt, metric).values())
                if vals:
                    ci.setdefault(bench, {}).setdefault(arm, {}).setdefault(ckpt, {})[metric] = \
                        interval([vals], seed=bi)

    average: dict[str, dict[str, dict[str, float]]] = {}
    for arm, ckpt in rows:
        for metric in metrics:
            vals = [cell(b, arm, ckpt, metric) for b in benchmarks]
            present = [v for v in vals if v is not None]
            if present:
                average.setdefault(arm, {}).setdefault(ckpt, {})[metric] = (
                    sum(present) / len(present))

    # Headline: math benchmarks only, at pass@K (and every pass@k for the curve).
    headline: dict[str, Any] = {"metric": head_metric, "benchmarks": math, "rows": {}}
    for arm, ckpt in rows:
        row: dict[str, Any] = {}
        have = [b for b in math if cell(b, arm, ckpt, "pass@1") is not None
                or (head_metric and cell(b, arm, ckpt, head_metric) is not None)]
        if not have:
            continue
        for metric in [m for m in metrics if m.startswith("pass@")]:
            vals = [cell(b, arm, ckpt, metric) for b in have]
            if any(v is None for v in vals):
                continue
            strata = [list(per_q(b, arm, ckpt, metric).values()) for b in have]
            row[metric] = {"value": sum(vals) / len(vals),  # type: ignore[arg-type]
                           "ci": interval(strata) if all(strata) else None}
        row["benchmarks"] = have
        row["partial"] = len(have) < len(math)
        row["questions"] = sum(counts[b][arm][ckpt] for b in have)
        headline["rows"][f"{arm}/{ckpt}"] = row

    deltas: dict[str, dict[str, dict[str, float]]] = {}
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

    # Paired comparisons: every trained row against its arm's base and against vanilla/rl.
    pairs: list[tuple[str, str]] = []
    for arm, ckpt in rows:
        if ckpt != "base" and (arm, "base") in rows:
            pairs.append((f"{arm}/{ckpt}", f"{arm}/base"))
        if (arm, ckpt) != REFERENCE and REFERENCE in rows and ckpt != "base":
            pairs.append((f"{arm}/{ckpt}", "/".join(REFERENCE)))
    compare_metrics = sorted({m for m in ("pass@1", head_metric, "greedy") if m in metrics},
                             key=metrics.index)
    paired_out: list[dict[str, Any]] = []
    for a, b in pairs:
        (aa, ac), (ba, bc) = a.split("/"), b.split("/")
        entry: dict[str, Any] = {"row": a, "versus": b, "benchmarks": {}, "headline": None}
        for metric in compare_metrics:
            diffs_math = []
            for bi, bench in enumerate(benchmarks):
                qa, qb = per_q(bench, aa, ac, metric), per_q(bench, ba, bc, metric)
                common = sorted(set(qa) & set(qb))
                if not common:
                    continue
                d = [qa[q] - qb[q] for q in common]
                entry["benchmarks"].setdefault(bench, {})[metric] = paired([d], seed=bi)
                if bench in math:
                    diffs_math.append(d)
            if metric == head_metric or (metric == "pass@1" and head_metric is None):
                entry["headline"] = paired(diffs_math) if diffs_math else None
        paired_out.append(entry)

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
            "benchmarks": benchmarks, "kinds": kinds, "math_benchmarks": math,
            "apart_benchmarks": apart, "metrics": metrics, "table": table, "ci": ci,
            "questions": counts, "average": average, "headline": headline,
            "apart_metrics": [m for m in ("pass@1", "greedy") if m in metrics],
            "paired": paired_out, "settings": settings, "truncation": truncation,
            "reference": "/".join(REFERENCE) if deltas else None, "deltas": deltas,
            "bootstrap": {"resamples": BOOTSTRAP, "seed": SEED, "level": 0.95,
                          "method": "percentile, questions resampled (stratified by "
                                    "benchmark for averages)"}}


# --------------------------------------------------------------------------- rendering


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def _with_ci(v: float | None, ci: Any) -> str:
    if v is None:
        return "–"
    if not ci:
        return _pct(v)
    return f"{_pct(v)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _rowcells(data: dict[str, Any], row: str, benches: list[str], metric: str) -> list[str]:
    arm, ckpt = row.split("/")
    return [_with_ci(data["table"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric),
                     data["ci"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric))
            for b in benches]


def _n_of(data: dict[str, Any], bench: str) -> str:
    ns = {n for arm in data["questions"].get(bench, {}).values() for n in arm.values()}
    return "/".join(str(n) for n in sorted(ns)) or "?"


def _settings_groups(data: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    groups: list[tuple[dict[str, Any], list[str]]] = []
    for bench, per_row in data["settings"].items():
        for row, s in per_row.items():
            for known, where in groups:
                if known == s:
                    where.append(f"{row}:{bench}")
                    break
            else:
                groups.append((s, [f"{row}:{bench}"]))
    return groups


def sections(data: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The report's tables as (id, title, header, rows): shared by Markdown and HTML."""
    out: list[tuple[str, str, list[str], list[list[str]]]] = []
    head = data["headline"]
    if head["rows"]:
        metric = head["metric"]
        ks = [m for m in data["metrics"] if m.startswith("pass@")]
        hdr = ["arm/checkpoint", *[f"{m} [95% CI]" for m in ks], "questions"]
        body = []
        for row in data["display_rows"]:
            h = head["rows"].get(row)
            if h is None:
                continue
            body.append([row + ("*" if h["partial"] else ""),
                         *[_with_ci(h.get(m, {}).get("value"), h.get(m, {}).get("ci"))
                           for m in ks], str(h["questions"])])
        out.append(("headline", f"Headline: {metric} averaged over the math benchmarks "
                    f"({', '.join(head['benchmarks'])})", hdr, body))
    for metric in data["metrics"]:
        benches = data["math_benchmarks"]
        if not benches:
            break
        hdr = ["arm/checkpoint", *[f"{b} (n={_n_of(data, b)})" for b in benches],
               "Math average"]
        body = []
        for row in data["display_rows"]:
            arm, ckpt = row.split("/")
            cells = _rowcells(data, row, benches, metric)
            vals = [data["table"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric)
                    for b in benches]
            present = [v for v in vals if v is not None]
            avg = _pct(sum(present) / len(present)) if present else "–"
            body.append([row, *cells, avg + ("*" if present and len(present) < len(vals)
                                             else "")])
        out.append((f"math-{metric}", f"Math benchmarks: {metric}", hdr, body))
    if data["apart_benchmarks"]:
        benches = data["apart_benchmarks"]
        for metric in data["apart_metrics"]:
            hdr = ["arm/checkpoint", *[f"{b} (n={_n_of(data, b)})" for b in benches]]
            body = [[row, *_rowcells(data, row, benches, metric)]
                    for row in data["display_rows"]]
            out.append((f"apart-{metric}", f"Reported apart (code and multiple choice): "
                        f"{metric}", hdr, body))
    if data["paired"]:
        hdr = ["row", "versus", "benchmark", "metric", "difference [95% CI]", "p", "questions"]
        body = []
        for e in data["paired"]:
            if e["row"] not in data["display_rows"] and e["versus"] not in data["display_rows"]:
                continue
            if e["headline"]:
                h = e["headline"]
                body.append([e["row"], e["versus"], "math average", data["headline"]["metric"]
                             or "pass@1", f"{_pct(h['difference'], True)} [{100 * h['ci'][0]:+.1f},"
                             f" {100 * h['ci'][1]:+.1f}]", _p(h["p_value"]),
                             str(h["questions"])])
            for bench, per in e["benchmarks"].items():
                for metric, h in per.items():
                    if h is None:
                        continue
                    body.append([e["row"], e["versus"], bench, metric,
                                 f"{_pct(h['difference'], True)} [{100 * h['ci'][0]:+.1f}, "
                                 f"{100 * h['ci'][1]:+.1f}]", _p(h["p_value"]),
                                 str(h["questions"])])
        out.append(("paired", "Paired per-question comparisons (percentage points)", hdr, body))
    if data["truncation"]:
        benches = list(data["truncation"])
        hdr = ["arm/checkpoint", *benches]
        body = [[row, *[_pct(data["truncation"][b].get(row)) for b in benches]]
                for row in data["display_rows"]]
        out.append(("truncation", "Sampled completions cut at the token limit (% , scored "
                    "wrong)", hdr, body))
    groups = _settings_groups(data)
    if groups:
        keys = sorted({k for s, _ in groups for k in s})
        hdr = ["settings", *keys, "applies to"]
        body = [[f"S{i + 1}", *[str(s.get(k, "–")) for k in keys],
                 f"{len(where)} cells" if len(where) > 4 else ", ".join(where)]
                for i, (s, where) in enumerate(groups)]
        out.append(("settings", "Evaluation settings behind every number", hdr, body))
    return out


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(r) + " |" for r in body]


INTRO = ("Values are percentages. pass@k uses the unbiased estimator of Chen et al. (2021), "
         "averaged over questions; greedy is the accuracy of one temperature-0 answer. "
         "Brackets hold 95% bootstrap intervals over questions. Rows are arm/checkpoint: base "
         "= the base model, midtrain = after mid-training, rl = after GRPO. The headline "
         "averages the math benchmarks only; code and multiple-choice benchmarks are "
         "reported apart at pass@1 and greedy (with 2-3 options, MuSR's pass@k nears 100% "
         "at large k whatever the model).")


def render_markdown(data: dict[str, Any], plots: list[str],
                    cards: dict[str, Any] | None = None) -> str:
    lines = ["# Pólya mid-training: evaluation report", "", INTRO, ""]
    for _id, title, header, body in sections(data):
        lines += [f"## {title}", "", *_md_table(header, body), ""]
    if any(r["partial"] for r in data["headline"]["rows"].values()):
        lines += ["\\* averaged over the math benchmarks that row has.", ""]
    hidden = [r for r in data["rows"] if r not in data["display_rows"]]
    if hidden:
        lines += [f"Not repeated (identical to a base row above, the same model): "
                  f"{', '.join(hidden)}.", ""]
    if data["deltas"]:
        benches = data["benchmarks"]
        lines += [f"## Difference versus {data['reference']} (percentage points)", ""]
        for metric in data["metrics"]:
            body = []
            for row, per_bench in data["deltas"].items():
                if row not in data["display_rows"]:
                    continue
                body.append([row, *[_pct(per_bench.get(b, {}).get(metric), signed=True)
                                    for b in benches],
                             _pct(per_bench.get("average", {}).get(metric), True)])
            lines += [f"### {metric}", "", *_md_table(["arm/checkpoint", *benches,
                                                        "Average (all)"], body), ""]
    else:
        lines += ["No vanilla RL results yet, so no differences versus vanilla RL.", ""]
    for arm, card in (cards or {}).items():
        lines += [f"## Training data of arm {arm} (generate stage)", "",
                  *_md_table(*_card_table(card)), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _card_table(card: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    per = card.get("acceptance_rate_per_heuristic", {})
    body = [[h, str(v.get("pairs", 0)), str(v.get("accepted", 0)), _pct(v.get("rate"))]
            for h, v in sorted(per.items())]
    total = card.get("counts", {})
    body.append(["all", str(total.get("pairs", "–")), str(total.get("accepted", "–")),
                 _pct(card.get("acceptance_rate"))])
    header = ["heuristic", "pairs", "accepted", "acceptance %"]
    insight = card.get("data_insight")
    if not insight:  # cards written before the data-insight statistics
        return header, body
    # datastats: kept after de-duplication, truncation, duplicates, score and length medians.
    ph = insight.get("per_heuristic", {})

    def extra(h: dict[str, Any] | None) -> list[str]:
        if not h:
            return ["–"] * 6
        return [str(h["kept"]), _pct(h["truncation_rate"]),
                f"{h['duplicates_exact']}/{h['duplicates_near']}",
                "–" if h["score"]["p50"] is None else f"{h['score']['p50']:.3g}",
                "–" if h["length_tokens"]["p50"] is None else f"{h['length_tokens']['p50']:.0f}",
                "–"]

    for row in body[:-1]:
        row += extra(ph.get(row[0]))
    div = insight.get("diversity", {}).get("per_question", {})
    vendi = "–" if div.get("mean") is None else f"{div['mean']:.2f}"
    body[-1] += [str(sum(h["kept"] for h in ph.values())), _pct(card.get("truncation_rate")),
                 f"{insight['duplicates']['exact']}/{insight['duplicates']['near']}", "–", "–",
                 vendi]
    return [*header, "kept", "truncated %", "duplicates exact/near", "score p50",
            "tokens p50", "Vendi mean/question"], body


def render_html(data: dict[str, Any], images: dict[str, bytes],
                cards: dict[str, Any] | None = None) -> str:
    """A self-contained page: tables and PNGs as data URIs, no outside resources."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>Pólya mid-training: evaluation report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
             "padding:.3em .6em;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%;border:1px solid #ddd;margin:.5em}</style></head><body>",
             "<h1>Pólya mid-training: evaluation report</h1>", f"<p>{esc(INTRO)}</p>"]

    def table(tid: str, title: str, header: list[str], body: list[list[str]]) -> None:
        parts.append(f"<h2>{esc(title)}</h2><table id=\"{esc(tid)}\"><thead><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for r in body:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
        parts.append("</tbody></table>")

    for sec in sections(data):
        table(*sec)
    for arm, card in (cards or {}).items():
        table(f"data-{arm}", f"Training data of arm {arm} (generate stage)",
              *_card_table(card))
    if images:
        parts.append("<h2>Plots</h2>")
        for name, png in images.items():
            uri = "data:image/png;base64," + base64.b64encode(png).decode()
            parts.append(f"<figure><img alt=\"{esc(name)}\" src=\"{uri}\">"
                         f"<figcaption>{esc(name)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _curve(ax: Any, xs: list[int], ys: list[float], cis: list[Any], row: str) -> None:
    base = row.endswith("/base")
    line = ax.plot(xs, [100 * y for y in ys], marker="o", label=row,
                   linestyle=":" if base else ("--" if row.startswith("vanilla") else "-"),
                   color="black" if base else None)
    if all(cis):
        ax.fill_between(xs, [100 * c[0] for c in cis], [100 * c[1] for c in cis],
                        color=line[0].get_color(), alpha=0.15, linewidth=0)


def _axes(ax: Any, ks: list[int], title: str) -> None:
    if len(ks) > 1 and max(ks) / max(1, min(ks)) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


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
        cis = data["ci"].get(bench, {}).get(arm, {}).get(ckpt, {})
        xs = [k for k in ks if f"pass@{k}" in cell]
        _curve(ax, xs, [cell[f"pass@{k}"] for k in xs], [cis.get(f"pass@{k}") for k in xs],
               row)
    _axes(ax, ks, f"{bench}: pass@k, 95% bands (n={_n_of(data, bench)} questions)")
    return _png(fig)


def _headline_plot(data: dict[str, Any]) -> bytes | None:
    from matplotlib.figure import Figure

    head = data["headline"]
    if not head["rows"]:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ks = [_k_of(m) for m in data["metrics"] if m.startswith("pass@")]
    for row in data["display_rows"]:
        h = head["rows"].get(row)
        if not h:
            continue
        xs = [k for k in ks if f"pass@{k}" in h]
        _curve(ax, xs, [h[f"pass@{k}"]["value"] for k in xs],
               [h[f"pass@{k}"]["ci"] for k in xs], row)
    n = max((h["questions"] for h in head["rows"].values()), default=0)
    _axes(ax, ks, f"math average: pass@k, 95% bands ({n} questions)")
    return _png(fig)


def _delta_plot(data: dict[str, Any]) -> bytes | None:
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


def write_report(workdir: Path) -> Path:
    """Rebuild ``<workdir>/report/`` from all arms' results; returns the Markdown path."""
    workdir = Path(workdir)
    out = workdir / "report"
    results = load_results(workdir)
    data = build_table(results, load_questions(workdir, results))
    cards = load_cards(workdir)
    images: dict[str, bytes] = {}
    head = _headline_plot(data)
    if head is not None:
        images["passk_headline.png"] = head
    for bench in data["benchmarks"]:
        images[f"passk_{bench}.png"] = _passk_plot(data, bench)
    delta = _delta_plot(data)
    if delta is not None:
        images["delta_vs_vanilla.png"] = delta
    for name, png in images.items():
        atomic_write_bytes(out / name, png)
    plots = list(images)
    atomic_write_json(out / "report.json", {**data, "plots": plots,
                                            "cards": {a: _card_table(c)[1]
                                                      for a, c in cards.items()}})
    atomic_write_text(out / "report.html", render_html(data, images, cards))
    return atomic_write_text(out / "report.md", render_markdown(data, plots, cards))


# --------------------------------------------------------------------------- sweep report
# A sweep (``spec.sweep``) runs one variant per (heuristics count n, seed) under
# ``<sweep>/<variant>/`` with a ``variant.json`` naming n and the seed. The sweep report reads
# each variant's results and shows, per n, the mean and the standard deviation across seeds
# of the math average (the headline's benchmarks) at every pass@k, and the ablation curve.

SWEEP_ROWS = (("polya", "rl"), ("polya", "midtrain"), ("vanilla", "rl"))


def _math_average(figures: dict[str, dict[str, Any]], metric: str) -> float | None:
    values = [f[metric] for b, f in figures.items()
              if _kind(b, f) == "math" and isinstance(f.get(metric), int | float)]
    return sum(values) / len(values) if values else None


def sweep_table(root: Path) -> dict[str, Any]:
    """{"metrics", "headline", "rows", "points": [{n, seed, row, metric: value}],
    "summary": {row: {metric: [{n, mean, std, seeds}]}}} over the variants under `root`."""
    import numpy as np

    points: list[dict[str, Any]] = []
    metrics: set[str] = set()
    for vfile in sorted(Path(root).glob("*/variant.json")):
        variant = json.loads(vfile.read_text())
        for arm, ckpts in load_results(vfile.parent).items():
            for ckpt, figures in ckpts.items():
                if (arm, ckpt) not in SWEEP_ROWS:
                    continue
                names = {m for f in figures.values() for m in f if m.startswith("pass@")}
                metrics |= names
                point = {"variant": variant["name"], "n": variant.get("heuristics"),
                         "seed": variant["seed"], "row": f"{arm}/{ckpt}"}
                point.update({m: _math_average(figures, m) for m in names})
                points.append(point)
    ordered = sorted(metrics, key=_k_of)
    summary: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for arm, ckpt in SWEEP_ROWS:
        row = f"{arm}/{ckpt}"
        mine = [p for p in points if p["row"] == row]
        if not mine:
            continue
        summary[row] = {}
        for metric in ordered:
            cells = []
            for n in sorted({p["n"] or 0 for p in mine}):
                vals = np.array([p[metric] for p in mine if (p["n"] or 0) == n
                                 and p.get(metric) is not None], dtype=float)
                if len(vals):
                    cells.append({"n": n, "mean": float(vals.mean()), "seeds": len(vals),
                                  "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0})
            summary[row][metric] = cells
    headline = f"pass@{HEADLINE_K}" if f"pass@{HEADLINE_K}" in metrics else (
        ordered[-1] if ordered else None)
    return {"metrics": ordered, "headline": headline, "rows": list(summary),
            "points": points, "summary": summary}


def _sweep_body(data: dict[str, Any], metric: str) -> tuple[list[str], list[list[str]]]:
    ns = sorted({c["n"] for cells in data["summary"].values() for c in cells.get(metric, [])})
    header = ["heuristics n", *data["rows"]]
    body = []
    for n in ns:
        row = [str(n) if n else "all"]
        for name in data["rows"]:
            cell = next((c for c in data["summary"][name].get(metric, []) if c["n"] == n), None)
            row.append("–" if cell is None else
                       f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f} ({cell['seeds']})")
        body.append(row)
    return header, body


def _ablation_plot(data: dict[str, Any]) -> bytes | None:
    """The math average at the headline metric against n, mean ± std across seeds."""
    from matplotlib.figure import Figure

    metric = data["headline"]
    if metric is None:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ns: set[int] = set()
    for row in data["rows"]:
        cells = data["summary"][row].get(metric, [])
        xs = [c["n"] for c in cells]
        ns |= set(xs)
        ax.errorbar(xs, [100 * c["mean"] for c in cells], yerr=[100 * c["std"] for c in cells],
                    marker="o", capsize=4, label=row,
                    linestyle="--" if row.startswith("vanilla") else "-")
    if len(ns) > 1 and max(ns) / max(1, min(ns)) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ns), [str(n) for n in sorted(ns)])
    ax.set_xlabel("heuristics n (the catalog's first n)")
    ax.set_ylabel(f"math average {metric} (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Ablation over n: mean ± std across seeds ({metric})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


SWEEP_INTRO = ("Each cell: the math-benchmark average in percent, mean ± standard deviation "
               "across seeds (number of seeds in brackets). Generation ran once at the largest "
               "n; a variant with n heuristics mid-trained on the catalog's first n.")


def write_sweep_report(root: Path) -> Path:
    """Write ``<root>/report/sweep.{md,html,json}`` and ``ablation.png``; the Markdown path."""
    root = Path(root)
    out = root / "report"
    data = sweep_table(root)
    if not data["points"]:
        raise FileNotFoundError(f"no evaluated sweep variant under {root}")
    png = _ablation_plot(data)
    plots = []
    if png is not None:
        atomic_write_bytes(out / "ablation.png", png)
        plots.append("ablation.png")
    atomic_write_json(out / "sweep.json", {**data, "plots": plots})
    md = ["# Sweep report", "", SWEEP_INTRO, ""]
    for metric in data["metrics"]:
        md += [f"## {metric}{' (headline)' if metric == data['headline'] else ''}", "",
               *_md_table(*_sweep_body(data, metric)), ""]
    md += [f"![ablation]({p})" for p in plots]
    esc = html.escape
    page = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<title>Sweep report</title><style>body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.3em .6em}"
            "</style></head><body>", "<h1>Sweep report</h1>", f"<p>{esc(SWEEP_INTRO)}</p>"]
    for metric in data["metrics"]:
        header, body = _sweep_body(data, metric)
        page.append(f"<h2>{esc(metric)}</h2><table id=\"sweep-{esc(metric)}\"><tr>"
                    + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        page += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in body]
        page.append("</table>")
    if png is not None:
        page.append("<figure><img alt=\"ablation\" src=\"data:image/png;base64,"
                    + base64.b64encode(png).decode() + "\"><figcaption>ablation over n"
                    "</figcaption></figure>")
    page.append("</body></html>")
    atomic_write_text(out / "sweep.html", "\n".join(page))
    return atomic_write_text(out / "sweep.md", "\n".join(md) + "\n")
