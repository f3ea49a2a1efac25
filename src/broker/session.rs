//! The per-client session state machine (MQTT 5.0 §4.1, §4.3, §4.4, §4.9):
//! outbound QoS 1 and 2 flows, the inflight window, the bounded queue, and
//! the inbound QoS 2 exactly-once state.
//!
//! Sans-IO: it takes packet ids, messages and `Instant`s, and writes encoded
//! packets into the caller's `BytesMut`. Owns: packet id allocation, what is
//! inflight, what is queued and what is dropped (and why). Does not own: the
//! socket, timers, routing, or subscriptions (the runtime keeps those in the
//! trie replicas and in [`SessionState::subscriptions`]).
//!
//! Handing messages to the session and writing them out is in
//! `session/deliver.rs`; the acknowledgement flows (outbound QoS 1 and 2,
//! inbound QoS 2) are in `session/acks.rs`; the queue, its bound and the
//! drop accounting are in `session/queue.rs`; taking up open flows on a new
//! connection is in `session/resend.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU16;
use std::time::Instant;

use ahash::AHashMap;
use bytes::BytesMut;

use super::inflight::InflightWindow;
use super::message::SubscriptionEntry;
use crate::codec::{Packet, PacketId, ProtocolVersion, PubRel, TopicFilter, TopicName};
use queue::{Pending, Queue};

mod acks;
mod deliver;
mod queue;
mod resend;

pub use queue::{DropCounts, DropPolicy, DropReason, QueueBound};

/// Per-session limits, from the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Outbound inflight window for 3.x clients.
    pub max_inflight: u16,
    /// Cap on a 5.0 client's Receive Maximum, which is its inflight window
    /// (65,535 when the client sends none). It bounds what one
    /// acknowledgement out of order may cost (the window's entries after it
    /// move up, 192 bytes each) and the entries one subscriber holds.
    pub max_inflight_v5: u16,
    /// Messages queued beyond the inflight window, online or offline.
    pub max_queued: usize,
    /// Whether QoS 0 messages are queued for an offline session.
    pub queue_qos0_offline: bool,
    pub drop_policy: DropPolicy,
    /// Bytes of unsent output above which QoS 0 is dropped and QoS 1/2
    /// wait in the queue: the slow-consumer cap.
    pub write_buffer_cap: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: 32,
            max_inflight_v5: 1024,
            max_queued: 1000,
            queue_qos0_offline: false,
            drop_policy: DropPolicy::DropNewest,
            write_buffer_cap: 1 << 20,
        }
    }
}

/// What happened to a message handed to [`SessionState::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    Written,
    Queued,
    Dropped(DropReason),
}

/// A protocol violation the session detected in an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// PUBACK, PUBREC or PUBCOMP for a packet id that is not awaiting it.
    #[error("acknowledgement for packet id {0} that is not inflight")]
    UnknownPacketId(u16),
}

/// Builds ahash hashers from one random seed per process: no per-map seed
/// to store (a session's subscription map is 32 bytes smaller), yet keys
/// a client chooses cannot be aimed at collisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSeeded;

impl std::hash::BuildHasher for ProcessSeeded {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static SEED: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        SEED.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// Who the session is talking to while it is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub version: ProtocolVersion,
    /// The client's Receive Maximum (65,535 when absent, and for 3.x).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (unlimited when absent).
    pub maximum_packet_size: u32,
    /// The client's Topic Alias Maximum: how many aliases the broker may
    /// set on PUBLISH packets to it (0 when absent, and for 3.x).
    pub topic_alias_maximum: u16,
}

/// Everything a session keeps between connections: what moves with a
/// client when it reconnects on another core.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub limits: SessionLimits,
    peer: Option<Peer>,
    /// Outbound QoS 1/2 messages awaiting acknowledgement, oldest first.
    inflight: InflightWindow<Pending>,
    /// The ids of the inflight entries at
    /// [`InflightStage::AwaitResend`](super::inflight::InflightStage::AwaitResend),
    /// oldest first: carried over from an earlier connection and resent as
    /// the window frees. Exactly those entries; they do not count against
    /// the window until they are sent. Boxed, and only while there are
    /// any: rare, and a session should be small (8 bytes, not 32).
    #[allow(clippy::box_collection)]
    resend: Option<Box<VecDeque<PacketId>>>,
    queue: Queue,
    /// Inbound QoS 2 packet ids that got PUBREC and await PUBREL (no seed
    /// stored per set, as for the subscriptions below).
    inbound_qos2: HashSet<u16, ProcessSeeded>,
    /// The session's subscriptions, so they survive a reconnect and can be
    /// re-registered when the session moves between cores.
    pub subscriptions: HashMap<TopicFilter, SubscriptionEntry, ProcessSeeded>,
    pub drops: DropCounts,
    /// Outbound Topic Aliases this connection's client knows (5.0
    /// §3.3.2.3.4). They live as long as the network connection
    /// ([MQTT-3.3.2-7]), so attach and detach clear them. Boxed on first
    /// use: most clients allow none, and idle sessions should be small.
    out_aliases: Option<Box<AHashMap<TopicName, NonZeroU16>>>,
}

impl SessionState {
    pub fn new(limits: SessionLimits) -> Self {
        SessionState {
            limits,
            peer: None,
            inflight: InflightWindow::default(),
            resend: None,
            queue: Queue::default(),
            inbound_qos2: HashSet::default(),
            subscriptions: HashMap::default(),
            drops: DropCounts::default(),
            out_aliases: None,
        }
    }

    pub fn is_online(&self) -> bool {
        self.peer.is_some()
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Number of inbound QoS 2 messages awaiting PUBREL: what the server's
    /// Receive Maximum bounds ([MQTT-3.3.4-9]).
    pub fn inbound_qos2_len(&self) -> usize {
        self.inbound_qos2.len()
    }

    /// Unacknowledged PUBLISHes sent on this connection (and PUBRELs
    /// awaiting PUBCOMP): what the window bounds.
    fn in_window(&self) -> usize {
        self.inflight.len() - self.resend.as_ref().map_or(0, |ids| ids.len())
    }

    fn window(&self) -> usize {
        match self.peer {
            // 5.0: the client's Receive Maximum ([MQTT-3.3.4-9]), within
            // the configured cap; 3.x has no such field.
            Some(peer) if peer.version == ProtocolVersion::V5 => {
                usize::from(peer.receive_maximum.min(self.limits.max_inflight_v5).max(1))
            }
            Some(_) => usize::from(self.limits.max_inflight.max(1)),
            None => 0,
        }
    }

    /// The connection is being replaced by another (a takeover that keeps
    /// the session): nothing is written until the next [`attach`], and
    /// nothing queued is dropped.
    ///
    /// [`attach`]: SessionState::attach
    pub fn suspend(&mut self) {
        self.peer = None;
        self.out_aliases = None;
    }

    /// The connection is gone; the session stays. QoS 0 messages are only
    /// kept if the configuration queues QoS 0 for offline sessions, and the
    /// queue is brought within `max_queued` (see `Queue::went_offline`).
    pub fn detach(&mut self, now: Instant) {
        self.peer = None;
        self.out_aliases = None;
        self.queue.went_offline(&self.limits, now, &mut self.drops);
    }
}

fn write_pubrel(version: ProtocolVersion, pid: PacketId, out: &mut BytesMut) {
    encode_infallible(&Packet::PubRel(PubRel::new(pid)), version, out);
}

/// Encodes a small control packet whose size cannot exceed the limit.
pub(crate) fn encode_infallible(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    packet
        .encode(version, out)
        .expect("control packets are far below the size limit");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::{DeliveryPlan, Message, SubscriptionEntry};
    use crate::codec::{Decoder, Publish, QoS, QosPid, SubscriptionOptions, TopicName};
    use bytes::Bytes;

    pub(super) fn message(qos: QoS, payload: &'static [u8]) -> Message {
        let mut publish = Publish::new(
            TopicName::try_from("t").unwrap(),
            Bytes::from_static(payload),
        );
        publish.qos_pid = QosPid::new(qos, PacketId::new(9)).unwrap();
        Message::from_publish(&publish, None, Instant::now())
    }

    pub(super) fn plan(message: &Message) -> DeliveryPlan {
        let entry = SubscriptionEntry {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                ..Default::default()
            },
            identifier: None,
        };
        DeliveryPlan::new(message, &entry, false)
    }

    pub(super) fn peer(receive_maximum: u16) -> Peer {
        Peer {
            version: ProtocolVersion::V5,
            receive_maximum,
            maximum_packet_size: u32::MAX,
            topic_alias_maximum: 0,
        }
    }

    pub(super) fn decode_all(out: &mut BytesMut) -> Vec<Packet> {
        let decoder = Decoder::new(ProtocolVersion::V5, u32::MAX);
        let mut packets = Vec::new();
        while let Some(p) = decoder.decode(out).unwrap() {
            packets.push(p);
        }
        assert!(out.is_empty());
        packets
    }

    pub(super) fn pids(packets: &[Packet]) -> Vec<(u16, bool)> {
        packets
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => (p.pid().map_or(0, |id| id.get()), p.dup),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    pub(super) fn send(
        s: &mut SessionState,
        qos: QoS,
        now: Instant,
        out: &mut BytesMut,
    ) -> DeliverOutcome {
        let m = message(qos, b"x");
        let p = plan(&m);
        s.deliver(&m, p, now, out, QueueBound::Configured)
    }

    /// The window is a 5.0 client's Receive Maximum, not the 3.x
    /// `max_inflight` (here 32), up to the `max_inflight_v5` cap; a 3.x
    /// client gets `max_inflight`.
    #[test]
    fn the_window_is_receive_maximum_for_5_0_and_max_inflight_for_3_x() {
        let now = Instant::now();
        let window = |limits: SessionLimits, peer: Peer| {
            let mut s = SessionState::new(limits);
            let mut out = BytesMut::new();
            s.attach(peer, now, &mut out);
            for _ in 0..300 {
                send(&mut s, QoS::AtLeastOnce, now, &mut out);
            }
            s.inflight_len()
        };
        let limits = SessionLimits::default();
        assert_eq!(limits.max_inflight, 32);
        assert_eq!(window(limits, peer(100)), 100);
        assert_eq!(window(limits, peer(u16::MAX)), 300);
        let capped = SessionLimits {
            max_inflight_v5: 64,
            ..limits
        };
        assert_eq!(window(capped, peer(100)), 64);
        let v311 = Peer {
            version: ProtocolVersion::V3_1_1,
            ..peer(u16::MAX)
        };
        assert_eq!(window(limits, v311), 32);
    }

    /// A backlog built while the client was online and reading (QoS 1
    /// beyond the bound: back-pressure bounded it) is brought within
    /// `max_queued` when the session goes offline, counted as
    /// `queue_full`; the oldest stay under DropNewest.
    #[test]
    fn an_online_backlog_is_bounded_when_the_session_goes_offline() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits {
            max_queued: 2,
            ..SessionLimits::default()
        });
        let mut out = BytesMut::new();
        s.attach(peer(1), now, &mut out);
        for payload in [b"1", b"2", b"3", b"4", b"5", b"6"] {
            let m = message(QoS::AtLeastOnce, payload);
            let p = plan(&m);
            s.deliver(&m, p, now, &mut out, QueueBound::Unbounded);
        }
        assert_eq!((s.inflight_len(), s.queued_len()), (1, 5));
        s.detach(now);
        assert_eq!((s.queued_len(), s.drops.queue_full), (2, 3));
        out.clear();
        s.attach(peer(10), now, &mut out);
        let payloads: Vec<_> = decode_all(&mut out)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p.payload,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            payloads,
            [&b"1"[..], b"2", b"3"],
            "resent, then the two kept"
        );
    }
}
