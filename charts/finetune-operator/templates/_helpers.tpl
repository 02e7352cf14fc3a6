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
{{- /* The `bind` rule names the trainer ClusterRole: the one this release creates. */}}
{{- $trainerRole := include "finetune-operator.trainerClusterRole" . }}
{{- $out := list }}
{{- range $rules }}
{{- if and (has "clusterroles" (default (list) .resources)) (has "bind" (default (list) .verbs)) }}
{{- $out = append $out (merge (dict "resourceNames" (list $trainerRole)) (omit . "resourceNames")) }}
{{- else }}
{{- $out = append $out . }}
{{- end }}
{{- end }}
{{- toYaml (dict "rules" $out) }}
{{- end }}

{{/*
The trainer's PolicyRules (files/trainer-rules.yaml), as YAML under the key `rules`.
*/}}
{{- define "finetune-operator.trainerRules" -}}
{{- $rules := fromYamlArray (required "files/trainer-rules.yaml is missing from the chart" (.Files.Get "files/trainer-rules.yaml")) }}
{{- if or (not $rules) (kindIs "string" (first $rules)) }}
{{- fail "files/trainer-rules.yaml is not a non-empty YAML list of PolicyRules" }}
{{- end }}
{{- toYaml (dict "rules" $rules) }}
{{- end }}

{{/*
The ClusterRole the operator binds to each run's trainer ServiceAccount (--trainer-cluster-role).
*/}}
{{- define "finetune-operator.trainerClusterRole" -}}
{{- printf "%s-trainer" (include "finetune-operator.fullname" .) }}
{{- end }}

{{/*
The operator's user name as the API server sees it (admission policies match on it).
*/}}
{{- define "finetune-operator.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "finetune-operator.serviceAccountName" .) }}
{{- end }}

{{/*
Namespaces the operator never acts in, whatever the values say.
*/}}
{{- define "finetune-operator.protectedNamespaces" -}}
{{- toJson (list "kube-system" "kube-public" "kube-node-lease") }}
{{- end }}

{{/*
How the operator's namespaces are chosen: `clusterWide` (watch.clusterWide=true), `namespaces`
(watch.namespaces, a Role per namespace) or `selector` (watch.namespaceSelector, enforced by an
admission policy; the default).
*/}}
{{- define "finetune-operator.watchMode" -}}
{{- if .Values.watch.clusterWide }}clusterWide
{{- else if .Values.watch.namespaces }}namespaces
{{- else }}selector
{{- end }}
{{- end }}

{{/*
files/rbac-rules.yaml split in two, under the keys `lease` (rules on coordination.k8s.io Leases:
leader election, granted only in the Lease's namespace) and `other` (everything else, granted
where FineTuneJobs are watched). Keep Lease rules in entries of their own in the file.
*/}}
{{- define "finetune-operator.splitRules" -}}
{{- $all := (include "finetune-operator.rbacRules" . | fromYaml).rules }}
{{- $lease := list }}
{{- $nodes := list }}
{{- $other := list }}
{{- range $all }}
{{- if and (has "coordination.k8s.io" (default (list) .apiGroups)) (has "leases" (default (list) .resources)) }}
{{- $lease = append $lease . }}
{{- else if has "nodes" (default (list) .resources) }}
{{- $nodes = append $nodes . }}
{{- else }}
{{- $other = append $other . }}
{{- end }}
{{- end }}
{{- toYaml (dict "lease" $lease "nodes" $nodes "other" $other) }}
{{- end }}

{{/*
matchConstraints.resourceRules of the operator's writes (what the namespace policies confine):
Jobs, Pods, ConfigMaps, ServiceAccounts, Services and RoleBindings; not its Events nor its Lease.
*/}}
{{- define "finetune-operator.operatorWriteRules" }}
    resourceRules:
      - apiGroups: [""]
        apiVersions: ["*"]
        resources: ["pods", "configmaps", "serviceaccounts", "services"]
        operations: ["CREATE", "UPDATE", "DELETE"]
      - apiGroups: ["batch"]
        apiVersions: ["*"]
        resources: ["jobs"]
        operations: ["CREATE", "UPDATE", "DELETE"]
      - apiGroups: ["rbac.authorization.k8s.io"]
        apiVersions: ["*"]
        resources: ["rolebindings"]
        operations: ["CREATE", "UPDATE", "DELETE"]
{{- end }}

{{/*
Checks of value combinations that the JSON schema cannot express.
*/}}
{{- define "finetune-operator.validate" -}}
{{- $protected := include "finetune-operator.protectedNamespaces" . | fromJsonArray }}
{{- range .Values.watch.namespaces }}
{{- if has . $protected }}
{{- fail (printf "watch.namespaces: %s is never allowed (the operator never acts in %s)" . (join ", " $protected)) }}
{{- end }}
{{- end }}
{{- if and .Values.watch.clusterWide .Values.watch.namespaces }}
{{- fail "watch.clusterWide=true and watch.namespaces are exclusive: set one" }}
{{- end }}
{{- $mode := include "finetune-operator.watchMode" . }}
{{- if eq $mode "selector" }}
{{- $sel := .Values.watch.namespaceSelector }}
{{- if not (or $sel.matchLabels $sel.matchExpressions) }}
{{- fail "watch.namespaceSelector is empty (it would select every namespace): give matchLabels or matchExpressions, list watch.namespaces, or set watch.clusterWide=true" }}
{{- end }}
{{- if not .Values.admissionPolicies.enabled }}
{{- fail "watch.namespaceSelector is enforced by an admission policy: keep admissionPolicies.enabled=true, or list watch.namespaces, or set watch.clusterWide=true" }}
{{- end }}
{{- end }}
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

{{/*
A CEL expression for an optional string field of a FineTuneJob's spec in an admission policy:
the value at a dotted path under variables.spec (e.g. "dataset.source"), or '' when unset, typed
string (FineTuneJobs reach CEL untyped).
Usage: include "finetune-operator.celSpecString" "dataset.source"
*/}}
{{- define "finetune-operator.celSpecString" -}}
{{- $parts := splitList "." . }}
{{- $guards := list }}
{{- range $i, $_ := $parts }}
{{- $guards = append $guards (printf "has(variables.spec.%s)" (join "." (slice $parts 0 (add1 $i)))) }}
{{- end }}
{{- printf "string(%s ? variables.spec.%s : '')" (join " && " $guards) . }}
{{- end }}
