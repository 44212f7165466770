"""The report in words and tables: cell formatting, the opening sentences, the tables shared
by Markdown and HTML (``sections``), and the Markdown pages (report.md, sweep.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from polya_trainer.report.numbers import PREREGISTERED
from polya_trainer.report.stats import ALPHA

TITLE = "Pólya mid-training: evaluation report"
INTRO = ("Values are percentages. pass@k uses the unbiased estimator of Chen et al. (2021), "
         "averaged over questions; greedy is the accuracy of one temperature-0 answer. "
         "Brackets hold 95% bootstrap intervals over questions. Rows are arm/checkpoint: base "
         "= the base model, midtrain = after mid-training, rl = after GRPO. The headline "
         "averages the math benchmarks only; code and multiple-choice benchmarks are "
         "reported apart at pass@1 and greedy (with 2-3 options, MuSR's pass@k nears 100% "
         "at large k whatever the model).")
SWEEP_INTRO = ("Each cell: the math-benchmark average in percent, mean ± standard deviation "
               "across seeds (number of seeds in brackets). Generation ran once at the largest "
               "n; a variant with n heuristics mid-trained on the catalog's first n.")
MARK = "†"  # a pre-registered comparison in the paired table


class Section(NamedTuple):
    """One table of the report: Markdown and HTML render the same sections."""
    id: str
    title: str
    header: list[str]
    body: list[list[str]]
    note: str = ""


def pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def with_ci(v: float | None, ci: Any) -> str:
    if v is None:
        return "–"
    if not ci:
        return pct(v)
    return f"{pct(v)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _diff(h: dict[str, Any]) -> str:
    return f"{pct(h['difference'], True)} [{100 * h['ci'][0]:+.1f}, {100 * h['ci'][1]:+.1f}]"


def n_of(data: dict[str, Any], bench: str) -> str:
    """The numbers of questions behind a benchmark's cells ("50", or "48/50" if they differ)."""
    ns = {n for arm in data["questions"].get(bench, {}).values() for n in arm.values()}
    return "/".join(str(n) for n in sorted(ns)) or "?"


def findings(data: dict[str, Any]) -> list[str]:
    """One sentence per pre-registered comparison present: the headline metric's paired
    difference on the math average, its interval, Holm-adjusted p and the verdict."""
    metric = data["headline"]["metric"] or "pass@1"
    tests = data["multiple_comparisons"]["tests"]
    by = {(e["row"], e["versus"]): e for e in data["paired"]}
    out = []
    for row, versus in PREREGISTERED:
        if (row, versus) not in by:
            continue
        h = by[row, versus]["headline"]
        if h is None:
            out.append(f"{row} versus {versus}: no per-question rows of a math benchmark "
                       "that both answered, so no paired comparison.")
            continue
        p = h["p_holm"]
        verdict = ("a detectable difference" if p < ALPHA
                   else "not detectable (it could be zero)")
        out.append(f"{row} versus {versus}: {metric} on the math average differs by "
                   f"{pct(h['difference'], True)} points (paired 95% interval "
                   f"{100 * h['ci'][0]:+.1f} to {100 * h['ci'][1]:+.1f}, {h['questions']} "
                   f"questions; Holm-adjusted p {'< 0.001' if p < 0.001 else f'= {p:.3f}'} "
                   f"over {tests} tests): {verdict} at the {ALPHA:.0%} level.")
    if not out:
        pairs = ", ".join(f"{r} versus {v}" for r, v in PREREGISTERED)
        out.append(f"No pre-registered comparison ({pairs}) has both its rows yet.")
    return out


def _rowcells(data: dict[str, Any], row: str, benches: list[str], metric: str) -> list[str]:
    arm, ckpt = row.split("/")
    return [with_ci(data["table"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric),
                    data["ci"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric))
            for b in benches]


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


def _headline_section(data: dict[str, Any]) -> Section:
    head = data["headline"]
    ks = [m for m in data["metrics"] if m.startswith("pass@")]
    body = []
    for row in data["display_rows"]:
        h = head["rows"].get(row)
        if h is not None:
            body.append([row + ("*" if h["partial"] else ""),
                         *[with_ci(h.get(m, {}).get("value"), h.get(m, {}).get("ci"))
                           for m in ks], str(h["questions"])])
    return Section("headline", f"Headline: {head['metric']} averaged over the math benchmarks "
                   f"({', '.join(head['benchmarks'])})",
                   ["arm/checkpoint", *[f"{m} [95% CI]" for m in ks], "questions"], body)


def _math_section(data: dict[str, Any], metric: str) -> Section:
    benches = data["math_benchmarks"]
    body = []
    for row in data["display_rows"]:
        arm, ckpt = row.split("/")
        vals = [data["table"].get(b, {}).get(arm, {}).get(ckpt, {}).get(metric) for b in benches]
        present = [v for v in vals if v is not None]
        avg = pct(sum(present) / len(present)) if present else "–"
        body.append([row, *_rowcells(data, row, benches, metric),
                     avg + ("*" if present and len(present) < len(vals) else "")])
    return Section(f"math-{metric}", f"Math benchmarks: {metric}",
                   ["arm/checkpoint", *[f"{b} (n={n_of(data, b)})" for b in benches],
                    "Math average"], body)


def _paired_section(data: dict[str, Any]) -> Section:
    body = []
    for e in data["paired"]:
        if e["row"] not in data["display_rows"] and e["versus"] not in data["display_rows"]:
            continue
        row = e["row"] + (f" {MARK}" if e.get("preregistered") else "")
        results = [("math average", data["headline"]["metric"] or "pass@1", e["headline"])]
        results += [(b, m, h) for b, per in e["benchmarks"].items() for m, h in per.items()]
        body += [[row, e["versus"], bench, metric, _diff(h), _p(h["p_value"]),
                  _p(h["p_holm"]), str(h["questions"])] for bench, metric, h in results if h]
    pre = ", ".join(f"{r} versus {v}" for r, v in PREREGISTERED)
    note = (f"p: two-sided paired-bootstrap p-value. p Holm: the same corrected for multiple "
            f"comparisons with Holm-Bonferroni over all {data['multiple_comparisons']['tests']}"
            f" paired tests in this report; a difference is detectable when p Holm < "
            f"{ALPHA:g}. {MARK} marks the pre-registered comparisons ({pre}).")
    return Section("paired", "Paired per-question comparisons (percentage points)",
                   ["row", "versus", "benchmark", "metric", "difference [95% CI]", "p",
                    "p Holm", "questions"], body, note)


def sections(data: dict[str, Any]) -> list[Section]:
    """The report's tables, in order: shared by Markdown and HTML."""
    out = [_headline_section(data)] if data["headline"]["rows"] else []
    if data["math_benchmarks"]:
        out += [_math_section(data, metric) for metric in data["metrics"]]
    benches = data["apart_benchmarks"]
    if benches:
        out += [Section(f"apart-{metric}", "Reported apart (code and multiple choice): "
                        f"{metric}", ["arm/checkpoint", *[f"{b} (n={n_of(data, b)})"
                                                          for b in benches]],
                        [[row, *_rowcells(data, row, benches, metric)]
                         for row in data["display_rows"]])
                for metric in data["apart_metrics"]]
    paired = _paired_section(data)
    if paired.body:
        out.append(paired)
    if data["truncation"]:
        benches = list(data["truncation"])
        out.append(Section("truncation", "Sampled completions cut at the token limit (% , "
                           "scored wrong)", ["arm/checkpoint", *benches],
                           [[row, *[pct(data["truncation"][b].get(row)) for b in benches]]
                            for row in data["display_rows"]]))
    groups = _settings_groups(data)
    if groups:
        keys = sorted({k for s, _ in groups for k in s})
        out.append(Section("settings", "Evaluation settings behind every number",
                           ["settings", *keys, "applies to"],
                           [[f"S{i + 1}", *[str(s.get(k, "–")) for k in keys],
                             f"{len(where)} cells" if len(where) > 4 else ", ".join(where)]
                            for i, (s, where) in enumerate(groups)]))
    return out


def card_table(card: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """An arm's generate data card as a table: acceptance per heuristic, then (cards with
    ``data_insight``) kept rows, truncation, duplicates, score and length medians, Vendi."""
    per = card.get("acceptance_rate_per_heuristic", {})
    body = [[h, str(v.get("pairs", 0)), str(v.get("accepted", 0)), pct(v.get("rate"))]
            for h, v in sorted(per.items())]
    total = card.get("counts", {})
    body.append(["all", str(total.get("pairs", "–")), str(total.get("accepted", "–")),
                 pct(card.get("acceptance_rate"))])
    header = ["heuristic", "pairs", "accepted", "acceptance %"]
    insight = card.get("data_insight")
    if not insight:  # cards written before the data-insight statistics
        return header, body
    ph = insight.get("per_heuristic", {})

    def extra(h: dict[str, Any] | None) -> list[str]:
        if not h:
            return ["–"] * 6
        return [str(h["kept"]), pct(h["truncation_rate"]),
                f"{h['duplicates_exact']}/{h['duplicates_near']}",
                "–" if h["score"]["p50"] is None else f"{h['score']['p50']:.3g}",
                "–" if h["length_tokens"]["p50"] is None else f"{h['length_tokens']['p50']:.0f}",
                "–"]

    for row in body[:-1]:
        row += extra(ph.get(row[0]))
    div = insight.get("diversity", {}).get("per_question", {})
    vendi = "–" if div.get("mean") is None else f"{div['mean']:.2f}"
    body[-1] += [str(sum(h["kept"] for h in ph.values())), pct(card.get("truncation_rate")),
                 f"{insight['duplicates']['exact']}/{insight['duplicates']['near']}", "–", "–",
                 vendi]
    return [*header, "kept", "truncated %", "duplicates exact/near", "score p50",
            "tokens p50", "Vendi mean/question"], body


def card_sections(cards: dict[str, Any] | None) -> list[Section]:
    return [Section(f"data-{arm}", f"Training data of arm {arm} (generate stage)",
                    *card_table(card)) for arm, card in (cards or {}).items()]


def md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(r) + " |" for r in body]


def _md_deltas(data: dict[str, Any]) -> list[str]:
    if not data["deltas"]:
        return ["No vanilla RL results yet, so no differences versus vanilla RL.", ""]
    benches = data["benchmarks"]
    lines = [f"## Difference versus {data['reference']} (percentage points)", ""]
    for metric in data["metrics"]:
        body = [[row, *[pct(per_bench.get(b, {}).get(metric), signed=True) for b in benches],
                 pct(per_bench.get("average", {}).get(metric), True)]
                for row, per_bench in data["deltas"].items() if row in data["display_rows"]]
        lines += [f"### {metric}", "", *md_table(["arm/checkpoint", *benches, "Average (all)"],
                                                 body), ""]
    return lines


def render_markdown(data: dict[str, Any], plots: list[str],
                    cards: dict[str, Any] | None = None) -> str:
    lines = [f"# {TITLE}", "", *[f"- {s}" for s in findings(data)], "", INTRO, ""]
    for sec in sections(data):
        lines += [f"## {sec.title}", "", *md_table(sec.header, sec.body), ""]
        lines += [sec.note, ""] if sec.note else []
    if any(r["partial"] for r in data["headline"]["rows"].values()):
        lines += ["\\* averaged over the math benchmarks that row has.", ""]
    hidden = [r for r in data["rows"] if r not in data["display_rows"]]
    if hidden:
        lines += [f"Not repeated (identical to a base row above, the same model): "
                  f"{', '.join(hidden)}.", ""]
    lines += _md_deltas(data)
    for sec in card_sections(cards):
        lines += [f"## {sec.title}", "", *md_table(sec.header, sec.body), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def sweep_sections(data: dict[str, Any]) -> list[Section]:
    """Per metric, a row per heuristics count n: mean ± std across seeds (seeds) per row."""
    out = []
    for metric in data["metrics"]:
        ns = sorted({c["n"] for cells in data["summary"].values() for c in cells.get(metric, [])})
        body = []
        for n in ns:
            row = [str(n) if n else "all"]
            for name in data["rows"]:
                cell = next((c for c in data["summary"][name].get(metric, []) if c["n"] == n),
                            None)
                row.append("–" if cell is None else
                           f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f} ({cell['seeds']})")
            body.append(row)
        title = f"{metric}{' (headline)' if metric == data['headline'] else ''}"
        out.append(Section(f"sweep-{metric}", title, ["heuristics n", *data["rows"]], body))
    deltas = data.get("deltas") or []
    if deltas:
        body = [[d["comparison"], d["metric"], str(d["n"]) if d["n"] else "all",
                 ", ".join(f"{100 * s['value']:+.1f} (seed {s['seed']})" for s in d["seeds"]),
                 f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f}",
                 f"{100 * d['min']:+.1f} to {100 * d['max']:+.1f}"] for d in deltas]
        out.append(Section("sweep-deltas", "Pre-registered differences across seeds (points)",
                           ["comparison", "metric", "heuristics n", "per seed",
                            "mean ± std", "range"], body))
    return out


def render_sweep_markdown(data: dict[str, Any], plots: list[str]) -> str:
    md = ["# Sweep report", "", SWEEP_INTRO, ""]
    for sec in sweep_sections(data):
        md += [f"## {sec.title}", "", *md_table(sec.header, sec.body), ""]
    md += [f"![ablation]({p})" for p in plots]
    return "\n".join(md) + "\n"
