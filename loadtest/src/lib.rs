//! Switchboard's load generator: a lean Socket.IO v4 client over WebSocket (`sio`, from
//! `testkit`, where the edge's tests share it), the bundled scenarios of SPEC §8, and the
//! reports that compare Switchboard with the reference Node Socket.IO server run by the
//! same generator. See `loadtest/README.md`.

pub mod chaos;
pub mod clock;
pub mod compare;
pub mod fleet;
pub mod plot;
pub mod procmon;
pub mod pubs;
pub mod report;
pub mod scenario;
pub mod shard;
/// The lean Socket.IO client, shared with the edge's tests (it lives in `testkit`).
pub use testkit::sio;
pub mod stats;
pub mod token;
