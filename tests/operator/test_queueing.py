"""The operator's one work queue (no API server needed), with controller-runtime's semantics
(client-go util/workqueue: a key waiting in the queue is not added twice; a key added while
it is being processed is processed once more afterwards, never by two workers at once).
These check order and counts, never durations."""

from __future__ import annotations

import asyncio

from polya_operator.handlers import Config, Operator


async def test_events_of_one_run_coalesce_and_never_overlap() -> None:
    op = Operator(Config(metrics_port=0, workers=4))
    op.queue = asyncio.Queue()
    release = asyncio.Event()
    calls: list[str] = []
    running: set[str] = set()

    async def fake_reconcile(namespace: str, name: str) -> None:
        assert name not in running, "two reconciles of one run at once"
        running.add(name)
        calls.append(name)
        await release.wait()
        running.discard(name)

    op.reconcile = fake_reconcile  # type: ignore[method-assign]
    workers = [asyncio.create_task(op._worker()) for _ in range(4)]
    for _ in range(3):  # queued three times before any worker ran: once
        op.enqueue(("ns", "a"))
    await asyncio.sleep(0.01)
    assert calls == ["a"]
    for _ in range(5):  # events arriving during the reconcile: one more, not five
        op.enqueue(("ns", "a"))
    op.enqueue(("ns", "b"))
    await asyncio.sleep(0.01)
    release.set()
    for _ in range(20):
        await asyncio.sleep(0.01)
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert sorted(calls) == ["a", "a", "b"]
