//! A session's queue: the messages waiting beyond its inflight window,
//! online or offline, the bound on them and what is dropped (and why).
//!
//! Owns: the queue's order, its bound (`max_queued` and the drop policy)
//! and the drop counts.
//! Does not own: when a message is queued rather than written, or moving
//! queued messages into the window (both `SessionState`'s).

use std::collections::VecDeque;

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
        self.0.as_mut()?.items.pop_front()
    }

    /// See [`Backlog::push_bounded`].
    pub(super) fn push_bounded(
        &mut self,
        pending: Pending,
        bound: QueueBound,
        limits: &SessionLimits,
        drops: &mut DropCounts,
    ) -> Result<(), DropReason> {
        let backlog = self.0.get_or_insert_with(Box::default);
        backlog.push_bounded(pending, bound, limits, drops)
    }

    /// See [`Backlog::went_offline`].
    pub(super) fn went_offline(&mut self, limits: &SessionLimits, drops: &mut DropCounts) {
        if let Some(backlog) = self.0.as_mut() {
            backlog.went_offline(limits, drops);
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
}

impl Backlog {
    /// Queues `pending`. Under [`QueueBound::Configured`] the drop policy
    /// decides what goes from a full queue (counted as `queue_full`): the
    /// new message (an error) or the oldest.
    fn push_bounded(
        &mut self,
        pending: Pending,
        bound: QueueBound,
        limits: &SessionLimits,
        drops: &mut DropCounts,
    ) -> Result<(), DropReason> {
        if bound == QueueBound::Configured && self.items.len() >= limits.max_queued {
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
        self.items.push_back(pending);
        Ok(())
    }

    /// The session went offline: QoS 0 goes unless `queue_qos0_offline`
    /// (counted as offline).
    fn went_offline(&mut self, limits: &SessionLimits, drops: &mut DropCounts) {
        if !limits.queue_qos0_offline {
            let before = self.items.len();
            self.items.retain(|p| p.plan.qos != QoS::AtMostOnce);
            drops.add(DropReason::Offline, before - self.items.len());
        }
    }
}
