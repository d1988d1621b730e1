//! Measurements: HDR histograms (sharded for many writers, portable between processes),
//! percentile summaries, and per-stream sequence tracking for loss, duplicates and
//! reordering.

use std::collections::BTreeSet;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Highest value a histogram holds: one hour in microseconds.
pub const MAX_US: u64 = 3_600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Histogram shards behind locks, so that thousands of connection tasks record without
/// contending on one lock.
pub struct Sharded {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Sharded {
    pub fn new(n: usize) -> Self {
        Sharded { shards: (0..n.max(1)).map(|_| Mutex::new(new_hist())).collect() }
    }

    pub fn record(&self, key: u64, value_us: u64) {
        let i = (key % self.shards.len() as u64) as usize;
        self.shards[i].lock().saturating_record(value_us.clamp(1, MAX_US));
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut h = new_hist();
        for s in &self.shards {
            let _ = h.add(&*s.lock());
        }
        h
    }
}

/// A histogram as (value, count) pairs: how workers hand theirs to the coordinator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistData(pub Vec<(u64, u64)>);

impl HistData {
    pub fn of(h: &Histogram<u64>) -> Self {
        HistData(h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &(v, n) in &self.0 {
            let _ = h.record_n(v.clamp(1, MAX_US), n);
        }
    }

    pub fn hist(&self) -> Histogram<u64> {
        let mut h = new_hist();
        self.add_to(&mut h);
        h
    }

    pub fn merge(&mut self, other: &HistData) {
        let mut h = self.hist();
        other.add_to(&mut h);
        *self = HistData::of(&h);
    }
}

/// A latency distribution in microseconds, with the points a plot needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pcts {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// (quantile, value) from 0 to 0.9999 and 1, for percentile plots.
    pub points: Vec<(f64, u64)>,
}

impl Pcts {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Pcts::default();
        }
        let mut points: Vec<(f64, u64)> = (0..=40)
            .map(|k| {
                let q = 1.0 - 10f64.powf(-(k as f64) / 10.0);
                (q, h.value_at_quantile(q))
            })
            .collect();
        points.push((1.0, h.max()));
        Pcts {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            points,
        }
    }
}

/// Tracks one stream of sequence numbers (one publisher into one room, seen by one
/// receiver): counts unique, duplicate and out-of-order arrivals with a bounded window.
#[derive(Debug, Default)]
pub struct SeqTracker {
    /// Every sequence below this has been seen.
    next: u64,
    /// The highest sequence seen plus one (0: none yet).
    high: u64,
    /// Seen sequences above a gap.
    ahead: BTreeSet<u64>,
    pub unique: u64,
    pub dups: u64,
    pub reorders: u64,
}

/// How many arrivals above a gap are remembered before the gap is taken as lost.
const WINDOW: usize = 1024;

impl SeqTracker {
    /// The highest sequence seen plus one, and the sequences below it never seen (those
    /// the window gave up on included: they are not remembered one by one, so a tracker
    /// that overflowed its window reports only the holes it still knows).
    pub fn holes(&self) -> (u64, Vec<u64>) {
        let holes = (self.next..self.high).filter(|s| !self.ahead.contains(s)).collect();
        (self.high, holes)
    }

    pub fn see(&mut self, s: u64) {
        if s < self.next || self.ahead.contains(&s) {
            self.dups += 1;
            return;
        }
        if s + 1 < self.high {
            self.reorders += 1;
        }
        self.high = self.high.max(s + 1);
        self.unique += 1;
        if s == self.next {
            self.next += 1;
            while self.ahead.remove(&self.next) {
                self.next += 1;
            }
        } else {
            self.ahead.insert(s);
            if self.ahead.len() > WINDOW
                && let Some(first) = self.ahead.pop_first()
            {
                self.next = first + 1;
                while self.ahead.remove(&self.next) {
                    self.next += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_its_holes() {
        let mut t = SeqTracker::default();
        assert_eq!(t.holes(), (0, vec![]));
        for s in [0, 1, 3, 6, 5] {
            t.see(s);
        }
        assert_eq!(t.holes(), (7, vec![2, 4]));
        t.see(2);
        t.see(4);
        assert_eq!(t.holes(), (7, vec![]));
    }

    #[test]
    fn tracks_sequences() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 2, 4, 3, 3, 5, 1] {
            t.see(s);
        }
        assert_eq!(t.unique, 6);
        assert_eq!(t.dups, 2);
        assert_eq!(t.reorders, 1);
    }

    #[test]
    fn window_bounds_memory_after_loss() {
        let mut t = SeqTracker::default();
        for s in 1..5000 {
            t.see(s);
        }
        assert_eq!(t.unique, 4999);
        assert!(t.ahead.len() <= WINDOW);
        assert_eq!(t.dups, 0);
    }

    #[test]
    fn histograms_travel() {
        let s = Sharded::new(4);
        for v in 1..=1000 {
            s.record(v, v * 10);
        }
        let h = s.merged();
        let d = HistData::of(&h);
        let mut other = HistData::default();
        other.merge(&d);
        let p = Pcts::of(&other.hist());
        assert_eq!(p.count, 1000);
        assert!((4990..=5010).contains(&p.p50), "{}", p.p50);
        assert_eq!(p.points.len(), 42);
    }
}
