//! Webhook and subscribe hook settings through the admin API: validated, secrets given
//! once and shown redacted, kept by merge patches that leave them out, rotated.

mod common;

use common::env;
use serde_json::json;
use state::Store;

const S1: &str = "0123456789abcdef0123456789abcdef-one";
const S2: &str = "0123456789abcdef0123456789abcdef-two";

#[tokio::test]
async fn hook_settings_are_checked_redacted_and_kept_by_patches() {
    let e = env();
    let created = e
        .admin(
            "POST",
            "/v1/tenants",
            Some(json!({"id": "acme", "policy": {
                "webhooks": {"url": "https://hooks.example.com/sb", "secrets": [S1]},
                "subscribe_hook": {"url": "https://hooks.example.com/sub", "secret": S2, "rooms": ["private:*"]}
            }})),
        )
        .await;
    let body = created.ok(201);
    assert_eq!(body["policy"]["webhooks"]["secrets"], json!(["<redacted>"]));
    assert_eq!(body["policy"]["subscribe_hook"]["secret"], "<redacted>");
    assert_eq!(body["policy"]["subscribe_hook"]["timeout_ms"], 1500);
    assert!(!body.to_string().contains(S1) && !body.to_string().contains(S2), "no secret in answers");
    let got = e.admin("GET", "/v1/tenants/acme", None).await;
    assert!(!got.ok(200).to_string().contains(S1));

    // A patch of the URL keeps the secrets; a rotation lists two.
    e.admin(
        "PATCH",
        "/v1/tenants/acme",
        Some(json!({"policy": {"webhooks": {"url": "https://new.example.com/sb"}}})),
    )
    .await
    .ok(200);
    let t = e.store.get_tenant("acme").await.expect("store").expect("tenant");
    let w = t.policy.webhooks.expect("webhooks");
    assert_eq!((w.url.as_str(), w.secrets[0].expose()), ("https://new.example.com/sb", S1));
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"webhooks": {"secrets": [S2, S1]}}})))
        .await
        .ok(200);
    let t = e.store.get_tenant("acme").await.expect("store").expect("tenant");
    assert_eq!(t.policy.webhooks.expect("webhooks").secrets.len(), 2);

    // Refused: plain http off loopback, short or three secrets, unknown events, bad patterns.
    for bad in [
        json!({"webhooks": {"url": "http://hooks.example.com/sb"}}),
        json!({"webhooks": {"secrets": ["short"]}}),
        json!({"webhooks": {"secrets": [S1, S2, S1]}}),
        json!({"webhooks": {"events": ["room.exploded"]}}),
        json!({"subscribe_hook": {"rooms": ["a b"]}}),
        json!({"subscribe_hook": {"timeout_ms": 60000}}),
        json!({"webhooks": {"url": "https://hooks.example.com", "colour": "red"}}),
    ] {
        e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": bad})))
            .await
            .problem(400, "invalid_request");
    }
    // null switches a hook off.
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"webhooks": null}}))).await.ok(200);
    let t = e.store.get_tenant("acme").await.expect("store").expect("tenant");
    assert!(t.policy.webhooks.is_none() && t.policy.subscribe_hook.is_some());
}
