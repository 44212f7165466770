"""Alerts and dashboards: promtool (check + unit tests), metric names against what the code
exports, and a live Prometheus on 127.0.0.1 scraping a trainer Reporter and the operator."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from artifacts_env import CHART, ROOT

RULES = CHART / "rules" / "polyarun.rules.yaml"
RULES_TEST = ROOT / "tests" / "artifacts" / "rules_test.yaml"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
# Grafana variables -> values for checking and running the queries.
VARIABLES = {"${run}": ".*", "$run": ".*", "$namespace": ".*", "$__rate_interval": "15s",
             "$__range": "1h", "$__interval": "15s"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
            if "alert" in r]


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every panel target."""
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets") or []:
                out.append((path.name, panel["title"], target["expr"]))
    return out


def substitute(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers left once strings, label matchers,
    ranges, grouping clauses and function calls are removed."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or m.group().lower() in KEYWORDS:
            continue
        if re.match(r"\d", expr[m.start() - 1:m.start()] or "x"):  # part of a number: 1e5, 5m
            continue
        names.add(m.group())
    return names


def exported_names() -> dict[str, set[str]]:
    """Sample names each side can export, from its prometheus_client registry."""
    from polya_operator import metrics as operator_metrics
    from polya_trainer.runtime import progress

    def names(registry: Any) -> set[str]:
        return set(registry._names_to_collectors)  # every sample name: _total, _bucket, ...

    return {"trainer": names(progress.REGISTRY), "operator": names(operator_metrics.REGISTRY)}


# ------------------------------------------------------------------ promtool


def test_promtool_check_rules(promtool: str) -> None:
    proc = _run(promtool, "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in proc.stdout


def test_promtool_unit_tests(promtool: str) -> None:
    proc = _run(promtool, "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tested = {t["alertname"] for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert {r["alert"] for r in alert_rules()} == tested


def test_every_alert_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for rule in alert_rules():
        assert rule["alert"] in doc, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The checks above can fail: a syntax error in a copied rule is reported."""
    groups = yaml.safe_load(RULES.read_text())
    groups["groups"][0]["rules"][0]["expr"] = "sum by (job rate(x[5m])"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(groups))
    assert _run(promtool, "check", "rules", str(bad)).returncode != 0


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 25
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
        for i, (_, _, expr) in enumerate(queries)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = _run(promtool, "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboards_are_well_formed() -> None:
    from grafana_foundation_sdk.models.dashboard import Dashboard

    uids = set()
    for path in DASHBOARDS:
        data = json.loads(path.read_text())
        Dashboard.from_json(data)  # the SDK's model loads it
        uids.add(data["uid"])
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids)), path
        for panel in data["panels"]:
            assert panel["gridPos"]["w"] <= 24
            for target in panel.get("targets") or []:
                assert target["datasource"]["uid"] == "${datasource}"
        assert {v["name"] for v in data["templating"]["list"]} >= {"datasource"}
    assert uids == {"polyarun-operator", "polyarun-training"}


# ------------------------------------------------------------------ metric names


def test_metric_name_extraction() -> None:
    names = metric_names('histogram_quantile(0.95, sum by (le, stage) (rate(a_b_bucket'
                         '{x=~"y"}[1h]))) / on () c_total offset 5m and time() - 1e3')
    assert names == {"a_b_bucket", "c_total"}


def test_every_metric_in_dashboards_and_alerts_is_exported() -> None:
    exported = exported_names()
    known = exported["trainer"] | exported["operator"]
    used: dict[str, str] = {}
    for name, title, expr in dashboard_queries():
        for metric in metric_names(substitute(expr)):
            used[metric] = f"{name}: {title}"
    for rule in alert_rules():
        for metric in metric_names(rule["expr"]):
            used[metric] = f"alert {rule['alert']}"
    unknown = {m: where for m, where in used.items()
               if m not in known and not m.startswith("DCGM_FI_")}
    assert unknown == {}
    # Each side's metrics appear somewhere: the dashboards cover both exporters.
    assert any(m in exported["trainer"] for m in used)
    assert any(m in exported["operator"] for m in used)


# ------------------------------------------------------------------ live Prometheus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    data = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", data
    return data["data"]["result"]


@pytest.fixture
def operator_metrics_port() -> Iterator[int]:
    """The operator's real /metrics server (polya_operator.metrics.serve) on its own loop,
    fed with values through the operator's own metric objects."""
    from polya_operator import metrics as m

    m.build_info()
    m.observed_event()
    m.set_states({"Running": 1, "Succeeded": 2})
    for result in ("ok", "error"):
        m.RECONCILE_TOTAL.labels("polyarun", result).inc(3)
    m.RECONCILE_ERRORS.labels("polyarun").inc()
    m.RECONCILE_TIME.labels("polyarun").observe(0.02)
    m.RUNS_FINISHED.labels("Succeeded").inc()
    m.STAGE_DURATION.labels("midtrain", "Succeeded").observe(1200)
    m.STAGE_RETRIES.labels("rl", "Preempted").inc()
    m.STAGE_PREEMPTIONS.labels("rl").inc()
    m.RUN_PROGRESS.labels("team-a", "demo").set(0.2)
    m.RUN_STAGE_PROGRESS.labels("team-a", "demo", "polya", "rl").set(0.4)
    m.TIME_TO_RUNNING.labels("rl").observe(42)
    m.JOBS_CREATED.labels("rl").inc()

    port = _free_port()
    loop = asyncio.new_event_loop()
    health = m.Health(resync=30)
    health.ready = True
    runner = loop.run_until_complete(m.serve(port, health, host="127.0.0.1"))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def trainer_metrics_port() -> Iterator[int]:
    """A real trainer Reporter serving /metrics, as a stage pod does."""
    from polya_trainer.runtime.progress import Reporter

    reporters = [Reporter("rl", "polya"), Reporter("generate", "polya"),
                 Reporter("evaluate", "polya")]
    rl, gen, ev = reporters
    rl.start(total=100, unit="steps")
    rl.update(done=40, loss=0.7, learning_rate=1e-6, epoch=0.4, step=40, reward_mean=0.55,
              reward_std=0.2, tokens_per_second=1234.0)
    gen.start(total=50)
    gen.update(done=50, acceptance_rate=0.6, accepted=120)
    ev.start(total=10)
    ev.update(done=5, accuracy=0.5)
    ev.eval_result("gsm8k", "final", 1, 0.42)
    port = rl.serve(0, host="127.0.0.1")
    try:
        yield port
    finally:
        rl.close()


def test_live_prometheus_scrapes_and_dashboards_return_data(
        prometheus_bin: str, tmp_path: Path, operator_metrics_port: int,
        trainer_metrics_port: int) -> None:
    # The trainer job carries the labels the chart's PodMonitor relabels onto pod metrics.
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "polyarun-operator", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{operator_metrics_port}"]}]},
            {"job_name": "polyarun-trainer", "static_configs": [{
                "targets": [f"127.0.0.1:{trainer_metrics_port}"],
                "labels": {"namespace": "team-a", "run": "demo", "pod": "demo-polya-rl-0-x"}}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        # Enough samples of both targets for rate()/increase() over the 15s window.
        deadline = time.monotonic() + 60
        while True:
            try:
                up = _query(base, "count_over_time(up[15s]) >= 4 and up == 1")
            except OSError:
                up = []
            if len(up) == 2:
                break
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        empty = []
        checked = 0
        for name, title, expr in dashboard_queries():
            if "DCGM_FI_" in expr:  # no GPU exporter here
                continue
            checked += 1
            if not _query(base, substitute(expr)):
                empty.append(f"{name}: {title}: {expr}")
        assert empty == []
        assert checked >= 25
        # Labels flow through: the run's progress carries namespace/name (honor_labels).
        (series,) = _query(base, 'polyarun_run_progress_ratio{namespace="team-a",name="demo"}')
        assert float(series["value"][1]) == pytest.approx(0.2)
        (series,) = _query(base, 'polyarun_run_stage_progress_ratio{name="demo",stage="rl"}')
        assert float(series["value"][1]) == pytest.approx(0.4)
        (loss,) = _query(base, 'polyarun_train_loss{run="demo",stage="rl"}')
        assert float(loss["value"][1]) == pytest.approx(0.7)
        # The alert rules load into the live server; with the operator up, it is not "down".
        rules = _get(f"{base}/api/v1/rules")["data"]["groups"]
        states = {r["name"]: r["state"] for g in rules for r in g["rules"]}
        assert set(states) == {r["alert"] for r in alert_rules()}
        assert states["PolyaRunOperatorDown"] == "inactive"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
