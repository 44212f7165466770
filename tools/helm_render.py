"""Render charts/polyarun with the Helm v4 engine (helm-python-sdk) — `helm template` here.

    .venv/bin/python tools/helm_render.py OUTDIR [-f values.yaml]... [--set k=v]...
        [--name polyarun] [--namespace polyarun-system] [--include-crds]

Writes one file per template (empty renders skipped) under OUTDIR, for validators such as
kubernetes-validate and checkov. Library use: `render(values)` -> {template path: YAML}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "polyarun"
RELEASE = "polyarun"
NAMESPACE = "polyarun-system"


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE, include_crds: bool = False,
           chart: Path = CHART) -> dict[str, str]:
    """Template path -> rendered YAML (NOTES.txt and empty outputs dropped)."""
    loaded = helm.Chart.load(chart)
    out = {path: text for path, text in loaded.render(
        values or {}, name=name, namespace=namespace, is_install=True).items()
        if not path.endswith("NOTES.txt") and text.strip()}
    if include_crds:
        for crd in loaded.crds:
            out[f"{loaded.name}/crds/{crd['name'].rsplit('/', 1)[-1]}"] = crd["data"]
    return out


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render, in template order."""
    return [doc for path in sorted(rendered) for doc in yaml.safe_load_all(rendered[path])
            if doc]


def write(rendered: dict[str, str], outdir: Path) -> list[Path]:
    paths = []
    for path, text in sorted(rendered.items()):
        target = outdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        paths.append(target)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("-f", "--values", action="append", default=[], type=Path)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--name", default=RELEASE)
    ap.add_argument("--namespace", default=NAMESPACE)
    ap.add_argument("--include-crds", action="store_true")
    args = ap.parse_args(argv)
    values: dict[str, Any] = {}
    for path in args.values:
        values = _merge(values, yaml.safe_load(path.read_text()) or {})
    for item in args.sets:
        values = _merge(values, helm.parse_set_string(item))
    paths = write(render(values, name=args.name, namespace=args.namespace,
                         include_crds=args.include_crds), args.outdir)
    print("\n".join(str(p) for p in paths))
    return 0


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = (_merge(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


if __name__ == "__main__":
    sys.exit(main())
