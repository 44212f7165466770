"""Stage 4: pass@k of every checkpoint of an arm on every benchmark, then the report.

For each checkpoint of the arm that exists (base, midtrain, rl; the vanilla arm has no
midtrain) and each benchmark (built-in names from the spec plus custom files), the first
``limit`` questions get ``samples`` sampled completions (temperature/topP) and one greedy
completion. Scores give per question ``c`` correct out of ``n``; pass@k is the mean of the
unbiased estimator over questions for every requested k <= samples. A completion cut off at
``maxNewTokens`` (finish reason ``length``) counts as wrong, and the rate is recorded.

Throughput: each benchmark's prompts go to the engine in one call per sampling setting
(greedy, then sampled), as token ids rendered once (``prompts.message_ids``). Scoring runs in
a background thread while the engine generates the next benchmark. vLLM's ``max_model_len``
is the longest prompt plus ``maxNewTokens``, not the model's context length.

Reproducibility: finished (checkpoint, benchmark) pairs are cached under a fingerprint of the
model's *content* (its manifest's file hashes; hub id and revision for hub models) and every
setting, so a copy of a model at another path reuses its numbers and a changed model does
not. Every summary carries its ``settings`` (preset, template, extraction, temperature,
top-p, max tokens, samples, estimator, revision).

Outputs in ``Workspace.stage(arm, "evaluate")``:

* ``results.json``: ``{checkpoint: {benchmark: {"pass@1": .., "pass@8": .., "greedy": ..,
  "n": questions, "samples": n, "kind": .., "truncated": .., "extraction": {..},
  "settings": {..}, "mean_tokens": ..}}}``
* ``questions/<checkpoint>/<benchmark>.jsonl``: one row per question (id, n, c, greedy
  correct, pass@k, the greedy and the first few sampled completions, truncated)
* ``parts/<checkpoint>/<benchmark>.json``: the finished (checkpoint, benchmark) pairs, so a
  restarted stage skips what is done (keyed by the fingerprint above)

Then the cross-arm report (``report.write_report``) is rebuilt and the manifest written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from polya_trainer.backends import Completion, Sampling, load_generator
from polya_trainer.backends.models import checkpoint_model
from polya_trainer.data import benchmarks as bm
from polya_trainer.data.prompts import CHAT_TEMPLATE_DATE
from polya_trainer.runtime import shards as jobshards
from polya_trainer.runtime.artifacts import (
    atomic_write_json,
    atomic_write_text,
    read_manifest,
    write_manifest,
)
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import EvaluateSpec, PolyaRunSpec
from polya_trainer.verify.passk import pass_at_k, usable_ks

log = logging.getLogger(__name__)

BLOCK = 16  # items per unit of sharded work; also the hf batch size, so slices align
KEEP_COMPLETIONS = 2  # sampled completions stored per question
KEEP_CHARS = 600  # characters kept per stored completion
SCORING_VERSION = 2  # 2: cut-off completions wrong, strict answers, token-id prompts
ESTIMATOR = "unbiased pass@k (Chen et al. 2021), mean over questions"

# Sampling-only presets: they set temperature, top-p and samples, never the prompt or the
# answer extraction, so they carry no harness's name (docs/evaluation.md says what they are not).
PRESETS: dict[str, dict[str, Any]] = {
    # The sampling DeepSeek-R1's paper evaluates with: T=0.6, top-p 0.95, 64 samples.
    "r1-sampling": {"temperature": 0.6, "top_p": 0.95, "samples": 64},
    # Greedy decoding, one answer (pass@1), as Qwen2.5-Math's and lighteval's math tasks.
    "greedy": {"temperature": 0.0, "top_p": 1.0, "samples": 1},
}


def effective(ev: EvaluateSpec) -> EvaluateSpec:
    """The spec with its preset applied (k values beyond the samples are dropped later)."""
    update = PRESETS.get(ev.preset, {})
    return ev.model_copy(update=update) if update else ev


def model_hash(spec: PolyaRunSpec, path: str) -> str:
    """Content key of a model: the sha256 of its manifest's file hashes (our checkpoints),
    of its files (a local directory without one), or hub id@revision (hub models)."""
    p = Path(path)
    if p.is_dir():
        manifest = read_manifest(p, verify=False)
        if manifest is not None:
            files = {k: v["sha256"] for k, v in manifest.get("files", {}).items()}
        else:
            from polya_trainer.runtime.artifacts import sha256_file

            files = {str(f.relative_to(p)): sha256_file(f) for f in sorted(p.rglob("*"))
                     if f.is_file() and not any(x.startswith(".") for x in f.relative_to(p).parts)}
        body = json.dumps(files, sort_keys=True)
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    rev = spec.model.revision if path == spec.model.name else None
    return f"hub:{path}@{rev or 'unpinned'}"


def settings(ev: EvaluateSpec, bench: bm.Benchmark, spec: PolyaRunSpec,
             model_key: str) -> dict[str, Any]:
    """Everything a number depends on, stored with it."""
    fallback = bool(spec.answers.last_number_fallback) if bench.kind == "math" else False
    extraction = bm.EXTRACTION[bench.kind] + ("; last number if none" if fallback else "")
    return {
        "preset": ev.preset, "template": f"model chat template, date_string={CHAT_TEMPLATE_DATE}",
        "prompt": bench.kind, "extraction": extraction, "temperature": ev.temperature,
        "top_p": ev.top_p, "max_new_tokens": ev.max_new_tokens, "samples": ev.samples,
        "estimator": ESTIMATOR, "truncated": "scored wrong", "backend": ev.backend,
        "seed": spec.seed, "revision": bench.source.revision, "model": model_key,
    }


def _fingerprint(ev: EvaluateSpec, model_key: str, seed: int, bench: bm.Benchmark,
                 fallback: bool = False) -> str:
    body = {"model": model_key, "seed": seed, "samples": ev.samples, "k": sorted(ev.k),
            "temperature": ev.temperature, "top_p": ev.top_p, "limit": ev.limit,
            "max_new_tokens": ev.max_new_tokens, "benchmark": bench.name,
            "source": bench.source.hub_id, "revision": bench.source.revision,
            "local": str(bench.local_file() or ""), "preset": ev.preset,
            "fallback": fallback, "date": CHAT_TEMPLATE_DATE, "scoring": SCORING_VERSION}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


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
    drawn = sum(r["n"] for r in rows)
    out["truncated"] = round(sum(r.get("truncated", 0) for r in rows) / drawn, 6) if drawn \
        else 0.0
    out["greedy_truncated"] = round(sum(bool(r.get("greedy_truncated")) for r in rows)
                                    / count, 6) if count else 0.0
    extraction: dict[str, int] = {}
    for r in rows:
        for m, c in r.get("extraction", {}).items():
            extraction[m] = extraction.get(m, 0) + c
    out["extraction"] = extraction
    return out


class _Progress:
    """Questions done across checkpoints and the running (sampled) accuracy."""

    def __init__(self, reporter: Reporter, total: int):
        self.reporter, self.done, self.correct, self.seen = reporter, 0, 0, 0
        self.lock = threading.Lock()
        reporter.start(total=total, unit="questions")

    def advance(self, rows: list[dict[str, Any]], message: str) -> None:
        with self.lock:
            self.done += len(rows)
            self.correct += sum(r["c"] for r in rows)
            self.seen += sum(r["n"] for r in rows)
            acc = self.correct / self.seen if self.seen else 0.0
            self.reporter.update(done=self.done, accuracy=acc, message=message)


def samplings(ev: EvaluateSpec, seed: int, offset: int = 0) -> tuple[Sampling, Sampling]:
    """Greedy and sampled settings; `offset` is the first item's position in its benchmark."""
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=ev.max_new_tokens,
                      seed=seed, offset=offset)
    sampled = Sampling(n=ev.samples, temperature=ev.temperature, top_p=ev.top_p,
                       max_new_tokens=ev.max_new_tokens, seed=seed, offset=offset)
    return greedy, sampled


def prompt_ids(tokenizer: Any, items: list[bm.Item]) -> list[list[int]]:
    """Token ids of each item's chat prompt, as TRL's rollouts would make them."""
    from polya_trainer.data.prompts import message_ids

    return [message_ids(tokenizer, item.messages) for item in items]


def generate_benchmark(gen: Any, items: list[bm.Item], ev: EvaluateSpec, seed: int,
                       prompts: list[Any] | None = None, offset: int = 0
                       ) -> tuple[list[list[Completion]], list[list[Completion]]]:
    """Greedy and sampled completions of all `items`: one engine call each."""
    greedy, sampled = samplings(ev, seed, offset)
    if prompts is None:
        prompts = prompt_ids(gen.tokenizer, items)
    g_out = gen.generate(prompts, greedy)
    s_out = g_out if sampled.greedy and sampled.n == 1 else gen.generate(prompts, sampled)
    return g_out, s_out


def score_benchmark(bench: bm.Benchmark, items: list[bm.Item], g_out: list[list[Completion]],
                    s_out: list[list[Completion]], ev: EvaluateSpec, *,
                    allow_fallback: bool = False, progress: _Progress | None = None,
                    label: str = "", code_workers: int | None = None) -> list[dict[str, Any]]:
    """One scored row per question."""
    ks = usable_ks(ev.k, ev.samples)
    opts: dict[str, Any] = {"workers": code_workers} if bench.kind == "code" else {}
    if bench.kind == "math":
        opts["allow_fallback"] = allow_fallback
    rows = [_score_row(bench, item, g[0], s, ks, opts)
            for item, g, s in zip(items, g_out, s_out, strict=True)]
    if progress is not None:
        progress.advance(rows, f"{label}{bench.name}: {len(items)}/{len(items)}")
    return rows


def evaluate_benchmark(gen: Any, bench: bm.Benchmark, items: list[bm.Item],
                       ev: EvaluateSpec, seed: int, progress: _Progress | None = None,
                       label: str = "", code_workers: int | None = None,
                       allow_fallback: bool = False) -> list[dict[str, Any]]:
    """Greedy + sampled completions for `items`, scored; one row per question."""
    g_out, s_out = generate_benchmark(gen, items, ev, seed)
    return score_benchmark(bench, items, g_out, s_out, ev, allow_fallback=allow_fallback,
                           progress=progress, label=label, code_workers=code_workers)


def _score_row(bench: bm.Benchmark, item: bm.Item, g: Completion, s: list[Completion],
               ks: list[int], opts: dict[str, Any]) -> dict[str, Any]:
    texts = [c.text for c in s]
    found = bench.verdicts(item, [g.text, *texts], **opts)
    # A completion cut at the token limit is wrong whatever it contains.
    oks = [ok and not c.truncated for (ok, _), c in zip(found, [g, *s], strict=True)]
    g_ok, s_ok = oks[0], oks[1:]
    n, c = len(texts), sum(s_ok)
    extraction: dict[str, int] = {}
    for _, method in found[1:]:
        extraction[method] = extraction.get(method, 0) + 1
    ref = item.reference
    reference = ref.get("answer", ref.get("index", ref.get("entry_point")))
    return {
        "id": item.id, "n": n, "c": c, "greedy_correct": bool(g_ok),
        **{f"pass@{k}": round(pass_at_k(n, c, k), 6) for k in ks if k <= n},
        "reference": reference,
        "question": _cut(item.messages[-1]["content"]),
        "greedy": _cut(g.text), "greedy_truncated": g.truncated,
        "truncated": sum(x.truncated for x in s), "extraction": extraction,
        "completions": [{"text": _cut(t.text), "correct": bool(ok), "truncated": t.truncated}
                        for t, ok in list(zip(s, s_ok, strict=True))[:KEEP_COMPLETIONS]],
        "mean_tokens": round(sum(x.num_tokens for x in s) / n, 2) if n else 0.0,
    }


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def run(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Reporter) -> dict[str, str]:
    ev = effective(spec.stages.evaluate)
    ws = Workspace.of(workdir)
    out_dir = ws.stage(arm, "evaluate")
    outputs = {"results": ws.relative(out_dir / "results.json"),
               "report": ws.relative(ws.report / "report.md")}
    benches = bm.resolve(ev.benchmarks, ev.custom, base=ws.root, revisions=ev.revisions)
    items = {b.name: b.load(ev.limit) for b in benches}
    checkpoints = []
    for ckpt in ev.checkpoints:
        path = checkpoint_model(spec, arm, ckpt, ws)
        if path is None:
            log.info("arm %s has no %s checkpoint; skipped", arm, ckpt)
            continue
        checkpoints.append((ckpt, path))
    if not checkpoints:
        raise FileNotFoundError(f"arm {arm}: none of the checkpoints {ev.checkpoints} exists")
    # Sharded (stages.evaluate.shards > 1 with JOB_COMPLETION_INDEX): this index's items
    # of each benchmark, in blocks of BLOCK (runtime/shards.py); else every item.
    job_index = jobshards.current_index(ev.shards)
    slices = {b.name: range(len(items[b.name])) for b in benches}
    if job_index is not None:
        mine = jobshards.assign([len(items[b.name]) for b in benches], BLOCK, ev.shards,
                                job_index)
        slices = {b.name: mine.get(g, range(0)) for g, b in enumerate(benches)}
    progress = _Progress(reporter, sum(len(r) for r in slices.values()) * len(checkpoints))
    fallback = bool(spec.answers.last_number_fallback)

    plan: list[tuple[str, str, str, dict[str, dict[str, Any]], list[bm.Benchmark]]] = []
    for ckpt, model_path in checkpoints:
        key = model_hash(spec, model_path)
        done: dict[str, dict[str, Any]] = {}
        todo: list[bm.Benchmark] = []
        for bench in benches:
            summary = _finished(ws, arm, ckpt, bench, ev, key, spec.seed, fallback)
            if summary is None:
                todo.append(bench)
                continue
            progress.done += len(slices[bench.name])
            reporter.update(done=progress.done,
                            message=f"{ckpt}/{bench.name}: reused finished results")
            done[bench.name] = summary
        plan.append((ckpt, model_path, key, done, todo))
    if job_index is None:
        for ckpt, model_path, key, done, todo in plan:
            if todo:
                done.update(_evaluate_checkpoint(spec, ev, ws, arm, ckpt, model_path, key, todo,
                                                 items, progress, fallback))
    else:
        work = _work_key(ev, spec.seed, fallback, plan, benches, items)
        files = _evaluate_part(spec, ev, plan, items, slices, out_dir, progress, fallback,
                               job_index)
        jobshards.write_index_manifest(out_dir, job_index, ev.shards, work, files)
        if not jobshards.claim_merge(out_dir, job_index, ev.shards, work):
            reporter.update(message=f"index {job_index}/{ev.shards} done; the last index "
                                    "merges")
            return outputs
        for ckpt, _, key, done, todo in plan:
            done.update(_merge_checkpoint(spec, ev, ws, arm, ckpt, key, todo, benches, items,
                                          fallback))

    results: dict[str, dict[str, Any]] = {}
    files = []
    for ckpt, _, _, done, _ in plan:
        results[ckpt] = {}
        for bench in benches:
            summary = done[bench.name]
            results[ckpt][bench.name] = summary
            files.append(ws.eval_questions(arm, ckpt, bench.name).relative_to(out_dir))
            for name, value in summary.items():
                if name.startswith("pass@"):
                    reporter.eval_result(bench.name, ckpt, name.removeprefix("pass@"), value)
            reporter.eval_result(bench.name, ckpt, "greedy", summary["greedy"])

    atomic_write_json(out_dir / "results.json", results)
    from polya_trainer.report import write_report

    write_report(ws.root)
    write_manifest(out_dir, files=["results.json", *files], outputs=outputs)
    return outputs


def _finished(ws: Workspace, arm: str, ckpt: str, bench: bm.Benchmark, ev: EvaluateSpec,
              key: str, seed: int, fallback: bool) -> dict[str, Any] | None:
    """The summary of a finished (checkpoint, benchmark): this arm's, or another arm's with
    the same fingerprint (copied here), else None."""
    fp = _fingerprint(ev, key, seed, bench, fallback and bench.kind == "math")
    summary = _load_part(ws.eval_part(arm, ckpt, bench.name), fp,
                         ws.eval_questions(arm, ckpt, bench.name))
    if summary is None:  # the same model content and settings in another arm (base)
        summary = _reuse_other_arm(ws, arm, ckpt, bench.name, fp)
    return summary


def _write_benchmark(spec: PolyaRunSpec, ev: EvaluateSpec, ws: Workspace, arm: str, ckpt: str,
                     key: str, bench: bm.Benchmark, rows: list[dict[str, Any]],
                     fallback: bool) -> dict[str, Any]:
    """Rows and part file of one finished (checkpoint, benchmark); returns its summary."""
    summary = {**summarize(rows, usable_ks(ev.k, ev.samples), ev.samples), "kind": bench.kind,
               "settings": settings(ev, bench, spec, key)}
    fp = _fingerprint(ev, key, spec.seed, bench, fallback and bench.kind == "math")
    atomic_write_text(ws.eval_questions(arm, ckpt, bench.name), _jsonl(rows))
    atomic_write_json(ws.eval_part(arm, ckpt, bench.name), {"fingerprint": fp, "summary": summary})
    return summary


def _work_key(ev: EvaluateSpec, seed: int, fallback: bool, plan: list[Any],
              benches: list[bm.Benchmark], items: dict[str, list[bm.Item]]) -> str:
    """What the shards of this stage compute: every (checkpoint, benchmark) fingerprint, the
    benchmark sizes and the block size."""
    body = [[ckpt, b.name, len(items[b.name]),
             _fingerprint(ev, key, seed, b, fallback and b.kind == "math")]
            for ckpt, _, key, _, _ in plan for b in benches]
    return hashlib.sha256(json.dumps([BLOCK, body]).encode()).hexdigest()[:16]


def _part_paths(index: int, ckpt: str, bench: str) -> tuple[str, str]:
    base = f"{jobshards.INDEX_DIR}/{index}/{ckpt}/{bench}"
    return f"{base}.jsonl", f"{base}.json"


def _evaluate_part(spec: PolyaRunSpec, ev: EvaluateSpec, plan: list[Any],
                   items: dict[str, list[bm.Item]], slices: dict[str, range], out_dir: Path,
                   progress: _Progress, fallback: bool, index: int) -> list[str]:
    """One index's items of every unfinished (checkpoint, benchmark): rows under
    ``indices/<index>/<checkpoint>/``, each with a sidecar; a retried index skips the
    benchmarks whose sidecar matches. Returns the files written (relative to out_dir)."""
    from polya_trainer.backends.models import load_tokenizer

    files: list[str] = []
    for ckpt, model_path, key, _, todo in plan:
        pending: list[bm.Benchmark] = []
        for bench in todo:
            span = slices[bench.name]
            if not span:
                continue
            rows_rel, side_rel = _part_paths(index, ckpt, bench.name)
            fp = _fingerprint(ev, key, spec.seed, bench, fallback and bench.kind == "math")
            want = {"fingerprint": fp, "start": span.start, "stop": span.stop}
            try:
                side = json.loads((out_dir / side_rel).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                side = None
            if side == want and (out_dir / rows_rel).is_file():
                files += [rows_rel, side_rel]
                progress.done += len(span)
                continue
            pending.append(bench)
        if not pending:
            continue
        tokenizer = load_tokenizer(spec.model, model_path)
        part = {b.name: items[b.name][slices[b.name].start:slices[b.name].stop] for b in pending}
        prompts = {name: prompt_ids(tokenizer, its) for name, its in part.items()}
        gen = _load_engine(spec, ev, model_path, prompts)
        try:
            scored = run_benchmarks(gen, pending, part, prompts, ev, spec.seed,
                                    allow_fallback=fallback, progress=progress,
                                    label=f"{ckpt}/",
                                    offsets={b.name: slices[b.name].start for b in pending})
        finally:
            gen.close()
        for bench in pending:
            rows_rel, side_rel = _part_paths(index, ckpt, bench.name)
            span = slices[bench.name]
            fp = _fingerprint(ev, key, spec.seed, bench, fallback and bench.kind == "math")
            atomic_write_text(out_dir / rows_rel, _jsonl(scored[bench.name]))
            atomic_write_json(out_dir / side_rel,
                              {"fingerprint": fp, "start": span.start, "stop": span.stop})
            files += [rows_rel, side_rel]
    return files


def _merge_checkpoint(spec: PolyaRunSpec, ev: EvaluateSpec, ws: Workspace, arm: str,
                      ckpt: str, key: str, todo: list[bm.Benchmark],
                      benches: list[bm.Benchmark], items: dict[str, list[bm.Item]],
                      fallback: bool) -> dict[str, dict[str, Any]]:
    """Each unfinished benchmark's rows from every index, in item order, written as a 1-shard
    run writes them (a benchmark another arm finished meanwhile is taken from there)."""
    sizes = [len(items[b.name]) for b in benches]
    out: dict[str, dict[str, Any]] = {}
    for bench in todo:
        g = benches.index(bench)
        summary = _finished(ws, arm, ckpt, bench, ev, key, spec.seed, fallback)
        if summary is None:
            rows: list[dict[str, Any]] = []
            for index in range(ev.shards):
                if g not in jobshards.assign(sizes, BLOCK, ev.shards, index):
                    continue
                part = ws.stage(arm, "evaluate") / _part_paths(index, ckpt, bench.name)[0]
                text = part.read_text()
                rows += [json.loads(line) for line in text.splitlines()]
            if len(rows) != len(items[bench.name]):
                raise RuntimeError(f"{ckpt}/{bench.name}: the shards hold {len(rows)} of "
                                   f"{len(items[bench.name])} rows")
            summary = _write_benchmark(spec, ev, ws, arm, ckpt, key, bench, rows, fallback)
        out[bench.name] = summary
    return out


def run_benchmarks(gen: Any, benches: list[bm.Benchmark], items: dict[str, list[bm.Item]],
                   prompts: dict[str, list[Any]], ev: EvaluateSpec, seed: int, *,
                   allow_fallback: bool = False, progress: _Progress | None = None,
                   label: str = "", offsets: dict[str, int] | None = None
                   ) -> dict[str, list[dict[str, Any]]]:
    """Generate each benchmark (one engine call per sampling setting) and score it in a
    background thread while the engine generates the next one. `offsets`: position of each
    benchmark's first item when `items` holds a slice (a sharded part)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") as pool:
        pending: list[tuple[str, Future[list[dict[str, Any]]]]] = []
        for bench in benches:
            g_out, s_out = generate_benchmark(gen, items[bench.name], ev, seed,
                                              prompts[bench.name],
                                              (offsets or {}).get(bench.name, 0))
            pending.append((bench.name, pool.submit(
                score_benchmark, bench, items[bench.name], g_out, s_out, ev,
                allow_fallback=allow_fallback, progress=progress, label=label)))
        return {name: future.result() for name, future in pending}


def _load_engine(spec: PolyaRunSpec, ev: EvaluateSpec, model_path: str,
                 prompts: dict[str, list[Any]]) -> Any:
    """The engine for one checkpoint; vLLM's context is the longest prompt plus the answer,
    and hf batches BLOCK prompts (so sharded slices start on batch boundaries)."""
    longest = max((len(p) for ps in prompts.values() for p in ps), default=0)
    kwargs: dict[str, Any] = {"seed": spec.seed}
    if ev.backend == "vllm":
        kwargs["max_model_len"] = longest + ev.max_new_tokens
    else:
        kwargs["batch_size"] = BLOCK
    return load_generator(ev.backend, spec.model, name=model_path, gpus=ev.resources.gpus,
                          **kwargs)


def _evaluate_checkpoint(spec: PolyaRunSpec, ev: EvaluateSpec, ws: Workspace, arm: str,
                         ckpt: str, model_path: str, key: str, todo: list[bm.Benchmark],
                         items: dict[str, list[bm.Item]], progress: _Progress,
                         fallback: bool) -> dict[str, dict[str, Any]]:
    """Generate every unfinished benchmark of one checkpoint; score each in the background
    while the engine generates the next; write rows and part files."""
    from polya_trainer.backends.models import load_tokenizer

    tokenizer = load_tokenizer(spec.model, model_path)
    prompts = {b.name: prompt_ids(tokenizer, items[b.name]) for b in todo}
    gen = _load_engine(spec, ev, model_path, prompts)
    try:
        scored = run_benchmarks(gen, todo, items, prompts, ev, spec.seed,
                                allow_fallback=fallback, progress=progress, label=f"{ckpt}/")
    finally:
        gen.close()
    return {bench.name: _write_benchmark(spec, ev, ws, arm, ckpt, key, bench, scored[bench.name],
                                         fallback) for bench in todo}


def _reuse_other_arm(ws: Workspace, arm: str, ckpt: str, bench: str,
                     fingerprint: str) -> dict[str, Any] | None:
    """Copy a finished (checkpoint, benchmark) of another arm with the same fingerprint: every
    arm shares the base model, so it is evaluated once."""
    for part in sorted(ws.root.glob(ws.relative(ws.eval_part("*", ckpt, bench)))):  # any arm
        other = part.relative_to(ws.root).parts[0]
        if other == arm:
            continue
        summary = _load_part(part, fingerprint, ws.eval_questions(other, ckpt, bench))
        if summary is not None:
            atomic_write_text(ws.eval_questions(arm, ckpt, bench),
                              ws.eval_questions(other, ckpt, bench).read_text())
            atomic_write_json(ws.eval_part(arm, ckpt, bench),
                              {"fingerprint": fingerprint, "summary": summary,
                               "copied_from": other})
            log.info("arm %s: %s/%s reused from arm %s", arm, ckpt, bench, other)
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
