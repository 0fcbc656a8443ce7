//! The Helm chart and the example manifests, without a cluster: rendered
//! and linted by the real Helm engine (the Helm SDK through
//! `helm-python-sdk`), every object validated strictly against the
//! Kubernetes 1.33 and 1.37 schemas (`kubernetes-validate`), and the values
//! schema made to refuse bad values. The tools live in `.venv-tools`, made
//! by scripts/deps.sh.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_chart_renders_and_every_object_validates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-tools/bin/python");
    if !python.exists() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{} is missing in CI; scripts/deps.sh makes it",
                python.display()
            );
        }
        eprintln!(
            "SKIPPED: {} not found; run scripts/deps.sh",
            python.display()
        );
        return;
    }
    let dump = tempfile::tempdir().unwrap();
    let o = Command::new(&python)
        .env("BOTYARD_DUMP_DAEMON_CONFIG", dump.path())
        .arg(root.join("scripts/check-manifests.py"))
        .arg(root.join("deploy/helm/botyard"))
        .arg(root.join("deploy/examples"))
        .args(["1.33.0", "1.37.0"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "helm lint --strict",
        "the chart renders CSIDriver, ClusterRole, ClusterRoleBinding, ConfigMap, DaemonSet, Deployment, PersistentVolumeClaim, Role, RoleBinding, Secret, Service, ServiceAccount, StorageClass, VolumeSnapshotClass",
        "a VolumeSnapshotClass with an unknown field is refused by its CRD",
        "the daemon's config, Role and Deployment with Jobs",
        "the daemon's config, Role and Deployment with warm pods",
        "refuses bad values",
        "example statefulset.yaml validates strictly",
        "example sandbox.yaml validates strictly against the Sandbox CRD",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // The daemon's config as the chart renders it is one the daemon and
    // its Kubernetes backend take.
    let mut n = 0;
    for f in std::fs::read_dir(dump.path()).unwrap() {
        let f = f.unwrap().path();
        let cfg = daemon::Config::load(Some(&f)).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(cfg.runtime, daemon::Runtime::Kubernetes);
        kube::Settings::from_table(&cfg.kubernetes).unwrap_or_else(|e| panic!("{e:#}"));
        n += 1;
    }
    assert_eq!(n, 2, "both daemon variants were rendered");
}
