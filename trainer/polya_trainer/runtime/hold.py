"""Two hooks that let a test (or a person debugging) stop a stage at a point of its choosing.

Both are off unless their environment variables are set, and both count a stage's own units:
optimizer steps in the training stages, data shards in generate.

* ``POLYA_HOLD_AT_STEP=<k>:<file>``: when unit k ends, the stage writes ``<file>`` (JSON with
  the unit and the pid) and waits until the file is removed or ``stop()`` says so (the
  training stages pass their SIGTERM flag). A test then signals or kills the process at a
  point it controls, however fast or slow the machine is.
* ``POLYA_STEP_DELAY=<seconds>``: sleeps after every unit, to rehearse a slow machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from polya_trainer.runtime.artifacts import atomic_write_json

HOLD_ENV = "POLYA_HOLD_AT_STEP"
DELAY_ENV = "POLYA_STEP_DELAY"


def unit_done(unit: int, stop: Callable[[], bool] = lambda: False) -> None:
    """Call at the end of unit `unit` (1-based) of a stage, in its main process only."""
    delay = float(os.environ.get(DELAY_ENV) or 0)
    if delay > 0:
        time.sleep(delay)
    at, _, marker = (os.environ.get(HOLD_ENV) or "").partition(":")
    if not marker or int(at) != unit:
        return
    hold = Path(marker)
    atomic_write_json(hold, {"step": unit, "pid": os.getpid()})
    print(f"holding after unit {unit} until {hold} is removed", flush=True)
    while hold.exists() and not stop():
        time.sleep(0.01)
