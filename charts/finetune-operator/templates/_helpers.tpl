{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "finetune-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name used as the prefix of every object: <release>-<chart>, or the release name when
it already contains the chart name; fullnameOverride wins. Truncated to 63 characters (DNS label).
*/}}
{{- define "finetune-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
chart label value: <name>-<version>.
*/}}
{{- define "finetune-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "finetune-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "finetune-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "finetune-operator.labels" -}}
helm.sh/chart: {{ include "finetune-operator.chart" . }}
{{ include "finetune-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: finetune-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "finetune-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "finetune-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: the digest wins, the tag defaults to appVersion.
Usage: include "finetune-operator.image" (dict "image" .Values.image "root" .)
*/}}
{{- define "finetune-operator.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
The Lease name for leader election.
*/}}
{{- define "finetune-operator.leaseName" -}}
{{- default (include "finetune-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The operator's PolicyRules: files/rbac-rules.yaml (a YAML list of rbac.authorization.k8s.io/v1
PolicyRules, owned by the operator), returned as YAML under the key `rules` (include returns a
string). Fails rendering when the file is missing, unparsable or empty.
*/}}
{{- define "finetune-operator.rbacRules" -}}
{{- $raw := .Files.Get "files/rbac-rules.yaml" }}
{{- if not $raw }}
{{- fail "files/rbac-rules.yaml is missing from the chart" }}
{{- end }}
{{- $rules := fromYamlArray $raw }}
{{- if and (eq (len $rules) 1) (kindIs "string" (first $rules)) }}
{{- fail (printf "files/rbac-rules.yaml is not a YAML list of PolicyRules: %s" (first $rules)) }}
{{- end }}
{{- if not $rules }}
{{- fail "files/rbac-rules.yaml has no rules" }}
{{- end }}
{{- toYaml (dict "rules" $rules) }}
{{- end }}

{{/*
files/rbac-rules.yaml split in two, under the keys `lease` (rules on coordination.k8s.io Leases:
leader election, granted only in the Lease's namespace) and `other` (everything else, granted
where FineTuneJobs are watched). Keep Lease rules in entries of their own in the file.
*/}}
{{- define "finetune-operator.splitRules" -}}
{{- $all := (include "finetune-operator.rbacRules" . | fromYaml).rules }}
{{- $lease := list }}
{{- $other := list }}
{{- range $all }}
{{- if and (has "coordination.k8s.io" (default (list) .apiGroups)) (has "leases" (default (list) .resources)) }}
{{- $lease = append $lease . }}
{{- else }}
{{- $other = append $other . }}
{{- end }}
{{- end }}
{{- toYaml (dict "lease" $lease "other" $other) }}
{{- end }}

{{/*
Checks of value combinations that the JSON schema cannot express.
*/}}
{{- define "finetune-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled=true (otherwise several operators would reconcile the same FineTuneJobs)" }}
{{- end }}
{{- if ge (int .Values.leaderElection.renewIntervalSeconds) (int .Values.leaderElection.leaseDurationSeconds) }}
{{- fail "leaderElection.renewIntervalSeconds must be below leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.health.port)) }}
{{- fail "metrics.port and health.port must differ" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true" }}
{{- end }}
{{- end }}
