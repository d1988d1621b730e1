//! Keeps ARCHITECTURE.md's code map true: the dependency rules it states, checked over
//! `cargo metadata`, so that a new dependency that breaks one fails here rather than in a
//! review.
//!
//! - `policy` does no IO: its normal dependencies are the listed pure crates, and nothing
//!   it pulls in (transitively) is a runtime, a network client or a server;
//! - only `edge` and `bus` use socketioxide (the only crates that know Socket.IO);
//! - only `operator` uses kube (the only crate that knows Kubernetes).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What `policy` may depend on directly.
const POLICY_DEPS: &[&str] =
    &["base64", "form_urlencoded", "hmac", "jsonwebtoken", "serde", "serde_json", "sha2", "thiserror"];

/// Crates that mean IO: runtimes, sockets, HTTP, stores, buses, Kubernetes, Socket.IO.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "hyper",
    "reqwest",
    "axum",
    "tower",
    "fred",
    "async-nats",
    "kube",
    "kube-client",
    "socketioxide",
    "engineioxide",
    "tokio-tungstenite",
];

struct Metadata {
    /// Package id → name.
    names: HashMap<String, String>,
    /// Workspace member names → their direct dependencies' names, with the kind
    /// (`normal`, `dev`, `build`).
    members: HashMap<String, Vec<(String, String)>>,
    /// Package id → ids of its normal (non-dev) dependencies, as resolved.
    normal: HashMap<String, Vec<String>>,
    /// Member name → package id.
    ids: HashMap<String, String>,
}

/// The host's target triple, from `rustc -vV`.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc names its host").trim().to_string()
}

fn metadata() -> Metadata {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    // Only this platform's dependencies: the others' crates need not be downloaded.
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", &host()])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let members: BTreeSet<&str> =
        v["workspace_members"].as_array().expect("members").iter().filter_map(Value::as_str).collect();
    let mut m = Metadata {
        names: HashMap::new(),
        members: HashMap::new(),
        normal: HashMap::new(),
        ids: HashMap::new(),
    };
    for p in v["packages"].as_array().expect("packages") {
        let id = p["id"].as_str().expect("id").to_string();
        let name = p["name"].as_str().expect("name").to_string();
        if members.contains(id.as_str()) {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| {
                    let name = d["name"].as_str().expect("dependency name").to_string();
                    (name, d["kind"].as_str().unwrap_or("normal").to_string())
                })
                .collect();
            m.members.insert(name.clone(), deps);
            m.ids.insert(name.clone(), id.clone());
        }
        m.names.insert(id, name);
    }
    for node in v["resolve"]["nodes"].as_array().expect("resolve") {
        let id = node["id"].as_str().expect("node id").to_string();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| d["dep_kinds"].as_array().is_some_and(|k| k.iter().any(|k| k["kind"].is_null())))
            .filter_map(|d| d["pkg"].as_str().map(str::to_string))
            .collect();
        m.normal.insert(id, deps);
    }
    m
}

/// Every crate `member` pulls in through normal dependencies, transitively.
fn normal_closure(m: &Metadata, member: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![m.ids[member].clone()];
    while let Some(id) = todo.pop() {
        for d in m.normal.get(&id).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen.iter().map(|id| m.names[id].clone()).collect()
}

/// Members that depend on `krate` (any kind of dependency).
fn users_of(m: &Metadata, krate: &str) -> BTreeSet<String> {
    m.members
        .iter()
        .filter(|(_, deps)| deps.iter().any(|(d, _)| d == krate))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn policy_does_no_io() {
    let m = metadata();
    let direct: BTreeSet<&str> =
        m.members["policy"].iter().filter(|(_, kind)| kind == "normal").map(|(d, _)| d.as_str()).collect();
    let extra: Vec<&&str> = direct.iter().filter(|d| !POLICY_DEPS.contains(d)).collect();
    assert!(extra.is_empty(), "policy gained dependencies {extra:?}: it must stay pure (ARCHITECTURE.md)");
    let all = normal_closure(&m, "policy");
    let io: Vec<&String> = all.iter().filter(|c| IO_CRATES.contains(&c.as_str())).collect();
    assert!(io.is_empty(), "policy pulls in IO crates {io:?}");
    // The check itself sees the graph: policy does pull in its JWT library.
    assert!(all.contains("jsonwebtoken"));
}

#[test]
fn only_edge_and_bus_know_socketio() {
    let m = metadata();
    for krate in ["socketioxide", "socketioxide-core", "engineioxide"] {
        let users = users_of(&m, krate);
        let others: Vec<&String> = users.iter().filter(|u| !["edge", "bus"].contains(&u.as_str())).collect();
        assert!(others.is_empty(), "{krate} is used by {others:?}; only edge and bus may know Socket.IO");
    }
    assert!(users_of(&m, "socketioxide").contains("edge"));
}

#[test]
fn only_the_operator_knows_kubernetes() {
    let m = metadata();
    for krate in ["kube", "kube-client", "kube-runtime", "k8s-openapi"] {
        let users = users_of(&m, krate);
        let others: Vec<&String> = users.iter().filter(|u| u.as_str() != "operator").collect();
        assert!(others.is_empty(), "{krate} is used by {others:?}; only the operator may know Kubernetes");
    }
    assert!(users_of(&m, "kube").contains("operator"));
}
