//! The broker's figures as the stats endpoint shows them: the hub that
//! holds every core's counters, each core's periodic tick (gauges that need
//! the core's data structures, executor lag, the latency snapshot), the
//! publish-to-deliver latency recorder, and the one model of the figures
//! that `/metrics` (Prometheus, encoded with prometheus-client) and
//! `/stats` (JSON) are both made from.
//!
//! The model and the catalogue of every exported figure are in
//! `metrics/families.rs`; encoding them (Prometheus text, OpenMetrics,
//! JSON) in `metrics/exposition.rs`.
//!
//! Owns: what is exported and under which name, and how per-core figures
//! are gathered without touching the hot path: counters are read from each
//! core's [`CoreStats`] (written only by that core), gauges are refreshed
//! by the core's tick once a second, and the latency histograms travel as
//! snapshots over a bounded channel the core never waits on. Does not own:
//! HTTP (`http.rs`), $SYS topics (`sys_topics.rs`) or the counters'
//! definitions (`stats.rs`).
//!
//! # Latency
//! Publish-to-deliver latency runs from the moment a PUBLISH was decoded
//! ([`Message::received_at`](crate::broker::message::Message)) to the moment
//! the write of the bytes carrying it to a subscriber completed. It is
//! sampled: each connection keeps the timestamps of up to
//! [`STAMPS_PER_WRITE`] messages handed straight to its output between two
//! writes; messages that waited in a session queue (inflight window full,
//! slow consumer, offline) and retained messages sent on subscribe are not
//! sampled, since their wait is the client's, not the broker's. Each core
//! records into its own HDR histograms (1 µs to 60 s, three significant
//! digits): one since start, exported as a Prometheus histogram, and a
//! rolling window of 10 to 20 seconds, exported as quantiles.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;
use smallvec::SmallVec;

use super::core::Core;

mod exposition;
mod families;

use super::stats::{CoreStats, Reject};
use crate::codec::{DisconnectReasonCode, QoS};
pub use exposition::{json, openmetrics, prometheus_text};
pub use families::{collect, Latest};

/// How often each core's tick runs (the sweeper's period).
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks between gauge refreshes and latency snapshots (one second).
const REFRESH_TICKS: u64 = 10;
/// Refreshes between rotations of the latency window and of the lag
/// maximum (ten seconds).
const WINDOW_REFRESHES: u64 = 10;
/// Messages per connection write whose latency is sampled.
pub const STAMPS_PER_WRITE: usize = 16;
/// Quantiles exported from the latency window.
pub const QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];
/// Upper bounds (seconds) of the Prometheus latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// A core is not ready if its tick has not run for this long.
pub const STALL: Duration = Duration::from_secs(2);

/// Every core's counters, shared (read-only but for each core's own block)
/// between the cores, the HTTP thread and the $SYS publisher.
#[derive(Debug)]
pub struct StatsHub {
    pub cores: Vec<Arc<CoreStats>>,
    pub started: Instant,
    pub started_unix: f64,
    /// Latency recording and snapshots (the `[stats] enabled` setting).
    pub enabled: bool,
    snapshots: Sender<CoreSnapshot>,
    receiver: Receiver<CoreSnapshot>,
}

impl StatsHub {
    pub fn new(ncores: usize, enabled: bool) -> Arc<StatsHub> {
        let (snapshots, receiver) = crossbeam_channel::bounded(ncores * 4);
        Arc::new(StatsHub {
            cores: (0..ncores).map(|_| Arc::default()).collect(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            enabled,
            snapshots,
            receiver,
        })
    }

    /// Where the latency snapshots of every core arrive.
    pub fn snapshots(&self) -> Receiver<CoreSnapshot> {
        self.receiver.clone()
    }

    /// The core-local half of core `id`'s telemetry.
    pub fn telemetry(&self, _id: usize) -> Telemetry {
        Telemetry {
            started: self.started,
            latency: self.enabled.then(|| RefCell::new(LatencyRecorder::new())),
            snapshots: self.enabled.then(|| self.snapshots.clone()),
            ticks: Cell::new(0),
            last_tick: Cell::new(Instant::now()),
            lag_max: Cell::new(0),
        }
    }

    /// Sum of one counter over every core.
    pub fn sum(&self, get: impl Fn(&CoreStats) -> u64) -> u64 {
        self.cores.iter().map(|c| get(c)).sum()
    }

    /// Whether every core is accepting and ticking.
    pub fn ready(&self) -> bool {
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.cores.iter().all(|c| core_ready(c, now_ms))
    }
}

fn core_ready(stats: &CoreStats, now_ms: u64) -> bool {
    stats.accepting.get() == 1
        && now_ms.saturating_sub(stats.last_tick_ms.get()) < STALL.as_millis() as u64
}

/// A core's latency histograms, sent to the HTTP thread once a second.
#[derive(Debug, Clone)]
pub struct CoreSnapshot {
    pub core: usize,
    /// Every sample since the core started.
    pub total: Histogram<u64>,
    /// The last 10 to 20 seconds.
    pub window: Histogram<u64>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds")
}

/// Publish-to-deliver latency of one core, in nanoseconds.
pub struct LatencyRecorder {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    /// Every complete window.
    history: Histogram<u64>,
}

impl LatencyRecorder {
    fn new() -> Self {
        LatencyRecorder {
            current: new_histogram(),
            previous: new_histogram(),
            history: new_histogram(),
        }
    }

    #[inline]
    fn record(&mut self, nanos: u64) {
        self.current.saturating_record(nanos);
    }

    fn snapshot(&self, core: usize) -> CoreSnapshot {
        let mut window = self.previous.clone();
        let _ = window.add(&self.current);
        let mut total = self.history.clone();
        let _ = total.add(&self.current);
        CoreSnapshot {
            core,
            total,
            window,
        }
    }

    fn rotate(&mut self) {
        let _ = self.history.add(&self.current);
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.reset();
    }
}

/// Timestamps of messages written to one connection's output since its
/// last write: kept on the connection's link, taken when the output is.
/// Heap-backed, so a link costs 24 bytes for them until it first carries
/// a sampled message, and nothing again once [`LatencyStamps::release`]d.
#[derive(Default, Debug)]
pub struct LatencyStamps(RefCell<Vec<Instant>>);

impl LatencyStamps {
    #[inline]
    pub fn push(&self, received_at: Instant) {
        let mut stamps = self.0.borrow_mut();
        if stamps.len() < STAMPS_PER_WRITE {
            if stamps.capacity() == 0 {
                stamps.reserve_exact(STAMPS_PER_WRITE);
            }
            stamps.push(received_at);
        }
    }

    /// The stamps of what is in the output now, for [`Telemetry::written`]
    /// once that output is written. The link keeps its capacity.
    #[inline]
    pub fn take(&self) -> SmallVec<[Instant; STAMPS_PER_WRITE]> {
        let mut stamps = self.0.borrow_mut();
        let taken = SmallVec::from_slice(&stamps);
        stamps.clear();
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Gives the capacity back (an idle connection parking).
    pub fn release(&self) {
        *self.0.borrow_mut() = Vec::new();
    }
}

/// The core-local half of a core's stats: its latency recorder and tick
/// state. Lives in the core; never leaves its thread.
pub struct Telemetry {
    started: Instant,
    latency: Option<RefCell<LatencyRecorder>>,
    snapshots: Option<Sender<CoreSnapshot>>,
    ticks: Cell<u64>,
    last_tick: Cell<Instant>,
    lag_max: Cell<u64>,
}

impl Default for Telemetry {
    /// Telemetry with latency recording off (until the runtime installs
    /// the hub's).
    fn default() -> Self {
        Telemetry {
            started: Instant::now(),
            latency: None,
            snapshots: None,
            ticks: Cell::new(0),
            last_tick: Cell::new(Instant::now()),
            lag_max: Cell::new(0),
        }
    }
}

impl Telemetry {
    /// Whether delivered messages should be stamped at all.
    #[inline]
    pub fn sampling(&self) -> bool {
        self.latency.is_some()
    }

    /// Records the latency of the messages whose bytes were just written.
    #[inline]
    pub fn written(&self, stamps: &[Instant]) {
        if stamps.is_empty() {
            return;
        }
        if let Some(latency) = &self.latency {
            let now = Instant::now();
            let mut latency = latency.borrow_mut();
            for at in stamps {
                latency.record(now.saturating_duration_since(*at).as_nanos() as u64);
            }
        }
    }
}

/// Counts the PUBLISH packets in `chunk`, a run of whole encoded packets
/// about to be written to a client, by QoS (bytes: whole packets). Reads
/// only each packet's fixed header.
#[inline]
pub fn count_sent(stats: &CoreStats, chunk: &[u8]) {
    stats.bytes_sent.add(chunk.len() as u64);
    let mut at = 0;
    while at < chunk.len() {
        let first = chunk[at];
        let mut len = 0usize;
        let mut shift = 0;
        let mut i = at + 1;
        loop {
            let Some(&byte) = chunk.get(i) else { return };
            len |= usize::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return;
            }
        }
        let end = i + len;
        if first >> 4 == 3 {
            let qos = match (first >> 1) & 3 {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            };
            stats.sent(qos, end - at);
        }
        at = end;
    }
}

/// A connection ended: count it by how, and log it.
pub fn connection_closed(
    core: &Core,
    close: &crate::broker::connection::Close,
    connected: bool,
    refusal: Option<crate::codec::ConnectReasonCode>,
    connect_timed_out: bool,
    client_id: Option<&str>,
    peer: std::net::SocketAddr,
) {
    let stats = &core.stats;
    stats.connections_closed.inc();
    stats.connections_current.dec();
    let code = close.reason.as_u8();
    if connected {
        stats.disconnects[usize::from(code)].inc();
    } else {
        let reason = match refusal {
            Some(code) => Reject::Connack(code),
            None if connect_timed_out => Reject::ConnectTimeout,
            None => Reject::ClosedBeforeConnect,
        };
        stats.reject(reason);
    }
    if is_protocol_error(close.reason) {
        stats.protocol_errors.inc();
        stats.protocol_errors_by[usize::from(code)].inc();
    }
    tracing::debug!(
        target: "vane::clients",
        client_id = client_id.unwrap_or(""),
        %peer,
        core = core.id,
        reason = %close.reason,
        detail = %close.detail,
        "client disconnected"
    );
}

/// Reason codes that mean the client broke the protocol (not a lost
/// connection, a takeover, a keepalive timeout or a shutdown).
fn is_protocol_error(reason: DisconnectReasonCode) -> bool {
    use DisconnectReasonCode as D;
    reason.is_error()
        && !matches!(
            reason,
            D::UnspecifiedError | D::SessionTakenOver | D::ServerShuttingDown | D::KeepAliveTimeout
        )
}

/// A client's CONNECT was accepted.
pub fn client_connected(core: &Core, client_id: &str, peer: std::net::SocketAddr) {
    core.stats.connects.inc();
    tracing::debug!(target: "vane::clients", client_id, %peer, core = core.id, "client connected");
}

/// The core's periodic work for stats, run by the sweeper every [`TICK`]:
/// executor lag each time; once a second the gauges that need the core's
/// data structures, the sessions' drop counts, and the latency snapshot.
pub fn tick(core: &Core) {
    let t = &core.telemetry;
    let stats = &core.stats;
    let now = Instant::now();
    let lag = now
        .saturating_duration_since(t.last_tick.get())
        .saturating_sub(TICK)
        .as_nanos() as u64;
    stats.loop_lag_ns.set(lag);
    t.lag_max.set(t.lag_max.get().max(lag));
    stats
        .loop_lag_max_ns
        .set(stats.loop_lag_max_ns.get().max(t.lag_max.get()));
    stats
        .last_tick_ms
        .set(now.saturating_duration_since(t.started).as_millis() as u64);
    let ticks = t.ticks.get() + 1;
    t.ticks.set(ticks);
    if ticks % REFRESH_TICKS == 0 {
        refresh_gauges(core);
        if let (Some(latency), Some(tx)) = (&t.latency, &t.snapshots) {
            let mut latency = latency.borrow_mut();
            match tx.try_send(latency.snapshot(core.id)) {
                Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
            }
            if ticks % (REFRESH_TICKS * WINDOW_REFRESHES) == 0 {
                latency.rotate();
            }
        }
        if ticks % (REFRESH_TICKS * WINDOW_REFRESHES) == 0 {
            stats.loop_lag_max_ns.set(t.lag_max.get());
            t.lag_max.set(0);
        }
    }
    t.last_tick.set(Instant::now());
}

/// Walks the core's sessions once: online and offline sessions, their
/// subscriptions, inflight and queued messages, and the drops they counted
/// outside the delivery path.
pub fn refresh_gauges(core: &Core) {
    let stats = &core.stats;
    let (mut online, mut offline, mut subs, mut shared, mut inflight, mut queued) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    {
        let mut sessions = core.sessions.borrow_mut();
        sessions.for_each_mut(|slot| {
            if slot.is_online() {
                online += 1;
            } else {
                offline += 1;
            }
            let state = &mut slot.state;
            subs += state.subscriptions.len() as u64;
            shared += state
                .subscriptions
                .keys()
                .filter(|f| f.shared().is_some())
                .count() as u64;
            inflight += state.inflight_len() as u64;
            queued += state.queued_len() as u64;
            stats.drain_drops(&mut state.drops);
        });
    }
    stats.sessions_online.set(online);
    stats.sessions_offline.set(offline);
    stats
        .connections_parked
        .set(core.parking.borrow().len() as u64);
    stats.subscriptions.set(subs);
    stats.shared_subscriptions.set(shared);
    stats.inflight.set(inflight);
    stats.queued.set(queued);
    stats
        .retained_messages
        .set(core.retained.borrow().len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_publish_packets_by_qos_from_their_fixed_headers() {
        let stats = CoreStats::default();
        // PUBLISH QoS 0 (5 bytes), PUBACK (4 bytes), PUBLISH QoS 1 (7 bytes).
        let chunk = [
            0x30, 3, 0, 1, b't', 0x40, 2, 0, 1, 0x32, 5, 0, 1, b't', 0, 7,
        ];
        count_sent(&stats, &chunk);
        assert_eq!(stats.sent_by_qos[0].get(), 1);
        assert_eq!(stats.sent_by_qos[1].get(), 1);
        assert_eq!(stats.sent_bytes_by_qos[0].get(), 5);
        assert_eq!(stats.sent_bytes_by_qos[1].get(), 7);
        assert_eq!(stats.messages_sent.get(), 2);
        assert_eq!(stats.bytes_sent.get(), chunk.len() as u64);
    }
}
