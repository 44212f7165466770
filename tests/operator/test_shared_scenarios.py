"""The shared scenarios (tests/scenarios.py) against the emulator: the fake Job controller's
pods do what the real trainer image does with the scenario's model (a working one succeeds,
a broken path fails). tests/e2e/test_cluster.py plays the same list on a real cluster."""

from __future__ import annotations

from typing import Any

import pytest
from opkit import RUNS, wait_for
from scenarios import SCENARIOS, Scenario, play


class EmuApi:
    def __init__(self, cluster: Any):
        self.cluster = cluster

    def create(self, name: str, spec: dict[str, Any]) -> None:
        self.cluster.create_run(name, spec)

    def run(self, name: str) -> dict[str, Any] | None:
        return self.cluster.run(name)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.cluster.patch_run(name, patch)

    def delete(self, name: str) -> None:
        assert self.cluster.call("DELETE", f"{RUNS}/{name}")[0] == 200

    def jobs(self, name: str) -> list[str]:
        return self.cluster.jobs(name)

    def wait(self, pred: Any, timeout: float, what: str) -> Any:
        return wait_for(pred, min(timeout, 60), what)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_shared_scenario_on_the_emulator(make_cluster, start_operator, sc: Scenario):
    pod = "succeed" if sc.model == "working" else "fail"
    cluster = make_cluster(outcomes=lambda job: [pod] * 20, delay=0.5)
    start_operator()
    play(sc, EmuApi(cluster), sc.name, "org/model")
