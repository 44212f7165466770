"""Shared fixtures: models and data the tests build themselves (there is no hub here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("POLYA_TEST_CACHE", ROOT / ".cache"))

# Keep libraries off the network and quiet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained Qwen2-style model + tokenizer (head_dim 64, ChatML with generation marks)."""
    from polya_trainer.toy import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def toy_model_dir() -> Path:
    """The tiny model briefly pretrained on arithmetic word problems; cached across runs
    under .cache/ (rebuilt when the recipe version changes). About 3 minutes the first time."""
    from polya_trainer.toy import TOY_VERSION, build_toy_model

    return build_toy_model(CACHE / f"toy-model-v{TOY_VERSION}")


@pytest.fixture(scope="session")
def problems_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 arithmetic word problems as JSONL with `question` and `answer` columns."""
    from polya_trainer.toy import write_problem_file

    return write_problem_file(tmp_path_factory.mktemp("data") / "problems.jsonl", 64, seed=7)


from testkit import vllm_python  # noqa: E402, F401  (kept importable from here)
