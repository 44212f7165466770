"""`polya`: one command line for people.

The workload's commands (validate, crd, run, stage, toy-model, report, inspect) come from
:mod:`polya_trainer.cli`; this module adds the two that need the operator, so imports point
one way only (operator -> workload):

    polya plan FILE [-o yaml|json] show the stages and Jobs, or every object the operator
                                  would create (--image, --default-resources)
    polya operator [kopf args]    run the operator
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from polya_trainer import cli as workload
from polya_trainer import spec as s


def _batches(spec: s.PolyaRunSpec, stage: str) -> str:
    """A training stage's derived batch sizes, as its processes will run them."""
    if stage not in ("midtrain", "rl"):
        return ""
    cfg = getattr(spec.stages, stage)
    processes = cfg.resources.processes()
    steps = cfg.accumulation(processes)
    update = cfg.per_device_batch_size * processes * steps
    unit = "completions" if stage == "rl" else "examples"
    out = (f"  update={update} {unit} ({cfg.per_device_batch_size}/process x {processes} "
           f"process(es) x {steps} accumulation step(s))")
    if stage == "rl" and cfg.prompts_per_rollout:
        out += (f" rollout={cfg.prompts_per_rollout} prompts x {cfg.num_generations} = "
                f"{cfg.prompts_per_rollout * cfg.num_generations} completions")
    return out


def _cmd_plan(args: argparse.Namespace) -> int:
    runs = s.load_runs(args.file)
    if not args.output:
        for run in runs:
            print(f"PolyaRun {run.metadata.name}: arms {', '.join(run.spec.arms)}")
            for arm in run.spec.arms:
                for stage in run.spec.stages_for(arm):
                    res = getattr(run.spec.stages, stage).resources
                    print(f"  {arm:8s} {stage:9s} job {run.metadata.name}-{arm}-{stage}-0  "
                          f"gpus={res.gpus} nodes={res.nodes}{_batches(run.spec, stage)}")
        return 0
    from .preview import planned_objects
    from .resources import default_resources

    try:
        defaults = default_resources(args.default_resources)
    except ValueError as exc:
        print(f"--default-resources: {exc}", file=sys.stderr)
        return 2
    objects = [obj for run in runs for obj in planned_objects(
        run, image=args.image, defaults=defaults, namespace=args.namespace)]
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from .main import main as operator_main

    return operator_main(args.kopf_args)


def add_commands(sub: Any) -> None:
    pl = sub.add_parser("plan", help="show the stages and Jobs of a PolyaRun, or (-o) every "
                        "object the operator would create")
    pl.add_argument("file")
    pl.add_argument("-o", "--output", choices=("yaml", "json"),
                    help="print the ConfigMap, PVC, Services and Jobs (a table without -o)")
    pl.add_argument("--image", default=None, help="trainer image of runs without spec.image "
                    "(default: $POLYA_TRAINER_IMAGE or the operator's default)")
    pl.add_argument("--default-resources", default=None, metavar="JSON",
                    help="per-stage resource defaults as the operator's "
                    "$POLYA_DEFAULT_RESOURCES, e.g. '{\"rl\": {\"gpus\": 4}}' "
                    "(default: that variable)")
    pl.add_argument("--namespace", default="default",
                    help="namespace of runs whose file names none")
    pl.set_defaults(func=_cmd_plan)

    op = sub.add_parser("operator", help="run the operator (extra args go to kopf run)")
    op.add_argument("kopf_args", nargs=argparse.REMAINDER)
    op.set_defaults(func=_cmd_operator)


def main(argv: list[str] | None = None) -> int:
    return workload.main(argv, extend=add_commands)


if __name__ == "__main__":
    raise SystemExit(main())
