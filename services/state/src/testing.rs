//! Test helpers (feature `testing`): the generic suite every [`Store`](crate::Store) must
//! pass, and private Redis servers (standalone or a cluster) for tests that need a real Redis.

mod redis_server;
mod suite;

pub use redis_server::{RedisCluster, RedisServer};
pub use suite::suite;
