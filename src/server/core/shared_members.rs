//! Shared-subscription members whose session has gone offline: every
//! replica marks them, so that a group's round robin picks its connected
//! members first (see `crate::broker::trie::SharedGroup::next_member`) and
//! a message is not handed to a session that cannot take it now (QoS 0 is
//! dropped there, QoS 1/2 waits) while another member could.
//!
//! A member is marked online when it joins. A session that comes back
//! gets a new key and subscribes again (see `conn.rs`, the CONNECT path),
//! so only going offline needs a message. Like any replica update, the
//! mark reaches other cores a moment later: a message routed there in
//! between may still pick the offline member.
//!
//! Owns: the `SharedOffline` replica update. Does not own: the pick (the
//! trie's) or when a session goes offline (`conn.rs`).

use crate::broker::message::SessionKey;
use crate::codec::TopicFilter;
use crate::server::mailbox::CoreMsg;

use super::Core;

impl Core {
    /// The session `key` has gone offline and outlives its connection: its
    /// shared subscriptions are marked offline in this core's replica now
    /// and in every other through a `SharedOffline` message.
    pub fn shared_member_offline(&self, key: SessionKey) {
        let filters: Vec<TopicFilter> = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(slot) = sessions.get_mut(key) else {
                return;
            };
            slot.state
                .subscriptions
                .keys()
                .filter(|filter| filter.shared().is_some())
                .cloned()
                .collect()
        };
        if filters.is_empty() {
            return;
        }
        self.mark_shared_offline(key, &filters);
        self.broadcast(|| CoreMsg::SharedOffline {
            key,
            filters: filters.clone(),
        });
    }

    /// Applies a `SharedOffline` to this core's replica.
    pub(super) fn mark_shared_offline(&self, key: SessionKey, filters: &[TopicFilter]) {
        let mut trie = self.trie.borrow_mut();
        for filter in filters {
            trie.set_shared_online(filter, key, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use crate::broker::message::{Message, SubscriptionEntry};
    use crate::codec::{Publish, QoS, QosPid, SubscriptionOptions, TopicFilter, TopicName};
    use crate::server::core::Core;
    use crate::server::mailbox::CoreMsg;

    /// A member that goes offline is marked in this replica and the mark
    /// is sent to the other core; QoS 1 messages then go to the connected
    /// member only, here none to the offline one's queue (5.0 §4.8.2).
    #[test]
    fn an_offline_member_is_marked_here_and_on_every_other_core() {
        let core = Core::for_tests(|_| {});
        let now = Instant::now();
        let filter = TopicFilter::try_from("$share/g/t").unwrap();
        let entry = SubscriptionEntry {
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
            identifier: None,
        };
        let away = core.session_for_tests("away");
        let here = core.session_for_tests("here");
        for key in [away, here] {
            let mut sessions = core.sessions.borrow_mut();
            let slot = sessions.get_mut(key).unwrap();
            slot.state.subscriptions.insert(filter.clone(), entry);
            drop(sessions);
            core.add_subscription(key, &filter, entry);
        }
        core.sessions.borrow_mut().detach(away, now);
        core.shared_member_offline(away);
        let sent = core.outboxes[0].take_batch();
        assert!(sent.iter().any(|msg| matches!(
            msg,
            CoreMsg::SharedOffline { key, filters } if *key == away && filters.len() == 1 && filters[0] == filter
        )));
        let mut publish = Publish::new(TopicName::try_from("t").unwrap(), Bytes::new());
        publish.qos_pid = QosPid::new(QoS::AtLeastOnce, crate::codec::PacketId::new(1)).unwrap();
        let message = Message::from_publish(&publish, None, now);
        for _ in 0..4 {
            assert!(core.route(&message, now));
        }
        let mut sessions = core.sessions.borrow_mut();
        assert_eq!(sessions.get_mut(away).unwrap().state.queued_len(), 0);
        assert_eq!(sessions.get_mut(here).unwrap().state.queued_len(), 4);
    }
}
