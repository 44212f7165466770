"""What checking the GPU image's requirement set costs: pip's resolver over
requirements/trainer-gpu.txt (dry run, Linux x86_64 / CPython 3.11), once with wheel metadata
read through HTTP range requests (``--use-feature=fast-deps``, what tools/gpu_lock.py and the
test use) and, with ``--full``, once the plain way (whole wheels downloaded to read their
metadata, because the index serves no separate metadata files).

Wall time per run; bytes received are read from /proc/net/dev before and after, which counts
every process on the machine, so they are an upper bound on a shared machine.

Run: ``.venv/bin/python bench/gpu_lock.py [--full]``; writes ``bench/results/gpu-lock.json``.
Needs the package index; without it the result records the skip.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))
import gpu_lock  # noqa: E402
from common import figure, write_result  # noqa: E402


def rx_bytes() -> int | None:
    """Bytes received on all non-loopback interfaces."""
    try:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return None
    total = 0
    for line in lines:
        name, data = line.split(":", 1)
        if name.strip() != "lo":
            total += int(data.split()[0])
    return total


def run(fast: bool) -> dict[str, float | int | None]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = gpu_lock.pip_command(gpu_lock.LOCK_FILE, Path(tmp) / "report.json")
        if not fast:
            cmd.remove("--use-feature=fast-deps")
        rx0, t0 = rx_bytes(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=gpu_lock.isolated_env(),
                              timeout=1800)
        wall = time.perf_counter() - t0
        rx1 = rx_bytes()
    return {"wall_s": round(wall, 1), "rc": proc.returncode,
            "rx_mb": round((rx1 - rx0) / 1e6, 1) if rx0 is not None and rx1 is not None
            else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--full", action="store_true", help="also resolve downloading whole wheels")
    args = p.parse_args()
    packages = len(gpu_lock.read_pins(gpu_lock.LOCK_FILE))
    fast = run(True)
    result: dict[str, object] = {"packages": packages, "fast_deps": fast}
    figures = [figure("pip resolve of the GPU lock (dry run, range-request metadata)",
                      fast["wall_s"], unit="s",
                      note=f"{packages} packages; rc {fast['rc']}; "
                           f"received <= {fast['rx_mb']} MB")]
    if args.full:
        full = run(False)
        result["whole_wheels"] = full
        figures.append(figure("pip resolve of the GPU lock (dry run, whole wheels)",
                              full["wall_s"], unit="s",
                              note=f"rc {full['rc']}; received <= {full['rx_mb']} MB"))
    result["figures"] = figures
    print(write_result("gpu-lock", result))
    return 0 if fast["rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
