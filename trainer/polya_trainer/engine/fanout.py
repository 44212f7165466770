"""The local runner's Indexed Job: a sharded stage (``shards`` > 1) as parallel processes.

`IndexedProcesses` starts one child per index with ``JOB_COMPLETION_INDEX`` set (what the Job
controller gives each pod), at most `limit` at a time, and retries a failed index alone up to
`retries` times (the Job's ``backoffLimitPerIndex``); the other indices keep running. Each
child writes its own progress file; their sum (``shards.combine_progress``) is written to the
attempt's progress file, so the runner reads one file as for any stage. CPU children share
the cores: each gets ``OMP_NUM_THREADS`` = cores / running children unless already set.

It offers what the runner uses of a ``subprocess.Popen``: ``poll()`` and ``send_signal()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

from polya_trainer.runtime import shards
from polya_trainer.runtime.artifacts import atomic_write_json
from polya_trainer.runtime.progress import read_progress


class IndexedProcesses:
    def __init__(self, cmd: list[str], env: dict[str, str], count: int, progress: Path,
                 log: IO[bytes], limit: int | None = None, retries: int = 0) -> None:
        self.cmd, self.env, self.count, self.progress, self.log = cmd, env, count, progress, log
        self.limit = max(1, min(count, limit or count))
        self.retries = retries
        self.failures = [0] * count
        self.pending = list(range(count))
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.codes: dict[int, int] = {}
        self.stopping = False
        self._fill()

    def index_progress(self, index: int) -> Path:
        return self.progress.with_name(f"{self.progress.stem}.{index}{self.progress.suffix}")

    def _start(self, index: int) -> None:
        env = dict(self.env, **{shards.INDEX_ENV: str(index),
                                "POLYA_PROGRESS_FILE": str(self.index_progress(index))})
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.limit)))
        self.log.write(f"--- index {index} (try {self.failures[index] + 1})\n".encode())
        self.log.flush()
        self.running[index] = subprocess.Popen(self.cmd, stdout=self.log,
                                               stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True)

    def _fill(self) -> None:
        while self.pending and len(self.running) < self.limit and not self.stopping:
            self._start(self.pending.pop(0))

    def poll(self) -> int | None:
        """None while an index runs or waits; then 0, or the exit code of a failed index."""
        for index, proc in list(self.running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self.running[index]
            if rc != 0 and not self.stopping and self.failures[index] < self.retries:
                self.failures[index] += 1
                self.pending.insert(0, index)  # retried alone; the others carry on
            else:
                self.codes[index] = rc
        self._fill()
        self._write_progress()
        if self.running or (self.pending and not self.stopping):
            return None
        return next((rc for rc in self.codes.values() if rc != 0), 0)

    def send_signal(self, sig: int) -> None:
        """Signal every running index (its process group); start no more."""
        self.stopping = True
        for proc in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _write_progress(self) -> None:
        snaps = [read_progress(self.index_progress(i)) for i in range(self.count)]
        combined = shards.combine_progress(snaps)
        if combined is not None:
            atomic_write_json(self.progress, combined)

    def __enter__(self) -> IndexedProcesses:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.running:
            self.kill()
            for proc in self.running.values():
                proc.wait()
