"""The embedded default: ``polya run FILE`` runs a whole PolyaRun on this machine.

It mirrors the operator, without a cluster:

* **Same stages.** Each (arm, stage) runs the pod entrypoint's code (``polya stage``) in a
  child process, so memory is freed between stages and a stage can be stopped like a pod.
  Arms run one after another, each arm's stages in order (``spec.stages_for(arm)``).
* **Same progress path.** The child's ``Reporter`` writes ``POLYA_PROGRESS_FILE``; the runner
  polls it, as the operator polls a pod, and is the only writer of the run's status.
* **Same status model.** ``DIR/status.json`` holds a :class:`spec.PolyaRunStatus` (conditions
  Running/Succeeded/Failed/Suspended/<Stage>Completed, ``stages[]``, ``currentStage``,
  ``progress``, ``observedGeneration``), rewritten atomically whenever it changes.
* **Same retries.** A failed attempt is retried up to the stage's ``backoffLimit``; exit code
  2 (bad arguments) is never retried.
* **Stop and resume.** Ctrl-C (or SIGTERM) sends SIGTERM to the stage's process group, as the
  kubelet does when a Job is suspended: training stages checkpoint and exit. The status says
  Suspended (reason Interrupted) and the exit code is 130. Running the same command again
  skips stages whose manifest is complete and resumes a training stage from its checkpoint.

With ``POLYA_LOCAL_INPROCESS=1`` stages run in this process instead (handy under a debugger);
the terminal display is then fed directly by the ``Reporter``'s listeners.
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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from polya_trainer import spec as s
from polya_trainer.runtime.artifacts import atomic_write_json, atomic_write_text
from polya_trainer.runtime.launcher import stage_args
from polya_trainer.runtime.progress import read_progress
from polya_trainer.stages import outputs_of

EXIT_INTERRUPTED = 130
EXIT_BAD_ARGS = 2  # the entrypoint's argparse error: never retried (as in the operator)
POLL_SECONDS = 0.25
STATUS_FILE = "status.json"
SPEC_FILE = "polyarun.yaml"
STATE_DIR = ".polya"


def completed_condition(stage: str) -> str:
    """Condition type saying a stage finished for every arm, e.g. ``RLCompleted``."""
    return ("RL" if stage == "rl" else stage.capitalize()) + "Completed"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stop_grace_seconds() -> float:
    """How long a stopped stage may take to checkpoint before it is killed."""
    return float(os.environ.get("POLYA_STOP_GRACE_SECONDS", "120"))


# --------------------------------------------------------------------------- status model


class StatusBook:
    """Holds the run's status and writes ``status.json`` whenever it changes."""

    def __init__(self, run: s.PolyaRun, workdir: Path, generation: int):
        self.run, self.workdir, self.generation = run, workdir, generation
        self.path = workdir / STATUS_FILE
        previous = self._previous()
        # Conditions carry over, so lastTransitionTime only moves when a status flips.
        self.status = s.PolyaRunStatus(observed_generation=generation,
                                       start_time=previous.start_time or _now(),
                                       conditions=previous.conditions)
        old = {(e.arm, e.name): e for e in previous.stages}
        for arm in run.spec.arms:
            for stage in run.spec.stages_for(arm):
                entry = s.StageStatus(name=stage, arm=arm)
                prev = old.get((arm, stage))
                if prev is not None:  # keep history: attempts and times
                    entry.attempts = prev.attempts
                    entry.start_time = prev.start_time
                    entry.job_name = prev.job_name
                done = outputs_of(workdir, arm, stage)
                if done is not None:
                    entry.state = s.StageState.SUCCEEDED
                    entry.progress = 100.0
                    entry.eta_seconds = 0.0
                    entry.outputs = done
                    entry.completion_time = prev.completion_time if prev else None
                    entry.metrics = prev.metrics if prev else {}
                    entry.reason = "Completed"
                elif prev is not None and prev.state != s.StageState.PENDING:
                    # Stopped or killed earlier: it will resume from its checkpoint.
                    entry.progress = prev.progress
                    entry.metrics = prev.metrics
                    entry.reason, entry.message = "Resumable", "stopped earlier; will resume"
                self.status.stages.append(entry)
        self._last = ""

    def _previous(self) -> s.PolyaRunStatus:
        try:
            return s.PolyaRunStatus.model_validate(json.loads(self.path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return s.PolyaRunStatus()

    def entry(self, arm: str, stage: str) -> s.StageStatus:
        for e in self.status.stages:
            if e.arm == arm and e.name == stage:
                return e
        raise KeyError((arm, stage))

    def apply_snapshot(self, entry: s.StageStatus, snap: dict[str, Any]) -> None:
        """Copy a Reporter snapshot (progress file) into a stage entry."""
        if snap.get("stage") != entry.name or snap.get("arm") != entry.arm:
            return
        if entry.state == s.StageState.RUNNING:
            entry.progress = float(min(100.0, max(0.0, snap.get("progress") or 0.0)))
            eta = snap.get("etaSeconds")
            entry.eta_seconds = None if eta is None else max(0.0, float(eta))
        metrics = snap.get("metrics") or {}
        entry.metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if snap.get("message"):
            entry.message = str(snap["message"])[:1024]

    def refresh(self, outcome: str | None = None, message: str = "") -> bool:
        """Recompute conditions, progress and currentStage; write the file if it changed.

        ``outcome``: None while running, else Succeeded, Failed, Interrupted or Partial.
        """
        st = self.status
        entries = st.stages
        st.progress = round(sum(e.progress for e in entries) / max(1, len(entries)), 2)
        running = [e for e in entries if e.state == s.StageState.RUNNING]
        st.current_stage = ", ".join(f"{e.arm}/{e.name}" for e in running) or None
        st.observed_generation = self.generation
        if outcome and outcome != "Interrupted" and st.completion_time is None:
            st.completion_time = _now() if outcome in ("Succeeded", "Failed") else None
        conds: list[tuple[str, bool, str, str]] = []
        failed = [e for e in entries if e.state == s.StageState.FAILED]
        if outcome is None:
            where = st.current_stage or "starting"
            conds.append(("Running", True, "StageRunning", f"running {where}"))
        else:
            conds.append(("Running", False, outcome, message or outcome))
        conds.append(("Succeeded", outcome == "Succeeded",
                      "AllStagesSucceeded" if outcome == "Succeeded" else "NotFinished",
                      "every stage of every arm succeeded" if outcome == "Succeeded" else ""))
        conds.append(("Failed", bool(failed), "StageFailed" if failed else "NoFailure",
                      "; ".join(f"{e.arm}/{e.name}: {e.message or ''}" for e in failed)[:4096]))
        conds.append(("Suspended", outcome == "Interrupted",
                      "Interrupted" if outcome == "Interrupted" else "NotSuspended",
                      message if outcome == "Interrupted" else ""))
        for stage in s.STAGES:
            mine = [e for e in entries if e.name == stage]
            if not mine:
                continue
            done = sum(e.state == s.StageState.SUCCEEDED for e in mine)
            ok = done == len(mine)
            conds.append((completed_condition(stage), ok,
                          "Succeeded" if ok else ("Failed" if any(
                              e.state == s.StageState.FAILED for e in mine) else "Pending"),
                          f"{done}/{len(mine)} arms done"))
        self._set_conditions(conds)
        body = json.dumps(st.dump(), sort_keys=True)
        if body == self._last:
            return False
        self._last = body
        atomic_write_text(self.path, json.dumps(st.dump(), indent=2, sort_keys=True) + "\n")
        return True

    def _set_conditions(self, conds: list[tuple[str, bool, str, str]]) -> None:
        old = {c.type: c for c in self.status.conditions}
        out = []
        for ctype, ok, reason, message in conds:
            value = "True" if ok else "False"
            prev = old.get(ctype)
            changed = prev is None or prev.status != value
            out.append(s.Condition(
                type=ctype, status=value, reason=reason, message=message,
                last_transition_time=_now() if changed else prev.last_transition_time,
                observed_generation=self.generation))
        self.status.conditions = out


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

    def __init__(self, book: StatusBook, quiet: bool = False, stream: Any = None):
        from rich.console import Console

        self.book, self.quiet = book, quiet
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
            self.book.apply_snapshot(entry, snap)
            self.book.refresh()
            self.changed()

        return on_snapshot


# --------------------------------------------------------------------------- running stages


class Interrupt:
    """SIGINT/SIGTERM handling for the runner: the first asks the stage to stop, the second
    kills it."""

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


class Runner:
    def __init__(self, run: s.PolyaRun, workdir: Path, arms: list[str], quiet: bool):
        self.run, self.workdir, self.arms, self.quiet = run, workdir, arms, quiet
        self.spec_path = workdir / SPEC_FILE
        self.state_dir = workdir / STATE_DIR
        self.logs = workdir / "logs"
        self.generation = self._generation()
        self.book = StatusBook(run, workdir, self.generation)
        self.interrupt = Interrupt()
        self.display: Display | None = None
        self.inprocess = os.environ.get("POLYA_LOCAL_INPROCESS", "") not in ("", "0")

    # ---------------------------------------------------------------- setup
    def _generation(self) -> int:
        """Bump a local "generation" when the spec changed since the last run here."""
        body = self.run.model_dump(mode="json", by_alias=True, exclude_none=True,
                                   exclude={"status"})
        text = yaml.safe_dump(body, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        gen_file = self.state_dir / "generation.json"
        try:
            prev = json.loads(gen_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            prev = None
        gen = 1 if prev is None else int(prev["generation"]) + (prev["sha256"] != digest)
        if prev is not None and prev["sha256"] != digest:
            print(f"note: the spec changed since the last run in {self.workdir}; finished "
                  "stages are kept (delete DIR/<arm>/<stage> to redo one)", file=sys.stderr)
        atomic_write_json(gen_file, {"generation": gen, "sha256": digest})
        atomic_write_text(self.spec_path, text)
        return gen

    # ---------------------------------------------------------------- main loop
    def execute(self) -> int:
        book = self.book
        with self.interrupt.installed(), Display(book, self.quiet) as display:
            self.display = display
            book.refresh()
            display.changed()
            for arm in self.run.spec.arms:
                if arm not in self.arms:
                    continue
                for stage in self.run.spec.stages_for(arm):
                    entry = book.entry(arm, stage)
                    if entry.state == s.StageState.SUCCEEDED:
                        display.line(f"{arm}/{stage}: already complete (manifest found), "
                                     "skipped")
                        continue
                    outcome = self._run_with_retries(entry)
                    if outcome != "Succeeded":
                        return self._finish(outcome, entry)
            return self._finish(None, None)

    def _run_with_retries(self, entry: s.StageStatus) -> str:
        backoff = getattr(self.run.spec.stages, entry.name).backoff_limit
        failures = 0
        while True:
            rc = self._attempt(entry)
            if self.interrupt.count:
                entry.state = s.StageState.SUSPENDED
                entry.reason = "Interrupted"
                entry.message = "stopped by the user; run the same command again to resume"
                entry.eta_seconds = None
                return "Interrupted"
            done = outputs_of(self.workdir, entry.arm, entry.name)
            if rc == 0 and done is not None:
                entry.state, entry.reason = s.StageState.SUCCEEDED, "Completed"
                entry.progress, entry.eta_seconds = 100.0, 0.0
                entry.outputs = done
                entry.completion_time = _now()
                entry.message = None
                self.book.refresh()
                self._show(f"{entry.arm}/{entry.name}: succeeded "
                           f"{_fmt_metrics(entry.metrics, 6)}")
                return "Succeeded"
            failures += 1
            why = self._failure_message(entry, rc)
            if rc == EXIT_BAD_ARGS or failures > backoff:
                entry.state, entry.reason = s.StageState.FAILED, "BackoffLimitExceeded" if (
                    rc != EXIT_BAD_ARGS) else "BadArguments"
                entry.message, entry.eta_seconds = why, None
                return "Failed"
            entry.reason, entry.message = "Retrying", why
            self._show(f"{entry.arm}/{entry.name}: attempt {entry.attempts} failed ({why}); "
                       f"retrying ({failures}/{backoff})")

    def _failure_message(self, entry: s.StageStatus, rc: int) -> str:
        snap = read_progress(self._progress_file(entry))
        msg = (snap or {}).get("message") if (snap or {}).get("state") == "Failed" else None
        if rc < 0:
            return f"killed by signal {-rc}"
        return str(msg or f"exit code {rc}")[:1024]

    def _progress_file(self, entry: s.StageStatus) -> Path:
        return self.state_dir / "progress" / f"{entry.arm}-{entry.name}.json"

    def _log_file(self, entry: s.StageStatus) -> Path:
        return self.logs / f"{entry.job_name}.log"

    def _show(self, text: str) -> None:
        if self.display is not None:
            self.display.line(text)
            self.display.changed()

    def _attempt(self, entry: s.StageStatus) -> int:
        """One attempt of a stage; returns its exit code."""
        entry.attempts += 1
        entry.job_name = f"{self.run.metadata.name}-{entry.arm}-{entry.name}-{entry.attempts}"
        entry.state, entry.reason = s.StageState.RUNNING, "Started"
        entry.start_time = entry.start_time or _now()
        entry.message = None
        entry.eta_seconds = None
        progress = self._progress_file(entry)
        progress.unlink(missing_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.book.refresh()
        self._show(f"{entry.arm}/{entry.name}: started (attempt {entry.attempts}, log "
                   f"{self._log_file(entry)})")
        if self.inprocess:
            return self._attempt_inprocess(entry, progress)
        return self._attempt_child(entry, progress)

    def _attempt_child(self, entry: s.StageStatus, progress: Path) -> int:
        env = dict(os.environ, POLYA_PROGRESS_FILE=str(progress), PYTHONUNBUFFERED="1",
                   POLYA_RUNNER_PID=str(os.getpid()))
        env.pop("POLYA_METRICS_PORT", None)  # no port clash between runs on one machine
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        cmd = [sys.executable, "-m", "polya_trainer.engine.local", "--child",
               *stage_args(entry.name, str(self.spec_path), str(self.workdir), entry.arm)]
        asked = 0
        deadline: float | None = None
        with open(self._log_file(entry), "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            atomic_write_json(self.state_dir / "active.json", {
                "pid": proc.pid, "runner": os.getpid(), "arm": entry.arm,
                "stage": entry.name, "attempt": entry.attempts})
            mtime = 0.0
            while True:
                rc = proc.poll()
                mtime = self._poll_progress(entry, progress, mtime)
                if rc is not None:
                    break
                if self.interrupt.count > asked:
                    asked = self.interrupt.count
                    sig = signal.SIGTERM if asked == 1 else signal.SIGKILL
                    if asked == 1:
                        self._show(f"{entry.arm}/{entry.name}: stopping (checkpointing; press "
                                   "Ctrl-C again to kill)")
                        deadline = time.monotonic() + stop_grace_seconds()
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
                if deadline is not None and time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    deadline = None
                time.sleep(POLL_SECONDS)
        self._poll_progress(entry, progress, 0.0)
        (self.state_dir / "active.json").unlink(missing_ok=True)
        return rc

    def _poll_progress(self, entry: s.StageStatus, progress: Path, mtime: float) -> float:
        try:
            now_mtime = progress.stat().st_mtime
        except FileNotFoundError:
            return mtime
        if now_mtime == mtime:
            return mtime
        snap = read_progress(progress)
        if snap is not None:
            self.book.apply_snapshot(entry, snap)
            if self.book.refresh() and self.display is not None:
                self.display.changed()
        return now_mtime

    def _attempt_inprocess(self, entry: s.StageStatus, progress: Path) -> int:
        from polya_trainer.runtime.progress import Reporter
        from polya_trainer.stages import run_stage

        reporter = Reporter(entry.name, entry.arm, path=progress)
        if self.display is not None:
            reporter.listeners.append(self.display.listener(entry))
        # Ctrl-C raises KeyboardInterrupt inside the stage, like a terminal would.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            run_stage(entry.name, self.run.spec, entry.arm, self.workdir, reporter)
        except KeyboardInterrupt:
            self.interrupt.count += 1
            return EXIT_INTERRUPTED
        except Exception as exc:  # the reporter holds the message
            self._show(f"{entry.arm}/{entry.name}: {type(exc).__name__}: {exc}")
            return 1
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, self.interrupt._handle)
        return 0

    # ---------------------------------------------------------------- the end
    def _finish(self, outcome: str | None, entry: s.StageStatus | None) -> int:
        book, display = self.book, self.display
        assert display is not None
        selected_all = all(a in self.arms for a in self.run.spec.arms)
        if outcome is None:
            if selected_all:
                outcome = "Succeeded"
                book.status.report = self._write_report()
            else:
                outcome = "Partial"
        messages = {
            "Succeeded": "every stage of every arm succeeded",
            "Partial": f"arms {', '.join(self.arms)} done; other arms not run",
            "Interrupted": "stopped by the user; run the same command again to resume",
            "Failed": f"{entry.arm}/{entry.name} failed: {entry.message}" if entry else "",
        }
        book.refresh(outcome, messages[outcome])
        display.changed()
        if outcome == "Failed" and entry is not None:
            self._print_log_tail(entry)
        return {"Succeeded": 0, "Partial": 0, "Interrupted": EXIT_INTERRUPTED}.get(outcome, 1)

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

    def _print_log_tail(self, entry: s.StageStatus, lines: int = 30) -> None:
        with contextlib.suppress(OSError):
            tail = self._log_file(entry).read_text(errors="replace").splitlines()[-lines:]
            print("\n".join(["--- last lines of " + str(self._log_file(entry)), *tail]),
                  file=sys.stderr)


def print_summary(workdir: Path, book: StatusBook, code: int) -> None:
    """After the run: where things are, and the comparison table."""
    st = book.status
    print()
    print(f"status: {workdir / STATUS_FILE}")
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
    return Path("polya-runs") / name


def run_file(path: str | Path, workdir: str | Path | None = None,
             arms: list[str] | None = None, quiet: bool = False) -> int:
    """Run the PolyaRun in `path` (its first PolyaRun document) on this machine.

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
    wanted = list(arms) if arms else list(run.spec.arms)
    unknown = [a for a in wanted if a not in run.spec.arms]
    if unknown:
        print(f"{path}: arm(s) {', '.join(unknown)} not in spec.arms "
              f"({', '.join(run.spec.arms)})", file=sys.stderr)
        return EXIT_BAD_ARGS
    wd = Path(workdir) if workdir else default_workdir(run.metadata.name)
    wd.mkdir(parents=True, exist_ok=True)
    wd = wd.resolve()
    runner = Runner(run, wd, wanted, quiet)
    code = runner.execute()
    print_summary(wd, runner.book, code)
    return code


# --------------------------------------------------------------------------- child entry


def _child_main(argv: list[str]) -> int:
    """``python -m polya_trainer.engine.local --child STAGE ...``: the pod entrypoint, plus a parent
    death signal so that a killed runner never leaves a stage running."""
    _set_parent_death_signal()
    runner = os.environ.get("POLYA_RUNNER_PID")
    if runner and os.getppid() != int(runner):  # the runner died before prctl took effect
        return EXIT_INTERRUPTED
    from polya_trainer.cli import main

    return main(["stage", *argv])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(_child_main(sys.argv[2:]))
    raise SystemExit("usage: python -m polya_trainer.engine.local --child STAGE --spec F "
                     "--workdir D --arm A (use `polya run FILE` instead)")
