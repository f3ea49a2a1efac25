//! A session's queue: the messages waiting beyond its inflight window,
//! online or offline, the bound on them and what is dropped (and why).
//!
//! Owns: the queue's order, its bound (`max_queued` and the drop policy),
//! purging expired messages (5.0 Message Expiry, §3.3.2.3.3) so that dead
//! messages never hold a slot a live one is refused, and the drop counts.
//! Does not own: when a message is queued rather than written, or moving
//! queued messages into the window (both `SessionState`'s).

use std::collections::VecDeque;
use std::time::Instant;

use super::SessionLimits;
use crate::broker::message::{DeliveryPlan, Message};
use crate::codec::QoS;

/// What to do when a session's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "runtime", derive(serde::Deserialize))]
#[cfg_attr(feature = "runtime", serde(rename_all = "kebab-case"))]
pub enum DropPolicy {
    /// Refuse the new message (the queue keeps the oldest).
    #[default]
    DropNewest,
    /// Make room by discarding the oldest queued message.
    DropOldest,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    Expired,
    /// Larger than the client's Maximum Packet Size ([MQTT-3.1.2-25]).
    TooLarge,
    /// QoS 0 while the client's write buffer is over its cap.
    SlowConsumer,
    /// QoS 0 for an offline session that does not queue QoS 0.
    Offline,
}

/// Whether [`super::SessionState::deliver`] may queue beyond the
/// configured bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBound {
    /// At most `max_queued` messages wait; the drop policy applies beyond.
    Configured,
    /// Retained messages sent on subscribe: the retained store bounds them,
    /// and a new subscriber gets every one that matches.
    Unbounded,
}

/// Counters of what this session dropped, drained by the runtime after
/// every delivery and every stats tick, so 32 bits (saturating) are ample
/// and keep a session small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    pub queue_full: u32,
    pub expired: u32,
    pub too_large: u32,
    pub slow_consumer: u32,
    pub offline: u32,
}

impl DropCounts {
    pub(super) fn count(&mut self, reason: DropReason) {
        self.add(reason, 1);
    }

    pub(super) fn add(&mut self, reason: DropReason, n: usize) {
        let counter = match reason {
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::Expired => &mut self.expired,
            DropReason::TooLarge => &mut self.too_large,
            DropReason::SlowConsumer => &mut self.slow_consumer,
            DropReason::Offline => &mut self.offline,
        };
        *counter = counter.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

/// A message kept for one session, with how it is to be delivered.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) message: Message,
    pub(super) plan: DeliveryPlan,
}

/// The queue, boxed on first use: most sessions never queue, and a
/// session should be small. Once made it is kept while the session is
/// online (its buffer is reused) and freed when an offline session's queue
/// is empty.
#[derive(Debug, Clone, Default)]
pub(super) struct Queue(Option<Box<Backlog>>);

impl Queue {
    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |backlog| backlog.items.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn pop_front(&mut self) -> Option<Pending> {
        self.0.as_mut()?.pop_front()
    }

    /// See [`Backlog::push_bounded`].
    pub(super) fn push_bounded(
        &mut self,
        pending: Pending,
        bound: QueueBound,
        limits: &SessionLimits,
        now: Instant,
        drops: &mut DropCounts,
    ) -> Result<(), DropReason> {
        let backlog = self.0.get_or_insert_with(Box::default);
        backlog.push_bounded(pending, bound, limits, now, drops)
    }

    /// See [`Backlog::went_offline`].
    pub(super) fn went_offline(
        &mut self,
        limits: &SessionLimits,
        now: Instant,
        drops: &mut DropCounts,
    ) {
        if let Some(backlog) = self.0.as_mut() {
            backlog.went_offline(limits, now, drops);
            if backlog.items.is_empty() {
                self.0 = None;
            }
        }
    }
}

/// The queued messages, oldest first.
#[derive(Debug, Clone, Default)]
struct Backlog {
    items: VecDeque<Pending>,
    /// No queued message expires before this. A lower bound: it may be
    /// early once the message it came from has left (then one purge finds
    /// nothing and sets it right), never late. So a full queue is scanned
    /// for expired messages only when one may have expired.
    next_expiry: Option<Instant>,
}

impl Backlog {
    fn pop_front(&mut self) -> Option<Pending> {
        let pending = self.items.pop_front();
        if self.items.is_empty() {
            self.next_expiry = None;
        }
        pending
    }

    fn push_back(&mut self, pending: Pending) {
        if let Some(at) = pending.message.expires_at {
            self.next_expiry = Some(self.next_expiry.map_or(at, |next| next.min(at)));
        }
        self.items.push_back(pending);
    }

    /// Queues `pending`. Under [`QueueBound::Configured`] a full queue is
    /// first rid of its expired messages (counted as expired); if it is
    /// still full, the drop policy decides what goes (counted as
    /// `queue_full`): the new message (an error) or the oldest.
    fn push_bounded(
        &mut self,
        pending: Pending,
        bound: QueueBound,
        limits: &SessionLimits,
        now: Instant,
        drops: &mut DropCounts,
    ) -> Result<(), DropReason> {
        if bound == QueueBound::Configured && self.items.len() >= limits.max_queued {
            self.purge_expired(now, drops);
            if self.items.len() >= limits.max_queued {
                match limits.drop_policy {
                    DropPolicy::DropNewest => {
                        drops.count(DropReason::QueueFull);
                        return Err(DropReason::QueueFull);
                    }
                    DropPolicy::DropOldest => {
                        self.items.pop_front();
                        drops.count(DropReason::QueueFull);
                    }
                }
            }
        }
        self.push_back(pending);
        Ok(())
    }

    /// Drops the messages whose expiry has passed, counted as expired.
    fn purge_expired(&mut self, now: Instant, drops: &mut DropCounts) {
        match self.next_expiry {
            Some(next) if now >= next => {}
            _ => return,
        }
        let before = self.items.len();
        self.items.retain(|p| !p.message.is_expired(now));
        drops.add(DropReason::Expired, before - self.items.len());
        self.next_expiry = self.items.iter().filter_map(|p| p.message.expires_at).min();
    }

    /// The session went offline: QoS 0 goes unless `queue_qos0_offline`
    /// (counted as offline), expired messages go (counted as expired), and
    /// the bound and drop policy apply to the whole queue (the rest
    /// counted as `queue_full`), since while the client was online and
    /// reading its QoS 1/2 messages were queued beyond the bound
    /// (back-pressure bounded them instead).
    fn went_offline(&mut self, limits: &SessionLimits, now: Instant, drops: &mut DropCounts) {
        if !limits.queue_qos0_offline {
            let before = self.items.len();
            self.items.retain(|p| p.plan.qos != QoS::AtMostOnce);
            drops.add(DropReason::Offline, before - self.items.len());
        }
        self.purge_expired(now, drops);
        let over = self.items.len().saturating_sub(limits.max_queued);
        if over > 0 {
            match limits.drop_policy {
                DropPolicy::DropNewest => self.items.truncate(limits.max_queued),
                DropPolicy::DropOldest => drop(self.items.drain(..over)),
            }
            drops.add(DropReason::QueueFull, over);
        }
        if self.items.is_empty() {
            self.next_expiry = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::SubscriptionEntry;
    use crate::codec::{PacketId, Publish, QosPid, SubscriptionOptions, TopicName};
    use bytes::Bytes;
    use std::time::Duration;

    /// A QoS `qos` message with payload `n`, expiring at `expires_at`.
    fn pending(qos: QoS, n: u8, expires_at: Option<Instant>, now: Instant) -> Pending {
        let mut publish = Publish::new(TopicName::try_from("t").unwrap(), Bytes::from(vec![n]));
        publish.qos_pid = QosPid::new(qos, PacketId::new(1)).unwrap();
        let mut message = Message::from_publish(&publish, None, now);
        message.expires_at = expires_at;
        let entry = SubscriptionEntry {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                ..Default::default()
            },
            identifier: None,
        };
        let plan = DeliveryPlan::new(&message, &entry, false);
        Pending { message, plan }
    }

    fn payloads(queue: &Backlog) -> Vec<u8> {
        queue
            .items
            .iter()
            .map(|p| p.message.template.payload()[0])
            .collect()
    }

    fn limits(max_queued: usize, drop_policy: DropPolicy) -> SessionLimits {
        SessionLimits {
            max_queued,
            drop_policy,
            ..SessionLimits::default()
        }
    }

    /// 5.0 §3.3.2.3.3: an expired message is not delivered, so it must not
    /// hold a slot. A full queue whose messages have expired takes new ones
    /// under either policy; the dead ones are counted as expired, not as
    /// `queue_full`. Simulated time.
    #[test]
    fn expired_messages_give_their_slots_to_new_ones() {
        let t0 = Instant::now();
        for policy in [DropPolicy::DropNewest, DropPolicy::DropOldest] {
            let limits = limits(3, policy);
            let mut queue = Backlog::default();
            let mut drops = DropCounts::default();
            let soon = Some(t0 + Duration::from_secs(5));
            let later = Some(t0 + Duration::from_secs(50));
            for (n, expiry) in [(1, soon), (2, None), (3, soon)] {
                let p = pending(QoS::AtLeastOnce, n, expiry, t0);
                queue
                    .push_bounded(p, QueueBound::Configured, &limits, t0, &mut drops)
                    .unwrap();
            }
            // Before anything expired, the bound applies as configured.
            let p = pending(QoS::AtLeastOnce, 4, later, t0);
            let full = queue.push_bounded(p, QueueBound::Configured, &limits, t0, &mut drops);
            let (kept, want) = match policy {
                DropPolicy::DropNewest => (vec![1, 2, 3], Err(DropReason::QueueFull)),
                DropPolicy::DropOldest => (vec![2, 3, 4], Ok(())),
            };
            assert_eq!((full, payloads(&queue)), (want, kept.clone()), "{policy:?}");
            assert_eq!(drops.queue_full, 1);
            // Message 3 (and 1, if still there) expired: room without
            // dropping anything live.
            let t1 = t0 + Duration::from_secs(6);
            for n in [5, 6] {
                let p = pending(QoS::AtLeastOnce, n, None, t1);
                let pushed = queue.push_bounded(p, QueueBound::Configured, &limits, t1, &mut drops);
                assert_eq!(pushed, Ok(()), "{policy:?} {n}");
            }
            let (queued, expired) = match policy {
                DropPolicy::DropNewest => ([2, 5, 6], 2),
                DropPolicy::DropOldest => ([4, 5, 6], 1),
            };
            assert_eq!(payloads(&queue), queued, "{policy:?}");
            assert_eq!(drops.expired, expired, "{policy:?}");
            // Only DropOldest had to drop a live one (2) for message 6.
            let queue_full = if policy == DropPolicy::DropOldest {
                2
            } else {
                1
            };
            assert_eq!(drops.queue_full, queue_full, "{policy:?}");
        }
    }

    /// While nothing in the queue can have expired, a full queue is not
    /// scanned; once the earliest expiry passes, it is, and the next
    /// deadline is the earliest left.
    #[test]
    fn the_next_expiry_tracks_the_earliest_deadline() {
        let t0 = Instant::now();
        let limits = limits(10, DropPolicy::DropNewest);
        let mut queue = Backlog::default();
        let mut drops = DropCounts::default();
        for (n, secs) in [(1, 30), (2, 10), (3, 20)] {
            let p = pending(
                QoS::AtLeastOnce,
                n,
                Some(t0 + Duration::from_secs(secs)),
                t0,
            );
            queue
                .push_bounded(p, QueueBound::Configured, &limits, t0, &mut drops)
                .unwrap();
        }
        assert_eq!(queue.next_expiry, Some(t0 + Duration::from_secs(10)));
        queue.purge_expired(t0 + Duration::from_secs(15), &mut drops);
        assert_eq!(payloads(&queue), [1, 3]);
        assert_eq!(queue.next_expiry, Some(t0 + Duration::from_secs(20)));
        queue.pop_front();
        queue.pop_front();
        assert_eq!(queue.next_expiry, None, "an empty queue has no deadline");
        assert_eq!(drops.expired, 1);
    }

    /// Going offline applies the bound and drop policy to the whole queue
    /// (counted as `queue_full`) after QoS 0 (counted as offline) and
    /// expired messages (counted as expired) have gone.
    #[test]
    fn going_offline_bounds_the_whole_queue() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        for (policy, kept) in [
            (DropPolicy::DropNewest, [2, 4, 5]),
            (DropPolicy::DropOldest, [6, 7, 8]),
        ] {
            let limits = limits(3, policy);
            let mut queue = Backlog::default();
            let mut drops = DropCounts::default();
            // Queued while online and reading: beyond the bound.
            for n in 1..=8u8 {
                let qos = if n == 3 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                let expiry = (n == 1).then_some(t0 + Duration::from_secs(5));
                let p = pending(qos, n, expiry, t0);
                queue
                    .push_bounded(p, QueueBound::Unbounded, &limits, t0, &mut drops)
                    .unwrap();
            }
            queue.went_offline(&limits, t1, &mut drops);
            assert_eq!(payloads(&queue), kept, "{policy:?}");
            let counted = (drops.offline, drops.expired, drops.queue_full);
            assert_eq!(counted, (1, 1, 3), "{policy:?}");
        }
    }
}
