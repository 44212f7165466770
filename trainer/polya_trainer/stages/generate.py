"""Stage 1: self-generated training data (Pólya-guided for the polya arm, STaR for star).

For every (question, heuristic) pair the base model samples k candidates; correct ones (by
`answers.check_many_verdicts`: an explicit final answer, the last-number fallback only when
``spec.answers.lastNumberFallback`` is set; a candidate cut off by the length limit is never
correct) are scored for adherence and the best is kept. The card records how answers were
extracted (``answer_extraction``) and the truncation rate. Pairs with no correct
candidate are resampled in the next round, up to `rounds`; questions with no accepted pair
after that are dropped and counted. The star arm uses the plain question (no heuristic) and
keeps one correct answer per question.

Output in ``Workspace.stage(arm, "generate")``:

* ``data/shard-NNNNN.parquet``: the accepted samples of `shardSize` questions each, written
  atomically; loadable with ``load_dataset("parquet", data_files=...)``. A shard with no
  accepted sample has no file (`datasets` cannot read an empty parquet file).
* ``shards/shard-NNNNN.json``: a sidecar written after its shard (counts, tokens, sha256 of
  the parquet and a fingerprint of the settings). A rerun skips shards whose sidecar matches,
  so a kill loses at most the shard in flight.
* ``card.json``: provenance and figures; then ``MANIFEST.json``.

Seeds are derived from (spec.seed, shard, round), so a resumed run writes the same data as an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polya_trainer.backends import Sampling, load_generator
from polya_trainer.backends.scorers import ScoreRequest, best_index, build_scorer
from polya_trainer.data import contamination, datastats
from polya_trainer.data.loading import load_qa
from polya_trainer.data.prompts import build, dumps, instruction_of
from polya_trainer.runtime import hold
from polya_trainer.runtime import shards as jobshards
from polya_trainer.runtime.artifacts import (
    atomic_path,
    atomic_write_json,
    sha256_file,
    write_manifest,
)
from polya_trainer.runtime.progress import Reporter
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import PolyaRunSpec
from polya_trainer.verify import answers

NO_HEURISTIC = "none"
COLUMNS: list[tuple[str, str]] = [
    ("question_id", "string"), ("question", "string"), ("answer", "string"),
    ("heuristic", "string"), ("heuristic_name", "string"), ("prompt_messages", "string"),
    ("completion", "string"), ("score", "float64"), ("round", "int32"),
    ("candidates", "int32"), ("correct_candidates", "int32"), ("num_tokens", "int32"),
    ("shard", "int32"),
]


def schema() -> Any:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])


def derive_seed(seed: int, *parts: int) -> int:
    """A 31-bit seed for (spec seed, shard, round, ...), stable across processes."""
    key = ":".join(str(p) for p in ("polya-generate", seed, *parts))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def fingerprint(spec: PolyaRunSpec, arm: str, heuristic_ids: list[str]) -> str:
    """Hash of everything that shapes the data; a shard written under other settings is redone."""
    g = spec.stages.generate
    body = {
        "arm": arm, "model": spec.model.dump(), "dataset": spec.dataset.dump(),
        "heuristics": heuristic_ids, "seed": spec.seed,
        "generate": g.model_dump(mode="json", exclude={"resources", "backoff_limit",
                                                       "active_deadline_seconds", "shards"}),
    }
    if spec.answers.last_number_fallback:  # only when set, so older fingerprints stay valid
        body["answers"] = spec.answers.dump()
    # Not data-shaping (diversityEmbeddingModel) or off by default (dedup): older
    # fingerprints stay valid.
    body["generate"].pop("diversity_embedding_model", None)
    if body["generate"].get("dedup", "off") == "off":
        body["generate"].pop("dedup", None)
    if spec.contamination.action == "drop":  # it changes the questions and prompts
        body["contamination"] = spec.contamination.dump()
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Pair:
    """One (question, heuristic) pair of a shard."""

    question: dict[str, str]
    heuristic: Any | None
    messages: list[dict[str, str]]
    prompt: str = ""
    candidates: int = 0
    row: dict[str, Any] | None = None

    @property
    def heuristic_id(self) -> str:
        return self.heuristic.id if self.heuristic is not None else NO_HEURISTIC


@dataclass
class ShardResult:
    rows: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)


def process_shard(index: int, questions: list[dict[str, str]], heuristics: list[Any | None],
                  generator: Any, scorer: Any, spec: PolyaRunSpec,
                  on_round: Any = None) -> ShardResult:
    """Sample, check, score and select for one shard of questions."""
    g = spec.stages.generate
    pairs = []
    for q in questions:
        for h in heuristics:
            messages, prompt = build(generator.tokenizer, h, q["question"],
                                     n_exemplars=g.exemplars)
            pairs.append(Pair(q, h, messages, prompt))
    per_round: dict[str, dict[str, int]] = {}
    tokens = candidates_total = correct_total = 0
    extraction: dict[str, int] = dict.fromkeys(answers.METHODS, 0)
    truncated = 0
    # Per-heuristic candidate counters (datastats): candidates, truncated, extraction method.
    h_cand: dict[str, dict[str, Any]] = {}
    gen_seconds = score_seconds = 0.0
    pending = list(pairs)
    for rnd in range(1, g.rounds + 1):
        if not pending:
            break
        sampling = Sampling(n=g.samples_per_heuristic, temperature=g.temperature,
                            top_p=g.top_p, max_new_tokens=g.max_new_tokens,
                            seed=derive_seed(spec.seed, index, rnd))
        t0 = time.perf_counter()
        outs = generator.generate([p.prompt for p in pending], sampling)
        gen_seconds += time.perf_counter() - t0
        flat = [(p, c) for p, group in zip(pending, outs, strict=True) for c in group]
        tokens += sum(c.num_tokens for _, c in flat)
        candidates_total += len(flat)
        verdicts = answers.check_many_verdicts(
            [c.text for _, c in flat], [p.question["answer"] for p, _ in flat],
            allow_fallback=spec.answers.last_number_fallback)
        for m, n in answers.extraction_counts(verdicts).items():
            extraction[m] += n
        # A completion cut off by the length limit is wrong and never a training target.
        ok = [v.correct and not c.truncated for v, (_, c) in zip(verdicts, flat, strict=True)]
        truncated += sum(c.truncated for _, c in flat)
        for v, (p, c) in zip(verdicts, flat, strict=True):
            hc = h_cand.setdefault(p.heuristic_id, {"candidates": 0, "truncated": 0,
                                                    "extraction": {}})
            hc["candidates"] += 1
            hc["truncated"] += bool(c.truncated)
            hc["extraction"][v.method] = hc["extraction"].get(v.method, 0) + 1
        correct: dict[int, list[Any]] = defaultdict(list)
        for (p, c), good in zip(flat, ok, strict=True):
            if good:
                correct[id(p)].append(c)
        # Score every correct candidate of the round in one batch.
        requests, owners = [], []
        for p, group in zip(pending, outs, strict=True):
            p.candidates += len(group)
            for c in correct.get(id(p), []):
                requests.append(ScoreRequest(instruction_of(p.heuristic), p.question["question"],
                                             c.text))
                owners.append(p)
        t0 = time.perf_counter()
        scores = scorer.score(requests) if requests else []
        score_seconds += time.perf_counter() - t0
        by_pair: dict[int, list[float]] = defaultdict(list)
        for p, s in zip(owners, scores, strict=True):
            by_pair[id(p)].append(s)
        still = []
        for p in pending:
            good = correct.get(id(p), [])
            if not good:
                still.append(p)
                continue
            best = best_index(by_pair[id(p)])
            correct_total += len(good)
            p.row = {
                "question_id": p.question["id"], "question": p.question["question"],
                "answer": p.question["answer"], "heuristic": p.heuristic_id,
                "heuristic_name": p.heuristic.name if p.heuristic is not None else NO_HEURISTIC,
                "prompt_messages": dumps(p.messages), "completion": good[best].text,
                "score": float(by_pair[id(p)][best]), "round": rnd,
                "candidates": p.candidates, "correct_candidates": len(good),
                "num_tokens": good[best].num_tokens, "shard": index,
            }
        per_round[str(rnd)] = {"attempted": len(pending), "accepted": len(pending) - len(still)}
        pending = still
        if on_round:
            on_round(index, rnd, per_round[str(rnd)])
    rows = [p.row for p in pairs if p.row is not None]
    per_heuristic: dict[str, dict[str, Any]] = {}
    for p in pairs:
        h = per_heuristic.setdefault(p.heuristic_id, {"pairs": 0, "accepted": 0})
        h["pairs"] += 1
        h["accepted"] += p.row is not None
    # Duplicate solutions within a question: always counted, removed when spec says so.
    rows, dups = datastats.dedupe_rows(rows, g.dedup)
    for hid, h in per_heuristic.items():
        h.update(h_cand.get(hid, {}), duplicates=dups.get(hid, {"exact": 0, "near": 0,
                                                                "removed": 0}))
    covered = {r["question_id"] for r in rows}
    stats = {
        "shard": index, "questions": len(questions), "pairs": len(pairs), "accepted": len(rows),
        "dropped_pairs": len(pairs) - len(rows),
        "dropped_questions": sum(q["id"] not in covered for q in questions),
        "dropped_question_ids": [q["id"] for q in questions if q["id"] not in covered],
        "per_heuristic": per_heuristic, "per_round": per_round, "candidates": candidates_total,
        "correct_candidates": correct_total, "tokens": tokens, "extraction": extraction,
        "truncated": truncated,
        "generation_seconds": round(gen_seconds, 4), "scoring_seconds": round(score_seconds, 4),
    }
    return ShardResult(rows, stats)


def write_shard(out: Path, index: int, result: ShardResult, fp: str) -> dict[str, Any]:
    """The parquet shard (atomic), then its sidecar (atomic): the sidecar marks completion."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rel: str | None = f"data/{shard_name(index)}.parquet"
    digest = None
    if result.rows:
        table = pa.Table.from_pylist(result.rows, schema=schema())
        with atomic_path(out / rel) as tmp:
            pq.write_table(table, tmp)
        digest = sha256_file(out / rel)
    else:
        # `datasets` cannot read a parquet file with no rows: an empty shard has no file.
        (out / rel).unlink(missing_ok=True)
        rel = None
    side = {**result.stats, "file": rel, "rows": len(result.rows), "sha256": digest,
            "fingerprint": fp}
    atomic_write_json(out / "shards" / f"{shard_name(index)}.json", side)
    return side


def finished_shard(out: Path, index: int, fp: str) -> dict[str, Any] | None:
    """The sidecar of a shard already written under the same settings, else None."""
    try:
        side = json.loads((out / "shards" / f"{shard_name(index)}.json").read_text())
        if side.get("fingerprint") != fp:
            return None
        if side["file"] is not None and sha256_file(out / side["file"]) != side["sha256"]:
            return None
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None
    return side


def _clean(out: Path, count: int) -> None:
    """Drop temporaries of a killed run and shards beyond the current shard count."""
    for sub, suffix in (("data", ".parquet"), ("shards", ".json")):
        folder = out / sub
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            stale = p.name.startswith(".")
            if p.name.startswith("shard-") and p.name.endswith(suffix):
                try:
                    stale = int(p.name[6:-len(suffix)]) >= count
                except ValueError:
                    stale = True
            if stale and p.is_file():
                p.unlink(missing_ok=True)


def _rate(accepted: int, total: int) -> float:
    return round(accepted / total, 6) if total else 0.0


def summarize(sides: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and rates over shard sidecars."""
    tot: dict[str, Any] = defaultdict(float)
    per_h: dict[str, dict[str, int]] = {}
    per_r: dict[str, dict[str, int]] = {}
    for s in sides:
        for key in ("questions", "pairs", "accepted", "dropped_pairs", "dropped_questions",
                    "candidates", "correct_candidates", "tokens", "generation_seconds",
                    "scoring_seconds"):
            tot[key] += s[key]
        for hid, v in s["per_heuristic"].items():
            acc = per_h.setdefault(hid, {"pairs": 0, "accepted": 0})
            acc["pairs"] += v["pairs"]
            acc["accepted"] += v["accepted"]
        for rnd, v in s["per_round"].items():
            acc = per_r.setdefault(rnd, {"attempted": 0, "accepted": 0})
            acc["attempted"] += v["attempted"]
            acc["accepted"] += v["accepted"]
    extraction = {m: sum(int(s.get("extraction", {}).get(m, 0)) for s in sides)
                  for m in answers.METHODS}
    truncated = sum(int(s.get("truncated", 0)) for s in sides)
    counts = {k: int(tot[k]) for k in ("questions", "pairs", "accepted", "dropped_pairs",
                                        "dropped_questions", "candidates", "correct_candidates",
                                        "tokens")}
    gen_s = float(tot["generation_seconds"])
    return {
        "counts": counts,
        "acceptance_rate": _rate(counts["accepted"], counts["pairs"]),
        "acceptance_rate_per_heuristic": {
            h: {**v, "rate": _rate(v["accepted"], v["pairs"])} for h, v in per_h.items()},
        "acceptance_rate_per_round": {
            r: {**v, "rate": _rate(v["accepted"], v["attempted"])}
            for r, v in sorted(per_r.items(), key=lambda kv: int(kv[0]))},
        "candidate_accuracy": _rate(counts["correct_candidates"], counts["candidates"]),
        "answer_extraction": extraction,
        "truncated_candidates": truncated,
        "truncation_rate": _rate(truncated, counts["candidates"]),
        "tokens_generated": counts["tokens"],
        "generation_seconds": round(gen_s, 3),
        "scoring_seconds": round(float(tot["scoring_seconds"]), 3),
        "tokens_per_second": round(counts["tokens"] / gen_s, 2) if gen_s > 0 else None,
    }


def _data_insight(spec: PolyaRunSpec, out: Path, files: list[str],
                  sides: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, float]]:
    """Per-heuristic statistics and per-question diversity of the data written (datastats)."""
    import pyarrow.parquet as pq

    cols = ["question_id", "heuristic", "completion", "score", "num_tokens"]
    rows = [r for f in files for r in pq.read_table(out / f, columns=cols).to_pylist()]
    model = spec.stages.generate.diversity_embedding_model
    embed = datastats.hf_embedder(model) if model and rows else None
    return datastats.data_stats(rows, datastats.merge_heuristic_counters(sides), embed, model)


def _backend_kwargs(spec: PolyaRunSpec) -> dict[str, Any]:
    g = spec.stages.generate
    if g.backend == "hf":
        return {"batch_size": g.batch_size, "seed": spec.seed}
    kw: dict[str, Any] = {"seed": spec.seed}
    if g.scorer.type == "rewardModel":
        # Leave room on the GPU for the reward model next to the engine.
        kw["gpu_memory_utilization"] = 0.5
    return kw


def scorer_spec(g: Any, arm: str) -> Any:
    """The scorer the arm selects with: STaR's rule by default keeps the first correct
    rationale (no scorer); the polya arm, and star with starSelection: scorer, use g.scorer."""
    if arm == "star" and g.star_selection == "first":
        return g.scorer.model_copy(update={"type": "none"})
    return g.scorer


def run(spec: PolyaRunSpec, arm: str, workdir: RunDir, reporter: Reporter | None = None,
        *, generator: Any = None, scorer: Any = None) -> dict[str, str]:
    """Generate the arm's training data; returns outputs relative to `workdir`.

    `generator` / `scorer` may be passed in (tests, benchmarks); otherwise they are built from
    the spec when the first unfinished shard needs them.
    """
    if arm not in ("polya", "star"):
        raise ValueError(f"the {arm} arm has no generate stage")
    from polya_trainer.data import heuristics as catalog

    reporter = reporter or Reporter("generate", arm)
    g = spec.stages.generate
    if g.seed is not None:  # a sweep pins generation's seed so that its variants share it
        spec = spec.model_copy(update={"seed": g.seed})
    t_start = time.perf_counter()
    questions = load_qa(spec.dataset)
    chosen: list[Any | None] = list(catalog.select(spec.heuristics)) if arm == "polya" else [None]
    heuristic_ids = [h.id if h is not None else NO_HEURISTIC for h in chosen]
    fp = fingerprint(spec, arm, heuristic_ids)
    ws = Workspace.of(workdir)
    out = ws.stage(arm, "generate")
    # Overlap with the evaluation benchmarks, before any sampling (spec.contamination).
    questions, chosen, contam = contamination.gate_questions(
        spec, "seed_questions", questions, out, ws.root, chosen, g.exemplars)
    if contam:
        reporter.update(contaminated_questions=contam["seed_questions"]["overlapping"])
    shards = [questions[i:i + g.shard_size] for i in range(0, len(questions), g.shard_size)]
    # Sharded (stages.generate.shards > 1 with JOB_COMPLETION_INDEX): this index's data
    # shards only, each seeded and batched as in a 1-shard run (runtime/shards.py).
    job_index = jobshards.current_index(g.shards)
    mine = (range(len(shards)) if job_index is None
            else jobshards.split(len(shards), g.shards, job_index))
    if job_index is None:  # other indices may be writing; the merger cleans instead
        _clean(out, len(shards))
    label = "" if job_index is None else f"index {job_index}/{g.shards}: "
    reporter.start(total=sum(len(shards[i]) for i in mine), unit="questions",
                   message=f"{label}{len(mine)} of {len(shards)} shards, "
                           f"{len(chosen)} heuristic(s)")
    own_generator = generator is None
    own_scorer = scorer is None
    sides: list[dict[str, Any]] = []
    resumed = 0
    done = 0

    def report(message: str = "") -> None:
        summary = summarize(sides)
        c = summary["counts"]
        reporter.update(done=done, accepted=c["accepted"],
                        acceptance_rate=summary["acceptance_rate"],
                        tokens_per_second=summary["tokens_per_second"], message=message)

    def on_round(index: int, rnd: int, figures: dict[str, int]) -> None:
        reporter.update(message=f"shard {index + 1}/{len(shards)} round {rnd}: "
                                f"{figures['accepted']}/{figures['attempted']} pairs accepted")

    try:
        for index in mine:
            qs = shards[index]
            side = finished_shard(out, index, fp)
            if side is not None:
                resumed += 1
            else:
                if generator is None:
                    generator = load_generator(g.backend, spec.model, gpus=g.resources.gpus,
                                               **_backend_kwargs(spec))
                if scorer is None:
                    scorer = build_scorer(scorer_spec(g, arm), generator, spec.model,
                                          seed=spec.seed)
                result = process_shard(index, qs, chosen, generator, scorer, spec, on_round)
                side = write_shard(out, index, result, fp)
            sides.append(side)
            done += len(qs)
            report(f"{label}shard {index + 1}/{len(shards)} done")
            hold.unit_done(len(sides))  # tests: hold or slow down after each shard
    finally:
        if own_scorer and scorer is not None:
            scorer.close()
        if own_generator and generator is not None:
            generator.close()

    outputs = {"data": ws.relative(ws.generated_data(arm)), "card": ws.relative(ws.card(arm))}
    if job_index is not None:
        names = [f"shards/{shard_name(s['shard'])}.json" for s in sides]
        jobshards.write_index_manifest(out, job_index, g.shards, fp,
                                       [*names, *(s["file"] for s in sides if s["file"])],
                                       resumed=resumed)
        if not jobshards.claim_merge(out, job_index, g.shards, fp):
            reporter.update(done=done, message=f"{label}done; the last index merges")
            return outputs
        # The merge: every index is done, so every sidecar is there; nobody writes now.
        resumed = sum(m["resumed"] for m in jobshards.merged_meta(out, g.shards, fp))
        sides = [finished_shard(out, i, fp) or {} for i in range(len(shards))]
        if not all(sides):
            raise RuntimeError("a data shard of a finished index is missing or changed")
        _clean(out, len(shards))
    summary = summarize(sides)
    files = [s["file"] for s in sides if s["file"]]
    reporter.update(message="data statistics and diversity")
    insight, per_question = _data_insight(spec, out, files, sides)
    atomic_write_json(ws.datastats(arm), {**insight, "vendi_per_question": per_question})
    card = {
        "arm": arm, "stage": "generate",
        "model": {"name": spec.model.name, "revision": spec.model.revision,
                  "dtype": spec.model.dtype},
        "dataset": spec.dataset.dump(), "heuristics": heuristic_ids, "seed": spec.seed,
        "backend": g.backend,
        "sampling": {"samplesPerHeuristic": g.samples_per_heuristic,
                     "temperature": g.temperature, "topP": g.top_p,
                     "maxNewTokens": g.max_new_tokens, "rounds": g.rounds},
        "scorer": scorer_spec(g, arm).dump(), "shardSize": g.shard_size, "shards": len(shards),
        "resumedShards": resumed, "fingerprint": fp, "files": files,
        "dropped_question_ids": [q for s in sides for q in s["dropped_question_ids"]],
        **summary, "data_insight": insight, **({"contamination": contam} if contam else {}),
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "columns": [name for name, _ in COLUMNS],
    }
    if g.shards > 1:
        card["indices"] = g.shards
    atomic_write_json(ws.card(arm), card)
    extra = [f.relative_to(out) for f in (ws.datastats(arm), out / "contamination.json",
                                          ws.card(arm)) if f.is_file()]
    write_manifest(out, files=[*files, *extra], outputs=outputs, arm=arm, stage="generate")
    div = insight["diversity"]["per_question"]
    reporter.update(truncation_rate=summary["truncation_rate"],
                    duplicates_removed=insight["duplicates"]["removed"],
                    vendi_mean=div["mean"] if div["mean"] is not None else None)
    for hid, t in insight["per_heuristic"].items():
        reporter.heuristic_figures(hid, acceptance_rate=t["acceptance_rate"],
                                   truncation_rate=t["truncation_rate"], kept=t["kept"])
    reporter.update(done=done, message=(f"{summary['counts']['accepted']} samples accepted, "
                                        f"{summary['counts']['dropped_questions']} questions "
                                        "dropped"))
    return outputs
