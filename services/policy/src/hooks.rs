//! The tenant's backend in the loop: webhook and subscribe-hook settings, the event model,
//! signatures, retry schedule and the reading of a subscribe hook's answer.
//!
//! Pure like the rest of `policy`: the HTTP calls, queues and timers are `hooks`'s. What is
//! decided here — which rooms ask the hook, what a signature is, how long to back off,
//! what an answer means — is decided once, for every node.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::names::validate_room;
use crate::tenant::PolicyError;
use crate::token::Secret;

/// The webhook events a tenant can ask for.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "room.occupied",
    "room.vacated",
    "presence.member_added",
    "presence.member_removed",
    "connection.opened",
    "connection.closed",
    "session.ended",
];

/// Shortest webhook or subscribe-hook secret, in bytes.
pub const MIN_HOOK_SECRET_BYTES: usize = 32;
/// Longest subscribe-hook timeout.
pub const MAX_SUBSCRIBE_HOOK_TIMEOUT_MS: u64 = 5_000;
/// Longest time a subscribe-hook answer may be cached.
pub const MAX_SUBSCRIBE_HOOK_CACHE_SECONDS: u64 = 60;
/// Most room patterns a subscribe hook may name.
pub const MAX_HOOK_PATTERNS: usize = 64;

fn d_events() -> Vec<String> {
    WEBHOOK_EVENTS[..4].iter().map(|s| s.to_string()).collect()
}
fn d_timeout() -> u64 {
    1_500
}
fn d_cache() -> u64 {
    5
}

/// Where a tenant's webhooks go (`policy.webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…`; `http://` only on loopback hosts.
    pub url: String,
    /// One or two secrets. Every request is signed with each of them, so that a receiver
    /// can move to a new secret while the old one is still listed (rotation).
    pub secrets: Vec<Secret>,
    /// Which events to send; default the four room and presence events.
    #[serde(default = "d_events")]
    pub events: Vec<String>,
}

impl WebhookConfig {
    /// Whether the tenant asked for events named `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.events.iter().any(|e| e == name)
    }
}

/// The tenant's subscribe authorization hook (`policy.subscribe_hook`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeHookConfig {
    /// `https://…`; `http://` only on loopback hosts.
    pub url: String,
    /// Signs the request, like a webhook's.
    pub secret: Secret,
    /// Room patterns (as in caps: `chat`, `team:*`, `*`) whose subscriptions ask the hook.
    pub rooms: Vec<String>,
    /// How long to wait for the answer; a late answer refuses. Default 1500, at most 5000.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// How long an answer is reused for the same user and room; 0 asks every time.
    #[serde(default = "d_cache")]
    pub cache_seconds: u64,
}

impl SubscribeHookConfig {
    /// Whether subscribing to `room` must ask the hook.
    pub fn covers(&self, room: &str) -> bool {
        self.rooms.iter().any(|p| pattern_matches(p, room))
    }
}

/// A room pattern as in caps: exact, a prefix ending in `*`, or `*`.
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

fn valid_pattern(p: &str) -> bool {
    p == "*" || validate_room(p.strip_suffix('*').unwrap_or(p))
}

/// Whether `url` may receive hooks: https, or http to a loopback host (tests, sidecars).
/// No user info (it would be a credential in a config field), at most 2048 bytes.
pub fn hook_url_ok(url: &str) -> bool {
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        }
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return false;
    }
    https || is_loopback(host)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Whether a hook may be sent to `ip` when private networks are off: not loopback,
/// private (RFC 1918, unique local), link-local (cloud metadata lives there), shared
/// (CGNAT), unspecified, broadcast, multicast or documentation space. A tenant names the
/// URL; without this, it could make the edges POST into their own network.
pub fn public_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
                || (o[0] == 198 && (o[1] & 0xFE) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return public_ip(IpAddr::V4(v4));
            }
            let seg = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (seg[0] & 0xFE00) == 0xFC00
                || (seg[0] & 0xFFC0) == 0xFE80
                || (seg[0] == 0x2001 && seg[1] == 0x0DB8))
        }
    }
}

fn check_secret(s: &Secret, what: &str) -> Result<(), PolicyError> {
    if s.expose().len() < MIN_HOOK_SECRET_BYTES || s.expose().len() > 512 {
        return Err(PolicyError::Invalid(format!("{what} secrets are 32-512 bytes")));
    }
    Ok(())
}

/// Checks a webhook configuration.
pub fn validate_webhooks(w: &WebhookConfig) -> Result<(), PolicyError> {
    let bad = |m: &str| Err(PolicyError::Invalid(m.to_string()));
    if !hook_url_ok(&w.url) {
        return bad("webhooks.url must be https (http only on loopback hosts), without user info");
    }
    if w.secrets.is_empty() || w.secrets.len() > 2 {
        return bad("webhooks.secrets holds one or two secrets (two while rotating)");
    }
    for s in &w.secrets {
        check_secret(s, "webhooks")?;
    }
    if w.events.is_empty() || w.events.iter().any(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
        return Err(PolicyError::Invalid(format!(
            "webhooks.events is a non-empty list of {}",
            WEBHOOK_EVENTS.join(", ")
        )));
    }
    Ok(())
}

/// Checks a subscribe hook configuration.
pub fn validate_subscribe_hook(h: &SubscribeHookConfig) -> Result<(), PolicyError> {
    let bad = |m: &str| Err(PolicyError::Invalid(m.to_string()));
    if !hook_url_ok(&h.url) {
        return bad("subscribe_hook.url must be https (http only on loopback hosts), without user info");
    }
    check_secret(&h.secret, "subscribe_hook")?;
    if h.rooms.is_empty() || h.rooms.len() > MAX_HOOK_PATTERNS || !h.rooms.iter().all(|p| valid_pattern(p)) {
        return bad("subscribe_hook.rooms is 1-64 room patterns (a room, a prefix ending in *, or *)");
    }
    if h.timeout_ms == 0 || h.timeout_ms > MAX_SUBSCRIBE_HOOK_TIMEOUT_MS {
        return bad("subscribe_hook.timeout_ms is 1-5000");
    }
    if h.cache_seconds > MAX_SUBSCRIBE_HOOK_CACHE_SECONDS {
        return bad("subscribe_hook.cache_seconds is 0-60");
    }
    Ok(())
}

/// One webhook event. `id` is unique per tenant and stays the same across retries, so a
/// receiver can drop duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    pub id: String,
    /// One of [`WEBHOOK_EVENTS`].
    pub name: String,
    /// When it happened (unix ms, the store's clock).
    pub time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The user (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// `session.ended`: the `session_end` code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The string a signature covers: `v1:<timestamp ms>:<body>`. The timestamp is inside, so
/// a receiver that refuses old timestamps refuses replays.
pub fn signing_input(timestamp_ms: i64, body: &[u8]) -> Vec<u8> {
    let mut v = format!("v1:{timestamp_ms}:").into_bytes();
    v.extend_from_slice(body);
    v
}

/// HMAC-SHA256 of [`signing_input`], lowercase hex.
pub fn sign(secret: &Secret, timestamp_ms: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        unreachable!("hmac accepts every key length")
    };
    mac.update(&signing_input(timestamp_ms, body));
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The signature header's value: `v1=<hex>` for each secret, comma-separated.
pub fn signature_header(secrets: &[Secret], timestamp_ms: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| format!("v1={}", sign(s, timestamp_ms, body))).collect::<Vec<_>>().join(",")
}

/// Whether `header` holds a valid signature of `body` by `secret` (in constant time per
/// candidate). For receivers and tests.
pub fn verify_signature(secret: &Secret, header: &str, timestamp_ms: i64, body: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else { return false };
    mac.update(&signing_input(timestamp_ms, body));
    let want = mac.finalize().into_bytes();
    header.split(',').filter_map(|p| p.trim().strip_prefix("v1=")).any(|hex| {
        let Some(got) = decode_hex(hex) else { return false };
        got.len() == want.len() && got.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// How webhook deliveries are retried: exponential backoff from `base`, capped at `cap`,
/// for at most `max_attempts` tries and `max_total` since the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
    pub max_total: Duration,
}

impl Default for RetrySchedule {
    /// 6 tries over at most 60 s: 0.5, 1, 2, 4, 8 s apart (each with up to 50% jitter).
    fn default() -> Self {
        RetrySchedule {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
            max_attempts: 6,
            max_total: Duration::from_secs(60),
        }
    }
}

impl RetrySchedule {
    /// The wait before try `attempt + 1` after try `attempt` (1-based) failed, `elapsed`
    /// after the first try started; `None` when the batch must be dropped. `jitter` in
    /// [0, 1) (the caller's randomness) adds up to half the wait, so that receivers coming
    /// back are not hit by every sender at once.
    pub fn next_delay(&self, attempt: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = exp.min(self.cap);
        let d = d + d.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        if elapsed + d > self.max_total { None } else { Some(d) }
    }
}

/// What a subscribe hook answered, read from its HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAnswer {
    Allow,
    /// Refused by the tenant, with its reason (at most 200 bytes, control characters
    /// removed): the ack's `forbidden` message.
    Deny(String),
    /// No usable answer (non-2xx, not JSON, no `allow`): refused, fail-closed.
    Invalid(&'static str),
}

/// Longest refusal reason passed on to the client.
pub const MAX_REASON_BYTES: usize = 200;

/// Reads a subscribe hook's answer: a 2xx with `{"allow": true}` allows; `{"allow": false,
/// "reason"?}` refuses with the reason; anything else is [`HookAnswer::Invalid`].
pub fn read_hook_answer(status: u16, body: &[u8]) -> HookAnswer {
    if !(200..300).contains(&status) {
        return HookAnswer::Invalid("the hook answered a non-2xx status");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return HookAnswer::Invalid("the hook answered something that is not JSON");
    };
    match v.get("allow").and_then(serde_json::Value::as_bool) {
        Some(true) => HookAnswer::Allow,
        Some(false) => {
            let raw = v.get("reason").and_then(serde_json::Value::as_str).unwrap_or("refused by the tenant");
            let mut reason: String = raw.chars().filter(|c| !c.is_control()).collect();
            if reason.len() > MAX_REASON_BYTES {
                let mut cut = MAX_REASON_BYTES;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            HookAnswer::Deny(reason)
        }
        None => HookAnswer::Invalid("the hook's answer has no boolean allow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(c: char) -> Secret {
        Secret::new(std::iter::repeat_n(c, 32).collect::<String>())
    }

    #[test]
    fn urls() {
        assert!(hook_url_ok("https://hooks.example.com/sb"));
        assert!(hook_url_ok("http://127.0.0.1:8080/x"));
        assert!(hook_url_ok("http://localhost/x"));
        assert!(hook_url_ok("http://[::1]:9/x"));
        assert!(!hook_url_ok("http://example.com/x"));
        assert!(!hook_url_ok("http://127.0.0.1.example.com/x"));
        assert!(!hook_url_ok("https://user:pw@example.com/x"));
        assert!(!hook_url_ok("ftp://example.com/x"));
        assert!(!hook_url_ok("https://"));
    }

    #[test]
    fn public_ips() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!public_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public_ip(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn signatures_cover_timestamp_and_body_and_list_every_secret() {
        let (a, b) = (secret('a'), secret('b'));
        let h = signature_header(&[a.clone(), b.clone()], 1000, b"{}");
        assert_eq!(h.matches("v1=").count(), 2);
        assert!(verify_signature(&a, &h, 1000, b"{}"));
        assert!(verify_signature(&b, &h, 1000, b"{}"));
        assert!(!verify_signature(&secret('c'), &h, 1000, b"{}"));
        assert!(!verify_signature(&a, &h, 1001, b"{}"));
        assert!(!verify_signature(&a, &h, 1000, b"{ }"));
        // A known vector, so receivers in other languages can check theirs.
        let s = Secret::new("key");
        assert_eq!(sign(&s, 0, b""), {
            let mut m = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
            m.update(b"v1:0:");
            m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
        });
    }

    #[test]
    fn configs_are_checked() {
        let w = WebhookConfig {
            url: "https://x.example/h".into(),
            secrets: vec![secret('a')],
            events: d_events(),
        };
        assert!(validate_webhooks(&w).is_ok());
        assert!(validate_webhooks(&WebhookConfig { secrets: vec![], ..w.clone() }).is_err());
        assert!(validate_webhooks(&WebhookConfig { secrets: vec![secret('a'); 3], ..w.clone() }).is_err());
        assert!(
            validate_webhooks(&WebhookConfig { secrets: vec![Secret::new("short")], ..w.clone() }).is_err()
        );
        assert!(
            validate_webhooks(&WebhookConfig { events: vec!["room.exploded".into()], ..w.clone() }).is_err()
        );
        let h: SubscribeHookConfig = serde_json::from_value(serde_json::json!({
            "url": "https://x.example/s", "secret": "s".repeat(32), "rooms": ["private:*"]
        }))
        .expect("decodes");
        assert_eq!((h.timeout_ms, h.cache_seconds), (1500, 5));
        assert!(validate_subscribe_hook(&h).is_ok());
        assert!(h.covers("private:1") && !h.covers("public"));
        assert!(validate_subscribe_hook(&SubscribeHookConfig { timeout_ms: 5001, ..h.clone() }).is_err());
        assert!(
            validate_subscribe_hook(&SubscribeHookConfig { rooms: vec!["a b".into()], ..h.clone() }).is_err()
        );
        assert!(format!("{h:?}").contains("redacted") && !format!("{h:?}").contains("sssss"));
    }

    #[test]
    fn backoff_is_bounded() {
        let r = RetrySchedule::default();
        assert_eq!(r.next_delay(1, Duration::ZERO, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(r.next_delay(2, Duration::ZERO, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(r.next_delay(5, Duration::ZERO, 0.0), Some(Duration::from_secs(8)));
        assert_eq!(r.next_delay(6, Duration::ZERO, 0.0), None);
        assert_eq!(r.next_delay(2, Duration::from_millis(59_500), 0.0), None);
        assert_eq!(
            r.next_delay(1, Duration::ZERO, 0.99),
            Some(Duration::from_millis(747) + Duration::from_micros(500))
        );
    }

    #[test]
    fn hook_answers() {
        assert_eq!(read_hook_answer(200, br#"{"allow":true}"#), HookAnswer::Allow);
        assert_eq!(
            read_hook_answer(200, br#"{"allow":false,"reason":"not a member"}"#),
            HookAnswer::Deny("not a member".into())
        );
        assert_eq!(
            read_hook_answer(200, br#"{"allow":false}"#),
            HookAnswer::Deny("refused by the tenant".into())
        );
        assert!(matches!(read_hook_answer(500, br#"{"allow":true}"#), HookAnswer::Invalid(_)));
        assert!(matches!(read_hook_answer(200, b"<html>"), HookAnswer::Invalid(_)));
        assert!(matches!(read_hook_answer(200, br#"{"allow":"yes"}"#), HookAnswer::Invalid(_)));
        let long = format!(r#"{{"allow":false,"reason":"{}\u0007"}}"#, "é".repeat(300));
        let HookAnswer::Deny(r) = read_hook_answer(200, long.as_bytes()) else { panic!("deny") };
        assert!(r.len() <= MAX_REASON_BYTES && !r.contains('\u{7}'));
    }
}
