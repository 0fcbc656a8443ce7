"""Renders the Helm chart with the Helm SDK (no cluster, no helm binary),
lints it, checks its values schema, and validates every rendered object and
every example manifest strictly against the Kubernetes schemas of the
versions given.

    python scripts/check-manifests.py CHART EXAMPLES_DIR VERSION...

Prints one line per check; exits non-zero on the first failure.
"""
import json, os, subprocess, sys, tempfile

import helm_python as helm
import yaml

chart_dir, examples, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
validator = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def validate(path, what):
    for v in versions:
        r = subprocess.run([validator, "--strict", "--quiet", "-k", v, path], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or "ERROR" in out:
            fail(f"{what} against Kubernetes {v}: {out}")
    print(f"ok: {what} validates strictly against Kubernetes {', '.join(versions)}")


import jsonschema

def strict(schema):
    """An OpenAPI schema that refuses unknown fields, as the API server's
    pruning would drop them (without a word)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


crds = {}
crd_dir = os.path.join(examples, "crds")
for f in sorted(os.listdir(crd_dir)) if os.path.isdir(crd_dir) else []:
    if f.endswith(".yaml"):
        crd = yaml.safe_load(open(os.path.join(crd_dir, f)))
        for v in crd["spec"]["versions"]:
            crds[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]


def custom_error(d):
    """Why `d` does not validate against its vendored CRD, or None."""
    schema = strict(crds[(d["apiVersion"], d["kind"])])
    schema["properties"]["metadata"] = {"type": "object"}
    try:
        jsonschema.validate(d, schema)
    except jsonschema.ValidationError as e:
        return f"{e.message} at {list(e.absolute_path)}"
    return None


def validate_custom(d, what):
    err = custom_error(d)
    if err:
        fail(f"{what} against its CRD: {err}")


report = helm.lint(chart_dir, {"storageClass": {"image": "debian:bookworm"}}, strict=True)
errors = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
if errors:
    fail(f"helm lint: {errors}")
print("ok: helm lint --strict")

chart = helm.Chart.load(chart_dir)
variants = {
    "defaults with an image": {"storageClass": {"image": "debian:bookworm"}},
    "copy driver, default class, node selector": {
        "storageClass": {"image": "debian:bookworm", "driver": "copy", "isDefault": True},
        "liveCommitEvery": "10m",
        "nodeSelector": {"botyard.io/store": "yes"},
        "tolerations": [{"operator": "Exists"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    },
    "no StorageClass": {"storageClass": {"create": False}},
    "the daemon, Jobs, image volume, shared claim": {
        "storageClass": {"image": "debian:bookworm"},
        "daemon": {"enabled": True, "sharedClaim": "agents-shared", "secrets": ["API_KEY"],
                   "secretsFrom": "agent-keys", "limits": {"memory": "1GiB", "cpus": "1.5"}},
    },
    "the daemon, warm pods, init container, no shared claim": {
        "storageClass": {"image": "debian:bookworm"},
        "daemon": {"enabled": True, "mode": "warm", "sideload": "init-container",
                   "agentImage": "registry.example/agent:3", "sessionNamespace": "agents"},
    },
    "a private registry": {
        "storageClass": {"image": "registry.example:5000/tools/debian:12", "registrySecret": "regcred"},
        "registrySecrets": ["regcred"],
    },
}
kinds = set()
for name, values in variants.items():
    chart.validate_schema(values)
    out = chart.render(values, name="botyard", namespace="kube-system", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for d in yaml.safe_load_all(text):
            if d:
                docs.append(d)
                kinds.add(d["kind"])
    # Objects of CRDs (the VolumeSnapshotClass) against their vendored CRD.
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in crds]
    for d in custom:
        validate_custom(d, f"the chart's {d['kind']} with {name}")
    if name == "defaults with an image":
        vsc = [d for d in custom if d["kind"] == "VolumeSnapshotClass"][0]
        if vsc["driver"] != "csi.botyard.io" or vsc["deletionPolicy"] != "Delete":
            fail(f"VolumeSnapshotClass: {vsc}")
        if custom_error(dict(vsc, drivr="x")) is None:
            fail("a VolumeSnapshotClass with an unknown field passed its CRD")
        print("ok: a VolumeSnapshotClass with an unknown field is refused by its CRD")
        ds = [d for d in docs if d["kind"] == "DaemonSet"][0]["spec"]["template"]["spec"]
        snap = [c for c in ds["containers"] if c["name"] == "csi-snapshotter"]
        if not snap or "--node-deployment=true" not in snap[0]["args"]:
            fail(f"the snapshotter sidecar: {snap}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all([d for d in docs if d not in custom], f)
    validate(f.name, f"the chart rendered with {name} ({len(docs)} objects, {len(custom)} of CRDs)")
    os.unlink(f.name)
    if name == "a private registry":
        sc = [d for d in docs if d["kind"] == "StorageClass"][0]
        ds = [d for d in docs if d["kind"] == "DaemonSet"][0]["spec"]["template"]["spec"]
        secrets = [v["secret"]["secretName"] for v in ds["volumes"] if "secret" in v]
        mounts = [m["mountPath"] for m in ds["containers"][0]["volumeMounts"]]
        if sc["parameters"].get("registrySecret") != "regcred" or secrets != ["regcred"] \
                or "/etc/botyard/registry-auth/regcred" not in mounts:
            fail(f"private registry: {sc['parameters']}, {secrets}, {mounts}")
    if name == "copy driver, default class, node selector":
        sc = [d for d in docs if d["kind"] == "StorageClass"][0]
        if sc["parameters"] != {"image": "debian:bookworm", "driver": "copy"} or sc["volumeBindingMode"] != "WaitForFirstConsumer":
            fail(f"StorageClass: {sc}")
        ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
        if ds["spec"]["template"]["spec"]["containers"][0]["args"][-2:] != ["--live-commit-every", "10m"]:
            fail(f"liveCommitEvery: {ds['spec']['template']['spec']['containers'][0]['args']}")
        priv = [c["name"] for c in ds["spec"]["template"]["spec"]["containers"] if c.get("securityContext", {}).get("privileged")]
        if priv != ["botyard"]:
            fail(f"privileged containers: {priv} (only the plugin may be)")
        drv = [d for d in docs if d["kind"] == "CSIDriver"][0]["spec"]
        if drv["attachRequired"] or sorted(drv["volumeLifecycleModes"]) != ["Ephemeral", "Persistent"]:
            fail(f"CSIDriver: {drv}")
    if name.startswith("the daemon"):
        import tomllib
        cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
        cfg = tomllib.loads(cm["data"]["daemon.toml"])
        dump = os.environ.get("BOTYARD_DUMP_DAEMON_CONFIG")
        if dump:
            # For the caller to load with the daemon's own parser.
            with open(os.path.join(dump, f"{len(os.listdir(dump))}.toml"), "w") as f:
                f.write(cm["data"]["daemon.toml"])
        k = cfg["kubernetes"]
        want = values["daemon"]
        if cfg["runtime"] != "kubernetes" or k["mode"] != want.get("mode", "job") \
                or k["sideload"] != want.get("sideload", "image-volume") \
                or k.get("shared_claim") != want.get("sharedClaim") \
                or k["namespace"] != want.get("sessionNamespace", "kube-system"):
            fail(f"daemon config: {cfg}")
        roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole") and "daemon" in d["metadata"]["name"]]
        if [r["kind"] for r in roles] != ["Role"] or roles[0]["metadata"]["namespace"] != k["namespace"]:
            fail(f"the daemon's role must be one namespaced Role: {roles}")
        granted = {(g, r) for rule in roles[0]["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
        if granted != {("", "pods"), ("", "pods/attach"), ("", "pods/log"), ("batch", "jobs"), ("", "persistentvolumeclaims")}:
            fail(f"the daemon's role grants {sorted(granted)}")
        dep = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]
        pod = dep["template"]["spec"]
        c = pod["containers"][0]
        if dep["replicas"] != 1 or dep["strategy"]["type"] != "Recreate" or not pod["securityContext"]["runAsNonRoot"] \
                or c["securityContext"]["capabilities"]["drop"] != ["ALL"] or c["securityContext"]["allowPrivilegeEscalation"]:
            fail(f"daemon Deployment: {dep}")
        if want.get("secretsFrom") and c["envFrom"] != [{"secretRef": {"name": want["secretsFrom"]}}]:
            fail(f"daemon secrets: {c.get('envFrom')}")
        print(f"ok: the daemon's config, Role and Deployment with {name[12:]}")
for k in ["CSIDriver", "DaemonSet", "StorageClass", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "VolumeSnapshotClass",
          "Deployment", "Role", "RoleBinding", "ConfigMap", "Secret", "Service", "PersistentVolumeClaim"]:
    if k not in kinds:
        fail(f"the chart renders no {k}")
print("ok: the chart renders " + ", ".join(sorted(kinds)))

# Values the schema must refuse, each with the key named.
for bad, key in [
    ({"storageClass": {"image": "debian:bookworm", "driver": "zfs"}}, "driver"),
    ({"storageClass": {"image": "no tag here"}}, "image"),
    ({"storageClass": {"create": True}}, "image"),
    ({"storageClass": {"image": "a:b"}, "storePath": "relative"}, "storePath"),
    ({"storageClass": {"image": "a:b"}, "colour": "red"}, "colour"),
    ({"storageClass": {"image": "a:b"}, "daemon": {"mode": "cron"}}, "mode"),
    ({"storageClass": {"image": "a:b"}, "daemon": {"sideload": "sidecar"}}, "sideload"),
    ({"storageClass": {"image": "a:b"}, "daemon": {"sharedClaim": "Not/A/Claim"}}, "sharedClaim"),
    ({"storageClass": {"image": "a:b"}, "daemon": {"deadline": "soon"}}, "deadline"),
]:
    try:
        chart.validate_schema(bad)
    except helm.HelmError as e:
        if key not in str(e):
            fail(f"the schema refused {bad} without naming {key}: {e}")
        continue
    fail(f"the schema accepted {bad}")
print("ok: the values schema refuses bad values, naming the key")

for f in sorted(os.listdir(examples)):
    if not f.endswith(".yaml"):
        continue
    docs = [d for d in yaml.safe_load_all(open(os.path.join(examples, f))) if d]
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in crds]
    if not custom:
        validate(os.path.join(examples, f), f"example {f}")
        continue
    for d in custom:
        validate_custom(d, f"example {f}")
        print(f"ok: example {f} validates strictly against the {d['kind']} CRD ({d['apiVersion']})")
