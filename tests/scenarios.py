"""One list of operator scenarios, played the same way against the emulator with the fake Job
controller (tests/operator/test_shared_scenarios.py) and against a real cluster
(tests/e2e/test_cluster.py, on kind through .github/workflows/e2e-kind.yaml).

A scenario names the model its pods get: ``working`` (every stage succeeds) or ``broken`` (a
path that does not exist: every stage exits non-zero in the real trainer image). That is all
a pod's fate depends on, so the emulator's fake pods follow it ("succeed" or "fail") and the
real ones follow from the spec. ``play`` drives a scenario through a small client interface
that each side implements over its own API client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

BROKEN_MODEL = "/workspace/does-not-exist"


class Api(Protocol):
    def create(self, name: str, spec: dict[str, Any]) -> None: ...
    def run(self, name: str) -> dict[str, Any] | None: ...
    def patch(self, name: str, patch: dict[str, Any]) -> None: ...
    def delete(self, name: str) -> None: ...
    def jobs(self, name: str) -> list[str]: ...
    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any: ...


@dataclass(frozen=True)
class Scenario:
    name: str
    spec: dict[str, Any]
    model: str  # "working" or "broken"
    steps: tuple[str, ...] = ()  # after the first Job exists: "suspend", "resume", "delete"
    outcome: str = "Succeeded"  # the condition that ends True, or "deleted"
    reasons: tuple[str, ...] = ()  # the Failed condition's reason is one of these
    jobs: tuple[str, ...] = ()  # Job name suffixes that must exist at the end
    timeout: float = 900.0  # seconds on a real cluster (the emulator takes a few)
    tags: frozenset[str] = field(default_factory=frozenset)


def _cpu(spec: dict[str, Any]) -> dict[str, Any]:
    """Every stage on CPU (kind has no GPU): gpus 0 in each stage named in the spec."""
    stages = {name: {**cfg, "resources": {**cfg.get("resources", {}), "gpus": 0}}
              for name, cfg in (spec.get("stages") or {}).items()}
    return {**spec, "stages": stages}


SCENARIOS = [
    Scenario("happy", _cpu({
        "arms": ["vanilla"],
        "stages": {"rl": {"maxSteps": 1, "numGenerations": 2, "perDeviceBatchSize": 2,
                          "maxCompletionLength": 16},
                   "evaluate": {"benchmarks": ["gsm8k"], "limit": 2, "k": [1], "samples": 1,
                                "backend": "hf"}}}),
             "working", outcome="Succeeded", jobs=("vanilla-rl-0", "vanilla-evaluate-0"),
             timeout=3600),
    Scenario("retries", _cpu({"arms": ["vanilla"], "stages": {"rl": {"backoffLimit": 1},
                                                             "evaluate": {}}}),
             "broken", outcome="Failed", reasons=("BackoffLimitExceeded", "InvalidConfig"),
             jobs=("vanilla-rl-0", "vanilla-rl-1")),
    Scenario("suspend", _cpu({"arms": ["vanilla"], "stages": {"rl": {"backoffLimit": 5},
                                                             "evaluate": {}}}),
             "broken", steps=("suspend", "resume", "delete"), outcome="deleted"),
    Scenario("deadline", _cpu({"arms": ["vanilla"], "activeDeadlineSeconds": 5,
                               "stages": {"rl": {"backoffLimit": 10}, "evaluate": {}}}),
             "broken", outcome="Failed", reasons=("DeadlineExceeded", "BackoffLimitExceeded"),
             timeout=300),
]


def condition(run: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((run or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return {}


def play(sc: Scenario, api: Api, name: str, model: str,
         storage: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Create the scenario's run (``model`` for a working one), take its steps, and check
    its outcome; returns the final run (None once deleted)."""
    spec = {**sc.spec, "model": {"name": model if sc.model == "working" else BROKEN_MODEL,
                                 "dtype": "float32"},
            "storage": storage or {"size": "1Gi"}}
    api.create(name, spec)
    if sc.steps:
        api.wait(lambda: api.jobs(name), 120, "the first Job")
    for step in sc.steps:
        if step == "suspend":
            api.patch(name, {"spec": {"suspend": True}})
            api.wait(lambda: condition(api.run(name), "Suspended").get("status") == "True",
                     120, "Suspended")
        elif step == "resume":
            api.patch(name, {"spec": {"suspend": False}})
            api.wait(lambda: condition(api.run(name), "Suspended").get("status") == "False",
                     120, "resumed")
        elif step == "delete":
            api.delete(name)
    if sc.outcome == "deleted":
        api.wait(lambda: not api.jobs(name) and api.run(name) is None, 180,
                 "the run and its Jobs removed")
        return None
    run = api.wait(lambda: condition(api.run(name), sc.outcome).get("status") == "True"
                   and api.run(name), sc.timeout, f"the run {sc.outcome}")
    if sc.reasons:
        assert condition(run, "Failed")["reason"] in sc.reasons, run["status"]
    have = api.jobs(name)
    for suffix in sc.jobs:
        assert f"{name}-{suffix}" in have, (suffix, have)
    return run
