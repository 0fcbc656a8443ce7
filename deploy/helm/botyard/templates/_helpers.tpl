{{/* The CSI driver's name: the StorageClass's provisioner and the CSIDriver object's name. */}}
{{- define "botyard.driverName" -}}csi.botyard.io{{- end -}}

{{- define "botyard.fullname" -}}
{{- printf "%s-csi" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "botyard.labels" -}}
app.kubernetes.io/name: botyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "botyard.selector" -}}
app.kubernetes.io/name: botyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-plugin
{{- end -}}

{{- define "botyard.socketDir" -}}
{{- printf "%s/plugins/%s" .Values.kubeletDir (include "botyard.driverName" .) -}}
{{- end -}}

{{- define "botyard.daemonName" -}}
{{- printf "%s-daemon" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "botyard.daemonSelector" -}}
app.kubernetes.io/name: botyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: daemon
{{- end -}}

{{/* The namespace sessions run in: the daemon's own unless set. */}}
{{- define "botyard.sessionNamespace" -}}
{{- .Values.daemon.sessionNamespace | default .Release.Namespace -}}
{{- end -}}
