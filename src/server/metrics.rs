//! The broker's figures as the stats endpoint shows them: the hub that
//! holds every core's counters, each core's periodic tick (gauges that need
//! the core's data structures, executor lag, the latency snapshot), the
//! publish-to-deliver latency recorder, and the one model of the figures
//! that `/metrics` (Prometheus, encoded with prometheus-client) and
//! `/stats` (JSON) are both made from.
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
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use smallvec::SmallVec;

use super::core::Core;
use super::stats::{snake_case, CoreStats, DropCause, Reject};
use crate::codec::{DisconnectReasonCode, QoS};

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

// ---------------------------------------------------------------------------
// The model both expositions are made from
// ---------------------------------------------------------------------------

/// A metric family's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// Quantiles with a sum and a count. prometheus-client has no summary
    /// type, so these families are written by [`write_summary`].
    Summary,
}

/// One sample's value.
#[derive(Debug, Clone)]
pub enum Value {
    Int(u64),
    Float(f64),
    /// Sum, count and per-bucket (not cumulative) counts, `+Inf` last.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
    /// Sum, count and `(quantile, value)` pairs.
    Summary {
        sum: f64,
        count: u64,
        quantiles: Vec<(f64, f64)>,
    },
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// One metric family. Counter names end in `_total`.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

struct Builder {
    families: Vec<Family>,
}

impl Builder {
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        self.families.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        self.families.last_mut().expect("just pushed")
    }

    /// One sample per core of a plain per-core figure.
    fn per_core(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        get: impl Fn(&CoreStats) -> u64,
    ) {
        let family = self.family(name, help, kind);
        for (id, stats) in hub.cores.iter().enumerate() {
            family.samples.push(Sample {
                labels: vec![("core", id.to_string())],
                value: Value::Int(get(stats)),
            });
        }
    }

    /// A per-core figure scaled to a float (nanoseconds to seconds).
    fn per_core_seconds(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        get: impl Fn(&CoreStats) -> u64,
    ) {
        let family = self.family(name, help, Kind::Gauge);
        for (id, stats) in hub.cores.iter().enumerate() {
            family.samples.push(Sample {
                labels: vec![("core", id.to_string())],
                value: Value::Float(get(stats) as f64 / 1e9),
            });
        }
    }

    fn by_qos(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        get: impl Fn(&CoreStats) -> &[super::stats::Counter; 3],
    ) {
        let family = self.family(name, help, Kind::Counter);
        for (id, stats) in hub.cores.iter().enumerate() {
            for (qos, counter) in get(stats).iter().enumerate() {
                family.samples.push(Sample {
                    labels: vec![("core", id.to_string()), ("qos", qos.to_string())],
                    value: Value::Int(counter.get()),
                });
            }
        }
    }

    /// Per core and reason code, only the codes that occurred.
    fn by_code(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        get: impl Fn(&CoreStats) -> &[super::stats::Counter; 256],
    ) {
        let family = self.family(name, help, Kind::Counter);
        for (id, stats) in hub.cores.iter().enumerate() {
            for (code, counter) in get(stats).iter().enumerate() {
                let n = counter.get();
                if n == 0 {
                    continue;
                }
                let reason = DisconnectReasonCode::from_u8(code as u8)
                    .map_or_else(|| "unknown".to_string(), |r| snake_case(&format!("{r:?}")));
                family.samples.push(Sample {
                    labels: vec![
                        ("core", id.to_string()),
                        ("code", format!("0x{code:02X}")),
                        ("reason", reason),
                    ],
                    value: Value::Int(n),
                });
            }
        }
    }

    fn single(&mut self, name: &'static str, help: &'static str, kind: Kind, value: Value) {
        self.family(name, help, kind).samples.push(Sample {
            labels: Vec::new(),
            value,
        });
    }
}

/// The latest latency snapshot of each core, as the HTTP thread keeps it.
pub type Latest = Vec<Option<CoreSnapshot>>;

/// Every figure, from the counters now and the latest latency snapshots.
pub fn collect(hub: &StatsHub, latest: &Latest) -> Vec<Family> {
    let mut b = Builder {
        families: Vec::new(),
    };
    b.per_core(
        hub,
        "vane_connections_current",
        "Open client connections.",
        Kind::Gauge,
        |s| s.connections_current.get(),
    );
    b.per_core(
        hub,
        "vane_connections_moved_total",
        "Live connections this core handed, with their sessions, to the core that publishes to them (executor.follow_interval_ms).",
        Kind::Counter,
        |s| s.connections_moved_out.get(),
    );
    b.per_core(
        hub,
        "vane_core_busy_permille",
        "Thousandths of a CPU the core was busy, the higher of its last two follow intervals (0 when following is off).",
        Kind::Gauge,
        |s| s.busy_permille.get(),
    );
    b.per_core(
        hub,
        "vane_connections_accepted_total",
        "TCP connections accepted.",
        Kind::Counter,
        |s| s.connections_accepted.get(),
    );
    {
        let family = b.family(
            "vane_connections_rejected_total",
            "Connections closed before they were accepted, by reason (a CONNACK refusal code, the connection limit, the connect timeout, or a close before CONNECT).",
            Kind::Counter,
        );
        for (id, stats) in hub.cores.iter().enumerate() {
            for (index, counter) in stats.rejected.iter().enumerate() {
                let n = counter.get();
                if n == 0 {
                    continue;
                }
                if let Some(reason) = Reject::from_index(index) {
                    family.samples.push(Sample {
                        labels: vec![("core", id.to_string()), ("reason", reason.label())],
                        value: Value::Int(n),
                    });
                }
            }
        }
    }
    b.per_core(
        hub,
        "vane_connects_total",
        "CONNECTs accepted (CONNACK success).",
        Kind::Counter,
        |s| s.connects.get(),
    );
    b.by_code(
        hub,
        "vane_disconnects_total",
        "Connected clients that went away, by the reason code the connection ended with (0x80 also covers a lost connection).",
        |s| &s.disconnects,
    );
    b.by_code(
        hub,
        "vane_protocol_errors_total",
        "Connections ended for a protocol violation, by reason code.",
        |s| &s.protocol_errors_by,
    );
    b.per_core(
        hub,
        "vane_auth_failures_total",
        "CONNECTs refused for their credentials or authentication method.",
        Kind::Counter,
        |s| s.auth_failures.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_online",
        "Sessions with a live connection.",
        Kind::Gauge,
        |s| s.sessions_online.get(),
    );
    b.per_core(
        hub,
        "vane_connections_parked",
        "Idle connections parked: no task, their socket watched by the core's epoll set.",
        Kind::Gauge,
        |s| s.connections_parked.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_offline",
        "Persistent sessions without a connection.",
        Kind::Gauge,
        |s| s.sessions_offline.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_expired_total",
        "Offline sessions that expired.",
        Kind::Counter,
        |s| s.sessions_expired.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_evicted_total",
        "Offline sessions ended early, offline longest first, because the core held its share of max_offline_sessions.",
        Kind::Counter,
        |s| s.sessions_evicted.get(),
    );
    b.per_core(
        hub,
        "vane_subscriptions",
        "Subscriptions of the core's sessions.",
        Kind::Gauge,
        |s| s.subscriptions.get(),
    );
    b.per_core(
        hub,
        "vane_shared_subscriptions",
        "Shared subscriptions ($share/...) of the core's sessions.",
        Kind::Gauge,
        |s| s.shared_subscriptions.get(),
    );
    b.single(
        "vane_retained_messages",
        "Retained messages (every core holds a replica of all of them).",
        Kind::Gauge,
        Value::Int(
            hub.cores
                .iter()
                .map(|s| s.retained_messages.get())
                .max()
                .unwrap_or(0),
        ),
    );
    b.per_core(
        hub,
        "vane_retained_refused_total",
        "Retained messages for a new topic not stored because max_retained_messages was reached (they were still delivered), by the core that received them.",
        Kind::Counter,
        |s| s.retained_refused.get(),
    );
    b.by_qos(
        hub,
        "vane_messages_received_total",
        "PUBLISH packets received from clients, by QoS.",
        |s| &s.received_by_qos,
    );
    b.by_qos(
        hub,
        "vane_message_bytes_received_total",
        "Bytes of the PUBLISH packets received from clients, by QoS.",
        |s| &s.received_bytes_by_qos,
    );
    b.by_qos(
        hub,
        "vane_messages_sent_total",
        "PUBLISH packets written to clients, by QoS.",
        |s| &s.sent_by_qos,
    );
    b.by_qos(
        hub,
        "vane_message_bytes_sent_total",
        "Bytes of the PUBLISH packets written to clients, by QoS.",
        |s| &s.sent_bytes_by_qos,
    );
    b.per_core(
        hub,
        "vane_network_bytes_received_total",
        "Bytes read from client sockets.",
        Kind::Counter,
        |s| s.bytes_received.get(),
    );
    b.per_core(
        hub,
        "vane_network_bytes_sent_total",
        "Bytes written to client sockets.",
        Kind::Counter,
        |s| s.bytes_sent.get(),
    );
    {
        let family = b.family(
            "vane_messages_dropped_total",
            "Messages not delivered, by cause.",
            Kind::Counter,
        );
        for (id, stats) in hub.cores.iter().enumerate() {
            for cause in DropCause::ALL {
                family.samples.push(Sample {
                    labels: vec![("core", id.to_string()), ("cause", cause.label().into())],
                    value: Value::Int(stats.drops[cause as usize].get()),
                });
            }
        }
    }
    b.per_core(
        hub,
        "vane_wills_published_total",
        "Will messages published.",
        Kind::Counter,
        |s| s.wills_published.get(),
    );
    b.per_core(
        hub,
        "vane_inflight_messages",
        "Outbound QoS 1 and 2 messages awaiting acknowledgement.",
        Kind::Gauge,
        |s| s.inflight.get(),
    );
    b.per_core(
        hub,
        "vane_queued_messages",
        "Messages queued in sessions beyond the inflight window.",
        Kind::Gauge,
        |s| s.queued.get(),
    );
    b.per_core(
        hub,
        "vane_mailbox_messages_total",
        "Messages sent to other cores.",
        Kind::Counter,
        |s| s.mailbox_messages.get(),
    );
    b.per_core(
        hub,
        "vane_mailbox_batches_total",
        "Batches received from other cores.",
        Kind::Counter,
        |s| s.mailbox_batches.get(),
    );
    b.per_core(
        hub,
        "vane_mailbox_full_total",
        "Times a publisher waited because a mailbox to another core was full.",
        Kind::Counter,
        |s| s.mailbox_full.get(),
    );
    b.per_core_seconds(
        hub,
        "vane_executor_lag_seconds",
        "How late the core's 100 ms tick last woke.",
        |s| s.loop_lag_ns.get(),
    );
    b.per_core_seconds(
        hub,
        "vane_executor_lag_max_seconds",
        "The most the core's tick woke late in the last 10 to 20 seconds.",
        |s| s.loop_lag_max_ns.get(),
    );
    let now_ms = hub.started.elapsed().as_millis() as u64;
    b.per_core(
        hub,
        "vane_core_ready",
        "1 while the core accepts connections and its executor ticks.",
        Kind::Gauge,
        |s| u64::from(core_ready(s, now_ms)),
    );
    if hub.enabled {
        latency_families(&mut b, latest);
    }
    process_families(&mut b, hub);
    b.families
}

fn latency_families(b: &mut Builder, latest: &Latest) {
    {
        let family = b.family(
            "vane_publish_latency_seconds",
            "Publish-to-deliver latency inside the broker: PUBLISH decoded to its bytes written to a subscriber (sampled).",
            Kind::Histogram,
        );
        for snap in latest.iter().flatten() {
            let h = &snap.total;
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
            let mut below = 0;
            for le in LATENCY_BUCKETS {
                let upto = h.count_between(0, (le * 1e9) as u64);
                buckets.push((le, upto.saturating_sub(below)));
                below = upto;
            }
            buckets.push((f64::INFINITY, h.len().saturating_sub(below)));
            family.samples.push(Sample {
                labels: vec![("core", snap.core.to_string())],
                value: Value::Histogram {
                    sum: h.mean() * h.len() as f64 / 1e9,
                    count: h.len(),
                    buckets,
                },
            });
        }
    }
    let family = b.family(
        "vane_publish_latency_window_seconds",
        "Quantiles of publish-to-deliver latency over the last 10 to 20 seconds (HDR histogram, sampled).",
        Kind::Summary,
    );
    for snap in latest.iter().flatten() {
        let w = &snap.window;
        family.samples.push(Sample {
            labels: vec![("core", snap.core.to_string())],
            value: Value::Summary {
                sum: w.mean() * w.len() as f64 / 1e9,
                count: w.len(),
                quantiles: QUANTILES
                    .iter()
                    .map(|&q| (q, w.value_at_quantile(q) as f64 / 1e9))
                    .collect(),
            },
        });
    }
}

/// CPU, memory, descriptors and start time of this process, from /proc.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl ProcessFigures {
    pub fn read() -> ProcessFigures {
        // SAFETY: sysconf and getrlimit only read or write what they are given.
        let (ticks, page, max_fds) = unsafe {
            let mut limit: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur
            } else {
                0
            };
            (
                libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
                max,
            )
        };
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // Fields after the parenthesised command name; utime and
                // stime are the 14th and 15th fields of the whole line.
                let rest = &stat[stat.rfind(')')? + 2..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = fields.get(11)?.parse().ok()?;
                let stime: f64 = fields.get(12)?.parse().ok()?;
                Some((utime + stime) / ticks)
            })
            .unwrap_or(0.0);
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        ProcessFigures {
            cpu_seconds,
            rss_bytes,
            open_fds,
            max_fds,
        }
    }
}

fn process_families(b: &mut Builder, hub: &StatsHub) {
    let p = ProcessFigures::read();
    b.single(
        "process_cpu_seconds_total",
        "User and system CPU time of the process.",
        Kind::Counter,
        Value::Float(p.cpu_seconds),
    );
    b.single(
        "process_resident_memory_bytes",
        "Resident memory of the process.",
        Kind::Gauge,
        Value::Int(p.rss_bytes),
    );
    b.single(
        "process_open_fds",
        "Open file descriptors.",
        Kind::Gauge,
        Value::Int(p.open_fds),
    );
    b.single(
        "process_max_fds",
        "The open-files limit.",
        Kind::Gauge,
        Value::Int(p.max_fds),
    );
    b.single(
        "process_start_time_seconds",
        "When the broker started (Unix time).",
        Kind::Gauge,
        Value::Float(hub.started_unix),
    );
    b.single(
        "vane_uptime_seconds",
        "Seconds since the broker started.",
        Kind::Gauge,
        Value::Float(hub.started.elapsed().as_secs_f64()),
    );
    b.family(
        "vane_build_info",
        "The broker's version (the value is always 1).",
        Kind::Gauge,
    )
    .samples
    .push(Sample {
        labels: vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        value: Value::Int(1),
    });
}

// ---------------------------------------------------------------------------
// Prometheus exposition (prometheus-client) and JSON
// ---------------------------------------------------------------------------

/// The families as a prometheus-client collector.
#[derive(Debug)]
struct Exposition(Vec<Family>);

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let (name, kind) = match family.kind {
                // prometheus-client appends `_total` to counter samples.
                Kind::Counter => (
                    family.name.strip_suffix("_total").unwrap_or(family.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (family.name, MetricType::Gauge),
                Kind::Histogram => (family.name, MetricType::Histogram),
                Kind::Summary => continue,
            };
            let mut metric = encoder.encode_descriptor(name, family.help, None, kind)?;
            for sample in &family.samples {
                if sample.labels.is_empty() {
                    encode_value(family.kind, &sample.value, &mut metric)?;
                } else {
                    let mut labelled = metric.encode_family(&sample.labels)?;
                    encode_value(family.kind, &sample.value, &mut labelled)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    kind: Kind,
    value: &Value,
    encoder: &mut MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match value {
        Value::Int(v) if kind == Kind::Counter => {
            encoder.encode_counter::<NoLabelSet, _, u64>(v, None)
        }
        Value::Int(v) => encoder.encode_gauge(&i64::try_from(*v).unwrap_or(i64::MAX)),
        Value::Float(v) if kind == Kind::Counter => {
            encoder.encode_counter::<NoLabelSet, _, f64>(v, None)
        }
        Value::Float(v) => encoder.encode_gauge(v),
        Value::Histogram {
            sum,
            count,
            buckets,
        } => encoder.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None),
        Value::Summary { .. } => Ok(()),
    }
}

/// Appends a summary family in the text format (the same in OpenMetrics
/// and in 0.0.4 for summaries).
fn write_summary(out: &mut String, family: &Family) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} summary", family.name);
    for sample in &family.samples {
        let Value::Summary {
            sum,
            count,
            quantiles,
        } = &sample.value
        else {
            continue;
        };
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let labels = labels.join(",");
        let sep = if labels.is_empty() { "" } else { "," };
        for (q, v) in quantiles {
            let _ = writeln!(out, "{}{{{labels}{sep}quantile=\"{q}\"}} {v}", family.name);
        }
        let _ = writeln!(out, "{}_sum{{{labels}}} {sum}", family.name);
        let _ = writeln!(out, "{}_count{{{labels}}} {count}", family.name);
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// OpenMetrics text (what prometheus-client writes, plus the summaries),
/// for scrapers that ask for `application/openmetrics-text`.
pub fn openmetrics(families: Vec<Family>) -> String {
    let summaries: Vec<Family> = families
        .iter()
        .filter(|f| f.kind == Kind::Summary)
        .cloned()
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(families)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        .expect("writing to a String");
    for family in &summaries {
        write_summary(&mut out, family);
    }
    prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String");
    out
}

/// The Prometheus text format 0.0.4, for everyone else (curl, promtool):
/// the same encoding, with counter families named as their samples are
/// (`_total`) and without the OpenMetrics `# EOF` line.
pub fn prometheus_text(families: Vec<Family>) -> String {
    let counters: Vec<&'static str> = families
        .iter()
        .filter(|f| f.kind == Kind::Counter)
        .filter_map(|f| f.name.strip_suffix("_total"))
        .collect();
    let om = openmetrics(families);
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The same figures as JSON: each family with its samples and their sum,
/// and per core its readiness and latency quantiles.
pub fn json(hub: &StatsHub, families: &[Family], latest: &Latest) -> serde_json::Value {
    use serde_json::{json, Map, Value as J};
    let mut metrics = Map::new();
    for family in families {
        let mut total = 0.0;
        let samples: Vec<J> = family
            .samples
            .iter()
            .map(|s| {
                let labels: Map<String, J> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), J::String(v.clone())))
                    .collect();
                let value = match &s.value {
                    Value::Int(v) => {
                        total += *v as f64;
                        json!(v)
                    }
                    Value::Float(v) => {
                        total += v;
                        json!(v)
                    }
                    Value::Histogram { sum, count, .. } => {
                        total += *count as f64;
                        json!({ "sum": sum, "count": count })
                    }
                    Value::Summary {
                        sum,
                        count,
                        quantiles,
                    } => {
                        total += *count as f64;
                        let q: Map<String, J> = quantiles
                            .iter()
                            .map(|(q, v)| (q.to_string(), json!(v)))
                            .collect();
                        json!({ "sum": sum, "count": count, "quantiles": q })
                    }
                };
                json!({ "labels": labels, "value": value })
            })
            .collect();
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        metrics.insert(
            family.name.to_string(),
            json!({ "type": kind, "help": family.help, "total": total, "samples": samples }),
        );
    }
    let now_ms = hub.started.elapsed().as_millis() as u64;
    let cores: Vec<J> = hub
        .cores
        .iter()
        .enumerate()
        .map(|(id, s)| {
            let latency = latest.get(id).and_then(Option::as_ref).map(|snap| {
                let q: Map<String, J> = QUANTILES
                    .iter()
                    .map(|q| {
                        (
                            format!("p{}", q * 100.0),
                            json!(snap.window.value_at_quantile(*q) as f64 / 1e3),
                        )
                    })
                    .collect();
                json!({ "window_samples": snap.window.len(), "total_samples": snap.total.len(), "quantiles_us": q })
            });
            json!({
                "core": id,
                "ready": core_ready(s, now_ms),
                "connections_current": s.connections_current.get(),
                "sessions_online": s.sessions_online.get(),
                "sessions_offline": s.sessions_offline.get(),
                "connections_parked": s.connections_parked.get(),
                "messages_received": s.messages_received.get(),
                "messages_sent": s.messages_sent.get(),
                "executor_lag_us": s.loop_lag_ns.get() as f64 / 1e3,
                "latency": latency,
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": hub.started.elapsed().as_secs_f64(),
        "ready": hub.ready(),
        "metrics": metrics,
        "cores": cores,
    })
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

    #[test]
    fn text_format_names_counter_families_like_their_samples() {
        let hub = StatsHub::new(2, true);
        hub.cores[1].received(QoS::AtLeastOnce, 12);
        let text = prometheus_text(collect(&hub, &vec![None, None]));
        assert!(text.contains("# TYPE vane_messages_received_total counter\n"));
        assert!(text.contains("vane_messages_received_total{core=\"1\",qos=\"1\"} 1\n"));
        assert!(text.contains("# TYPE vane_connections_current gauge\n"));
        assert!(!text.contains("# EOF"));
        let om = openmetrics(collect(&hub, &vec![None, None]));
        assert!(om.contains("# TYPE vane_messages_received counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn latency_histogram_buckets_add_up_to_the_count() {
        let mut recorder = LatencyRecorder::new();
        for micros in [5u64, 20, 80, 400, 3_000, 20_000_000] {
            recorder.record(micros * 1_000);
        }
        let snap = recorder.snapshot(0);
        let hub = StatsHub::new(1, true);
        let families = collect(&hub, &vec![Some(snap)]);
        let hist = families
            .iter()
            .find(|f| f.name == "vane_publish_latency_seconds")
            .unwrap();
        let Value::Histogram { count, buckets, .. } = &hist.samples[0].value else {
            panic!("a histogram")
        };
        assert_eq!(*count, 6);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 6);
        assert_eq!(buckets.last().unwrap().1, 1, "20 s is above the last bound");
    }
}
