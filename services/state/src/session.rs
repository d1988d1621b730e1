//! Sessions: what a client needs to resume on any node (SPEC 3.7) — its user, its rooms,
//! and where each room's history starts for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A resumable session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub sub: String,
    /// Subscribed rooms, each with the room's newest offset when the session subscribed:
    /// a resume without a client offset for the room replays from there.
    pub rooms: BTreeMap<String, u64>,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}
