"""Fixtures: the filled kmock emulator (own thread and loop), the fake Job controller in the
same loop, and the real operator (kopf) in another thread, all talking HTTP."""

from __future__ import annotations

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
    for cluster in made:
        cluster.stop()
    kube.forget()


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
