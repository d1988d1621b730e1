//! One signed POST to a tenant's endpoint, behind a trait.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

/// A request to a tenant's endpoint.
#[derive(Debug, Clone)]
pub struct HookRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// The whole exchange, body included: a slow drip ends here.
    pub timeout: Duration,
    /// Whether the answer's body matters. Webhooks need only the status: their answers'
    /// bodies are not read at all (so neither a huge nor a dripping one can fail a batch
    /// the receiver acknowledged).
    pub read_body: bool,
}

/// The endpoint's answer; `body` holds at most the transport's cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResponse {
    pub status: u16,
    pub body: Bytes,
}

/// Why no answer was read. Messages never hold the URL's query or any secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the endpoint did not answer in time")]
    Timeout,
    #[error("the endpoint could not be reached")]
    Connect,
    #[error("the endpoint's answer was larger than allowed")]
    TooLarge,
    /// The host is (or resolves only to) a loopback, private or link-local address, and
    /// private networks are off.
    #[error("the endpoint is on a private network")]
    Blocked,
    #[error("the request failed: {0}")]
    Other(String),
}

impl TransportError {
    /// A short code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::Connect => "connect",
            TransportError::TooLarge => "too_large",
            TransportError::Blocked => "blocked",
            TransportError::Other(_) => "error",
        }
    }
}

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn post(&self, req: HookRequest) -> Result<HookResponse, TransportError>;
}

/// reqwest over rustls: redirects are never followed (a 3xx is an answer, and not a good
/// one: following it would send signed tenant data wherever the endpoint points), the
/// timeout covers connecting, sending and reading, and a body past `max_body` fails.
///
/// With private networks off ([`HttpTransport::public_only`]), a URL whose host is a
/// non-public IP is refused before connecting, and names are resolved through a resolver
/// that keeps public addresses only, so that no tenant-given URL reaches the edges' own
/// network (Redis, NATS, the admin API, cloud metadata).
pub struct HttpTransport {
    client: reqwest::Client,
    max_body: usize,
    allow_private: bool,
}

/// Resolves names to their public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy::public_ip(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the host has no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl HttpTransport {
    /// A transport reading at most `max_body` bytes of each answer, to any address (tests,
    /// and deployments whose tenants' endpoints are on the private network).
    pub fn new(max_body: usize) -> Result<HttpTransport, TransportError> {
        HttpTransport::build(max_body, true)
    }

    /// A transport that refuses loopback, private and link-local destinations.
    pub fn public_only(max_body: usize) -> Result<HttpTransport, TransportError> {
        HttpTransport::build(max_body, false)
    }

    fn build(max_body: usize, allow_private: bool) -> Result<HttpTransport, TransportError> {
        let mut b = reqwest::Client::builder();
        if !allow_private {
            b = b.dns_resolver(std::sync::Arc::new(PublicOnly));
        }
        let client = b
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent("switchboard-hooks/1")
            .build()
            .map_err(|e| TransportError::Other(e.to_string()))?;
        Ok(HttpTransport { client, max_body, allow_private })
    }

    /// Whether `url` names a non-public IP while private networks are off.
    fn blocked(&self, url: &str) -> bool {
        if self.allow_private {
            return false;
        }
        let Ok(u) = reqwest::Url::parse(url) else { return true };
        match u.host() {
            Some(url::Host::Ipv4(a)) => !policy::public_ip(a.into()),
            Some(url::Host::Ipv6(a)) => !policy::public_ip(a.into()),
            Some(url::Host::Domain(_)) => false,
            None => true,
        }
    }
}

fn map_err(e: &reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        // The public-only resolver's refusal surfaces as a connect error too.
        TransportError::Connect
    } else {
        // Without the URL: it may carry a token in its query.
        TransportError::Other(e.without_url_ref())
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_body() || self.is_decode() {
            "the answer's body could not be read".into()
        } else if self.is_request() {
            "the request could not be sent".into()
        } else {
            "the exchange failed".into()
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, req: HookRequest) -> Result<HookResponse, TransportError> {
        if self.blocked(&req.url) {
            return Err(TransportError::Blocked);
        }
        let exchange = async {
            let mut b = self.client.post(&req.url).header("content-type", "application/json");
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            let mut resp = b.body(req.body.clone()).send().await.map_err(|e| map_err(&e))?;
            let status = resp.status().as_u16();
            if !req.read_body {
                return Ok(HookResponse { status, body: Bytes::new() });
            }
            if resp.content_length().is_some_and(|n| n > self.max_body as u64) {
                return Err(TransportError::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| map_err(&e))? {
                if body.len() + chunk.len() > self.max_body {
                    return Err(TransportError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HookResponse { status, body: Bytes::from(body) })
        };
        // One deadline for everything, also enforced here so that no client setting can
        // let a drip-feeding endpoint hold a worker longer.
        tokio::time::timeout(req.timeout, exchange).await.unwrap_or(Err(TransportError::Timeout))
    }
}

/// The in-memory twin: records requests, answers from a script (then 200 `{}`, or
/// `connect` errors when made with [`MemoryTransport::failing`]).
#[derive(Default)]
pub struct MemoryTransport {
    pub requests: Mutex<Vec<HookRequest>>,
    answers: Mutex<VecDeque<Result<HookResponse, TransportError>>>,
    failing: bool,
}

impl MemoryTransport {
    pub fn new() -> MemoryTransport {
        MemoryTransport::default()
    }

    /// A transport that reaches nothing.
    pub fn failing() -> MemoryTransport {
        MemoryTransport { failing: true, ..MemoryTransport::default() }
    }

    /// Queues the next answer.
    pub fn answer(&self, a: Result<HookResponse, TransportError>) {
        self.answers.lock().push_back(a);
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn post(&self, req: HookRequest) -> Result<HookResponse, TransportError> {
        self.requests.lock().push(req);
        match self.answers.lock().pop_front() {
            Some(a) => a,
            None if self.failing => Err(TransportError::Connect),
            None => Ok(HookResponse { status: 200, body: Bytes::from_static(b"{}") }),
        }
    }
}
