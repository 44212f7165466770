"""The command line that starts one stage in a pod, on one or several GPUs/nodes (pure).

* one process (CPU, one GPU, or an inference stage that shards itself, e.g. vLLM tensor
  parallelism): ``python -m polya_trainer STAGE --spec F --workdir D --arm A``;
* one node, several processes, training stage: ``accelerate launch --num_processes N
  --num_machines 1 --multi_gpu ... -m polya_trainer STAGE ...``. N is
  ``resources.processesPerNode`` (Kubeflow TrainJob's numProcPerNode), by default one process
  per GPU, or 1 without GPUs. Several processes without GPUs train on CPU over gloo (the
  stage's TrainingArguments set ``use_cpu``, so accelerate picks MULTI_CPU);
* several nodes: the same with a static rendezvous. The operator runs such a stage as an
  Indexed Job; each pod's machine rank is its completion index (``$(JOB_COMPLETION_INDEX)``:
  the Job controller injects that variable into the container env and Kubernetes expands
  ``$(VAR)`` in command/args) and the main process is pod 0, reached through the headless
  Service named like the Job (``<job>-0.<job>``, i.e. hostname.subdomain).
  ``--num_processes`` is the total over all machines (nodes x processes per node).

Why ``accelerate launch`` (for both cases, one launcher): it is what TRL and the HF Trainer
document, so its options and environment are the ones they are tested with; it runs the torch
elastic agent underneath (the same as ``torchrun``), which sets RANK/LOCAL_RANK/WORLD_SIZE/
MASTER_ADDR (vLLM's colocate mode needs them) and forwards SIGTERM to the workers, which then
save a checkpoint (see polya_trainer.stages.training). Mixed precision and dynamo are passed
explicitly ("no": the Trainer's own bf16/fp16 arguments decide), so no config file is needed
and nothing is guessed with warnings. Note: the agent kills the workers 30 s after forwarding
SIGTERM, so one step plus one checkpoint save should fit in that time.
"""

from __future__ import annotations

from typing import Any

from polya_trainer.spec import ARMS, STAGES

TRAINING_STAGES = ("midtrain", "rl")
MASTER_PORT = 29500


def stage_args(stage: str, spec_path: str, workdir: str, arm: str) -> list[str]:
    """Arguments of the stage entrypoint after the module name."""
    return [stage, "--spec", spec_path, "--workdir", workdir, "--arm", arm]


def add_stage_arguments(parser: Any) -> Any:
    """Declare what :func:`stage_args` writes on an ``argparse`` parser (``polya stage`` and
    the local runner's child processes read them with it)."""
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--spec", required=True, help="PolyaRun YAML/JSON file")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--arm", default="polya", choices=ARMS)
    return parser


def processes_per_node(gpus: int, processes: int | None = None) -> int:
    """``resources.processesPerNode``, defaulting to the GPU count, or 1 without GPUs."""
    if processes is not None and processes < 1:
        raise ValueError(f"need processesPerNode >= 1 (got {processes})")
    return processes or max(gpus, 1)


def stage_command(stage: str, arm: str, spec_path: str, workdir: str, gpus: int = 0,
                  nodes: int = 1, job_name: str | None = None, port: int = MASTER_PORT,
                  python: str = "python", processes: int | None = None) -> list[str]:
    """The container command for one stage attempt (see the module docstring).

    ``processes`` is ``resources.processesPerNode`` (None: the GPU count, or 1).
    """
    if gpus < 0 or nodes < 1:
        raise ValueError(f"need gpus >= 0 and nodes >= 1 (got gpus={gpus}, nodes={nodes})")
    args = stage_args(stage, spec_path, workdir, arm)
    per_node = processes_per_node(gpus, processes)
    distributed = stage in TRAINING_STAGES and (nodes > 1 or per_node > 1)
    if not distributed:
        if nodes > 1:
            raise ValueError(f"stage {stage!r} runs in one process; it cannot use {nodes} nodes")
        return [python, "-m", "polya_trainer", *args]
    # --multi_gpu selects accelerate's torch-elastic launcher; without GPUs the workers still
    # run on CPU with gloo, because the stage's TrainingArguments say use_cpu.
    launch = ["accelerate", "launch", "--num_processes", str(per_node * nodes),
              "--num_machines", str(nodes), "--multi_gpu", "--mixed_precision", "no",
              "--dynamo_backend", "no"]
    if nodes == 1:
        return [*launch, "--main_process_port", str(port), "-m", "polya_trainer", *args]
    if not job_name:
        raise ValueError("a multi-node stage needs the Job name for its rendezvous address")
    return [*launch, "--machine_rank", "$(JOB_COMPLETION_INDEX)",
            "--main_process_ip", f"{job_name}-0.{job_name}", "--main_process_port", str(port),
            "--rdzv_backend", "static", "--same_network", "-m", "polya_trainer", *args]


def launch_command(stage: str, spec_path: str, workdir: str, arm: str, *, gpus: int = 0,
                   nodes: int = 1, job_name: str | None = None,
                   master_port: int = MASTER_PORT, python: str = "python",
                   processes: int | None = None) -> list[str]:
    """Same as :func:`stage_command` with the earlier argument order (kept for callers)."""
    return stage_command(stage, arm, spec_path, workdir, gpus, nodes, job_name, master_port,
                         python, processes)
