//! The shared policy module: every decision about who may connect and what a socket may
//! do is made here, and nowhere else.
//!
//! It turns the raw parts of a handshake (auth payload, headers, cookie, query) into a
//! verified [`Identity`] with [`Caps`], checks origins, validates tenant, room, event and
//! id names, matches revocations and meters publishes. The edge's, admin API's and
//! operator's decisions are its pure functions too (`decide`: tickets, admission,
//! `refresh`, resume, presence events, minted tokens' TTL and signing key), and every
//! code a client can read is one [`Code`]. It is pure logic: it does no IO, reads
//! no clock (callers pass `now`), and holds no global state, so every rule is tested
//! without servers. It does not store anything (that is `state`) and does not speak
//! Socket.IO (that is `edge`).

mod caps;
mod code;
mod decide;
mod error;
mod handshake;
mod hooks;
mod names;
mod rate;
mod revocation;
mod tenant;
mod token;

pub use caps::{Caps, CapsError, Right, Rights};
pub use code::{Code, SessionEnd};
pub use decide::{
    Admitted, Count, MAX_RESUME_ROOMS, MAX_TICKET_BYTES, PresenceChange, TicketGrant, admit,
    check_revocations, check_ticket, grant_ticket, is_revoked, issued_ticket_grant, may_resume, mint_claims,
    presence_event, refresh, signing_key, ticket_identity, ticket_request, token_ttl,
};
pub use error::{EventError, Refusal};
pub use handshake::{
    Credential, CredentialSource, HandshakeRequest, check_origin, find_credential, origin_explicitly_allowed,
};
pub use hooks::{
    HookAnswer, HookEvent, MAX_REASON_BYTES, RetrySchedule, SubscribeHookConfig, WEBHOOK_EVENTS,
    WebhookConfig, hook_url_ok, pattern_matches, public_ip, read_hook_answer, sign, signature_header,
    signing_input, validate_subscribe_hook, validate_webhooks, verify_signature,
};
pub use names::{
    MAX_EVENT_BYTES, MAX_ROOM_BYTES, valid_id_claim, valid_kid, valid_record_id, validate_event,
    validate_room, validate_tenant_id,
};
pub use rate::TokenBucket;
pub use revocation::{Revocation, RevocationRule};
pub use tenant::{MAX_MESSAGE_BYTES_LIMIT, PolicyError, TenantPolicy};
pub use token::{
    Claims, Identity, KeyError, KeyMaterial, KeyRecord, KeyRing, MAX_META_BYTES, MAX_PEM_BYTES,
    MAX_TOKEN_BYTES, Secret, TIME_LEEWAY_SECONDS, check_meta, decoding_key, mint_hmac, mint_pem,
    parse_algorithm, token_audience, token_kid, verify_token,
};

/// Re-exported so that callers name algorithms with the same type the verifier uses.
pub use jsonwebtoken::Algorithm;
