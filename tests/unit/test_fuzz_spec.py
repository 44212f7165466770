"""Property-based fuzzing of PolyaRun specs through both validation layers.

Objects start from a valid PolyaRun and get one to three mutations at field paths taken
from the generated CRD schema: a value that fits the schema, an out-of-range or wrongly
typed value, or an unknown key. For every object: nothing crashes, pydantic and the CRD
schema (jsonschema + CEL) agree on accept/reject, and every rejection names a field.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import pytest
from crdcheck import api_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polya_trainer import spec as s
from polya_trainer.crd import crd

EXAMPLES = int(os.environ.get("POLYA_FUZZ_EXAMPLES", "10000"))
STATS = {"accepted": 0, "rejected": 0}


def _paths(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    out = []
    for name, sub in node.get("properties", {}).items():
        out.append(((*path, name), sub))
        out += _paths(sub, (*path, name))
    return out


SCHEMA = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
PATHS = [p for p in _paths(SCHEMA["properties"]["spec"], ("spec",))]

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(-1e6, 1e6, allow_nan=False), st.text(max_size=12),
                 st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.sampled_from(["a", "name", "k"]), st.integers(-10**9, 10**9),
                                 max_size=2))


def fitting(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value shaped like `node` says (which may still break a cross-field rule)."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    typ = node.get("type")
    if typ == "boolean":
        return st.booleans()
    if typ in ("integer", "number"):
        lo = node.get("minimum", -5)
        hi = node.get("maximum", max(lo, 0) + 5000)
        if typ == "integer":
            return st.integers(int(lo) - 2, int(min(hi, 10**7)) + 2)
        return st.floats(lo - 1, min(hi, 1e7) + 1, allow_nan=False)
    if typ == "string":
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True).filter(
                lambda x: len(x) <= node.get("maxLength", 10**6))
        return st.text(min_size=0, max_size=node.get("maxLength", 20) + 2)
    if typ == "array":
        item = node.get("items", {})
        return st.lists(fitting(item) if item.get("type") != "object" else st.just({}),
                        max_size=(node.get("maxItems") or 4) + 1)
    return st.just({})


@st.composite
def polyaruns(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
                           "metadata": {"name": draw(st.from_regex(s.DNS_LABEL, fullmatch=True)
                                                     .filter(lambda n: len(n) <= 45))},
                           "spec": {"model": {"name": "org/model"}}}
    for _ in range(draw(st.integers(1, 3))):
        path, node = draw(st.sampled_from(PATHS))
        value = draw(st.one_of(fitting(node), JUNK)) if draw(st.booleans()) else draw(
            fitting(node))
        if draw(st.integers(0, 9)) == 0:  # an unknown field next to a real one
            path, value = (*path[:-1], draw(st.sampled_from(["colour", "gpu", "x"]))), 1
        target = obj
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = value
    return obj


def _pydantic(obj: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        s.parse_run(copy.deepcopy(obj))
    except s.SpecError as exc:
        return exc.errors
    return []


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(polyaruns())
def test_layers_agree(obj: dict[str, Any]) -> None:
    p_errors = _pydantic(obj)
    a_errors = api_errors(obj)
    assert bool(p_errors) == bool(a_errors), f"disagree on {obj}: {p_errors} vs {a_errors}"
    for path, msg in p_errors:
        assert path.startswith(("spec", "metadata")) and msg, p_errors
    for path, msg in a_errors:
        assert path or "metadata.name" in msg, a_errors
    STATS["rejected" if p_errors else "accepted"] += 1


def test_fuzz_summary() -> None:
    """Runs after the fuzz test in file order: print the figures and check both kinds occurred."""
    t0 = time.perf_counter()
    total = STATS["accepted"] + STATS["rejected"]
    print(f"\nfuzz: {total} PolyaRuns, {STATS['accepted']} accepted, "
          f"{STATS['rejected']} rejected by both layers ({time.perf_counter() - t0:.1f}s)")
    if total:
        assert STATS["accepted"] > 0 and STATS["rejected"] > 0
