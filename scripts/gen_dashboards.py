"""Generate the Grafana dashboards of the chart (charts/polyarun/dashboards/*.json).

    .venv/bin/python scripts/gen_dashboards.py [--check]

Built with grafana-foundation-sdk (Grafana 11.6 types). Every query uses only metrics the
operator (polya_operator.metrics) and the trainer (polya_trainer.runtime.progress) export, plus
DCGM exporter metrics for GPUs; tests/artifacts checks that, parses every query with promtool
and runs the queries against a live Prometheus. `--check` exits 1 when the committed files
differ from what this script generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT = Path(__file__).resolve().parent.parent / "charts" / "polyarun" / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Selectors shared by the training dashboard's queries.
RUN = 'namespace=~"$namespace", name=~"$run"'  # operator metrics: the run is `name`
POD = 'namespace=~"$namespace", run=~"$run"'  # trainer metrics: PodMonitor adds `run`
GPU = 'namespace=~"$namespace", pod=~"(${run})-.*"'  # DCGM: pods are <run>-<arm>-<stage>-...


def q(expr: str, legend: str = "", instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DS)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query


def ts(title: str, unit: str, *queries: prometheus.Dataquery, desc: str = "",
       w: int = 12, h: int = 8) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DS).span(w).height(h)
    if desc:
        panel = panel.description(desc)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def st(title: str, unit: str, query: prometheus.Dataquery, desc: str = "",
       w: int = 6, h: int = 4) -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(DS).span(w).height(h)
    return panel.description(desc).with_target(query) if desc else panel.with_target(query)


def datasource_var() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_var(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label).datasource(DS).query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(VariableOption(text="All", value="$__all", selected=True)))


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(description)
            .tags(["polyarun", "kopf", "training"]).refresh("30s").time("now-6h", "now")
            .timezone("browser").tooltip(DashboardCursorSync.CROSSHAIR).editable()
            .with_variable(datasource_var()))


def operator_dashboard() -> dashboard.Dashboard:
    rate = "$__rate_interval"
    d = base("polyarun-operator", "PolyaRun / Operator",
             "Health of the PolyaRun operator: reconciles, errors, latency, stage outcomes.")
    d = (d.with_row(dashboard.Row("Health"))
         .with_panel(st("Operator up", "none", q("sum(polyarun_build_info)", instant=True),
                        "Operator processes exporting metrics (1 expected)."))
         .with_panel(st("Version", "none",
                        q("max by (version, kopf_version, python_version) (polyarun_build_info)",
                          "{{version}} (kopf {{kopf_version}}, python {{python_version}})",
                          instant=True)))
         .with_panel(st("Seconds since last watch event", "s",
                        q("time() - max(polyarun_watch_last_event_timestamp_seconds)",
                          instant=True)))
         .with_panel(st("Runs by state", "none",
                        q("sum by (state) (polyarun_runs)", "{{state}}", instant=True)))
         .with_row(dashboard.Row("Reconcile"))
         .with_panel(ts("Reconciles per second", "ops",
                        q(f"sum by (controller, result) (rate(polyarun_reconcile_total[{rate}]))",
                          "{{controller}} {{result}}"), w=8))
         .with_panel(ts("Reconcile errors per second", "ops",
                        q(f"sum by (controller) (rate(polyarun_reconcile_errors_total[{rate}]))",
                          "{{controller}}"), w=8))
         .with_panel(ts("Reconcile latency", "s", *[
             q(f"histogram_quantile({p}, sum by (le, controller) "
               f"(rate(polyarun_reconcile_time_seconds_bucket[{rate}])))",
               f"p{int(p * 100)} {{{{controller}}}}") for p in (0.5, 0.95, 0.99)], w=8))
         .with_row(dashboard.Row("Stages"))
         .with_panel(ts("Stage duration (p50, p95)", "s", *[
             q(f"histogram_quantile({p}, sum by (le, stage) "
               f"(rate(polyarun_stage_duration_seconds_bucket[1h])))",
               f"p{int(p * 100)} {{{{stage}}}}") for p in (0.5, 0.95)]))
         .with_panel(ts("Time from Job creation to Running (p95)", "s",
                        q("histogram_quantile(0.95, sum by (le, stage) "
                          "(rate(polyarun_time_to_running_seconds_bucket[1h])))", "{{stage}}"),
                        desc="Queueing for GPUs shows here first."))
         .with_panel(ts("Stage attempts finished per hour", "short",
                        q("sum by (stage, result) "
                          "(increase(polyarun_stage_duration_seconds_count[1h]))",
                          "{{stage}} {{result}}"), w=8))
         .with_panel(ts("Retries and preemptions per hour", "short",
                        q("sum by (stage, reason) (increase(polyarun_stage_retries_total[1h]))",
                          "retry {{stage}} {{reason}}"),
                        q("sum by (stage) (increase(polyarun_stage_preemptions_total[1h]))",
                          "preempted {{stage}}"), w=8))
         .with_panel(ts("Jobs created and runs finished per hour", "short",
                        q("sum by (stage) (increase(polyarun_jobs_created_total[1h]))",
                          "jobs {{stage}}"),
                        q("sum by (result) (increase(polyarun_runs_finished_total[1h]))",
                          "runs {{result}}"), w=8)))
    return d


def training_dashboard() -> dashboard.Dashboard:
    d = base("polyarun-training", "PolyaRun / Runs & training",
             "Per-run progress, training curves, generation acceptance, evaluation pass@k "
             "and GPU use (DCGM exporter).")
    d = (d.with_variable(label_var("namespace", "Namespace",
                                   "label_values(polyarun_run_progress_ratio, namespace)"))
         .with_variable(label_var(
             "run", "Run", 'label_values(polyarun_run_progress_ratio{namespace=~"$namespace"},'
             " name)")))
    d = (d.with_row(dashboard.Row("Runs"))
         .with_panel(bargauge.Panel().title("Run progress (operator)").unit("percentunit")
                     .min(0).max(1).datasource(DS).span(4).height(8)
                     .with_target(q(f"max by (namespace, name) "
                                    f"(polyarun_run_progress_ratio{{{RUN}}})",
                                    "{{namespace}}/{{name}}", instant=True)))
         .with_panel(bargauge.Panel().title("Stage progress (operator)").unit("percentunit")
                     .min(0).max(1).datasource(DS).span(8).height(8)
                     .with_target(q(f"max by (namespace, name, arm, stage) "
                                    f"(polyarun_run_stage_progress_ratio{{{RUN}}})",
                                    "{{namespace}}/{{name}} {{arm}} {{stage}}", instant=True)))
         .with_panel(ts("Stage progress (trainer)", "percentunit",
                        q(f"polyarun_stage_progress_ratio{{{POD}}}", "{{run}} {{arm}}/{{stage}}"),
                        w=6))
         .with_panel(ts("Stage ETA", "s",
                        q(f"polyarun_stage_eta_seconds{{{POD}}}", "{{run}} {{arm}}/{{stage}}"),
                        w=6))
         .with_row(dashboard.Row("Training"))
         .with_panel(ts("Loss", "none",
                        q(f"polyarun_train_loss{{{POD}}}", "{{run}} {{arm}}/{{stage}}"), w=8))
         .with_panel(ts("Reward (GRPO)", "none",
                        q(f"polyarun_train_reward_mean{{{POD}}}", "mean {{run}} {{arm}}"),
                        q(f"polyarun_train_reward_std{{{POD}}}", "std {{run}} {{arm}}"), w=8))
         .with_panel(ts("Tokens per second", "short",
                        q(f"sum by (run, arm, stage) (polyarun_tokens_per_second{{{POD}}})",
                          "{{run}} {{arm}}/{{stage}}"), w=8))
         .with_panel(ts("Learning rate", "none",
                        q(f"polyarun_train_learning_rate{{{POD}}}", "{{run}} {{arm}}/{{stage}}"),
                        w=8))
         .with_panel(ts("Epoch and step", "short",
                        q(f"polyarun_train_epoch{{{POD}}}", "epoch {{run}} {{arm}}/{{stage}}"),
                        q(f"polyarun_train_step{{{POD}}}", "step {{run}} {{arm}}/{{stage}}"), w=8))
         .with_panel(ts("Items done / total", "short",
                        q(f"polyarun_stage_items{{{POD}}}", "{{state}} {{run}} {{arm}}/{{stage}}"),
                        w=8))
         .with_row(dashboard.Row("Generate and evaluate"))
         .with_panel(ts("Generation acceptance rate", "percentunit",
                        q(f"polyarun_generate_acceptance_ratio{{{POD}}}", "{{run}} {{arm}}"), w=8))
         .with_panel(ts("Accepted samples", "short",
                        q(f"polyarun_generate_accepted{{{POD}}}", "{{run}} {{arm}}"), w=8))
         .with_panel(ts("Evaluation running accuracy", "percentunit",
                        q(f"polyarun_eval_running_accuracy{{{POD}}}", "{{run}} {{arm}}"), w=8))
         .with_panel(table.Panel().title("pass@k by benchmark and checkpoint").datasource(DS)
                     .unit("percentunit").span(24).height(9)
                     .with_target(q(f"max by (run, arm, benchmark, checkpoint, k) "
                                    f"(polyarun_eval_pass_at_k{{{POD}}})", instant=True)
                                  .format(PromQueryFormat.TABLE)))
         .with_row(dashboard.Row("GPUs (DCGM exporter)"))
         .with_panel(ts("GPU utilisation", "percent",
                        q(f"avg by (pod, gpu) (DCGM_FI_DEV_GPU_UTIL{{{GPU}}})",
                          "{{pod}} gpu{{gpu}}"), w=8))
         .with_panel(ts("GPU memory used", "decmbytes",
                        q(f"sum by (pod, gpu) (DCGM_FI_DEV_FB_USED{{{GPU}}})",
                          "{{pod}} gpu{{gpu}}"), w=8))
         .with_panel(ts("GPU power", "watt",
                        q(f"sum by (pod) (DCGM_FI_DEV_POWER_USAGE{{{GPU}}})", "{{pod}}"), w=8)))
    return d


DASHBOARDS = {
    "polyarun-operator.json": operator_dashboard,
    "polyarun-training.json": training_dashboard,
}


def _number(board: Any) -> Any:
    """Give panels unique ids and queries refIds A, B, ... (the builders leave them unset)."""
    for i, panel in enumerate(board.panels or [], start=1):
        panel.id_val = i
        for j, target in enumerate(getattr(panel, "targets", None) or []):
            target.ref_id = chr(ord("A") + j)
    return board


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(_number(build().build()), cls=JSONEncoder, indent=1,
                             sort_keys=True) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = ap.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run scripts/gen_dashboards.py): {', '.join(stale)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
