"""Validate an object the way the API server would validate it against our CRD.

There is no kube-apiserver here, so this stands in for its two layers, using real
implementations of each: the structural OpenAPI schema through `jsonschema` (with
`nullable` mapped to JSON Schema and unknown fields rejected, as `kubectl apply`'s default
strict field validation does), and the `x-kubernetes-validations` CEL rules through
`cel-python`.

Updates (``api_errors(obj, old=...)``) follow the API server's rules for transition rules (those
that use ``oldSelf``), from kubernetes/kubernetes
staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go:
``Validator.validateExpressions`` skips a rule that uses ``oldSelf`` when there is no old value
at that node (``compiled.UsesOldSelf && oldObj == nil``), unless the rule sets
``optionalOldSelf``; ``Validator.validateMap`` pairs an object's properties with the old
object's same properties; ``validateArray`` pairs items only in ``x-kubernetes-list-type: map``
lists, so items of other lists never see ``oldSelf``. A rule's ``fieldPath`` is appended to the
error's path. Left out: ``optionalOldSelf`` rules (refused here: cel-python has no optional
types; the CRD uses none), map-list item correlation (the spec has no map lists), and
create-only rules never see ``oldSelf``. Validation ratcheting is ``api_errors(ratchet=True)``.
"""

from __future__ import annotations

import copy
from functools import cache, lru_cache
from typing import Any

import celpy
import jsonschema
from polya_trainer.crd import crd


def _to_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_jsonschema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True  # the API server rejects duplicates in a set list
    if isinstance(out.get("pattern"), str) and out["pattern"].endswith("$"):
        # The API server uses RE2, where `$` is the end of the text; in Python's `re` it
        # also matches before a final newline.
        out["pattern"] = out["pattern"][:-1] + r"\Z"
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=1)
def _schemas() -> tuple[dict[str, Any], jsonschema.Draft4Validator]:
    raw = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return raw, jsonschema.Draft4Validator(_to_jsonschema(copy.deepcopy(raw)))


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


_ENV = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def _absent_nulls(value: Any) -> Any:
    """The value as CEL sees it: the API server treats a null-valued field as absent
    (``has(self.f)`` is false; kubernetes/kubernetes#106051, and the CRD docs' validation
    rules section: "Null valued fields are treated as absent fields in CEL expressions")."""
    if isinstance(value, dict):
        return {k: _absent_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_absent_nulls(v) for v in value]
    return value


def _cel(schema: dict[str, Any], value: Any, path: str, errors: list[tuple[str, str]],
         old: Any = None, ratchet: bool = False) -> None:
    if value is None or (ratchet and old is not None and value == old):
        return  # ratcheted: the rules of an unchanged value are not evaluated
    for rule in schema.get("x-kubernetes-validations", []):
        if rule.get("optionalOldSelf"):
            raise NotImplementedError("optionalOldSelf rules are not emulated")
        env = {"self": celpy.json_to_cel(_absent_nulls(value))}
        if "oldSelf" in rule["rule"]:
            if old is None:
                continue  # a transition rule without an old value is not evaluated
            env["oldSelf"] = celpy.json_to_cel(_absent_nulls(old))
        program = _program(rule["rule"])
        result = program.evaluate(env)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and result):
            where = path + rule.get("fieldPath", "") if path or not rule.get("fieldPath") \
                else rule["fieldPath"].lstrip(".")
            errors.append((where, rule["message"]))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                prev = old.get(name) if isinstance(old, dict) else None
                _cel(sub, value[name], f"{path}.{name}" if path else name, errors, prev,
                     ratchet)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):  # only map lists correlate items: none here
            _cel(schema["items"], item, f"{path}[{i}]", errors)


def _default(schema: dict[str, Any], value: Any) -> None:
    """Fill absent fields with the schema's defaults, as the API server does before CEL."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(schema["items"], item)


def pruned(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with the fields its schema does not specify dropped, as the API server stores a
    custom resource written without strict field validation (apiextensions-apiserver
    pkg/apiserver/schema/pruning/algorithm.go, ``Prune``: unknown fields go unless the node
    has ``x-kubernetes-preserve-unknown-fields``; ``apiVersion``, ``kind`` and ``metadata`` at
    the root are left to the ObjectMeta code). Left out: pruning inside embedded resources
    (the CRD has none)."""
    raw, _ = _schemas()

    def walk(schema: dict[str, Any], value: Any) -> Any:
        if isinstance(value, list) and "items" in schema:
            return [walk(schema["items"], v) for v in value]
        if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {k: walk(extra, v) for k, v in value.items()}
        if props is None:
            return value
        return {k: walk(props[k], v) for k, v in value.items() if k in props}

    out = walk(raw, copy.deepcopy(obj))
    for key in ("apiVersion", "kind", "metadata"):
        if key in obj:
            out[key] = copy.deepcopy(obj[key])
    return out


def defaulted(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as the API server stores it: the schema's defaults filled in."""
    raw, _ = _schemas()
    obj = copy.deepcopy(obj)
    _default(raw, obj)
    return obj


def _at(obj: Any, path: str) -> Any:
    """The value at an error's path (``spec.a.b[2]``); KeyError if there is none."""
    for part in path.replace("[", ".[").split(".") if path else []:
        if part.startswith("["):
            obj = obj[int(part[1:-1])]
        elif isinstance(obj, dict):
            obj = obj[part]
        else:
            raise KeyError(part)
    return obj


def _unchanged(obj: Any, old: Any, path: str) -> bool:
    try:
        return _at(obj, path) == _at(old, path)
    except (KeyError, IndexError, TypeError, ValueError):
        return False


def api_errors(obj: dict[str, Any], old: dict[str, Any] | None = None,
               ratchet: bool = False) -> list[tuple[str, str]]:
    """(field path, message) for every way the API server would reject `obj` on create, or
    on an update of the stored object `old` (then transition rules run too). With
    `ratchet`, an update keeps the errors only where the value changed: validation
    ratcheting, on by default since Kubernetes 1.30 and GA in 1.33 (the CRD task page,
    "Validation ratcheting"; feature gate CRDValidationRatcheting). Approximated by the
    error's path: a rule on a parent whose child changed is not ratcheted."""
    raw, validator = _schemas()
    obj = copy.deepcopy(obj)
    _default(raw, obj)
    if old is not None:  # the stored object was defaulted when it was written
        old = copy.deepcopy(old)
        _default(raw, old)
    errors = [(_path(e.absolute_path), e.message) for e in validator.iter_errors(obj)]
    if not errors:  # CEL runs only on schema-valid objects, as in the API server
        _cel(raw, obj, "", errors, old, ratchet)
    if ratchet and old is not None:
        errors = [(path, msg) for path, msg in errors if not _unchanged(obj, old, path)]
    return errors


def names_field(errors: list[tuple[str, str]], field: str) -> bool:
    """Whether some error names `field` (its path, or its parent path plus the key)."""
    parent, _, leaf = field.rpartition(".")
    for path, msg in errors:
        if path == field or field in msg or (path == parent and f"'{leaf}'" in msg):
            return True
        if path.startswith(field + ".") or path.startswith(field + "["):
            return True
    return False
