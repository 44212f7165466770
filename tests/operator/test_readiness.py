"""Readiness (/readyz) waits for kopf's indexes (issue 27): the operator is ready once an
event handler has run (kopf runs none before every index has listed once) or when there is no
PolyaRun to list; not while the API cannot be listed."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from kopf._core.reactor import processing
from polya_operator import handlers, kube

RUN = {"metadata": {"name": "r1", "namespace": "default"}}


class FakeApi:
    def __init__(self, runs: list[dict[str, Any]] | None) -> None:
        self.runs = runs

    async def list_runs(self, namespaces: list[str | None]) -> list[dict[str, Any]]:
        if self.runs is None:
            raise OSError("connection refused")
        return self.runs


def _operator(monkeypatch: pytest.MonkeyPatch, runs: list[dict[str, Any]] | None
              ) -> handlers.Operator:
    monkeypatch.setattr(kube, "client", lambda: FakeApi(runs))
    op = handlers.Operator(handlers.Config(metrics_port=0, watch_check=0))
    op.idx = {"runs": {}, "jobs": {}, "pods": {}}  # kopf's indexes, not listed yet
    return op


def test_kopf_still_holds_handlers_until_every_index_has_listed() -> None:
    """The signal we rely on (kopf 1.45, process_resource_event)."""
    assert "operator_indexed.wait_for(True)" in inspect.getsource(
        processing.process_resource_event)


async def test_not_ready_until_an_event_handler_has_run(monkeypatch) -> None:
    op = _operator(monkeypatch, [RUN])
    await op.resync_once()
    assert not op.health.ready  # runs exist, kopf has not let any handler run yet
    await op.on_run(type=None, body=RUN, namespace="default", name="r1")  # listed
    assert op.health.ready  # at once, not a resync later
    await op.resync_once()
    assert op.health.ready


async def test_child_events_count_too(monkeypatch) -> None:
    op = _operator(monkeypatch, [RUN])
    await op.on_child(namespace="default", labels={"polya.dev/run": "r1"})
    await op.resync_once()
    assert op.health.ready


async def test_nothing_to_list_is_ready_and_an_unreachable_api_is_not(monkeypatch) -> None:
    op = _operator(monkeypatch, [])
    await op.resync_once()
    assert op.health.ready
    op = _operator(monkeypatch, None)
    await op.resync_once()
    assert not op.health.ready
