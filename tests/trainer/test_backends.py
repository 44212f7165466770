"""The transformers backend, prompts and scorers on the tiny model (real libraries)."""

from __future__ import annotations

from pathlib import Path

import pytest
from polya_trainer.backends import Completion, Sampling, load_generator
from polya_trainer.backends.scorers import (
    JudgeScorer,
    NoScorer,
    RewardModelScorer,
    ScoreRequest,
    best_index,
    build_scorer,
    parse_rating,
)
from polya_trainer.data import heuristics
from polya_trainer.data.prompts import build, render
from polya_trainer.spec import ModelSpec, ScorerSpec


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path):
    gen = load_generator("hf", ModelSpec(name=str(tiny_model_dir)), batch_size=4)
    yield gen
    gen.close()


def _prompts(gen) -> list[str]:
    qs = ["Ava has 3 apples and gets 4 more. How many apples?",
          "Ben buys 2 bags with 5 pens in each. How many pens in total?",
          "Cleo has 9 coins and gives away 4. How many coins are left?"]
    return [render(gen.tokenizer, [{"role": "user", "content": q}]) for q in qs]


def test_render_uses_chat_template(hf) -> None:
    text = render(hf.tokenizer, [{"role": "user", "content": "What is 2 + 2?"}])
    assert text.startswith("<|im_start|>user\nWhat is 2 + 2?<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_build_heuristic_prompt(hf) -> None:
    h = heuristics.CATALOG[0]
    messages, text = build(hf.tokenizer, h, "What is 2 + 2?")
    assert messages[0]["role"] == "system" and h.name in messages[0]["content"]
    assert messages[-1]["content"].startswith("What is 2 + 2?")
    assert sum(m["role"] == "assistant" for m in messages) == 2  # two exemplars
    assert text.endswith("<|im_start|>assistant\n") and h.exemplars[0].question in text
    plain, ptext = build(hf.tokenizer, None, "What is 2 + 2?")
    assert [m["role"] for m in plain] == ["user"] and h.name not in ptext


def test_hf_shapes_and_token_counts(hf) -> None:
    prompts = _prompts(hf)
    out = hf.generate(prompts, Sampling(n=3, temperature=1.0, top_p=0.95, max_new_tokens=12,
                                        seed=5))
    assert len(out) == 3 and all(len(group) == 3 for group in out)
    for group in out:
        for c in group:
            assert isinstance(c, Completion)
            assert 1 <= c.num_tokens <= 12
            assert "<|pad|>" not in c.text and "<|im_end|>" not in c.text


def test_hf_seed_determinism(hf) -> None:
    prompts = _prompts(hf)
    s = Sampling(n=2, temperature=1.0, top_p=1.0, max_new_tokens=10, seed=11)
    a, b = hf.generate(prompts, s), hf.generate(prompts, s)
    other = hf.generate(prompts, Sampling(n=2, temperature=1.0, top_p=1.0, max_new_tokens=10,
                                          seed=12))
    assert a == b
    assert a != other


def test_hf_greedy_repeats_and_left_padding(hf) -> None:
    """Greedy output of a prompt is the same alone and in a left-padded batch."""
    prompts = _prompts(hf)
    greedy = Sampling(n=2, temperature=0.0, max_new_tokens=10)
    batch = hf.generate(prompts, greedy)
    assert all(g[0] == g[1] for g in batch)
    for p, group in zip(prompts, batch, strict=True):
        assert hf.generate([p], greedy)[0][0].text == group[0].text


def test_load_generator_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        load_generator("tgi", ModelSpec(name="x"))


def test_parse_rating() -> None:
    assert parse_rating("8") == 8.0
    assert parse_rating("Rating: 7/10") == 7.0
    assert parse_rating("**9** out of 10") == 9.0
    assert parse_rating(" 6.5 ") == 6.5
    assert parse_rating("42") == 10.0 and parse_rating("0") == 1.0
    assert parse_rating("eleven") is None and parse_rating("") is None


def test_best_index_prefers_first_on_ties() -> None:
    assert best_index([1.0, 3.0, 3.0, 2.0]) == 1
    assert best_index([0.0, 0.0]) == 0
    assert best_index([float("nan"), 1.0]) == 1
    assert NoScorer().score([ScoreRequest("i", "q", "r")] * 2) == [0.0, 0.0]


def test_judge_scorer_parses_the_generator_reply(hf) -> None:
    """The judge's score is the number parsed from the generator's own greedy rating."""
    judge = JudgeScorer(hf, max_new_tokens=8)
    reqs = [ScoreRequest(heuristics.CATALOG[0].instruction(), "What is 2 + 2?", r)
            for r in ("2 + 2 = 4. The answer is \\boxed{4}.", "It is \\boxed{4}.")]
    scores = judge.score(reqs)
    replies = hf.generate([judge.prompt(r) for r in reqs], Sampling(temperature=0.0,
                                                                    max_new_tokens=8))
    expected = [parse_rating(r[0].text) or 0.0 for r in replies]
    assert scores == expected
    assert all(s == 0.0 or 1.0 <= s <= 10.0 for s in scores)
    assert judge.tokens > 0


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sequence-classification reward model (random weights) with the fixture tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(3)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                      head_dim=64, num_labels=1, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("rm") / "reward"
    Qwen2ForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_reward_model_scorer(reward_model_dir: Path) -> None:
    """Scores are per-sequence (batching and padding do not change them) and distinguish texts."""
    reqs = [ScoreRequest("Work backwards.", "What is 2 + 2?", r) for r in
            ("4", "2 + 2 = 4, so \\boxed{4}.", "Start from the end: 4 - 2 = 2, so 2 + 2 = 4. "
             "The answer is \\boxed{4}.", "\\boxed{5}")]
    batched = RewardModelScorer(str(reward_model_dir), batch_size=4).score(reqs)
    single = RewardModelScorer(str(reward_model_dir), batch_size=1).score(reqs)
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(round(s, 5) for s in batched)) == len(reqs)
    rm = build_scorer(ScorerSpec(type="rewardModel", model=str(reward_model_dir), batch_size=2))
    assert isinstance(rm, RewardModelScorer)
    assert rm.score(reqs) == pytest.approx(batched, abs=1e-4)
    text = rm.text(reqs[1])
    assert "Work backwards." in text and "<|im_start|>assistant\n2 + 2 = 4" in text


# --------------------------------------------------------------------------- one BOS everywhere

BOS_QUESTIONS = ["What is 2 + 3?", "Ava has 3 apples and gets 4 more. How many apples?"]


@pytest.fixture(scope="module")
def bos_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from testkit import build_bos_model

    return build_bos_model(tiny_model_dir, tmp_path_factory.mktemp("bos") / "model")


def trl_prompt_ids(tokenizer, prompts: list, chat_template_kwargs: dict) -> list[list[int]]:
    """TRL's own GRPOTrainer._tokenize_prompts (trl/trainer/grpo_trainer.py, TRL 1.16) on a
    stand-in `self` that carries only the attributes it reads for text-only conversational
    prompts (no tools, no environments, no vision processor)."""
    from types import SimpleNamespace

    from trl import GRPOTrainer

    me = SimpleNamespace(processing_class=tokenizer, chat_template=None, tools=None,
                         chat_template_kwargs=chat_template_kwargs, environment_factories=None,
                         _is_vlm=False)
    ids, _, _ = GRPOTrainer._tokenize_prompts(me, prompts)
    return [list(x) for x in ids]


def test_one_bos_in_hf_backend_and_grpo_rollouts(bos_model_dir: Path, tmp_path: Path) -> None:
    """With a template that writes the BOS and a tokenizer that adds one, the prompt ids that
    reach transformers' generate and TRL's GRPO rollouts are identical and hold one BOS."""
    from polya_trainer.data.prompts import CHAT_TEMPLATE_KWARGS, message_ids
    from polya_trainer.spec import parse_spec
    from polya_trainer.stages import rl
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bos_model_dir)
    bos = tok.bos_token_id
    assert tok("x")["input_ids"][0] == bos  # the tokenizer adds a BOS of its own...
    messages = [build(tok, None, q)[0] for q in BOS_QUESTIONS]
    texts = [render(tok, m) for m in messages]
    assert all(t.startswith("<|begin_of_text|>") for t in texts)  # ...and so does the template
    naive = tok(texts[0])["input_ids"]
    assert naive[:2] == [bos, bos]  # the double BOS a text prompt gets when re-tokenized

    expected = [message_ids(tok, m) for m in messages]
    assert all(ids[0] == bos and ids.count(bos) == 1 for ids in expected)

    gen = load_generator("hf", ModelSpec(name=str(bos_model_dir)), batch_size=2)
    try:
        gen.generate(texts, Sampling(n=1, temperature=0.0, max_new_tokens=2))
        assert gen.last_prompt_ids == expected
        gen.generate(expected, Sampling(n=1, temperature=0.0, max_new_tokens=2))  # ids as-is
        assert gen.last_prompt_ids == expected
    finally:
        gen.close()

    spec = parse_spec({"model": {"name": str(bos_model_dir)},
                       "dataset": {"source": "unused.jsonl"},
                       "stages": {"generate": {"backend": "hf"}}})
    cfg = rl.grpo_config(spec, tmp_path / "rl")
    assert cfg.chat_template_kwargs == CHAT_TEMPLATE_KWARGS  # the pinned date reaches TRL
    assert trl_prompt_ids(tok, messages, cfg.chat_template_kwargs) == expected


def test_chat_template_date_is_pinned(bos_model_dir: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    """The rendered prompt does not depend on the day (the template's strftime_now)."""
    import datetime as dt

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bos_model_dir)
    messages = [{"role": "user", "content": "Hi"}]
    unpinned = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert dt.datetime.now().strftime("%d %b %Y") in unpinned  # the hazard is real
    assert "Today Date: 26 Jul 2024" in render(tok, messages)


def test_finish_reason_marks_completions_cut_at_the_limit(hf) -> None:
    """`length` exactly when no end-of-sequence came within max_new_tokens."""
    prompts = _prompts(hf)
    short = hf.generate(prompts, Sampling(n=2, temperature=1.0, max_new_tokens=3, seed=1))
    long = hf.generate(prompts, Sampling(n=2, temperature=0.0, max_new_tokens=64))
    seen = set()
    for group in [*short, *long]:
        for c in group:
            seen.add(c.finish_reason)
            assert c.truncated == (c.finish_reason == "length")
            if c.finish_reason == "length":
                assert c.num_tokens in (3, 64)
            else:
                assert c.finish_reason == "stop"
    assert "length" in seen  # three tokens cannot hold an answer and its end
