"""The GPU trainer image's requirement set (requirements/trainer-gpu.txt) resolves with pip's
real resolver, for the image's target (Linux x86_64, CPython 3.11), as a dry run.

The resolver tests need the package index (CI has it) and skip with the reason when it cannot be
reached. They read wheel metadata through HTTP range requests (tools/gpu_lock.py explains why),
so a run fetches about 0.1 GB, not the 4.3 GB of wheels, and installs nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from artifacts_env import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import gpu_lock

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The one deliberate difference from pyproject's pins, and why (pyproject.toml says it too).
OVERRIDES = {"transformers": "5.17.0"}  # vllm 0.31.0 requires transformers<5.18


def _pins(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, version = line.split("==")
        out[gpu_lock.normalise(name)] = version
    return out


def test_lock_is_exact_and_holds_the_top_level_pins() -> None:
    lock = gpu_lock.read_pins(gpu_lock.LOCK_FILE)  # raises on any line that is not name==v
    top = gpu_lock.read_pins(gpu_lock.IN_FILE)
    assert {k: lock.get(k) for k in top} == top
    wanted = _pins(PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["train"])
    differ = {k for k in wanted if top.get(k) != wanted[k]}
    assert differ == set(OVERRIDES) and all(top[k] == v for k, v in OVERRIDES.items())
    assert top["vllm"] == "0.31.0" and lock["torch"] == wanted["torch"]
    # nvidia-* CUDA wheels are there: the default index's Linux torch is the CUDA build.
    assert any(k.startswith("nvidia-nccl-cu") for k in lock)
    assert "vllm" not in PYPROJECT["optional-dependencies"]  # the conflicting extra is gone


def test_dockerfile_installs_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    trainer = text[text.index(" AS trainer"):]
    assert "COPY requirements/trainer-gpu.txt requirements.txt" in trainer
    assert "pip install --no-cache-dir --only-binary=:all: -r requirements.txt" in trainer
    assert "optional-dependencies" not in trainer  # no pins read from pyproject any more
    assert "!requirements/trainer-gpu.txt" in (ROOT / ".dockerignore").read_text().split()


@pytest.fixture(scope="module")
def index_reachable() -> None:
    """Skip when the package index cannot be reached (asked the way the tests ask it)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "vllm"],
                              capture_output=True, text=True, timeout=120,
                              env=gpu_lock.isolated_env())
    except subprocess.TimeoutExpired:
        pytest.skip("package index unreachable (pip index versions vllm timed out)")
    if proc.returncode or "0.31.0" not in proc.stdout:
        pytest.skip("package index unreachable: pip index versions vllm said "
                    f"{(proc.stderr or proc.stdout).strip()[-300:]!r}")


@pytest.mark.slow
@pytest.mark.usefixtures("index_reachable")
def test_pip_resolves_the_lock_without_conflict() -> None:
    """Resolving the lock again yields exactly the lock: no conflict, nothing missing."""
    rc, err, resolved = gpu_lock.resolve(gpu_lock.LOCK_FILE)
    assert rc == 0, err[-4000:]
    locked = gpu_lock.read_pins(gpu_lock.LOCK_FILE)
    assert resolved == locked, sorted(set(resolved.items()) ^ set(locked.items()))


@pytest.mark.slow
@pytest.mark.usefixtures("index_reachable")
def test_pip_rejects_the_old_pins(tmp_path: Path) -> None:
    """The check can fail: pyproject's transformers pin beside vllm 0.31.0 is refused."""
    req = tmp_path / "old.txt"
    req.write_text(f"transformers=={_pins(PYPROJECT['optional-dependencies']['train'])['transformers']}"
                   "\nvllm==0.31.0\n")
    rc, err, _ = gpu_lock.resolve(req)
    assert rc != 0
    assert "ResolutionImpossible" in err or "conflict" in err.lower(), err[-2000:]
