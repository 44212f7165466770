"""Adherence scorers: how closely a correct response follows its heuristic.

* ``rewardModel``: a sequence-classification reward model (transformers) reads the heuristic
  instruction + question as the user turn and the response as the assistant turn, rendered
  with the reward model's own chat template; its first logit is the score.
* ``judge``: the generator itself rates adherence 1-10 (greedy); the first number is parsed.
* ``none``: a constant, so the first correct candidate is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from polya_trainer.backends.base import Sampling
from polya_trainer.data.prompts import render, render_conversation


@dataclass(frozen=True)
class ScoreRequest:
    instruction: str
    question: str
    response: str


class Scorer(Protocol):
    name: str

    def score(self, requests: list[ScoreRequest]) -> list[float]:
        """One score per request, higher is better."""
        ...

    def close(self) -> None: ...


def best_index(scores: list[float]) -> int:
    """Index of the highest score; ties (and NaN) go to the earliest candidate."""
    best, best_score = 0, float("-inf")
    for i, s in enumerate(scores):
        if s == s and s > best_score:  # s == s is False for NaN
            best, best_score = i, s
    return best


class NoScorer:
    name = "none"

    def score(self, requests: list[ScoreRequest]) -> list[float]:
        return [0.0] * len(requests)

    def close(self) -> None:
        pass


def user_turn(req: ScoreRequest) -> str:
    return f"{req.instruction}\n\nProblem: {req.question}"


class RewardModelScorer:
    """`AutoModelForSequenceClassification` scoring (instruction + question, response)."""

    name = "rewardModel"

    def __init__(self, path: str, model_spec: Any = None, batch_size: int = 8,
                 device: str | None = None, max_length: int = 4096) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from polya_trainer.backends.models import hub_kwargs

        kw: dict[str, Any] = hub_kwargs(model_spec, path) if model_spec is not None else {}
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=dtype, num_labels=1, **kw).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            # Needed to find each row's last real token in a padded batch.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def text(self, req: ScoreRequest) -> str:
        return render_conversation(self.tokenizer, [
            {"role": "user", "content": user_turn(req)},
            {"role": "assistant", "content": req.response}])

    def score(self, requests: list[ScoreRequest]) -> list[float]:
        import torch

        out: list[float] = []
        for start in range(0, len(requests), self.batch_size):
            texts = [self.text(r) for r in requests[start:start + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length,
                                 add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                logits = self.model(**enc).logits
            out += [float(x) for x in logits[:, 0].float().cpu()]
        return out

    def close(self) -> None:
        self.model = None


JUDGE_TEMPLATE = (
    "You grade how closely a solution follows a problem-solving strategy.\n\n"
    "Strategy: {instruction}\n\nProblem: {question}\n\nSolution: {response}\n\n"
    "On a scale from 1 (ignores the strategy) to 10 (follows it closely), rate the solution. "
    "Reply with the number only."
)
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)")


def parse_rating(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """The first number in a judge's reply, clamped to [low, high]; None if there is none.

    "8", "Rating: 7/10", "**9** out of 10" give 8, 7, 9; "eleven" gives None.
    """
    m = _NUMBER.search(text)
    if not m:
        return None
    return min(high, max(low, float(m.group(1))))


class JudgeScorer:
    """The generator rates adherence 1-10 with a greedy reply; unparsable replies score 0."""

    name = "judge"

    def __init__(self, generator: Any, max_new_tokens: int = 8, seed: int = 0) -> None:
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.tokens = 0

    def prompt(self, req: ScoreRequest) -> str:
        content = JUDGE_TEMPLATE.format(instruction=req.instruction, question=req.question,
                                        response=req.response)
        return render(self.generator.tokenizer, [{"role": "user", "content": content}])

    def score(self, requests: list[ScoreRequest]) -> list[float]:
        if not requests:
            return []
        sampling = Sampling(n=1, temperature=0.0, top_p=1.0,
                            max_new_tokens=self.max_new_tokens, seed=self.seed)
        outs = self.generator.generate([self.prompt(r) for r in requests], sampling)
        self.tokens += sum(o[0].num_tokens for o in outs)
        return [r if (r := parse_rating(o[0].text)) is not None else 0.0 for o in outs]

    def close(self) -> None:
        pass


def build_scorer(scorer_spec: Any, generator: Any = None, model_spec: Any = None,
                 seed: int = 0) -> Scorer:
    """The scorer a `ScorerSpec` asks for (the judge reuses the stage's generator)."""
    kind = scorer_spec.type
    if kind == "none":
        return NoScorer()
    if kind == "judge":
        if generator is None:
            raise ValueError("the judge scorer needs the generator")
        return JudgeScorer(generator, seed=seed)
    if kind == "rewardModel":
        if not scorer_spec.model:
            raise ValueError("stages.generate.scorer.model is required for type rewardModel")
        return RewardModelScorer(scorer_spec.model, model_spec,
                                 batch_size=scorer_spec.batch_size)
    raise ValueError(f"unknown scorer type {kind!r}")
