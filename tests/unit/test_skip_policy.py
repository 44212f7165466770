"""The suite's skip policy (tests/conftest.py): a skip must name one of the allowed reasons;
under CI any other skip fails the run. Checked by running pytest on a two-test file with the
project's conftest loaded as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

FILE = """
import pytest

def test_allowed():
    pytest.skip("no cluster: KUBECONFIG is not set")

def test_not_allowed():
    pytest.skip("the S3 test server is not set up")
"""


def _pytest(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_two.py").write_text(FILE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest",
                           "-p", "no:cacheprovider", "test_two.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_an_unexpected_skip_fails_under_ci_and_is_listed_elsewhere(tmp_path: Path) -> None:
    local = _pytest(tmp_path, "")
    assert local.returncode == 0, local.stdout
    assert "test_two.py::test_not_allowed: the S3 test server is not set up" in local.stdout
    assert "test_allowed" not in local.stdout.split("skips outside")[1]
    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout
    assert "2 skipped" in ci.stdout
