//! Per-core counters. Each core writes only its own block, so a counter is
//! an `AtomicU64` updated with a relaxed load and a relaxed store (one
//! writer: no lock-prefixed read-modify-write), and each core's block is
//! aligned to its own cache lines, so no line shared between cores is
//! written per message. The stats endpoint reads the blocks of every core
//! when it is scraped and adds them up.
//!
//! Owns: the counters' names and meaning, and the single-writer contract.
//! Does not own: aggregation across cores or exposition (`metrics.rs`,
//! `http.rs`), or gauges' periodic refresh (`metrics.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::QoS;

/// One figure of one core. Only the owning core calls [`Counter::set`],
/// [`Counter::add`] or [`Counter::inc`]; anyone may read it.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Single-writer store: only the owning core writes.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed)
    }

    /// Single-writer add: a plain load and store, never a locked RMW.
    #[inline]
    pub fn add(&self, n: u64) {
        self.set(self.get().wrapping_add(n))
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    /// For gauges kept up to date by their core (never below zero).
    #[inline]
    pub fn dec(&self) {
        self.set(self.get().saturating_sub(1))
    }
}

/// Why a message was not delivered to a subscriber (or to anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    QueueFull = 0,
    Expired = 1,
    TooLarge = 2,
    SlowConsumer = 3,
    /// QoS 0 for an offline session that does not queue QoS 0.
    Offline = 4,
    /// A PUBLISH that matched no subscription at all.
    NoSubscribers = 5,
}

impl DropCause {
    pub const ALL: [DropCause; 6] = [
        DropCause::QueueFull,
        DropCause::Expired,
        DropCause::TooLarge,
        DropCause::SlowConsumer,
        DropCause::Offline,
        DropCause::NoSubscribers,
    ];

    /// The `cause` label value.
    pub fn label(self) -> &'static str {
        match self {
            DropCause::QueueFull => "queue_full",
            DropCause::Expired => "expired",
            DropCause::TooLarge => "too_large",
            DropCause::SlowConsumer => "slow_consumer",
            DropCause::Offline => "offline",
            DropCause::NoSubscribers => "no_subscribers",
        }
    }
}

/// Why a connection was closed before it was accepted. CONNACK refusals
/// are counted by their reason code (0x80 and above), the others by these
/// low indexes, which no CONNACK refusal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Closed at accept: the per-core connection limit was reached.
    ConnectionLimit,
    /// No CONNECT arrived within the connect timeout.
    ConnectTimeout,
    /// Closed (by the client, an error, a takeover) before CONNACK.
    ClosedBeforeConnect,
    /// Refused with this CONNACK reason code.
    Connack(crate::codec::ConnectReasonCode),
}

impl Reject {
    pub fn index(self) -> usize {
        match self {
            Reject::ConnectionLimit => 1,
            Reject::ConnectTimeout => 2,
            Reject::ClosedBeforeConnect => 3,
            Reject::Connack(code) => usize::from(code.as_u8()),
        }
    }

    /// The inverse of [`Reject::index`], for exposition.
    pub fn from_index(index: usize) -> Option<Reject> {
        match index {
            1 => Some(Reject::ConnectionLimit),
            2 => Some(Reject::ConnectTimeout),
            3 => Some(Reject::ClosedBeforeConnect),
            _ => u8::try_from(index)
                .ok()
                .and_then(crate::codec::ConnectReasonCode::from_u8)
                .filter(|code| code.is_error())
                .map(Reject::Connack),
        }
    }

    /// The `reason` label value.
    pub fn label(self) -> String {
        match self {
            Reject::ConnectionLimit => "connection_limit".into(),
            Reject::ConnectTimeout => "connect_timeout".into(),
            Reject::ClosedBeforeConnect => "closed_before_connect".into(),
            Reject::Connack(code) => snake_case(&format!("{code:?}")),
        }
    }
}

/// `NotAuthorized` -> `not_authorized`: reason-code names as label values.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn counters<const N: usize>() -> [Counter; N] {
    std::array::from_fn(|_| Counter::default())
}

/// What one core has done since it started, and gauges its periodic tick
/// refreshes. Aligned so that no other core's block or other data shares
/// its cache lines.
#[repr(align(128))]
#[derive(Debug)]
pub struct CoreStats {
    pub connections_accepted: Counter,
    /// Connections refused, whatever the reason (see `rejected`).
    pub connections_rejected: Counter,
    pub connections_closed: Counter,
    /// Open TCP connections (a gauge the core keeps exact).
    pub connections_current: Counter,
    /// CONNECTs accepted with CONNACK 0.
    pub connects: Counter,
    /// Protocol errors, whatever the reason code (see `protocol_errors_by`).
    pub protocol_errors: Counter,
    /// PUBLISH messages received from clients, all QoS.
    pub messages_received: Counter,
    /// PUBLISH messages written to clients, all QoS.
    pub messages_sent: Counter,
    pub wills_published: Counter,
    pub sessions_expired: Counter,
    /// Offline sessions ended early to stay within `max_offline_sessions`.
    pub sessions_evicted: Counter,
    /// Retained PUBLISHes for a new topic received on this core and not
    /// stored because the store held `max_retained_messages` (the messages
    /// were still delivered).
    pub retained_refused: Counter,
    pub mailbox_messages: Counter,
    pub mailbox_batches: Counter,
    /// Times a publisher had to wait because a mailbox to another core was
    /// over its high-water mark.
    pub mailbox_full: Counter,
    /// CONNECTs refused for their credentials or authentication method.
    pub auth_failures: Counter,
    /// Bytes read from and written to client sockets (every packet).
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// By QoS (index 0, 1, 2): messages and payload bytes.
    pub received_by_qos: [Counter; 3],
    pub received_bytes_by_qos: [Counter; 3],
    pub sent_by_qos: [Counter; 3],
    pub sent_bytes_by_qos: [Counter; 3],
    /// By [`DropCause`].
    pub drops: [Counter; 6],
    /// By [`Reject::index`].
    pub rejected: [Counter; 256],
    /// By DISCONNECT reason code (what the connection ended with).
    pub disconnects: [Counter; 256],
    /// By reason code.
    pub protocol_errors_by: [Counter; 256],

    // Gauges refreshed by the core's tick (see `metrics::tick`).
    pub sessions_online: Counter,
    pub sessions_offline: Counter,
    /// Idle connections parked (see `parking.rs`).
    pub connections_parked: Counter,
    pub subscriptions: Counter,
    pub shared_subscriptions: Counter,
    pub retained_messages: Counter,
    pub inflight: Counter,
    pub queued: Counter,
    /// How late the core's 100 ms tick woke, last time and the most in the
    /// last ten seconds (nanoseconds).
    pub loop_lag_ns: Counter,
    pub loop_lag_max_ns: Counter,
    /// 1 while the core's accept loop runs.
    pub accepting: Counter,
    /// Live connections this core handed to another (see `migrate.rs`).
    pub connections_moved_out: Counter,
    /// Moves a review wanted but did not make: this core or the target
    /// was at or above `follow_max_load_pct` busy, the connection received
    /// more than `follow_max_messages` in the interval, or the target was
    /// at `max_connections_per_core`.
    pub moves_declined: Counter,
    /// Thousandths of one CPU the core was busy, the higher of its last
    /// two follow intervals (see `affinity.rs`; 0 while following is off).
    pub busy_permille: Counter,
    /// When the core last ticked, in milliseconds since the broker started.
    pub last_tick_ms: Counter,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            connections_accepted: Counter::default(),
            connections_rejected: Counter::default(),
            connections_closed: Counter::default(),
            connections_current: Counter::default(),
            connects: Counter::default(),
            protocol_errors: Counter::default(),
            messages_received: Counter::default(),
            messages_sent: Counter::default(),
            wills_published: Counter::default(),
            sessions_expired: Counter::default(),
            sessions_evicted: Counter::default(),
            retained_refused: Counter::default(),
            mailbox_messages: Counter::default(),
            mailbox_batches: Counter::default(),
            mailbox_full: Counter::default(),
            auth_failures: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            received_by_qos: counters(),
            received_bytes_by_qos: counters(),
            sent_by_qos: counters(),
            sent_bytes_by_qos: counters(),
            drops: counters(),
            rejected: counters(),
            disconnects: counters(),
            protocol_errors_by: counters(),
            sessions_online: Counter::default(),
            sessions_offline: Counter::default(),
            connections_parked: Counter::default(),
            subscriptions: Counter::default(),
            shared_subscriptions: Counter::default(),
            retained_messages: Counter::default(),
            inflight: Counter::default(),
            queued: Counter::default(),
            loop_lag_ns: Counter::default(),
            loop_lag_max_ns: Counter::default(),
            accepting: Counter::default(),
            connections_moved_out: Counter::default(),
            moves_declined: Counter::default(),
            busy_permille: Counter::default(),
            last_tick_ms: Counter::default(),
        }
    }
}

impl CoreStats {
    /// A PUBLISH received from a client.
    #[inline]
    pub fn received(&self, qos: QoS, payload: usize) {
        self.messages_received.inc();
        self.received_by_qos[qos as usize].inc();
        self.received_bytes_by_qos[qos as usize].add(payload as u64);
    }

    /// A PUBLISH written to a client's output.
    #[inline]
    pub fn sent(&self, qos: QoS, payload: usize) {
        self.messages_sent.inc();
        self.sent_by_qos[qos as usize].inc();
        self.sent_bytes_by_qos[qos as usize].add(payload as u64);
    }

    #[inline]
    pub fn dropped(&self, cause: DropCause, n: u64) {
        if n > 0 {
            self.drops[cause as usize].add(n);
        }
    }

    /// Moves a session's drop counts into the core's counters.
    #[inline]
    pub fn drain_drops(&self, drops: &mut crate::broker::session::DropCounts) {
        if *drops == Default::default() {
            return;
        }
        let d = std::mem::take(drops);
        self.dropped(DropCause::QueueFull, u64::from(d.queue_full));
        self.dropped(DropCause::Expired, u64::from(d.expired));
        self.dropped(DropCause::TooLarge, u64::from(d.too_large));
        self.dropped(DropCause::SlowConsumer, u64::from(d.slow_consumer));
        self.dropped(DropCause::Offline, u64::from(d.offline));
    }

    pub fn reject(&self, reason: Reject) {
        self.connections_rejected.inc();
        self.rejected[reason.index()].inc();
        if let Reject::Connack(code) = reason {
            use crate::codec::ConnectReasonCode as C;
            if matches!(
                code,
                C::BadUserNameOrPassword | C::NotAuthorized | C::BadAuthenticationMethod
            ) {
                self.auth_failures.inc();
            }
        }
    }

    /// A copy of the main counters, by name (for the shutdown log line).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("connections_accepted", self.connections_accepted.get()),
            ("connections_rejected", self.connections_rejected.get()),
            ("connections_closed", self.connections_closed.get()),
            ("protocol_errors", self.protocol_errors.get()),
            ("messages_received", self.messages_received.get()),
            ("messages_sent", self.messages_sent.get()),
            ("wills_published", self.wills_published.get()),
            ("sessions_expired", self.sessions_expired.get()),
            ("mailbox_messages", self.mailbox_messages.get()),
            ("mailbox_batches", self.mailbox_batches.get()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<CoreStats>(), 128);
        assert_eq!(std::mem::size_of::<CoreStats>() % 128, 0);
    }

    #[test]
    fn reject_indexes_round_trip() {
        use crate::codec::ConnectReasonCode;
        for reason in [
            Reject::ConnectionLimit,
            Reject::ConnectTimeout,
            Reject::ClosedBeforeConnect,
            Reject::Connack(ConnectReasonCode::NotAuthorized),
        ] {
            assert_eq!(Reject::from_index(reason.index()), Some(reason));
        }
        assert_eq!(Reject::from_index(0), None);
        assert_eq!(
            Reject::Connack(ConnectReasonCode::ClientIdentifierNotValid).label(),
            "client_identifier_not_valid"
        );
    }

    #[test]
    fn counters_add_and_gauges_do_not_wrap_below_zero() {
        let stats = CoreStats::default();
        stats.received(QoS::AtLeastOnce, 10);
        stats.received(QoS::AtLeastOnce, 5);
        assert_eq!(stats.received_by_qos[1].get(), 2);
        assert_eq!(stats.received_bytes_by_qos[1].get(), 15);
        stats.connections_current.dec();
        assert_eq!(stats.connections_current.get(), 0);
    }
}
