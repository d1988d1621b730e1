//! The tenant's backend in the loop: signed webhooks and the subscribe authorization hook.
//!
//! - [`Webhooks`]: a worker per tenant with a bounded queue, batching (at most 250 ms or
//!   100 events), HMAC signatures, retries with exponential backoff for a bounded time,
//!   then drop-and-count. [`Webhooks::offer`] never waits: a tenant's slow or dead
//!   endpoint fills only its own queue.
//! - [`pump`]: moves the store's webhook outbox (transitions recorded cluster-wide, once,
//!   see `state::Store::take_hook_events`) into [`Webhooks`].
//! - [`SubscribeHooks`]: asks the tenant's endpoint whether a subscription is allowed,
//!   fail-closed, with a short timeout and a cache of answers.
//!
//! HTTP goes through [`Transport`] ([`HttpTransport`]: reqwest over rustls, no redirects,
//! total timeout, capped response body; [`MemoryTransport`] for tests). What the answers
//! mean, the signature and the retry schedule are `policy`'s; this crate decides nothing
//! and does not know Socket.IO.

mod pump;
mod subscribe;
mod transport;
mod webhooks;

pub use pump::{PumpOptions, pump};
pub use subscribe::{Decision, SubscribeHooks, SubscribeRequest};
pub use transport::{HookRequest, HookResponse, HttpTransport, MemoryTransport, Transport, TransportError};
pub use webhooks::{WebhookOptions, Webhooks};

/// The headers every hook request carries.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
pub const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";
pub const WEBHOOK_ID_HEADER: &str = "x-switchboard-webhook-id";

/// Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
