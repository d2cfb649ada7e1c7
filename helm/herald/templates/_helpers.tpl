{{/*
Names
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix: <release>-<name>, or fullnameOverride. */}}
{{- define "herald.fullname" -}}
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

{{/* "<fullname>-<component>" within 63 characters; the prefix is shortened, never the suffix.
Args: dict "root" $ "component" "router" */}}
{{- define "herald.componentName" -}}
{{- $base := include "herald.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .component }}
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Args: dict "root" $ "component" "<router | deliver-<channel> | setup>" (component may be
empty: labels shared by every role).
*/}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" .root }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: herald
{{- end }}

{{/* Stable labels only: selectors never change over the release's life. */}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The ServiceAccount of the long-running pods. */}}
{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The setup Job's ServiceAccount: a hook-time copy when the chart creates one, because a
pre-install hook runs before the chart's own ServiceAccount exists. */}}
{{- define "herald.setupServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "herald.componentName" (dict "root" . "component" "setup") }}
{{- else }}
{{- include "herald.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/*
Configuration
*/}}

{{- define "herald.configPath" -}}/etc/herald/herald.toml{{- end }}

{{/* Copies a value with nulls dropped and whole numbers as int64: Helm reads every YAML number
as a float64, which toToml would write as `3.0`, and Herald's integer settings refuse floats.
Args: dict "in" <value> "out" <dict receiving "value"> */}}
{{- define "herald.normalize" -}}
{{- $in := .in }}
{{- if kindIs "map" $in }}
{{- $out := dict }}
{{- range $key, $value := $in }}
{{- if not (kindIs "invalid" $value) }}
{{- $holder := dict }}
{{- include "herald.normalize" (dict "in" $value "out" $holder) }}
{{- $_ := set $out $key $holder.value }}
{{- end }}
{{- end }}
{{- $_ := set .out "value" $out }}
{{- else if kindIs "slice" $in }}
{{- $out := list }}
{{- range $value := $in }}
{{- if not (kindIs "invalid" $value) }}
{{- $holder := dict }}
{{- include "herald.normalize" (dict "in" $value "out" $holder) }}
{{- $out = append $out $holder.value }}
{{- end }}
{{- end }}
{{- $_ := set .out "value" $out }}
{{- else if and (kindIs "float64" $in) (eq $in (floor $in)) }}
{{- $_ := set .out "value" (int64 $in) }}
{{- else }}
{{- $_ := set .out "value" $in }}
{{- end }}
{{- end }}

{{/* herald.toml, rendered from .Values.config. */}}
{{- define "herald.configToml" -}}
{{- $holder := dict }}
{{- include "herald.normalize" (dict "in" (.Values.config | default dict) "out" $holder) }}
{{- $toml := toToml $holder.value }}
{{- if hasPrefix "toml:" $toml }}
{{- fail (printf "config cannot be written as TOML: %s" $toml) }}
{{- end }}
{{- $toml }}
{{- end }}

{{/* The admin port, from config.admin.listen ("0.0.0.0:9464", "[::]:9464"). */}}
{{- define "herald.adminPort" -}}
{{- dig "admin" "listen" "" (.Values.config | default dict) | toString | splitList ":" | last | int }}
{{- end }}

{{/* The API's HTTP port, from config.api.listen ("0.0.0.0:8080"). */}}
{{- define "herald.apiPort" -}}
{{- dig "api" "listen" "" (.Values.config | default dict) | toString | splitList ":" | last | int }}
{{- end }}

{{/* Collects the paths of secret-looking keys. Args: dict "map" <map> "path" <prefix> "found" <dict with "paths"> */}}
{{- define "herald.secretPaths" -}}
{{- range $key, $value := .map }}
{{- $path := printf "%s.%s" $.path $key }}
{{- if kindIs "map" $value }}
{{- include "herald.secretPaths" (dict "map" $value "path" $path "found" $.found) }}
{{- else if and (not (kindIs "invalid" $value)) (regexMatch "(?i)(password|secret|api_key|auth_token|jaas|ssl\\.key\\.pem)" $key) }}
{{- $_ := set $.found "paths" (append $.found.paths $path) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails the render on values Herald would refuse or that would break it in a cluster. */}}
{{- define "herald.validate" -}}
{{- $config := .Values.config | default dict }}
{{- if not (kindIs "map" $config) }}
{{- fail "config must be a map of Herald's configuration sections" }}
{{- end }}
{{- $sections := list "kafka" "registry" "store" "telemetry" "admin" "router" "api" "unsubscribe" "tracking" "deliver" }}
{{- range $section, $body := $config }}
{{- if not (has $section $sections) }}
{{- fail (printf "config.%s is not a Herald configuration section (allowed: %s); Herald refuses unknown keys" $section (join ", " $sections)) }}
{{- end }}
{{- if not (or (kindIs "invalid" $body) (kindIs "map" $body)) }}
{{- fail (printf "config.%s must be a map" $section) }}
{{- end }}
{{- end }}
{{- $found := dict "paths" list }}
{{- include "herald.secretPaths" (dict "map" $config "path" "config" "found" $found) }}
{{- if $found.paths }}
{{- $hint := "set them from a Secret with env/envFrom as HERALD_<SECTION>__<KEY> (e.g. HERALD_STORE__PASSWORD), or mount them as files" }}
{{- range $found.paths }}
{{- if hasPrefix "config.kafka.properties." . }}
{{- $hint = printf "%s; librdkafka properties (dotted names) go in one variable holding a dict, e.g. HERALD_KAFKA__PROPERTIES={\"sasl.username\"=\"herald\",\"sasl.password\"=\"...\"}, merged over config.kafka.properties" $hint }}
{{- break }}
{{- end }}
{{- end }}
{{- fail (printf "%s: secrets do not belong in the ConfigMap; %s" (join ", " $found.paths) $hint) }}
{{- end }}
{{- $listen := dig "admin" "listen" "" $config | toString }}
{{- if not $listen }}
{{- fail "config.admin.listen must be set (e.g. 0.0.0.0:9464): Herald's default 127.0.0.1:9464 is unreachable for probes and Prometheus" }}
{{- end }}
{{- if or (hasPrefix "127." $listen) (hasPrefix "localhost" $listen) (hasPrefix "[::1]" $listen) }}
{{- fail (printf "config.admin.listen %s is a loopback address: probes and Prometheus cannot reach it; use 0.0.0.0:<port>" $listen) }}
{{- end }}
{{- if lt (int (include "herald.adminPort" .)) 1 }}
{{- fail (printf "config.admin.listen %s has no port" $listen) }}
{{- end }}
{{- if .Values.api.enabled }}
{{- $apiListen := dig "api" "listen" "" $config | toString }}
{{- if or (not $apiListen) (hasPrefix "127." $apiListen) (hasPrefix "localhost" $apiListen) (hasPrefix "[::1]" $apiListen) }}
{{- fail (printf "config.api.listen %q must listen on all interfaces (e.g. 0.0.0.0:8080): Herald's default 127.0.0.1:8080 is unreachable for the Service" $apiListen) }}
{{- end }}
{{- if lt (int (include "herald.apiPort" .)) 1 }}
{{- fail (printf "config.api.listen %s has no port" $apiListen) }}
{{- end }}
{{- if eq (include "herald.apiPort" .) (include "herald.adminPort" .) }}
{{- fail (printf "config.api.listen and config.admin.listen share port %s" (include "herald.apiPort" .)) }}
{{- end }}
{{- end }}
{{- range $role := list "router" "deliver" }}
{{- if not (kindIs "invalid" (dig $role "instance_id" nil $config)) }}
{{- fail (printf "config.%s.instance_id must not be set: every replica would share one Kafka transactional id and fence the others (the default, <pod name>-<pid>, is unique per pod)" $role) }}
{{- end }}
{{- end }}
{{- $channels := list "email" "sms" "push" "webhook" "inapp" }}
{{- range $channel, $_ := .Values.deliver.channels }}
{{- if not (has $channel $channels) }}
{{- fail (printf "deliver.channels.%s is not a Herald channel (channels: %s)" $channel (join ", " $channels)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Roles
*/}}

{{/* Joins env lists in order; a later variable replaces an earlier one of the same name, in
place. Args: dict "lists" (list <env list>...) "out" <dict receiving "value"> */}}
{{- define "herald.mergeEnv" -}}
{{- $byName := dict }}
{{- $order := list }}
{{- range $list := .lists }}
{{- range $var := $list }}
{{- if not (hasKey $byName $var.name) }}
{{- $order = append $order $var.name }}
{{- end }}
{{- $_ := set $byName $var.name $var }}
{{- end }}
{{- end }}
{{- $env := list }}
{{- range $name := $order }}
{{- $env = append $env (get $byName $name) }}
{{- end }}
{{- $_ := set .out "value" $env }}
{{- end }}

{{/* Whether a PDB bound is set (null and "" are unset; 0 is set). */}}
{{- define "herald.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") }}true{{ end }}
{{- end }}

{{/*
Every long-running role with its settings resolved (global, then role layer, then the role's
own values), as JSON {"roles": [...]}. Each role has:
  component, args, replicas, terminationGracePeriodSeconds, resources, env, envFrom,
  extraVolumes, extraVolumeMounts, nodeSelector, tolerations, affinity, podAnnotations,
  podLabels, autoscaling, keda, pdb,
  scaler ("keda", "hpa" or ""), minReplicas (the fewest replicas it can run with),
  consumerGroup and lagTopics (for KEDA), httpPort (the API's; empty for the others).
*/}}
{{- define "herald.roles" -}}
{{- $root := . }}
{{- $config := .Values.config | default dict }}
{{- $prefix := dig "kafka" "topic_prefix" "" $config | toString }}
{{- $deliverLayer := omit .Values.deliver "channels" }}
{{- $specs := list }}
{{- $specs = append $specs (dict
      "component" "router"
      "args" (list "router")
      "layer" dict
      "own" .Values.router
      "consumerGroup" (printf "%s%s" $prefix (dig "router" "group_id" "herald-router" $config))
      "lagTopics" (list (printf "%snotifications.requested" $prefix))) }}
{{- if .Values.api.enabled }}
{{- $specs = append $specs (dict
      "component" "api"
      "args" (list "api")
      "layer" dict
      "own" (omit .Values.api "enabled" "service" "ingress")
      "consumerGroup" ""
      "lagTopics" list
      "httpPort" (include "herald.apiPort" .)) }}
{{- end }}
{{- if .Values.track.enabled }}
{{- $specs = append $specs (dict
      "component" "track"
      "args" (list "track")
      "layer" dict
      "own" (omit .Values.track "enabled")
      "consumerGroup" (printf "%sherald-track" $prefix)
      "lagTopics" (list (printf "%snotifications.status" $prefix))) }}
{{- end }}
{{- range $channel, $values := .Values.deliver.channels }}
{{- if $values.enabled }}
{{- $specs = append $specs (dict
      "component" (printf "deliver-%s" $channel)
      "args" (list "deliver" "--channel" $channel)
      "layer" $deliverLayer
      "own" $values
      "consumerGroup" (printf "%s%s-%s" $prefix (dig "deliver" "group_id" "herald-deliver" $config) $channel)
      "lagTopics" (list
        (printf "%snotifications.dispatch.%s" $prefix $channel)
        (printf "%snotifications.dispatch.%s.priority" $prefix $channel))) }}
{{- end }}
{{- end }}
{{- $roles := list }}
{{- range $spec := $specs }}
{{- $own := $spec.own }}
{{- $layer := $spec.layer }}
{{- $global := $root.Values }}
{{- $env := dict }}
{{- include "herald.mergeEnv" (dict "lists" (list ($global.env | default list) ($layer.env | default list) ($own.env | default list)) "out" $env) }}
{{- $autoscaling := $own.autoscaling | default dict }}
{{- $keda := $own.keda | default dict }}
{{- $scaler := "" }}
{{- $minReplicas := $own.replicas | default 1 }}
{{- if and $global.keda.enabled $keda.enabled }}
{{- $scaler = "keda" }}
{{- $minReplicas = $keda.minReplicas }}
{{- else if $autoscaling.enabled }}
{{- $scaler = "hpa" }}
{{- $minReplicas = $autoscaling.minReplicas }}
{{- end }}
{{- $role := dict
      "component" $spec.component
      "args" $spec.args
      "consumerGroup" $spec.consumerGroup
      "lagTopics" $spec.lagTopics
      "httpPort" (get $spec "httpPort")
      "replicas" $own.replicas
      "terminationGracePeriodSeconds" (coalesce $own.terminationGracePeriodSeconds $layer.terminationGracePeriodSeconds 45)
      "resources" (coalesce $own.resources $layer.resources dict)
      "env" $env.value
      "envFrom" (concat ($global.envFrom | default list) ($layer.envFrom | default list) ($own.envFrom | default list))
      "extraVolumes" (concat ($global.extraVolumes | default list) ($layer.extraVolumes | default list) ($own.extraVolumes | default list))
      "extraVolumeMounts" (concat ($global.extraVolumeMounts | default list) ($layer.extraVolumeMounts | default list) ($own.extraVolumeMounts | default list))
      "nodeSelector" (merge (dict) ($own.nodeSelector | default dict) ($layer.nodeSelector | default dict) ($global.nodeSelector | default dict))
      "tolerations" (coalesce $own.tolerations $layer.tolerations $global.tolerations list)
      "affinity" (coalesce $own.affinity $layer.affinity $global.affinity dict)
      "podAnnotations" (merge (dict) ($own.podAnnotations | default dict) ($layer.podAnnotations | default dict) ($global.podAnnotations | default dict))
      "podLabels" (merge (dict) ($own.podLabels | default dict) ($layer.podLabels | default dict) ($global.podLabels | default dict))
      "autoscaling" $autoscaling
      "keda" $keda
      "pdb" ($own.pdb | default dict)
      "scaler" $scaler
      "minReplicas" $minReplicas }}
{{- $roles = append $roles $role }}
{{- end }}
{{- toJson (dict "roles" $roles) }}
{{- end }}

{{/*
Pods and containers
*/}}

{{/* What every Herald container shares: image, security context, environment and mounts.
Args: dict "root" $ "env" <list> "envFrom" <list> "extraVolumeMounts" <list> */}}
{{- define "herald.containerBase" -}}
image: {{ include "herald.image" .root | quote }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
{{- with .env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: config
    mountPath: {{ include "herald.configPath" .root }}
    subPath: herald.toml
    readOnly: true
  - name: tmp
    mountPath: /tmp
{{- with .extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The pod volumes: herald.toml from configMap, a writable /tmp, and the extra volumes.
Args: dict "configMap" <name> "extraVolumes" <list> */}}
{{- define "herald.volumes" -}}
volumes:
  - name: config
    configMap:
      name: {{ .configMap }}
      items:
        - key: herald.toml
          path: herald.toml
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- with .extraVolumes }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scheduling settings. Args: dict "nodeSelector" "tolerations" "affinity" */}}
{{- define "herald.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod-level settings every Herald pod shares. Args: dict "root" $ "serviceAccountName" <name> */}}
{{- define "herald.podCommon" -}}
serviceAccountName: {{ .serviceAccountName }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountServiceAccountToken }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* The pod spec of a long-running role (router, api, deliver-<channel>).
Args: dict "root" $ "role" <role from herald.roles> */}}
{{- define "herald.podSpec" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- include "herald.podCommon" (dict "root" $root "serviceAccountName" (include "herald.serviceAccountName" $root)) }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ int $role.terminationGracePeriodSeconds }}
containers:
  - name: herald
    {{- include "herald.containerBase" (dict "root" $root "env" $role.env "envFrom" $role.envFrom "extraVolumeMounts" $role.extraVolumeMounts) | nindent 4 }}
    args:
      {{- toYaml (concat (list "--config" (include "herald.configPath" $root)) $role.args) | nindent 6 }}
    ports:
      - name: admin
        containerPort: {{ include "herald.adminPort" $root }}
        protocol: TCP
      {{- with $role.httpPort }}
      - name: http
        containerPort: {{ int . }}
        protocol: TCP
      {{- end }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: admin
      {{- toYaml $root.Values.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      {{- toYaml $root.Values.probes.readiness | nindent 6 }}
    {{- with $role.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{ include "herald.volumes" (dict "configMap" (include "herald.fullname" $root) "extraVolumes" $role.extraVolumes) }}
{{- include "herald.scheduling" $role }}
{{- end }}
