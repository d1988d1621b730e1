//! One clock for every process of a run: CLOCK_REALTIME in microseconds. Publisher and
//! receivers run on the same machine, so send and receive stamps compare directly.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub fn now_s() -> u64 {
    now_us() / 1_000_000
}
