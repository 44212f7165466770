"""The stage entrypoint: one stage for one arm, in a pod (``python -m polya_trainer STAGE
--spec F --workdir D --arm A``, through ``polya stage``) and in ``polya run``'s child processes
(``python -m polya_trainer.engine.local --child ...``).

It feeds a :class:`~polya_trainer.runtime.progress.Reporter` and writes the termination
message. Exit codes: 0 done; 2 a configuration the image cannot run (``SpecError``: the Job's
podFailurePolicy fails the Job at once and the operator reports InvalidConfig); 1 anything else
(retried). SIGTERM during a training stage leaves a checkpoint and exits through SystemExit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from polya_trainer import spec as s
from polya_trainer.runtime.launcher import add_stage_arguments
from polya_trainer.runtime.progress import Reporter
from polya_trainer.stages import run_stage


def main(argv: list[str]) -> int:
    """Parse ``STAGE --spec F --workdir D --arm A`` (what
    :func:`~polya_trainer.runtime.launcher.stage_args` writes) and run the stage."""
    args = add_stage_arguments(argparse.ArgumentParser(prog="polya stage")).parse_args(argv)
    return run_entry(args.stage, args.spec, args.workdir, args.arm)


def run_entry(stage: str, spec_path: str, workdir: str, arm: str) -> int:
    """Run one stage for one arm from a PolyaRun file; the exit code (see the module)."""
    run = s.load_runs(spec_path)[0]
    reporter = Reporter(stage, arm)
    reporter.install_sigterm()  # the termination message is written on SIGTERM too
    try:
        outputs = run_stage(stage, run.spec, arm, Path(workdir), reporter)
    except Exception as exc:  # the reporter already holds the reason for the operator
        invalid = isinstance(exc, s.SpecError)
        if invalid:
            settle_invalid_config()
        reporter.write_termination_message(
            "Failed", reason="InvalidConfig" if invalid else type(exc).__name__)
        print(f"stage {stage} ({arm}) failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        # 2: a configuration the image cannot run (the Job's podFailurePolicy fails the Job
        # at once and the operator reports InvalidConfig); 1: anything else, retried.
        return 2 if isinstance(exc, s.SpecError) else 1
    except SystemExit as exc:  # SIGTERM: a training stage saved a checkpoint (Suspended)
        reason = "Preempted" if reporter.snapshot()["state"] == "Suspended" else "SIGTERM"
        reporter.write_termination_message("Terminated", reason=reason)
        raise exc
    finally:
        reporter.close()
    reporter.write_termination_message(reason="Completed")
    print(json.dumps({"stage": stage, "arm": arm, "outputs": outputs}))
    return 0


def settle_invalid_config(grace: float = 10.0) -> None:
    """A SpecError is the same on every rank of a multi-process stage, and only rank 0's
    termination message reaches the operator. The launcher's agent stops the other workers
    with SIGTERM as soon as one exits, which would overwrite rank 0's verdict with
    "Terminated": so rank 0 ignores SIGTERM from here on, and the other ranks wait a little
    before exiting so that rank 0 gets there first."""
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank == 0:
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        time.sleep(grace)
