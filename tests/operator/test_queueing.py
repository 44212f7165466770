"""How the operator orders and merges its work (no API server needed): Job creations go before
the deferred bookkeeping, reconciles of one run coalesce, and the echo of our own status write
triggers no reconcile. These check order and counts, never durations."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from polya_operator.handlers import Config, Lane, Operator


async def test_deferred_work_waits_for_job_creations() -> None:
    lane = Lane(quiet=0.01, burst_quiet=0.01)
    order: list[str] = []
    started = asyncio.Event()

    async def create_job() -> None:
        with lane.urgent():
            started.set()
            await asyncio.sleep(0.1)
            order.append("job")

    async def bookkeeping() -> None:
        await started.wait()
        async with lane.deferred():
            order.append("status")

    await asyncio.gather(bookkeeping(), create_job())
    assert order == ["job", "status"]


async def test_deferred_work_is_not_starved() -> None:
    lane = Lane(quiet=0.01, patience=0.0)
    order: list[str] = []
    with lane.urgent():  # a Job creation that never ends
        async with lane.deferred():
            order.append("status")
    assert order == ["status"]


async def test_reconciles_of_one_run_coalesce() -> None:
    op = Operator(Config(metrics_port=0))
    release = asyncio.Event()
    calls: list[str] = []

    async def fake_reconcile(namespace: str, name: str) -> str:
        calls.append(name)
        await release.wait()
        return "success"

    op._reconcile = fake_reconcile  # type: ignore[method-assign]
    op.kick("ns", "a")
    await asyncio.sleep(0)  # the first one starts and holds the run's lock
    for _ in range(5):  # events arriving meanwhile: one more reconcile, not five
        op.kick("ns", "a")
    op.kick("ns", "b")
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*op._inflight)
    assert sorted(calls) == ["a", "a", "b"]


def test_echo_of_our_own_status_write_is_recognised() -> None:
    op = Operator(Config(metrics_port=0))
    mine: dict[str, Any] = {"observedGeneration": 2, "currentStage": None, "progress": 5.0,
                            "stages": [{"name": "rl", "jobName": "r-rl-0", "eta": None}]}
    op.status[("ns", "r", "u1")] = mine
    echoed = {"observedGeneration": 2, "progress": 5.0,  # the server dropped the nulls
              "stages": [{"name": "rl", "jobName": "r-rl-0"}]}

    def body(generation: int, status: dict[str, Any], uid: str = "u1") -> kopf.Body:
        return kopf.Body({"metadata": {"name": "r", "namespace": "ns", "uid": uid,
                                       "generation": generation}, "status": status})

    assert op._echo("ns", "r", body(2, echoed))
    assert not op._echo("ns", "r", body(3, echoed))  # the spec changed
    assert not op._echo("ns", "r", body(2, {**echoed, "progress": 7.0}))  # someone else
    assert not op._echo("ns", "r", body(2, echoed, uid="u2"))  # a new run, same name
