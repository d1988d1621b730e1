//! Test helpers (feature `testing`): record and token builders (`fixtures`), the generic suite every [`Store`](crate::Store) must
//! pass, a store that can be switched off, wholly or per operation ([`Faulty`], [`Flaky`] over a
//! `MemoryStore`), and private Redis servers (standalone or a cluster) for tests that need a real Redis.

mod fixtures;
mod flaky;
mod redis_server;
mod suite;

pub use fixtures::{TokenBuilder, conn, grant, hmac_key, tenant, token};
pub use flaky::{Faulty, Flaky};
pub use redis_server::{RedisCluster, RedisServer};
pub use suite::suite;
