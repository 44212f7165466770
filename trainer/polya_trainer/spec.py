"""The PolyaRun contract: every field of the custom resource is declared here, once.

The CRD schema (``polya crd``), the operator's validation, the local runner and the
trainer's stage configs all derive from these models. Nothing here imports torch or
the Kubernetes client. YAML/JSON uses camelCase; Python uses snake_case.

Defaults follow the paper (arXiv 2605.08472): Llama-3.2-3B-Instruct on GSM8K, 16 Pólya
heuristics, GRPO with 16 generations per prompt and no KL term, pass@k up to 64.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "polya.dev"
VERSION = "v1alpha1"
KIND = "PolyaRun"
PLURAL = "polyaruns"
API_VERSION = f"{GROUP}/{VERSION}"

STAGES: tuple[str, ...] = ("generate", "midtrain", "rl", "evaluate")
ARMS: tuple[str, ...] = ("vanilla", "star", "polya")

# Kubernetes resource quantity, e.g. "500m", "16Gi", "2".
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$"
# RFC 1123 label (names of PVCs, secrets, priority classes, queues).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HEURISTIC_ID = r"^[a-z][a-z0-9_]*$"
# Entries of the built-in heuristic catalog (polya_trainer.data.heuristics.CATALOG, which
# refuses to import with any other count): stated here so that the contract validates
# sweep.heuristicsCount without importing the data layer above it.
CATALOG_SIZE = 65
# RFC 1035 label: what a Service name needs (a letter first, no dots). A run's name becomes
# part of its Services' and Indexed-Job pods' hostnames, so run names follow it.
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# The built-in benchmarks (benchmarks.REGISTRY and its groups; a unit test keeps them equal).
BUILTIN_BENCHMARKS: tuple[str, ...] = (
    "gsm8k", "math500", "aime24", "aime25", "amc23", "minerva_math", "humaneval", "musr",
    "musr_murder_mysteries", "musr_object_placements", "musr_team_allocation")

Arm = Literal["vanilla", "star", "polya"]
StageName = Literal["generate", "midtrain", "rl", "evaluate"]
Benchmark = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=63)]
BuiltinBenchmark = Literal["gsm8k", "math500", "aime24", "aime25", "amc23", "minerva_math",
                           "humaneval", "musr", "musr_murder_mysteries", "musr_object_placements",
                           "musr_team_allocation"]
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=32)]
FreeForm = dict[str, Any]


def _immutable(field: str) -> dict[str, Any]:
    """A CEL transition rule: the field may not change once the run exists."""
    return {"x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": f"{field} is immutable; create a new PolyaRun"}
    ]}


class Spec(BaseModel):
    """Base for every contract model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
        strict=True,  # as the API server: "2" is not an integer, "yes" is not a boolean
    )

    def dump(self) -> dict[str, Any]:
        """The camelCase, JSON-compatible form written to ConfigMaps and status."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- model + data


class SecretKeyRef(Spec):
    """A key in a Secret in the run's namespace."""

    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    """Name of the Secret."""
    key: str = Field("token", pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    """Key inside the Secret."""


class ModelSpec(Spec):
    """The base model: the same model generates the data and is then trained."""

    name: str = Field(min_length=1, max_length=512)
    """Hub id (org/name), a local directory, or a path inside the workspace volume.
    Required: there is no default model."""
    revision: str | None = Field(None, max_length=128)
    """Hub revision (branch, tag or commit) to pin."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights dtype for training and inference."""
    trust_remote_code: bool = False
    """Allow the model repository's own Python code to run. Off unless you trust it."""
    hub_token_secret: SecretKeyRef | None = None
    """Secret holding a hub token for gated models; only ever mounted via secretKeyRef."""
    gguf_file: str | None = Field(None, max_length=256)
    """GGUF file inside `name` to load (dequantised on load), e.g. for CPU demos."""


class DatasetSpec(Spec):
    """A question/answer dataset, loaded with `datasets.load_dataset`."""

    source: str = Field("openai/gsm8k", min_length=1, max_length=512)
    """Hub dataset id, a local directory, or a .json/.jsonl/.parquet/.csv file."""
    config: str | None = Field("main", max_length=128)
    """Dataset configuration (subset) name."""
    split: str = Field("train", min_length=1, max_length=64)
    """Split to read."""
    revision: str | None = Field(None, max_length=128)
    """Hub revision (branch, tag or commit) of the dataset to pin."""
    question: str = Field("question", min_length=1, max_length=128)
    """Column holding the question text."""
    answer: str = Field("answer", min_length=1, max_length=128)
    """Column holding the gold answer (a GSM8K `#### n` tail is understood)."""
    limit: int | None = Field(None, ge=1, le=10_000_000)
    """Use only the first `limit` rows."""


class Exemplar(Spec):
    """A worked example that visibly follows its heuristic."""

    question: str = Field(min_length=1, max_length=4096)
    """The example problem."""
    solution: str = Field(min_length=1, max_length=16384)
    """A solution that applies the heuristic, ending with the answer in \\boxed{}."""
    answer: str = Field(min_length=1, max_length=256)
    """The final answer."""


class CustomHeuristic(Spec):
    """A user-defined heuristic, added after the catalog ones that are selected."""

    id: str = Field(pattern=HEURISTIC_ID, max_length=63)
    """Identifier stored with every sample, e.g. `look_at_units`."""
    name: str = Field(min_length=1, max_length=128)
    """Human-readable name shown in prompts."""
    description: str = Field(min_length=1, max_length=4096)
    """The instruction telling the model how to apply the heuristic."""
    exemplars: list[Exemplar] = Field(default_factory=list, max_length=8)
    """Few-shot worked examples."""


class HeuristicsSpec(Spec):
    """Which Pólya heuristics guide generation."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "!(has(self.count) && has(self.ids))",
         "message": "set heuristics.count or heuristics.ids, not both"}]})

    count: int | None = Field(None, ge=1, le=64)
    """Take the first `count` heuristics of the ordered catalog (16 when neither is set)."""
    ids: list[Annotated[str, Field(pattern=HEURISTIC_ID, max_length=63)]] | None = Field(
        None, min_length=1, max_length=64)
    """Explicit catalog ids, in order."""
    custom: list[CustomHeuristic] = Field(default_factory=list, max_length=32)
    """User-defined heuristics, appended to the selection."""

    @model_validator(mode="after")
    def _one_selector(self) -> HeuristicsSpec:
        if self.count is not None and self.ids is not None:
            raise ValueError("set heuristics.count or heuristics.ids, not both")
        return self

    def selected_count(self) -> int:
        return self.count if self.count is not None else (0 if self.ids else 16)


# --------------------------------------------------------------------------- scheduling


class Toleration(Spec):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: str | None = Field(None, max_length=316)
    """Taint key to tolerate."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: str | None = Field(None, max_length=63)
    """Taint value for Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect; empty matches all."""
    toleration_seconds: int | None = Field(None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""


class Resources(Spec):
    """Compute for one stage's pods."""

    gpus: int = Field(0, ge=0, le=64)
    """GPUs per node (`nvidia.com/gpu`). Several GPUs start one process per GPU."""
    nodes: int = Field(1, ge=1, le=64)
    """Nodes for the stage; more than one makes an Indexed Job with a rendezvous."""
    processes_per_node: int | None = Field(None, ge=1, le=64)
    """Processes per node of a training stage (midtrain, rl), like Kubeflow TrainJob's
    numProcPerNode. Unset: the GPU count, or 1 without GPUs; more than 1 without GPUs trains on
    CPU with the gloo backend. generate and evaluate always run one process."""
    gpu_resource: str = Field("nvidia.com/gpu", max_length=253)
    """Extended resource name for the accelerator."""
    cpu: Quantity | None = None
    """CPU request and limit, e.g. "8"."""
    memory: Quantity | None = None
    """Memory request and limit, e.g. "64Gi"."""
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=32)
    """Node labels the pods must match."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the pods tolerate."""
    affinity: FreeForm | None = Field(
        None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """A core/v1 Affinity, passed through unchanged."""
    priority_class_name: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """PriorityClass of the pods (preemption is retried without using up backoffLimit)."""

    def processes(self) -> int:
        """The training world size: processes per node (default: the GPUs, or 1) x nodes."""
        return (self.processes_per_node or max(self.gpus, 1)) * self.nodes


def accumulation(stage: str, total_field: str, total: int | None, per_device: int,
                 processes: int, explicit: int, unit: str) -> int:
    """Micro-steps accumulated per optimizer update. With a global update size (`total`) it is
    derived from perDeviceBatchSize x processes, so the recipe is the same on any GPU count;
    a split that does not divide is refused naming the field. Without, it is `explicit`."""
    if total is None:
        return explicit
    micro = per_device * processes
    if total % micro:
        raise SpecError([(f"spec.stages.{stage}.{total_field}",
                          f"{total} {unit} per update do not split into whole micro-batches "
                          f"of perDeviceBatchSize {per_device} x {processes} process(es) = "
                          f"{micro}")])
    return total // micro


def _update_size_rules(total_field: str, per_device_default: int) -> dict[str, Any]:
    """The CEL twins of _check_update_size, with the contract's defaults (a stage without
    resources: 4 GPUs; with resources but no gpus: 0, so one process)."""
    per_device = f"(has(self.perDeviceBatchSize) ? self.perDeviceBatchSize : {per_device_default})"
    res = "self.resources"
    per_node = (f"(has({res}.processesPerNode) ? {res}.processesPerNode : "
                f"(has({res}.gpus) && {res}.gpus > 0 ? {res}.gpus : 1))")
    processes = (f"(has(self.resources) ? {per_node} * "
                 f"(has({res}.nodes) ? {res}.nodes : 1) : 4)")
    return {"x-kubernetes-validations": [
        {"rule": f"!has(self.{total_field}) || self.{total_field} % ({per_device} * "
                 f"{processes}) == 0",
         "message": f"{total_field} must split into whole micro-batches of "
                    "perDeviceBatchSize x processes"}]}


def _check_update_size(stage: Any, total_field: str, total: int | None) -> None:
    """The stage's own resources must split a global update size (checked at admission; the
    stage checks again with the resources it runs with). gradientAccumulationSteps is then
    derived, and a value there ignored: the API server fills in its default."""
    if total is not None:
        stage.accumulation(stage.resources.processes())


class StageBase(Spec):
    """Fields every stage shares."""

    resources: Resources = Field(default_factory=Resources)
    """Compute for this stage."""
    backoff_limit: int = Field(2, ge=0, le=20)
    """Retries of this stage after a failure; disruptions (preemption) are not counted."""
    active_deadline_seconds: int | None = Field(None, ge=1)
    """Wall-clock limit for one attempt of this stage."""


# --------------------------------------------------------------------------- stages


class ScorerSpec(Spec):
    """How adherence to the heuristic is scored among correct candidates."""

    type: Literal["rewardModel", "judge", "none"] = "rewardModel"
    """rewardModel: a sequence-classification reward model; judge: the generator rates 1-10;
    none: keep the first correct candidate."""
    model: str | None = Field("Skywork/Skywork-Reward-V2-Llama-3.1-8B", max_length=512)
    """Reward model for type rewardModel (hub id or path)."""
    batch_size: int = Field(8, ge=1, le=1024)
    """Candidates scored per forward pass."""


def _single_node(stage: StageBase) -> None:
    if stage.resources.nodes != 1:
        raise ValueError("resources.nodes must be 1: this stage runs on one node")


class GenerateSpec(StageBase):
    """Stage 1: the base model solves each question under each heuristic."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "!has(self.resources) || self.resources.nodes == 1",
         "message": "resources.nodes must be 1: this stage runs on one node"}]})

    samples_per_heuristic: int = Field(4, ge=1, le=256)
    """Candidates sampled per (question, heuristic) and round."""
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    """Sampling temperature."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling threshold."""
    max_new_tokens: int = Field(1024, ge=1, le=32768)
    """Longest generated solution, in tokens."""
    rounds: int = Field(2, ge=1, le=16)
    """Bootstrapped rounds: pairs without a correct candidate are resampled."""
    exemplars: int = Field(2, ge=0, le=8)
    """Worked exemplars of the heuristic put before each question (few-shot)."""
    scorer: ScorerSpec = Field(default_factory=ScorerSpec)
    """Adherence scorer."""
    star_selection: Literal["first", "scorer"] = "first"
    """Which correct rationale the star arm keeps per question: first (STaR's rule, Zelikman
    et al. 2022: any correct rationale, no scorer) or scorer (the adherence scorer picks, as
    for the polya arm)."""
    backend: Literal["vllm", "hf"] = "vllm"
    """Inference engine: vllm (offline LLM engine) or hf (transformers generate)."""
    shard_size: int = Field(64, ge=1, le=100_000)
    """Questions per output shard; a kill loses at most the shard in flight."""
    batch_size: int = Field(16, ge=1, le=4096)
    """Prompts per generate call (hf backend)."""
    shards: int = Field(1, ge=1, le=256)
    """Pods that split the questions (an Indexed Job; locally, parallel processes). The unit
    of work is a shard of `shardSize` questions; the data equals a 1-shard run's."""
    dedup: Literal["off", "exact", "near"] = "off"
    """Remove duplicate solutions within a question: exact (same text) or near (also word
    5-gram Jaccard >= 0.8). Duplicates are counted in the card either way."""
    diversity_embedding_model: str | None = Field(None, max_length=512)
    """Encoder (Hugging Face id) for the per-question Vendi score; unset: a lexical stand-in
    (word 1-2-gram count cosine)."""
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    """Seed of generation; unset: `spec.seed`. A sweep pins it to the parent's seed, so that
    every variant shares one generation (the stage cache)."""
    resources: Resources = Field(default_factory=lambda: Resources(gpus=1))
    """Compute for this stage."""

    @model_validator(mode="after")
    def _one_node(self) -> GenerateSpec:
        _single_node(self)
        return self


class LoraSpec(Spec):
    """Low-rank adaptation (peft) instead of a full fine-tune."""

    r: int = Field(16, ge=1, le=1024)
    """Rank."""
    alpha: int = Field(32, ge=1, le=4096)
    """Scaling alpha."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter input."""
    target_modules: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=lambda: ["all-linear"], min_length=1, max_length=64)
    """Modules to adapt; "all-linear" adapts every linear layer."""
    merge: bool = True
    """Merge the adapter into the base weights when the stage ends."""


class MidtrainSpec(StageBase):
    """Stage 2: supervised mid-training on the self-generated data (TRL SFTTrainer)."""

    model_config = ConfigDict(json_schema_extra=_update_size_rules("examplesPerUpdate", 4))

    epochs: float = Field(2.0, gt=0.0, le=100.0)
    """Passes over the data."""
    learning_rate: float = Field(1.0e-5, gt=0.0, le=1.0)
    """Peak learning rate (cosine decay, 3% warm-up)."""
    per_device_batch_size: int = Field(4, ge=1, le=1024)
    """Examples per device per step."""
    gradient_accumulation_steps: int = Field(8, ge=1, le=1024)
    """Steps accumulated per optimizer update (ignored when examplesPerUpdate is set)."""
    examples_per_update: int | None = Field(None, ge=1, le=1_048_576)
    """Examples per optimizer update over all processes. Set, it fixes the recipe whatever
    the GPU count: gradientAccumulationSteps = examplesPerUpdate / (perDeviceBatchSize x
    processes), refused when it does not divide."""
    max_length: int = Field(2048, ge=16, le=131072)
    """Longest prompt+completion, in tokens."""
    keep_heuristic_prompt: bool = False
    """Train on the heuristic instruction as the prompt instead of the plain question."""
    lora: LoraSpec | None = None
    """Train a LoRA adapter instead of all weights."""

    save_steps: int = Field(200, ge=1)
    """Checkpoint every N optimizer steps (and on SIGTERM)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after N steps (overrides epochs)."""
    heuristics_count: int | None = Field(None, ge=1, le=64)
    """Train only on the samples of the first n heuristics the generate stage used (a sweep
    over `heuristicsCount` sets it); unset: all of them."""
    trainer_args: FreeForm = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """Extra `trl.SFTConfig` fields, checked against its real fields."""
    resources: Resources = Field(default_factory=lambda: Resources(gpus=4))
    """Compute for this stage."""

    def accumulation(self, processes: int) -> int:
        return accumulation("midtrain", "examplesPerUpdate", self.examples_per_update,
                            self.per_device_batch_size, processes,
                            self.gradient_accumulation_steps, "examples")

    @model_validator(mode="after")
    def _update_size(self) -> MidtrainSpec:
        _check_update_size(self, "examplesPerUpdate", self.examples_per_update)
        return self


def _dapo() -> DatasetSpec:
    return DatasetSpec(source="open-r1/DAPO-Math-17k-Processed", config="en",
                       question="prompt", answer="solution")


class ImportanceSamplingSpec(Spec):
    """How GRPO corrects for vLLM rollouts scored by a trainer whose log-probabilities differ
    (bf16 engine against float32 master weights, other kernels): TRL's
    vllm_importance_sampling_* settings. Without vLLM rollouts the two agree and this does
    nothing."""

    correction: bool = True
    """Weight the loss by the trainer/engine probability ratio."""
    mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = \
        "token_truncate"
    """Ratios beyond the cap are clipped (truncate) or zeroed (mask), per token or per whole
    completion. Default token_truncate with cap 2: truncated importance sampling (Yao et al.
    2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"), which
    keeps every completion's gradient. TRL's own default, sequence_mask with cap 3, drops a
    whole completion once the product of its per-token ratios leaves the range, which over
    ~3k tokens of bf16-against-fp32 drift can remove much of a batch."""
    cap: float = Field(2.0, gt=1.0, le=100.0)
    """The upper bound C_max of the ratio."""


class RLSpec(StageBase):
    """Stage 3: GRPO with a verifiable math reward (TRL GRPOTrainer)."""

    model_config = ConfigDict(json_schema_extra=_update_size_rules("completionsPerUpdate", 16))

    dataset: DatasetSpec = Field(default_factory=_dapo)
    """RL prompts with gold answers (DAPO-Math-17K in the paper)."""
    num_generations: int = Field(16, ge=2, le=256)
    """Completions per prompt (the GRPO group size)."""
    beta: float = Field(0.0, ge=0.0, le=10.0)
    """KL coefficient; 0 disables the reference model, as in the paper."""
    learning_rate: float = Field(1.0e-6, gt=0.0, le=1.0)
    """Learning rate."""
    per_device_batch_size: int = Field(16, ge=1, le=4096)
    """Completions per device per step; times the world size it must divide by numGenerations."""
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    """Steps accumulated per optimizer update (ignored when completionsPerUpdate is set)."""
    completions_per_update: int | None = Field(None, ge=1, le=1_048_576)
    """Completions per optimizer update over all processes (the paper: 512, 32 prompts x 16).
    Set, it fixes the recipe whatever the GPU count: gradientAccumulationSteps =
    completionsPerUpdate / (perDeviceBatchSize x processes), refused when it does not divide."""
    prompts_per_rollout: int | None = Field(None, ge=1, le=65536)
    """Prompts sampled per rollout (verl's train_batch_size; the paper: 128). The rollout's
    promptsPerRollout x numGenerations completions are split into optimizer updates of
    completionsPerUpdate (or perDeviceBatchSize x processes x gradientAccumulationSteps)
    completions each (the paper: 4 updates of 32 prompts). Unset: one update per rollout."""
    max_completion_length: int = Field(3072, ge=1, le=131072)
    """Longest completion, in tokens."""
    temperature: float = Field(1.0, gt=0.0, le=2.0)
    """Rollout sampling temperature."""
    epochs: float = Field(1.0, gt=0.0, le=100.0)
    """Passes over the RL prompts."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after N steps (overrides epochs)."""
    format_reward: float = Field(0.0, ge=0.0, le=10.0)
    """Weight of an extra reward for a final answer in \\boxed{} (0 turns it off)."""
    score_truncated: bool = False
    """Score a completion cut off by maxCompletionLength like a whole one. Default false: it
    gets reward 0, as generate and evaluate count it wrong (the share is logged)."""
    importance_sampling: ImportanceSamplingSpec = Field(
        default_factory=lambda: ImportanceSamplingSpec())
    """Correction for the rollout engine's and the trainer's different probabilities."""
    save_steps: int = Field(50, ge=1)
    """Checkpoint every N steps (and on SIGTERM)."""
    trainer_args: FreeForm = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """Extra `trl.GRPOConfig` fields, checked against its real fields."""
    resources: Resources = Field(default_factory=lambda: Resources(gpus=4))
    """Compute for this stage."""

    def accumulation(self, processes: int) -> int:
        return accumulation("rl", "completionsPerUpdate", self.completions_per_update,
                            self.per_device_batch_size, processes,
                            self.gradient_accumulation_steps, "completions")

    @model_validator(mode="after")
    def _update_size(self) -> RLSpec:
        _check_update_size(self, "completionsPerUpdate", self.completions_per_update)
        return self


class CustomBenchmark(Spec):
    """A benchmark from a local file, scored like one of the built-in kinds."""

    name: Benchmark
    """Name used in the report."""
    path: str = Field(min_length=1, max_length=1024)
    """A .json/.jsonl/.parquet/.csv file (or a dataset id) readable by `datasets`."""
    split: str = Field("train", max_length=64)
    """Split to read."""
    kind: Literal["math", "code", "choice"] = "math"
    """math: verified final answer; code: run tests in the sandbox; choice: pick an option."""
    revision: str | None = Field(None, max_length=128)
    """Hub revision to pin when `path` is a dataset id."""
    question: str = Field("question", max_length=128)
    """Column with the prompt."""
    answer: str = Field("answer", max_length=128)
    """Column with the reference (tests for code)."""


class EvaluateSpec(StageBase):
    """Stage 4: pass@k on math benchmarks, HumanEval and MuSR, and the comparison report."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "(has(self.k) ? self.k : [1, 8, 64]).all(x, x <= self.samples)",
         "message": "every k must be at most samples"},
        {"rule": "!has(self.resources) || self.resources.nodes == 1",
         "message": "resources.nodes must be 1: this stage runs on one node"},
        {"rule": "!has(self.benchmarks) || size(self.benchmarks) > 0"
                 " || (has(self.custom) && size(self.custom) > 0)",
         "message": "name at least one benchmark in benchmarks or custom"}]})

    benchmarks: list[BuiltinBenchmark] = Field(
        default_factory=lambda: ["gsm8k", "math500", "aime24", "aime25", "amc23",
                                 "minerva_math", "humaneval", "musr"], max_length=32)
    """Built-in benchmarks: gsm8k, math500, aime24, aime25, amc23, minerva_math (the six math
    benchmarks of the headline average), humaneval, musr (reported apart, at pass@1 and greedy;
    or one MuSR split: musr_murder_mysteries, musr_object_placements, musr_team_allocation);
    files of your own go in `custom`."""
    revisions: dict[str, Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=dict, max_length=32)
    """Hub revision (branch, tag or commit) per benchmark name (or group, e.g. musr)."""
    preset: Literal["none", "r1-sampling", "greedy"] = "none"
    """Sampling only, overriding temperature, topP and samples: r1-sampling (DeepSeek-R1's
    T=0.6, top-p 0.95, 64 samples), greedy (one greedy sample, pass@1). Prompts and answer
    extraction stay ours, so numbers are not another harness's. none: the fields as given."""
    custom: list[CustomBenchmark] = Field(default_factory=list, max_length=16)
    """Extra benchmarks from local files."""
    k: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default_factory=lambda: [1, 8, 64], min_length=1, max_length=16)
    """Values of k for pass@k."""
    samples: int = Field(64, ge=1, le=1024)
    """Samples per question (n in the unbiased estimator)."""
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    """Sampling temperature (greedy accuracy is always reported too)."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling threshold."""
    max_new_tokens: int = Field(3072, ge=1, le=131072)
    """Longest answer, in tokens."""
    limit: int | None = Field(None, ge=1)
    """Use only the first `limit` questions of each benchmark."""
    checkpoints: list[Literal["base", "midtrain", "rl"]] = Field(
        default_factory=lambda: ["base", "midtrain", "rl"], min_length=1, max_length=3)
    """Which models of each arm to evaluate."""
    backend: Literal["vllm", "hf"] = "vllm"
    """Inference engine."""
    shards: int = Field(1, ge=1, le=256)
    """Pods that split each benchmark's questions (an Indexed Job; locally, parallel
    processes); the results equal a 1-shard run's."""
    resources: Resources = Field(default_factory=lambda: Resources(gpus=1))
    """Compute for this stage."""

    @model_validator(mode="after")
    def _k_within_samples(self) -> EvaluateSpec:
        _single_node(self)
        if not self.benchmarks and not self.custom:
            raise ValueError("name at least one benchmark in benchmarks or custom")
        if max(self.k) > self.samples:
            raise ValueError(f"every k must be at most samples ({self.samples})")
        return self


class Stages(Spec):
    """Per-stage configuration; every stage has paper defaults."""

    generate: GenerateSpec = Field(default_factory=GenerateSpec)
    """Stage 1: self-generated, Pólya-guided data."""
    midtrain: MidtrainSpec = Field(default_factory=MidtrainSpec)
    """Stage 2: SFT mid-training."""
    rl: RLSpec = Field(default_factory=RLSpec)
    """Stage 3: GRPO."""
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    """Stage 4: evaluation and report."""


class AnswersSpec(Spec):
    """How final answers are read from responses (data filter, RL reward, evaluation)."""

    last_number_fallback: bool = False
    """Also credit the last number of a response that gives no explicit final answer
    (\\boxed{} or "#### n"). Off by default: it credits cut-off and rambling responses."""


class ContaminationSpec(Spec):
    """Word n-gram overlap of the seed questions, few-shot exemplars and RL questions with
    the evaluation benchmarks, checked before generate and before rl."""

    action: Literal["off", "report", "drop"] = "off"
    """off: no check; report: write contamination.json and a summary; drop: also remove
    overlapping questions and exemplars before training."""
    ngram: int = Field(13, ge=3, le=64)
    """Shared word n-gram length that counts as an overlap."""


class MlflowTracking(Spec):
    """An MLflow tracking server. Each (arm, stage) logs to one MLflow run, named
    `<run>-<arm>-<stage>`, that a resumed or retried stage continues."""

    tracking_uri: str = Field(min_length=1, max_length=1024)
    """The server, e.g. http://mlflow.mlflow.svc:5000 (MLFLOW_TRACKING_URI)."""
    experiment: str | None = Field(None, min_length=1, max_length=256)
    """Experiment name (created when missing); unset: the PolyaRun's name."""
    token_secret: SecretKeyRef | None = None
    """Secret with a bearer token for the server (MLFLOW_TRACKING_TOKEN, only via
    secretKeyRef)."""


class WandbTracking(Spec):
    """Weights & Biases. Each (arm, stage) is one W&B run (group: the PolyaRun)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "self.mode == 'offline' || has(self.apiKeySecret)",
         "message": "wandb.mode online needs wandb.apiKeySecret"}]})

    project: str = Field(min_length=1, max_length=128)
    """W&B project."""
    entity: str | None = Field(None, min_length=1, max_length=128)
    """W&B entity (user or team); unset: the API key's default entity."""
    api_key_secret: SecretKeyRef | None = None
    """Secret holding the API key (WANDB_API_KEY, only via secretKeyRef)."""
    mode: Literal["online", "offline"] = "online"
    """offline: write runs under `<arm>/<stage>/wandb` in the workspace (`wandb sync` later)."""

    @model_validator(mode="after")
    def _key(self) -> WandbTracking:
        if self.mode == "online" and self.api_key_secret is None:
            raise ValueError("wandb.mode online needs wandb.apiKeySecret")
        return self


class TrackingSpec(Spec):
    """Experiment tracking: every stage logs its parameters, per-step metrics and artifacts
    (the generate card, the evaluation report) to the tracking run of its (arm, stage)."""

    mlflow: MlflowTracking | None = None
    """Log to an MLflow tracking server."""
    wandb: WandbTracking | None = None
    """Log to Weights & Biases."""
    tensorboard: bool = False
    """Write TensorBoard event files under `<workdir>/<arm>/<stage>/tb`."""


class StorageSpec(Spec):
    """Where stages share artifacts: an existing claim, a new claim, or an object store."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "[has(self.pvc), has(self.size), has(self.uri)].filter(x, x).size() <= 1",
         "message": "set at most one of storage.pvc, storage.size, storage.uri"}]})

    pvc: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """An existing PersistentVolumeClaim (ReadWriteMany when stages run on several nodes)."""
    size: Quantity | None = None
    """Create a claim `<run>-workspace` of this size (the default is 100Gi)."""
    storage_class: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """StorageClass of the created claim."""
    uri: str | None = Field(None, pattern=r"^(s3|gs|file)://.+$", max_length=1024)
    """Object-store prefix of this run (s3://bucket/prefix, gs://bucket/prefix): each stage
    downloads its inputs into a scratch volume and uploads its outputs (manifest last);
    training checkpoints are uploaded as they are saved. Give each run its own prefix."""
    endpoint_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/\S*)?$",
                                     max_length=512)
    """Endpoint of an S3-compatible store (MinIO, Ceph, R2, ...) for an s3:// uri, or of a
    GCS JSON API server for a gs:// uri (reached without credentials when http://, as an
    emulator is); unset: AWS S3 or Google Cloud Storage."""
    credentials_secret: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally
    AWS_SESSION_TOKEN), given to the pods only via secretKeyRef. Unset: workload identity
    (EKS IRSA or Pod Identity, GKE Workload Identity) or the node's own role."""
    mount_path: str = Field("/workspace", pattern=r"^/.*$", max_length=256)
    """Where the workspace is mounted in the pods."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] | None = None
    """Access mode of the workspace claim. ReadWriteMany lets the arms run in parallel (pods
    on different nodes mount it at once); with ReadWriteOnce the arms run one after another
    and a sharded stage's pods share one node (every stage on one node: `resources.nodes`
    1); with ReadWriteOncePod one pod at a time (also no `shards`). Unset: ReadWriteMany when
    a stage spans several nodes, else ReadWriteOnce. For an existing `pvc`, declare the
    claim's mode here."""
    when_deleted: Literal["Retain", "Delete"] = "Retain"
    """What happens to the created `<run>-workspace` claim (the trained models) when the
    PolyaRun is deleted: Retain keeps it (delete it with kubectl when done), Delete lets
    garbage collection remove it with the run."""

    @model_validator(mode="after")
    def _one_backend(self) -> StorageSpec:
        if sum(x is not None for x in (self.pvc, self.size, self.uri)) > 1:
            raise ValueError("set at most one of storage.pvc, storage.size, storage.uri")
        return self


class SweepSpec(Spec):
    """Variants of this run, one child run per (heuristics count, seed). Generation runs once
    at the largest count with the parent's seed; each variant mid-trains on the catalog's
    first n heuristics and runs midtrain, rl and evaluate with its own seed."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.heuristicsCount) || has(self.seeds)",
         "message": "a sweep names heuristicsCount, seeds or both"}]})

    heuristics_count: list[Annotated[int, Field(ge=1, le=64)]] | None = Field(
        None, min_length=1, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Numbers of heuristics n (the catalog's first n), e.g. [1, 2, 4, 8, 16]."""
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        None, min_length=1, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Seeds of midtrain, rl and evaluate; unset: `spec.seed` only."""

    @model_validator(mode="after")
    def _valid(self) -> SweepSpec:
        if self.heuristics_count is None and self.seeds is None:
            raise ValueError("a sweep names heuristicsCount, seeds or both")
        for name, values in (("heuristicsCount", self.heuristics_count), ("seeds", self.seeds)):
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"sweep.{name} must not repeat")
        return self


# What a claim on one node, or for one pod, allows (the rules below and their pydantic twin
# PolyaRunSpec._fits_the_workspace): multi-node stages need pods on several nodes, shards
# several pods at once (on one node: resources.py co-locates them on a ReadWriteOnce claim).
_MULTI_NODE = ("midtrain", "rl")  # generate and evaluate always run on one node
_SHARDED = ("generate", "evaluate")
_ONE_NODE = {"ReadWriteOnce": "attaches to one node: every stage's resources.nodes must be 1",
             "ReadWriteOncePod": "lets one pod mount it: every stage's resources.nodes and "
                                 "stages.generate.shards and stages.evaluate.shards must be 1"}


def _stage_holds(stage: str, test: str) -> str:
    """CEL: `test` (on `x`, the stage) holds, or the stage is not given (defaults hold)."""
    x = f"self.stages.{stage}"
    return f"(!has(self.stages) || !has({x}) || {test.format(x=x)})"


def _workspace_rules() -> list[dict[str, str]]:
    nodes = [_stage_holds(st, "!has({x}.resources) || {x}.resources.nodes == 1")
             for st in _MULTI_NODE]
    shards = [_stage_holds(st, "{x}.shards == 1") for st in _SHARDED]
    mode = ("has(self.storage) && !has(self.storage.uri) && has(self.storage.accessMode) && "
            "self.storage.accessMode")
    return [{"rule": f"!({mode} == '{m}') || ({' && '.join(terms)})",
             "fieldPath": ".storage.accessMode",
             "message": f"storage.accessMode {m} {why}"}
            for (m, why), terms in zip(_ONE_NODE.items(), (nodes, nodes + shards),
                                       strict=True)]


def _field_error(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    """A validation error located at `loc` (a field below the model that raises it)."""
    return ValidationError.from_exception_data("PolyaRunSpec", [{
        "type": PydanticCustomError("value_error", message), "loc": loc, "input": value}])


def _kept(fields: tuple[str, ...]) -> list[dict[str, str]]:
    """Transition rules on the spec object: a field may be neither added nor removed.

    A rule on the field itself (``self == oldSelf``) is skipped when the old or the new
    object lacks the field, so it cannot catch those two changes; ``spec`` is required, so
    rules here always see both versions on an update.
    """
    return [{"rule": f"has(self.{f}) == has(oldSelf.{f})", "fieldPath": f".{f}",
             "message": f"spec.{f} is immutable (it may not be added or removed); "
                        "create a new PolyaRun"} for f in fields]


class PolyaRunSpec(Spec):
    """Desired state of a PolyaRun: model, data, heuristics, arms and the four stages."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        *_kept(("model", "dataset", "arms", "storage", "sweep")),
        {"rule": "!has(self.sweep) || !has(self.sweep.heuristicsCount) || !has(self.heuristics)"
                 " || (!has(self.heuristics.count) && !has(self.heuristics.ids))",
         "fieldPath": ".sweep.heuristicsCount",
         "message": "sweep.heuristicsCount replaces heuristics.count and heuristics.ids: "
                    "leave both unset"},
        *_workspace_rules()]})

    model: ModelSpec = Field(json_schema_extra=_immutable("spec.model"))
    """The base model (required)."""
    dataset: DatasetSpec = Field(default_factory=DatasetSpec,
                                 json_schema_extra=_immutable("spec.dataset"))
    """Seed questions for generation (GSM8K train in the paper)."""
    heuristics: HeuristicsSpec = Field(default_factory=HeuristicsSpec)
    """Pólya heuristics that guide generation."""
    arms: list[Arm] = Field(
        default_factory=lambda: ["polya"], min_length=1, max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set", **_immutable("spec.arms")})
    """Comparison arms: vanilla (RL only), star (STaR data then RL), polya (Pólya data then RL)."""
    stages: Stages = Field(default_factory=Stages)
    """Per-stage configuration."""
    answers: AnswersSpec = Field(default_factory=AnswersSpec)
    """Answer extraction, shared by every stage that checks answers."""
    contamination: ContaminationSpec = Field(default_factory=ContaminationSpec)
    """Overlap check of the training inputs against the evaluation benchmarks."""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    """Experiment tracking (MLflow, Weights & Biases, TensorBoard)."""
    storage: StorageSpec = Field(default_factory=StorageSpec,
                                 json_schema_extra=_immutable("spec.storage"))
    """The shared workspace."""
    image: str | None = Field(None, max_length=512)
    """Trainer image; the operator's default when unset."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of the trainer image."""
    service_account_name: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """Service account of the trainer pods (they need no Kubernetes API access)."""
    seed: int = Field(42, ge=0, le=2**31 - 1)
    """Seed for sampling, shuffling and initialisation."""
    suspend: bool = False
    """Stop the active stage's Job; setting it back to false resumes from the checkpoint (with
    `queueName`: the Job is deleted, and the resume is a new attempt, queued again once the
    stopped one's pods are gone)."""
    active_deadline_seconds: int | None = Field(None, ge=1)
    """Wall-clock limit for the whole run."""
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    """Delete the finished run's Jobs after this many seconds."""
    queue_name: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """Kueue LocalQueue; Jobs are created suspended for Kueue to admit."""
    sweep: SweepSpec | None = Field(None, json_schema_extra=_immutable("spec.sweep"))
    """Run variants of this spec that share upstream stages (see SweepSpec); the run itself
    then aggregates its child runs and, once they succeeded, writes the sweep report."""

    @model_validator(mode="after")
    def _arms_unique(self) -> PolyaRunSpec:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError("arms must not repeat")
        return self

    @model_validator(mode="after")
    def _sweep_counts(self) -> PolyaRunSpec:
        counts = self.sweep.heuristics_count if self.sweep else None
        if counts is None:
            return self
        if self.heuristics.count is not None or self.heuristics.ids is not None:
            raise ValueError("sweep.heuristicsCount replaces heuristics.count and "
                             "heuristics.ids: leave both unset")
        available = CATALOG_SIZE + len(self.heuristics.custom)
        if max(counts) > available:
            raise ValueError(f"sweep.heuristicsCount: {max(counts)} is more than the "
                             f"{available} heuristics available")
        return self

    @model_validator(mode="after")
    def _fits_the_workspace(self) -> PolyaRunSpec:
        mode = self.storage.access_mode
        if mode not in _ONE_NODE or self.storage.uri:  # an object store: no shared volume
            return self
        nodes = max(getattr(self.stages, st).resources.nodes for st in STAGES)
        shards = max(getattr(self.stages, st).shards for st in _SHARDED)
        if nodes > 1 or (mode == "ReadWriteOncePod" and shards > 1):
            raise _field_error(("storage", "accessMode"),
                               f"storage.accessMode {mode} {_ONE_NODE[mode]}", mode)
        return self

    def stages_for(self, arm: str) -> list[str]:
        """The stages an arm runs, in order (the vanilla arm has no data to train on)."""
        return ["rl", "evaluate"] if arm == "vanilla" else list(STAGES)


# --------------------------------------------------------------------------- status


class StageState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    SKIPPED = "Skipped"


class Condition(Spec):
    """A Kubernetes-style condition."""

    model_config = ConfigDict(strict=False)

    type: str = Field(max_length=316)
    """Running, Succeeded, Failed, Suspended, or <Stage>Completed."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field("", max_length=1024)
    """CamelCase reason."""
    message: str = Field("", max_length=32768)
    """Human-readable detail."""
    last_transition_time: datetime | None = None
    """When status last changed."""
    observed_generation: int | None = Field(None, ge=0)
    """The spec generation this condition reflects."""


class StageStatus(Spec):
    """Observed state of one (arm, stage)."""

    model_config = ConfigDict(strict=False)

    name: StageName
    """Stage name."""
    arm: Arm
    """Arm the stage belongs to."""
    state: StageState = StageState.PENDING
    """Pending, Running, Succeeded, Failed, Suspended or Skipped."""
    attempts: int = Field(0, ge=0)
    """Attempts started (disruptions are not counted against backoffLimit)."""
    job_name: str | None = Field(None, max_length=253)
    """The Job of the latest attempt."""
    start_time: datetime | None = None
    """When the first attempt started."""
    completion_time: datetime | None = None
    """When the stage finished."""
    progress: float = Field(0.0, ge=0.0, le=100.0)
    """Percent done."""
    eta_seconds: float | None = Field(None, ge=0.0)
    """Estimated seconds left."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Latest figures (loss, reward, acceptance rate, pass@k, ...)."""
    outputs: dict[str, str] = Field(default_factory=dict)
    """Artifact paths in the workspace."""
    reason: str | None = Field(None, max_length=1024)
    """CamelCase reason of the latest transition."""
    message: str | None = Field(None, max_length=32768)
    """Why the stage is in its state."""


class SweepVariantStatus(Spec):
    """One variant of a sweep: a child PolyaRun."""

    model_config = ConfigDict(strict=False)

    name: str = Field(max_length=63)
    """The child PolyaRun."""
    heuristics: int | None = Field(None, ge=1)
    """Its number of heuristics n (unset when the sweep varies only seeds)."""
    seed: int = Field(ge=0)
    """Its seed."""
    state: Literal["Pending", "Running", "Succeeded", "Failed"] = "Pending"
    """Pending (not created yet), Running, Succeeded or Failed."""
    progress: float = Field(0.0, ge=0.0, le=100.0)
    """The child's overall percent done."""


class SweepStatus(Spec):
    """Observed state of a sweep's variants."""

    model_config = ConfigDict(strict=False)

    variants: int = Field(0, ge=0)
    """Variants in the sweep."""
    created: int = Field(0, ge=0)
    """Child PolyaRuns created so far (the first one generates; the others follow once its
    generate stage is done, so that they find it in the stage cache)."""
    succeeded: int = Field(0, ge=0)
    """Variants that succeeded."""
    failed: int = Field(0, ge=0)
    """Variants that failed."""
    children: list[SweepVariantStatus] = Field(default_factory=list)
    """Every variant, in the sweep's order."""


class PolyaRunStatus(Spec):
    """Observed state of a PolyaRun, written only by the operator (or the local runner)."""

    model_config = ConfigDict(extra="ignore", strict=False)

    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "map",
                                                 "x-kubernetes-list-map-keys": ["type"]})
    """Running, Succeeded, Failed, Suspended and one <Stage>Completed per stage."""
    stages: list[StageStatus] = Field(default_factory=list)
    """One entry per (arm, stage)."""
    current_stage: str | None = None
    """The active stage(s), e.g. "polya/midtrain"."""
    progress: float = Field(0.0, ge=0.0, le=100.0)
    """Overall percent done across arms and stages."""
    observed_generation: int | None = Field(None, ge=0)
    """The spec generation the status reflects."""
    start_time: datetime | None = None
    """When the run started."""
    completion_time: datetime | None = None
    """When the run finished."""
    report: str | None = None
    """Path of the comparison report in the workspace."""
    sweep: SweepStatus | None = None
    """A sweep run's variants (its child PolyaRuns), aggregated."""


class ObjectMeta(BaseModel):
    """The part of metadata a PolyaRun file needs."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=DNS_1035, max_length=40)
    namespace: str | None = Field(None, pattern=DNS_LABEL, max_length=63)


class PolyaRun(Spec):
    """A whole PolyaRun object as written by users."""

    model_config = ConfigDict(extra="forbid")

    api_version: Literal["polya.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["PolyaRun"] = KIND
    metadata: ObjectMeta
    spec: PolyaRunSpec = Field(default_factory=PolyaRunSpec)
    status: PolyaRunStatus | None = None


# --------------------------------------------------------------------------- helpers


class SpecError(ValueError):
    """A PolyaRun failed validation; `errors` holds (field path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors))


def field_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    """Render a pydantic error location as a Kubernetes field path (a.b[0].c)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", str(part)) or part in ("function-after",):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _errors(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    out = []
    for e in exc.errors():
        loc = tuple(p for p in e["loc"] if not str(p).startswith(("function-", "literal[")))
        out.append((field_path(loc, prefix), e["msg"].removeprefix("Value error, ")))
    return out


def parse_spec(data: dict[str, Any] | None, prefix: str = "spec") -> PolyaRunSpec:
    """Validate a `spec` mapping; raise SpecError naming each bad field."""
    try:
        return PolyaRunSpec.model_validate(data or {})
    except ValidationError as exc:
        raise SpecError(_errors(exc, prefix)) from None


def parse_run(data: dict[str, Any]) -> PolyaRun:
    """Validate a whole PolyaRun object; raise SpecError naming each bad field."""
    if not isinstance(data, dict):
        raise SpecError([("", "a PolyaRun must be a mapping")])
    data = {k: v for k, v in data.items() if k != "status"}
    try:
        return PolyaRun.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_errors(exc, "")) from None


def load_runs(path: str | Path) -> list[PolyaRun]:
    """Read every PolyaRun document in a YAML file (other kinds are ignored)."""
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    runs = [parse_run(d) for d in docs if d.get("kind") == KIND]
    if not runs:
        raise SpecError([("kind", f"no PolyaRun document in {path}")])
    return runs
