//! How values travel to and from Redis: JSON records, key prefixes (tenant ids escaped into
//! the hash tag), reply shapes, and the mapping of Redis failures to `unavailable`.

use std::time::Duration;

use fred::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::PresenceChange;
use crate::{Result, StoreError};

/// Maps a Redis failure to `unavailable`. Redis error messages carry no values of ours.
pub(super) fn unavailable(e: Error) -> StoreError {
    StoreError::Unavailable(format!("redis {:?}: {}", e.kind(), e.details()))
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("undecodable {what} in redis"))
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|_| StoreError::Unavailable("cannot encode record".into()))
}

pub(super) fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|_| corrupt(what))
}

/// Escapes a tenant id for use inside a key: anything but `[A-Za-z0-9._-]` becomes `%XX`,
/// so no id can close the hash tag or collide with another's prefix.
pub(super) fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key prefix of a tenant: `sb:{t:<tenant>}:`.
pub(super) fn prefix(tenant: &str) -> String {
    format!("sb:{{t:{}}}:", escape(tenant))
}

pub(super) fn is_missing(v: &Value) -> bool {
    matches!(v, Value::Integer(-1))
}

pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn strings(v: Value) -> Result<Vec<String>> {
    match v {
        Value::Array(items) => {
            items.into_iter().map(|i| i.into_string().ok_or_else(|| corrupt("reply"))).collect()
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(corrupt("reply")),
    }
}

/// A flat `[field, value, ...]` reply as pairs.
pub(super) fn pairs(v: Value) -> Result<Vec<(String, String)>> {
    let mut flat = strings(v)?.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        out.push((k, v));
    }
    Ok(out)
}

pub(super) fn records<T: DeserializeOwned>(v: Value, what: &str) -> Result<Vec<T>> {
    strings(v)?.iter().map(|s| from_json(s, what)).collect()
}

pub(super) fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

#[derive(Serialize, serde::Deserialize, PartialEq)]
pub(super) struct IndexEntry {
    pub(super) tenant: String,
    pub(super) id: String,
}

/// `{changed (0/1), members}` as a [`PresenceChange`].
pub(super) fn change(v: Value) -> Result<PresenceChange> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            Ok(PresenceChange { user_changed: int(&items[0]) == 1, members: int(&items[1]).max(0) as u64 })
        }
        _ => Err(corrupt("presence change")),
    }
}
