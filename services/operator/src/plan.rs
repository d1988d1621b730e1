//! The reconcile core, with no Kubernetes or store IO: given a `Tenant`'s spec, the
//! Secrets its keys reference, and what the store holds, decide what to write (the tenant
//! record, keys to remove and add) and what status to report.
//!
//! Validation is the admin API's own ([`admin::service`]'s `prepare_*`), so a spec is
//! refused for exactly the reasons a request would be.

use std::collections::{BTreeMap, BTreeSet};

use admin::service::{self, KeyRequest, NewTenant, ServiceError};
use policy::{KeyRecord, Secret};
use state::{Tenant, hash_secret};

use crate::crd::{Condition, TenantKeySpec, TenantPolicySpec, TenantSpec, TenantStatus};

/// Condition types.
pub const READY: &str = "Ready";
pub const KEYS_RESOLVED: &str = "KeysResolved";
pub const STORE_REACHABLE: &str = "StoreReachable";

/// The `managed_by` mark of the tenant a `Tenant` resource owns.
pub fn owner_of(namespace: &str, name: &str) -> String {
    format!("Tenant {namespace}/{name}")
}

/// The data of the Secrets the keys reference, by Secret name; `None`: no such Secret.
pub type Secrets = BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>;

/// What the store holds for the tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreView {
    /// The store could not be read.
    Unreachable(String),
    /// No such tenant.
    Absent,
    /// The tenant and its keys.
    Present { tenant: Box<Tenant>, keys: Vec<KeyRecord> },
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub namespace: &'a str,
    /// The resource's name: the tenant id.
    pub name: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a TenantSpec,
    pub secrets: &'a Secrets,
    pub store: &'a StoreView,
    /// The conditions the resource has now (their transition times are kept when their
    /// status does not change).
    pub previous: &'a [Condition],
    /// Unix seconds.
    pub now: i64,
}

/// What to write, and the status to report once it is written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// A tenant to create.
    pub create: Option<Tenant>,
    /// The tenant's new record (it exists and differs).
    pub update: Option<Tenant>,
    /// Kids to delete, before the adds (a changed key is deleted and added again).
    pub remove_keys: Vec<String>,
    pub add_keys: Vec<KeyRecord>,
    pub status: TenantStatus,
    /// Whether the tenant is as the spec says once the writes are done.
    pub ready: bool,
}

impl Plan {
    /// Whether the plan writes anything.
    pub fn writes(&self) -> bool {
        self.create.is_some()
            || self.update.is_some()
            || !self.remove_keys.is_empty()
            || !self.add_keys.is_empty()
    }

    /// A one-line account of the writes, for events and logs.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.create.is_some() {
            parts.push("created the tenant".to_string());
        }
        if self.update.is_some() {
            parts.push("updated the tenant".to_string());
        }
        if !self.remove_keys.is_empty() {
            parts.push(format!("removed keys {}", self.remove_keys.join(", ")));
        }
        if !self.add_keys.is_empty() {
            let kids: Vec<&str> = self.add_keys.iter().map(|k| k.kid.as_str()).collect();
            parts.push(format!("added keys {}", kids.join(", ")));
        }
        if parts.is_empty() { "no change".to_string() } else { parts.join("; ") }
    }

    /// The `Ready` condition.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.conditions.iter().find(|c| c.type_ == READY)
    }
}

/// RFC 3339 of unix seconds.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Sets condition `type_` in `conds`, keeping its transition time when its status is
/// unchanged.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    previous: &[Condition],
    generation: Option<i64>,
    now: i64,
    (type_, status, reason, message): (&str, &str, &str, String),
) {
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| rfc3339(now));
    let c = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: since,
        observed_generation: generation,
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(old) => *old = c,
        None => conds.push(c),
    }
}

/// The status after a failed write: `Ready` False with `reason`, and `StoreReachable`
/// False too when the store failed.
pub fn failed_status(
    planned: &TenantStatus,
    previous: &[Condition],
    generation: Option<i64>,
    now: i64,
    e: &ServiceError,
) -> TenantStatus {
    let mut s = planned.clone();
    let reason = reason_of(e);
    if matches!(e, ServiceError::Store(_)) {
        set_condition(
            &mut s.conditions,
            previous,
            generation,
            now,
            (STORE_REACHABLE, "False", reason, e.to_string()),
        );
    }
    set_condition(&mut s.conditions, previous, generation, now, (READY, "False", reason, e.to_string()));
    s
}

/// The condition reason a write failure shows as.
pub fn reason_of(e: &ServiceError) -> &'static str {
    match e {
        ServiceError::Store(_) => "StoreUnavailable",
        ServiceError::NotNotified { .. } => "BusUnavailable",
        ServiceError::Managed { .. } | ServiceError::NotManaged { .. } => "NotOwned",
        ServiceError::Conflict(_) => "Conflict",
        ServiceError::NotFound(_) => "NotFound",
        ServiceError::Invalid(_) | ServiceError::InvalidKey(_) => "InvalidSpec",
    }
}

impl TenantPolicySpec {
    /// The policy fields this spec sets, as the admin API's JSON (snake_case) object.
    pub fn to_policy_json(&self) -> serde_json::Value {
        let v = serde_json::to_value(self).unwrap_or_default();
        let mut out = serde_json::Map::new();
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                out.insert(snake_case(&k), v);
            }
        }
        serde_json::Value::Object(out)
    }
}

impl TenantPolicySpec {
    /// [`TenantPolicySpec::to_policy_json`] with the hooks' secrets read from `secrets`.
    pub fn resolved_policy_json(&self, secrets: &Secrets) -> Result<serde_json::Value, KeyProblem> {
        let mut v = self.to_policy_json();
        if let Some(w) = &self.webhooks {
            let mut resolved = Vec::new();
            for r in &w.secret_refs {
                resolved.push(secret_value(secrets, r, "webhook secret")?);
            }
            let mut o = serde_json::json!({"url": w.url, "secrets": resolved});
            if let Some(e) = &w.events {
                o["events"] = serde_json::json!(e);
            }
            v["webhooks"] = o;
        }
        if let Some(h) = &self.subscribe_hook {
            let secret = secret_value(secrets, &h.secret_ref, "subscribe hook secret")?;
            let mut o = serde_json::json!({"url": h.url, "secret": secret, "rooms": h.rooms});
            if let Some(t) = h.timeout_ms {
                o["timeout_ms"] = t.into();
            }
            if let Some(c) = h.cache_seconds {
                o["cache_seconds"] = c.into();
            }
            v["subscribe_hook"] = o;
        }
        Ok(v)
    }
}

fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why one key could not be resolved: a condition reason and a message.
type KeyProblem = (&'static str, String);

/// The kid of a key spec: given, or for a JWKS source without one, `jwks-` and the first
/// 12 hex digits of the URL's SHA-256 (stable across reconciles).
pub fn kid_of(k: &TenantKeySpec) -> Option<String> {
    match (&k.kid, &k.jwks_url) {
        (Some(kid), _) => Some(kid.clone()),
        (None, Some(url)) => Some(format!("jwks-{}", &hash_secret(url)[..12])),
        (None, None) => None,
    }
}

fn secret_value(secrets: &Secrets, r: &crate::crd::SecretKeyRef, what: &str) -> Result<String, KeyProblem> {
    let data = match secrets.get(&r.name) {
        Some(Some(d)) => d,
        _ => return Err(("SecretNotFound", format!("Secret {} ({what}) not found", r.name))),
    };
    let Some(bytes) = data.get(&r.key) else {
        return Err(("SecretKeyNotFound", format!("Secret {} has no key {:?} ({what})", r.name, r.key)));
    };
    String::from_utf8(bytes.clone())
        .map_err(|_| ("InvalidKey", format!("Secret {} key {:?} is not UTF-8 ({what})", r.name, r.key)))
}

/// Resolves one key spec into the record the store should hold.
fn resolve(k: &TenantKeySpec, secrets: &Secrets, now: i64) -> Result<KeyRecord, KeyProblem> {
    let sources = usize::from(k.secret_ref.is_some())
        + usize::from(k.public_key_secret_ref.is_some())
        + usize::from(k.jwks_url.is_some());
    let label = k.kid.clone().unwrap_or_else(|| "(no kid)".into());
    if sources != 1 {
        return Err((
            "InvalidKey",
            format!("key {label}: give exactly one of secretRef, publicKeySecretRef and jwksUrl"),
        ));
    }
    let Some(kid) = kid_of(k) else {
        return Err(("InvalidKey", "a key from a Secret needs its kid".into()));
    };
    let mut req = KeyRequest { kid: Some(kid.clone()), alg: k.alg.clone(), ..KeyRequest::default() };
    if let Some(r) = &k.secret_ref {
        req.secret = Some(Secret::new(secret_value(secrets, r, &format!("HMAC secret of key {kid}"))?));
    } else if let Some(r) = &k.public_key_secret_ref {
        req.public_key_pem = Some(secret_value(secrets, r, &format!("public key of key {kid}"))?);
    } else {
        req.jwks_url = k.jwks_url.clone();
    }
    service::prepare_key(req, now).map(|(rec, _)| rec).map_err(|e| ("InvalidKey", format!("key {kid}: {e}")))
}

/// Whether two records hold the same key (creation times aside).
fn same_key(a: &KeyRecord, b: &KeyRecord) -> bool {
    a.kid == b.kid && a.alg == b.alg && a.material == b.material
}

/// Decides.
pub fn plan(input: Input<'_>) -> Plan {
    let Input { namespace, name, generation, spec, secrets, store, previous, now } = input;
    let mut p = Plan {
        status: TenantStatus { conditions: Vec::new(), observed_generation: generation },
        ..Plan::default()
    };
    let set = |p: &mut Plan, c: (&str, &str, &str, String)| {
        set_condition(&mut p.status.conditions, previous, generation, now, c);
    };

    // The keys, resolved from their Secrets and checked like the admin API checks them.
    let mut desired_keys: Vec<KeyRecord> = Vec::new();
    let mut unresolved_kids: BTreeSet<String> = BTreeSet::new();
    let mut problems: Vec<KeyProblem> = Vec::new();
    let mut seen = BTreeSet::new();
    for k in &spec.keys {
        if let Some(kid) = kid_of(k)
            && !seen.insert(kid.clone())
        {
            problems.push(("DuplicateKid", format!("kid {kid} is listed twice")));
            continue;
        }
        match resolve(k, secrets, now) {
            Ok(rec) => desired_keys.push(rec),
            Err(problem) => {
                if let Some(kid) = kid_of(k) {
                    unresolved_kids.insert(kid);
                }
                problems.push(problem);
            }
        }
    }
    match problems.first() {
        None => set(
            &mut p,
            (KEYS_RESOLVED, "True", "Resolved", format!("{} key(s) resolved", desired_keys.len())),
        ),
        Some((reason, _)) => {
            let msg = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            set(&mut p, (KEYS_RESOLVED, "False", reason, msg));
        }
    }
    let keys_ok = problems.is_empty();

    // The store.
    match store {
        StoreView::Unreachable(e) => set(
            &mut p,
            (STORE_REACHABLE, "False", "StoreUnavailable", format!("the state store is unavailable: {e}")),
        ),
        _ => set(&mut p, (STORE_REACHABLE, "True", "Reachable", "the state store answers".into())),
    }

    // The tenant record.
    if !policy::validate_tenant_id(name) {
        set(
            &mut p,
            (
                READY,
                "False",
                "InvalidTenantId",
                format!("metadata.name {name:?}: {}", service::TENANT_ID_RULE),
            ),
        );
        return p;
    }
    let owner = owner_of(namespace, name);
    let policy = match spec.policy.as_ref().map(|p| p.resolved_policy_json(secrets)).transpose() {
        Ok(v) => v,
        Err((reason, msg)) => {
            set(&mut p, (READY, "False", reason, msg));
            return p;
        }
    };
    let new =
        NewTenant { id: name.to_string(), name: spec.name.clone(), policy, managed_by: Some(owner.clone()) };
    let desired = match service::prepare_tenant(new, now) {
        Ok(t) => t,
        Err(e) => {
            set(&mut p, (READY, "False", "InvalidSpec", e.to_string()));
            return p;
        }
    };
    let stored_keys: &[KeyRecord] = match store {
        StoreView::Unreachable(_) => {
            set(
                &mut p,
                (READY, "False", "StoreUnavailable", "the state store is unavailable; retrying".into()),
            );
            return p;
        }
        StoreView::Absent => {
            p.create = Some(desired);
            &[]
        }
        StoreView::Present { tenant, keys } => {
            if let Err(e) = service::check_writer(tenant, Some(&owner)) {
                set(&mut p, (READY, "False", "NotOwned", e.to_string()));
                return p;
            }
            if tenant.name != desired.name || tenant.policy != desired.policy {
                p.update = Some(Tenant { created_at: tenant.created_at, ..desired });
            }
            keys
        }
    };

    // Keys: the spec is the whole list. A key whose Secret cannot be read now is left as
    // it is, so that a Secret being re-created does not cut off its tokens.
    let wanted: BTreeSet<String> = spec.keys.iter().filter_map(kid_of).collect();
    for k in stored_keys {
        let changed = desired_keys.iter().any(|d| d.kid == k.kid && !same_key(d, k));
        if !wanted.contains(&k.kid) || changed {
            p.remove_keys.push(k.kid.clone());
        }
    }
    for d in desired_keys {
        let present = stored_keys.iter().any(|k| same_key(&d, k));
        if !present && !unresolved_kids.contains(&d.kid) {
            p.add_keys.push(d);
        }
    }

    if keys_ok {
        set(&mut p, (READY, "True", "Reconciled", "the tenant is as the spec says".into()));
        p.ready = true;
    } else {
        set(
            &mut p,
            (READY, "False", "KeysUnresolved", "some keys could not be resolved (see KeysResolved)".into()),
        );
    }
    p
}

#[cfg(test)]
mod tests;
