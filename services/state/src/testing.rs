//! Test helpers (feature `testing`): the generic suite every [`Store`](crate::Store) must
//! pass, a store that can be switched off ([`Flaky`]), and private Redis servers (standalone or a cluster) for tests that need a real Redis.

mod flaky;
mod redis_server;
mod suite;

pub use flaky::Flaky;
pub use redis_server::{RedisCluster, RedisServer};
pub use suite::suite;
