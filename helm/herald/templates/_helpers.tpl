{{/* Names and labels. */}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

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

{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- end }}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The component whose pods run `role`: itself in split mode, "all" otherwise. */}}
{{- define "herald.componentOf" -}}
{{- if eq .root.Values.mode "all" }}all{{ else }}{{ .role }}{{ end }}
{{- end }}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the secret settings (the environment variable names are its keys). */}}
{{- define "herald.secretName" -}}
{{- default (printf "%s-secrets" (include "herald.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* A nested settings map as HERALD__SECTION__KEY entries (lists joined with commas). */}}
{{- define "herald.flatten" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .value }}
{{- $name := printf "%s__%s" $prefix (upper $key) }}
{{- if kindIs "map" $value }}
{{- include "herald.flatten" (dict "prefix" $name "value" $value) }}
{{- else if kindIs "slice" $value }}
{{ $name }}: {{ join "," $value | quote }}
{{- else }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Seconds a sender pod may take to stop: above shutdown.delay_ms + sender.drain_ms. */}}
{{- define "herald.senderGrace" -}}
{{- if .Values.sender.terminationGracePeriodSeconds }}
{{- .Values.sender.terminationGracePeriodSeconds }}
{{- else }}
{{- $drain := 20000 }}
{{- $delay := 5000 }}
{{- with .Values.settings.sender }}{{ with .drain_ms }}{{ $drain = . }}{{ end }}{{ end }}
{{- with .Values.settings.shutdown }}{{ with .delay_ms }}{{ $delay = . }}{{ end }}{{ end }}
{{- add (div (add (int $drain) (int $delay)) 1000) 10 }}
{{- end }}
{{- end }}

{{/*
A role's Deployment. Arguments: root (the chart's context), role (ingest, sender, webhook,
all), command (the herald subcommand), replicas (omitted when an autoscaler owns them),
resources, ports (name → port), probePort (the port serving /livez and /readyz), grace.
*/}}
{{- define "herald.deployment" -}}
{{- $root := .root }}
{{- $fullname := include "herald.fullname" $root }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ .role }}
  labels:
    {{- include "herald.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "herald.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .role }}
  template:
    metadata:
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "herald.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .role }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "herald.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ .grace }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: herald
          image: {{ include "herald.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .command | quote }}]
          envFrom:
            - configMapRef:
                name: {{ $fullname }}-settings
            - secretRef:
                name: {{ include "herald.secretName" $root }}
          env:
            # A sender's name in consumer groups and leases: unique while it lives.
            - name: HERALD__SENDER__CONSUMER
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: HERALD__INGEST__PORT
              value: {{ $root.Values.ingest.port | quote }}
            - name: HERALD__WEBHOOK__PORT
              value: {{ $root.Values.webhook.port | quote }}
            - name: HERALD__SENDER__METRICS__PORT
              value: {{ $root.Values.sender.metricsPort | quote }}
            - name: HERALD__INGEST__METRICS__PORT
              value: {{ $root.Values.ingest.metricsPort | quote }}
            - name: HERALD__WEBHOOK__METRICS__PORT
              value: {{ $root.Values.webhook.metricsPort | quote }}
          ports:
            {{- range $name, $port := .ports }}
            - name: {{ $name }}
              containerPort: {{ $port }}
              protocol: TCP
            {{- end }}
          livenessProbe:
            httpGet:
              path: /livez
              port: {{ .probePort }}
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ .probePort }}
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* A PodDisruptionBudget for a component. Arguments: root, role, pdb. */}}
{{- define "herald.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "herald.fullname" .root }}-{{ .role }}
  labels:
    {{- include "herald.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "herald.selectorLabels" .root | nindent 6 }}
      app.kubernetes.io/component: {{ .role }}
{{- end }}
{{- end }}

{{/* A CPU HorizontalPodAutoscaler for a Deployment. Arguments: root, role, autoscaling. */}}
{{- define "herald.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "herald.fullname" .root }}-{{ .role }}
  labels:
    {{- include "herald.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "herald.fullname" .root }}-{{ .role }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
{{- end }}

{{/* A Service in front of a role's port. Arguments: root, role, port, portName. */}}
{{- define "herald.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "herald.fullname" .root }}-{{ .role }}
  labels:
    {{- include "herald.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  type: {{ .type }}
  selector:
    {{- include "herald.selectorLabels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ include "herald.componentOf" . }}
  ports:
    - name: {{ .portName }}
      port: {{ .port }}
      targetPort: {{ .portName }}
      protocol: TCP
    {{- with .metricsPort }}
    - name: metrics
      port: {{ . }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- end }}
