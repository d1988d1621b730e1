//! The edge's one clock: the wall clock, in the units the store, the bus and `policy`
//! take. A leaf module, so that reading the time does not tie any module to the
//! handshake's (`connect`) or the bus's code. The bus stamps messages with the same
//! clock (`bus::now_ms`).

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    bus::now_ms()
}

/// Unix seconds now: the `now` every `policy` decision takes.
pub fn now_s() -> i64 {
    now_ms() / 1000
}
