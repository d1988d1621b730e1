//! The CRD the chart installs (`charts/switchboard/crds/tenants.switchboard.dev.yaml`) is
//! generated from the Rust types (`switchboard crd`) and checked in. This test fails when
//! the checked-in copy is stale; run it with `UPDATE_CRD=1` to refresh the copy.

use std::path::PathBuf;

#[test]
fn the_chart_s_crd_is_fresh() {
    let generated = operator::crd_yaml();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../charts/switchboard/crds/tenants.switchboard.dev.yaml");
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &generated).expect("write");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "charts/switchboard/crds/tenants.switchboard.dev.yaml is stale: run \
         `UPDATE_CRD=1 cargo test -p operator --test crd_fresh`"
    );
}

/// The generated CRD says what the chart and `kubectl` rely on.
#[test]
fn the_crd_has_the_expected_shape() {
    let crd: serde_json::Value =
        serde_json::to_value(<operator::Tenant as kube::CustomResourceExt>::crd()).expect("json");
    assert_eq!(crd["metadata"]["name"], "tenants.switchboard.dev");
    assert_eq!(crd["spec"]["group"], "switchboard.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], serde_json::json!({}));
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in ["name", "policy", "keys"] {
        assert!(spec.get(field).is_some(), "spec.{field}: {spec}");
    }
    let key = &spec["keys"]["items"]["properties"];
    for field in ["kid", "alg", "secretRef", "publicKeySecretRef", "jwksUrl"] {
        assert!(key.get(field).is_some(), "keys[].{field}: {key}");
    }
    let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert!(status.get("observedGeneration").is_some());
    let cond = &status["conditions"]["items"]["properties"];
    for field in ["type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"] {
        assert!(cond.get(field).is_some(), "conditions[].{field}: {cond}");
    }
    // The YAML form parses back to the same object.
    let yaml = operator::crd_yaml();
    let back: serde_json::Value = serde_saphyr::from_str(&yaml).expect("yaml");
    assert_eq!(back, crd);
}
