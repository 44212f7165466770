"""Chat prompts rendered with the model's own chat template.

Backends receive prompt strings, so the template is applied once here (with
``add_generation_prompt=True``) and the same string goes to transformers and vLLM.
"""

from __future__ import annotations

import json
from typing import Any

Messages = list[dict[str, str]]

# Used for the STaR arm's judge/reward-model instruction (no heuristic there).
PLAIN_INSTRUCTION = "Solve the problem step by step and put the final answer in \\boxed{}."


def render(tokenizer: Any, messages: Messages) -> str:
    """The prompt string for `messages`, ending where the assistant's reply starts."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True)
    # A base model without a template: a plain transcript with an open assistant turn.
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*lines, "Assistant:"])


def render_conversation(tokenizer: Any, messages: Messages) -> str:
    """A whole conversation (ending with the assistant's turn), e.g. for a reward model."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def build(tokenizer: Any, heuristic: Any | None, question: str,
          n_exemplars: int = 2) -> tuple[Messages, str]:
    """Messages for (heuristic, question) and their rendered prompt.

    `heuristic=None` gives the plain question (STaR). For chat templates that reject a
    system turn, the instruction moves into the first user turn.
    """
    from . import heuristics as catalog

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
