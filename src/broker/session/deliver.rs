//! Handing a message to a session and writing it out: written at once
//! while the inflight window and the write buffer allow, queued when not,
//! dropped (and counted) when it cannot be kept; and moving queued messages
//! into the window as it frees ([`SessionState::pump`]).
//!
//! Owns: the choice between writing, queueing and dropping, new packet ids
//! for outbound QoS 1 and 2, the client's Maximum Packet Size
//! ([MQTT-3.1.2-25]) and outbound Topic Aliases (5.0 §3.3.2.3.4). Does not
//! own: the queue's bound and drop policy (`session/queue.rs`), ending
//! flows on acknowledgements (`session/acks.rs`), or resending after a
//! reconnect (`session/resend.rs`).

use std::num::NonZeroU16;
use std::time::Instant;

use bytes::BytesMut;

use super::queue::Pending;
use super::{DeliverOutcome, DropReason, Peer, QueueBound, SessionState};
use crate::broker::message::{DeliveryPlan, Message};
use crate::codec::{Delivery, QoS, QosPid, TopicName};

impl SessionState {
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

    pub(super) fn write_publish(
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_all, message, peer, pids, plan, send};
    use super::*;
    use crate::broker::session::{AckError, DropCounts, DropPolicy, SessionLimits};
    use crate::codec::{Packet, PacketId, Publish};
    use bytes::Bytes;
    use std::time::Duration;

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
