"""The stage command for 0/1 GPU, several GPUs and several nodes, checked against the real
`accelerate launch` argument parser (with the Kubernetes placeholder substituted)."""

from __future__ import annotations

import pytest
from polya_trainer.launcher import launch_command, stage_command

TAIL = ["rl", "--spec", "/etc/polya/run.yaml", "--workdir", "/workspace/r", "--arm", "polya"]


def parse(cmd: list[str], rank: str = "0") -> object:
    from accelerate.commands.launch import launch_command_parser

    assert cmd[:2] == ["accelerate", "launch"]
    args = [rank if a == "$(JOB_COMPLETION_INDEX)" else a for a in cmd[2:]]
    return launch_command_parser().parse_args(args)


@pytest.mark.parametrize("gpus", [0, 1])
def test_zero_or_one_gpu_is_a_plain_process(gpus: int) -> None:
    cmd = stage_command("rl", "polya", "/etc/polya/run.yaml", "/workspace/r", gpus=gpus)
    assert cmd == ["python", "-m", "polya_trainer", *TAIL]


def test_inference_stages_stay_one_process() -> None:
    cmd = stage_command("generate", "polya", "/s.yaml", "/w", gpus=4)
    assert cmd[:3] == ["python", "-m", "polya_trainer"]
    with pytest.raises(ValueError, match="one process"):
        stage_command("evaluate", "polya", "/s.yaml", "/w", gpus=1, nodes=2, job_name="j")


def test_four_gpus_one_process_each() -> None:
    cmd = stage_command("rl", "polya", "/etc/polya/run.yaml", "/workspace/r", gpus=4)
    assert cmd[:4] == ["accelerate", "launch", "--num_processes", "4"]
    assert cmd[-len(TAIL) - 2:] == ["-m", "polya_trainer", *TAIL]
    a = parse(cmd)
    assert (a.num_processes, a.num_machines, a.multi_gpu, a.module) == (4, 1, True, True)
    assert a.training_script == "polya_trainer" and a.training_script_args == TAIL
    assert a.main_process_ip is None and a.mixed_precision == "no"


def test_two_nodes_of_four_gpus_rendezvous_at_pod_zero() -> None:
    cmd = stage_command("rl", "polya", "/etc/polya/run.yaml", "/workspace/r", gpus=4, nodes=2,
                        job_name="llama-polya-rl-0", port=29511)
    assert "$(JOB_COMPLETION_INDEX)" in cmd  # expanded by Kubernetes from the Job's env
    for rank in ("0", "1"):
        a = parse(cmd, rank)
        assert a.num_processes == 8 and a.num_machines == 2  # total over the nodes
        assert a.machine_rank == int(rank)
        assert a.main_process_ip == "llama-polya-rl-0-0.llama-polya-rl-0"
        assert a.main_process_port == 29511 and a.rdzv_backend == "static"
        assert a.training_script_args == TAIL


def test_multi_node_needs_the_job_name_and_sane_counts() -> None:
    with pytest.raises(ValueError, match="Job name"):
        stage_command("midtrain", "polya", "/s", "/w", gpus=4, nodes=2)
    with pytest.raises(ValueError):
        stage_command("midtrain", "polya", "/s", "/w", gpus=-1)
    with pytest.raises(ValueError):
        stage_command("midtrain", "polya", "/s", "/w", gpus=1, nodes=0)


def test_launch_command_keeps_the_older_argument_order() -> None:
    assert launch_command("midtrain", "/s", "/w", "star", gpus=2, nodes=1) == stage_command(
        "midtrain", "star", "/s", "/w", gpus=2)
