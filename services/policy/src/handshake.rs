//! Finding the credential of a handshake (SPEC 3.2) and checking its `Origin`.
//!
//! Sources are looked at in the SPEC order — `auth`, `header`, `ticket`, `cookie`,
//! `query` — and the first one that holds a credential **and** is switched on by the
//! tenant's `credential_sources` is used. When no switched-on source holds one, the
//! refusal names the first source that held a credential the policy would not take
//! (`credential_source_disabled`, `query_token_disabled` or, for a cookie from an origin
//! not on an explicit allow-list, `origin_not_allowed`), or `missing_credentials` when
//! there was none at all.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::Refusal;
use crate::tenant::TenantPolicy;
use crate::token::MAX_TOKEN_BYTES;

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    Auth,
    Header,
    Ticket,
    Cookie,
    Query,
}

impl CredentialSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Auth => "auth",
            CredentialSource::Header => "header",
            CredentialSource::Ticket => "ticket",
            CredentialSource::Cookie => "cookie",
            CredentialSource::Query => "query",
        }
    }
}

/// The parts of a handshake that can carry credentials, as the edge received them.
#[derive(Debug, Default, Clone, Copy)]
pub struct HandshakeRequest<'a> {
    /// The Socket.IO CONNECT payload (`auth`).
    pub auth: Option<&'a serde_json::Value>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Cookie` header(s), joined with `; `.
    pub cookie: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The raw query string of the handshake URL.
    pub query: Option<&'a str>,
}

/// The credential a handshake presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    Token { source: CredentialSource, token: Cow<'a, str> },
    Ticket(Cow<'a, str>),
}

/// A string field of the auth payload: absent, null and "" count as absent; any other
/// non-string is a malformed credential.
fn auth_field<'a>(auth: Option<&'a serde_json::Value>, name: &str) -> Result<Option<&'a str>, Refusal> {
    match auth.and_then(|a| a.as_object()).and_then(|o| o.get(name)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(if name == "ticket" { Refusal::TicketInvalid } else { Refusal::InvalidToken }),
    }
}

fn bearer(h: &str) -> Option<&str> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    let q = query?;
    // Bounded: a handshake URL is short; a huge one is not worth parsing.
    if q.len() > 4 * MAX_TOKEN_BYTES {
        return None;
    }
    form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v).filter(|v| !v.is_empty())
}

fn cookie_value<'a>(cookie: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookie?
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Finds the credential to verify; see the module documentation for the order and rules.
pub fn find_credential<'a>(
    policy: &TenantPolicy,
    req: &HandshakeRequest<'a>,
) -> Result<Credential<'a>, Refusal> {
    let mut refused: Option<Refusal> = None;
    let mut note = |r: Refusal| {
        refused.get_or_insert(r);
    };

    if let Some(t) = auth_field(req.auth, "token")? {
        if policy.allows_source(CredentialSource::Auth) {
            return Ok(Credential::Token { source: CredentialSource::Auth, token: Cow::Borrowed(t) });
        }
        note(Refusal::CredentialSourceDisabled);
    }
    if let Some(t) = req.authorization.and_then(bearer) {
        if policy.allows_source(CredentialSource::Header) {
            return Ok(Credential::Token { source: CredentialSource::Header, token: Cow::Borrowed(t) });
        }
        note(Refusal::CredentialSourceDisabled);
    }
    let ticket = match auth_field(req.auth, "ticket")? {
        Some(t) => Some(Cow::Borrowed(t)),
        None => query_param(req.query, "ticket"),
    };
    if let Some(t) = ticket {
        if policy.allows_source(CredentialSource::Ticket) {
            return Ok(Credential::Ticket(t));
        }
        note(Refusal::CredentialSourceDisabled);
    }
    if let Some(t) = cookie_value(req.cookie, &policy.cookie_name) {
        if policy.allows_source(CredentialSource::Cookie) {
            if cookie_origin_ok(policy, req.origin) {
                return Ok(Credential::Token { source: CredentialSource::Cookie, token: Cow::Borrowed(t) });
            }
            note(Refusal::OriginNotAllowed);
        } else {
            note(Refusal::CredentialSourceDisabled);
        }
    }
    if let Some(t) = query_param(req.query, "token") {
        if policy.allows_source(CredentialSource::Query) {
            return Ok(Credential::Token { source: CredentialSource::Query, token: t });
        }
        note(Refusal::QueryTokenDisabled);
    }
    Err(refused.unwrap_or(Refusal::MissingCredentials))
}

/// Whether `origin` matches one allow-list entry: exact (ASCII case-insensitive), or a
/// `scheme://*.domain` entry matching any subdomain of `domain` under that scheme.
fn origin_matches(entry: &str, origin: &str) -> bool {
    if entry.eq_ignore_ascii_case(origin) {
        return true;
    }
    let Some((scheme, host)) = entry.split_once("://*.") else { return false };
    let Some((oscheme, ohost)) = origin.split_once("://") else { return false };
    if !scheme.eq_ignore_ascii_case(oscheme) || ohost.len() <= host.len() + 1 {
        return false;
    }
    let (sub, rest) = ohost.split_at(ohost.len() - host.len());
    rest.eq_ignore_ascii_case(host) && sub.ends_with('.') && !sub.starts_with('.')
}

/// Cookies ride along on every request a browser makes, including cross-site ones, so a
/// cookie is taken only from an Origin the tenant listed explicitly, never under `*`
/// and never without an Origin.
fn cookie_origin_ok(policy: &TenantPolicy, origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    !policy.any_origin() && policy.allowed_origins.iter().any(|e| origin_matches(e, origin))
}

/// Checks the handshake's `Origin` header, when there is one, against `allowed_origins`.
/// A request without `Origin` is not from a browser page and is not checked here.
pub fn check_origin(policy: &TenantPolicy, origin: Option<&str>) -> Result<(), Refusal> {
    match origin {
        None => Ok(()),
        Some(_) if policy.any_origin() => Ok(()),
        Some(o) if policy.allowed_origins.iter().any(|e| origin_matches(e, o)) => Ok(()),
        Some(_) => Err(Refusal::OriginNotAllowed),
    }
}

/// Whether an origin may receive CORS answers with credentials: an explicit match only.
pub fn origin_explicitly_allowed(policy: &TenantPolicy, origin: &str) -> bool {
    policy.allowed_origins.iter().any(|e| e != "*" && origin_matches(e, origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(sources: &[&str], origins: &[&str]) -> TenantPolicy {
        TenantPolicy::default()
            .merged(&json!({"credential_sources": sources, "allowed_origins": origins}))
            .expect("valid policy")
    }

    fn tok(source: CredentialSource, t: &str) -> Result<Credential<'static>, Refusal> {
        Ok(Credential::Token { source, token: Cow::Owned(t.to_string()) })
    }

    #[test]
    fn spec_order_and_switches() {
        let all = policy(&["auth", "header", "ticket", "cookie", "query"], &["https://app.example.com"]);
        let auth = json!({"token": "A", "ticket": "T"});
        let full = HandshakeRequest {
            auth: Some(&auth),
            authorization: Some("Bearer H"),
            cookie: Some("x=1; sb_token=C"),
            origin: Some("https://app.example.com"),
            query: Some("EIO=4&transport=polling&token=Q&ticket=QT"),
        };
        // Each source wins when those before it are absent.
        assert_eq!(find_credential(&all, &full), tok(CredentialSource::Auth, "A"));
        let no_auth = HandshakeRequest { auth: None, ..full };
        assert_eq!(find_credential(&all, &no_auth), tok(CredentialSource::Header, "H"));
        let r = HandshakeRequest { authorization: None, ..no_auth };
        assert_eq!(find_credential(&all, &r), Ok(Credential::Ticket(Cow::Borrowed("QT"))));
        let r = HandshakeRequest { query: Some("token=Q"), ..r };
        assert_eq!(find_credential(&all, &r), tok(CredentialSource::Cookie, "C"));
        let r = HandshakeRequest { cookie: None, ..r };
        assert_eq!(find_credential(&all, &r), tok(CredentialSource::Query, "Q"));
        let r = HandshakeRequest { query: None, ..r };
        assert_eq!(find_credential(&all, &r), Err(Refusal::MissingCredentials));

        // A switched-off source is skipped in favour of the next one that is on.
        let no_auth_src = policy(&["header"], &["*"]);
        assert_eq!(find_credential(&no_auth_src, &full), tok(CredentialSource::Header, "H"));
    }

    #[test]
    fn disabled_sources_are_named() {
        let def = TenantPolicy::default();
        let q = HandshakeRequest { query: Some("token=abc"), ..Default::default() };
        assert_eq!(find_credential(&def, &q), Err(Refusal::QueryTokenDisabled));
        let c = HandshakeRequest {
            cookie: Some("sb_token=abc"),
            origin: Some("https://a.b"),
            ..Default::default()
        };
        assert_eq!(find_credential(&def, &c), Err(Refusal::CredentialSourceDisabled));
        let hdr_only = policy(&["header"], &["*"]);
        let a = json!({"token": "x"});
        let r = HandshakeRequest { auth: Some(&a), ..Default::default() };
        assert_eq!(find_credential(&hdr_only, &r), Err(Refusal::CredentialSourceDisabled));
        let t = json!({"ticket": "x"});
        let r = HandshakeRequest { auth: Some(&t), ..Default::default() };
        assert_eq!(find_credential(&hdr_only, &r), Err(Refusal::CredentialSourceDisabled));
    }

    #[test]
    fn cookies_need_an_explicit_origin() {
        let open = policy(&["cookie"], &["*"]);
        let listed = policy(&["cookie"], &["https://app.example.com", "https://*.corp.example"]);
        let req = |origin| HandshakeRequest { cookie: Some("sb_token=C"), origin, ..Default::default() };
        assert_eq!(
            find_credential(&open, &req(Some("https://app.example.com"))),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(find_credential(&listed, &req(None)), Err(Refusal::OriginNotAllowed));
        assert_eq!(
            find_credential(&listed, &req(Some("https://evil.example"))),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(
            find_credential(&listed, &req(Some("https://app.example.com"))),
            tok(CredentialSource::Cookie, "C")
        );
        assert_eq!(
            find_credential(&listed, &req(Some("https://x.corp.example"))),
            tok(CredentialSource::Cookie, "C")
        );
        // Custom cookie names.
        let named = TenantPolicy::default()
            .merged(&json!({"credential_sources": ["cookie"], "allowed_origins": ["https://a.example"], "cookie_name": "rt"}))
            .expect("valid");
        let r = HandshakeRequest {
            cookie: Some("sb_token=X; rt=\"Y\""),
            origin: Some("https://a.example"),
            ..Default::default()
        };
        assert_eq!(find_credential(&named, &r), tok(CredentialSource::Cookie, "Y"));
    }

    #[test]
    fn malformed_inputs() {
        let def = TenantPolicy::default();
        for (auth, want) in [
            (json!({"token": 5}), Err(Refusal::InvalidToken)),
            (json!({"token": {"a": 1}}), Err(Refusal::InvalidToken)),
            (json!({"ticket": []}), Err(Refusal::TicketInvalid)),
            (json!({"token": ""}), Err(Refusal::MissingCredentials)),
            (json!({"token": null}), Err(Refusal::MissingCredentials)),
            (json!("a string"), Err(Refusal::MissingCredentials)),
            (json!([1, 2]), Err(Refusal::MissingCredentials)),
        ] {
            let r = HandshakeRequest { auth: Some(&auth), ..Default::default() };
            assert_eq!(find_credential(&def, &r), want, "{auth}");
        }
        for h in ["Basic abc", "Bearer", "Bearer   ", "", "bearer"] {
            let r = HandshakeRequest { authorization: Some(h), ..Default::default() };
            assert_eq!(find_credential(&def, &r), Err(Refusal::MissingCredentials), "{h:?}");
        }
        let r = HandshakeRequest { authorization: Some("bEaReR  tok "), ..Default::default() };
        assert_eq!(find_credential(&def, &r), tok(CredentialSource::Header, "tok"));
        let r = HandshakeRequest { query: Some("ticket=a%2Bb&ticket=second"), ..Default::default() };
        assert_eq!(find_credential(&def, &r), Ok(Credential::Ticket(Cow::Borrowed("a+b"))));
        let huge = format!("token={}", "a".repeat(100_000));
        let r = HandshakeRequest { query: Some(&huge), ..Default::default() };
        assert_eq!(find_credential(&def, &r), Err(Refusal::MissingCredentials));
    }

    #[test]
    fn origins() {
        let open = TenantPolicy::default();
        assert_eq!(check_origin(&open, Some("https://anything")), Ok(()));
        assert_eq!(check_origin(&open, None), Ok(()));
        let listed = policy(&["auth"], &["https://app.example.com", "http://*.dev.example"]);
        assert_eq!(check_origin(&listed, None), Ok(()));
        assert_eq!(check_origin(&listed, Some("https://APP.example.com")), Ok(()));
        assert_eq!(check_origin(&listed, Some("http://a.dev.example")), Ok(()));
        assert_eq!(check_origin(&listed, Some("http://a.b.dev.example")), Ok(()));
        for bad in [
            "https://app.example.com.evil",
            "http://app.example.com",
            "https://dev.example",
            "http://dev.example",
            "http://.dev.example",
            "http://evil-dev.example",
            "https://a.dev.example",
            "null",
            "",
        ] {
            assert_eq!(check_origin(&listed, Some(bad)), Err(Refusal::OriginNotAllowed), "{bad}");
        }
        assert!(origin_explicitly_allowed(&listed, "https://app.example.com"));
        assert!(!origin_explicitly_allowed(&open, "https://app.example.com"));
    }
}
