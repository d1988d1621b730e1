//! The admin API (SPEC §5) through the router, with a `MemoryStore` and a `LocalBus`
//! whose recording sink shows the control messages every change sends.

mod common;

use axum::body::Body;
use base64::Engine as _;
use bus::{Control, Payload};
use common::{ADMIN, Env, PUBLIC, ROUTES, env, is_rfc3339, sample};
use http::{Request, StatusCode, header};
use policy::{CredentialSource, KeyRing, Refusal, RevocationRule, Right, TenantPolicy, verify_token};
use serde_json::{Value, json};
use state::{ConnRecord, Store};

const RSA_PUBLIC: &str = include_str!("../../policy/fixtures/rsa2048-public.pem");
const RSA_PRIVATE: &str = include_str!("../../policy/fixtures/rsa2048-private.pem");
const P256_PUBLIC: &str = include_str!("../../policy/fixtures/ec-p256-public.pem");
const P256_PRIVATE: &str = include_str!("../../policy/fixtures/ec-p256-private.pem");
const P384_PUBLIC: &str = include_str!("../../policy/fixtures/ec-p384-public.pem");
const ED_PUBLIC: &str = include_str!("../../policy/fixtures/ed25519-public.pem");
const ED_PRIVATE: &str = include_str!("../../policy/fixtures/ed25519-private.pem");

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// The tenant's key ring, built from the stored keys as an edge builds it.
async fn ring(e: &Env, t: &str) -> KeyRing {
    let keys = e.store.list_keys(t).await.expect("keys");
    let (ring, errors) = KeyRing::from_records(&keys);
    assert!(errors.is_empty(), "{errors:?}");
    ring
}

async fn policy_of(e: &Env, t: &str) -> TenantPolicy {
    e.store.get_tenant(t).await.expect("store").expect("tenant").policy
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

// ---------------------------------------------------------------- system routes

#[tokio::test]
async fn health_readiness_and_metrics_need_no_credential() {
    let e = env();
    assert_eq!(e.call("GET", "/healthz", None, None).await.ok(200), "ok");
    assert_eq!(e.call("GET", "/readyz", None, None).await.ok(200), "ready");
    e.admin("GET", "/v1/tenants", None).await.ok(200);
    e.call("GET", "/v1/tenants", None, None).await.problem(401, "unauthorized");
    e.call("GET", "/v1/nope", None, None).await.problem(404, "not_found");
    let m = e.call("GET", "/metrics", None, None).await;
    let text = m.ok(200).as_str().expect("text").to_string();
    for series in [
        r#"switchboard_admin_requests_total{route="/v1/tenants",method="GET",status="200"} 1"#,
        r#"switchboard_admin_requests_total{route="/v1/tenants",method="GET",status="401"} 1"#,
        r#"switchboard_admin_requests_total{route="unmatched",method="GET",status="404"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    assert!(!text.contains(ADMIN), "no credential in metrics");
}

#[tokio::test]
async fn readiness_fails_when_the_store_or_the_bus_is_down() {
    let e = env();
    e.set_store_down(true);
    e.call("GET", "/readyz", None, None).await.problem(503, "unavailable");
    e.set_store_down(false);
    e.set_bus_down(true);
    e.call("GET", "/readyz", None, None).await.problem(503, "unavailable");
    e.set_bus_down(false);
    e.call("GET", "/readyz", None, None).await.ok(200);
}

// ---------------------------------------------------------------- authentication

#[tokio::test]
async fn every_route_needs_a_credential() {
    let e = env();
    e.tenant("acme").await;
    for (method, template) in ROUTES {
        if PUBLIC.contains(template) {
            continue;
        }
        let (path, body) = sample(method, template, "acme");
        for auth in [None, Some("wrong"), Some("sbk_0000"), Some(&format!("{ADMIN}x")[..])] {
            let a = e.call(method, &path, auth, body.clone()).await;
            a.problem(401, "unauthorized");
            assert_eq!(a.headers.get(header::WWW_AUTHENTICATE).expect("challenge"), "Bearer");
        }
        // Not a bearer credential.
        let req = Request::builder()
            .method(*method)
            .uri(&path)
            .header(header::AUTHORIZATION, format!("Basic {ADMIN}"))
            .body(Body::empty())
            .expect("request");
        e.send(req).await.problem(401, "unauthorized");
    }
    assert!(e.take_controls().is_empty(), "nothing happened");
}

#[tokio::test]
async fn the_admin_token_with_surrounding_space_and_any_scheme_case_works() {
    let e = env();
    let req = Request::builder()
        .uri("/v1/tenants")
        .header(header::AUTHORIZATION, format!("bearer   {ADMIN} "))
        .body(Body::empty())
        .expect("request");
    e.send(req).await.ok(200);
}

#[tokio::test]
async fn a_tenant_key_cannot_create_list_or_delete_tenants() {
    let e = env();
    e.tenant("acme").await;
    let key = e.api_key("acme").await;
    e.call("POST", "/v1/tenants", Some(&key), Some(json!({"id": "other"}))).await.problem(403, "forbidden");
    e.call("GET", "/v1/tenants", Some(&key), None).await.problem(403, "forbidden");
    e.call("DELETE", "/v1/tenants/acme", Some(&key), None).await.problem(403, "forbidden");
    assert!(e.store.get_tenant("acme").await.expect("store").is_some());
    assert!(e.store.get_tenant("other").await.expect("store").is_none());
    // Its own tenant's other routes work.
    e.call("GET", "/v1/tenants/acme", Some(&key), None).await.ok(200);
    e.call("PATCH", "/v1/tenants/acme", Some(&key), Some(json!({"name": "Acme"}))).await.ok(200);
    e.call("GET", "/v1/tenants/acme/stats", Some(&key), None).await.ok(200);
}

#[tokio::test]
async fn a_tenant_key_gets_403_on_every_route_of_another_tenant() {
    let e = env();
    e.tenant("alpha").await;
    e.tenant("beta").await;
    let alpha = e.api_key("alpha").await;
    // Give beta something to lose.
    e.admin("POST", "/v1/tenants/beta/keys", Some(json!({"alg": "HS256", "kid": "k1"}))).await.ok(201);
    let before_keys = e.store.list_keys("beta").await.expect("keys");
    let before_api_keys = e.store.list_api_keys("beta").await.expect("api keys");
    e.take_controls();

    let mut tried = 0;
    for (method, template) in ROUTES {
        if !template.contains("{t}") {
            continue;
        }
        // Beta exists, does not exist, and is not even a valid id: always 403.
        for t in ["beta", "nosuch", "..%2Fx", "UPPER"] {
            let (path, body) = sample(method, template, t);
            let a = e.call(method, &path, Some(&alpha), body).await;
            a.problem(403, "forbidden");
            tried += 1;
        }
    }
    assert_eq!(tried, 4 * 20, "every tenant route was tried");
    assert!(e.take_controls().is_empty(), "no control message was sent for beta");
    assert!(e.rec.messages.lock().is_empty(), "nothing was published");
    assert!(e.store.get_tenant("beta").await.expect("store").is_some());
    assert_eq!(e.store.list_keys("beta").await.expect("keys"), before_keys);
    assert_eq!(e.store.list_api_keys("beta").await.expect("api keys"), before_api_keys);
}

#[tokio::test]
async fn a_key_of_a_deleted_tenant_stops_working() {
    let e = env();
    e.tenant("acme").await;
    let key = e.api_key("acme").await;
    e.admin("DELETE", "/v1/tenants/acme", None).await.ok(204);
    e.tenant("acme").await;
    e.call("GET", "/v1/tenants/acme", Some(&key), None).await.problem(401, "unauthorized");
}

// ---------------------------------------------------------------- tenants

#[tokio::test]
async fn tenants_lifecycle() {
    let e = env();
    let a = e.admin("POST", "/v1/tenants", Some(json!({"id": "acme", "name": "Acme Inc."}))).await;
    let t = a.ok(201).clone();
    assert_eq!(t["id"], "acme");
    assert_eq!(t["name"], "Acme Inc.");
    assert!(is_rfc3339(&t["created_at"]), "{t}");
    assert_eq!(t["policy"], serde_json::to_value(TenantPolicy::default()).expect("policy"));
    assert_eq!(t["policy"]["max_connections"], 10_000);

    // The name defaults to the id; a policy may be given.
    let b =
        e.admin("POST", "/v1/tenants", Some(json!({"id": "b-2", "policy": {"max_connections": 5}}))).await;
    let b = b.ok(201);
    assert_eq!(b["name"], "b-2");
    assert_eq!(b["policy"]["max_connections"], 5);
    assert_eq!(b["policy"]["ticket_ttl_seconds"], 30);

    e.admin("POST", "/v1/tenants", Some(json!({"id": "acme"}))).await.problem(409, "conflict");

    let list = e.admin("GET", "/v1/tenants", None).await;
    let ids: Vec<&str> =
        list.ok(200)["tenants"].as_array().expect("array").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, vec!["acme", "b-2"]);

    let got = e.admin("GET", "/v1/tenants/acme", None).await;
    assert_eq!(got.ok(200), &t);

    e.take_controls();
    let p = e
        .admin(
            "PATCH",
            "/v1/tenants/acme",
            Some(json!({"name": "Acme", "policy": {"max_message_bytes": 100, "allowed_origins": ["https://a.example"]}})),
        )
        .await;
    let p = p.ok(200).clone();
    assert_eq!(p["name"], "Acme");
    assert_eq!(p["policy"]["max_message_bytes"], 100);
    assert_eq!(p["policy"]["allowed_origins"], json!(["https://a.example"]));
    assert_eq!(p["policy"]["max_connections"], 10_000, "untouched fields stay");
    assert_eq!(p["created_at"], t["created_at"]);
    assert_eq!(e.take_controls(), vec![Control::TenantChanged { tenant: "acme".into() }]);
    assert_eq!(policy_of(&e, "acme").await.max_message_bytes, 100);

    // null resets a field to its default.
    let p = e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"max_message_bytes": null}}))).await;
    assert_eq!(p.ok(200)["policy"]["max_message_bytes"], 65_536);

    e.admin("DELETE", "/v1/tenants/acme", None).await.ok(204);
    assert_eq!(e.take_controls().last(), Some(&Control::TenantDeleted { tenant: "acme".into() }));
    e.admin("GET", "/v1/tenants/acme", None).await.problem(404, "not_found");
    e.admin("DELETE", "/v1/tenants/acme", None).await.problem(404, "not_found");
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"name": "x"}))).await.problem(404, "not_found");
    assert!(e.take_controls().is_empty());
}

/// A tenant owned by a Kubernetes `Tenant` resource (the operator) answers every admin
/// write to its definition — PATCH, DELETE, key add and delete — with 409
/// `managed_by_operator`, and nothing changes; reads and the other routes still work.
#[tokio::test]
async fn writes_to_an_operator_owned_tenant_are_refused() {
    let e = env();
    let owner = "Tenant default/acme";
    let t = admin::service::prepare_tenant(
        admin::service::NewTenant { id: "acme".into(), managed_by: Some(owner.into()), ..Default::default() },
        now(),
    )
    .expect("valid");
    e.store.create_tenant(t.clone()).await.expect("create");
    let (k, _) = admin::service::prepare_key(
        admin::service::KeyRequest {
            kid: Some("k1".into()),
            alg: Some("HS256".into()),
            secret: Some(policy::Secret::new("s".repeat(32))),
            ..Default::default()
        },
        now(),
    )
    .expect("key");
    e.store.add_key("acme", k.clone()).await.expect("key");
    e.take_controls();

    let refused = [
        e.admin("PATCH", "/v1/tenants/acme", Some(json!({"name": "x"}))).await,
        e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"max_connections": 0}}))).await,
        e.admin("DELETE", "/v1/tenants/acme", None).await,
        e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256"}))).await,
        e.admin("DELETE", "/v1/tenants/acme/keys/k1", None).await,
    ];
    for a in &refused {
        a.problem(409, "managed_by_operator");
        let detail = a.body["detail"].as_str().expect("detail");
        assert!(detail.contains(owner), "{detail}");
    }
    assert!(e.take_controls().is_empty(), "nothing changed, nothing told");
    assert_eq!(e.store.get_tenant("acme").await.expect("store"), Some(t));
    assert_eq!(e.store.list_keys("acme").await.expect("store"), vec![k]);
    // Reads and runtime routes are not definition writes.
    e.admin("GET", "/v1/tenants/acme", None).await.ok(200);
    e.admin("GET", "/v1/tenants/acme/keys", None).await.ok(200);
    e.admin("POST", "/v1/tenants/acme/api-keys", Some(json!({"name": "ci"}))).await.ok(201);
    // A tenant the admin API made stays the admin API's.
    e.tenant("free").await;
    e.admin("PATCH", "/v1/tenants/free", Some(json!({"name": "Free"}))).await.ok(200);
}

#[tokio::test]
async fn invalid_tenants_are_refused() {
    let e = env();
    for id in ["", "A", "-a", "a_b", "a.b", "../x", "a b", &"a".repeat(64), "é"] {
        e.admin("POST", "/v1/tenants", Some(json!({"id": id}))).await.problem(400, "invalid_request");
    }
    for body in [
        json!({}),
        json!({"id": 5}),
        json!({"id": "ok", "extra": 1}),
        json!({"id": "ok", "policy": {"max_conections": 5}}),
        json!({"id": "ok", "policy": {"max_connections": 0}}),
        json!({"id": "ok", "policy": {"allowed_origins": ["example.com"]}}),
        json!({"id": "ok", "policy": {"default_caps": {"a b": ["subscribe"]}}}),
        json!({"id": "ok", "policy": [1]}),
        json!({"id": "ok", "name": ""}),
        json!({"id": "ok", "name": "a\u{0}b"}),
        json!({"id": "ok", "name": "x".repeat(201)}),
        json!([{"id": "ok"}]),
    ] {
        e.admin("POST", "/v1/tenants", Some(body)).await.problem(400, "invalid_request");
    }
    assert!(e.store.list_tenants().await.expect("store").is_empty());

    e.tenant("acme").await;
    for body in [
        json!({"id": "other"}),
        json!({"policy": {"nope": 1}}),
        json!({"policy": {"ticket_ttl_seconds": 0}}),
        json!({"policy": "x"}),
        json!({"name": ""}),
    ] {
        e.admin("PATCH", "/v1/tenants/acme", Some(body)).await.problem(400, "invalid_request");
    }
    assert_eq!(policy_of(&e, "acme").await, TenantPolicy::default());
    for path in ["/v1/tenants/Acme", "/v1/tenants/a_b", "/v1/tenants/..%2Fx", "/v1/tenants/%00"] {
        e.admin("GET", path, None).await.problem(400, "invalid_request");
        e.admin("DELETE", path, None).await.problem(400, "invalid_request");
    }
    e.admin("GET", "/v1/tenants/nosuch", None).await.problem(404, "not_found");
}

// ---------------------------------------------------------------- keys

#[tokio::test]
async fn hmac_keys_are_generated_shown_once_and_never_listed() {
    let e = env();
    e.tenant("acme").await;
    e.take_controls();
    for alg in ["HS256", "HS384", "HS512"] {
        let a = e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": alg}))).await;
        let k = a.ok(201);
        assert_eq!(k["alg"], alg);
        assert_eq!(k["kind"], "hmac");
        assert!(k["kid"].as_str().expect("kid").starts_with("k_"));
        assert_eq!(k["secret"].as_str().expect("secret").len(), 64);
        assert!(is_rfc3339(&k["created_at"]));
    }
    assert_eq!(e.take_controls(), vec![Control::TenantChanged { tenant: "acme".into() }; 3]);
    let list = e.admin("GET", "/v1/tenants/acme/keys", None).await;
    let keys = list.ok(200)["keys"].as_array().expect("array").clone();
    assert_eq!(keys.len(), 3);
    for k in &keys {
        assert!(k.get("secret").is_none(), "{k}");
        assert_eq!(k["kind"], "hmac");
    }
    assert!(!list.body.to_string().contains("secret"));

    // A chosen kid; twice is a conflict.
    let a = e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256", "kid": "2026-01"}))).await;
    assert_eq!(a.ok(201)["kid"], "2026-01");
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256", "kid": "2026-01"})))
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn public_keys_are_validated_on_upload() {
    let e = env();
    e.tenant("acme").await;
    for (alg, pem) in [
        ("RS256", RSA_PUBLIC),
        ("RS384", RSA_PUBLIC),
        ("RS512", RSA_PUBLIC),
        ("ES256", P256_PUBLIC),
        ("ES384", P384_PUBLIC),
        ("EdDSA", ED_PUBLIC),
    ] {
        let a =
            e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": alg, "public_key_pem": pem}))).await;
        let k = a.ok(201);
        assert_eq!(k["kind"], "public_pem", "{alg}");
        assert!(k.get("secret").is_none());
    }
    assert_eq!(ring(&e, "acme").await.len(), 6);

    for (alg, pem) in [
        ("ES256", P384_PUBLIC),
        ("ES384", P256_PUBLIC),
        ("ES256", RSA_PUBLIC),
        ("RS256", P256_PUBLIC),
        ("EdDSA", RSA_PUBLIC),
        ("RS256", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        ("RS256", "not a pem"),
        ("ES256", P256_PRIVATE),
        ("HS256", RSA_PUBLIC),
        ("none", RSA_PUBLIC),
        ("rs256", RSA_PUBLIC),
    ] {
        let a =
            e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": alg, "public_key_pem": pem}))).await;
        a.problem(400, "invalid_key");
    }
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "none"}))).await.problem(400, "invalid_key");
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "RS256"})))
        .await
        .problem(400, "invalid_request");
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"public_key_pem": RSA_PUBLIC})))
        .await
        .problem(400, "invalid_request");
    let big = format!("{}{}", RSA_PUBLIC, "A".repeat(20_000));
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "RS256", "public_key_pem": big})))
        .await
        .problem(400, "invalid_key");
    assert_eq!(ring(&e, "acme").await.len(), 6, "nothing invalid was stored");
}

#[tokio::test]
async fn uploaded_public_keys_verify_tokens_the_tenant_signs() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let e = env();
    e.tenant("acme").await;
    for (alg, jalg, pem, enc) in [
        (
            "RS256",
            Algorithm::RS256,
            RSA_PUBLIC,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa"),
        ),
        (
            "ES256",
            Algorithm::ES256,
            P256_PUBLIC,
            EncodingKey::from_ec_pem(P256_PRIVATE.as_bytes()).expect("ec"),
        ),
        ("EdDSA", Algorithm::EdDSA, ED_PUBLIC, EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("ed")),
    ] {
        let kid = format!("kid-{alg}");
        e.admin(
            "POST",
            "/v1/tenants/acme/keys",
            Some(json!({"alg": alg, "public_key_pem": pem, "kid": kid})),
        )
        .await
        .ok(201);
        let mut h = Header::new(jalg);
        h.kid = Some(kid);
        let token = jsonwebtoken::encode(&h, &json!({"aud": "acme", "sub": "u", "exp": now() + 60}), &enc)
            .expect("sign");
        let id = verify_token(
            &token,
            "acme",
            &ring(&e, "acme").await,
            &TenantPolicy::default(),
            CredentialSource::Auth,
            now(),
        )
        .expect("verifies");
        assert_eq!(id.sub, "u");
    }
}

#[tokio::test]
async fn jwks_urls_must_be_https_except_on_loopback() {
    let e = env();
    e.tenant("acme").await;
    for url in [
        "https://issuer.example.com/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks",
        "http://localhost:9000/jwks",
        "http://[::1]/jwks",
    ] {
        let a = e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"jwks_url": url}))).await;
        let k = a.ok(201);
        assert_eq!(k["kind"], "jwks");
        assert_eq!(k["jwks_url"], url);
        assert!(k.get("alg").is_none());
    }
    for url in [
        "http://issuer.example.com/jwks",
        "http://10.0.0.1/jwks",
        "http://localhost.evil.example/jwks",
        "ftp://example.com/jwks",
        "file:///etc/passwd",
        "https://user:pw@example.com/jwks",
        "jwks",
        "",
    ] {
        e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"jwks_url": url})))
            .await
            .problem(400, "invalid_request");
    }
    e.admin(
        "POST",
        "/v1/tenants/acme/keys",
        Some(json!({"jwks_url": "https://a.example/jwks", "alg": "RS256"})),
    )
    .await
    .problem(400, "invalid_request");
    e.admin(
        "POST",
        "/v1/tenants/acme/keys",
        Some(json!({"jwks_url": "https://a.example/jwks", "public_key_pem": RSA_PUBLIC})),
    )
    .await
    .problem(400, "invalid_request");
    let list = e.admin("GET", "/v1/tenants/acme/keys", None).await;
    assert_eq!(list.ok(200)["keys"].as_array().expect("array").len(), 4);
}

#[tokio::test]
async fn key_requests_are_checked() {
    let e = env();
    e.tenant("acme").await;
    for body in [
        json!({}),
        json!({"alg": "HS256", "secret": "mine"}),
        json!({"alg": "HS256", "kid": "../x"}),
        json!({"alg": "HS256", "kid": ""}),
        json!({"alg": "HS256", "kid": "a b"}),
        json!({"alg": "HS256", "kid": "k".repeat(129)}),
        json!({"alg": 256}),
    ] {
        e.admin("POST", "/v1/tenants/acme/keys", Some(body)).await.problem(400, "invalid_request");
    }
    assert!(e.store.list_keys("acme").await.expect("keys").is_empty());
}

#[tokio::test]
async fn deleting_keys_and_rotation() {
    let e = env();
    e.tenant("acme").await;
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256", "kid": "old"}))).await.ok(201);
    let old = e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "u"}))).await;
    let old = old.ok(201)["token"].as_str().expect("token").to_string();
    assert_eq!(jwt_part(&old, 0)["kid"], "old");

    // Strictly newer created_at is not needed: the newest key added wins ties.
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS512", "kid": "new"}))).await.ok(201);
    let new = e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "u"}))).await;
    let new = new.ok(201)["token"].as_str().expect("token").to_string();
    assert_eq!(jwt_part(&new, 0)["kid"], "new");
    assert_eq!(jwt_part(&new, 0)["alg"], "HS512");

    let p = policy_of(&e, "acme").await;
    let r = ring(&e, "acme").await;
    verify_token(&old, "acme", &r, &p, CredentialSource::Auth, now()).expect("old verifies during rotation");
    verify_token(&new, "acme", &r, &p, CredentialSource::Auth, now()).expect("new verifies");

    e.take_controls();
    e.admin("DELETE", "/v1/tenants/acme/keys/old", None).await.ok(204);
    assert_eq!(e.take_controls(), vec![Control::TenantChanged { tenant: "acme".into() }]);
    let r = ring(&e, "acme").await;
    assert_eq!(verify_token(&old, "acme", &r, &p, CredentialSource::Auth, now()), Err(Refusal::InvalidToken));
    verify_token(&new, "acme", &r, &p, CredentialSource::Auth, now()).expect("new still verifies");

    e.admin("DELETE", "/v1/tenants/acme/keys/old", None).await.problem(404, "not_found");
    e.admin("DELETE", "/v1/tenants/acme/keys/a%20b", None).await.problem(400, "invalid_request");
    e.admin("DELETE", "/v1/tenants/acme/keys/%2E%2E%2Fx", None).await.problem(400, "invalid_request");
    e.admin("DELETE", "/v1/tenants/nosuch/keys/new", None).await.problem(404, "not_found");
    assert!(e.take_controls().is_empty());
}

// ---------------------------------------------------------------- API keys

#[tokio::test]
async fn api_keys_lifecycle() {
    let e = env();
    e.tenant("acme").await;
    let a = e.admin("POST", "/v1/tenants/acme/api-keys", Some(json!({"name": "chat backend"}))).await;
    let k = a.ok(201).clone();
    let key = k["key"].as_str().expect("key").to_string();
    let id = k["id"].as_str().expect("id").to_string();
    assert!(key.starts_with("sbk_") && key.len() == 4 + 64, "{key}");
    assert_eq!(k["name"], "chat backend");
    assert!(is_rfc3339(&k["created_at"]));
    // Stored hashed only.
    let stored = e.store.list_api_keys("acme").await.expect("store");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].hash, key);
    assert_eq!(stored[0].hash, state::hash_secret(&key));

    let list = e.call("GET", "/v1/tenants/acme/api-keys", Some(&key), None).await;
    let l = list.ok(200);
    assert_eq!(l, &json!({"api_keys": [{"id": id, "name": "chat backend", "created_at": k["created_at"]}]}));
    assert!(!list.body.to_string().contains(&key));

    // The key can make more keys for its own tenant, and delete itself.
    let b = e.call("POST", "/v1/tenants/acme/api-keys", Some(&key), Some(json!({"name": "second"}))).await;
    let second = b.ok(201)["key"].as_str().expect("key").to_string();
    e.call("DELETE", &format!("/v1/tenants/acme/api-keys/{id}"), Some(&second), None).await.ok(204);
    e.call("GET", "/v1/tenants/acme", Some(&key), None).await.problem(401, "unauthorized");
    e.call("GET", "/v1/tenants/acme", Some(&second), None).await.ok(200);

    e.admin("DELETE", &format!("/v1/tenants/acme/api-keys/{id}"), None).await.problem(404, "not_found");
    e.admin("DELETE", "/v1/tenants/acme/api-keys/a.b", None).await.problem(400, "invalid_request");
    e.admin("DELETE", &format!("/v1/tenants/acme/api-keys/{}", "a".repeat(65)), None)
        .await
        .problem(400, "invalid_request");
    for body in [json!({}), json!({"name": ""}), json!({"name": "n", "key": "mine"}), json!({"name": 1})] {
        e.admin("POST", "/v1/tenants/acme/api-keys", Some(body)).await.problem(400, "invalid_request");
    }
}

// ---------------------------------------------------------------- tokens and tickets

#[tokio::test]
async fn minting_needs_an_hmac_key() {
    let e = env();
    e.tenant("acme").await;
    e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "u"})))
        .await
        .problem(409, "no_signing_key");
    // Public keys and JWKS sources cannot sign.
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "RS256", "public_key_pem": RSA_PUBLIC})))
        .await
        .ok(201);
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"jwks_url": "https://a.example/jwks"})))
        .await
        .ok(201);
    e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "u"})))
        .await
        .problem(409, "no_signing_key");
}

#[tokio::test]
async fn minted_tokens_verify_with_the_stored_keys() {
    let e = env();
    e.tenant("acme").await;
    let key = e.api_key("acme").await;
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256", "kid": "k1"}))).await.ok(201);

    let a = e
        .call(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&key),
            Some(json!({"sub": "user-1", "caps": {"chat:*": ["subscribe", "publish"]}, "meta": {"name": "Ann"}, "ttl_seconds": 600})),
        )
        .await;
    let out = a.ok(201).clone();
    let token = out["token"].as_str().expect("token");
    assert!(is_rfc3339(&out["expires_at"]));
    assert_eq!(out["kid"], "k1");
    let claims = jwt_part(token, 1);
    assert_eq!(claims["aud"], "acme");
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["exp"], out["exp"]);
    assert_eq!(claims["jti"], out["jti"]);
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["exp"].as_i64().expect("exp") - iat, 600);
    assert!((iat - now()).abs() <= 5);

    let id = verify_token(
        token,
        "acme",
        &ring(&e, "acme").await,
        &policy_of(&e, "acme").await,
        CredentialSource::Auth,
        now(),
    )
    .expect("the minted token verifies");
    assert_eq!(id.sub, "user-1");
    assert_eq!(id.jti.as_deref(), out["jti"].as_str());
    assert!(id.caps.allows("chat:1", Right::Publish));
    assert!(!id.caps.allows("other", Right::Subscribe));
    assert_eq!(id.meta, Some(json!({"name": "Ann"})));
    // Not for another tenant.
    assert!(
        verify_token(
            token,
            "other",
            &ring(&e, "acme").await,
            &TenantPolicy::default(),
            CredentialSource::Auth,
            now()
        )
        .is_err()
    );

    // Defaults: ttl = max_token_ttl_seconds, no caps claim (the policy's default_caps apply).
    let a = e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "user-2"}))).await;
    let token = a.ok(201)["token"].as_str().expect("token").to_string();
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 86_400);
    assert!(claims.get("caps").is_none());
    assert!(claims.get("meta").is_none());
    verify_token(
        &token,
        "acme",
        &ring(&e, "acme").await,
        &policy_of(&e, "acme").await,
        CredentialSource::Auth,
        now(),
    )
    .expect("verifies");
}

#[tokio::test]
async fn token_requests_are_checked() {
    let e = env();
    e.tenant("acme").await;
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256"}))).await.ok(201);
    for body in [
        json!({}),
        json!({"sub": ""}),
        json!({"sub": "a\nb"}),
        json!({"sub": "x".repeat(257)}),
        json!({"sub": "u", "ttl_seconds": 0}),
        json!({"sub": "u", "ttl_seconds": 86_401}),
        json!({"sub": "u", "ttl_seconds": -1}),
        json!({"sub": "u", "caps": {"a b": ["subscribe"]}}),
        json!({"sub": "u", "caps": {"room": ["fly"]}}),
        json!({"sub": "u", "caps": ["room"]}),
        json!({"sub": "u", "meta": "text"}),
        json!({"sub": "u", "meta": {"big": "x".repeat(1100)}}),
        json!({"sub": "u", "aud": "other"}),
    ] {
        e.admin("POST", "/v1/tenants/acme/tokens", Some(body)).await.problem(400, "invalid_request");
    }
    // The tenant's max applies.
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"max_token_ttl_seconds": 60}})))
        .await
        .ok(200);
    e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "u", "ttl_seconds": 61})))
        .await
        .problem(400, "invalid_request");
    let a = e.admin("POST", "/v1/tenants/acme/tokens", Some(json!({"sub": "u"}))).await;
    let claims = jwt_part(a.ok(201)["token"].as_str().expect("token"), 1);
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 60);
}

#[tokio::test]
async fn tickets_carry_the_identity_they_were_issued_for() {
    let e = env();
    e.tenant("acme").await;
    let key = e.api_key("acme").await;
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"default_caps": {"lobby": ["subscribe"]}}})))
        .await
        .ok(200);

    let a = e.call("POST", "/v1/tenants/acme/tickets", Some(&key), Some(json!({"sub": "u1"}))).await;
    let out = a.ok(201).clone();
    assert_eq!(out["expires_in"], 30);
    let ticket = out["ticket"].as_str().expect("ticket");
    assert_eq!(ticket.len(), 64);
    let g = e.store.take_ticket("acme", ticket).await.expect("store").expect("the ticket exists");
    assert_eq!(g.sub, "u1");
    assert!(g.caps.allows("lobby", Right::Subscribe), "default caps");
    assert!(!g.caps.allows("lobby", Right::Publish));
    assert_eq!(g.meta, None);
    let iat = g.iat.expect("iat");
    assert!((iat - now()).abs() <= 5);
    assert_eq!(g.exp - iat, 86_400);
    assert!(e.store.take_ticket("acme", ticket).await.expect("store").is_none(), "single use");

    let a = e
        .admin(
            "POST",
            "/v1/tenants/acme/tickets",
            Some(json!({"sub": "u2", "caps": {"*": ["publish"]}, "meta": {"role": "bot"}})),
        )
        .await;
    let ticket = a.ok(201)["ticket"].as_str().expect("ticket").to_string();
    let g = e.store.take_ticket("acme", &ticket).await.expect("store").expect("ticket");
    assert!(g.caps.allows("anything", Right::Publish));
    assert!(!g.caps.allows("lobby", Right::Subscribe), "given caps replace the defaults");
    assert_eq!(g.meta, Some(json!({"role": "bot"})));

    for body in [
        json!({}),
        json!({"sub": ""}),
        json!({"sub": "u", "caps": {"room": ["fly"]}}),
        json!({"sub": "u", "meta": [1]}),
        json!({"sub": "u", "ttl_seconds": 5}),
    ] {
        e.admin("POST", "/v1/tenants/acme/tickets", Some(body)).await.problem(400, "invalid_request");
    }
}

// ---------------------------------------------------------------- revocations

#[tokio::test]
async fn revocations_lifecycle() {
    let e = env();
    e.tenant("acme").await;
    e.take_controls();
    let now0 = now();

    let a = e.admin("POST", "/v1/tenants/acme/revocations", Some(json!({"jti": "t-1"}))).await;
    let r1 = a.ok(201).clone();
    assert_eq!(r1["jti"], "t-1");
    assert!(r1.get("sub").is_none());
    assert!(is_rfc3339(&r1["created_at"]) && is_rfc3339(&r1["expires_at"]));
    let a = e.admin("POST", "/v1/tenants/acme/revocations", Some(json!({"sub": "u"}))).await;
    let r2 = a.ok(201).clone();
    assert_eq!(r2["sub"], "u");
    assert!(r2.get("issued_before").is_none());
    let a = e
        .admin("POST", "/v1/tenants/acme/revocations", Some(json!({"sub": "u", "issued_before": 1000})))
        .await;
    let r3 = a.ok(201).clone();
    assert_eq!(r3["issued_before"], 1000);

    // Every node was told, with the revocation as stored.
    let controls = e.take_controls();
    assert_eq!(controls.len(), 3);
    let rules: Vec<RevocationRule> = controls
        .iter()
        .map(|c| match c {
            Control::Revoked { tenant, revocation } => {
                assert_eq!(tenant, "acme");
                assert!(revocation.created_at >= now0);
                assert_eq!(
                    revocation.expires_at - revocation.created_at,
                    86_400 + policy::TIME_LEEWAY_SECONDS
                );
                revocation.rule.clone()
            }
            other => panic!("unexpected control {other:?}"),
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            RevocationRule::Jti { jti: "t-1".into() },
            RevocationRule::Sub { sub: "u".into() },
            RevocationRule::SubBefore { sub: "u".into(), issued_before: 1000 },
        ]
    );
    let stored = e.store.list_revocations("acme").await.expect("store");
    assert_eq!(stored.len(), 3);
    assert_eq!(r1["id"], stored[0].id);

    let list = e.admin("GET", "/v1/tenants/acme/revocations", None).await;
    assert_eq!(list.ok(200), &json!({"revocations": [r1, r2, r3]}));

    let id = r2["id"].as_str().expect("id");
    e.admin("DELETE", &format!("/v1/tenants/acme/revocations/{id}"), None).await.ok(204);
    assert_eq!(e.take_controls(), vec![Control::TenantChanged { tenant: "acme".into() }]);
    e.admin("DELETE", &format!("/v1/tenants/acme/revocations/{id}"), None).await.problem(404, "not_found");
    e.admin("DELETE", "/v1/tenants/acme/revocations/%00", None).await.problem(400, "invalid_request");
    assert_eq!(e.store.list_revocations("acme").await.expect("store").len(), 2);
}

#[tokio::test]
async fn revocation_requests_are_checked() {
    let e = env();
    e.tenant("acme").await;
    for body in [
        json!({}),
        json!({"jti": "j", "sub": "u"}),
        json!({"issued_before": 5}),
        json!({"jti": "j", "issued_before": 5}),
        json!({"sub": "u", "issued_before": -1}),
        json!({"sub": "u", "issued_before": "yesterday"}),
        json!({"sub": ""}),
        json!({"jti": "x".repeat(300)}),
        json!({"sub": "u", "reason": "spam"}),
    ] {
        e.admin("POST", "/v1/tenants/acme/revocations", Some(body)).await.problem(400, "invalid_request");
    }
    assert!(e.take_controls().is_empty());
}

// ---------------------------------------------------------------- publish, rooms, presence

#[tokio::test]
async fn server_publish_reaches_the_bus() {
    let e = env();
    e.tenant("acme").await;
    let key = e.api_key("acme").await;
    let path = "/v1/tenants/acme/rooms/team:blue/messages";
    let a = e.call("POST", path, Some(&key), Some(json!({"event": "note", "data": {"text": "hi"}}))).await;
    let first = a.ok(202).clone();
    assert_eq!(first["offset"], "1");
    assert!(first["id"].is_string());
    let a = e.admin("POST", path, Some(json!({"event": "note"}))).await;
    assert_eq!(a.ok(202)["offset"], "2");

    let msgs = e.rec.messages.lock().clone();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].tenant, "acme");
    assert_eq!(msgs[0].room, "team:blue");
    assert_eq!(msgs[0].from, None);
    assert_eq!(msgs[0].id, first["id"]);
    assert_eq!(msgs[0].payload, Payload::Event { event: "note".into(), data: json!({"text": "hi"}) });
    assert_eq!(msgs[1].payload, Payload::Event { event: "note".into(), data: Value::Null });

    let stats = e.admin("GET", "/v1/tenants/acme/stats", None).await;
    assert_eq!(stats.ok(200)["messages_in"], 2);
}

#[tokio::test]
async fn server_publish_is_checked() {
    let e = env();
    e.tenant("acme").await;
    let long = "r".repeat(300);
    for room in [&long[..], "a%20b", "a%00", "%FF", "caf%C3%A9"] {
        let a = e
            .admin("POST", &format!("/v1/tenants/acme/rooms/{room}/messages"), Some(json!({"event": "e"})))
            .await;
        assert!(a.status == StatusCode::BAD_REQUEST, "{room}: {}", a.body);
        assert!(
            a.body["code"] == "invalid_room" || a.body["code"] == "invalid_request",
            "{room}: {}",
            a.body
        );
    }
    e.admin("POST", &format!("/v1/tenants/acme/rooms/{long}/messages"), Some(json!({"event": "e"})))
        .await
        .problem(400, "invalid_room");
    for event in ["", "connect", "session_end", "presence:join", &"e".repeat(129)] {
        e.admin("POST", "/v1/tenants/acme/rooms/lobby/messages", Some(json!({"event": event, "data": 1})))
            .await
            .problem(400, "invalid_event");
    }
    for body in [json!({}), json!({"data": 1}), json!({"event": "e", "echo": true}), json!({"event": 5})] {
        e.admin("POST", "/v1/tenants/acme/rooms/lobby/messages", Some(body))
            .await
            .problem(400, "invalid_request");
    }
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"max_message_bytes": 16}}))).await.ok(200);
    e.admin(
        "POST",
        "/v1/tenants/acme/rooms/lobby/messages",
        Some(json!({"event": "e", "data": "x".repeat(15)})),
    )
    .await
    .problem(413, "payload_too_large");
    e.admin(
        "POST",
        "/v1/tenants/acme/rooms/lobby/messages",
        Some(json!({"event": "e", "data": "x".repeat(14)})),
    )
    .await
    .ok(202);
    assert_eq!(e.rec.messages.lock().len(), 1, "only the valid message was published");
}

#[tokio::test]
async fn server_publish_allows_bodies_up_to_the_tenant_limit() {
    let e = env();
    e.tenant("acme").await;
    e.admin("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"max_message_bytes": 3_000_000}})))
        .await
        .ok(200);
    let data = "x".repeat(2_000_000);
    e.admin("POST", "/v1/tenants/acme/rooms/lobby/messages", Some(json!({"event": "e", "data": data})))
        .await
        .ok(202);
    // Other routes keep the 1 MiB limit.
    e.admin("POST", "/v1/tenants/acme/api-keys", Some(json!({"name": "x".repeat(2_000_000)})))
        .await
        .problem(413, "payload_too_large");
}

async fn connect(e: &Env, t: &str, conn: &str, sub: &str, rooms: &[&str]) {
    let c = ConnRecord {
        id: conn.into(),
        sub: sub.into(),
        node: "node-1".into(),
        transport: "websocket".into(),
        connected_at: 1_700_000_000_123,
    };
    assert!(e.store.open_connection(t, c, 100, 10).await.expect("store"));
    for r in rooms {
        e.store.room_subscribe(t, r, conn).await.expect("store");
        e.store.presence_join(t, r, sub, conn, Some(json!({"name": sub}))).await.expect("store");
    }
}

#[tokio::test]
async fn rooms_presence_connections_and_stats() {
    let e = env();
    e.tenant("acme").await;
    connect(&e, "acme", "c1", "ann", &["lobby", "team:a"]).await;
    connect(&e, "acme", "c2", "ann", &["lobby"]).await;
    connect(&e, "acme", "c3", "bob", &["lobby"]).await;

    let rooms = e.admin("GET", "/v1/tenants/acme/rooms", None).await;
    assert_eq!(
        rooms.ok(200),
        &json!({"rooms": [{"name": "lobby", "subscribers": 3}, {"name": "team:a", "subscribers": 1}]})
    );
    let p = e.admin("GET", "/v1/tenants/acme/rooms/lobby/presence", None).await;
    assert_eq!(
        p.ok(200),
        &json!({"members": [
            {"sub": "ann", "meta": {"name": "ann"}, "connections": 2},
            {"sub": "bob", "meta": {"name": "bob"}, "connections": 1}
        ]})
    );
    let p = e.admin("GET", "/v1/tenants/acme/rooms/empty/presence", None).await;
    assert_eq!(p.ok(200), &json!({"members": []}));
    e.admin("GET", &format!("/v1/tenants/acme/rooms/{}/presence", "r".repeat(300)), None)
        .await
        .problem(400, "invalid_room");

    let c = e.admin("GET", "/v1/tenants/acme/connections", None).await;
    let all = c.ok(200)["connections"].as_array().expect("array").clone();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["connected_at"], "2023-11-14T22:13:20.123Z");
    assert_eq!(all[0]["node"], "node-1");
    assert_eq!(all[0]["transport"], "websocket");
    let c = e.admin("GET", "/v1/tenants/acme/connections?sub=ann", None).await;
    let subs: Vec<&str> = c.ok(200)["connections"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["sub"].as_str())
        .collect();
    assert_eq!(subs, vec!["ann", "ann"]);
    e.admin("GET", "/v1/tenants/acme/connections?user=ann", None).await.problem(400, "invalid_request");
    e.admin("GET", "/v1/tenants/acme/connections?sub=", None).await.problem(400, "invalid_request");

    let s = e.admin("GET", "/v1/tenants/acme/stats", None).await;
    assert_eq!(
        s.ok(200),
        &json!({"connections": 3, "rooms": 2, "messages_in": 0, "messages_out": 0, "handshakes_refused": 0})
    );

    e.take_controls();
    let k = e.admin("DELETE", "/v1/tenants/acme/connections?sub=ann", None).await;
    assert_eq!(k.ok(202), &json!({"sub": "ann", "connections": 2}));
    assert_eq!(e.take_controls(), vec![Control::Kick { tenant: "acme".into(), sub: "ann".into() }]);
    e.admin("DELETE", "/v1/tenants/acme/connections", None).await.problem(400, "invalid_request");
    e.admin("DELETE", "/v1/tenants/acme/connections?sub=%0A", None).await.problem(400, "invalid_request");
    assert!(e.take_controls().is_empty());
}

// ---------------------------------------------------------------- failures of the store and the bus

#[tokio::test]
async fn store_and_bus_failures_are_503_problems() {
    let e = env();
    e.tenant("acme").await;
    e.admin("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256", "kid": "k1"}))).await.ok(201);
    let key = e.api_key("acme").await;
    e.set_store_down(true);
    for (method, template) in ROUTES {
        if PUBLIC.contains(template) && *template != "/readyz" {
            continue;
        }
        let (path, body) = sample(method, template, "acme");
        e.admin(method, &path, body.clone()).await.problem(503, "unavailable");
        e.call(method, &path, Some(&key), body).await.problem(503, "unavailable");
    }
    e.set_store_down(false);
    e.set_bus_down(true);
    e.admin("POST", "/v1/tenants/acme/rooms/lobby/messages", Some(json!({"event": "e"})))
        .await
        .problem(503, "unavailable");
    e.admin("DELETE", "/v1/tenants/acme/connections?sub=u", None).await.problem(503, "unavailable");
    let a = e.admin("POST", "/v1/tenants/acme/revocations", Some(json!({"sub": "u"}))).await;
    a.problem(503, "unavailable");
    assert!(a.body["detail"].as_str().expect("detail").contains("saved"), "{}", a.body);
}

// ---------------------------------------------------------------- hostile input

#[tokio::test]
async fn hostile_requests_get_4xx_problems() {
    let e = env();
    e.tenant("acme").await;
    let post = |uri: &str, ct: Option<&str>, body: Body| {
        let mut b = Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(body).expect("request")
    };
    // Huge body.
    let huge = format!("{{\"id\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    e.send(post("/v1/tenants", Some("application/json"), Body::from(huge)))
        .await
        .problem(413, "payload_too_large");
    // Malformed JSON, wrong or missing content type, empty body.
    e.send(post("/v1/tenants", Some("application/json"), Body::from("{\"id\": ")))
        .await
        .problem(400, "invalid_request");
    e.send(post("/v1/tenants", Some("application/json"), Body::from("")))
        .await
        .problem(400, "invalid_request");
    e.send(post("/v1/tenants", Some("application/json"), Body::from(vec![0xff, 0xfe])))
        .await
        .problem(400, "invalid_request");
    e.send(post("/v1/tenants", Some("text/plain"), Body::from("{\"id\": \"x\"}")))
        .await
        .problem(415, "unsupported_media_type");
    e.send(post("/v1/tenants", None, Body::from("{\"id\": \"x\"}")))
        .await
        .problem(415, "unsupported_media_type");
    e.send(post("/v1/tenants", Some("application/json; charset=utf-8"), Body::from("{\"id\": \"ok\"}")))
        .await
        .ok(201);
    // Deeply nested JSON.
    let deep = format!("{{\"id\": \"x\", \"policy\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    e.send(post("/v1/tenants", Some("application/json"), Body::from(deep)))
        .await
        .problem(400, "invalid_request");

    // Unknown routes and methods.
    e.admin("GET", "/v1/nope", None).await.problem(404, "not_found");
    e.call("GET", "/nope", None, None).await.problem(404, "not_found");
    e.admin("GET", "/v1/tenants/", None).await.problem(404, "not_found");
    e.admin("GET", "/v1/tenants/acme/keys/k1", None).await.problem(405, "method_not_allowed");
    let a = e.admin("PUT", "/v1/tenants/acme", Some(json!({}))).await;
    a.problem(405, "method_not_allowed");
    assert!(a.headers.get(header::ALLOW).is_some(), "Allow is kept");

    // Bad ids in every position.
    for path in [
        "/v1/tenants/..%2Fx",
        "/v1/tenants/%00",
        "/v1/tenants/%FF",
        "/v1/tenants/a%2F..%2F..%2Fetc",
        "/v1/tenants/acme/keys/%00",
        "/v1/tenants/acme/api-keys/..%2Fx",
        "/v1/tenants/acme/revocations/%FF",
        "/v1/tenants/acme/connections?sub=%00",
        "/v1/tenants/acme/connections?sub=a&sub=b",
    ] {
        for method in ["GET", "DELETE"] {
            let a = e.admin(method, path, None).await;
            assert!(a.status.is_client_error(), "{method} {path}: {} {}", a.status, a.body);
            assert_eq!(
                a.headers.get(header::CONTENT_TYPE).expect("ct"),
                "application/problem+json",
                "{path}"
            );
        }
    }
    let long_room = "r".repeat(300);
    for (method, template) in ROUTES {
        let (path, body) = sample(method, template, "acme");
        let path = path.replace("lobby", &long_room);
        let a = e.admin(method, &path, body).await;
        assert!(!a.status.is_server_error(), "{method} {path}: {}", a.status);
    }
}

#[tokio::test]
async fn no_route_answers_5xx_to_garbage() {
    let e = env();
    e.tenant("acme").await;
    let bodies: Vec<Vec<u8>> = vec![
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"str\"".to_vec(),
        "{\"\u{0}\": 1}".as_bytes().to_vec(),
        b"{\"id\": \"acme\", \"id\": \"b\"}".to_vec(),
        vec![b'{'; 5000],
        vec![0xc3, 0x28],
    ];
    let mut n = 0;
    for (method, template) in ROUTES {
        for body in &bodies {
            let (path, _) = sample(method, template, "acme");
            let req = Request::builder()
                .method(*method)
                .uri(&path)
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .expect("request");
            let a = e.send(req).await;
            assert!(!a.status.is_server_error(), "{method} {path}: {} {}", a.status, a.body);
            n += 1;
        }
    }
    assert_eq!(n, ROUTES.len() * bodies.len());
}

// ---------------------------------------------------------------- OpenAPI

#[tokio::test]
async fn openapi_documents_exactly_the_routes_served() {
    let e = env();
    let a = e.call("GET", "/v1/openapi.json", None, None).await;
    let doc = a.ok(200).clone();
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc, admin::openapi());

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            if !["get", "post", "put", "patch", "delete", "head", "options", "trace"]
                .contains(&method.as_str())
            {
                continue;
            }
            documented.push((method.to_uppercase(), path.clone()));
            let responses = op["responses"].as_object().expect("responses");
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        r["content"].get("application/problem+json").is_some(),
                        "{method} {path} {status} is a problem: {r}"
                    );
                }
            }
            if PUBLIC.contains(&path.as_str()) {
                assert_eq!(op["security"], json!([]), "{path} is public");
            } else {
                assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
                for s in ["400", "401", "403", "404", "503"] {
                    assert!(responses.contains_key(s), "{method} {path} documents {s}");
                }
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} documents success");
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("413") && responses.contains_key("415"), "{method} {path}");
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> =
        ROUTES.iter().map(|(m, p)| ((*m).to_string(), (*p).to_string())).collect();
    expected.sort();
    assert_eq!(documented, expected, "the document lists exactly the SPEC §5 routes");

    // Every documented route is served: with the admin token it never answers the
    // router's own 404 or 405.
    e.tenant("acme").await;
    for (method, template) in ROUTES {
        let (path, body) = sample(method, template, "acme");
        let a = e.admin(method, &path, body).await;
        assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if a.status == StatusCode::NOT_FOUND {
            assert_ne!(a.body["detail"], "no such route", "{method} {path} is routed");
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["Policy"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_policy_schema_lists_every_policy_field() {
    let doc = admin::openapi();
    let documented: std::collections::BTreeSet<String> = doc["components"]["schemas"]["Policy"]["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    let actual: std::collections::BTreeSet<String> = serde_json::to_value(TenantPolicy::default())
        .expect("policy")
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, actual);
}
