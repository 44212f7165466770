"""Stage 4: pass@k of every checkpoint of an arm on every benchmark, then the report.

For each checkpoint of the arm that exists (base, midtrain, rl; the vanilla arm has no
midtrain) and each benchmark (built-in names from the spec plus custom files), the first
``limit`` questions get ``samples`` sampled completions (temperature/topP) and one greedy
completion. Scores give per question ``c`` correct out of ``n``; pass@k is the mean of the
unbiased estimator over questions for every requested k <= samples.

Outputs under ``<workdir>/<arm>/evaluate/``:

* ``results.json``: ``{checkpoint: {benchmark: {"pass@1": .., "pass@8": .., "greedy": ..,
  "n": questions, "samples": n, "mean_tokens": ..}}}``
* ``questions/<checkpoint>/<benchmark>.jsonl``: one row per question (id, n, c, greedy
  correct, pass@k, the greedy and the first few sampled completions, truncated)
* ``parts/<checkpoint>/<benchmark>.json``: the finished (checkpoint, benchmark) pairs, so a
  restarted stage skips what is done (keyed by a fingerprint of the settings)

Then the cross-arm report (``report.write_report``) is rebuilt and the manifest written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from . import benchmarks as bm
from .artifacts import atomic_write_json, atomic_write_text, write_manifest
from .backends import Completion, Sampling, load_generator
from .models import checkpoint_model, stage_dir
from .passk import pass_at_k, usable_ks
from .progress import Reporter
from .spec import EvaluateSpec, PolyaRunSpec

log = logging.getLogger(__name__)

KEEP_COMPLETIONS = 2  # sampled completions stored per question
KEEP_CHARS = 600  # characters kept per stored completion
CHUNK = 16  # questions per generate call (progress granularity)


def render_prompts(tokenizer: Any, items: list[bm.Item]) -> list[str]:
    """Chat-template rendering shared with generation (prompts.render)."""
    from .prompts import render

    return [render(tokenizer, item.messages) for item in items]


def _fingerprint(ev: EvaluateSpec, model: str, seed: int, bench: bm.Benchmark) -> str:
    settings = {"model": model, "seed": seed, "samples": ev.samples, "k": sorted(ev.k),
                "temperature": ev.temperature, "top_p": ev.top_p, "limit": ev.limit,
                "max_new_tokens": ev.max_new_tokens, "benchmark": bench.name,
                "source": bench.source.hub_id, "local": str(bench.local_file() or "")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _cut(text: str) -> str:
    return text if len(text) <= KEEP_CHARS else text[:KEEP_CHARS] + " …"


def summarize(rows: list[dict[str, Any]], ks: list[int], samples: int) -> dict[str, Any]:
    """Benchmark-level figures from per-question rows (each with n, c, greedy_correct)."""
    count = len(rows)
    out: dict[str, Any] = {}
    for k in ks:
        out[f"pass@{k}"] = (sum(pass_at_k(r["n"], r["c"], k) for r in rows) / count
                            if count else 0.0)
    out["greedy"] = sum(bool(r["greedy_correct"]) for r in rows) / count if count else 0.0
    out["n"] = count
    out["samples"] = samples
    tokens = [r["mean_tokens"] for r in rows if r.get("mean_tokens") is not None]
    out["mean_tokens"] = round(sum(tokens) / len(tokens), 2) if tokens else 0.0
    return out


class _Progress:
    """Questions done across checkpoints and the running (sampled) accuracy."""

    def __init__(self, reporter: Reporter, total: int):
        self.reporter, self.done, self.correct, self.seen = reporter, 0, 0, 0
        reporter.start(total=total, unit="questions")

    def advance(self, rows: list[dict[str, Any]], message: str) -> None:
        self.done += len(rows)
        self.correct += sum(r["c"] for r in rows)
        self.seen += sum(r["n"] for r in rows)
        acc = self.correct / self.seen if self.seen else 0.0
        self.reporter.update(done=self.done, accuracy=acc, message=message)


def evaluate_benchmark(gen: Any, bench: bm.Benchmark, items: list[bm.Item],
                       ev: EvaluateSpec, seed: int, progress: _Progress | None = None,
                       label: str = "", code_workers: int | None = None
                       ) -> list[dict[str, Any]]:
    """Greedy + sampled completions for `items`, scored; one row per question."""
    ks = usable_ks(ev.k, ev.samples)
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=ev.max_new_tokens,
                      seed=seed)
    sampled = Sampling(n=ev.samples, temperature=ev.temperature, top_p=ev.top_p,
                       max_new_tokens=ev.max_new_tokens, seed=seed)
    code_opts: dict[str, Any] = {"workers": code_workers} if bench.kind == "code" else {}
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        prompts = render_prompts(gen.tokenizer, chunk)
        # A different seed per chunk, so chunks do not share random streams.
        g_out = gen.generate(prompts, greedy)
        s_out = gen.generate(prompts, dataclasses.replace(sampled, seed=seed + start))
        part = []
        for item, g, s in zip(chunk, g_out, s_out, strict=True):
            part.append(_score_row(bench, item, g[0], s, ks, code_opts))
        rows += part
        if progress is not None:
            progress.advance(part, f"{label}{bench.name}: {start + len(chunk)}/{len(items)}")
    return rows


def _score_row(bench: bm.Benchmark, item: bm.Item, g: Completion, s: list[Completion],
               ks: list[int], code_opts: dict[str, Any]) -> dict[str, Any]:
    texts = [c.text for c in s]
    verdicts = bench.score(item, [g.text, *texts], **code_opts)
    g_ok, s_ok = verdicts[0], verdicts[1:]
    n, c = len(texts), sum(s_ok)
    ref = item.reference
    reference = ref.get("answer", ref.get("index", ref.get("entry_point")))
    return {
        "id": item.id, "n": n, "c": c, "greedy_correct": bool(g_ok),
        **{f"pass@{k}": round(pass_at_k(n, c, k), 6) for k in ks if k <= n},
        "reference": reference,
        "question": _cut(item.messages[-1]["content"]),
        "greedy": _cut(g.text),
        "completions": [{"text": _cut(t.text), "correct": bool(ok)}
                        for t, ok in list(zip(s, s_ok, strict=True))[:KEEP_COMPLETIONS]],
        "mean_tokens": round(sum(x.num_tokens for x in s) / n, 2) if n else 0.0,
    }


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def run(spec: PolyaRunSpec, arm: str, workdir: Path, reporter: Reporter) -> dict[str, str]:
    ev = spec.stages.evaluate
    workdir = Path(workdir)
    out_dir = stage_dir(workdir, arm, "evaluate")
    benches = bm.resolve(ev.benchmarks, ev.custom, base=workdir)
    items = {b.name: b.load(ev.limit) for b in benches}
    checkpoints = []
    for ckpt in ev.checkpoints:
        path = checkpoint_model(spec, arm, ckpt, workdir)
        if path is None:
            log.info("arm %s has no %s checkpoint; skipped", arm, ckpt)
            continue
        checkpoints.append((ckpt, path))
    if not checkpoints:
        raise FileNotFoundError(f"arm {arm}: none of the checkpoints {ev.checkpoints} exists")
    per_ckpt = sum(len(v) for v in items.values())
    progress = _Progress(reporter, per_ckpt * len(checkpoints))
    ks = usable_ks(ev.k, ev.samples)

    results: dict[str, dict[str, Any]] = {}
    files: list[str] = []
    for ckpt, model_path in checkpoints:
        results[ckpt] = {}
        gen = None
        try:
            for bench in benches:
                rel = Path("questions") / ckpt / f"{bench.name}.jsonl"
                part_path = out_dir / "parts" / ckpt / f"{bench.name}.json"
                fp = _fingerprint(ev, model_path, spec.seed, bench)
                summary = _load_part(part_path, fp, out_dir / rel)
                if summary is None:  # the same model and settings in another arm (base)
                    summary = _reuse_other_arm(workdir, arm, ckpt, bench.name, fp, out_dir, rel)
                if summary is None:
                    if gen is None:
                        gen = load_generator(ev.backend, spec.model, name=model_path,
                                             gpus=ev.resources.gpus, seed=spec.seed)
                    rows = evaluate_benchmark(gen, bench, items[bench.name], ev, spec.seed,
                                              progress, label=f"{ckpt}/")
                    summary = summarize(rows, ks, ev.samples)
                    atomic_write_text(out_dir / rel, _jsonl(rows))
                    atomic_write_json(part_path, {"fingerprint": fp, "summary": summary})
                else:
                    progress.done += summary["n"]
                    reporter.update(done=progress.done,
                                    message=f"{ckpt}/{bench.name}: reused finished results")
                results[ckpt][bench.name] = summary
                files.append(str(rel))
                for key, value in summary.items():
                    if key.startswith("pass@"):
                        reporter.eval_result(bench.name, ckpt, key.removeprefix("pass@"), value)
                reporter.eval_result(bench.name, ckpt, "greedy", summary["greedy"])
        finally:
            if gen is not None:
                gen.close()

    atomic_write_json(out_dir / "results.json", results)
    from .report import write_report

    write_report(workdir)
    write_manifest(out_dir, files=["results.json", *files],
                   outputs={"results": f"{arm}/evaluate/results.json",
                            "report": "report/report.md"})
    return {"results": f"{arm}/evaluate/results.json", "report": "report/report.md"}


def _reuse_other_arm(workdir: Path, arm: str, ckpt: str, bench: str, fingerprint: str,
                     out_dir: Path, rel: Path) -> dict[str, Any] | None:
    """Copy a finished (checkpoint, benchmark) of another arm with the same fingerprint: every
    arm shares the base model, so it is evaluated once."""
    for other in sorted(workdir.glob(f"*/evaluate/parts/{ckpt}/{bench}.json")):
        other_dir = other.parents[2]
        if other_dir == out_dir:
            continue
        summary = _load_part(other, fingerprint, other_dir / rel)
        if summary is not None:
            atomic_write_text(out_dir / rel, (other_dir / rel).read_text())
            atomic_write_json(out_dir / "parts" / ckpt / f"{bench}.json",
                              {"fingerprint": fingerprint, "summary": summary,
                               "copied_from": str(other_dir.parent.name)})
            log.info("arm %s: %s/%s reused from arm %s", arm, ckpt, bench, other_dir.parent.name)
            return summary
    return None


def _load_part(part_path: Path, fingerprint: str, rows_path: Path) -> dict[str, Any] | None:
    """A finished (checkpoint, benchmark) summary from an earlier attempt, if still valid."""
    try:
        body = json.loads(part_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if body.get("fingerprint") != fingerprint or not rows_path.is_file():
        return None
    return body.get("summary")
