"""The comparison report across arms and checkpoints (``polya report WORKDIR``).

Reads every ``<workdir>/<arm>/evaluate/results.json`` present, the per-question rows beside it
(``questions/<checkpoint>/<benchmark>.jsonl``) and the generate stage's data cards, and writes
``<workdir>/report/``:

* ``report.json``: ``table[benchmark][arm][checkpoint][metric]`` (fractions 0-1), ``ci`` (95%
  bootstrap intervals over questions, same keys), ``questions`` (how many questions stand
  behind each cell), the ``headline`` (pass@K averaged over the math benchmarks only; K = 64,
  else the largest k evaluated) with its intervals, the non-math benchmarks ``apart`` at pass@1
  and greedy, ``paired`` per-question comparisons between rows (difference, paired-bootstrap
  interval, p-value and its Holm-adjusted ``p_holm``; ``preregistered`` marks the comparisons
  fixed in advance), ``deltas`` against vanilla/rl, and the evaluation ``settings`` of every
  number.
* ``report.md``: a sentence per pre-registered comparison, then the same as Markdown tables
  (values in percent, ``value [low, high]``).
* ``report.html``: one self-contained page (the same sentences, the plots as data URIs, the
  tables, the per-heuristic data statistics of each arm's generate stage) for a browser.
* ``passk_<benchmark>.png`` / ``passk_headline.png``: pass@k against k with 95% bands, the base
  model's curve beside the trained ones; ``delta_vs_vanilla.png``: paired differences.

The parts: ``stats`` (bootstrap, paired tests, Holm), ``numbers`` (the data above, read and
computed), ``text`` (cells, sentences, tables, Markdown), ``page`` (HTML), ``plots`` (PNG).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from polya_trainer.report.numbers import (
    build_table,
    load_cards,
    load_questions,
    load_results,
    sweep_table,
)
from polya_trainer.report.page import render_html, render_sweep_html
from polya_trainer.report.plots import ablation_plot, delta_plot, headline_plot, passk_plot
from polya_trainer.report.text import card_table, render_markdown, render_sweep_markdown
from polya_trainer.runtime.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["build_table", "load_cards", "load_questions", "load_results", "sweep_table",
           "write_report", "write_sweep_report"]


def write_report(workdir: Path) -> Path:
    """Rebuild ``<workdir>/report/`` from all arms' results; returns the Markdown path."""
    workdir = Path(workdir)
    out = workdir / "report"
    results = load_results(workdir)
    data = build_table(results, load_questions(workdir, results))
    cards = load_cards(workdir)
    images: dict[str, bytes] = {}
    head = headline_plot(data)
    if head is not None:
        images["passk_headline.png"] = head
    for bench in data["benchmarks"]:
        images[f"passk_{bench}.png"] = passk_plot(data, bench)
    delta = delta_plot(data)
    if delta is not None:
        images["delta_vs_vanilla.png"] = delta
    for name, png in images.items():
        atomic_write_bytes(out / name, png)
    plots = list(images)
    atomic_write_json(out / "report.json", {**data, "plots": plots,
                                            "cards": {a: card_table(c)[1]
                                                      for a, c in cards.items()}})
    atomic_write_text(out / "report.html", render_html(data, images, cards))
    return atomic_write_text(out / "report.md", render_markdown(data, plots, cards))


def write_sweep_report(root: Path, variants: Iterable[tuple[Path, Mapping[str, Any]]] | None
                       = None) -> Path:
    """Write ``<root>/report/sweep.{md,html,json}`` and ``ablation.png`` over the variants
    (see ``sweep_table``); the Markdown path."""
    root = Path(root)
    out = root / "report"
    data = sweep_table(root, variants)
    if not data["points"]:
        raise FileNotFoundError(f"no evaluated sweep variant under {root}")
    png = ablation_plot(data)
    plots = []
    if png is not None:
        atomic_write_bytes(out / "ablation.png", png)
        plots.append("ablation.png")
    atomic_write_json(out / "sweep.json", {**data, "plots": plots})
    atomic_write_text(out / "sweep.html", render_sweep_html(data, png))
    return atomic_write_text(out / "sweep.md", render_sweep_markdown(data, plots))
