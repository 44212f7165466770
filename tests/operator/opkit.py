"""Helpers for the operator tests: the emulator + fake Job controller as a `Cluster`, and
waiting utilities. A plain module (not conftest.py) so that test files can import it by a
name no other directory uses."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import emu
from fakecluster import FakeCluster

RUNS = "/apis/polya.dev/v1alpha1/namespaces/default/polyaruns"
JOBS = "/apis/batch/v1/namespaces/default/jobs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """The emulator + fake controller, driven from sync test code over HTTP."""

    def __init__(self, outcomes: Callable[[str], list[str]] | None = None,
                 runner: Any = None, delay: float = 0.05,
                 chart_values: dict[str, Any] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.outcomes = outcomes
        self.runner = runner
        self.delay = delay
        self.chart_values = chart_values  # the chart's RBAC the operator gets (emu_rbac.py)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.fake: FakeCluster | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        server = asyncio.create_task(
            emu.serve(self.port, ready, self._stop, self.chart_values))
        await ready.wait()
        self.fake = FakeCluster(self.url, self.outcomes, self.delay, self.runner)
        fake = asyncio.create_task(self.fake.run())
        self._ready.set()
        await self._stop.wait()
        fake.cancel()
        await asyncio.gather(server, fake, return_exceptions=True)

    def start(self) -> Cluster:
        self.thread.start()
        assert self._ready.wait(20), "emulator did not start"
        return self

    def stop(self) -> None:
        if self.loop and self._stop:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    # ------------------------------------------------------------------ HTTP helpers
    def call(self, method: str, path: str, body: Any = None,
             ctype: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def create_run(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """POST a PolyaRun; a spec without a model gets a placeholder one (spec.model is
        required; the fake controller never loads it)."""
        spec = {"model": {"name": "org/model"}, **spec}
        code, body = self.call("POST", RUNS, {"apiVersion": "polya.dev/v1alpha1",
                                              "kind": "PolyaRun", "metadata": {"name": name},
                                              "spec": spec})
        assert code == 201, body
        return body

    def run(self, name: str) -> dict[str, Any] | None:
        code, body = self.call("GET", f"{RUNS}/{name}")
        return body if code == 200 else None

    def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        code, body = self.call("PATCH", f"{RUNS}/{name}", patch,
                               "application/merge-patch+json")
        assert code == 200, body

    def jobs(self, run: str | None = None) -> list[str]:
        sel = f"?labelSelector=polya.dev/run%3D{run}" if run else ""
        _, body = self.call("GET", JOBS + sel)
        return sorted(j["metadata"]["name"] for j in body["items"])

    def list(self, path: str) -> list[dict[str, Any]]:
        return self.call("GET", path)[1]["items"]

    def counts(self) -> dict[str, Any]:
        return self.call("GET", "/_emu")[1]

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(emu.kubeconfig(self.url))
        return path


def condition(run: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((run or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return {}


def wait_for(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")




def reconciles(op: Any) -> float:
    """The operator's reconciliations so far (polyarun_reconcile_total, all results)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith("polyarun_reconcile_total{"))


def reconciled_again(cluster: Cluster, op: Any, name: str, timeout: float = 60) -> None:
    """Poke run `name` twice (an annotation patch is a watch event) and wait each time for
    one more reconciliation to end. Afterwards at least one reconciliation that began after
    the first poke has ended, however slow the machine: what "a few resyncs later" means,
    counted instead of slept."""
    for poke in ("1", "2"):
        before = reconciles(op)
        cluster.patch_run(name, {"metadata": {"annotations": {"polya.dev/test-poke": poke}}})
        wait_for(lambda before=before: reconciles(op) > before, timeout,
                 f"a reconciliation of {name} after poke {poke}")
