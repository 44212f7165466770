"""The report as one self-contained HTML page (report.html, sweep.html): no outside resources,
plots embedded as data URIs. It opens with the pre-registered comparisons in a sentence each,
then the headline pass@k plot, then the tables (the long paired table folded away), then
the other plots side by side. So that nothing scrolls sideways on a 1280 px wide window, a
word of over 20 characters may break after ``_``, ``/`` and ``:``, a content hash shows its
first 12 hex digits (the whole in a tooltip), and a table of benchmarks or settings wider than
``WIDE`` columns is turned: its columns become rows."""

from __future__ import annotations

import base64
import re
from html import escape
from typing import Any

from polya_trainer.report.text import (
    INTRO,
    SWEEP_INTRO,
    TITLE,
    Section,
    card_sections,
    findings,
    sections,
    sweep_sections,
)

STYLE = ("body{font-family:sans-serif;margin:2em auto;padding:0 2em;max-width:80em;"
         "line-height:1.4}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}"
         "td:first-child,th:first-child{text-align:left}"
         ".plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:1em 0}"
         "img{max-width:100%;border:1px solid #ddd}"
         "summary{cursor:pointer;font-weight:bold;font-size:1.2em;margin:1em 0}"
         ".note{font-size:.9em;color:#444}")
FOLDED = ("paired",)  # sections shown closed, in <details>
WIDE = 8  # columns; a wider table of these sections is turned
TURNABLE = ("math-", "apart-", "truncation", "settings")
HASH = re.compile(r"((?:sha256:)?[0-9a-f]{12})[0-9a-f]{20,}")
LONG, BREAK = re.compile(r"\S{21,}"), re.compile(r"([_/:])")  # a long word breaks after _ / :


def _cell(tag: str, text: str) -> str:
    short = HASH.fullmatch(text)
    if short:
        return f"<{tag} title=\"{escape(text)}\">{escape(short.group(1))}…</{tag}>"
    words = LONG.sub(lambda m: BREAK.sub(r"\1<wbr>", m.group()), escape(text))
    return f"<{tag}>{words}</{tag}>"


def _turned(sec: Section) -> Section:
    """Columns as rows (the first cell of each old row heads a column)."""
    if len(sec.header) <= WIDE or not sec.id.startswith(TURNABLE):
        return sec
    header = [sec.header[0], *[r[0] for r in sec.body]]
    body = [[h, *[r[j] for r in sec.body]] for j, h in enumerate(sec.header) if j]
    return sec._replace(header=header, body=body)


def _table(sec: Section) -> str:
    sec = _turned(sec)
    rows = "".join("<tr>" + "".join(_cell("td", c) for c in r) + "</tr>" for r in sec.body)
    table = (f"<table id=\"{escape(sec.id)}\"><thead><tr>"
             + "".join(_cell("th", h) for h in sec.header) + f"</tr></thead><tbody>{rows}"
             "</tbody></table>" + (f"<p class=\"note\">{escape(sec.note)}</p>" if sec.note
                                   else ""))
    if sec.id in FOLDED:
        return f"<details><summary>{escape(sec.title)}</summary>{table}</details>"
    return f"<h2>{escape(sec.title)}</h2>{table}"


def _figure(name: str, png: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    return (f"<figure><img alt=\"{escape(name)}\" src=\"{uri}\">"
            f"<figcaption>{escape(name)}</figcaption></figure>")


def _page(title: str, body: list[str]) -> str:
    return "\n".join(["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
                      f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
                      f"<h1>{escape(title)}</h1>", *body, "</body></html>"])


def render_html(data: dict[str, Any], images: dict[str, bytes],
                cards: dict[str, Any] | None = None) -> str:
    """The evaluation report page; `images`: PNG name -> bytes, the headline's first."""
    first = next(iter(images), None)
    body = ["<ul id=\"findings\">" + "".join(f"<li>{escape(s)}</li>" for s in findings(data))
            + "</ul>"]
    if first is not None:
        body.append(_figure(first, images[first]))
    body.append(f"<p>{escape(INTRO)}</p>")
    body += [_table(sec) for sec in [*sections(data), *card_sections(cards)]]
    rest = [_figure(name, png) for name, png in images.items() if name != first]
    if rest:
        body += ["<h2>Plots</h2>", "<div class=\"plots\">", *rest, "</div>"]
    return _page(TITLE, body)


def render_sweep_html(data: dict[str, Any], ablation: bytes | None) -> str:
    body = [f"<p>{escape(SWEEP_INTRO)}</p>", *[_table(sec) for sec in sweep_sections(data)]]
    if ablation is not None:
        body.append(_figure("ablation over n", ablation))
    return _page("Sweep report", body)
