{{- define "gen5nas.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gen5nas.labels" -}}
app.kubernetes.io/name: gen5nas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gen5nas.selectorLabels" -}}
app.kubernetes.io/name: gen5nas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "gen5nas.serviceAccountName" -}}
{{- default (include "gen5nas.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Namespaces the operator watches when not cluster-wide. */}}
{{- define "gen5nas.namespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," .Values.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Namespaces that hold the workloads (and their DSN Secret, PVCs). */}}
{{- define "gen5nas.workloadNamespaces" -}}
{{- if .Values.workloadNamespaces -}}
{{- join "," (uniq .Values.workloadNamespaces) -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "gen5nas.postgresName" -}}
{{- printf "%s-postgresql" (include "gen5nas.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The bundled server's password: the one an earlier install stored (so upgrades keep it),
     else a new random one. */}}
{{- define "gen5nas.postgresPassword" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "gen5nas.postgresName" .) -}}
{{- if and $existing $existing.data (index $existing.data "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}

{{- define "gen5nas.postgresDsn" -}}
{{- $pg := .root.Values.postgres.bundled -}}
{{- printf "postgresql+psycopg2://%s:%s@%s.%s.svc:%d/%s" $pg.username .password (include "gen5nas.postgresName" .root) .root.Release.Namespace (int $pg.port) $pg.database -}}
{{- end -}}

{{- define "gen5nas.componentLabels" -}}
app.kubernetes.io/name: gen5nas
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "gen5nas.componentSelector" -}}
app.kubernetes.io/name: gen5nas
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The operator's policy (GEN5NAS_POLICY): the values' policy, the chart's PVCs allowed too. */}}
{{- define "gen5nas.policy" -}}
{{- $p := deepCopy .Values.policy -}}
{{- $pvcs := concat (list .Values.resultsPvc.name .Values.datasetPvc.name) .Values.policy.allowedPvcs | uniq -}}
{{- $_ := set $p "allowedPvcs" $pvcs -}}
{{- toJson $p -}}
{{- end -}}
