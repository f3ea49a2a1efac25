//! A routed application message: what one PUBLISH becomes once the broker
//! has accepted it, shared by every subscriber and every core it reaches.
//!
//! Owns: the message's immutable parts (the prepared [`PublishTemplate`],
//! QoS, retain flag, expiry deadline, origin) and the per-subscription
//! options a delivery needs. Does not own: queues or packet ids (the
//! session's) or routing (the trie's and the runtime's).

use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::codec::{Publish, PublishTemplate, QoS, SubscriptionId, SubscriptionOptions};

/// Identifies a session across the whole broker: the core that owns it and
/// its slot there. It is what subscriptions are keyed by in every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub core: u16,
    pub slot: u32,
    /// Bumped each time the slot is reused, so stale keys never match.
    pub generation: u32,
}

/// One accepted application message. Cloning shares the topic, payload and
/// encoded properties.
#[derive(Debug, Clone)]
pub struct Message {
    pub template: PublishTemplate,
    pub qos: QoS,
    pub retain: bool,
    /// When the Message Expiry Interval runs out (5.0 §3.3.2.3.3).
    pub expires_at: Option<Instant>,
    /// The publishing session, for No Local (5.0 §3.8.3.1).
    pub origin: Option<SessionKey>,
    /// When the broker decoded the PUBLISH: the start of publish-to-deliver
    /// latency.
    pub received_at: Instant,
}

impl Message {
    pub fn from_publish(publish: &Publish, origin: Option<SessionKey>, now: Instant) -> Self {
        Message {
            template: PublishTemplate::new(publish),
            qos: publish.qos(),
            retain: publish.retain,
            expires_at: publish
                .properties
                .message_expiry_interval
                .map(|secs| now + Duration::from_secs(u64::from(secs))),
            origin,
            received_at: now,
        }
    }

    /// True once the message's expiry interval has passed.
    #[inline]
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The Message Expiry Interval to send: what is left, rounded up, so a
    /// message is never reported as expiring sooner than it does.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

/// What one subscription asked for: its options and identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionEntry {
    pub options: SubscriptionOptions,
    pub identifier: Option<SubscriptionId>,
}

/// How one message is to be delivered to one session: the effective QoS
/// (the minimum of publish and subscription QoS, [MQTT-3.8.4-8]), the RETAIN
/// flag it carries, and the identifiers of every matching subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPlan {
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: SmallVec<[SubscriptionId; 2]>,
}

impl DeliveryPlan {
    /// Plans delivery of `message` through `entry`. `retained_on_subscribe`
    /// is true when the message is sent because of a new subscription.
    pub fn new(message: &Message, entry: &SubscriptionEntry, retained_on_subscribe: bool) -> Self {
        let retain = if retained_on_subscribe {
            // [MQTT-3.3.1-8]/[MQTT-3.3.1-9]: retained messages sent on
            // subscribe carry RETAIN=1.
            true
        } else {
            // [MQTT-3.3.1-12]/[MQTT-3.3.1-13]: otherwise RETAIN is cleared
            // unless Retain As Published is set.
            entry.options.retain_as_published && message.retain
        };
        DeliveryPlan {
            qos: message.qos.min(entry.options.qos),
            retain,
            subscription_ids: entry.identifier.into_iter().collect(),
        }
    }

    /// A placeholder plan: QoS 0, no flags, no identifiers.
    pub fn empty() -> Self {
        DeliveryPlan {
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: SmallVec::new(),
        }
    }

    /// Folds another matching subscription of the same session into this
    /// plan: one delivery at the highest QoS, with every identifier
    /// (5.0 §3.3.4, overlapping subscriptions).
    pub fn merge(&mut self, other: DeliveryPlan) {
        self.qos = self.qos.max(other.qos);
        self.retain |= other.retain;
        self.subscription_ids.extend(other.subscription_ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{RetainHandling, TopicName};
    use bytes::Bytes;

    fn message(qos: QoS, retain: bool) -> Message {
        let mut publish = Publish::new(
            TopicName::try_from("a/b").unwrap(),
            Bytes::from_static(b"x"),
        );
        publish.retain = retain;
        if qos != QoS::AtMostOnce {
            publish.qos_pid =
                crate::codec::QosPid::new(qos, crate::codec::PacketId::new(1)).unwrap();
        }
        Message::from_publish(&publish, None, Instant::now())
    }

    fn entry(qos: QoS, rap: bool) -> SubscriptionEntry {
        SubscriptionEntry {
            options: SubscriptionOptions {
                qos,
                no_local: false,
                retain_as_published: rap,
                retain_handling: RetainHandling::SendAtSubscribe,
            },
            identifier: None,
        }
    }

    /// [MQTT-3.8.4-8]: delivered QoS is the minimum of the two.
    #[test]
    fn delivery_qos_is_the_minimum_of_publish_and_subscription() {
        let plan = DeliveryPlan::new(
            &message(QoS::ExactlyOnce, false),
            &entry(QoS::AtLeastOnce, false),
            false,
        );
        assert_eq!(plan.qos, QoS::AtLeastOnce);
        let plan = DeliveryPlan::new(
            &message(QoS::AtMostOnce, false),
            &entry(QoS::ExactlyOnce, false),
            false,
        );
        assert_eq!(plan.qos, QoS::AtMostOnce);
    }

    /// [MQTT-3.3.1-12] and Retain As Published (5.0 §3.8.3.1).
    #[test]
    fn retain_flag_follows_retain_as_published() {
        let m = message(QoS::AtMostOnce, true);
        assert!(!DeliveryPlan::new(&m, &entry(QoS::AtMostOnce, false), false).retain);
        assert!(DeliveryPlan::new(&m, &entry(QoS::AtMostOnce, true), false).retain);
        assert!(DeliveryPlan::new(&m, &entry(QoS::AtMostOnce, false), true).retain);
    }

    #[test]
    fn remaining_expiry_counts_down_and_rounds_up() {
        let now = Instant::now();
        let m = Message {
            expires_at: Some(now + Duration::from_millis(2500)),
            ..message(QoS::AtMostOnce, false)
        };
        assert_eq!(m.remaining_expiry(now), Some(3));
        assert_eq!(m.remaining_expiry(now + Duration::from_secs(2)), Some(1));
        assert!(m.is_expired(now + Duration::from_millis(2500)));
        assert!(!m.is_expired(now));
    }
}
