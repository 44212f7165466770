"""Training checkpoints on disk: HF Trainer's ``checkpoint-N`` directories in a stage's
``Workspace.checkpoints`` (:mod:`polya_trainer.runtime.workspace`), each complete only with our
marker (``MARKER``, written atomically after the Trainer's save) and a parseable
``trainer_state.json`` whose ``global_step`` matches its name. The training stages
(:mod:`polya_trainer.stages.training`) write and resume them; :mod:`polya_trainer.runtime.storage`
uploads and pulls them.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from polya_trainer.runtime.artifacts import atomic_write_json

MARKER = "polya-checkpoint.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """The step of a complete checkpoint directory, else None."""
    m = CHECKPOINT_RE.match(path.name)
    if not m or not path.is_dir():
        return None
    step = int(m.group(1))
    try:
        marker = json.loads((path / MARKER).read_text())
        state = json.loads((path / "trainer_state.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if marker.get("step") != step or state.get("global_step") != step:
        return None
    return step


def newest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in directory.iterdir():
        step = checkpoint_step(p)
        if step is not None and (best is None or step > best[0]):
            best = (step, p)
    return best[1] if best else None


def prune_incomplete(directory: str | Path) -> list[Path]:
    """Remove incomplete checkpoint directories (a kill mid-save, or mid-rotation): a resumed
    run would otherwise write into them, and the Trainer's rotation could keep them instead
    of good ones."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in sorted(directory.iterdir()):
        if CHECKPOINT_RE.match(p.name) and checkpoint_step(p) is None:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def mark_checkpoint(output_dir: str | Path, step: int) -> Path | None:
    path = Path(output_dir) / f"checkpoint-{step}"
    if not path.is_dir():
        return None
    return atomic_write_json(path / MARKER, {"step": step, "time": time.time()})
