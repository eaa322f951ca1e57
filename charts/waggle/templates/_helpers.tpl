{{- define "waggle.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "waggle.labels" -}}
app.kubernetes.io/name: waggle
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "waggle.selector" -}}
app.kubernetes.io/name: waggle
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "waggle.image" -}}
{{ .repository }}:{{ .tag }}
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
