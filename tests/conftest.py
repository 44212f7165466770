"""Shared fixtures: models and data the tests build themselves (there is no hub here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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

# --------------------------------------------------------------------------- skips
# A test may skip for one of these reasons only, named at the start of its message. Anything
# else (a set-up step missing, a result too poor to go on with) is a failure in waiting: under
# CI (CI=true) such a skip fails the run, and locally the summary lists it.
SKIP_REASONS = ("no GPU:", "no cluster:", "CPU kind:")
_unexpected: list[str] = []


def _skip_message(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        message = _skip_message(report)
        if not message.startswith(SKIP_REASONS):
            _unexpected.append(f"{report.nodeid}: {message}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if _unexpected:
        terminalreporter.section("skips outside the allowed reasons " + ", ".join(SKIP_REASONS))
        for line in _unexpected:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected and os.environ.get("CI") == "true" and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
