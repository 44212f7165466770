"""`polya operator [options]`: run the kopf operator.

Options (environment in brackets):
  -n/--namespace NS     watch these namespaces (repeatable) [POLYA_NAMESPACES, comma list]
  -A/--all-namespaces   watch the whole cluster (the default when no namespace is given)
  --peering NAME        kopf peering (needs the kopf peering CRDs) [POLYA_PEERING];
                        without it the operator runs standalone: run ONE replica with the
                        Deployment strategy Recreate so two never act at once
  --verbose / --quiet   log level
Other arguments are refused (the operator calls kopf.operator() itself; there is no
`kopf run` command line to pass them on to).
Other environment: POLYA_LOG_FORMAT=json (JSON logs), POLYA_TRAINER_IMAGE,
POLYA_DEFAULT_RESOURCES (JSON per-stage resource defaults, see resources.default_resources),
POLYA_OPERATOR_METRICS_PORT (8080: /metrics, /healthz, /readyz), POLYA_RESYNC_SECONDS (30),
POLYA_PROGRESS_BUDGET_SECONDS (10: time per resync for the pods' live /progress polls),
POLYA_WEBHOOK=1 (+ POLYA_WEBHOOK_PORT, POLYA_WEBHOOK_HOST, POLYA_WEBHOOK_CERT,
POLYA_WEBHOOK_KEY, POLYA_WEBHOOK_CA; see webhook.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from typing import Any

import kopf

from .handlers import Config, make_registry


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="polya operator", description="Run the PolyaRun operator.")
    ap.add_argument("-n", "--namespace", action="append", default=[])
    ap.add_argument("-A", "--all-namespaces", action="store_true")
    ap.add_argument("--standalone", action="store_true", help="(default) no peering")
    ap.add_argument("--peering", default=os.environ.get("POLYA_PEERING") or None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args([a for a in argv if a != "--"])
    if not args.namespace and not args.all_namespaces:
        env = os.environ.get("POLYA_NAMESPACES", "")
        args.namespace = [x.strip() for x in env.split(",") if x.strip()]
    return args


async def operate(namespaces: list[str], *, clusterwide: bool = False,
                  peering: str | None = None, config: Config | None = None,
                  stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run the operator until ``stop_flag`` is set (an asyncio or threading Event)."""
    config = config or Config()
    if config.namespaces is None:
        config.namespaces = [] if clusterwide else list(namespaces)
    registry, _ = make_registry(config)
    await kopf.operator(registry=registry, settings=kopf.OperatorSettings(),
                        standalone=peering is None, peering_name=peering,
                        clusterwide=clusterwide or not namespaces, namespaces=namespaces,
                        stop_flag=stop_flag, ready_flag=ready_flag)


def main(kopf_args: list[str] | None = None) -> int:
    args = parse_args(list(kopf_args or []))
    fmt = kopf.LogFormat.JSON if os.environ.get("POLYA_LOG_FORMAT") == "json" \
        else kopf.LogFormat.FULL
    kopf.configure(verbose=args.verbose, quiet=args.quiet, log_format=fmt)
    asyncio.run(operate(args.namespace, clusterwide=args.all_namespaces, peering=args.peering))
    return 0


def start_in_thread(namespaces: list[str], config: Config | None = None,
                    ) -> tuple[threading.Thread, threading.Event]:
    """Run the operator in a background thread (tests, benchmarks); set the event to stop."""
    stop = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(operate(
        namespaces, config=config, stop_flag=stop),), daemon=True, name="polya-operator")
    thread.start()
    return thread, stop


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
