//! Cross-core messaging: what cores tell each other, and the per-peer
//! outboxes that batch it into glommio's channel mesh.
//!
//! Why the mesh: it gives one bounded, lock-free single-producer queue per
//! ordered pair of cores with an eventfd-backed wake-up built into the
//! executor, and FIFO order per pair, which the barrier protocol relies on
//! (see `core.rs`). Every message a core produces for a peer in one tick
//! goes into that peer's outbox; one sender task per peer moves the whole
//! outbox into the mesh as a single batch, so the queue cost is paid per
//! batch, not per message. `benches/mailbox.rs` measures the choice.
//!
//! Owns: the message vocabulary and batching. Does not own: what a message
//! does on arrival (the core's dispatcher).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

use crate::broker::message::{Message, SessionKey, SubscriptionEntry};
use crate::broker::session::SessionState;
use crate::codec::{MqttStr, TopicFilter, TopicName};

use super::notify::Notify;

/// Which connection is asking for a client id: its core and a ticket that
/// is unique on that core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimant {
    pub core: usize,
    pub ticket: u64,
}

/// A session on its way from one core to another during takeover.
#[derive(Debug)]
pub struct SessionTransfer {
    pub state: SessionState,
    /// The key the session had on the core it left. Until every replica
    /// routes by its new key, messages for this one reach it through that
    /// core (the forwarding of `migrate.rs`), so none published during the
    /// takeover is lost.
    pub old_key: SessionKey,
}

/// What one core tells another. Everything in it is `Send`: payloads and
/// topics are `Bytes`, shared, never copied.
#[derive(Debug)]
pub enum CoreMsg {
    /// Deliver to the receiving core's own (non-shared) subscribers.
    Publish(Message),
    /// Deliver to one member of a shared subscription, chosen by the sender.
    SharedDeliver {
        key: SessionKey,
        entry: SubscriptionEntry,
        message: Message,
    },
    /// Replica update: add or replace a subscription.
    Subscribe {
        key: SessionKey,
        filter: TopicFilter,
        entry: SubscriptionEntry,
        /// When the SUBSCRIBE was read: the peer delivers what it routed
        /// from then until it applied this (see `Core::catch_up`). None
        /// when a session's subscriptions are registered again.
        since: Option<std::time::Instant>,
    },
    /// Replica update: remove a subscription.
    Unsubscribe {
        key: SessionKey,
        filter: TopicFilter,
    },
    /// Replica update: set (Some) or clear (None) a retained message.
    Retain {
        topic: TopicName,
        message: Option<Message>,
    },
    /// Answer with `BarrierAck` once everything sent before it is applied.
    BarrierRequest {
        id: u64,
        from: usize,
    },
    BarrierAck {
        id: u64,
    },
    /// To the client id's home core: `claimant` wants this client id.
    Claim {
        client_id: MqttStr,
        claimant: Claimant,
        clean_start: bool,
    },
    /// From the home core to the previous owner: close the session's
    /// connection and hand the session to `claimant`.
    Evict {
        client_id: MqttStr,
        claimant: Claimant,
        /// The owner the home core replaced: the session to evict, or one
        /// whose claim the receiving core has not installed yet.
        previous: Claimant,
        clean_start: bool,
    },
    /// To the claimant: the session to resume, if any.
    Handover {
        ticket: u64,
        session: Option<Box<SessionTransfer>>,
    },
    /// To the home core: `owner`'s session for this client id has ended.
    Release {
        client_id: MqttStr,
        owner: Claimant,
    },
    /// A live connection and its session, moving to the receiving core
    /// (see `migrate.rs` for this and the messages below).
    Adopt(Box<super::migrate::Adoption>),
    /// From the adopting core: the session `old` is now `new`.
    Rekey {
        old: SessionKey,
        new: SessionKey,
        filters: Vec<(TopicFilter, SubscriptionEntry)>,
    },
    /// To the old core: the sender has switched from `old`.
    RekeyMarker {
        old: SessionKey,
    },
    /// From the old core: a message routed to `old`, for its new key.
    Forwarded {
        old: SessionKey,
        message: Message,
        plan: crate::broker::message::DeliveryPlan,
    },
    /// From the old core: nothing more will be forwarded for `old`.
    ForwardingDone {
        old: SessionKey,
        new: SessionKey,
    },
    /// To the home core: the owner of a client id moved cores.
    Reowned {
        client_id: MqttStr,
        from: Claimant,
        to: Claimant,
    },
    /// From the home core to the old owner: it knows of the move.
    ReownedAck {
        client_id: MqttStr,
    },
    /// Replica update: the session `key` has gone offline and outlives its
    /// connection; its shared subscriptions `filters` pick their connected
    /// members first (see `core/shared_members.rs`).
    SharedOffline {
        key: SessionKey,
        filters: Vec<TopicFilter>,
    },
}

/// The messages waiting to go to one peer core.
#[derive(Default)]
pub struct Outbox {
    pending: RefCell<VecDeque<CoreMsg>>,
    /// Wakes the peer's sender task.
    pub ready: Notify,
    /// Set while the mesh channel to this peer is full and the outbox is
    /// over its high-water mark: publishers wait.
    congested: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
}

/// Above this many queued messages for one peer, publishers stop reading.
pub const OUTBOX_HIGH_WATER: usize = 8192;
/// The most messages one batch carries, so that a full mesh channel
/// (`executor.mailbox_capacity` batches) holds a bounded number of
/// messages, not `capacity` whole outboxes.
pub const MAX_BATCH: usize = 512;

impl Outbox {
    pub fn push(&self, msg: CoreMsg) {
        let mut pending = self.pending.borrow_mut();
        pending.push_back(msg);
        if pending.len() == 1 {
            self.ready.notify();
        }
        if pending.len() >= OUTBOX_HIGH_WATER {
            self.congested.set(true);
        }
    }

    /// Takes the oldest queued messages, at most [`MAX_BATCH`], as one
    /// batch (FIFO: the rest go in the next ones).
    pub fn take_batch(&self) -> Vec<CoreMsg> {
        let mut pending = self.pending.borrow_mut();
        let n = pending.len().min(MAX_BATCH);
        pending.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.pending.borrow().len()
    }

    pub fn is_congested(&self) -> bool {
        self.congested.get()
    }

    /// Called by the sender task after a batch went out.
    pub fn relieve(&self) {
        if self.congested.get() && self.len() < OUTBOX_HIGH_WATER / 2 {
            self.congested.set(false);
            for waker in self.waiting.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Resolves when the outbox is no longer congested.
    pub async fn room(&self) {
        std::future::poll_fn(|cx| {
            if self.congested.get() {
                self.waiting.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(ticket: u64) -> CoreMsg {
        CoreMsg::Release {
            client_id: MqttStr::try_from("c").unwrap(),
            owner: Claimant { core: 0, ticket },
        }
    }

    fn tickets(batch: &[CoreMsg]) -> Vec<u64> {
        batch
            .iter()
            .map(|msg| match msg {
                CoreMsg::Release { owner, .. } => owner.ticket,
                _ => unreachable!("only releases were pushed"),
            })
            .collect()
    }

    /// A batch carries at most MAX_BATCH messages, oldest first, and the
    /// batches together carry everything in order.
    #[test]
    fn batches_are_capped_and_keep_fifo_order() {
        let outbox = Outbox::default();
        let total = 2 * MAX_BATCH + 3;
        for ticket in 0..total as u64 {
            outbox.push(release(ticket));
        }
        let mut seen = Vec::new();
        loop {
            let batch = outbox.take_batch();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= MAX_BATCH);
            seen.extend(tickets(&batch));
        }
        assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
    }
}
