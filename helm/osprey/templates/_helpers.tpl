{{/* Name of the chart, overridable. */}}
{{- define "osprey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the release's objects. */}}
{{- define "osprey.fullname" -}}
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

{{- define "osprey.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "osprey.labels" -}}
helm.sh/chart: {{ include "osprey.chart" . }}
{{ include "osprey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: sensor
{{- end }}

{{/* Labels that select the sensor's pods. */}}
{{- define "osprey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "osprey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The service account the pods run as. */}}
{{- define "osprey.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "osprey.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository:tag (or @digest). */}}
{{- define "osprey.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the chart mounts things inside the container. */}}
{{- define "osprey.configDir" -}}/etc/osprey{{- end }}
{{- define "osprey.tokenDir" -}}/run/secrets/osprey{{- end }}
{{- define "osprey.spoolDir" -}}/var/lib/osprey/spool{{- end }}
{{- define "osprey.logDir" -}}/var/log/osprey{{- end }}

{{/* Whether the Kubernetes enforcer runs (and so needs API access). */}}
{{- define "osprey.kubeEnforcement" -}}
{{- if and .Values.enforcement.enabled .Values.enforcement.kubernetes.enabled }}true{{ end }}
{{- end }}

{{/*
Values that contradict each other, and config keys the chart sets itself,
fail the render with a message that says what to change.
*/}}
{{- define "osprey.validate" -}}
{{- $k := .Values.enforcement.kubernetes.enabled }}
{{- if and $k (not .Values.enforcement.enabled) }}
{{- fail "enforcement.kubernetes.enabled=true needs enforcement.enabled=true: the Kubernetes enforcer only runs when osprey enforces (set enforcement.enabled=true, or leave enforcement.kubernetes.enabled=false for a dry run)" }}
{{- end }}
{{- if and $k (not .Values.rbac.create) (not .Values.serviceAccount.name) }}
{{- fail "enforcement.kubernetes.enabled=true with rbac.create=false needs serviceAccount.name: the name of an existing service account already granted what templates/rbac.yaml grants (or set rbac.create=true)" }}
{{- end }}
{{- if and $k (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "enforcement.kubernetes.enabled=true with serviceAccount.create=false needs serviceAccount.name: the chart will not grant the namespace's default service account API permissions" }}
{{- end }}
{{- if and .Values.platform.url (not .Values.platform.tokenSecret.name) }}
{{- fail "platform.url is set but platform.tokenSecret.name is empty: create a Secret holding the platform's bearer token (kubectl create secret generic osprey-platform --from-literal=token=...) and set platform.tokenSecret.name" }}
{{- end }}
{{- if and .Values.platform.tokenSecret.name (not .Values.platform.url) }}
{{- fail "platform.tokenSecret.name is set but platform.url is empty: set platform.url to the platform API's base URL (or unset the Secret name)" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled=true needs metrics.service.enabled=true: the ServiceMonitor scrapes through the metrics Service" }}
{{- end }}
{{- if and (eq .Values.logs.mode "hostPath") (not .Values.logs.hostPath) }}
{{- fail "logs.mode=hostPath needs logs.hostPath (a directory on the node)" }}
{{- end }}
{{- if and .Values.platform.url (eq .Values.platform.spool.type "hostPath") (not .Values.platform.spool.hostPath) }}
{{- fail "platform.spool.type=hostPath needs platform.spool.hostPath (a directory on the node)" }}
{{- end }}
{{- $c := .Values.config }}
{{- $managed := list
  (list "metrics" "listen_addr" "metrics.port and metrics.bindAddress")
  (list "output" "stdout" "logs.mode")
  (list "output" "log_dir" "logs.mode and logs.hostPath")
  (list "respond" "enforce" "enforcement.enabled")
  (list "respond" "rules_file" "rules")
  (list "respond" "allowlist_cluster" "allowlist.cluster")
  (list "respond" "allowlist_resolv_conf" "allowlist.hostResolvers")
  (list "platform" "url" "platform.url")
  (list "platform" "token_file" "platform.tokenSecret")
  (list "platform" "spool_dir" "platform.spool")
  (list "identity" "enabled" "identity.enabled")
  (list "identity" "watch_nodes" "identity.watchNodes") }}
{{- range $managed }}
{{- $section := index . 0 }}
{{- $key := index . 1 }}
{{- if and (hasKey $c $section) (kindIs "map" (index $c $section)) (hasKey (index $c $section) $key) }}
{{- fail (printf "config.%s.%s is set by the chart from %s; set that value instead" $section $key (index . 2)) }}
{{- end }}
{{- end }}
{{- if and (hasKey $c "respond") (kindIs "map" $c.respond) (hasKey $c.respond "kube") (kindIs "map" $c.respond.kube) }}
{{- if hasKey $c.respond.kube "enabled" }}
{{- fail "config.respond.kube.enabled is set by the chart from enforcement.kubernetes.enabled; set that value instead" }}
{{- end }}
{{- if hasKey $c.respond.kube "node_name" }}
{{- fail "config.respond.kube.node_name is set by the chart (NODE_NAME from spec.nodeName); leave it out" }}
{{- end }}
{{- end }}
{{- if and (hasKey $c "identity") (kindIs "map" $c.identity) (hasKey $c.identity "node_name") }}
{{- fail "config.identity.node_name is set by the chart (NODE_NAME from spec.nodeName); leave it out" }}
{{- end }}
{{- end }}

{{/*
osprey's configuration file: .Values.config with the keys the chart owns
(addresses, mounts, switches) laid over it.
*/}}
{{- define "osprey.config" -}}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $managed := dict
  "metrics" (dict "listen_addr" (printf "%s:%d" .Values.metrics.bindAddress (int .Values.metrics.port)))
  "respond" (dict
    "enforce" .Values.enforcement.enabled
    "allowlist_cluster" .Values.allowlist.cluster
    "kube" (dict "enabled" (eq (include "osprey.kubeEnforcement" .) "true")))
  "output" (dict "stdout" (eq .Values.logs.mode "stdout"))
  "identity" (dict "enabled" .Values.identity.enabled "watch_nodes" .Values.identity.watchNodes) }}
{{- if ne .Values.logs.mode "stdout" }}
{{- $_ := set $managed.output "log_dir" (include "osprey.logDir" .) }}
{{- end }}
{{- if .Values.allowlist.hostResolvers }}
{{- $_ := set $managed.respond "allowlist_resolv_conf" (list "/host/etc/resolv.conf" "/host/run/systemd/resolve/resolv.conf") }}
{{- else }}
{{- $_ := set $managed.respond "allowlist_resolv_conf" (list) }}
{{- end }}
{{- if .Values.rules }}
{{- $_ := set $managed.respond "rules_file" (printf "%s/rules.yaml" (include "osprey.configDir" .)) }}
{{- end }}
{{- if .Values.platform.url }}
{{- $_ := set $managed "platform" (dict
  "url" .Values.platform.url
  "token_file" (printf "%s/token" (include "osprey.tokenDir" .))
  "spool_dir" (include "osprey.spoolDir" .)) }}
{{- end }}
{{- $cfg = mustMergeOverwrite $cfg $managed }}
{{- toYaml $cfg }}
{{- end }}
