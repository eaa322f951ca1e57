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
The node-agent mTLS material as YAML (base64 values): ca, server, operator, gateway, each with
crt and key. Kept from the Secrets of a previous release when they exist (new client
certificates are signed with the kept CA), generated otherwise. Computed once per render and
memoized, so every template (Secrets, checksum annotations) sees the same CA.
*/ -}}
{{- define "waggle.agentTLS" -}}
{{- if not (hasKey .Values "_agentTLS") -}}
{{- $fullname := include "waggle.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $caSecret := lookup "v1" "Secret" $ns (printf "%s-agent-ca" $fullname) -}}
{{- $out := dict -}}
{{- $ca := dict -}}
{{- if and $caSecret $caSecret.data -}}
{{- $ca = buildCustomCert (index $caSecret.data "ca.crt") (index $caSecret.data "ca.key") -}}
{{- $_ := set $out "ca" (dict "crt" (index $caSecret.data "ca.crt") "key" (index $caSecret.data "ca.key")) -}}
{{- else -}}
{{- $ca = genCA (printf "%s-node-agent-ca" $fullname) 3650 -}}
{{- $_ := set $out "ca" (dict "crt" ($ca.Cert | b64enc) "key" ($ca.Key | b64enc)) -}}
{{- end -}}
{{- range $role, $spec := dict "server" (list "node-agent" "waggle-node-agent") "operator" (list "operator-agent-client" "waggle-operator") "gateway" (list "gateway-agent-client" "waggle-gateway") -}}
{{- $existing := dict -}}
{{- if and $caSecret $caSecret.data -}}
{{- $existing = lookup "v1" "Secret" $ns (printf "%s-%s-tls" $fullname (index $spec 0)) -}}
{{- end -}}
{{- if and $existing $existing.data -}}
{{- $_ := set $out $role (dict "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key")) -}}
{{- else -}}
{{- $cn := index $spec 1 -}}
{{- $cert := dict -}}
{{- if eq $role "server" -}}
{{- $cert = genSignedCert $cn nil (list $cn) 3650 $ca -}}
{{- else -}}
{{- $cert = genSignedCert $cn nil nil 3650 $ca -}}
{{- end -}}
{{- $_ := set $out $role (dict "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "_agentTLS" $out -}}
{{- end -}}
{{- toYaml (get .Values "_agentTLS") -}}
{{- end -}}

{{- /* Pod annotation that rolls a workload when the node-agent CA changes. */ -}}
{{- define "waggle.agentTLSChecksum" -}}
{{- if .Values.nodeAgent.tls.enabled -}}
checksum/agent-ca: {{ (include "waggle.agentTLS" . | fromYaml).ca.crt | sha256sum | trunc 16 }}
{{- end -}}
{{- end -}}
