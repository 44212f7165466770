"""Shared pieces of the reliability tests: the operator test harness of tests/operator (the
filled kmock emulator, the FAKE Job controller/kubelet and the operator in a thread) reused
as-is, the operator as a real subprocess (so it can be SIGKILLed), and figure files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_TESTS = ROOT / "tests" / "operator"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(OPERATOR_TESTS))


def _load_operator_harness() -> Any:
    """tests/operator/conftest.py under its own module name (it is not a package)."""
    spec = importlib.util.spec_from_file_location("polya_operator_harness",
                                                  OPERATOR_TESTS / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


from opkit import reconciled_again  # noqa: E402, F401  (re-exported for the tests)

harness = _load_operator_harness()
Cluster = harness.Cluster
condition = harness.condition
wait_for = harness.wait_for
free_port = harness.free_port
JOBS = harness.JOBS
RUNS = harness.RUNS
# Two arms running at once (a ReadWriteMany workspace; on the default ReadWriteOnce claim
# the arms take turns), as these scenarios were written to stress.
TWO_ARMS = {"arms": ["vanilla", "polya"], "storage": {"accessMode": "ReadWriteMany"}}
ALL_STAGES = ["vanilla/rl", "vanilla/evaluate", "polya/generate", "polya/midtrain", "polya/rl",
              "polya/evaluate"]

# The same fixtures as tests/operator (imported into a test module, pytest finds them).
# (registered under their own names; import the *_fixture objects into a test module)
make_cluster_fixture = pytest.fixture(name="make_cluster")(harness.make_cluster.__wrapped__)
start_operator_fixture = pytest.fixture(name="start_operator")(
    harness.start_operator.__wrapped__)


def figures(name: str, data: dict[str, Any]) -> Path:
    """Print the figures and write them to bench/results/reliability-<name>.json."""
    from polya_trainer.runtime.artifacts import atomic_write_json

    data = {"name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    print(f"RELIABILITY {name}: {json.dumps(data, sort_keys=True)}")
    return atomic_write_json(RESULTS / f"reliability-{name}.json", data)


def succeeded(cluster: Any, name: str) -> bool:
    return condition(cluster.run(name), "Succeeded").get("status") == "True"


def finished(cluster: Any, name: str) -> bool:
    return condition(cluster.run(name), "Succeeded").get("status") in ("True", "False")


def emu_state(cluster: Any) -> dict[str, Any]:
    return cluster.call("GET", "/_emu")[1]


def emu_control(cluster: Any, what: str, **body: Any) -> dict[str, Any]:
    code, out = cluster.call("POST", f"/_emu/{what}", body)
    assert code == 200, out
    return out


def jobs_created(cluster: Any) -> dict[str, int]:
    """Job name -> successful creations, as counted by the emulator."""
    return {name: n for rk, _ns, name, n in emu_state(cluster)["created"]
            if rk == "batch/v1/jobs"}


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class OperatorProcess:
    """`python -m polya_operator.main -n default` as a child process (SIGKILL-able)."""

    def __init__(self, kubeconfig: Path, log: Path, resync: float = 0.5,
                 extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.log = log
        self.env = {"KUBECONFIG": str(kubeconfig), "POLYA_RESYNC_SECONDS": str(resync),
                    "POLYA_OPERATOR_METRICS_PORT": str(self.port), "PATH": "/usr/bin:/bin",
                    "PYTHONPATH": f"{ROOT}/operator:{ROOT}/trainer", "HOME": str(log.parent),
                    "POLYA_TRAINER_IMAGE": "trainer:test", **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "polya_operator.main", "-n", "default"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def ready(self) -> bool:
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200

    def healthz(self) -> int | None:
        return http_status(f"http://127.0.0.1:{self.port}/healthz")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(20)


def operator_processes(tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    made: list[OperatorProcess] = []

    def make(kubeconfig: Path, **kw: Any) -> OperatorProcess:
        op = OperatorProcess(kubeconfig, tmp_path / f"operator-{len(made)}.log", **kw)
        made.append(op)
        return op

    yield make
    for op in made:
        op.kill()


operator_process_fixture = pytest.fixture(name="operator_process")(operator_processes)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
