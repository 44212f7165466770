"""Every object the operator would create for a PolyaRun, built by the operator's own code.

``polya plan FILE -o yaml|json`` prints them so that a user can review them or pipe them to
``kubectl apply --dry-run=server -f -``. Nothing here builds a manifest itself: the planner
(``engine.planner.plan``) is run against a simulated cluster in which every Job it creates
succeeds at once, and the ConfigMap, PVC, Services and Jobs of its actions are collected in
the order the operator would create them (first attempt of each stage; arms in parallel or
in turn exactly as the planner decides).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from polya_trainer import spec as s
from polya_trainer.engine import planner as p

from . import executor as x
from . import resources as r


def run_object(run: s.PolyaRun, namespace: str = "default") -> dict[str, Any]:
    """The PolyaRun as the API server would hand it to the operator (with a uid)."""
    meta = run.metadata.model_dump(mode="json", by_alias=True, exclude_none=True)
    meta.setdefault("namespace", namespace)
    meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"polyarun/{meta['name']}")))
    meta.setdefault("generation", 1)
    return {"apiVersion": s.API_VERSION, "kind": s.KIND, "metadata": meta,
            "spec": run.spec.dump(), "status": {}}


def planned_objects(run: s.PolyaRun, image: str | None = None,
                    defaults: dict[str, dict[str, Any]] | None = None,
                    namespace: str = "default", max_rounds: int = 200) -> list[dict[str, Any]]:
    """ConfigMap, PVC (when the run creates one), and each Service and Job, in creation order.

    ``defaults`` are the per-stage resource defaults (the chart's
    ``trainer.defaultResources``); None reads $POLYA_DEFAULT_RESOURCES like the operator.
    """
    obj = run_object(run, namespace)
    parsed = r.with_defaults(s.parse_spec(obj["spec"]), defaults)
    image = image or r.default_image()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    jobs: list[p.Attempt] = []
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(max_rounds):
        plan = p.plan(obj, list(jobs), now, parsed=parsed, policy=x.policy(parsed))
        for action in plan.actions:
            for manifest in x.manifests(action, obj["metadata"], parsed, image):
                key = (manifest["kind"], manifest["metadata"]["name"])
                if key not in seen:
                    seen.add(key)
                    out.append(manifest)
        for a in plan.of(p.StartAttempt):
            jobs.append(p.Attempt(
                name=a.name, arm=a.arm, stage=a.stage, attempt=a.attempt, phase="Succeeded",
                created=p.iso(now), started=p.iso(now), finished=p.iso(now),
                progress={"stage": a.stage, "arm": a.arm, "state": "Succeeded",
                          "progress": 100.0, "outputs": {"dir": a.stage}}))
        obj["status"] = plan.status
        now += timedelta(seconds=1)
        if not plan.of(p.StartAttempt) and (p.finished(plan.status) or not plan.actions):
            break
    return out
