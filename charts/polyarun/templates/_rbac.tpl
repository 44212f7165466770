{{/*
RBAC rules of the operator, without wildcards and without verbs it does not use. They
follow the calls in operator/polya_operator/kube.py (create/patch/delete, list of PolyaRuns
for the watch check) and what kopf needs for the handlers in handlers.py: list+watch of
every watched kind. A create answered 409 (a retained workspace claim, a sweep's later
variants, a namesake's children not yet collected) is followed by a `get` of that object to
check its owner (kube.py Kube.create): `get` on every kind the operator creates. The handlers are raw event handlers and indexes, so kopf never patches
PolyaRuns (no finalizers, no progress annotations); Events are core/v1. kopf's scanning is
disabled (handlers.py), so neither CRDs nor namespaces are read.
Hardened clusters (OpenShift) run the OwnerReferencesPermissionEnforcement admission plugin
(kubernetes plugin/pkg/admission/gc/gc_admission.go): creating a child with ownerReferences
needs `delete` on the child, and blockOwnerDeletion needs `update` on polyaruns/finalizers.
A sweep PolyaRun creates its variants as child PolyaRuns (polya_operator/sweep.py): get and
create on polyaruns, and delete for that plugin.
tests/reliability/test_rel_secrets_rbac.py checks these rules against the requests the
operator really makes plus the permissions that plugin checks (recorded by the emulator).
*/}}

{{/* Rules on namespaced objects: granted cluster-wide (cluster mode) or per namespace. */}}
{{- define "polyarun.rules.namespaced" -}}
- apiGroups: ["polya.dev"]
  resources: ["polyaruns"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["polya.dev"]
  resources: ["polyaruns/status"]
  verbs: ["patch"]
- apiGroups: ["polya.dev"]
  resources: ["polyaruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims", "services"]
  verbs: ["get", "create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- if and .Values.operator.peering.enabled (eq .Values.watch.mode "namespace") }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/* Cluster-scoped: kopf's peering across the whole cluster (cluster mode only). */}}
{{- define "polyarun.rules.cluster" -}}
{{- if .Values.operator.peering.enabled }}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/* kopf creates and patches its ValidatingWebhookConfiguration (cluster-scoped). */}}
{{- define "polyarun.rules.webhook" -}}
- apiGroups: ["admissionregistration.k8s.io"]
  resources: ["validatingwebhookconfigurations"]
  verbs: ["create", "patch"]
{{- end -}}
