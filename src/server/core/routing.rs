//! Routing on one core: a PUBLISH matched against this core's replica of
//! the subscription index, delivered to the local sessions it matches,
//! sent once to each other core with subscribers, shared-subscription
//! members picked; retained messages stored on every replica; subscriptions
//! registered on every replica, and a replicated subscription caught up on
//! what this core routed before it applied it.
//!
//! Owns: the delivery path into a session (`deliver_*`), including holding
//! deliveries for a session that just moved here (`migrate.rs` says when).
//! Does not own: a session's QoS state and queue (`crate::broker::session`)
//! or its socket (`conn.rs`).

use std::time::Instant;

use bytes::BytesMut;
use smallvec::SmallVec;

use crate::broker::message::{DeliveryPlan, Message, SessionKey, SubscriptionEntry};
use crate::broker::session::QueueBound;
use crate::broker::trie::SubscriptionTrie;
use crate::codec::{QoS, RetainHandling, TopicFilter, TopicName};

use super::{Core, RECENT_CAP, RECENT_WINDOW};
use crate::server::mailbox::CoreMsg;
use crate::server::migrate::Holding;
use crate::server::sessions::Presence;
use crate::server::stats::DropCause;

impl Core {
    pub(super) fn apply_retain(&self, topic: &TopicName, message: Option<Message>) {
        let mut retained = self.retained.borrow_mut();
        match message {
            Some(message) => {
                retained.insert(topic, message);
            }
            None => {
                retained.remove(topic);
            }
        }
    }

    /// Routes a message received on this core. Returns whether any
    /// subscriber matched.
    pub fn route(&self, message: &Message, now: Instant) -> bool {
        self.route_within(message, now, self.max_retained)
    }

    /// Routes one of the broker's own `$SYS` messages: a small fixed set of
    /// topics, stored whatever `max_retained_messages` says, so that the
    /// broker's figures stay visible when clients have filled the store.
    pub fn route_own(&self, message: &Message, now: Instant) -> bool {
        self.route_within(message, now, 0)
    }

    /// Whether a retained `message` is for a new topic the store has no
    /// room for under `limit`: then it is delivered but not stored. This
    /// core decides from its replica and tells no peer, so every replica
    /// applies the same stream of stored updates and none stores the
    /// refused topic.
    fn retained_refused(&self, message: &Message, limit: usize) -> bool {
        let topic = message.template.topic();
        if message.template.payload().is_empty() || self.retained.borrow().admits(topic, limit) {
            return false;
        }
        self.stats.retained_refused.inc();
        tracing::debug!(
            core = self.id,
            topic = topic.as_str(),
            "retained message not stored: max_retained_messages ({limit}) reached; delivered only"
        );
        true
    }

    fn route_within(&self, message: &Message, now: Instant, retained_limit: usize) -> bool {
        if message.retain && self.retained_refused(message, retained_limit) {
            // Delivered below like any message; nothing is stored.
        } else if message.retain {
            // [MQTT-3.3.1-5]/[MQTT-3.3.1-6]: store or, with an empty
            // payload, clear; on every core's replica.
            let stored = (!message.template.payload().is_empty()).then(|| message.clone());
            let topic = message.template.topic().clone();
            self.apply_retain(&topic, stored.clone());
            self.broadcast(|| CoreMsg::Retain {
                topic: topic.clone(),
                message: stored.clone(),
            });
        }
        let matched = self.deliver_local(message, true, now);
        if self.ncores > 1 {
            let mut recent = self.recent.borrow_mut();
            while recent.len() >= RECENT_CAP
                || recent
                    .front()
                    .is_some_and(|m| now.saturating_duration_since(m.received_at) > RECENT_WINDOW)
            {
                recent.pop_front();
            }
            recent.push_back(message.clone());
        }
        if !matched && !message.retain {
            self.stats.dropped(DropCause::NoSubscribers, 1);
        }
        matched
    }

    /// Delivers `message` to this core's matching sessions. On the core
    /// that received it (`origin`), also forwards it once to each other
    /// core with matching subscribers and picks shared-subscription members.
    pub(super) fn deliver_local(&self, message: &Message, origin: bool, now: Instant) -> bool {
        let mut remote_cores: u64 = 0;
        let mut shared: SmallVec<[(SessionKey, SubscriptionEntry); 4]> = SmallVec::new();
        let mut plans = self.plans.borrow_mut();
        plans.clear();
        let mut matched = false;
        {
            let trie = self.trie.borrow();
            let migrations = self.migrations.borrow();
            // [MQTT-3.8.3-3]: No Local, also for a session that moved
            // cores and publishes under its new key while this replica
            // still routes by the old one.
            let own = |key: SessionKey| {
                message.origin == Some(key)
                    || (message.origin.is_some() && migrations.renamed(key) == message.origin)
            };
            trie.match_topic(
                message.template.topic().as_str(),
                |key, entry| {
                    if entry.options.no_local && own(key) {
                        return;
                    }
                    matched = true;
                    if usize::from(key.core) == self.id {
                        plans.push((key, DeliveryPlan::new(message, entry, false)));
                    } else if origin {
                        remote_cores |= 1 << key.core;
                    }
                },
                |_group, members| {
                    if origin {
                        if let Some((key, entry)) = members.next_member() {
                            shared.push((key, *entry));
                        }
                    }
                },
            );
        }
        matched |= !shared.is_empty();
        // One delivery per session: overlapping subscriptions merge into the
        // highest QoS with every subscription identifier (5.0 §3.3.4).
        plans.sort_unstable_by_key(|(key, _)| *key);
        plans.dedup_by(|later, earlier| {
            if later.0 != earlier.0 {
                return false;
            }
            let plan = std::mem::replace(&mut later.1, DeliveryPlan::empty());
            earlier.1.merge(plan);
            true
        });
        for (key, plan) in plans.drain(..) {
            self.deliver_to(key, message, plan, now);
        }
        drop(plans);
        for (key, entry) in shared {
            if usize::from(key.core) == self.id {
                let plan = DeliveryPlan::new(message, &entry, false);
                self.deliver_to(key, message, plan, now);
            } else {
                self.send(
                    usize::from(key.core),
                    CoreMsg::SharedDeliver {
                        key,
                        entry,
                        message: message.clone(),
                    },
                );
            }
        }
        let mut cores = remote_cores;
        while cores != 0 {
            let core = cores.trailing_zeros() as usize;
            cores &= cores - 1;
            self.send(core, CoreMsg::Publish(message.clone()));
        }
        matched
    }

    /// Hands one message to one local session.
    pub fn deliver_to(&self, key: SessionKey, message: &Message, plan: DeliveryPlan, now: Instant) {
        self.deliver_unless_held(key, message, plan, now, false);
    }

    /// Hands a retained message to a session that just subscribed. These
    /// are not bounded by the queue limit: the retained store bounds them,
    /// and a subscriber must get every retained message that matches.
    pub fn deliver_retained_to(
        &self,
        key: SessionKey,
        message: &Message,
        plan: DeliveryPlan,
        now: Instant,
    ) {
        self.deliver_unless_held(key, message, plan, now, true);
    }

    /// Hands a session that just moved here a message that took the old
    /// path, or one that was held (see `migrate.rs`): not held again.
    /// `retained` as for [`Core::deliver_retained_to`].
    pub fn deliver_forwarded(
        &self,
        key: SessionKey,
        message: &Message,
        plan: DeliveryPlan,
        now: Instant,
        retained: bool,
    ) {
        self.deliver_with(key, message, plan, now, retained);
    }

    /// Delivers, unless `key` just moved here and its deliveries wait for
    /// the old path to drain: then the delivery waits with them.
    fn deliver_unless_held(
        &self,
        key: SessionKey,
        message: &Message,
        plan: DeliveryPlan,
        now: Instant,
        retained: bool,
    ) {
        let plan = {
            let mut migrations = self.migrations.borrow_mut();
            if migrations.is_holding() {
                let bound = self.session_limits.max_queued;
                match migrations.hold(key, message, plan, retained, bound) {
                    Holding::NotHeld(plan) => plan,
                    Holding::Held => return,
                    Holding::Dropped => {
                        self.stats.dropped(DropCause::QueueFull, 1);
                        return;
                    }
                }
            } else {
                plan
            }
        };
        self.deliver_with(key, message, plan, now, retained);
    }

    fn deliver_with(
        &self,
        key: SessionKey,
        message: &Message,
        plan: DeliveryPlan,
        now: Instant,
        unbounded: bool,
    ) {
        let mut sessions = self.sessions.borrow_mut();
        let Some(slot) = sessions.get_mut(key) else {
            drop(sessions);
            // Routed to a session that just moved to another core.
            let to = self.migrations.borrow().forward_to(key);
            if let Some(to) = to {
                let old = key;
                let message = message.clone();
                self.send(to, CoreMsg::Forwarded { old, message, plan });
            }
            return;
        };
        // A QoS 1/2 message for a subscriber that is reading is never
        // dropped for a full queue: it was acknowledged to its publisher.
        // Back-pressure bounds that queue instead (this core stops taking
        // batches, its peers' publishers stop reading). The configured
        // bound and drop policy apply to QoS 0, to slow consumers and to
        // offline sessions.
        self.unpark(slot);
        let link = match &slot.presence {
            Presence::Live(link) => Some(link),
            _ => None,
        };
        let reading = link.as_ref().is_some_and(|link| !link.is_slow());
        let bound = if unbounded || (reading && plan.qos != QoS::AtMostOnce) {
            QueueBound::Unbounded
        } else {
            QueueBound::Configured
        };
        match link {
            Some(link) => {
                if let (Some(follow), Some(origin)) = (&self.follow, message.origin) {
                    if !unbounded {
                        let mut feed = link.feed.get();
                        let epoch = self.follow_epoch.get();
                        if feed.record(origin.core as u8, epoch, follow.min_messages) {
                            self.follow_candidates.borrow_mut().push(key);
                        }
                        link.feed.set(feed);
                    }
                }
                // Retained messages sent on subscribe are not latency samples.
                let sample = !plan.retain && self.telemetry.sampling();
                let mut out = link.out.borrow_mut();
                let before = out.len();
                slot.state.deliver(message, plan, now, &mut out, bound);
                if out.len() > before {
                    // Counted as sent when written (see `conn::flush`).
                    if sample {
                        link.stamps.push(message.received_at);
                    }
                    link.notify.notify();
                }
                let (out_len, queued) = (out.len(), slot.state.queued_len());
                drop(out);
                link.update_backlog(out_len, queued, self.marks);
                if link.over(self.marks) && !link.is_slow() {
                    self.congested.borrow_mut().push(link.clone());
                }
            }
            None => {
                slot.state
                    .deliver(message, plan, now, &mut BytesMut::new(), bound);
            }
        }
        self.stats.drain_drops(&mut slot.state.drops);
    }

    /// Registers a subscription on every replica.
    pub fn add_subscription(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        entry: SubscriptionEntry,
    ) {
        self.register(key, filter, entry, None);
    }

    /// Registers the subscription of a SUBSCRIBE read at `since`. Each
    /// other core also delivers what it routed from then until it applied
    /// it: a PUBLISH that reached the broker after the SUBSCRIBE reaches the
    /// subscriber even when its connection is served by another core.
    pub fn add_new_subscription(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        entry: SubscriptionEntry,
        since: Instant,
    ) {
        self.register(key, filter, entry, Some(since));
    }

    /// Messages routed here at or after `since` that match `filter` and did
    /// not reach `key` through another of its subscriptions: sent to it
    /// now, as the replica missed the subscription when they were routed.
    /// Shared subscriptions are left out (the group pick is already made).
    pub(super) fn catch_up(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        entry: &SubscriptionEntry,
        since: Instant,
    ) {
        if filter.shared().is_some() {
            return;
        }
        let recent = self.recent.borrow();
        let mut missed = Vec::new();
        let mut one = SubscriptionTrie::new();
        one.insert(filter, key, *entry);
        let trie = self.trie.borrow();
        let retained = self.retained.borrow();
        for message in recent.iter().filter(|m| m.received_at >= since) {
            if entry.options.no_local && message.origin == Some(key) {
                continue;
            }
            let stored = message.retain
                && !message.template.payload().is_empty()
                && retained.get(message.template.topic()).is_some();
            if stored && entry.options.retain_handling != RetainHandling::DoNotSend {
                // The subscriber gets it from the retained store, which
                // has it by the time the SUBSCRIBE's barrier completes.
                // (One refused for max_retained_messages is not there.)
                continue;
            }
            let topic = message.template.topic().as_str();
            let mut matches = false;
            one.match_topic(topic, |_, _| matches = true, |_, _| {});
            let mut reached = false;
            if matches {
                trie.match_topic(topic, |k, _| reached |= k == key, |_, _| {});
            }
            if matches && !reached {
                missed.push(message.clone());
            }
        }
        drop(retained);
        drop(trie);
        drop(recent);
        for message in missed {
            self.send(
                usize::from(key.core),
                CoreMsg::SharedDeliver {
                    key,
                    entry: *entry,
                    message,
                },
            );
        }
    }

    fn register(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        entry: SubscriptionEntry,
        since: Option<Instant>,
    ) {
        if self.sessions.borrow_mut().get_mut(key).is_none() {
            // The session was taken over while its connection was being
            // set up: registering would leave a subscription nobody owns.
            return;
        }
        self.trie.borrow_mut().insert(filter, key, entry);
        self.broadcast(|| CoreMsg::Subscribe {
            key,
            filter: filter.clone(),
            entry,
            since,
        });
    }

    /// Removes a subscription from every replica.
    pub fn remove_subscription(&self, key: SessionKey, filter: &TopicFilter) {
        self.trie.borrow_mut().remove(filter, key);
        self.broadcast(|| CoreMsg::Unsubscribe {
            key,
            filter: filter.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Publish, QosPid, SubscriptionOptions};
    use bytes::Bytes;
    use std::time::Duration;

    fn message(topic: &str, payload: &'static [u8], retain: bool, now: Instant) -> Message {
        let mut publish = Publish::new(
            TopicName::try_from(topic).unwrap(),
            Bytes::from_static(payload),
        );
        publish.qos_pid = QosPid::AtMostOnce;
        publish.retain = retain;
        Message::from_publish(&publish, None, now)
    }

    fn retained(topic: &str, payload: &'static [u8]) -> Message {
        message(topic, payload, true, Instant::now())
    }

    /// A SUBSCRIBE on core 0, replicated to this core.
    fn subscribe(filter: &str, since: Option<Instant>) -> CoreMsg {
        CoreMsg::Subscribe {
            key: SessionKey {
                core: 0,
                slot: 7,
                generation: 1,
            },
            filter: TopicFilter::try_from(filter).unwrap(),
            entry: SubscriptionEntry {
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
                identifier: None,
            },
            since,
        }
    }

    /// The topics this core sent core 0 to catch a subscription up.
    fn caught_up(core: &Core) -> Vec<String> {
        core.outboxes[0]
            .take_batch()
            .into_iter()
            .filter_map(|msg| match msg {
                CoreMsg::SharedDeliver { message, .. } => {
                    Some(message.template.topic().as_str().to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// The retained updates this core sent its peer, as (topic, stored).
    fn replicated(core: &Core) -> Vec<(String, bool)> {
        core.outboxes[0]
            .take_batch()
            .into_iter()
            .filter_map(|msg| match msg {
                CoreMsg::Retain { topic, message } => {
                    Some((topic.as_str().to_string(), message.is_some()))
                }
                _ => None,
            })
            .collect()
    }

    /// A subscription replicated from core 0 gets what core 1 routed after
    /// its SUBSCRIBE was read, matching it, and nothing routed before.
    #[test]
    fn replicated_subscription_catches_up_on_later_messages() {
        let t0 = Instant::now();
        let core = Core::for_tests(|_| {});
        core.route(&message("a/before", b"m", false, t0), t0);
        let since = t0 + Duration::from_millis(1);
        let t1 = t0 + Duration::from_millis(2);
        core.route(&message("a/after", b"m", false, t1), t1);
        core.route(&message("b/after", b"m", false, t1), t1);
        core.route(&message("a/kept", b"m", true, t1), t1);
        core.dispatch(subscribe("a/+", Some(since)), t1);
        assert_eq!(caught_up(&core), ["a/after"]);

        // Already subscribed through the same filter: nothing twice.
        core.dispatch(subscribe("a/+", Some(since)), t1);
        assert!(caught_up(&core).is_empty());
        // Re-registered subscriptions carry no time and catch nothing up.
        core.dispatch(subscribe("b/#", None), t1);
        assert!(caught_up(&core).is_empty());
    }

    /// `max_retained_messages`: the receiving core refuses a new topic at
    /// the limit, counts it and sends its peers nothing, so no replica
    /// stores it; replacing and clearing still replicate. What a peer
    /// stored is applied whatever the limit, so replicas never diverge.
    /// The broker's own `$SYS` figures are stored regardless.
    #[test]
    fn a_new_retained_topic_at_the_limit_is_refused_on_the_receiving_core() {
        let core = Core::for_tests(|c| c.limits.max_retained_messages = 2);
        let now = Instant::now();
        core.route(&retained("r/a", b"1"), now);
        core.route(&retained("r/b", b"1"), now);
        core.route(&retained("r/c", b"1"), now);
        assert_eq!(
            replicated(&core),
            [("r/a".into(), true), ("r/b".into(), true)]
        );
        assert_eq!(core.stats.retained_refused.get(), 1);
        assert_eq!(core.retained.borrow().len(), 2);
        assert!(core
            .retained
            .borrow()
            .get(&TopicName::try_from("r/c").unwrap())
            .is_none());

        core.route(&retained("r/a", b"2"), now);
        core.route(&retained("r/b", b""), now);
        assert_eq!(
            replicated(&core),
            [("r/a".into(), true), ("r/b".into(), false)]
        );
        core.route(&retained("r/c", b"1"), now);
        assert_eq!(replicated(&core), [("r/c".into(), true)]);
        assert_eq!(core.stats.retained_refused.get(), 1);

        // A peer stored r/d at the same time: applied, over the limit.
        core.dispatch(
            CoreMsg::Retain {
                topic: TopicName::try_from("r/d").unwrap(),
                message: Some(retained("r/d", b"1")),
            },
            now,
        );
        assert_eq!(core.retained.borrow().len(), 3);
        core.route(&retained("r/e", b"1"), now);
        assert!(replicated(&core).is_empty());
        assert_eq!(core.stats.retained_refused.get(), 2);

        core.route_own(&retained("$SYS/broker/uptime", b"1"), now);
        assert_eq!(replicated(&core), [("$SYS/broker/uptime".into(), true)]);
        assert_eq!(core.stats.retained_refused.get(), 2);
    }

    /// A retained message refused for want of room is in no replica, so a
    /// subscription from another core that this core applies after routing
    /// it catches it up like a plain message, where a stored one is left
    /// to the retained store.
    #[test]
    fn a_refused_retained_message_is_caught_up_not_left_to_the_store() {
        let core = Core::for_tests(|c| c.limits.max_retained_messages = 1);
        let t0 = Instant::now();
        core.route(&retained("k/stored", b"1"), t0);
        core.route(&retained("k/refused", b"1"), t0);
        core.outboxes[0].take_batch();
        core.dispatch(subscribe("k/+", Some(t0)), t0);
        assert_eq!(caught_up(&core), ["k/refused"]);
    }
}
