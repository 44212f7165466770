{{/* Chart name, truncated to a DNS label. */}}
{{- define "polyarun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object-name prefix: the release name, or release-chart when it lacks the chart name. */}}
{{- define "polyarun.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "polyarun.operatorName" -}}
{{- printf "%s-operator" (include "polyarun.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "polyarun.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. helm.sh/chart and managed-by are the Helm-only ones. */}}
{{- define "polyarun.labels" -}}
helm.sh/chart: {{ include "polyarun.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: polyarun
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "polyarun.selectorLabels" . }}
{{- end -}}

{{- define "polyarun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "polyarun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "polyarun.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "polyarun.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag or repository@digest. Arguments: (list image appVersion). */}}
{{- define "polyarun.image" -}}
{{- $img := index . 0 -}}
{{- $tag := default (index . 1) $img.tag -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator watches in namespace mode. */}}
{{- define "polyarun.watchNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- join "," .Values.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "polyarun.webhookServiceName" -}}
{{- printf "%s-webhook" (include "polyarun.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
