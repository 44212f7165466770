"""`polya inspect WORKDIR`: browse the generated samples by heuristic and score in a terminal.

Reads each arm's ``Workspace.generated_data`` and the card's ``data_insight``; prints a
per-heuristic summary and a table of samples (best score first), filtered by heuristic,
minimum score and question.
"""

from __future__ import annotations

import json
from typing import Any

from polya_trainer.runtime.workspace import RunDir, Workspace

ARMS = ("polya", "star")


def load_samples(workdir: RunDir, arms: tuple[str, ...] = ARMS) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    ws = Workspace.of(workdir)
    rows: list[dict[str, Any]] = []
    for arm in arms:
        for f in sorted(ws.generated_data(arm).glob("shard-*.parquet")):
            rows += [{**r, "arm": arm} for r in pq.read_table(f).to_pylist()]
    return rows


def select(rows: list[dict[str, Any]], heuristic: str | None = None,
           min_score: float | None = None, question: str | None = None,
           sort: str = "score", limit: int | None = 20) -> list[dict[str, Any]]:
    """Filter (heuristic id or name, score >= min_score, question id) and order the rows."""
    out = [r for r in rows
           if (heuristic is None or heuristic in (r["heuristic"], r["heuristic_name"]))
           and (min_score is None or r["score"] >= min_score)
           and (question is None or str(r["question_id"]) == question)]
    key = {"score": lambda r: -r["score"], "length": lambda r: -r["num_tokens"],
           "question": lambda r: (str(r["question_id"]), r["heuristic"])}[sort]
    out.sort(key=key)
    return out if limit is None else out[:limit]


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def render(workdir: RunDir, heuristic: str | None = None, min_score: float | None = None,
           question: str | None = None, sort: str = "score", limit: int = 20,
           width: int = 160, console: Any = None) -> int:
    """Print the summary and the sample table; returns how many samples were shown."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for arm in ARMS:
        card = Workspace.of(workdir).card(arm)
        if not card.is_file():
            continue
        insight = json.loads(card.read_text()).get("data_insight")
        if not insight:
            continue
        t = Table(title=f"{arm}: per heuristic")
        for col in ("heuristic", "accepted", "kept", "accept", "trunc", "dups",
                    "score p50", "tokens p50"):
            t.add_column(col, justify="left" if col == "heuristic" else "right")
        for hid, h in insight["per_heuristic"].items():
            dups = h["duplicates_exact"] + h["duplicates_near"]
            t.add_row(hid, f"{h['accepted']}/{h['pairs']}", str(h["kept"]),
                      f"{h['acceptance_rate']:.2f}", f"{h['truncation_rate']:.2f}", str(dups),
                      str(h["score"]["p50"]), str(h["length_tokens"]["p50"]))
        console.print(t)
        div = insight["diversity"]
        console.print(f"Vendi per question ({div['similarity']}): {div['per_question']}")
    rows = select(load_samples(workdir), heuristic, min_score, question, sort, limit)
    t = Table(title=f"samples ({len(rows)} shown, sorted by {sort})")
    for col in ("arm", "heuristic", "question", "score", "tokens", "completion"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["arm"], r["heuristic"], f"{r['question_id']}: {_clip(r['question'], 60)}",
                  f"{r['score']:.3f}", str(r["num_tokens"]), _clip(r["completion"], width))
    console.print(t)
    return len(rows)
