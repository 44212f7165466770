"""`make gpu-check`: the trainer on a GPU machine, start to end, in one script (under 10 min).

It runs under whatever ``python3`` holds a CUDA torch (the project's venv is not needed),
installs nothing but the wheels it is handed (``--wheels DIR``: ``pip install --no-index
--no-deps --target``, put first on ``sys.path`` and the stages' ``PYTHONPATH``) and needs no
hub: the four stages run on the toy model (``.cache/toy-model-v<N>``, built on the spot when
absent or given with ``--model``) and the figures on models initialised at random from a
config. Steps, in order (each is recorded in the JSON with its status, seconds and details):

1. ``wheels``: install the handed wheels (or say that none were handed).
2. ``preflight``: Python, driver, torch and its CUDA build, transformers, TRL and the other
   libraries' versions; GPU name, memory and bf16 support. It refuses (exit 2), naming why,
   when something cannot work: no usable CUDA device, no bf16, a library that cannot be
   imported (carry it as a wheel). Declared version conflicts are listed as warnings.
3. ``matmul``: the device's measured dense bf16 matmul rate (8192^3 on CUDA), the peak that
   MFU is computed against.
4. ``toy_model``: the toy model for the miniature run.
5. ``generate``, ``midtrain_sigterm``, ``midtrain_resume``, ``rl``, ``evaluate``: a miniature
   run of the polya arm through the stage entrypoint (``python -m polya_trainer STAGE``, as a
   pod runs it), each stage a child process with ``POLYA_REQUIRE_CUDA=1`` and
   ``resources.gpus: 1`` on CUDA: generate with the HF backend, midtrain as a full fine-tune
   (float32 master weights, bf16 autocast: checked in the checkpoint), held at the end of
   step 2 (``runtime/hold.py``), sent SIGTERM (exit 143, ``checkpoint-2``), rerun (resumes
   from step 2), rl (GRPO, HF rollouts; rewards logged) and evaluate (the report written).
   The weights must move in midtrain and in rl.
6. ``sft_figures``: SFT tokens/s and MFU of a Qwen2-style 1.5B (seq 2048, float32 masters,
   bf16 autocast): a bare PyTorch loop, ours (the midtrain stage's config) and bare TRL
   ``SFTTrainer`` (``bench/gpu.py``'s runners), MFU against the measured matmul rate.
7. ``memory``: peak CUDA memory of ours with gradient checkpointing against the arithmetic of
   docs/memory-plan.md (16 B per parameter of state, checkpointed activations, one layer
   recomputed, logits, float32 loss and logit gradients, 3 GB of slack).
8. ``grpo_figures``: GRPO step time, ours (the rl stage's config) against bare TRL
   ``GRPOTrainer``, HF ``generate`` rollouts.
9. ``multi_gpu``: with 2 GPUs or more, midtrain (SIGTERM, resume) and rl with
   ``processesPerNode: 2`` (FSDP2) through ``accelerate launch`` as the Job runs them, then
   evaluate; with fewer it says that it did not run.

A step that needs an earlier one which did not pass is skipped. The figures are measured and
compared with their goals in the JSON; a missed goal does not fail the check, an error does.
The exit status is 0 when every step that could run passed, 2 when the preflight refused and
1 otherwise, with the first failure named on the last line.

    python3 bench/gpu_check.py --wheels .whl            # on the GPU machine (docs/performance.md)
    python bench/gpu_check.py --device cpu --tiny       # the CPU rehearsal (tests/trainer)
    python bench/gpu_check.py --download-wheels .whl    # here: the wheels the GPU machine lacks

Results: ``bench/results/gpu-check.json`` (``--tiny``: ``.cache/bench/gpu-check-tiny.json``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRAINER = ROOT / "trainer"
for _p in (ROOT / "tests", TRAINER, HERE):  # bench/ first: its `common`
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import gpu as G  # noqa: E402  (bench/gpu.py: stdlib at import; torch inside its functions)
from common import figure, gpu_info, machine_info, package_versions, write_result  # noqa: E402

ARM = "polya"
HOLD_STEP, MIDTRAIN_STEPS, RL_STEPS = 2, 4, 3
BUDGET_S = {"gpu": 600, "tiny": 180}  # the goals: 10 min on one GPU, 3 min on CPU
# Wheels the GPU machine lacks (its image has torch, transformers, accelerate, peft, pyarrow,
# pandas, PyYAML, rich, ...: .library/device/KINDS.md); versions from the GPU image's lock.
WHEELS = ("trl", "datasets", "dill", "multiprocess", "math-verify", "latex2sympy2-extended",
          "antlr4-python3-runtime", "pydantic", "pydantic-core", "annotated-types",
          "typing-inspection", "typing-extensions")
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# module -> distribution the stages import (refused when it cannot be imported)
NEEDED = {"torch": "torch", "transformers": "transformers", "accelerate": "accelerate",
          "trl": "trl", "datasets": "datasets", "math_verify": "math-verify",
          "pydantic": "pydantic", "yaml": "PyYAML", "pyarrow": "pyarrow", "rich": "rich",
          "prometheus_client": "prometheus-client", "safetensors": "safetensors"}
VERSIONS = ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "tokenizers",
            "huggingface-hub", "safetensors", "pyarrow", "fsspec", "math-verify", "pydantic",
            "numpy", "vllm")
CHECKED_REQUIREMENTS = ("trl", "datasets", "math-verify", "pydantic", "transformers")


class Refused(Exception):
    """The preflight's verdict: this machine cannot run the check (exit 2)."""


class NotRun(Exception):
    """A step that cannot run on this machine (not a failure), e.g. multi-GPU on one GPU."""


def check(cond: Any, message: str) -> None:
    """An assertion that survives ``python -O``."""
    if not cond:
        raise AssertionError(message)


# --------------------------------------------------------------------------- steps


class Steps:
    """Runs named steps in order and records them; a step whose needs did not pass is
    skipped; after a refusal, everything is."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.refused = False

    def status(self, name: str) -> str | None:
        return next((r["status"] for r in self.records if r["name"] == name), None)

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None],
            needs: tuple[str, ...] = ()) -> dict[str, Any] | None:
        rec: dict[str, Any] = {"name": name}
        blocked = [n for n in needs if self.status(n) != "passed"]
        if self.refused or blocked:
            rec.update(status="skipped", reason="preflight refused" if self.refused
                       else f"needs {', '.join(blocked)}, which did not pass")
            self.records.append(rec)
            print(f"[gpu-check] {name}: skipped ({rec['reason']})", flush=True)
            return None
        print(f"[gpu-check] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            detail = fn() or {}
            rec.update(status="passed", detail=detail)
        except NotRun as exc:
            rec.update(status="not run", reason=str(exc))
        except Refused as exc:
            self.refused = True
            rec.update(status="failed", refused=True, error=str(exc))
        except Exception as exc:
            rec.update(status="failed", error=G.error_text(exc),
                       traceback=traceback.format_exc()[-4000:])
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        self.records.append(rec)
        shown = rec.get("error") or rec.get("reason") or ""
        print(f"[gpu-check] {name}: {rec['status']} ({rec['seconds']} s)"
              + (f": {shown}" if shown else ""), flush=True)
        return rec.get("detail")

    def first_failure(self) -> dict[str, Any] | None:
        return next((r for r in self.records if r["status"] == "failed"), None)


# --------------------------------------------------------------------------- wheels


def wheel_pins(names: tuple[str, ...] = WHEELS) -> list[str]:
    """``name==version`` for each wheel, versions from requirements/trainer-gpu.txt."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / "trainer-gpu.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.strip().lower().replace("_", "-")] = version.split(";")[0].strip()
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"requirements/trainer-gpu.txt pins none of {missing}")
    return [f"{n}=={pins[n]}" for n in names]


def download_wheels(dest: Path, python_version: str) -> int:
    """Fetch the wheels the GPU machine lacks (for its Python), with no dependencies."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp",
           *(x for p in WHEEL_PLATFORMS for x in ("--platform", p)), "-d", str(dest),
           *wheel_pins()]
    rc = subprocess.call(cmd)
    files = sorted(dest.glob("*.whl"))
    size = sum(f.stat().st_size for f in files)
    for f in files:
        print(f"  {f.name} ({f.stat().st_size / 2**20:.2f} MiB)")
    print(f"{len(files)} wheels, {size / 2**20:.1f} MiB in {dest}")
    return rc


def install_wheels(wheels: Path | None, site: Path) -> dict[str, Any]:
    """pip-install the handed wheels into `site` (no index, no dependencies) and put `site`
    first on sys.path and on the stages' PYTHONPATH."""
    if wheels is None:
        return {"installed": [], "note": "no wheels handed (--wheels): using what is installed"}
    files = sorted(Path(wheels).glob("*.whl"))
    check(files, f"no *.whl files in {wheels}")
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
           *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    check(proc.returncode == 0, f"pip install of the wheels failed: {proc.stderr[-2000:]}")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    dists = sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info"))
    return {"wheels": [f.name for f in files], "installed": dists, "site": str(site)}


# --------------------------------------------------------------------------- preflight


def driver_version() -> str | None:
    gpus = gpu_info()
    if gpus and gpus[0].get("driver"):
        return gpus[0]["driver"]
    with contextlib.suppress(OSError, IndexError):
        return Path("/proc/driver/nvidia/version").read_text().splitlines()[0].strip()
    return None


def requirement_conflicts(names: tuple[str, ...] = CHECKED_REQUIREMENTS) -> list[str]:
    """Declared requirements of `names` that the installed versions do not meet."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["packaging not importable: requirements not checked"]
    out = []
    for name in names:
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                out.append(f"{name} needs {req}, not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                out.append(f"{name} needs {req}, found {have}")
    return out


def preflight(device: str) -> dict[str, Any]:
    problems: list[str] = []
    info: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                            "driver": driver_version()}
    cannot = {}
    for module, dist in NEEDED.items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError or a broken install
            cannot[dist] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if cannot:
        problems.append("cannot import " + "; ".join(f"{d} ({e})" for d, e in cannot.items())
                        + ": carry them as wheels (--wheels DIR; --download-wheels fetches "
                        "them where pip works)")
    info["versions"] = package_versions(VERSIONS)
    info["warnings"] = requirement_conflicts()
    if "torch" in cannot:
        raise Refused("; ".join(problems))
    import torch

    info.update(torch_cuda_build=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if device == "cuda":
        if not torch.cuda.is_available():
            try:  # the trainer's own account of why (it needs pydantic)
                from polya_trainer.backends.models import DRIVER_REQUIREMENT, cuda_found

                why = f"{cuda_found()}; {DRIVER_REQUIREMENT}"
            except ImportError:
                why = f"torch {torch.__version__}, CUDA build {torch.version.cuda}"
            problems.append(f"no usable CUDA device ({why}); --device cpu --tiny rehearses "
                            "the check without one")
        else:
            info["gpus"] = [{"name": torch.cuda.get_device_name(i),
                             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory
                                                 / 2**30, 1),
                             "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                            for i in range(torch.cuda.device_count())]
            info["bf16"] = bool(torch.cuda.is_bf16_supported())
            if not info["bf16"]:
                problems.append(f"{info['gpus'][0]['name']} has no bf16: the training stages' "
                                "precision plan (float32 masters, bf16 autocast) needs it")
    else:
        info.update(gpus=[], bf16="not applicable (CPU: float32, no autocast)")
    if problems:
        raise Refused("; ".join(problems))
    for line in info["warnings"]:
        print(f"[gpu-check] warning: {line}", flush=True)
    return info


# --------------------------------------------------------------------------- matmul


def matmul_rate(device: str, n: int, reps: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Dense bf16 matmul rate on random data: the median of `reps` timed products."""
    import statistics

    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=gen)
    for _ in range(warmup):
        x @ y
    times = []
    for _ in range(reps):
        G.sync()
        t0 = time.perf_counter()
        x @ y
        G.sync()
        times.append(time.perf_counter() - t0)
    del x, y
    rates = [2 * n**3 / t / 1e12 for t in times]

    def sig(x: float) -> float:
        return float(f"{x:.4g}")

    return {"n": n, "dtype": "bfloat16", "reps": reps, "data": "random",
            "tflops": sig(statistics.median(rates)), "tflops_range": [sig(min(rates)),
                                                                       sig(max(rates))]}


# --------------------------------------------------------------------------- stages


CHILDREN: list[subprocess.Popen[bytes]] = []  # stage processes, each in its own session


@atexit.register
def _stop_children() -> None:
    """Leave no stage process (nor a launcher's workers) behind, whatever ended the check."""
    for proc in CHILDREN:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """One miniature run: a workdir, its spec file and the stages as child processes."""

    def __init__(self, workdir: Path, body: dict[str, Any], device: str, timeout: float,
                 processes: int | None = None):
        import yaml

        self.workdir, self.device, self.timeout, self.processes = workdir, device, timeout, \
            processes
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.spec_file = workdir / "run.yaml"
        self.spec_file.write_text(yaml.safe_dump(body))

    def command(self, stage: str) -> list[str]:
        """The pod's command (runtime.launcher), with this interpreter."""
        from polya_trainer.runtime.launcher import stage_command

        gpus = (self.processes or 1) if self.device == "cuda" else 0
        cmd = stage_command(stage, ARM, str(self.spec_file), str(self.workdir), gpus=gpus,
                            processes=self.processes, python=sys.executable, port=free_port())
        if cmd[:2] == ["accelerate", "launch"]:
            cmd = [sys.executable, "-m", "accelerate.commands.launch", *cmd[2:]]
        return cmd

    def start(self, stage: str, tag: str | None = None,
              hold: tuple[int, Path] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        from polya_trainer.backends.models import REQUIRE_CUDA_ENV
        from polya_trainer.runtime.hold import HOLD_ENV

        tag = tag or stage
        env = dict(os.environ, POLYA_PROGRESS_FILE=str(self.progress(tag)),
                   HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONPATH=os.pathsep.join([str(TRAINER),
                                               *filter(None, [os.environ.get("PYTHONPATH")])]))
        env.pop(HOLD_ENV, None)
        if self.device == "cuda":
            env[REQUIRE_CUDA_ENV] = "1"  # as the operator's Jobs: refuse a CPU fallback
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
            env.setdefault("OMP_NUM_THREADS", "1")
        if hold:
            env[HOLD_ENV] = f"{hold[0]}:{hold[1]}"
        log = self.logs / f"{tag}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(self.command(stage), env=env, stdout=fh,
                                    stderr=subprocess.STDOUT, cwd=self.workdir,
                                    start_new_session=True)  # killpg reaches its workers
        CHILDREN.append(proc)
        return proc, log

    def progress(self, tag: str) -> Path:
        return self.logs / f"{tag}-progress.json"

    def finish(self, proc: subprocess.Popen[bytes], log: Path) -> int:
        try:
            return proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"timed out after {self.timeout:.0f} s; log {log}:\n"
                                 f"{tail(log)}") from None

    def stage(self, stage: str, tag: str | None = None) -> tuple[int, Path]:
        proc, log = self.start(stage, tag)
        return self.finish(proc, log), log

    def wait_for(self, proc: subprocess.Popen[bytes], log: Path, path: Path) -> None:
        end = time.monotonic() + self.timeout
        while not path.exists():
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode} before {path.name} appeared; "
                                     f"log {log}:\n{tail(log)}")
            if time.monotonic() > end:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"{path.name} did not appear in {self.timeout:.0f} s")
            time.sleep(0.05)

    def dir(self, stage: str) -> Path:
        from polya_trainer.runtime.workspace import Workspace

        return Workspace(self.workdir).stage(ARM, stage)

    def metrics(self, stage: str) -> dict[str, Any]:
        return json.loads((self.dir(stage) / "metrics.json").read_text())


def tail(log: Path, n: int = 1200) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-n:]
    return ""


def run_body(model: Path, data: dict[str, Path], device: str,
             processes: int | None = None) -> dict[str, Any]:
    """tests/testkit.py's reduced quickstart for the polya arm, on `device`: spec dtype auto
    (on CUDA float32 masters under bf16 autocast, on CPU float32), GPUs asked for on CUDA."""
    from testkit import reduced_run

    body = reduced_run("gpu-check", model, data, [ARM])
    spec = body["spec"]
    spec["model"]["dtype"] = "auto"
    gpus = (processes or 1) if device == "cuda" else 0
    for name, stage in spec["stages"].items():
        stage["resources"] = {"gpus": gpus}
        if processes and name in ("midtrain", "rl"):
            stage["resources"]["processesPerNode"] = processes
    # No periodic checkpoint before the end: the one checkpoint comes from SIGTERM.
    spec["stages"]["midtrain"].update(maxSteps=MIDTRAIN_STEPS, saveSteps=1000)
    spec["stages"]["rl"].update(maxSteps=RL_STEPS, saveSteps=1000)
    return body


def weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(str(f)))
    check(out, f"no safetensors weights in {model_dir}")
    return out


def weights_moved(before: Path, after: Path) -> dict[str, Any]:
    """How many tensors changed between two saved models (and the largest change)."""
    a, b = weights(before), weights(after)
    common = sorted(set(a) & set(b))
    check(common, f"{before} and {after} share no tensor names")
    changed, largest = 0, 0.0
    for k in common:
        d = (a[k].float() - b[k].float()).abs().max().item()
        changed += d > 0
        largest = max(largest, d)
    return {"tensors": len(common), "changed": changed, "max_abs_change": largest}


def checkpoint_precision(ckpt: Path) -> dict[str, Any]:
    """The trained weights' dtypes and the Trainer's autocast flags in a checkpoint."""
    import torch
    from safetensors import safe_open

    dtypes: set[str] = set()
    for f in ckpt.glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            dtypes |= {str(fh.get_slice(k).get_dtype()) for k in fh.keys()}  # noqa: SIM118
    args = torch.load(ckpt / "training_args.bin", weights_only=False)
    fsdp = getattr(args, "fsdp", None)
    return {"weight_dtypes": sorted(dtypes), "bf16": bool(args.bf16), "fp16": bool(args.fp16),
            "fsdp": [str(x) for x in fsdp] if isinstance(fsdp, list) else fsdp,
            "fsdp_version": (getattr(args, "fsdp_config", None) or {}).get("version")}


class StageChecks:
    """The miniature run's steps (one Run), shared by the one- and two-process parts."""

    def __init__(self, run: Run, base_model: Path):
        self.run, self.base = run, base_model

    def generate(self) -> dict[str, Any]:
        rc, log = self.run.stage("generate")
        check(rc == 0, f"generate exited {rc}; log {log}:\n{tail(log)}")
        card = json.loads((self.run.dir("generate") / "card.json").read_text())
        accepted = card["counts"]["accepted"]
        check(accepted > 0, "generate accepted no sample: midtrain would have no data")
        return {"accepted": accepted, "files": len(card["files"]), "backend": card["backend"]}

    def midtrain_sigterm(self) -> dict[str, Any]:
        from polya_trainer.runtime.artifacts import is_complete
        from polya_trainer.runtime.workspace import Workspace
        from polya_trainer.stages import training as T

        held = self.run.workdir / "held-midtrain"
        proc, log = self.run.start("midtrain", "midtrain-1", hold=(HOLD_STEP, held))
        self.run.wait_for(proc, log, held)  # the end of step 2, whatever the machine's speed
        proc.send_signal(signal.SIGTERM)
        rc = self.run.finish(proc, log)
        one = not self.run.processes or self.run.processes == 1
        if one:  # several processes: the launcher's own exit code (recorded, not asserted)
            check(rc == T.PREEMPTED_EXIT_CODE, f"midtrain exited {rc} after SIGTERM, not "
                  f"{T.PREEMPTED_EXIT_CODE}; log {log}:\n{tail(log)}")
        else:
            check(rc != 0, f"midtrain exited 0 after SIGTERM; log {log}:\n{tail(log)}")
        ckpt = T.newest_checkpoint(Workspace(self.run.workdir).checkpoints(ARM, "midtrain"))
        check(ckpt is not None and T.checkpoint_step(ckpt) == HOLD_STEP,
              f"no complete checkpoint-{HOLD_STEP} after SIGTERM (newest: {ckpt}); log {log}:\n"
              f"{tail(log)}")
        state = json.loads(self.run.progress("midtrain-1").read_text())
        check(state["state"] == "Suspended", f"progress says {state['state']}, not Suspended")
        check(not is_complete(self.run.dir("midtrain")), "the stage manifest exists already")
        prec = checkpoint_precision(ckpt)
        if one or prec["weight_dtypes"]:  # FSDP may save its own format instead
            check(prec["weight_dtypes"] == ["F32"],
                  f"checkpoint weights are {prec['weight_dtypes']}, not float32 masters")
        cuda = self.run.device == "cuda"
        check(prec["bf16"] == cuda and not prec["fp16"],
              f"autocast flags bf16={prec['bf16']} fp16={prec['fp16']}, expected bf16={cuda}")
        if cuda and not one:
            check(prec["fsdp"] and prec["fsdp_version"] == 2,
                  f"{self.run.processes} processes without FSDP2: fsdp={prec['fsdp']}, "
                  f"version {prec['fsdp_version']}")
        return {"exit_code": rc, "checkpoint": ckpt.name, "precision": prec,
                "progress_message": state.get("message")}

    def midtrain_resume(self) -> dict[str, Any]:
        from polya_trainer.runtime.workspace import Workspace

        rc, log = self.run.stage("midtrain", "midtrain-2")
        check(rc == 0, f"the rerun exited {rc}; log {log}:\n{tail(log)}")
        m = self.run.metrics("midtrain")
        got = (m["resumed_from_step"], m["global_step"], m["steps_this_run"])
        want = (HOLD_STEP, MIDTRAIN_STEPS, MIDTRAIN_STEPS - HOLD_STEP)
        check(got == want, f"(resumed_from_step, global_step, steps_this_run) = {got}, "
                           f"expected {want}")
        check(m["processes"] == (self.run.processes or 1), f"ran {m['processes']} processes")
        moved = weights_moved(self.base, Workspace(self.run.workdir).model(ARM, "midtrain"))
        check(moved["changed"] > 0, "midtrain did not move the weights")
        return {"metrics": {k: m.get(k) for k in ("resumed_from_step", "global_step",
                                                  "steps_this_run", "processes", "train_loss",
                                                  "train_runtime")},
                "weights": moved}

    def rl(self) -> dict[str, Any]:
        from polya_trainer.runtime.workspace import Workspace

        rc, log = self.run.stage("rl")
        check(rc == 0, f"rl exited {rc}; log {log}:\n{tail(log)}")
        m = self.run.metrics("rl")
        check(len(m.get("rewards") or []) == RL_STEPS,
              f"rewards logged: {m.get('rewards')}, expected one per step ({RL_STEPS})")
        check(m["use_vllm"] is False, "rl used vLLM; the check asks for HF rollouts")
        check(m["processes"] == (self.run.processes or 1), f"ran {m['processes']} processes")
        moved = weights_moved(Workspace(self.run.workdir).model(ARM, "midtrain"),
                              Workspace(self.run.workdir).model(ARM, "rl"))
        check(moved["changed"] > 0, "GRPO did not move the weights (every group's rewards "
                                    f"equal? rewards {m['rewards']})")
        return {"rewards": m["rewards"], "global_step": m["global_step"],
                "processes": m["processes"], "weights": moved}

    def evaluate(self) -> dict[str, Any]:
        rc, log = self.run.stage("evaluate")
        check(rc == 0, f"evaluate exited {rc}; log {log}:\n{tail(log)}")
        results = json.loads((self.run.dir("evaluate") / "results.json").read_text())
        check(set(results) >= {"base", "midtrain", "rl"},
              f"results for {sorted(results)}, expected base, midtrain and rl")
        report = self.run.workdir / "report"
        md_text = (report / "report.md").read_text() if (report / "report.md").exists() else ""
        check(md_text.strip(), f"no report at {report / 'report.md'}")
        check((report / "report.html").is_file(), "no report.html beside report.md")
        return {"checkpoints": sorted(results),
                "pass@1": {c: {b: r.get("pass@1") for b, r in v.items()}
                           for c, v in results.items()},
                "report": str(report / "report.md"), "report_bytes": len(md_text)}


# --------------------------------------------------------------------------- figures


def bench_args(a: argparse.Namespace, **over: Any) -> argparse.Namespace:
    """bench/gpu.py's settings: its --dry-run sizes with --tiny, else the issue's."""
    argv = (["--dry-run"] if a.tiny else
            ["--model-size", a.model_size, "--seq-len", str(a.seq_len), "--steps",
             str(a.sft_steps), "--micro-batch", str(a.micro_batch)])
    ba = G.parse_args([*argv, "--weights-dtype", "float32"])
    for k, v in over.items():
        setattr(ba, k, v)
    return ba


def variant_errors(section: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    out = []
    for n in names:
        v = section.get(n) or {}
        if "error" in v or "skipped" in v:
            out.append(f"{n}: {v.get('error') or v.get('skipped')}")
    return out


def sft_figures(a: argparse.Namespace, device: str, peak_tflops: float) -> dict[str, Any]:
    out = G.bench_sft(bench_args(a), device, peak_tflops * 1e12)
    bad = variant_errors(out, ("torch_loop", "ours", "trl_bare"))
    check(not bad, "; ".join(bad))
    for n in ("torch_loop", "ours", "trl_bare"):
        check(out[n].get("tokens_per_second"), f"{n}: no tokens/s measured")
    return out


def planned_sft_peak(model: dict[str, Any], tokens: int) -> dict[str, Any]:
    """docs/memory-plan.md's SFT arithmetic for one process (no FSDP: the whole model is in
    the training state, nothing is gathered), in bytes: float32 weights, gradients and AdamW
    state (16 B per parameter), checkpointed bf16 activations (tokens x hidden x 2 B x
    layers), one layer recomputed in backward (tokens x intermediate x 2 B x 3), bf16 logits,
    their float32 loss and gradients (tokens x vocab x 2, 4 and 2 B), and 3 GB of CUDA
    context and allocator slack."""
    n, h, layers = model["parameters"], model["hidden_size"], model["num_hidden_layers"]
    inter, vocab = model["intermediate_size"], model["vocab_size"]
    items = {"training_state": 16 * n, "checkpointed_activations": tokens * h * 2 * layers,
             "recomputed_layer": tokens * inter * 2 * 3, "logits_bf16": tokens * vocab * 2,
             "loss_float32": tokens * vocab * 4, "logit_gradients": tokens * vocab * 2,
             "context_and_slack": 3 * 10**9}
    return {"items_bytes": items, "total_gib": round(sum(items.values()) / 2**30, 2)}


def memory_check(a: argparse.Namespace, device: str) -> dict[str, Any]:
    ba = bench_args(a, grad_ckpt=True, sft_variants={"ours"},
                    steps=2 if a.tiny else max(2, a.memory_steps), warmup=1)
    out = G.bench_sft(ba, device, None)
    bad = variant_errors(out, ("ours",))
    check(not bad, "; ".join(bad))
    ours = out["ours"]
    plan = planned_sft_peak(out["model"], ours["micro_batch"] * out["seq_len"])
    measured = ours.get("peak_memory_gib")
    if device == "cuda":
        check(measured, "no peak CUDA memory measured")
    return {"measured_peak_gib": measured, "planned_peak_gib": plan["total_gib"],
            "plan": plan, "micro_batch": ours["micro_batch"], "seq_len": out["seq_len"],
            "gradient_checkpointing": ours["gradient_checkpointing"],
            "model": out["model"], "measured": "torch.cuda.max_memory_allocated (no CUDA "
            "context; CPU: not measured)", "fallbacks": ours.get("fallbacks", [])}


def grpo_figures(a: argparse.Namespace, device: str) -> dict[str, Any]:
    ba = bench_args(a)
    if not a.tiny:
        ba.steps, ba.warmup = a.grpo_steps, a.grpo_warmup
    out = G.bench_grpo(ba, device)
    check("skipped" not in out, f"GRPO: {out.get('skipped')}")
    bad = variant_errors(out, ("ours", "trl_bare"))
    check(not bad, "; ".join(bad))
    for n in ("ours", "trl_bare"):
        check((out[n].get("step_seconds") or {}).get("median"), f"{n}: no step time")
    return out


def figures(result: dict[str, Any], tiny: bool) -> list[dict[str, Any]]:
    figs = G.figures({"sft": result.get("sft_figures"), "grpo": result.get("grpo_figures")})
    mm = result.get("matmul") or {}
    for f in figs:
        if f["unit"] == "MFU" and mm:
            f["note"] = (f.get("note", "") + f"; peak = this run's measured bf16 matmul rate "
                         f"({mm['tflops']} TFLOP/s, {mm['n']}^3)").lstrip("; ")
    if mm:
        sheet = result.get("datasheet_peak_tflops")
        figs.append(figure(f"dense bf16 matmul, {mm['n']}^3, random data (vs datasheet)",
                           mm["tflops"], sheet, unit="TFLOP/s",
                           ours_range=mm["tflops_range"]))
    mem = result.get("memory") or {}
    if mem.get("planned_peak_gib"):
        figs.append(figure("SFT peak memory, ours with gradient checkpointing vs "
                           "docs/memory-plan.md arithmetic (one process)",
                           mem.get("measured_peak_gib"), mem["planned_peak_gib"], unit="GiB",
                           goal=1.0, goal_op="<=", goal_on="ratio",
                           note="goal: the plan's arithmetic is an upper bound"))
    if result.get("seconds") and result.get("ok"):
        budget = BUDGET_S["tiny" if tiny else "gpu"]
        figs.append(figure("gpu-check wall time" + (" (CPU rehearsal)" if tiny else ""),
                           result["seconds"], unit="s", goal=budget, goal_op="<="))
    return figs


# --------------------------------------------------------------------------- multi-GPU


def enough_devices(a: argparse.Namespace) -> int:
    """The devices the two-process part may use: the GPU count (the CPU counts as one), or 2
    with --multi-process."""
    if a.multi_process:
        return 2
    if a.device != "cuda":
        return 1
    try:
        import torch

        return max(torch.cuda.device_count(), 1)
    except Exception:  # no torch: the preflight says so
        return 1


def multi_gpu(device: str, timeout: float, single: Run, base: Path, data: dict[str, Path],
              devices: int) -> dict[str, Any]:
    if devices < 2:
        raise NotRun(f"did not run: {devices} device{'s' if devices != 1 else ''}")
    workdir = single.workdir.parent / "multi"
    run = Run(workdir, run_body(base, data, device, processes=2), device, timeout, processes=2)
    shutil.copytree(single.dir("generate"), run.dir("generate"))  # the same data
    checks = StageChecks(run, base)
    out: dict[str, Any] = {"processes": 2, "devices": devices}
    for name in ("midtrain_sigterm", "midtrain_resume", "rl", "evaluate"):
        try:
            out[name] = getattr(checks, name)()
        except Exception as exc:
            raise AssertionError(f"{name} with processesPerNode 2: {G.error_text(exc)}") from exc
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tiny", action="store_true",
                    help="figures on bench/gpu.py's tiny config (the CPU rehearsal)")
    ap.add_argument("--wheels", type=Path, default=None,
                    help="a folder of wheels to install first (no index, no dependencies)")
    ap.add_argument("--site", type=Path, default=None,
                    help="where the wheels go (default: a folder under the system temp dir)")
    ap.add_argument("--download-wheels", type=Path, default=None, metavar="DIR",
                    help="only fetch the wheels the GPU machine lacks into DIR, then exit")
    ap.add_argument("--wheel-python", default="3.12", help="Python of the GPU machine (3.12)")
    ap.add_argument("--model", type=Path, default=None,
                    help="the toy model (default .cache/toy-model-v<N>, built when absent)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="workdir of the miniature runs (default: temporary, removed after a "
                         "pass)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/gpu-check.json (--tiny: "
                         ".cache/bench/gpu-check-tiny.json)")
    ap.add_argument("--model-size", default="1.5b", help="bench/gpu.py size of the figures")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--memory-steps", type=int, default=4)
    ap.add_argument("--grpo-steps", type=int, default=6)
    ap.add_argument("--grpo-warmup", type=int, default=2)
    ap.add_argument("--matmul-n", type=int, default=None, help="default 8192 (--tiny: 256)")
    ap.add_argument("--stage-timeout", type=float, default=600.0,
                    help="seconds each stage process may take")
    ap.add_argument("--multi-process", action="store_true",
                    help="run the processesPerNode 2 part whatever the GPU count (on CPU: "
                         "gloo, no FSDP), to rehearse it")
    a = ap.parse_args(argv)
    if a.device == "cpu" and not a.tiny and a.download_wheels is None:
        ap.error("--device cpu needs --tiny: the full-size figures need a GPU")
    if a.matmul_n is None:
        a.matmul_n = 256 if a.tiny else 8192
    return a


def toy_model(given: Path | None) -> dict[str, Any]:
    from polya_trainer.runtime.artifacts import read_manifest
    from polya_trainer.toy import TOY_VERSION, build_toy_model

    if given is not None:
        path = given.resolve()  # the stages run in their workdir
        check((path / "config.json").is_file(), f"no model at {given}")
    else:
        path = build_toy_model(ROOT / ".cache" / f"toy-model-v{TOY_VERSION}")
    manifest = read_manifest(path, verify=False) or {}
    return {"path": str(path), "kind": manifest.get("kind"), "version": manifest.get("version")}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.download_wheels is not None:
        return download_wheels(a.download_wheels, a.wheel_python)
    t0 = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, whatever the machine has
    out_path = a.out or (ROOT / ".cache" / "bench" / "gpu-check-tiny.json" if a.tiny
                         else ROOT / "bench" / "results" / "gpu-check.json")
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="polya-gpu-check-"))
    site = a.site or Path(tempfile.gettempdir()) / "polya-gpu-check-site"
    steps = Steps()
    result: dict[str, Any] = {"benchmark": "gpu-check", "device": a.device, "tiny": a.tiny,
                              "workdir": str(workdir),
                              "settings": {k: str(v) if isinstance(v, Path) else v
                                           for k, v in vars(a).items()}}
    ctx: dict[str, Any] = {}

    def record(key: str, value: dict[str, Any] | None) -> None:
        if value is not None:
            result[key] = value

    record("wheels", steps.run("wheels", lambda: install_wheels(a.wheels, site)))
    record("preflight", steps.run("preflight", lambda: preflight(a.device), needs=("wheels",)))
    if steps.status("preflight") == "passed":
        name = result["preflight"]["gpus"][0]["name"] if a.device == "cuda" else "cpu"
        sheet = G.peak_flops(name, None)
        result["datasheet_peak_tflops"] = sheet / 1e12 if sheet else None
    record("matmul", steps.run("matmul", lambda: matmul_rate(a.device, a.matmul_n),
                               needs=("preflight",)))
    record("toy_model", steps.run("toy_model", lambda: toy_model(a.model), needs=("preflight",)))

    def stages_ready() -> dict[str, Any]:
        from polya_trainer.toy import write_demo_data

        base = Path(result["toy_model"]["path"])
        data = write_demo_data(workdir / "data", train=8, rl=16, evaluation=6)
        run = Run(workdir / "single", run_body(base, data, a.device), a.device,
                  a.stage_timeout)
        ctx.update(base=base, data=data, run=run, checks=StageChecks(run, base))
        return {"workdir": str(run.workdir)}

    steps.run("stage_setup", stages_ready, needs=("toy_model",))
    order = [("generate", ("stage_setup",)), ("midtrain_sigterm", ("generate",)),
             ("midtrain_resume", ("midtrain_sigterm",)), ("rl", ("midtrain_resume",)),
             ("evaluate", ("rl",))]
    for name, needs in order:
        record(name, steps.run(name, lambda n=name: getattr(ctx["checks"], n)(), needs=needs))
    peak = (result.get("matmul") or {}).get("tflops")
    record("sft_figures", steps.run("sft_figures", lambda: sft_figures(a, a.device, peak),
                                    needs=("matmul",)))
    record("memory", steps.run("memory", lambda: memory_check(a, a.device),
                               needs=("preflight",)))
    record("grpo_figures", steps.run("grpo_figures", lambda: grpo_figures(a, a.device),
                                     needs=("preflight",)))
    devices = enough_devices(a)
    record("multi_gpu", steps.run(
        "multi_gpu", lambda: multi_gpu(a.device, a.stage_timeout, ctx["run"], ctx["base"],
                                       ctx["data"], devices),
        needs=("generate",) if devices >= 2 else ("preflight",)))
    rec = next(r for r in steps.records if r["name"] == "multi_gpu")
    if rec["status"] == "not run":
        result["multi_gpu"] = {"status": "did not run", "reason": rec["reason"]}

    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["steps"] = [{k: v for k, v in r.items() if k != "detail"}  # details: by name
                       for r in steps.records]
    failed = steps.first_failure()
    result["ok"] = failed is None
    result["first_failure"] = (f"{failed['name']}: {failed['error']}" if failed else None)
    result["figures"] = figures(result, a.tiny)
    result["versions"] = (result.get("preflight") or {}).get("versions") or package_versions(
        VERSIONS)
    result["machine"] = machine_info()
    path = write_result("gpu-check", result, out_path)
    if a.workdir is None and (failed is None or not any(workdir.iterdir())):
        shutil.rmtree(workdir, ignore_errors=True)
    for f in result["figures"]:
        print(f"[gpu-check] {f['name']}: ours {f['ours']} baseline {f['baseline']} "
              f"ratio {f['ratio']} {f['unit']} met {f['met']}")
    print(f"[gpu-check] wrote {path} ({result['seconds']} s)")
    if failed is not None:
        print(f"gpu-check FAILED at {failed['name']}: {failed['error'][:1500]}"
              + (f" (workdir kept: {workdir})" if workdir.exists() else ""), file=sys.stderr)
        return 2 if failed.get("refused") else 1
    print("gpu-check passed" + (f"; {result['multi_gpu']['reason']}"
                                if "reason" in result.get("multi_gpu", {}) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
