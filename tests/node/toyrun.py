"""A toy PolyaRun whose model and data live in its workspace claim, as on a cluster (the
container sees only its image and its volumes), with every stage shrunk to seconds on CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from polya_trainer.toy import write_demo_data

MOUNT = "/workspace"
CLAIM = "toy-workspace"


def fill_claim(claim_dir: Path, toy_model_dir: Path) -> None:
    """Copy the toy model and the demo data into the claim's host directory."""
    shutil.copytree(toy_model_dir, claim_dir / "models" / "toy", dirs_exist_ok=True)
    write_demo_data(claim_dir / "data", train=8, rl=16, evaluation=6)


def toy_spec(mount: str = MOUNT, claim: str = CLAIM, **training: Any) -> dict[str, Any]:
    """The numbers of the trainer's local-run test: with fewer questions or samples the toy
    model may get no candidate right, and then generate writes no data for midtrain.
    ``training`` is merged into the midtrain stage (e.g. resources)."""
    data = f"{mount}/data"
    midtrain = {"maxSteps": 4, "saveSteps": 2, "perDeviceBatchSize": 4,
                "gradientAccumulationSteps": 1, "learningRate": 5.0e-4, "maxLength": 256,
                "resources": {"gpus": 0}, "backoffLimit": 0}
    midtrain.update(training)
    return {
        "model": {"name": f"{mount}/models/toy", "dtype": "float32"},
        "dataset": {"source": f"{data}/train.jsonl", "limit": 8},
        "heuristics": {"count": 2}, "arms": ["polya"],
        "stages": {
            "generate": {"backend": "hf", "exemplars": 0, "samplesPerHeuristic": 3, "rounds": 1,
                         "maxNewTokens": 32, "temperature": 0.8, "batchSize": 16,
                         "shardSize": 4, "scorer": {"type": "none"}, "resources": {"gpus": 0},
                         "backoffLimit": 0},
            "midtrain": midtrain,
            "rl": {"dataset": {"source": f"{data}/rl.jsonl"}, "maxSteps": 2, "saveSteps": 1,
                   "numGenerations": 4, "perDeviceBatchSize": 8, "maxCompletionLength": 24,
                   "learningRate": 1.0e-5, "resources": {"gpus": 0}, "backoffLimit": 0},
            "evaluate": {"benchmarks": [], "custom": [{"name": "toy",
                                                       "path": f"{data}/eval.jsonl"}],
                         "k": [1, 2], "samples": 2, "maxNewTokens": 24, "backend": "hf",
                         "limit": 6, "resources": {"gpus": 0}, "backoffLimit": 0},
        },
        "storage": {"pvc": claim, "mountPath": mount},
    }
