"""The local executor: ``polya run FILE`` runs a whole PolyaRun on this machine.

The planner (:mod:`polya_trainer.engine.planner`) decides, as it does for the operator; this
module observes child processes as planner ``Attempt``s and carries out its actions:

* **Attempts are child processes.** ``StartAttempt`` runs the pod entrypoint's code
  (``polya stage``) as ``<run>-<arm>-<stage>-<attempt>``, logging to ``DIR/logs/<name>.log``,
  with a parent-death signal. ``DIR/.polya/attempts/<name>.json`` keeps what the cluster keeps
  in a Job (phase, reason, final progress), so a restarted runner observes the same history.
  Exit 0: Succeeded; 2: Failed and not retried (InvalidConfig); anything else, a signal
  included (OOM cannot be told from other kills here), a failure retried up to
  ``backoffLimit``. The child's termination message (``POLYA_TERMINATION_MESSAGE_PATH``) is
  read as the operator reads a pod's; its progress file as the operator polls ``/progress``.
* **Status.** ``DIR/status.json`` holds the planner's :class:`spec.PolyaRunStatus`,
  rewritten atomically whenever it changes.
* **Concurrency.** ``parallel`` is ``Policy.max_parallel_arms`` (default 1).
* **Stop and resume.** Ctrl-C (or SIGTERM) plans as if ``spec.suspend`` were set: the
  planner suspends the active attempts, which get SIGTERM (training stages checkpoint; a
  second Ctrl-C, or ``POLYA_STOP_GRACE_SECONDS``, kills them); the Suspended condition says
  Interrupted and the exit code is 130. The same command again resumes the suspended attempt
  from its checkpoint (an attempt left running by a killed runner too). Finished stages are
  kept; a failed run, or a succeeded stage whose manifest was deleted, is opened again with
  attempt numbers continuing. ``spec.suspend: true`` in the file suspends at once (exit 130):
  nothing local resumes it.

With ``POLYA_LOCAL_INPROCESS=1`` stages run in this process instead, one at a time (handy
under a debugger); the display is then fed directly by the ``Reporter``'s listeners.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from polya_trainer import spec as s
from polya_trainer.engine import planner as p
from polya_trainer.engine import sweep as sw
from polya_trainer.engine.fanout import IndexedProcesses
from polya_trainer.runtime.artifacts import MANIFEST, atomic_write_json, atomic_write_text
from polya_trainer.runtime.launcher import stage_args
from polya_trainer.runtime.progress import read_progress
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.stages import outputs_of

EXIT_INTERRUPTED = 130
EXIT_BAD_ARGS = 2  # the entrypoint's argparse/spec error: never retried (as in the operator)
POLL_SECONDS = 0.25
completed_condition = p.completed_condition  # kept for callers of this module


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stop_grace_seconds() -> float:
    """How long a stopped stage may take to checkpoint before it is killed."""
    return float(os.environ.get("POLYA_STOP_GRACE_SECONDS", "120"))


# --------------------------------------------------------------------------- the terminal


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _fmt_metrics(metrics: dict[str, float], limit: int = 4) -> str:
    keys = [k for k in ("loss", "reward_mean", "acceptance_rate", "accepted", "accuracy")
            if k in metrics] + sorted(k for k in metrics if k not in (
                "loss", "reward_mean", "acceptance_rate", "accepted", "accuracy"))
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys[:limit])


class Display:
    """Live progress bars and a stage table (rich) on a terminal; plain lines otherwise."""

    def __init__(self, book: Runner, quiet: bool = False, stream: Any = None):
        from rich.console import Console

        self.book, self.quiet = book, quiet  # book: anything with .run and .status
        self.console = Console(file=stream or sys.stdout, highlight=False)
        self.live_mode = self.console.is_terminal and not quiet
        self._live: Any = None
        self._last_line = 0.0

    def __enter__(self) -> Display:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self.render(), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.__exit__(*exc)
            self._live = None

    def render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        st = self.book.status
        elapsed = (_now() - st.start_time).total_seconds() if st.start_time else 0
        table = Table(title=f"PolyaRun {self.book.run.metadata.name}: {st.progress:.0f}% "
                            f"({_fmt_eta(elapsed)} elapsed)", title_justify="left")
        for col in ("arm", "stage", "state", "progress", "", "eta", "try", "metrics"):
            table.add_column(col, no_wrap=col != "metrics")
        colours = {"Succeeded": "green", "Running": "cyan", "Failed": "red",
                   "Suspended": "yellow", "Pending": "dim"}
        for e in st.stages:
            state = str(e.state)
            table.add_row(e.arm, e.name, f"[{colours.get(state, '')}]{state}[/]",
                          ProgressBar(total=100.0, completed=e.progress, width=24),
                          f"{e.progress:5.1f}%", _fmt_eta(e.eta_seconds) if
                          e.state == s.StageState.RUNNING else "", str(e.attempts),
                          _fmt_metrics(e.metrics))
        return table

    def changed(self) -> None:
        """Redraw the table (terminal) or print a progress line now and then (pipes)."""
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            return
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._last_line < 15:
            return
        self._last_line = now
        for e in self.book.status.stages:
            if e.state == s.StageState.RUNNING:
                self.line(f"{e.arm}/{e.name}: {e.progress:.0f}% eta {_fmt_eta(e.eta_seconds)} "
                          f"{_fmt_metrics(e.metrics)}")

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self._live is not None:
            self._live.console.print(f"[dim]{stamp}[/] {text}", markup=True, soft_wrap=True)
        else:
            print(f"{stamp} {text}", file=self.console.file, flush=True)

    def listener(self, entry: s.StageStatus) -> Any:
        """A ``Reporter`` listener that feeds one stage's row (in-process mode)."""

        def on_snapshot(snap: dict[str, Any]) -> None:
            p.apply_progress(entry, snap)
            self.changed()

        return on_snapshot


# --------------------------------------------------------------------------- running stages


class Interrupt:
    """SIGINT/SIGTERM handling for the runner: the first asks the stages to stop, the second
    kills them."""

    def __init__(self) -> None:
        self.count = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupt]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)


def _set_parent_death_signal() -> None:
    """Linux: the child gets SIGTERM if the runner dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def observe_exit(rc: int, progress: dict[str, Any] | None,
                 indexed: bool = False) -> tuple[str, str, str, bool]:
    """An ended child as (phase, reason, message, retryable): the local ``observe_job``.
    ``indexed``: a sharded stage's IndexedProcesses, whose failed index already had its
    retries (the Job's reason FailedIndexes: the planner does not retry it as a whole)."""
    prog = progress or {}
    if rc == 0:
        return "Succeeded", "Completed", "", True
    msg = str(prog.get("message") or "") if prog.get("state") in ("Failed", "Terminated") \
        else ""
    if rc == EXIT_BAD_ARGS or prog.get("reason") == "InvalidConfig":
        return "Failed", "InvalidConfig", msg or f"exit code {rc}", False
    if indexed:
        return "Failed", "FailedIndexes", msg or f"an index failed (exit code {rc})", True
    if rc < 0:
        return "Failed", "Killed", msg or f"killed by signal {-rc}", True
    # Any other exit: the reason the operator's Job gets (its backoffLimit is 0).
    return "Failed", "BackoffLimitExceeded", msg or f"exit code {rc}", True


@dataclass
class _Child:
    start: p.StartAttempt
    proc: subprocess.Popen[bytes] | IndexedProcesses
    progress: Path  # live progress JSON
    term: Path  # termination message
    stopping: str | None = None  # "suspend" (kept, resumed later) or "stop" (removed)
    kill_at: float | None = None


Command = Callable[[p.StartAttempt, Path, Path], list[str]]  # (attempt, spec, workdir) -> argv


class Runner:
    """Observe attempts, plan, act; until the run is finished or stopped."""

    def __init__(self, run: s.PolyaRun, workdir: Path, arms: list[str], quiet: bool,
                 parallel: int | None = 1, command: Command | None = None):
        self.run, self.workdir, self.arms, self.quiet = run, workdir, arms, quiet
        self.ws = Workspace.of(workdir)
        for d in (self.ws.attempts, self.ws.progress_dir, self.ws.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.inprocess = os.environ.get("POLYA_LOCAL_INPROCESS", "") not in ("", "0")
        self.policy = p.Policy(max_parallel_arms=1 if self.inprocess else parallel)
        self.command = command or _stage_command
        self.generation = self._generation()
        # --arm: the planner sees the selected arms only; the others' entries are kept.
        self.partial = set(arms) != set(run.spec.arms)
        self.spec = run.spec.model_copy(update={"arms": [a for a in run.spec.arms
                                                         if a in arms]})
        self.status = self._reopen(self._read_status())
        self.children: dict[str, _Child] = {}
        self.interrupt = Interrupt()
        self.display: Display | None = None
        self._written = self._shown = ""

    # ---------------------------------------------------------------- setup
    def _generation(self) -> int:
        """Bump a local "generation" when the spec changed since the last run here."""
        body = self.run.model_dump(mode="json", by_alias=True, exclude_none=True,
                                   exclude={"status"})
        text = yaml.safe_dump(body, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        gen_file = self.ws.generation
        try:
            prev = json.loads(gen_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            prev = None
        gen = 1 if prev is None else int(prev["generation"]) + (prev["sha256"] != digest)
        if prev is not None and prev["sha256"] != digest:
            print(f"note: the spec changed since the last run in {self.workdir}; finished "
                  "stages are kept (delete DIR/<arm>/<stage> to redo one)", file=sys.stderr)
        atomic_write_json(gen_file, {"generation": gen, "sha256": digest})
        atomic_write_text(self.ws.spec_file, text)  # SnapshotSpec, done once here
        return gen

    def _read_status(self) -> s.PolyaRunStatus:
        try:
            return p.as_status(json.loads(self.ws.status.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return s.PolyaRunStatus()

    def _reopen(self, st: s.PolyaRunStatus) -> s.PolyaRunStatus:
        """Run again what a rerun should: the unfinished stages of a failed run, and succeeded
        stages whose manifest is gone. They go back to Pending (attempt numbers continue
        from ``stages[].attempts``) and their old attempts are archived."""
        failed = p.run_state(st) == "Failed"
        redo = [e for e in st.stages if e.arm in self.arms and (
            (failed and e.state != s.StageState.SUCCEEDED) or (
                e.state == s.StageState.SUCCEEDED and
                outputs_of(self.ws, e.arm, e.name) is None))]
        if not redo:
            return st
        old = self.ws.attempts / "old"
        old.mkdir(exist_ok=True)
        for e in redo:
            for path in self.ws.attempts.glob(p.child_name(self.run.metadata.name, e.arm, e.name,
                                                       "*") + ".json"):  # type: ignore[arg-type]
                path.replace(old / path.name)
            e.state, e.reason, e.message, e.job_name = s.StageState.PENDING, None, None, None
            e.completion_time, e.progress, e.eta_seconds = None, 0.0, None
        if p.finished(st):
            st.conditions, st.start_time, st.completion_time, st.report = [], None, None, None
        return st

    # ---------------------------------------------------------------- observe
    def _record(self, name: str) -> p.Attempt | None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, TypeError):
            return p.Attempt(**json.loads(self.ws.attempt(name).read_text()))
        return None

    def _put(self, a: p.Attempt) -> None:
        atomic_write_json(self.ws.attempt(a.name), a.__dict__)

    def _observe(self) -> tuple[list[p.Attempt], dict[str, dict[str, Any]]]:
        attempts, live = [], {}
        for path in sorted(self.ws.attempts.glob("*.json")):
            a = self._record(path.stem)
            if a is None:
                continue
            child = self.children.get(a.name)
            if child is None and a.phase in ("Pending", "Running"):
                # Left by a runner that died: its child got SIGTERM (parent-death signal) and
                # checkpointed; it resumes as a suspended attempt.
                a = p.Attempt(**{**a.__dict__, "phase": "Suspended", "reason": "RunnerStopped"})
                self._put(a)
            if child is not None:
                snap = read_progress(child.progress)
                if snap:
                    live[a.name] = snap
            attempts.append(a)
        return attempts, live

    def _reap(self) -> None:
        for name, child in list(self.children.items()):
            rc = child.proc.poll()
            if rc is None:
                if child.kill_at is not None and time.monotonic() > child.kill_at:
                    self._signal(child, signal.SIGKILL)
                continue
            del self.children[name]
            prog = read_progress(child.term) or read_progress(child.progress)
            self._ended(child.start, rc, prog, child.stopping,
                        indexed=isinstance(child.proc, IndexedProcesses))

    def _ended(self, a: p.StartAttempt, rc: int, prog: dict[str, Any] | None,
               stopping: str | None, message: str = "", indexed: bool = False) -> None:
        if stopping == "stop":  # the operator deletes the Job
            self.ws.attempt(a.name).unlink(missing_ok=True)
            return
        phase, reason, msg, retryable = observe_exit(rc, prog, indexed)
        if rc == 0:
            outputs = outputs_of(self.ws, a.arm, a.stage)  # the manifest's, as before
            prog = {**(prog or {}), "outputs": outputs} if outputs is not None else prog
        elif stopping == "suspend":
            phase, reason, msg = "Suspended", "Interrupted", "stopped by the user"
        rec = self._record(a.name)
        self._put(p.Attempt(a.name, a.arm, a.stage, a.attempt, phase, reason, message or msg,
                            created=rec.created if rec else None,
                            started=rec.started if rec else None, finished=p.iso(_now()),
                            retryable=retryable, progress=prog))

    # ---------------------------------------------------------------- plan and act
    def _plan(self) -> p.Plan:
        attempts, live = self._observe()
        spec = self.spec.model_copy(update={"suspend": True}) if self.interrupt.count \
            else self.spec
        run = {"metadata": {"name": self.run.metadata.name, "generation": self.generation},
               "status": self.status}
        return p.plan(run, attempts, _now(), policy=self.policy, live=live,
                      known=set(self.children), parsed=spec)

    def _apply(self, plan: p.Plan) -> bool:
        """Carry out a plan; True when an attempt was started."""
        started = False
        for a in plan.actions:
            if isinstance(a, p.StartAttempt) and a.name not in self.children:
                self._start(a)
                started = True
            elif isinstance(a, p.SuspendAttempt) and not a.suspend:  # resume: start it again
                rec = self._record(a.name)
                if rec is not None and a.name not in self.children:
                    self._start(p.StartAttempt(rec.arm, rec.stage, rec.attempt, rec.name))
                    started = True
            elif isinstance(a, p.SuspendAttempt | p.StopAttempt):
                child = self.children.get(a.name)
                if child is not None and child.stopping is None:
                    child.stopping = "suspend" if isinstance(a, p.SuspendAttempt) else "stop"
                    child.kill_at = time.monotonic() + stop_grace_seconds()
                    self._show(f"{child.start.arm}/{child.start.stage}: stopping {a.name} "
                               "(checkpointing; press Ctrl-C again to kill)")
                    self._signal(child, signal.SIGTERM)
                elif child is None and isinstance(a, p.StopAttempt):
                    self.ws.attempt(a.name).unlink(missing_ok=True)
            elif isinstance(a, p.Event) and a.reason != "StageStarted":
                self._show(a.message)
            # SnapshotSpec and PrepareWorkspace: the spec file and DIR exist already.
        return started

    def _signal(self, child: _Child, sig: int) -> None:
        if isinstance(child.proc, IndexedProcesses):
            child.proc.send_signal(sig)  # every running index's process group
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)

    def _start(self, a: p.StartAttempt) -> None:
        progress = self.ws.progress(a.name)
        term = progress.with_suffix(".term")
        progress.unlink(missing_ok=True)
        term.unlink(missing_ok=True)
        now = p.iso(_now())
        self._put(p.Attempt(a.name, a.arm, a.stage, a.attempt, "Running", "Started",
                            created=now, started=now))
        log = self.ws.log(a.name)
        self._show(f"{a.arm}/{a.stage}: {a.name} started (log {log})")
        if self.inprocess:
            rc, msg = self._run_inprocess(a, progress)
            self._ended(a, rc, read_progress(progress),
                        "suspend" if rc == EXIT_INTERRUPTED else None, msg)
            return
        env = dict(os.environ, POLYA_PROGRESS_FILE=str(progress), PYTHONUNBUFFERED="1",
                   POLYA_TERMINATION_MESSAGE_PATH=str(term), POLYA_RUNNER_PID=str(os.getpid()))
        env.pop("POLYA_METRICS_PORT", None)  # no port clash between runs on one machine
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        cmd = self.command(a, self.ws.spec_file, self.workdir)
        cfg = getattr(self.run.spec.stages, a.stage)
        shards = getattr(cfg, "shards", 1)
        if shards > 1:  # the Indexed Job's indices as processes, each retried alone
            env.pop("POLYA_TERMINATION_MESSAGE_PATH")  # the combined progress file decides
            proc: Any = IndexedProcesses(cmd, env, shards, progress, open(log, "ab"),  # noqa: SIM115
                                         retries=cfg.backoff_limit)
        else:
            with open(log, "ab") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self.children[a.name] = _Child(a, proc, progress, term)

    def _run_inprocess(self, a: p.StartAttempt, progress: Path) -> tuple[int, str]:
        from polya_trainer.runtime.progress import Reporter
        from polya_trainer.stages import run_stage

        reporter = Reporter(a.stage, a.arm, path=progress)
        entry = next((e for e in self.status.stages if (e.arm, e.name) == (a.arm, a.stage)),
                     s.StageStatus(name=a.stage, arm=a.arm))
        if self.display is not None:
            reporter.listeners.append(self.display.listener(entry))
        # Ctrl-C raises KeyboardInterrupt inside the stage, like a terminal would.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            run_stage(a.stage, self.run.spec, a.arm, self.ws, reporter)
        except KeyboardInterrupt:
            self.interrupt.count += 1
            return EXIT_INTERRUPTED, ""
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            self._show(f"{a.arm}/{a.stage}: {text}")
            return (EXIT_BAD_ARGS if isinstance(exc, s.SpecError) else 1), text[:1024]
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, self.interrupt._handle)
        return 0, ""

    def _save(self, status: s.PolyaRunStatus) -> None:
        if self.partial:  # keep the other arms' entries, in spec order
            mine = {(e.arm, e.name): e for e in status.stages}
            mine.update({(e.arm, e.name): e for e in self.status.stages
                         if e.arm not in self.arms})
            status.stages = [mine.get((arm, st)) or s.StageStatus(name=st, arm=arm)
                             for arm in self.run.spec.arms
                             for st in self.run.spec.stages_for(arm)]
        self.status = status
        body = json.dumps(status.dump(), indent=2, sort_keys=True) + "\n"
        if body != self._written:
            atomic_write_text(self.ws.status, body)
            self._written = body
        if self.display is not None:
            self.display.changed()

    def _show(self, text: str) -> None:
        if self.display is not None and text != self._shown:  # StageFailed, then RunFailed
            self.display.line(text)
            self._shown = text

    # ---------------------------------------------------------------- main loop
    def execute(self) -> int:
        with self.interrupt.installed(), Display(self, self.quiet) as display:
            self.display = display
            for e in self.status.stages:
                if e.arm in self.arms and e.state in p.DONE:
                    display.line(f"{e.arm}/{e.name}: already complete (manifest found), "
                                 "skipped")
            while True:
                self._reap()
                if self.interrupt.count > 1:
                    for child in self.children.values():
                        self._signal(child, signal.SIGKILL)
                plan = self._plan()
                started = self._apply(plan)
                self._save(plan.status)
                if not self.children and not started:
                    return self._finish()
                time.sleep(POLL_SECONDS)

    def _finish(self) -> int:
        st, state, now = self.status, p.run_state(self.status), _now()

        def put(kind: str, value: str, reason: str, message: str) -> None:
            p.set_condition(st, st, kind, value, reason, message, now, self.generation)

        if state == "Succeeded" and self.partial:  # not finished: the other arms will run
            message = f"arms {', '.join(self.arms)} done; other arms not run"
            put("Succeeded", "Unknown", "Partial", message)
            put("Running", "False", "Partial", message)
            st.completion_time = None
        elif state == "Succeeded":
            st.report = self._write_report()
        elif state == "Suspended" and self.interrupt.count:
            put("Suspended", "True", "Interrupted",
                "stopped by the user; run the same command again to resume")
        self._save(st)
        if state == "Failed":
            for e in st.stages:
                if e.state == s.StageState.FAILED and e.reason != "RunFailed" and e.job_name:
                    self._print_log_tail(e.job_name)
        return {"Succeeded": 0, "Failed": 1}.get(state, EXIT_INTERRUPTED)

    def _write_report(self) -> str | None:
        try:
            from polya_trainer.report import write_report

            path = Path(write_report(self.workdir))
        except Exception as exc:  # the run's stages did succeed; say why there is no report
            self._show(f"report: not written ({type(exc).__name__}: {exc})")
            return None
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(self.workdir.resolve()))
        return str(path)

    def _print_log_tail(self, name: str, lines: int = 30) -> None:
        log = self.ws.log(name)
        with contextlib.suppress(OSError):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print("\n".join(["--- last lines of " + str(log), *tail]), file=sys.stderr)


def _stage_command(a: p.StartAttempt, spec_path: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "polya_trainer.engine.local", "--child",
            *stage_args(a.stage, str(spec_path), str(workdir), a.arm)]


def print_summary(workdir: Path, book: Runner, code: int) -> None:
    """After the run: where things are, and the comparison table."""
    st = book.status
    print()
    print(f"status: {book.ws.status}")
    if code == EXIT_INTERRUPTED:
        print("stopped; run the same command again to resume.")
        return
    if not st.report:
        return
    report = workdir / st.report
    print(f"report: {report}")
    md = report if report.suffix == ".md" else report.parent / "report.md"
    if md.is_file():
        print()
        print(md.read_text().rstrip())
    plots = sorted(p for p in report.parent.rglob("*") if p.suffix in (".png", ".svg"))
    if plots:
        print()
        print(f"plots ({len(plots)}) in {report.parent}: "
              + ", ".join(str(p.relative_to(report.parent)) for p in plots))


def default_workdir(name: str) -> Path:
    return Workspace.for_run("polya-runs", name).root


def run_file(path: str | Path, workdir: str | Path | None = None,
             arms: list[str] | None = None, quiet: bool = False,
             parallel: int | None = 1) -> int:
    """Run the PolyaRun in `path` (its first PolyaRun document) on this machine, at most
    `parallel` arms at once (None: all).

    Returns 0 on success, 1 on failure, 130 when stopped (rerun to resume), 2 for a bad file.
    """
    try:
        runs = s.load_runs(path)
    except s.SpecError as exc:
        for field, msg in exc.errors:
            print(f"{path}: {field or '<root>'}: {msg}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    if len(runs) > 1:
        print(f"{path}: {len(runs)} PolyaRuns; running the first, "
              f"{runs[0].metadata.name}", file=sys.stderr)
    run = runs[0]
    if sw.is_sweep(run):
        return run_sweep(run, workdir, arms, quiet, parallel)
    wanted = list(arms) if arms else list(run.spec.arms)
    unknown = [a for a in wanted if a not in run.spec.arms]
    if unknown:
        print(f"{path}: arm(s) {', '.join(unknown)} not in spec.arms "
              f"({', '.join(run.spec.arms)})", file=sys.stderr)
        return EXIT_BAD_ARGS
    wd = Path(workdir) if workdir else default_workdir(run.metadata.name)
    wd.mkdir(parents=True, exist_ok=True)
    wd = wd.resolve()
    runner = Runner(run, wd, wanted, quiet, parallel)
    code = runner.execute()
    print_summary(wd, runner, code)
    return code


# --------------------------------------------------------------------------- sweeps


def run_sweep(run: s.PolyaRun, workdir: str | Path | None = None,
              arms: list[str] | None = None, quiet: bool = False,
              parallel: int | None = 1) -> int:
    """Run a sweep as the sweep planner says, one variant at a time, each in
    ``DIR/<variant>/`` with the ordinary runner; then write the sweep report.
    ``DIR/status.json`` holds the sweep's status.

    A variant that succeeded in an earlier invocation is kept; a failed one runs again (as a
    failed run does). Returns the first non-zero exit code of a variant, or 0.
    """
    root = Workspace.of(Path(workdir) if workdir else default_workdir(run.metadata.name))
    root.root.mkdir(parents=True, exist_ok=True)
    variants = sw.expand(run)
    children: dict[str, sw.Child] = {}
    for v in variants:
        child = sw.Child.of(_read_status(Workspace.for_run(root, v.name)))
        if child.state == "Succeeded":
            children[v.name] = child
    report, code = None, 0
    while True:
        plan = sw.plan(run, children, report, _read_status(root), _now(),
                       policy=sw.Policy(max_parallel=1))
        atomic_write_json(root.status, plan.status.dump())
        if code or not plan.actions:
            return code
        if plan.report:
            report = "Succeeded" if write_sweep_report_quietly(run, root) else "Failed"
        for v in plan.starts:
            print(f"sweep {run.metadata.name}: variant {variants.index(v) + 1}/"
                  f"{len(variants)} {v.name}", file=sys.stderr)
            vws = Workspace.for_run(root, v.name)
            vws.root.mkdir(exist_ok=True)
            path = atomic_write_text(vws.variant_spec,
                                     yaml.safe_dump(v.run.dump(), sort_keys=False))
            atomic_write_json(vws.variant_card, v.card(run.metadata.name))
            code = run_file(path, workdir=vws.root, arms=arms, quiet=quiet, parallel=parallel)
            children[v.name] = sw.Child("Succeeded", True, 100.0) if code == 0 else \
                sw.Child.of(_read_status(vws))


def _read_status(ws: Workspace) -> s.PolyaRunStatus | None:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return p.as_status(json.loads(ws.status.read_text()))
    return None


def write_sweep_report_quietly(run: s.PolyaRun, root: Workspace) -> bool:
    """The sweep report (printed); False, saying why, when it could not be written."""
    try:
        print(f"sweep report: {write_sweep_report(run, root)}")
        return True
    except Exception as exc:  # the variants did run; say why there is no report
        print(f"sweep report: not written ({type(exc).__name__}: {exc})", file=sys.stderr)
        return False


def write_sweep_report(run: s.PolyaRun, workdir: str | Path | Workspace,
                       variants_dir: str | Path | None = None) -> Path:
    """``polya sweep-report``: the sweep report of ``run`` in ``workdir/report/``, over the
    variants' workspaces in ``variants_dir`` (default ``workdir``: a local sweep; in the
    operator's report Job, the volume's root). With ``storage.uri`` the variants' evaluate
    stages are read from the store first and the report goes up to ``<uri>/report/``."""
    from polya_trainer.report import write_sweep_report as write
    from polya_trainer.runtime import storage

    ws = Workspace.of(workdir)
    inputs = sw.report_inputs(run, variants_dir or ws)
    uri = run.spec.storage.uri
    for vdir, card in inputs if uri else ():
        for arm in run.spec.arms:
            stage = Workspace.of(vdir).stage(arm, "evaluate")
            if not (stage / MANIFEST).is_file():  # a pod's scratch: not here yet
                storage.read_stage(sw.variant_uri(uri, card["name"]), arm, "evaluate",
                                   stage, run.spec.storage.endpoint_url)
    path = write(ws.root, inputs)
    store = storage.store_for(run.spec)
    if store is not None:
        storage.push_dir(store, ws.report, ws.relative(ws.report))
    return path


# --------------------------------------------------------------------------- child entry


def _child_main(argv: list[str]) -> int:
    """``python -m polya_trainer.engine.local --child STAGE ...``: the pod entrypoint, plus a parent
    death signal so that a killed runner never leaves a stage running."""
    _set_parent_death_signal()
    runner = os.environ.get("POLYA_RUNNER_PID")
    if runner and os.getppid() != int(runner):  # the runner died before prctl took effect
        return EXIT_INTERRUPTED
    from polya_trainer.stages.entry import main

    return main(argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(_child_main(sys.argv[2:]))
    raise SystemExit("usage: python -m polya_trainer.engine.local --child STAGE --spec F "
                     "--workdir D --arm A (use `polya run FILE` instead)")
