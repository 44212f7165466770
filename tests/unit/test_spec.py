"""The contract: CRD generation, samples, and agreement between pydantic and the CRD schema."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from crdcheck import api_errors, names_field
from polya_trainer import spec as s
from polya_trainer.crd import crd, crd_yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


def base() -> dict[str, Any]:
    return {"apiVersion": "polya.dev/v1alpha1", "kind": "PolyaRun",
            "metadata": {"name": "r1", "namespace": "default"},
            "spec": {"model": {"name": "org/model"}, "arms": ["vanilla", "polya"]}}


def with_(path: str, value: Any) -> dict[str, Any]:
    """A valid base object with `value` set at dotted `path` (created as needed)."""
    obj = base()
    node = obj
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return obj


def with_spec(**fields: Any) -> dict[str, Any]:
    """A valid base object with these top-level spec fields set."""
    obj = base()
    obj["spec"].update(fields)
    return obj


# (case id, object, field the rejection must name). Each must be rejected by both layers.
INVALID = [
    ("gen-samples-zero", with_("spec.stages.generate.samplesPerHeuristic", 0),
     "spec.stages.generate.samplesPerHeuristic"),
    ("gen-temp-high", with_("spec.stages.generate.temperature", 3.5),
     "spec.stages.generate.temperature"),
    ("gen-top-p-zero", with_("spec.stages.generate.topP", 0), "spec.stages.generate.topP"),
    ("gen-backend", with_("spec.stages.generate.backend", "tgi"), "spec.stages.generate.backend"),
    ("gen-rounds-type", with_("spec.stages.generate.rounds", "two"),
     "spec.stages.generate.rounds"),
    ("scorer-type", with_("spec.stages.generate.scorer", {"type": "oracle"}),
     "spec.stages.generate.scorer.type"),
    ("rl-generations-one", with_("spec.stages.rl.numGenerations", 1),
     "spec.stages.rl.numGenerations"),
    ("rl-beta-negative", with_("spec.stages.rl.beta", -0.1), "spec.stages.rl.beta"),
    ("rl-lr-zero", with_("spec.stages.rl.learningRate", 0), "spec.stages.rl.learningRate"),
    ("rl-dataset-unknown", with_("spec.stages.rl.dataset", {"source": "x", "colum": "q"}),
     "spec.stages.rl.dataset.colum"),
    ("mid-epochs-zero", with_("spec.stages.midtrain.epochs", 0), "spec.stages.midtrain.epochs"),
    ("mid-maxlen-small", with_("spec.stages.midtrain.maxLength", 8),
     "spec.stages.midtrain.maxLength"),
    ("lora-rank-zero", with_("spec.stages.midtrain.lora", {"r": 0}),
     "spec.stages.midtrain.lora.r"),
    ("lora-dropout-one", with_("spec.stages.midtrain.lora", {"dropout": 1.0}),
     "spec.stages.midtrain.lora.dropout"),
    ("eval-k-zero", with_("spec.stages.evaluate.k", [0]), "spec.stages.evaluate.k[0]"),
    ("eval-k-over-samples", with_("spec.stages.evaluate", {"k": [1, 128], "samples": 64}),
     "spec.stages.evaluate"),
    ("eval-checkpoint", with_("spec.stages.evaluate.checkpoints", ["final"]),
     "spec.stages.evaluate.checkpoints[0]"),
    ("eval-no-benchmark", with_("spec.stages.evaluate.benchmarks", []),
     "spec.stages.evaluate"),
    ("eval-benchmark-name", with_("spec.stages.evaluate.benchmarks", ["GSM 8K"]),
     "spec.stages.evaluate.benchmarks[0]"),
    ("generate-nodes", with_("spec.stages.generate.resources", {"nodes": 2}),
     "spec.stages.generate"),
    ("evaluate-nodes", with_("spec.stages.evaluate.resources", {"gpus": 1, "nodes": 4}),
     "spec.stages.evaluate"),
    ("gpus-negative", with_("spec.stages.rl.resources", {"gpus": -1}),
     "spec.stages.rl.resources.gpus"),
    ("memory-quantity", with_("spec.stages.rl.resources", {"memory": "lots"}),
     "spec.stages.rl.resources.memory"),
    ("toleration-operator", with_("spec.stages.rl.resources",
                                  {"tolerations": [{"key": "gpu", "operator": "In"}]}),
     "spec.stages.rl.resources.tolerations[0].operator"),
    ("backoff-high", with_("spec.stages.generate.backoffLimit", 99),
     "spec.stages.generate.backoffLimit"),
    ("deadline-zero", with_("spec.stages.midtrain.activeDeadlineSeconds", 0),
     "spec.stages.midtrain.activeDeadlineSeconds"),
    ("arm-unknown", with_("spec.arms", ["polya", "distill"]), "spec.arms[1]"),
    ("arms-empty", with_("spec.arms", []), "spec.arms"),
    ("heuristics-both", with_("spec.heuristics", {"count": 4, "ids": ["analogy"]}),
     "spec.heuristics"),
    ("heuristics-count-high", with_("spec.heuristics.count", 65), "spec.heuristics.count"),
    ("heuristic-id-pattern", with_("spec.heuristics", {"ids": ["Working Backwards"]}),
     "spec.heuristics.ids[0]"),
    ("custom-heuristic-missing", with_("spec.heuristics", {"custom": [{"id": "units"}]}),
     "spec.heuristics.custom[0].name"),
    ("model-dtype", with_("spec.model.dtype", "int4"), "spec.model.dtype"),
    ("model-remote-code-type", with_("spec.model.trustRemoteCode", "yes"),
     "spec.model.trustRemoteCode"),
    ("model-unknown-field", with_("spec.model.token", "hf_secret"), "spec.model.token"),
    ("secret-name", with_("spec.model.hubTokenSecret", {"name": "Bad_Name"}),
     "spec.model.hubTokenSecret.name"),
    ("dataset-limit-zero", with_("spec.dataset.limit", 0), "spec.dataset.limit"),
    ("storage-two", with_("spec.storage", {"pvc": "data", "size": "10Gi"}), "spec.storage"),
    ("storage-uri-scheme", with_("spec.storage.uri", "ftp://bucket/x"), "spec.storage.uri"),
    ("storage-size", with_("spec.storage.size", "ten"), "spec.storage.size"),
    ("pull-policy", with_("spec.imagePullPolicy", "Sometimes"), "spec.imagePullPolicy"),
    ("suspend-type", with_("spec.suspend", "no"), "spec.suspend"),
    ("ttl-negative", with_("spec.ttlSecondsAfterFinished", -5), "spec.ttlSecondsAfterFinished"),
    ("queue-name", with_("spec.queueName", "GPU Queue"), "spec.queueName"),
    ("seed-negative", with_("spec.seed", -1), "spec.seed"),
    ("spec-unknown", with_("spec.stagez", {}), "spec.stagez"),
    ("stage-unknown", with_("spec.stages.distill", {}), "spec.stages.distill"),
    ("name-too-long", with_("metadata.name", "r" * 41), "metadata.name"),
    # Bad input found early (issue 13): names a Service/hostname cannot carry, an unknown
    # benchmark (it used to fail hours later in the evaluate stage), no model at all.
    ("name-digit-first", with_("metadata.name", "2024-exp"), "metadata.name"),
    ("name-dot", with_("metadata.name", "a.b"), "metadata.name"),
    ("eval-benchmark-unknown", with_("spec.stages.evaluate.benchmarks", ["not-a-benchmark"]),
     "spec.stages.evaluate.benchmarks"),
    ("model-missing", {**base(), "spec": {"arms": ["polya"]}}, "spec.model"),
    ("model-name-missing", with_("spec.model", {"dtype": "auto"}), "spec.model.name"),
    ("storage-when-deleted", with_("spec.storage.whenDeleted", "Orphan"),
     "spec.storage.whenDeleted"),
    ("storage-access-mode", with_("spec.storage.accessMode", "ReadOnlyMany"),
     "spec.storage.accessMode"),
    # A workspace on one node cannot serve pods on several (issue 27): a ReadWriteOnce
    # volume attaches to one node, a ReadWriteOncePod one to one pod.
    ("storage-rwo-multi-node", with_spec(storage={"accessMode": "ReadWriteOnce"},
                                         stages={"rl": {"resources": {"nodes": 2}}}),
     "spec.storage.accessMode"),
    ("storage-rwop-shards", with_spec(storage={"accessMode": "ReadWriteOncePod"},
                                      stages={"evaluate": {"shards": 2}}),
     "spec.storage.accessMode"),
    ("storage-rwop-multi-node", with_spec(storage={"pvc": "data", "accessMode":
                                                   "ReadWriteOncePod"},
                                          stages={"midtrain": {"resources": {"nodes": 2}}}),
     "spec.storage.accessMode"),
]


def pydantic_errors(obj: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        s.parse_run(obj)
    except s.SpecError as exc:
        return exc.errors
    return []


def test_sharded_stages_are_accepted_on_a_read_write_once_claim() -> None:
    """Both layers accept what the operator can run: shards on one node of a ReadWriteOnce
    claim (resources.py co-locates them), and any mode beside an object store."""
    for obj in (with_spec(storage={"accessMode": "ReadWriteOnce"},
                          stages={"generate": {"shards": 4}}),
                with_spec(storage={"uri": "s3://b/x", "accessMode": "ReadWriteOncePod"},
                          stages={"evaluate": {"shards": 2}})):
        assert pydantic_errors(copy.deepcopy(obj)) == [] and api_errors(obj) == []


def test_generated_crd_is_committed() -> None:
    text = crd_yaml()
    assert (ROOT / "manifests" / "crd.yaml").read_text() == text, "run `make crd`"
    chart_crd = ROOT / "charts" / "polyarun" / "crds" / "polyaruns.polya.dev.yaml"
    assert chart_crd.read_text() == text, "run `make crd`"


def test_cli_crd_prints_the_same() -> None:
    out = subprocess.run([sys.executable, "-m", "polya_trainer.cli", "crd"], check=True,
                         capture_output=True, text=True).stdout
    assert out == crd_yaml()


def _walk(node: dict[str, Any], path: str = "") -> list[str]:
    """Paths of schema nodes without a description (the root's own keys excepted)."""
    missing = []
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}"
        if path.startswith((".spec", ".status")) and not sub.get("description"):
            missing.append(here)
        missing += _walk(sub, here)
        if "items" in sub:
            missing += _walk(sub["items"], here + "[]")
    return missing


def test_every_field_has_a_description() -> None:
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root["properties"]["spec"]["description"]
    assert _walk(root) == []


def test_crd_shape() -> None:
    obj = crd()
    version = obj["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    cols = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert set(cols) >= {"Stage", "Progress", "Succeeded", "Age", "Reason", "Message"}
    assert cols["Reason"]["priority"] == 1 and cols["Message"]["priority"] == 1
    assert "priority" not in cols["Stage"]
    assert cols["Progress"]["type"] == "integer"  # a number, not text (sorts, aligns)
    # "pr" is Tekton's PipelineRun: a short name two CRDs share resolves to one of them.
    assert obj["spec"]["names"]["shortNames"] == ["prun", "polya"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = spec["properties"]["model"]["x-kubernetes-validations"]
    assert rules[0]["rule"] == "self == oldSelf"  # the model cannot change under a run
    # Bounded lists and strings (the API server's CEL cost estimator needs them).
    assert spec["properties"]["arms"]["maxItems"] == 3
    assert spec["properties"]["model"]["properties"]["name"]["maxLength"] == 512


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_validate_in_both_layers(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert pydantic_errors(doc) == []
        assert api_errors(doc) == []


def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID) >= 30
    assert pydantic_errors(base()) == [] and api_errors(base()) == []


@pytest.mark.parametrize(("case", "obj", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_rejected_by_both_layers(case: str, obj: dict[str, Any], field: str) -> None:
    p_errors = pydantic_errors(copy.deepcopy(obj))
    a_errors = api_errors(copy.deepcopy(obj))
    assert p_errors, f"pydantic accepted {case}"
    assert a_errors, f"the CRD schema accepted {case}"
    assert names_field(p_errors, field), p_errors
    assert names_field(a_errors, field), a_errors


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polya_trainer.cli", *args],
                          capture_output=True, text=True)


def test_validate_cli(tmp_path: Path) -> None:
    good = _cli("validate", *map(str, SAMPLES))
    assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_("spec.stages.rl.numGenerations", 1)))
    res = _cli("validate", str(bad))
    assert res.returncode == 1
    assert "spec.stages.rl.numGenerations" in res.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: PolyaRun\nspec: [unclosed\n")
    assert _cli("validate", str(broken)).returncode == 1


def test_builtin_benchmarks_match_the_trainer_registry() -> None:
    """The CRD's enum of benchmark names is exactly what the evaluate stage can resolve."""
    import typing

    from polya_trainer.data import benchmarks as bm

    assert set(s.BUILTIN_BENCHMARKS) == {*bm.REGISTRY, *bm.GROUPS}
    assert set(typing.get_args(s.BuiltinBenchmark)) == set(s.BUILTIN_BENCHMARKS)
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    items = spec["properties"]["stages"]["properties"]["evaluate"]["properties"]["benchmarks"]
    assert set(items["items"]["enum"]) == set(s.BUILTIN_BENCHMARKS)
    assert "model" in spec["required"]


def _updated(old: dict[str, Any], change: Any) -> dict[str, Any]:
    new = copy.deepcopy(old)
    change(new["spec"])
    return new


# (case, stored object, change to its spec). Each update must be rejected naming the field.
IMMUTABLE = [
    ("storage-added", base(), lambda sp: sp.update(storage={"size": "1Gi"})),
    ("storage-removed", with_("spec.storage", {"size": "1Gi"}), lambda sp: sp.pop("storage")),
    ("storage-changed", with_("spec.storage", {"size": "1Gi"}),
     lambda sp: sp.update(storage={"size": "2Gi"})),
    ("dataset-added", base(), lambda sp: sp.update(dataset={"source": "x/y"})),
    ("dataset-removed", with_("spec.dataset", {"source": "x/y"}), lambda sp: sp.pop("dataset")),
    ("arms-removed", base(), lambda sp: sp.pop("arms")),
    ("arms-added", {**base(), "spec": {"model": {"name": "org/model"}}},
     lambda sp: sp.update(arms=["vanilla"])),
    ("arms-changed", base(), lambda sp: sp.update(arms=["polya"])),
    ("model-changed", base(), lambda sp: sp.update(model={"name": "org/other"})),
]


@pytest.mark.parametrize(("case", "old", "change"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE])
def test_immutable_fields_on_update(case: str, old: dict[str, Any], change: Any) -> None:
    """Transition rules see oldSelf only where the old value exists (tests/crdcheck.py cites
    the API server's code): adding or removing a field is caught by the rules on `spec`."""
    new = _updated(old, change)
    field = "spec." + case.split("-")[0]
    errors = api_errors(new, old=old)
    assert names_field(errors, field), (case, errors)
    assert api_errors(new) == []  # valid as a new object: only the transition is refused


def test_mutable_fields_update_freely() -> None:
    old = base()
    new = _updated(old, lambda sp: sp.update(suspend=True, stages={"rl": {"beta": 0.1}}))
    assert api_errors(new, old=old) == []


def test_transition_rules_need_an_old_value() -> None:
    """The double itself: a field-level `self == oldSelf` is skipped when the old value is
    absent (validation.go: `compiled.UsesOldSelf && oldObj == nil`), so only the spec-level
    rules catch an added field; without them the update would pass."""
    old = base()
    new = _updated(old, lambda sp: sp.update(storage={"size": "1Gi"}))
    errors = api_errors(new, old=old)
    assert [m for _, m in errors if "added or removed" in m]
    assert not [m for _, m in errors if m == "spec.storage is immutable; create a new PolyaRun"]


def test_defaults_follow_the_paper() -> None:
    with pytest.raises(s.SpecError, match=r"spec\.model"):
        s.parse_spec({})  # there is no default model
    spec = s.parse_spec({"model": {"name": "meta-llama/Llama-3.2-3B-Instruct"}})
    assert spec.model.trust_remote_code is False
    assert spec.stages.rl.num_generations == 16 and spec.stages.rl.beta == 0.0
    assert spec.heuristics.selected_count() == 16
    assert spec.arms == ["polya"]
    assert max(spec.stages.evaluate.k) == 64
    assert spec.stages_for("vanilla") == ["rl", "evaluate"]
    assert spec.stages_for("star") == list(s.STAGES)


def test_camel_case_round_trip() -> None:
    spec = s.parse_spec({"model": {"name": "org/m"},
                         "stages": {"rl": {"numGenerations": 8, "perDeviceBatchSize": 8}}})
    dumped = spec.dump()
    assert dumped["stages"]["rl"]["numGenerations"] == 8
    assert s.parse_spec(dumped) == spec


def test_stdlib_operator_is_not_shadowed() -> None:
    res = subprocess.run([sys.executable, "-c", "import operator; operator.add(1, 2)"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_configuration_reference_is_current() -> None:
    from polya_trainer.crd import config_reference

    assert (ROOT / "docs" / "configuration.md").read_text() == config_reference(), "make crd"
    assert "`spec.stages.rl.numGenerations`" in config_reference()
