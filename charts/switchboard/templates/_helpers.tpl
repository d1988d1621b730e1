{{/* The chart name. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The resource name prefix. Kept to 40 characters so that "<prefix>-operator" and the
names Kubernetes derives from it stay within their limits.
*/}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every resource carries. */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end -}}

{{/* Selector labels of one component: include "switchboard.selectorLabels" (list $ "edge") */}}
{{- define "switchboard.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "switchboard.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of one component: include "switchboard.componentLabels" (list $ "edge") */}}
{{- define "switchboard.componentLabels" -}}
{{ include "switchboard.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "switchboard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "switchboard.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "switchboard.fullname" .)) .Values.adminToken.existingSecret -}}
{{- end -}}

{{/* terminationGracePeriodSeconds of an edge: preStop sleep + drain + margin. */}}
{{- define "switchboard.edgeGracePeriod" -}}
{{- add (int .Values.edge.preStopSleepSeconds) (int .Values.edge.drainSeconds) (int .Values.edge.terminationMarginSeconds) -}}
{{- end -}}

{{/* Fails rendering unless Redis and NATS are configured. */}}
{{- define "switchboard.validate" -}}
{{- if not (or .Values.redis.url .Values.redis.existingSecret) -}}
{{- fail "redis.url (or redis.existingSecret) is required: Switchboard keeps tenants, sessions and tickets in Redis 7+, e.g. --set redis.url=redis://redis-master:6379" -}}
{{- end -}}
{{- if not .Values.nats.url -}}
{{- fail "nats.url is required: edges fan messages out over NATS, e.g. --set nats.url=nats://nats:4222 (a plain NATS server, JetStream off, works)" -}}
{{- end -}}
{{- if and .Values.redis.url (not (regexMatch "^redis(-cluster)?://" .Values.redis.url)) -}}
{{- fail "redis.url must start with redis:// or redis-cluster://" -}}
{{- end -}}
{{- if and .Values.redis.passwordSecret.name (regexMatch "^redis(-cluster)?://[^/?#]*@" .Values.redis.url) -}}
{{- fail "redis.url must not hold a password when redis.passwordSecret is set" -}}
{{- end -}}
{{- if and .Values.redis.passwordSecret.name (not .Values.redis.url) -}}
{{- fail "redis.passwordSecret needs redis.url (the URL it is inserted into)" -}}
{{- end -}}
{{- if not (regexMatch "^(nats|tls)://" .Values.nats.url) -}}
{{- fail "nats.url must start with nats:// or tls://" -}}
{{- end -}}
{{- if and .Values.nats.user (not (and .Values.nats.existingSecret .Values.nats.passwordKey)) -}}
{{- fail "nats.user needs a password: nats.existingSecret and nats.passwordKey" -}}
{{- end -}}
{{- end -}}

{{/*
Environment every Switchboard role shares: logs, the store, the bus and their credentials.
Secrets only ever come through secretKeyRef.
*/}}
{{- define "switchboard.commonEnv" -}}
- name: SWITCHBOARD_LOG
  value: {{ .Values.log.level | quote }}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: SWITCHBOARD_STATE_LIVENESS_SECONDS
  value: {{ .Values.stateLivenessSeconds | quote }}
{{- if .Values.redis.existingSecret }}
- name: SWITCHBOARD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | quote }}
      key: {{ .Values.redis.existingSecretKey | quote }}
{{- else if .Values.redis.passwordSecret.name }}
- name: SWITCHBOARD_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.passwordSecret.name | quote }}
      key: {{ .Values.redis.passwordSecret.key | quote }}
{{- $scheme := regexFind "^redis(-cluster)?://" .Values.redis.url }}
- name: SWITCHBOARD_REDIS_URL
  value: {{ printf "%s:$(SWITCHBOARD_REDIS_PASSWORD)@%s" $scheme (trimPrefix $scheme .Values.redis.url) | quote }}
{{- else }}
- name: SWITCHBOARD_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
- name: SWITCHBOARD_NATS_URL
  value: {{ .Values.nats.url | quote }}
{{- if .Values.nats.user }}
- name: SWITCHBOARD_NATS_USER
  value: {{ .Values.nats.user | quote }}
{{- end }}
{{- with .Values.nats.existingSecret }}
{{- if $.Values.nats.passwordKey }}
- name: SWITCHBOARD_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.nats.passwordKey | quote }}
{{- end }}
{{- if $.Values.nats.tokenKey }}
- name: SWITCHBOARD_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.nats.tokenKey | quote }}
{{- end }}
{{- if $.Values.nats.nkeySeedKey }}
- name: SWITCHBOARD_NATS_NKEY_SEED
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.nats.nkeySeedKey | quote }}
{{- end }}
{{- end }}
{{- if .Values.nats.tls.required }}
- name: SWITCHBOARD_NATS_TLS_REQUIRED
  value: "true"
{{- end }}
{{- if .Values.nats.tls.caSecret }}
- name: SWITCHBOARD_NATS_CA_FILE
  value: /etc/switchboard/nats-ca/{{ .Values.nats.tls.caKey }}
{{- end }}
- name: SWITCHBOARD_HISTORY_SECONDS
  value: {{ .Values.nats.history.seconds | quote }}
- name: SWITCHBOARD_HISTORY_MAX_PER_ROOM
  value: {{ .Values.nats.history.maxPerRoom | quote }}
{{- if .Values.nats.history.inMemory }}
- name: SWITCHBOARD_HISTORY_IN_MEMORY
  value: "true"
{{- end }}
{{- with .Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every Switchboard pod mounts: a small writable /tmp and the NATS CA. */}}
{{- define "switchboard.volumes" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if .Values.nats.tls.caSecret }}
- name: nats-ca
  secret:
    secretName: {{ .Values.nats.tls.caSecret | quote }}
    items:
      - key: {{ .Values.nats.tls.caKey | quote }}
        path: {{ .Values.nats.tls.caKey | quote }}
{{- end }}
{{- end -}}

{{- define "switchboard.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.nats.tls.caSecret }}
- name: nats-ca
  mountPath: /etc/switchboard/nats-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Scheduling fields of a component's pod spec: include "switchboard.scheduling" .Values.edge */}}
{{- define "switchboard.scheduling" -}}
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
{{- with .priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Egress of edges and admins: DNS, Redis, NATS (and networkPolicy.extraEgress). */}}
{{- define "switchboard.backendEgress" -}}
{{- $np := .Values.networkPolicy -}}
# DNS, in any namespace (kube-dns / CoreDNS / node-local DNS).
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
# Redis and NATS.
- ports:
    {{- range $np.redisPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
    {{- range $np.natsPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.backendPeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with $np.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}
