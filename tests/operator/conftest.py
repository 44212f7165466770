"""Fixtures: the filled kmock emulator (own thread and loop), the fake Job controller in the
same loop, and the real operator (kopf) in another thread, all talking HTTP. The operator
runs as the chart's ServiceAccount under the chart's RBAC (emu_rbac.py); each cluster's
teardown checks that nothing it asked was refused."""

from __future__ import annotations

import contextlib
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from opkit import JOBS, RUNS, Cluster, condition, free_port, wait_for  # noqa: F401


@pytest.fixture
def make_cluster(tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Cluster]]:
    from polya_operator import kube

    made: list[Cluster] = []

    def make(**kw: Any) -> Cluster:
        cluster = Cluster(**kw).start()
        made.append(cluster)
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "kubeconfig")))
        kube.forget()
        return cluster

    yield make
    states = []
    for cluster in made:
        with contextlib.suppress(OSError):  # an emulator that is gone: nothing to check
            states.append((cluster, cluster.counts()))
        cluster.stop()
    kube.forget()
    for cluster, state in states:
        check_rbac(cluster, state)
        assert not (cluster.fake and cluster.fake.errors), cluster.fake.errors


OPERATOR_AGENTS = ("kopf", "polya-operator")


def check_rbac(cluster: Cluster, state: dict[str, Any]) -> None:
    """The operator ran as the chart's ServiceAccount (never as the tests' admin) and the
    chart's RBAC refused it nothing (emu_rbac.py)."""
    import emu_rbac

    operator = emu_rbac.chart_policy(cluster.chart_values).operator.name
    assert not state["forbidden"], f"the chart's RBAC refused: {state['forbidden']}"
    users = {user for agent, user, _n in state["identities"] if agent in OPERATOR_AGENTS}
    assert users <= {operator}, f"the operator ran as {users}, not {operator}"


class Operator:
    def __init__(self, metrics_port: int, resync: float = 0.5, **kw: Any):
        from polya_operator.handlers import Config
        from polya_operator.main import start_in_thread

        self.metrics_port = metrics_port
        self.config = Config(resync=resync, metrics_port=metrics_port, image="trainer:test",
                             **kw)
        self.thread, self.stop_flag = start_in_thread(["default"], self.config)

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), "operator did not stop"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            return resp.read().decode()


@pytest.fixture
def start_operator() -> Iterator[Callable[..., Operator]]:
    ops: list[Operator] = []

    def start(**kw: Any) -> Operator:
        op = Operator(free_port(), **kw)
        ops.append(op)
        return op

    yield start
    for op in ops:
        if op.thread.is_alive():
            op.stop()
