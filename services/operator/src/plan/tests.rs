//! The reconcile core, case by case.

use std::collections::BTreeMap;

use policy::{KeyMaterial, TenantPolicy};
use serde_json::json;

use super::*;
use crate::crd::{CredentialSourceSpec, RightSpec, SecretKeyRef};

const RSA_PUBLIC: &str = include_str!("../../../policy/fixtures/rsa2048-public.pem");
const NOW: i64 = 1_800_000_000;
const HMAC: &str = "0123456789abcdef0123456789abcdef-hmac";

fn hmac_key(kid: &str, secret: &str) -> TenantKeySpec {
    TenantKeySpec {
        kid: Some(kid.into()),
        alg: Some("HS256".into()),
        secret_ref: Some(SecretKeyRef { name: secret.into(), key: "secret".into() }),
        ..TenantKeySpec::default()
    }
}

fn spec(keys: Vec<TenantKeySpec>) -> TenantSpec {
    TenantSpec { name: Some("Acme".into()), policy: None, keys }
}

fn secrets(entries: &[(&str, &str, &str)]) -> Secrets {
    let mut s = Secrets::new();
    for (name, key, value) in entries {
        s.entry(name.to_string())
            .or_insert_with(|| Some(BTreeMap::new()))
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.as_bytes().to_vec());
    }
    s
}

struct Case {
    spec: TenantSpec,
    secrets: Secrets,
    store: StoreView,
    previous: Vec<Condition>,
    name: &'static str,
    generation: i64,
}

impl Case {
    fn new(spec: TenantSpec) -> Case {
        Case {
            spec,
            secrets: secrets(&[("acme-keys", "secret", HMAC)]),
            store: StoreView::Absent,
            previous: Vec::new(),
            name: "acme",
            generation: 1,
        }
    }

    fn plan(&self) -> Plan {
        plan(Input {
            namespace: "prod",
            name: self.name,
            generation: Some(self.generation),
            spec: &self.spec,
            secrets: &self.secrets,
            store: &self.store,
            previous: &self.previous,
            now: NOW,
        })
    }
}

fn cond<'a>(p: &'a Plan, t: &str) -> &'a Condition {
    p.status.conditions.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("no {t} in {:?}", p.status))
}

fn state_of(p: &Plan, t: &str) -> (String, String) {
    let c = cond(p, t);
    (c.status.clone(), c.reason.clone())
}

fn is(p: &Plan, t: &str, status: &str, reason: &str) {
    assert_eq!(state_of(p, t), (status.to_string(), reason.to_string()), "{t}: {:?}", cond(p, t));
}

/// The store after `p` was carried out on `before` (what the controller does).
fn applied(before: &StoreView, p: &Plan) -> StoreView {
    let (mut tenant, mut keys) = match before {
        StoreView::Present { tenant, keys } => (Some((**tenant).clone()), keys.clone()),
        _ => (None, Vec::new()),
    };
    if let Some(t) = &p.create {
        tenant = Some(t.clone());
    }
    if let Some(t) = &p.update {
        tenant = Some(t.clone());
    }
    keys.retain(|k| !p.remove_keys.contains(&k.kid));
    keys.extend(p.add_keys.iter().cloned());
    StoreView::Present { tenant: Box::new(tenant.expect("a tenant")), keys }
}

#[test]
fn create_writes_the_owned_tenant_and_its_keys() {
    let c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    let p = c.plan();
    let t = p.create.as_ref().expect("created");
    assert_eq!(t.id, "acme");
    assert_eq!(t.name, "Acme");
    assert_eq!(t.policy, TenantPolicy::default());
    assert_eq!(t.managed_by.as_deref(), Some("Tenant prod/acme"));
    assert_eq!(t.created_at, NOW);
    assert_eq!(p.update, None);
    assert!(p.remove_keys.is_empty());
    assert_eq!(p.add_keys.len(), 1);
    assert_eq!(p.add_keys[0].kid, "k1");
    assert_eq!(p.add_keys[0].alg.as_deref(), Some("HS256"));
    assert_eq!(p.add_keys[0].material, KeyMaterial::Hmac { secret: Secret::new(HMAC) });
    assert!(p.ready && p.writes());
    is(&p, READY, "True", "Reconciled");
    is(&p, KEYS_RESOLVED, "True", "Resolved");
    is(&p, STORE_REACHABLE, "True", "Reachable");
    assert_eq!(p.status.observed_generation, Some(1));
    assert!(p.status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    assert!(p.status.conditions.iter().all(|c| c.last_transition_time == "2027-01-15T08:00:00Z"));
    assert_eq!(p.summary(), "created the tenant; added keys k1");
}

#[test]
fn the_name_defaults_to_the_tenant_id() {
    let mut c = Case::new(TenantSpec::default());
    c.secrets = Secrets::new();
    let p = c.plan();
    assert_eq!(p.create.as_ref().expect("created").name, "acme");
    is(&p, KEYS_RESOLVED, "True", "Resolved");
}

#[test]
fn a_reconciled_tenant_needs_no_write() {
    let c0 = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    let first = c0.plan();
    let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    c.store = applied(&c0.store, &first);
    c.previous = first.status.conditions.clone();
    let p = c.plan();
    assert!(!p.writes(), "{p:?}");
    assert!(p.ready);
    assert_eq!(p.status, first.status, "the same status, transition times kept");
    assert_eq!(p.summary(), "no change");
}

#[test]
fn a_policy_change_updates_the_record_and_keeps_created_at() {
    let c0 = Case::new(spec(vec![]));
    let mut before = applied(&c0.store, &c0.plan());
    if let StoreView::Present { tenant, .. } = &mut before {
        tenant.created_at = 7;
    }
    let mut s = spec(vec![]);
    s.policy = Some(TenantPolicySpec {
        max_connections: Some(5),
        allowed_origins: Some(vec!["https://app.example.com".into()]),
        credential_sources: Some(vec![CredentialSourceSpec::Cookie]),
        default_caps: Some(BTreeMap::from([("team:*".to_string(), vec![RightSpec::Subscribe])])),
        ..TenantPolicySpec::default()
    });
    let mut c = Case::new(s.clone());
    c.store = before.clone();
    c.generation = 2;
    let p = c.plan();
    let t = p.update.as_ref().expect("updated");
    assert_eq!(t.policy.max_connections, 5);
    assert_eq!(t.policy.allowed_origins, vec!["https://app.example.com"]);
    assert_eq!(t.policy.credential_sources, vec![policy::CredentialSource::Cookie]);
    assert!(t.policy.default_caps.allows("team:a", policy::Right::Subscribe));
    assert_eq!(t.policy.max_message_bytes, 65_536, "unset fields take their defaults");
    assert_eq!(t.created_at, 7);
    assert_eq!(p.create, None);
    assert_eq!(p.status.observed_generation, Some(2));
    assert_eq!(cond(&p, READY).observed_generation, Some(2));

    // A field taken out of the spec goes back to its default: the spec is the whole truth.
    let after = applied(&before, &p);
    let mut c = Case::new(spec(vec![]));
    c.store = after;
    let p = c.plan();
    assert_eq!(p.update.expect("updated").policy, TenantPolicy::default());
}

#[test]
fn a_new_display_name_updates_the_record() {
    let c0 = Case::new(spec(vec![]));
    let mut s = spec(vec![]);
    s.name = Some("Acme Corp".into());
    let mut c = Case::new(s);
    c.store = applied(&c0.store, &c0.plan());
    assert_eq!(c.plan().update.expect("updated").name, "Acme Corp");
}

#[test]
fn a_missing_secret_leaves_keys_unresolved_and_the_rest_is_written() {
    let mut c = Case::new(spec(vec![
        hmac_key("k1", "nope"),
        TenantKeySpec {
            jwks_url: Some("https://issuer.example.com/jwks.json".into()),
            ..TenantKeySpec::default()
        },
    ]));
    let p = c.plan();
    is(&p, KEYS_RESOLVED, "False", "SecretNotFound");
    assert!(cond(&p, KEYS_RESOLVED).message.contains("Secret nope"), "{:?}", cond(&p, KEYS_RESOLVED));
    is(&p, READY, "False", "KeysUnresolved");
    assert!(!p.ready);
    assert!(p.create.is_some(), "the tenant is written all the same");
    let kids: Vec<&str> = p.add_keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids.len(), 1, "only the JWKS key: {kids:?}");
    assert!(kids[0].starts_with("jwks-"));

    // The Secret appears: the key is added, and everything is resolved.
    let before = applied(&c.store, &p);
    c.store = before;
    c.secrets = secrets(&[("nope", "secret", HMAC)]);
    c.previous = p.status.conditions.clone();
    let q = c.plan();
    is(&q, KEYS_RESOLVED, "True", "Resolved");
    is(&q, READY, "True", "Reconciled");
    assert_eq!(q.add_keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), vec!["k1"]);
    assert!(q.remove_keys.is_empty());
    // Flipped conditions carry a new transition time; StoreReachable kept its own.
    assert_eq!(
        cond(&q, STORE_REACHABLE).last_transition_time,
        cond(&p, STORE_REACHABLE).last_transition_time
    );
}

#[test]
fn a_missing_key_in_the_secret_is_its_own_reason() {
    let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    c.secrets = secrets(&[("acme-keys", "other", HMAC)]);
    let p = c.plan();
    is(&p, KEYS_RESOLVED, "False", "SecretKeyNotFound");
    assert!(p.add_keys.is_empty());
}

#[test]
fn a_key_whose_secret_vanished_is_kept_not_removed() {
    let c0 = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    c.store = applied(&c0.store, &c0.plan());
    c.secrets = Secrets::from([("acme-keys".to_string(), None)]);
    let p = c.plan();
    is(&p, KEYS_RESOLVED, "False", "SecretNotFound");
    assert!(p.remove_keys.is_empty() && p.add_keys.is_empty(), "{p:?}");
}

#[test]
fn a_changed_secret_replaces_the_key() {
    let c0 = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    c.store = applied(&c0.store, &c0.plan());
    let rotated = "fedcba9876543210fedcba9876543210-new";
    c.secrets = secrets(&[("acme-keys", "secret", rotated)]);
    let p = c.plan();
    assert_eq!(p.remove_keys, vec!["k1"]);
    assert_eq!(p.add_keys.len(), 1);
    assert_eq!(p.add_keys[0].material, KeyMaterial::Hmac { secret: Secret::new(rotated) });
    assert!(p.ready);
}

#[test]
fn keys_left_out_of_the_spec_are_removed() {
    let c0 = Case::new(spec(vec![hmac_key("k1", "acme-keys"), hmac_key("k2", "acme-keys")]));
    let mut c = Case::new(spec(vec![hmac_key("k2", "acme-keys")]));
    c.store = applied(&c0.store, &c0.plan());
    let p = c.plan();
    assert_eq!(p.remove_keys, vec!["k1"]);
    assert!(p.add_keys.is_empty());
    assert_eq!(p.update, None);
    assert_eq!(p.summary(), "removed keys k1");
}

#[test]
fn public_keys_come_from_secrets_and_are_checked() {
    let pem_key = |alg: &str| TenantKeySpec {
        kid: Some("rsa".into()),
        alg: Some(alg.into()),
        public_key_secret_ref: Some(SecretKeyRef { name: "pub".into(), key: "pem".into() }),
        ..TenantKeySpec::default()
    };
    let mut c = Case::new(spec(vec![pem_key("RS256")]));
    c.secrets = secrets(&[("pub", "pem", RSA_PUBLIC)]);
    let p = c.plan();
    is(&p, KEYS_RESOLVED, "True", "Resolved");
    assert_eq!(p.add_keys[0].material, KeyMaterial::PublicPem { pem: RSA_PUBLIC.into() });

    for bad in ["ES256", "HS256", "XX1"] {
        c.spec = spec(vec![pem_key(bad)]);
        let p = c.plan();
        is(&p, KEYS_RESOLVED, "False", "InvalidKey");
        assert!(p.add_keys.is_empty(), "{bad}");
    }
    c.secrets = secrets(&[("pub", "pem", "not a pem")]);
    c.spec = spec(vec![pem_key("RS256")]);
    is(&c.plan(), KEYS_RESOLVED, "False", "InvalidKey");
}

#[test]
fn jwks_keys_get_a_stable_kid_and_the_url_is_checked() {
    let jwks = |url: &str| TenantKeySpec { jwks_url: Some(url.into()), ..TenantKeySpec::default() };
    let a = kid_of(&jwks("https://a.example/jwks")).expect("kid");
    assert_eq!(a, kid_of(&jwks("https://a.example/jwks")).expect("kid"));
    assert_ne!(a, kid_of(&jwks("https://b.example/jwks")).expect("kid"));
    assert_eq!(a.len(), "jwks-".len() + 12);
    let named = TenantKeySpec { kid: Some("idp".into()), ..jwks("https://a.example/jwks") };
    assert_eq!(kid_of(&named).as_deref(), Some("idp"));

    let mut c = Case::new(spec(vec![jwks("http://issuer.example.com/jwks")]));
    is(&c.plan(), KEYS_RESOLVED, "False", "InvalidKey");
    c.spec = spec(vec![TenantKeySpec { alg: Some("RS256".into()), ..jwks("https://a.example/jwks") }]);
    is(&c.plan(), KEYS_RESOLVED, "False", "InvalidKey");
}

#[test]
fn malformed_key_specs_are_refused() {
    let both = TenantKeySpec { jwks_url: Some("https://a.example/j".into()), ..hmac_key("k1", "acme-keys") };
    let none =
        TenantKeySpec { kid: Some("k1".into()), alg: Some("HS256".into()), ..TenantKeySpec::default() };
    let no_kid = TenantKeySpec { kid: None, ..hmac_key("k1", "acme-keys") };
    let bad_kid = hmac_key("../x", "acme-keys");
    for k in [both, none, no_kid, bad_kid] {
        let c = Case::new(spec(vec![k.clone()]));
        let p = c.plan();
        is(&p, KEYS_RESOLVED, "False", "InvalidKey");
        assert!(p.add_keys.is_empty(), "{k:?}");
    }
    let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    c.secrets = secrets(&[("acme-keys", "secret", "too-short")]);
    is(&c.plan(), KEYS_RESOLVED, "False", "InvalidKey");
    c.secrets = Secrets::from([(
        "acme-keys".to_string(),
        Some(BTreeMap::from([("secret".to_string(), vec![0xff; 40])])),
    )]);
    is(&c.plan(), KEYS_RESOLVED, "False", "InvalidKey");
}

#[test]
fn a_kid_listed_twice_is_refused_once() {
    let c = Case::new(spec(vec![hmac_key("k1", "acme-keys"), hmac_key("k1", "acme-keys")]));
    let p = c.plan();
    is(&p, KEYS_RESOLVED, "False", "DuplicateKid");
    assert_eq!(p.add_keys.len(), 1, "the first one stands");
}

#[test]
fn an_unreachable_store_writes_nothing() {
    let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
    c.store = StoreView::Unreachable("connection refused".into());
    let p = c.plan();
    is(&p, STORE_REACHABLE, "False", "StoreUnavailable");
    is(&p, READY, "False", "StoreUnavailable");
    is(&p, KEYS_RESOLVED, "True", "Resolved");
    assert!(!p.writes() && !p.ready);
}

#[test]
fn a_tenant_owned_by_someone_else_is_left_alone() {
    for owner in [None, Some("Tenant staging/acme".to_string())] {
        let mut c = Case::new(spec(vec![hmac_key("k1", "acme-keys")]));
        let t = Tenant {
            id: "acme".into(),
            name: "theirs".into(),
            policy: TenantPolicy::default(),
            created_at: 1,
            managed_by: owner.clone(),
        };
        c.store = StoreView::Present { tenant: Box::new(t), keys: Vec::new() };
        let p = c.plan();
        is(&p, READY, "False", "NotOwned");
        assert!(!p.writes(), "{owner:?}: {p:?}");
    }
}

#[test]
fn the_resource_name_must_be_a_tenant_id() {
    for name in ["a.b", "x123456789x123456789x123456789x123456789x123456789x123456789xxxx"] {
        let mut c = Case::new(spec(vec![]));
        c.name = name;
        let p = c.plan();
        is(&p, READY, "False", "InvalidTenantId");
        assert!(!p.writes());
    }
}

#[test]
fn an_invalid_policy_is_refused_with_the_admin_api_s_reason() {
    let mut s = spec(vec![]);
    s.policy = Some(TenantPolicySpec { max_connections: Some(0), ..TenantPolicySpec::default() });
    let p = Case::new(s).plan();
    is(&p, READY, "False", "InvalidSpec");
    assert!(cond(&p, READY).message.contains("max_connections"), "{:?}", cond(&p, READY));
    assert!(!p.writes());
    let mut s = spec(vec![]);
    s.name = Some("\u{7}".into());
    is(&Case::new(s).plan(), READY, "False", "InvalidSpec");
}

#[test]
fn a_failed_write_shows_in_the_status() {
    let c = Case::new(spec(vec![]));
    let p = c.plan();
    let e = ServiceError::Store(state::StoreError::Unavailable("down".into()));
    let s = failed_status(&p.status, &p.status.conditions, Some(1), NOW + 60, &e);
    let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).expect("condition").clone();
    assert_eq!((get(READY).status.as_str(), get(READY).reason.as_str()), ("False", "StoreUnavailable"));
    assert_eq!(get(STORE_REACHABLE).status, "False");
    assert_eq!(get(READY).last_transition_time, rfc3339(NOW + 60));
    let e = ServiceError::NotNotified { what: "the tenant".into() };
    let s = failed_status(&p.status, &[], Some(1), NOW, &e);
    assert_eq!(s.conditions.iter().find(|c| c.type_ == STORE_REACHABLE).expect("c").status, "True");
    assert_eq!(reason_of(&e), "BusUnavailable");
}

/// The mirror in the CRD names every field of `policy::TenantPolicy`, and converts back
/// to the same policy: a field added to the policy fails this test until the CRD has it.
#[test]
fn the_policy_mirror_covers_every_policy_field() {
    let full = TenantPolicy {
        cors_allowed_headers: vec!["x-app".into()],
        default_caps: policy::Caps::from_json(&json!({"chat": ["subscribe", "presence"]})).expect("caps"),
        ..TenantPolicy::default()
    };
    let policy_json = serde_json::to_value(&full).expect("json");
    let policy_fields: BTreeSet<String> = policy_json.as_object().expect("object").keys().cloned().collect();
    // Every policy field, camelCased, fills the mirror.
    let camel: serde_json::Map<String, serde_json::Value> = policy_json
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            let mut out = String::new();
            let mut up = false;
            for c in k.chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.push(c.to_ascii_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            (out, v.clone())
        })
        .collect();
    let mirror: TenantPolicySpec = serde_json::from_value(serde_json::Value::Object(camel)).expect("mirror");
    let back = mirror.to_policy_json();
    let mirror_fields: BTreeSet<String> = back.as_object().expect("object").keys().cloned().collect();
    assert_eq!(mirror_fields, policy_fields, "the mirror must name every policy field");
    assert_eq!(TenantPolicy::default().merged(&back).expect("valid"), full);
    // And the CRD schema lists them all.
    let schema = serde_json::to_value(schemars::schema_for!(TenantPolicySpec)).expect("schema");
    assert_eq!(schema["properties"].as_object().expect("properties").len(), policy_fields.len());
}

/// Hook secrets come from Secrets like key material; a missing one holds the tenant back,
/// and a change to that Secret maps to the tenant.
#[test]
fn hook_secrets_are_read_from_secrets() {
    use crate::crd::{SubscribeHookSpec, WebhooksSpec};
    let (w1, w2, h) = ("w".repeat(32), "v".repeat(32), "h".repeat(32));
    let mut s = spec(vec![hmac_key("k1", "acme-keys")]);
    s.policy = Some(TenantPolicySpec {
        webhooks: Some(WebhooksSpec {
            url: "https://hooks.example.com/sb".into(),
            secret_refs: vec![
                SecretKeyRef { name: "acme-hooks".into(), key: "new".into() },
                SecretKeyRef { name: "acme-hooks".into(), key: "old".into() },
            ],
            events: Some(vec!["room.vacated".into()]),
        }),
        subscribe_hook: Some(SubscribeHookSpec {
            url: "https://hooks.example.com/subscribe".into(),
            secret_ref: SecretKeyRef { name: "acme-hooks".into(), key: "hook".into() },
            rooms: vec!["private:*".into()],
            timeout_ms: Some(800),
            cache_seconds: None,
        }),
        ..TenantPolicySpec::default()
    });
    assert!(s.references_secret("acme-hooks") && s.references_secret("acme-keys"));
    let mut c = Case::new(s);
    c.secrets = secrets(&[
        ("acme-keys", "secret", HMAC),
        ("acme-hooks", "new", &w1),
        ("acme-hooks", "old", &w2),
        ("acme-hooks", "hook", &h),
    ]);
    let p = c.plan();
    let t = p.create.as_ref().expect("created");
    let w = t.policy.webhooks.as_ref().expect("webhooks");
    assert_eq!(w.secrets.iter().map(|s| s.expose()).collect::<Vec<_>>(), [w1.as_str(), w2.as_str()]);
    assert_eq!(w.events, ["room.vacated"]);
    let sh = t.policy.subscribe_hook.as_ref().expect("hook");
    assert_eq!((sh.secret.expose(), sh.timeout_ms, sh.cache_seconds), (h.as_str(), 800, 5));
    // Without the Secret: not ready, nothing written.
    c.secrets = secrets(&[("acme-keys", "secret", HMAC)]);
    let p = c.plan();
    assert_eq!(p.create, None);
    assert_eq!(state_of(&p, READY), ("False".into(), "SecretNotFound".into()));
}
