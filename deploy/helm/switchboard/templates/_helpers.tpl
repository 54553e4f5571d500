{{/* Names and labels. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.fullname" -}}
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

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: switchboard
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.secretName" -}}
{{- if .Values.secrets.externalSecret.enabled -}}
{{- printf "%s-env" (include "switchboard.fullname" .) -}}
{{- else -}}
{{- required "secrets.existingSecret (or secrets.externalSecret.enabled) is required: secrets never go in values" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The keys a role reads from the Secret: (dict "root" $ "role" "ingress") -> JSON list. */}}
{{- define "switchboard.secretKeys" -}}
{{- $v := .root.Values -}}
{{- $keys := list -}}
{{- range $v.secrets.required }}{{ $keys = append $keys . }}{{ end -}}
{{- if not $v.database.url }}{{ $keys = append $keys "DATABASE_URL" }}{{ end -}}
{{- if eq .role "ingress" }}{{ $keys = append $keys "SLACK_SIGNING_SECRET" }}{{ end -}}
{{- if eq .role "socket" }}{{ $keys = append $keys "SLACK_APP_TOKEN" }}{{ end -}}
{{- toJson (uniq $keys) -}}
{{- end -}}

{{/* Every key any enabled role reads (for the ExternalSecret). */}}
{{- define "switchboard.allSecretKeys" -}}
{{- $keys := list -}}
{{- range $role := list "ingress" "socket" "worker" "scheduler" -}}
{{- if (index $.Values $role).enabled -}}
{{- $keys = concat $keys (include "switchboard.secretKeys" (dict "root" $ "role" $role) | fromJsonArray) -}}
{{- end -}}
{{- end -}}
{{- $keys = concat $keys $.Values.secrets.optional -}}
{{- toJson (uniq $keys) -}}
{{- end -}}

{{/* Environment of a Switchboard container: (dict "root" $ "role" ROLE). */}}
{{- define "switchboard.env" -}}
{{- $v := .root.Values -}}
{{- $secret := include "switchboard.secretName" .root -}}
- name: PORT
  value: {{ $v.ports.http | quote }}
- name: METRICS_PORT
  value: {{ $v.ports.metrics | quote }}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ $v.config.logFormat | quote }}
- name: SWITCHBOARD_LOG_LEVEL
  value: {{ $v.config.logLevel | quote }}
- name: SWITCHBOARD_MODEL
  value: {{ $v.config.model | quote }}
{{- with $v.config.adminUsergroup }}
- name: SWITCHBOARD_ADMIN_USERGROUP
  value: {{ . | quote }}
{{- end }}
{{- with $v.config.httpAllowedHosts }}
- name: SWITCHBOARD_HTTP_ALLOWED_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $v.config.linkDomains }}
- name: SWITCHBOARD_LINK_DOMAINS
  value: {{ join "," . | quote }}
{{- end }}
{{- if $v.skills.configMaps }}
- name: SWITCHBOARD_SKILLS_DIR
  value: {{ include "switchboard.skillDirs" .root | quote }}
{{- end }}
{{- if and (has .role (list "ingress" "socket" "worker")) $v.scheduler.enabled }}
{{- /* The scheduler role fires schedules; nobody else runs a scheduler. */}}
- name: SWITCHBOARD_SCHEDULER
  value: "false"
{{- end }}
{{- if and (has .role (list "ingress" "socket")) $v.worker.enabled }}
{{- /* Receivers only receive when workers run in their own Deployment. */}}
- name: SWITCHBOARD_INPROCESS_WORKERS
  value: "0"
{{- end }}
{{- if eq .role "worker" }}
- name: SWITCHBOARD_WORKER_DRAIN_SECONDS
  value: {{ $v.worker.drainSeconds | quote }}
{{- end }}
{{- if $v.database.url }}
- name: DATABASE_URL
  value: {{ include "switchboard.databaseUrl" . | quote }}
{{- end }}
{{- range include "switchboard.secretKeys" . | fromJsonArray }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- range $v.secrets.optional }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- range $name, $value := $v.config.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "switchboard.skillDirs" -}}
{{- $dirs := list -}}
{{- range .Values.skills.configMaps }}{{ $dirs = append $dirs (printf "/etc/switchboard/skills/%s" .) }}{{ end -}}
{{- join ":" $dirs -}}
{{- end -}}

{{/* Volumes every Switchboard pod mounts: a writable /tmp, skills, the Redis CA. */}}
{{- define "switchboard.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- range .Values.skills.configMaps }}
- name: skills-{{ . }}
  configMap:
    name: {{ . }}
{{- end }}
{{- with .Values.redis.tlsCa }}
{{- if .secretName }}
- name: redis-ca
  secret:
    secretName: {{ .secretName }}
    items: [{key: {{ .key }}, path: ca.pem}]
{{- else if .configMapName }}
- name: redis-ca
  configMap:
    name: {{ .configMapName }}
    items: [{key: {{ .key }}, path: ca.pem}]
{{- end }}
{{- end }}
{{- end -}}

{{- define "switchboard.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- range .Values.skills.configMaps }}
- name: skills-{{ . }}
  mountPath: /etc/switchboard/skills/{{ . }}
  readOnly: true
{{- end }}
{{- if or .Values.redis.tlsCa.secretName .Values.redis.tlsCa.configMapName }}
- name: redis-ca
  mountPath: /etc/switchboard/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The Cloud SQL Auth Proxy. Sidecar mode (native: restartPolicy Always) listens on
loopback; service mode (the worker proxy Deployment) on every address. */}}
{{- define "switchboard.cloudSqlProxy" -}}
{{- $c := .root.Values.cloudSql -}}
- name: cloud-sql-proxy
  image: "{{ $c.image.repository }}:{{ $c.image.tag }}"
  imagePullPolicy: IfNotPresent
  {{- if .sidecar }}
  restartPolicy: Always
  {{- end }}
  args:
    - {{ required "cloudSql.instanceConnectionName is required when cloudSql.enabled" $c.instanceConnectionName | quote }}
    - "--port={{ $c.port }}"
    - "--address={{ ternary "127.0.0.1" "0.0.0.0" .sidecar }}"
    {{- if $c.privateIp }}
    - "--private-ip"
    {{- end }}
    {{- if $c.autoIamAuthn }}
    - "--auto-iam-authn"
    {{- end }}
    - "--structured-logs"
    - "--health-check"
    - "--http-address=0.0.0.0"
    - "--http-port=9801"
    - "--exit-zero-on-sigterm"
  ports:
    {{- if not .sidecar }}
    - name: postgres
      containerPort: {{ $c.port }}
    {{- end }}
    - name: proxy-health
      containerPort: 9801
  startupProbe:
    httpGet: {path: /startup, port: proxy-health}
    periodSeconds: 1
    failureThreshold: 60
  readinessProbe:
    httpGet: {path: /readiness, port: proxy-health}
    periodSeconds: 10
  livenessProbe:
    httpGet: {path: /liveness, port: proxy-health}
    periodSeconds: 20
  resources:
    {{- toYaml (ternary $c.resources $c.workerProxy.resources .sidecar) | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
{{- end -}}

{{/* Does this role's pod carry the proxy sidecar? Workers never (no metadata server). */}}
{{- define "switchboard.hasProxySidecar" -}}
{{- if and .root.Values.cloudSql.enabled (ne .role "worker") -}}true{{- end -}}
{{- end -}}

{{- define "switchboard.workerProxyName" -}}
{{- printf "%s-sqlproxy" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Topology spread over zones and nodes for a role. */}}
{{- define "switchboard.topologySpread" -}}
{{- $t := .root.Values.topologySpread -}}
- maxSkew: {{ $t.zoneMaxSkew }}
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ $t.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "switchboard.selectorLabels" . | nindent 6 }}
- maxSkew: {{ $t.nodeMaxSkew }}
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: {{ $t.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "switchboard.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* DATABASE_URL as a role sees it: workers reach the proxy Deployment, not loopback. */}}
{{- define "switchboard.databaseUrl" -}}
{{- $v := .root.Values -}}
{{- if and $v.cloudSql.enabled (eq .role "worker") -}}
{{- $svc := printf "@%s:" (include "switchboard.workerProxyName" .root) -}}
{{- $v.database.url | replace "@127.0.0.1:" $svc -}}
{{- else -}}
{{- $v.database.url -}}
{{- end -}}
{{- end -}}

{{/* The wait-for-migrations init container. */}}
{{- define "switchboard.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ include "switchboard.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["switchboard", "migrate", "--check", "--wait", {{ .root.Values.migrations.waitSeconds | quote }}]
  env:
    {{- include "switchboard.env" . | nindent 4 }}
  volumeMounts:
    {{- include "switchboard.volumeMounts" .root | nindent 4 }}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
{{- end -}}

{{/* Pod spec settings shared by every pod of the chart. */}}
{{- define "switchboard.podCommon" -}}
serviceAccountName: {{ default (include "switchboard.serviceAccountName" .root) .sa }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with (default .root.Values.nodeSelector .cfg.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default .root.Values.tolerations .cfg.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default .root.Values.affinity .cfg.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
