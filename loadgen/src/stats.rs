//! Measurements: HDR histograms, per-publisher sequence tracking (loss,
//! duplicates, reordering), error tallies, and the live counters the
//! progress line reads.
//!
//! Each core owns a [`CoreStats`] (no sharing, no locks on the hot path)
//! and hands it to the main thread at the end, where they are merged.
//! [`Live`] is the only state shared while running: relaxed atomics written
//! by one core and read once a second by the main thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histograms record microseconds, up to an hour, at 3 significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Records `ns` nanoseconds as microseconds (at least 1, at most an hour).
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).clamp(1, HIST_MAX_US));
}

/// A latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// What one message did to a stream's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    /// Skipped ahead: the sequence numbers in between are missing for now.
    Gap,
    /// Filled an earlier gap.
    Reordered,
    Duplicate,
}

/// Tracks one publisher's sequence as one subscriber sees it.
///
/// Missing numbers are kept as sorted half-open ranges, so a late message
/// can be told apart from a duplicate exactly.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    next: u64,
    gaps: Vec<(u64, u64)>,
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Missing numbers forgotten because too many gaps were open.
    forgotten: u64,
}

const MAX_GAPS: usize = 4096;

impl Stream {
    pub fn observe(&mut self, seq: u64) -> Seen {
        self.received += 1;
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
            return Seen::InOrder;
        }
        if seq > self.next {
            if self.gaps.len() >= MAX_GAPS {
                let (a, b) = self.gaps.remove(0);
                self.forgotten += b - a;
            }
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            self.unique += 1;
            return Seen::Gap;
        }
        // seq < next: a late arrival or a duplicate.
        let i = self.gaps.partition_point(|&(_, end)| end <= seq);
        match self.gaps.get(i).copied() {
            Some((start, end)) if start <= seq => {
                match (seq == start, seq + 1 == end) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, end));
                    }
                }
                self.unique += 1;
                self.reordered += 1;
                Seen::Reordered
            }
            _ => {
                self.duplicates += 1;
                Seen::Duplicate
            }
        }
    }

    /// Sequence numbers below the highest seen that never arrived.
    pub fn missing(&self) -> u64 {
        self.forgotten + self.gaps.iter().map(|(a, b)| b - a).sum::<u64>()
    }

    /// One past the highest sequence number seen.
    pub fn high(&self) -> u64 {
        self.next
    }
}

/// Per-publisher totals, summed over the subscribers that saw it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PublisherStats {
    pub publisher: u32,
    /// Messages this process published (0 when the publisher is elsewhere).
    pub sent: u64,
    /// QoS 1/2 messages the broker acknowledged.
    pub acked: u64,
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Gaps seen by subscribers (numbers below the highest seen that never came).
    pub gaps: u64,
    /// Expected deliveries minus unique deliveries, where that is known.
    pub lost: u64,
}

impl PublisherStats {
    fn absorb_stream(&mut self, s: &Stream) {
        self.received += s.received;
        self.unique += s.unique;
        self.duplicates += s.duplicates;
        self.reordered += s.reordered;
        self.gaps += s.missing();
    }

    pub fn merge(&mut self, o: &PublisherStats) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.received += o.received;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.gaps += o.gaps;
    }
}

/// Everything one core measured. Sent to the main thread when it finishes.
#[derive(Debug, Clone)]
pub struct CoreStats {
    pub e2e: Histogram<u64>,
    pub slow_e2e: Histogram<u64>,
    pub ack: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub lag: Histogram<u64>,
    pub tool_lag: Histogram<u64>,
    pub subscribe: Histogram<u64>,
    pub retained_done: Histogram<u64>,
    pub connect_failures: BTreeMap<String, u64>,
    pub disconnects: BTreeMap<String, u64>,
    pub ack_failures: BTreeMap<String, u64>,
    pub publishers: HashMap<u32, PublisherStats>,
    pub attempted: u64,
    pub connected: u64,
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    pub slow_received: u64,
    pub retained_received: u64,
    /// Payloads without our header, or from another run.
    pub foreign: u64,
    /// QoS 1/2 messages still unacknowledged when the run ended.
    pub unacked: u64,
    /// First connect attempt and last CONNACK, clock nanoseconds (0: none).
    pub first_attempt_ns: u64,
    pub last_connected_ns: u64,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            e2e: new_hist(),
            slow_e2e: new_hist(),
            ack: new_hist(),
            connect: new_hist(),
            lag: new_hist(),
            tool_lag: new_hist(),
            subscribe: new_hist(),
            retained_done: new_hist(),
            connect_failures: BTreeMap::new(),
            disconnects: BTreeMap::new(),
            ack_failures: BTreeMap::new(),
            publishers: HashMap::new(),
            attempted: 0,
            connected: 0,
            sent: 0,
            acked: 0,
            received: 0,
            slow_received: 0,
            retained_received: 0,
            foreign: 0,
            unacked: 0,
            first_attempt_ns: 0,
            last_connected_ns: 0,
        }
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl CoreStats {
    pub fn count(map: &mut BTreeMap<String, u64>, reason: impl Into<String>) {
        *map.entry(reason.into()).or_default() += 1;
    }

    /// Folds one subscriber's streams into the per-publisher totals.
    pub fn absorb_streams(&mut self, streams: &HashMap<u32, Stream>) {
        for (&publisher, s) in streams {
            let p = self
                .publishers
                .entry(publisher)
                .or_insert_with(|| PublisherStats {
                    publisher,
                    ..PublisherStats::default()
                });
            p.absorb_stream(s);
        }
    }

    pub fn publisher(&mut self, publisher: u32) -> &mut PublisherStats {
        self.publishers
            .entry(publisher)
            .or_insert_with(|| PublisherStats {
                publisher,
                ..PublisherStats::default()
            })
    }

    pub fn merge(&mut self, o: &CoreStats) {
        for (a, b) in [
            (&mut self.e2e, &o.e2e),
            (&mut self.slow_e2e, &o.slow_e2e),
            (&mut self.ack, &o.ack),
            (&mut self.connect, &o.connect),
            (&mut self.lag, &o.lag),
            (&mut self.tool_lag, &o.tool_lag),
            (&mut self.subscribe, &o.subscribe),
            (&mut self.retained_done, &o.retained_done),
        ] {
            a.add(b).expect("same histogram bounds");
        }
        add_counts(&mut self.connect_failures, &o.connect_failures);
        add_counts(&mut self.disconnects, &o.disconnects);
        add_counts(&mut self.ack_failures, &o.ack_failures);
        for (id, p) in &o.publishers {
            self.publishers
                .entry(*id)
                .or_insert_with(|| PublisherStats {
                    publisher: *id,
                    ..PublisherStats::default()
                })
                .merge(p);
        }
        self.attempted += o.attempted;
        self.connected += o.connected;
        self.sent += o.sent;
        self.acked += o.acked;
        self.received += o.received;
        self.slow_received += o.slow_received;
        self.retained_received += o.retained_received;
        self.foreign += o.foreign;
        self.unacked += o.unacked;
        if o.first_attempt_ns != 0
            && (self.first_attempt_ns == 0 || o.first_attempt_ns < self.first_attempt_ns)
        {
            self.first_attempt_ns = o.first_attempt_ns;
        }
        self.last_connected_ns = self.last_connected_ns.max(o.last_connected_ns);
    }
}

/// Counters one core updates while running and the main thread samples.
#[derive(Debug, Default)]
pub struct Live {
    pub open: AtomicU64,
    pub connect_failed: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    /// Latencies recorded since the main thread last took them.
    pub interval: Mutex<Option<Histogram<u64>>>,
}

impl Live {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds a core's interval histogram to the shared slot.
    pub fn push_interval(&self, h: &Histogram<u64>) {
        let mut slot = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(acc) => acc.add(h).expect("same histogram bounds"),
            None => *slot = Some(h.clone()),
        }
    }

    pub fn take_interval(&self) -> Option<Histogram<u64>> {
        self.interval
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream() {
        let mut s = Stream::default();
        for i in 0..10 {
            assert_eq!(s.observe(i), Seen::InOrder);
        }
        assert_eq!(
            (s.unique, s.duplicates, s.reordered, s.missing()),
            (10, 0, 0, 0)
        );
    }

    #[test]
    fn gaps_reorders_and_duplicates() {
        let mut s = Stream::default();
        assert_eq!(s.observe(0), Seen::InOrder);
        assert_eq!(s.observe(5), Seen::Gap); // 1..5 missing
        assert_eq!(s.missing(), 4);
        assert_eq!(s.observe(3), Seen::Reordered);
        assert_eq!(s.observe(1), Seen::Reordered);
        assert_eq!(s.observe(4), Seen::Reordered);
        assert_eq!(s.missing(), 1); // 2
        assert_eq!(s.observe(3), Seen::Duplicate);
        assert_eq!(s.observe(5), Seen::Duplicate);
        assert_eq!(s.observe(2), Seen::Reordered);
        assert_eq!(s.missing(), 0);
        assert_eq!(s.observe(6), Seen::InOrder);
        assert_eq!(
            (s.received, s.unique, s.duplicates, s.reordered),
            (9, 7, 2, 4)
        );
        assert_eq!(s.high(), 7);
    }

    #[test]
    fn percentiles_are_ordered() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            record_ns(&mut h, v * 1000);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 10_000);
        assert!(p.min_us <= p.p50_us && p.p50_us <= p.p90_us && p.p90_us <= p.p99_us);
        assert!(p.p99_us <= p.p999_us && p.p999_us <= p.max_us);
        assert!((4990..=5010).contains(&p.p50_us));
    }

    #[test]
    fn core_stats_merge_adds_up() {
        let mut a = CoreStats::default();
        let mut b = CoreStats::default();
        a.sent = 3;
        b.sent = 4;
        CoreStats::count(&mut b.disconnects, "reset");
        b.publisher(1).sent = 4;
        a.merge(&b);
        assert_eq!(a.sent, 7);
        assert_eq!(a.disconnects["reset"], 1);
        assert_eq!(a.publishers[&1].sent, 4);
    }
}
