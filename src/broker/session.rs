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
//! The queue, its bound and the drop accounting are in `session/queue.rs`;
//! taking up open flows on a new connection is in `session/resend.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU16;
use std::time::Instant;

use ahash::AHashMap;
use bytes::BytesMut;

use super::inflight::{InflightStage, InflightWindow};
use super::message::{DeliveryPlan, Message, SubscriptionEntry};
use crate::codec::{
    Delivery, Packet, PacketId, ProtocolVersion, PubRel, PubRelReasonCode, QoS, QosPid,
    TopicFilter, TopicName,
};
use queue::{Pending, Queue};

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
    /// The ids of the inflight entries at [`InflightStage::AwaitResend`],
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

    /// Hands a message to the session: written now if the window and the
    /// write buffer allow, queued if not, dropped (and counted) when it
    /// cannot be kept.
    pub fn deliver(
        &mut self,
        message: &Message,
        plan: DeliveryPlan,
        now: Instant,
        out: &mut BytesMut,
        bound: QueueBound,
    ) -> DeliverOutcome {
        if message.is_expired(now) {
            return self.dropped(DropReason::Expired);
        }
        // The message is cloned (its shared buffers referenced once more)
        // only when the session keeps it: queued or inflight. A QoS 0
        // delivery written at once borrows it.
        if self.peer.is_none() {
            if plan.qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline {
                return self.dropped(DropReason::Offline);
            }
            return self.enqueue(
                Pending {
                    message: message.clone(),
                    plan,
                },
                bound,
                now,
            );
        }
        let buffer_full = out.len() >= self.limits.write_buffer_cap;
        if plan.qos == QoS::AtMostOnce {
            if buffer_full {
                return self.dropped(DropReason::SlowConsumer);
            }
            return match self.write_publish(message, &plan, QosPid::AtMostOnce, false, now, out) {
                Ok(()) => DeliverOutcome::Written,
                Err(reason) => DeliverOutcome::Dropped(reason),
            };
        }
        let pending = Pending {
            message: message.clone(),
            plan,
        };
        if buffer_full
            || !self.queue.is_empty()
            || self.resend.is_some()
            || self.in_window() >= self.window()
        {
            return self.enqueue(pending, bound, now);
        }
        self.send_with_new_pid(pending, now, out)
    }

    fn dropped(&mut self, reason: DropReason) -> DeliverOutcome {
        self.drops.count(reason);
        DeliverOutcome::Dropped(reason)
    }

    fn enqueue(&mut self, pending: Pending, bound: QueueBound, now: Instant) -> DeliverOutcome {
        match self
            .queue
            .push_bounded(pending, bound, &self.limits, now, &mut self.drops)
        {
            Ok(()) => DeliverOutcome::Queued,
            Err(reason) => DeliverOutcome::Dropped(reason),
        }
    }

    fn send_with_new_pid(
        &mut self,
        pending: Pending,
        now: Instant,
        out: &mut BytesMut,
    ) -> DeliverOutcome {
        let pid = self.inflight.allocate_pid();
        let qos_pid = QosPid::new(pending.plan.qos, Some(pid)).expect("QoS 1 or 2");
        match self.write_publish(&pending.message, &pending.plan, qos_pid, false, now, out) {
            Ok(()) => {
                self.inflight.push(pid, pending);
                DeliverOutcome::Written
            }
            Err(reason) => DeliverOutcome::Dropped(reason),
        }
    }

    /// Moves messages into the window while it has room and the write
    /// buffer is under its cap: first the entries waiting to be resent
    /// after a reconnect, then queued messages.
    pub fn pump(&mut self, now: Instant, out: &mut BytesMut) {
        if self.peer.is_none() {
            return;
        }
        while self.in_window() < self.window() && out.len() < self.limits.write_buffer_cap {
            if self.resend.is_some() {
                self.resend_next(now, out);
                continue;
            }
            let Some(pending) = self.queue.pop_front() else {
                break;
            };
            if pending.message.is_expired(now) {
                self.drops.count(DropReason::Expired);
                continue;
            }
            if pending.plan.qos == QoS::AtMostOnce {
                let _ = self.write_publish(
                    &pending.message,
                    &pending.plan,
                    QosPid::AtMostOnce,
                    false,
                    now,
                    out,
                );
            } else {
                self.send_with_new_pid(pending, now, out);
            }
        }
    }

    fn write_publish(
        &mut self,
        message: &Message,
        plan: &DeliveryPlan,
        qos_pid: QosPid,
        dup: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), DropReason> {
        let peer = self.peer.expect("written only while online");
        let template = &message.template;
        let (topic_alias, new_alias) = self.outbound_alias(peer, template.topic());
        let delivery = Delivery {
            qos_pid,
            dup,
            retain: plan.retain,
            message_expiry_interval: message.remaining_expiry(now),
            subscription_identifiers: &plan.subscription_ids,
            topic_alias,
            send_topic: topic_alias.is_none() || new_alias,
        };
        if template.delivery_len(peer.version, &delivery) > peer.maximum_packet_size as usize {
            // [MQTT-3.1.2-25]: never send more than the client allows.
            self.drops.count(DropReason::TooLarge);
            return Err(DropReason::TooLarge);
        }
        template
            .encode(peer.version, &delivery, out)
            .map_err(|_| DropReason::TooLarge)?;
        if let (Some(alias), true) = (topic_alias, new_alias) {
            // Known to the client only once a PUBLISH setting it is written.
            self.out_aliases
                .get_or_insert_with(Box::default)
                .insert(template.topic().clone(), alias);
        }
        Ok(())
    }

    /// The Topic Alias for a PUBLISH of `topic` to `peer`, and whether it
    /// is new (sent with the topic name to set it) or known (the topic name
    /// is sent empty). Aliases are handed out first come, up to the
    /// client's Topic Alias Maximum ([MQTT-3.3.2-8]); later topics go
    /// without one.
    fn outbound_alias(&self, peer: Peer, topic: &TopicName) -> (Option<NonZeroU16>, bool) {
        if peer.topic_alias_maximum == 0 || !peer.version.is_v5() {
            return (None, false);
        }
        let known = self.out_aliases.as_deref();
        if let Some(&alias) = known.and_then(|aliases| aliases.get(topic)) {
            return (Some(alias), false);
        }
        let next = known.map_or(0, |aliases| aliases.len()) + 1;
        if next > usize::from(peer.topic_alias_maximum) {
            return (None, false);
        }
        (NonZeroU16::new(next as u16), true)
    }

    /// Ends the inflight flow of `pid` if it is at `stage` with `qos`. An
    /// acknowledgement of a PUBLISH still waiting to be resent (the client
    /// had it from an earlier connection) ends its flow too.
    fn end_inflight(
        &mut self,
        pid: PacketId,
        stage: InflightStage,
        qos: QoS,
    ) -> Result<(), AckError> {
        let mut waiting = false;
        let ended = self.inflight.end_if(pid, |e| {
            waiting = e.stage == InflightStage::AwaitResend;
            let at = e.stage == stage || (waiting && stage == InflightStage::AwaitAck);
            at && e.pending.plan.qos == qos
        });
        if ended && waiting {
            self.forget_resend(pid);
        }
        ended
            .then_some(())
            .ok_or(AckError::UnknownPacketId(pid.get()))
    }

    /// PUBACK: the QoS 1 flow ends ([MQTT-4.3.2-4]... the id is free again).
    pub fn on_puback(
        &mut self,
        pid: PacketId,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), AckError> {
        self.end_inflight(pid, InflightStage::AwaitAck, QoS::AtLeastOnce)?;
        self.pump(now, out);
        Ok(())
    }

    /// PUBREC: answer with PUBREL ([MQTT-4.3.3-4]); a failure reason ends
    /// the flow (5.0 §4.3.3).
    pub fn on_pubrec(
        &mut self,
        pid: PacketId,
        failed: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), AckError> {
        let version = self.peer.map_or(ProtocolVersion::V5, |p| p.version);
        match self.inflight.get_mut(pid) {
            Some(entry) if entry.pending.plan.qos == QoS::ExactlyOnce => {
                let waiting = entry.stage == InflightStage::AwaitResend;
                if !failed {
                    entry.stage = InflightStage::AwaitComplete;
                }
                if waiting {
                    self.forget_resend(pid);
                }
            }
            _ => {
                if version.is_v5() {
                    let mut rel = PubRel::new(pid);
                    rel.reason = PubRelReasonCode::PacketIdentifierNotFound;
                    encode_infallible(&Packet::PubRel(rel), version, out);
                }
                return Err(AckError::UnknownPacketId(pid.get()));
            }
        }
        if failed {
            self.inflight.end_if(pid, |_| true);
            self.pump(now, out);
            return Ok(());
        }
        write_pubrel(version, pid, out);
        Ok(())
    }

    /// PUBCOMP: the QoS 2 flow ends.
    pub fn on_pubcomp(
        &mut self,
        pid: PacketId,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), AckError> {
        self.end_inflight(pid, InflightStage::AwaitComplete, QoS::ExactlyOnce)?;
        self.pump(now, out);
        Ok(())
    }

    /// An inbound QoS 2 PUBLISH. Returns true the first time its packet id
    /// is seen, false for a redelivery before PUBREL: the message is routed
    /// only once ([MQTT-4.3.3-10] 5.0 / [MQTT-4.3.3-2] 3.1.1 method B).
    pub fn on_inbound_qos2(&mut self, pid: PacketId) -> bool {
        self.inbound_qos2.insert(pid.get())
    }

    /// PUBREL: the id may be used again. Returns false if it was unknown,
    /// which 5.0 answers with PUBCOMP 0x92.
    pub fn on_pubrel(&mut self, pid: PacketId) -> bool {
        self.inbound_qos2.remove(&pid.get())
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
    use crate::broker::message::SubscriptionEntry;
    use crate::codec::{Decoder, Publish, SubscriptionOptions, TopicName};
    use bytes::Bytes;
    use std::time::Duration;

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

    /// 5.0 §4.9: no more than Receive Maximum unacknowledged QoS>0 PUBLISH
    /// packets are sent ([MQTT-4.9.0-2]); the rest wait and flow on PUBACK.
    #[test]
    fn receive_maximum_bounds_the_inflight_window() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        s.attach(peer(2), now, &mut out);
        for _ in 0..4 {
            send(&mut s, QoS::AtLeastOnce, now, &mut out);
        }
        assert_eq!(pids(&decode_all(&mut out)), [(1, false), (2, false)]);
        assert_eq!((s.inflight_len(), s.queued_len()), (2, 2));
        s.on_puback(PacketId::new(1).unwrap(), now, &mut out)
            .unwrap();
        assert_eq!(pids(&decode_all(&mut out)), [(3, false)]);
        assert_eq!(
            s.on_puback(PacketId::new(1).unwrap(), now, &mut out),
            Err(AckError::UnknownPacketId(1))
        );
    }

    /// Acknowledgements in any order end their flows through the session
    /// (the window's own tests, in `inflight.rs`, cover the id lap).
    #[test]
    fn acknowledgements_in_any_order_end_their_flows() {
        let now = Instant::now();
        let limits = SessionLimits {
            max_queued: 100_000,
            write_buffer_cap: usize::MAX,
            max_inflight_v5: u16::MAX,
            ..SessionLimits::default()
        };
        let mut s = SessionState::new(limits);
        let mut out = BytesMut::new();
        s.attach(peer(u16::MAX), now, &mut out);
        let puback = |s: &mut SessionState, pid: u16, out: &mut BytesMut| {
            s.on_puback(PacketId::new(pid).unwrap(), now, out)
        };
        // 1,000 inflight, acknowledged from the back, then odd ids first.
        for _ in 0..1000 {
            send(&mut s, QoS::AtLeastOnce, now, &mut out);
        }
        assert_eq!(s.inflight_len(), 1000);
        out.clear();
        for pid in (501..=1000).rev() {
            puback(&mut s, pid, &mut out).unwrap();
        }
        for pid in (1..=500)
            .filter(|p| p % 2 == 1)
            .chain((1..=500).filter(|p| p % 2 == 0))
        {
            puback(&mut s, pid, &mut out).unwrap();
        }
        assert_eq!(s.inflight_len(), 0);
        assert_eq!(
            puback(&mut s, 7, &mut out),
            Err(AckError::UnknownPacketId(7))
        );
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

    /// Inbound QoS 2: a PUBLISH redelivered before PUBREL is not routed
    /// twice ([MQTT-4.3.3-10]).
    #[test]
    fn inbound_qos2_duplicates_are_detected_until_pubrel() {
        let mut s = SessionState::new(SessionLimits::default());
        let pid = PacketId::new(5).unwrap();
        assert!(s.on_inbound_qos2(pid));
        assert!(!s.on_inbound_qos2(pid));
        assert!(s.on_pubrel(pid));
        assert!(!s.on_pubrel(pid));
        assert!(s.on_inbound_qos2(pid));
    }

    #[test]
    fn full_queue_drops_and_counts_per_policy() {
        let now = Instant::now();
        let limits = SessionLimits {
            max_queued: 2,
            ..SessionLimits::default()
        };
        let mut s = SessionState::new(limits);
        let mut out = BytesMut::new();
        for _ in 0..3 {
            send(&mut s, QoS::AtLeastOnce, now, &mut out);
        }
        assert_eq!(s.queued_len(), 2);
        assert_eq!(s.drops.queue_full, 1);
        let mut s = SessionState::new(SessionLimits {
            drop_policy: DropPolicy::DropOldest,
            ..limits
        });
        for _ in 0..3 {
            send(&mut s, QoS::AtLeastOnce, now, &mut out);
        }
        assert_eq!((s.queued_len(), s.drops.queue_full), (2, 1));
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

    /// QoS 0 is not queued for offline sessions unless configured.
    #[test]
    fn offline_qos0_is_dropped_by_default() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        assert_eq!(
            send(&mut s, QoS::AtMostOnce, now, &mut out),
            DeliverOutcome::Dropped(DropReason::Offline)
        );
        let mut s = SessionState::new(SessionLimits {
            queue_qos0_offline: true,
            ..Default::default()
        });
        assert_eq!(
            send(&mut s, QoS::AtMostOnce, now, &mut out),
            DeliverOutcome::Queued
        );
    }

    /// 5.0 §3.3.2.3.3: an expired message is not delivered; the expiry
    /// interval sent is what is left of it.
    #[test]
    fn messages_expire_while_queued() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        let mut m = message(QoS::AtLeastOnce, b"x");
        m.expires_at = Some(now + Duration::from_secs(10));
        let p = plan(&m);
        s.deliver(&m, p.clone(), now, &mut out, QueueBound::Configured);
        s.deliver(
            &message(QoS::AtLeastOnce, b"y"),
            p,
            now,
            &mut out,
            QueueBound::Configured,
        );
        s.attach(peer(10), now + Duration::from_secs(4), &mut out);
        let packets = decode_all(&mut out);
        let Packet::Publish(first) = &packets[0] else {
            panic!()
        };
        assert_eq!(first.properties.message_expiry_interval, Some(6));
        s.detach(now);
        let mut m2 = m;
        m2.expires_at = Some(now + Duration::from_secs(1));
        let p2 = plan(&m2);
        s.deliver(&m2, p2, now, &mut out, QueueBound::Configured);
        s.on_puback(PacketId::new(1).unwrap(), now, &mut out)
            .unwrap();
        s.attach(peer(10), now + Duration::from_secs(5), &mut out);
        assert_eq!(s.drops.expired, 1);
    }

    /// [MQTT-3.1.2-25]: a PUBLISH larger than the client's Maximum Packet
    /// Size is dropped, not sent, and counted as `too_large`, at QoS 1 and
    /// QoS 0.
    #[test]
    fn oversized_publish_is_dropped_for_the_client() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        s.attach(
            Peer {
                maximum_packet_size: 16,
                ..peer(10)
            },
            now,
            &mut out,
        );
        let m = message(QoS::AtLeastOnce, b"0123456789abcdef");
        let p = plan(&m);
        assert_eq!(
            s.deliver(&m, p, now, &mut out, QueueBound::Configured),
            DeliverOutcome::Dropped(DropReason::TooLarge)
        );
        assert!(out.is_empty());
        assert_eq!(s.inflight_len(), 0);
        let m = message(QoS::AtMostOnce, b"0123456789abcdef");
        let p = plan(&m);
        assert_eq!(
            s.deliver(&m, p, now, &mut out, QueueBound::Configured),
            DeliverOutcome::Dropped(DropReason::TooLarge)
        );
        assert_eq!(
            s.drops,
            DropCounts {
                too_large: 2,
                ..DropCounts::default()
            },
            "each counted once, as too_large"
        );
    }

    /// A slow consumer: QoS 0 beyond the write-buffer cap is dropped and
    /// counted, QoS 1 waits in the queue.
    #[test]
    fn write_buffer_cap_drops_qos0_and_queues_qos1() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits {
            write_buffer_cap: 8,
            ..Default::default()
        });
        let mut out = BytesMut::new();
        s.attach(peer(10), now, &mut out);
        assert_eq!(
            send(&mut s, QoS::AtMostOnce, now, &mut out),
            DeliverOutcome::Written
        );
        assert_eq!(
            send(&mut s, QoS::AtMostOnce, now, &mut out),
            DeliverOutcome::Written
        );
        assert_eq!(
            send(&mut s, QoS::AtMostOnce, now, &mut out),
            DeliverOutcome::Dropped(DropReason::SlowConsumer)
        );
        assert_eq!(
            send(&mut s, QoS::AtLeastOnce, now, &mut out),
            DeliverOutcome::Queued
        );
        out.clear();
        s.pump(now, &mut out);
        assert_eq!(pids(&decode_all(&mut out)), [(1, false)]);
    }

    /// 5.0 §3.3.2.3.4: with a client Topic Alias Maximum, the first PUBLISH
    /// of a topic sets an alias with the name, later ones send the alias
    /// alone; aliases beyond the maximum are not used, and a reconnect
    /// starts afresh ([MQTT-3.3.2-7], [MQTT-3.3.2-8]).
    #[test]
    fn outbound_topic_aliases_up_to_the_client_maximum() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        let aliasing = Peer {
            topic_alias_maximum: 1,
            ..peer(10)
        };
        s.attach(aliasing, now, &mut out);
        let on = |topic: &str, qos: QoS| {
            let mut publish = Publish::new(TopicName::try_from(topic).unwrap(), Bytes::new());
            publish.qos_pid = QosPid::new(qos, PacketId::new(9)).unwrap();
            Message::from_publish(&publish, None, now)
        };
        for (topic, qos) in [
            ("a", QoS::AtMostOnce),
            ("a", QoS::AtLeastOnce),
            ("b", QoS::AtMostOnce),
        ] {
            let m = on(topic, qos);
            let p = plan(&m);
            s.deliver(&m, p, now, &mut out, QueueBound::Configured);
        }
        let seen: Vec<(String, Option<u16>)> = decode_all(&mut out)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => (
                    if p.topic.is_empty() {
                        String::new()
                    } else {
                        p.topic.as_str().to_string()
                    },
                    p.properties.topic_alias.map(NonZeroU16::get),
                ),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a".to_string(), Some(1)),
                (String::new(), Some(1)),
                ("b".to_string(), None)
            ]
        );
        s.detach(now);
        s.attach(aliasing, now, &mut out);
        let Packet::Publish(resent) = &decode_all(&mut out)[0] else {
            panic!()
        };
        assert_eq!(
            resent.topic.as_str(),
            "a",
            "a new connection gets the name again"
        );
        assert_eq!(resent.properties.topic_alias, NonZeroU16::new(1));
    }
}
