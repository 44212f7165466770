"""Paths, value sets and tool lookup shared by the artifact tests (imported by conftest.py
and the test modules under a unique name, so it never clashes with tests/conftest.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "polyarun"
MANIFESTS = ROOT / "manifests"
for _p in (ROOT / "tools", ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import helm_render  # noqa: E402  (re-exported for the tests)

__all__ = ["CHART", "MANIFESTS", "ROOT", "VALUE_SETS", "helm_render", "tool"]

SETUP = "run scripts/setup-tools.sh"
# The values sets the chart is tested with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watch": {"mode": "namespace", "namespaces": ["team-a", "team-b"]},
                   "operator": {"peering": {"enabled": True}}},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True},
                               "podMonitor": {"enabled": True},
                               "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}},
                   "dashboards": {"annotations": {"grafana_folder": "PolyaRun"}}},
    "webhook": {"webhook": {"enabled": True}, "operator": {"peering": {"enabled": True}},
                "image": {"digest": "sha256:" + "0" * 64}},
}


def tool(name: str, *candidates: Path) -> str:
    """Path of a tool, or skip the test saying how to install it."""
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed ({SETUP})")
    return found
