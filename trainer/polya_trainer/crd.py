"""Build the PolyaRun CustomResourceDefinition from the pydantic contract.

Pydantic emits JSON Schema (2020-12) with `$defs`, `anyOf` for optionals and titles;
Kubernetes wants a *structural* OpenAPI v3 schema: everything inlined, a `type` on every
node, `nullable` instead of `anyOf: [T, null]`, no titles.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from polya_trainer import spec as s

_RULES = "x-kubernetes-validations"
_DROP = {"title", "additionalProperties", "$defs", "discriminator"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        rules = target.get(_RULES, []) + extra.pop(_RULES, [])
        target.update(extra)  # a field's description/extras win over the model's
        if rules:
            target[_RULES] = rules  # but CEL rules of both apply
        return _resolve(target, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**_resolve(node["allOf"][0], defs),
                  **{k: v for k, v in node.items() if k != "allOf"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: Any) -> Any:
    """Turn the resolved pydantic schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "anyOf" in node:  # Optional[T] -> T, nullable
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"union types are not structural: {options}")
        rules = options[0].get(_RULES, []) + node.get(_RULES, [])
        node = {**options[0], **node, "nullable": True}
        if rules:
            node[_RULES] = rules  # the model's rules and the field's both apply
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    for bound, key in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node[bound], bool):
            node[key], node[bound] = node[bound], True  # OpenAPI v3 form of JSON Schema's
    if node.get("format") == "date-time":
        node["type"] = "string"
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if node.get("type") == "object" and "properties" not in node:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra and not preserve:
            node["additionalProperties"] = _structural(
                {k: v for k, v in extra.items() if k != "title"})
            node.pop("default", None)
            return {k: v for k, v in node.items() if k not in _DROP - {"additionalProperties"}}
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "default" in node and (isinstance(node["default"], (dict, list)) or node["default"] is None):
        node.pop("default")  # object defaults come from the contract, not the API server
    if "required" in node:
        node["required"] = [r for r in node["required"]]
    out = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value)
        else:
            out[key] = value
    if "nullable" in out and "default" in out:
        out.pop("default")
    return out


def openapi_schema(model: type[s.Spec]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_resolve(raw, raw.get("$defs", {})))


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object for PolyaRun."""
    spec_schema = openapi_schema(s.PolyaRunSpec)
    status_schema = openapi_schema(s.PolyaRunStatus)
    status_schema["x-kubernetes-preserve-unknown-fields"] = True  # forward-compatible status
    root = {
        "type": "object",
        "description": "PolyaRun runs Pólya mid-training before RL: generate, midtrain, rl, "
                       "evaluate, each stage a batch/v1 Job.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [{
            "rule": "size(self.metadata.name) <= 40",
            "message": "metadata.name must be at most 40 characters (child Job names append "
                       "arm, stage and attempt)",
        }, {
            # The API server checks a custom resource's name only as a DNS subdomain, which
            # allows "2024-exp" and "a.b"; its Services and Indexed-Job hostnames need an
            # RFC 1035 label (apimachinery validation.IsDNS1035Label).
            "rule": f"self.metadata.name.matches('{s.DNS_1035}')",
            "message": "metadata.name must be an RFC 1035 label (lower-case letters, digits "
                       "and '-', starting with a letter, no dots): it names the run's "
                       "Services and pod hostnames",
        }],
    }
    columns = [
        {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage",
         "description": "Active arm/stage"},
        # integer: the API server's table converter truncates the number (37.5 -> 37)
        {"name": "Progress", "type": "integer", "jsonPath": ".status.progress",
         "description": "Overall percent done"},
        {"name": "Succeeded", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Succeeded")].status',
         "description": "Whether the run succeeded"},
        {"name": "Reason", "type": "string", "priority": 1,
         "jsonPath": '.status.conditions[?(@.type=="Succeeded")].reason',
         "description": "Why the run is in its state"},
        {"name": "Message", "type": "string", "priority": 1,
         "jsonPath": '.status.conditions[?(@.type=="Succeeded")].message',
         "description": "Detail"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{s.PLURAL}.{s.GROUP}",
                     "labels": {"app.kubernetes.io/name": "polyarun",
                                "app.kubernetes.io/component": "crd"}},
        "spec": {
            "group": s.GROUP,
            "scope": "Namespaced",
            "names": {"kind": s.KIND, "plural": s.PLURAL, "singular": "polyarun",
                      "listKind": "PolyaRunList", "shortNames": ["prun", "polya"],
                      "categories": ["all", "polya", "training"]},
            "versions": [{
                "name": s.VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def crd_yaml() -> str:
    header = "# Generated from trainer/polya_trainer/spec.py by `polya crd`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)


def _rows(node: dict[str, Any], path: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}"
        typ = sub.get("type", "object")
        if typ == "array":
            typ = f"[]{sub.get('items', {}).get('type', 'object')}"
        if "enum" in sub:
            typ = " \\| ".join(str(e) for e in sub["enum"])
        default = sub.get("default", "")
        desc = " ".join(str(sub.get("description", "")).split())
        shown = "" if default == "" else f"`{json.dumps(default)}`"
        rows.append((here, typ, shown, desc))
        if sub.get("properties"):
            rows += _rows(sub, here)
        elif sub.get("items", {}).get("properties"):
            rows += _rows(sub["items"], here + "[]")
    return rows


def config_reference() -> str:
    """Markdown reference of every spec field (docs/configuration.md), from the CRD schema."""
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    out = ["# PolyaRun configuration reference", "",
           "Generated from `trainer/polya_trainer/spec.py` (`make crd`). Field names are as "
           "written in YAML; `kubectl explain polyarun.spec.<field>` shows the same text.", "",
           "| field | type | default | description |", "|---|---|---|---|"]
    for path, typ, default, desc in _rows(root["properties"]["spec"], "spec"):
        desc = desc.replace("|", "\\|")
        out.append(f"| `{path}` | {typ} | {default} | {desc} |")
    return "\n".join(out) + "\n"
