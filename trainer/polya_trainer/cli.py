"""The workload's command line (``python -m polya_trainer``); ``polya`` adds the operator's
``plan`` and ``operator`` commands to it (:mod:`polya_operator.cli`).

    polya validate FILE...        check PolyaRun files, naming each bad field
    polya crd                     print the CustomResourceDefinition
    polya run FILE [--workdir]    run a whole PolyaRun on this machine
    polya stage STAGE --spec FILE --workdir DIR --arm ARM   one stage (the pod entrypoint)
    polya toy-model DIR           build the small CPU-trainable base model
    polya report WORKDIR          (re)build the comparison report
    polya sweep-report --spec FILE --workdir DIR [--variants DIR]   (re)build a sweep's report
    polya inspect WORKDIR         browse generated samples (--heuristic, --min-score, --limit)

Heavy imports (torch) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polya_trainer import spec as s
from polya_trainer.runtime.launcher import add_stage_arguments


def _cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            runs = s.load_runs(path)
        except s.SpecError as exc:
            bad += 1
            for field, msg in exc.errors:
                print(f"{path}: {field or '<root>'}: {msg}", file=sys.stderr)
        except (OSError, ValueError) as exc:  # unreadable file or YAML syntax
            bad += 1
            print(f"{path}: {exc}", file=sys.stderr)
        else:
            for run in runs:
                print(f"{path}: {run.metadata.name}: valid")
    return 1 if bad else 0


def _cmd_crd(args: argparse.Namespace) -> int:
    from polya_trainer.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    from polya_trainer.stages.entry import run_entry

    return run_entry(args.stage, args.spec, args.workdir, args.arm)


def _cmd_run(args: argparse.Namespace) -> int:
    from polya_trainer.engine.local import run_file

    return run_file(args.file, workdir=args.workdir, arms=args.arm, quiet=args.quiet,
                    parallel=args.parallel or None)


def _cmd_toy(args: argparse.Namespace) -> int:
    from polya_trainer.toy import build_toy_model

    path = build_toy_model(args.dir, force=args.force)
    print(path)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from polya_trainer.report import write_report

    print(write_report(Path(args.workdir)))
    return 0


def _cmd_sweep_report(args: argparse.Namespace) -> int:
    from polya_trainer.engine.local import write_sweep_report

    run = s.load_runs(args.spec)[0]
    if run.spec.sweep is None:
        print(f"{args.spec}: {run.metadata.name} has no spec.sweep", file=sys.stderr)
        return 2
    print(write_sweep_report(run, args.workdir, args.variants))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from polya_trainer.browse import render

    shown = render(args.workdir, heuristic=args.heuristic, min_score=args.min_score,
                   question=args.question, sort=args.sort, limit=args.limit)
    return 0 if shown else 1


def parser(extend: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The workload's commands; ``extend`` adds more (the operator's ``plan`` and ``operator``)."""
    p = argparse.ArgumentParser(prog="polya", description="Pólya mid-training before RL.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate PolyaRun files")
    v.add_argument("files", nargs="+")
    v.set_defaults(func=_cmd_validate)

    sub.add_parser("crd", help="print the CRD").set_defaults(func=_cmd_crd)

    st = add_stage_arguments(sub.add_parser("stage", help="run one stage (pod entrypoint)"))
    st.set_defaults(func=_cmd_stage)

    r = sub.add_parser("run", help="run a whole PolyaRun on this machine")
    r.add_argument("file")
    r.add_argument("--workdir", default=None, help="default: ./polya-runs/<name>")
    r.add_argument("--arm", action="append", choices=s.ARMS, help="only these arms")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="arms in progress at once (default 1; 0: all)")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("toy-model", help="build the small CPU-trainable base model")
    t.add_argument("dir")
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=_cmd_toy)

    rep = sub.add_parser("report", help="(re)build the comparison report")
    rep.add_argument("workdir")
    rep.set_defaults(func=_cmd_report)

    sw = sub.add_parser("sweep-report", help="(re)build a sweep's report")
    sw.add_argument("--spec", required=True, help="the sweep's PolyaRun file")
    sw.add_argument("--workdir", required=True, help="the sweep's directory (report/ goes here)")
    sw.add_argument("--variants", default=None,
                    help="where the variants' directories are (default: --workdir)")
    sw.set_defaults(func=_cmd_sweep_report)

    ins = sub.add_parser("inspect", help="browse generated samples by heuristic and score")
    ins.add_argument("workdir")
    ins.add_argument("--heuristic", default=None, help="heuristic id or name")
    ins.add_argument("--min-score", type=float, default=None, help="lowest adherence score")
    ins.add_argument("--question", default=None, help="one question id")
    ins.add_argument("--sort", choices=("score", "length", "question"), default="score")
    ins.add_argument("--limit", type=int, default=20, help="samples shown (default 20)")
    ins.set_defaults(func=_cmd_inspect)

    if extend is not None:
        extend(sub)
    return p


def main(argv: list[str] | None = None,
         extend: Callable[[Any], None] | None = None) -> int:
    args = parser(extend).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
