{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "modelpress.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or just <release> when it
already contains the chart name. Cut to 52 characters so that suffixed names
(-framework, -workloads, ...) stay within the 63-character label limit.
*/}}
{{- define "modelpress.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelpress.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelpress.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelpress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelpress.labels" -}}
helm.sh/chart: {{ include "modelpress.chart" . }}
{{ include "modelpress.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelpress
{{- end }}

{{- define "modelpress.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelpress.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: a digest pins it, an empty
tag means the chart's appVersion followed by `suffix`.
Call with (dict "image" .Values.image "suffix" "" "context" $).
*/}}
{{- define "modelpress.image" -}}
{{- $tag := .image.tag | default (printf "%s%s" .context.Chart.AppVersion .suffix) }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches every namespace, "" otherwise. */}}
{{- define "modelpress.clusterWide" -}}
{{- if eq (kindOf .Values.watchNamespaces) "string" }}true{{ end }}
{{- end }}

{{/* The config file's name inside the ConfigMap and the container. */}}
{{- define "modelpress.configDir" -}}/etc/modelpress{{- end }}
{{- define "modelpress.configFile" -}}config.yaml{{- end }}
