//! [`RedisOptions`]: how a [`RedisStore`](super::RedisStore) connects and keeps its node
//! alive, and the rules they must keep.

use std::time::Duration;

use crate::{Result, StoreError};

/// How a [`RedisStore`] connects and keeps its node alive.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// This node's id: owner of the connection, presence and subscription records it writes.
    pub node_id: String,
    /// How long a node's records outlive its last heartbeat.
    pub liveness_ttl: Duration,
    /// How often the node refreshes its liveness; well under `liveness_ttl`.
    pub heartbeat_interval: Duration,
    /// Longest wait for one Redis call (and for the initial connection).
    pub command_timeout: Duration,
    /// Connections to Redis; commands are spread over them round-robin.
    pub pool_size: usize,
}

impl RedisOptions {
    /// The defaults: 15 s liveness refreshed every 5 s, 2 s command timeout, 2 connections.
    pub fn new(node_id: impl Into<String>) -> RedisOptions {
        RedisOptions {
            node_id: node_id.into(),
            liveness_ttl: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            pool_size: 2,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(StoreError::Unavailable(format!("invalid redis store options: {m}")));
        if self.node_id.is_empty() || self.node_id.len() > 256 || self.node_id.chars().any(char::is_control) {
            return bad("node id must be 1-256 characters without control characters");
        }
        if self.liveness_ttl < Duration::from_millis(100) || self.heartbeat_interval.is_zero() {
            return bad("liveness ttl must be at least 100 ms and the heartbeat interval positive");
        }
        if self.heartbeat_interval.saturating_mul(2) > self.liveness_ttl {
            return bad("the heartbeat interval must be at most half the liveness ttl");
        }
        if self.command_timeout.is_zero() || self.pool_size == 0 {
            return bad("command timeout and pool size must be positive");
        }
        Ok(())
    }
}
