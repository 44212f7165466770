"""Chat prompts rendered with the model's own chat template.

The template is applied once here (with ``add_generation_prompt=True``) and its text is
tokenized without special tokens (:func:`encode`): the template writes the BOS itself. The ids
equal what ``apply_chat_template(tokenize=True)`` gives, which is what TRL's GRPOTrainer sends
to its rollouts, so generation, evaluation and RL see the same prompt ids (:func:`message_ids`).

Templates that stamp a date (Llama 3.x writes "Today Date: <today>" unless ``date_string`` is
given) get :data:`CHAT_TEMPLATE_DATE`, so a prompt does not change with the day it runs.
"""

from __future__ import annotations

import json
from typing import Any

Messages = list[dict[str, str]]

# Pinned date for templates that print one (Llama 3.x's own fallback when none is given).
CHAT_TEMPLATE_DATE = "26 Jul 2024"
# Extra variables every chat template is rendered with (TRL: GRPOConfig.chat_template_kwargs).
CHAT_TEMPLATE_KWARGS: dict[str, Any] = {"date_string": CHAT_TEMPLATE_DATE}

# Used for the STaR arm's judge/reward-model instruction (no heuristic there).
PLAIN_INSTRUCTION = "Solve the problem step by step and put the final answer in \\boxed{}."


def render(tokenizer: Any, messages: Messages) -> str:
    """The prompt string for `messages`, ending where the assistant's reply starts."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS)
    # A base model without a template: a plain transcript with an open assistant turn.
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*lines, "Assistant:"])


def render_conversation(tokenizer: Any, messages: Messages) -> str:
    """A whole conversation (ending with the assistant's turn), e.g. for a reward model."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, **CHAT_TEMPLATE_KWARGS)
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def encode(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a rendered prompt: no special tokens added (the template has them)."""
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def message_ids(tokenizer: Any, messages: Messages) -> list[int]:
    """Prompt ids the way TRL's GRPOTrainer makes them for conversational prompts
    (``apply_chat_template(tokenize=True, add_generation_prompt=True)``); equal to
    ``encode(tokenizer, render(tokenizer, messages))``."""
    if not getattr(tokenizer, "chat_template", None):
        return encode(tokenizer, render(tokenizer, messages))
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                        return_dict=True, **CHAT_TEMPLATE_KWARGS)
    return list(out["input_ids"])


def build(tokenizer: Any, heuristic: Any | None, question: str,
          n_exemplars: int = 2) -> tuple[Messages, str]:
    """Messages for (heuristic, question) and their rendered prompt.

    `heuristic=None` gives the plain question (STaR). For chat templates that reject a
    system turn, the instruction moves into the first user turn.
    """
    from polya_trainer.data import heuristics as catalog

    if heuristic is None:
        messages = catalog.plain_messages(question)
        return messages, render(tokenizer, messages)
    messages = catalog.build_messages(heuristic, question, n_exemplars=n_exemplars)
    try:
        return messages, render(tokenizer, messages)
    except Exception:  # jinja raises TemplateError for "system role not supported"
        messages = catalog.build_messages(heuristic, question, n_exemplars=n_exemplars,
                                          system=False)
        return messages, render(tokenizer, messages)


def instruction_of(heuristic: Any | None) -> str:
    """The text a scorer checks adherence against."""
    if heuristic is None:
        return PLAIN_INSTRUCTION
    if hasattr(heuristic, "instruction"):
        return heuristic.instruction()
    return f"{heuristic.name}: {heuristic.description}"


def dumps(messages: Messages) -> str:
    """Messages as a stable JSON string (stored with every sample)."""
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
