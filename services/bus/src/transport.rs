//! How [`crate::NatsAdapter`] reaches the other nodes: publish a message to a subject,
//! subscribe to a subject. [`AdapterTransport`] is that seam (socketioxide-redis's `Driver`,
//! for our adapter), [`NatsTransport`] its async-nats implementation and [`MemoryTransport`]
//! its in-process twin, several of which share a [`MemoryHub`] so that the adapter's
//! cross-node logic (remote broadcasts, requests across nodes, membership) is tested
//! without a NATS server.
//!
//! The transport moves bytes and nothing else: subjects, headers and payloads are the
//! adapter's (its wire format, its membership rules). Subjects are exact: the adapter never
//! subscribes with wildcards, so the twin matches subjects by equality only.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// A message's headers, in the order they were given. Names are matched exactly, as NATS
/// does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Adds a header (a name may repeat).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A message as a subscription receives it.
#[derive(Debug, Clone)]
pub struct TransportMessage {
    pub headers: Headers,
    pub payload: Bytes,
}

/// The messages of one subscription; dropping it unsubscribes.
pub type MessageStream = Pin<Box<dyn Stream<Item = TransportMessage> + Send>>;

/// Why a publish or a subscribe failed (the transport's own words).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Publish and subscribe, the only IO the adapter does.
#[async_trait]
pub trait AdapterTransport: Send + Sync + 'static {
    /// Sends `payload` to every subscriber of `subject` (none is fine).
    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<(), TransportError>;
    /// Receives what is published to `subject` from now on, until the stream is dropped.
    async fn subscribe(&self, subject: String) -> Result<MessageStream, TransportError>;
}

/// The adapter over an async-nats connection (the bus's).
#[derive(Clone)]
pub struct NatsTransport(async_nats::Client);

impl NatsTransport {
    pub fn new(client: async_nats::Client) -> NatsTransport {
        NatsTransport(client)
    }
}

impl fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NatsTransport")
    }
}

fn nats_err(e: impl fmt::Display) -> TransportError {
    TransportError(e.to_string())
}

#[async_trait]
impl AdapterTransport for NatsTransport {
    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<(), TransportError> {
        // A message without headers goes out as a plain PUB, as it always did.
        if headers.is_empty() {
            return self.0.publish(subject, payload).await.map_err(nats_err);
        }
        let mut h = async_nats::HeaderMap::new();
        for (name, value) in &headers.0 {
            h.append(name.as_str(), value.as_str());
        }
        self.0.publish_with_headers(subject, h, payload).await.map_err(nats_err)
    }

    async fn subscribe(&self, subject: String) -> Result<MessageStream, TransportError> {
        let sub = self.0.subscribe(subject).await.map_err(nats_err)?;
        Ok(Box::pin(sub.map(|m| {
            let mut headers = Headers::new();
            if let Some(h) = &m.headers {
                for (name, values) in h.iter() {
                    for v in values {
                        headers.insert(name.to_string(), v.as_str());
                    }
                }
            }
            TransportMessage { headers, payload: m.payload }
        })))
    }
}

/// The subscriptions of every [`MemoryTransport`] made from it: an in-process NATS core
/// (exact subjects, no queues, no persistence), delivering in publish order.
#[derive(Default)]
pub struct MemoryHub {
    subs: Mutex<HashMap<String, Vec<MemorySub>>>,
    next: AtomicU64,
}

struct MemorySub {
    owner: u64,
    tx: mpsc::UnboundedSender<TransportMessage>,
}

impl fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryHub").field("subjects", &self.subs.lock().len()).finish()
    }
}

impl MemoryHub {
    pub fn new() -> Arc<MemoryHub> {
        Arc::default()
    }

    /// How many live subscriptions `subject` has.
    pub fn subscribers(&self, subject: &str) -> usize {
        self.subs.lock().get(subject).map_or(0, |s| s.iter().filter(|s| !s.tx.is_closed()).count())
    }
}

/// One node's connection to a [`MemoryHub`].
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    hub: Arc<MemoryHub>,
    id: u64,
    severed: Arc<AtomicBool>,
}

impl MemoryTransport {
    pub fn new(hub: &Arc<MemoryHub>) -> MemoryTransport {
        let id = hub.next.fetch_add(1, Ordering::Relaxed);
        MemoryTransport { hub: hub.clone(), id, severed: Arc::default() }
    }

    /// Cuts this connection as a killed process would: its subscriptions end, nothing it
    /// publishes from now on arrives (publishing fails), and nobody is told.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        for subs in self.hub.subs.lock().values_mut() {
            subs.retain(|s| s.owner != self.id);
        }
    }

    fn check(&self) -> Result<(), TransportError> {
        if self.severed.load(Ordering::SeqCst) {
            return Err(TransportError("the memory transport was severed".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl AdapterTransport for MemoryTransport {
    async fn publish(&self, subject: String, headers: Headers, payload: Bytes) -> Result<(), TransportError> {
        self.check()?;
        let mut all = self.hub.subs.lock();
        if let Some(subs) = all.get_mut(&subject) {
            let m = TransportMessage { headers, payload };
            // A dropped stream is an unsubscription: forget it here.
            subs.retain(|s| s.tx.send(m.clone()).is_ok());
        }
        Ok(())
    }

    async fn subscribe(&self, subject: String) -> Result<MessageStream, TransportError> {
        self.check()?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.hub.subs.lock().entry(subject).or_default().push(MemorySub { owner: self.id, tx });
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(s: &mut MessageStream) -> Option<TransportMessage> {
        tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("a message or the end in time")
    }

    #[tokio::test]
    async fn the_hub_delivers_exact_subjects_in_order_until_unsubscribed_or_severed() {
        let hub = MemoryHub::new();
        let (a, b) = (MemoryTransport::new(&hub), MemoryTransport::new(&hub));
        let mut s1 = b.subscribe("x.req".into()).await.expect("subscribe");
        let mut s2 = a.subscribe("x.req".into()).await.expect("subscribe");
        let mut other = b.subscribe("x.req.n".into()).await.expect("subscribe");
        let mut h = Headers::new();
        h.insert("Sb-Req", "1");
        h.insert("Sb-Req", "2");
        for n in 0..3u8 {
            a.publish("x.req".into(), h.clone(), Bytes::from(vec![n])).await.expect("publish");
        }
        for s in [&mut s1, &mut s2] {
            for n in 0..3u8 {
                let m = next(s).await.expect("open");
                assert_eq!(&m.payload[..], &[n]);
                assert_eq!(m.headers.get("Sb-Req"), Some("1"), "the first value");
                assert_eq!(m.headers.get("sb-req"), None, "names are exact");
            }
        }
        a.publish("x.req.n".into(), Headers::new(), Bytes::from_static(b"m")).await.expect("publish");
        assert_eq!(&next(&mut other).await.expect("open").payload[..], b"m", "no prefix matching");

        drop(s2);
        a.publish("x.req".into(), Headers::new(), Bytes::new()).await.expect("publish");
        assert_eq!(hub.subscribers("x.req"), 1, "a dropped stream is unsubscribed");

        b.sever();
        assert!(next(&mut s1).await.is_some(), "what was sent before still arrives");
        assert!(next(&mut s1).await.is_none(), "then a severed node's subscriptions end");
        assert!(b.publish("x.req".into(), Headers::new(), Bytes::new()).await.is_err());
        assert!(b.subscribe("x.req".into()).await.is_err());
        assert_eq!(hub.subscribers("x.req"), 0);
    }
}
