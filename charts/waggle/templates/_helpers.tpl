{{- /* The chart's name: nameOverride, else "waggle". */ -}}
{{- define "waggle.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- /* Prefix of every object's name: fullnameOverride, else <release>-<name> (just <release> when it
contains the name). 50 characters leave room for the longest suffix (-operator-agent-identity). */ -}}
{{- define "waggle.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "waggle.name" . -}}
{{- if contains $name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- end -}}

{{- define "waggle.labels" -}}
app.kubernetes.io/name: {{ include "waggle.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* Selector labels of one component: (dict "root" $ "component" "operator"). */ -}}
{{- define "waggle.selector" -}}
app.kubernetes.io/name: {{ include "waggle.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* An image reference: (dict "root" $ "image" .Values.images.operator); the tag defaults to the
chart's appVersion, a digest (sha256:…) pins it. */ -}}
{{- define "waggle.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if .image.digest -}}{{ .image.repository }}@{{ .image.digest }}{{- else -}}{{ .image.repository }}:{{ $tag }}{{- end -}}
{{- end -}}

{{- /* A pod template's metadata: selector labels, then podLabels (never replacing a selector label),
and podAnnotations plus `annotations` given by the template:
(dict "root" $ "component" "operator" "pod" .Values.operator "annotations" (dict …)). */ -}}
{{- define "waggle.podMetadata" -}}
labels: {{- include "waggle.selector" . | nindent 2 }}
{{- with omit (.pod.podLabels | default dict) "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with merge (dict) (.annotations | default dict) (.pod.podAnnotations | default dict) }}
annotations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /* Where a component's pods run and what they pull with: imagePullSecrets (chart-wide),
priorityClassName, nodeSelector, tolerations, and affinity (or `defaultAffinity` when the
component sets none): (dict "root" $ "pod" .Values.operator "defaultAffinity" (dict …)). */ -}}
{{- define "waggle.podPlacement" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.pod.affinity | default .defaultAffinity) }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /* A component's extraEnv, after the chart's own variables: (dict "pod" .Values.operator "key"
"operator" "managed" (list …the names the chart sets…)). A name the chart sets is refused (two
entries of one name are refused by server-side apply and merge badly): its value is the way. */ -}}
{{- define "waggle.extraEnv" -}}
{{- $taken := list -}}
{{- range .pod.extraEnv }}{{ if has .name $.managed }}{{ $taken = append $taken .name }}{{ end }}{{ end -}}
{{- if $taken }}
{{- fail (printf "%s.extraEnv sets %s, which the chart sets itself: use the chart's value for it instead (values.yaml, chart README)" .key (join ", " $taken)) }}
{{- end }}
{{- with .pod.extraEnv }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{- /* Spread a Deployment's replicas over nodes (preferred): (dict "root" $ "component" "operator"). */ -}}
{{- define "waggle.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{- include "waggle.selector" . | nindent 12 }}
{{- end -}}

{{- /*
Node-agent mTLS (docs/adr/0012-per-node-identity.md). The chart templates no certificate and no
key: the operator's leader makes the CA at first start (a Secret in no Helm release), publishes
its certificate in a ConfigMap for the node-agents, and issues the operator's and gateway's
client identities into their Secrets; each node-agent makes its own key and gets its serving
certificate through a CertificateSigningRequest for this release's signer. The names:
*/ -}}
{{- define "waggle.agentCASecret" -}}{{ include "waggle.fullname" . }}-agent-ca-key{{- end -}}
{{- define "waggle.agentCAConfigMap" -}}{{ include "waggle.fullname" . }}-agent-ca{{- end -}}
{{- define "waggle.operatorAgentIdentity" -}}{{ include "waggle.fullname" . }}-operator-agent-identity{{- end -}}
{{- define "waggle.gatewayAgentIdentity" -}}{{ include "waggle.fullname" . }}-gateway-agent-identity{{- end -}}
{{- define "waggle.agentSigner" -}}waggle.dev/{{ .Release.Namespace }}.{{ include "waggle.fullname" . }}-node-agent{{- end -}}
