//! A client id's session on one core: claiming it for a new connection
//! (see the ownership protocol in `core.rs`), the previous owner's side of
//! a takeover, installing the winner's session, ending a session (expiry,
//! `max_offline_sessions`, its will) and killing every connection at
//! shutdown.
//!
//! Owns: when a session starts and ends on this core, and what its client
//! id's home core is told. Does not own: the directory itself (the home
//! core keeps it, in `core.rs`) or the session's protocol state
//! (`crate::broker::session`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::broker::message::{Message, SessionKey};
use crate::broker::session::SessionState;
use crate::codec::{DisconnectReasonCode, MqttStr, Will};

use super::{home_core, ClaimWaiter, Core};
use crate::server::mailbox::{Claimant, CoreMsg, SessionTransfer};
use crate::server::notify::Notify;
use crate::server::sessions::{ConnLink, Presence, SessionSlot, StoredId};

impl Core {
    pub async fn claim(
        &self,
        client_id: &MqttStr,
        clean_start: bool,
    ) -> (Claimant, Option<Box<SessionTransfer>>) {
        let claimant = Claimant {
            core: self.id,
            ticket: self.next_id(),
        };
        let done = Rc::new(Notify::default());
        let result = Rc::new(RefCell::new(None));
        self.claims.borrow_mut().insert(
            claimant.ticket,
            ClaimWaiter {
                done: done.clone(),
                result: result.clone(),
            },
        );
        *self
            .installing
            .borrow_mut()
            .entry(client_id.clone())
            .or_insert(0) += 1;
        self.send(
            home_core(client_id.as_bytes(), self.ncores),
            CoreMsg::Claim {
                client_id: client_id.clone(),
                claimant,
                clean_start,
            },
        );
        done.notified().await;
        let session = result.borrow_mut().take().flatten();
        (claimant, session)
    }

    /// The previous owner's side of a takeover.
    pub(super) fn evict(
        &self,
        client_id: &MqttStr,
        claimant: Claimant,
        clean_start: bool,
        now: Instant,
    ) {
        let slot = self.sessions.borrow_mut().remove_by_client(client_id);
        let moved_to = self.migrations.borrow().moved_to(client_id);
        if let (None, Some(to)) = (&slot, moved_to) {
            // The session moved cores before its home core learnt of it.
            let client_id = client_id.clone();
            self.send(
                to,
                CoreMsg::Evict {
                    client_id,
                    claimant,
                    clean_start,
                },
            );
            return;
        }
        if slot.is_none() && self.installing.borrow().contains_key(client_id) {
            // The owner won its claim but has not installed its session yet
            // (its Handover and this Evict can arrive in one batch): evict
            // it once it has, or two connections would own the id and the
            // session it resumed would be lost.
            self.deferred_evictions
                .borrow_mut()
                .insert(client_id.clone(), (claimant, clean_start));
            return;
        }
        let session = slot.map(|(key, mut slot)| {
            self.unpark(&mut slot);
            if let Some(link) = slot.link() {
                // [MQTT-3.1.4-3]: the existing connection is closed, 5.0
                // clients with DISCONNECT 0x8E.
                link.session_ended.set(clean_start);
                link.kill(DisconnectReasonCode::SessionTakenOver);
            }
            for filter in slot.state.subscriptions.keys() {
                self.remove_subscription(key, filter);
            }
            if let Some((will, _)) = slot.pending_will.map(|due| *due) {
                // A delayed will whose session is taken over by a clean
                // start is published now: the old session ends.
                if clean_start {
                    self.publish_will(will, now);
                }
            }
            Box::new(SessionTransfer { state: slot.state })
        });
        let session = if clean_start { None } else { session };
        self.send(
            claimant.core,
            CoreMsg::Handover {
                ticket: claimant.ticket,
                session,
            },
        );
    }

    /// Ends a session on this core: its subscriptions go from every
    /// replica and its home forgets the client id.
    pub fn end_session(&self, key: SessionKey) {
        let Some(slot) = self.sessions.borrow_mut().remove(key) else {
            return;
        };
        for filter in slot.state.subscriptions.keys() {
            self.remove_subscription(key, filter);
        }
        self.send(
            home_core(slot.client_id.as_bytes(), self.ncores),
            CoreMsg::Release {
                client_id: slot.client_id.to_mqtt(),
                owner: slot.owner,
            },
        );
    }

    /// Publishes a will message as if its client had sent it.
    pub fn publish_will(&self, will: Will, now: Instant) {
        let mut publish = crate::codec::Publish::new(will.topic, will.payload);
        publish.retain = will.retain;
        publish.qos_pid = match will.qos {
            crate::codec::QoS::AtMostOnce => crate::codec::QosPid::AtMostOnce,
            // The id is never sent: deliveries get their own.
            qos => {
                crate::codec::QosPid::new(qos, crate::codec::PacketId::new(1)).expect("id given")
            }
        };
        let p = &will.properties;
        publish.properties.payload_format_indicator = p.payload_format_indicator;
        publish.properties.message_expiry_interval = p.message_expiry_interval;
        publish.properties.content_type = p.content_type.clone();
        publish.properties.response_topic = p.response_topic.clone();
        publish.properties.correlation_data = p.correlation_data.clone();
        publish.properties.user_properties = p.user_properties.clone();
        let message = Message::from_publish(&publish, None, now);
        self.stats
            .wills_published
            .set(self.stats.wills_published.get() + 1);
        self.route(&message, now);
    }

    /// Periodic work: expired sessions and delayed wills.
    pub fn sweep(&self, now: Instant) {
        let (expired, wills) = self.sessions.borrow_mut().due(now);
        for will in wills {
            self.publish_will(will, now);
        }
        for key in expired {
            // [MQTT-3.1.3-9]: a delayed will is sent when the session ends.
            let will = self
                .sessions
                .borrow_mut()
                .get_mut(key)
                .and_then(|slot| slot.pending_will.take());
            if let Some((will, _)) = will.map(|due| *due) {
                self.publish_will(will, now);
            }
            self.stats
                .sessions_expired
                .set(self.stats.sessions_expired.get() + 1);
            self.end_session(key);
        }
    }

    /// Keeps this core within its share of `max_offline_sessions`: while
    /// more sessions are offline, the one offline longest ends as if it had
    /// expired (its delayed will is published, its subscriptions go from
    /// every replica, its client id is released), and is counted. Called
    /// when a session goes offline.
    pub fn evict_offline_sessions(&self, now: Instant) {
        loop {
            let (key, will) = {
                let mut sessions = self.sessions.borrow_mut();
                let Some(key) = sessions.over_offline_limit(self.max_offline_sessions) else {
                    return;
                };
                let slot = sessions.get_mut(key).expect("an offline session");
                tracing::debug!(
                    core = self.id,
                    client_id = slot.client_id.as_str(),
                    "offline session ended: max_offline_sessions reached (this core's share is {})",
                    self.max_offline_sessions
                );
                (key, slot.pending_will.take().map(|pending| pending.0))
            };
            if let Some(will) = will {
                // [MQTT-3.1.3-9]: a delayed will is sent when the session ends.
                self.publish_will(will, now);
            }
            self.stats.sessions_evicted.inc();
            self.end_session(key);
        }
    }

    /// Creates a session slot for a connection that won its claim.
    pub fn install_session(
        &self,
        client_id: MqttStr,
        owner: Claimant,
        state: SessionState,
        link: Rc<ConnLink>,
    ) -> SessionKey {
        let slot = SessionSlot {
            client_id: StoredId::new(&client_id),
            owner,
            state,
            presence: Presence::Live(link),
            expiry: 0,
            offline_since: None,
            pending_will: None,
        };
        let key = self.sessions.borrow_mut().insert(slot);
        {
            let mut installing = self.installing.borrow_mut();
            if let Some(n) = installing.get_mut(&client_id) {
                *n -= 1;
                if *n == 0 {
                    installing.remove(&client_id);
                }
            }
        }
        let deferred = self.deferred_evictions.borrow_mut().remove(&client_id);
        if let Some((claimant, clean_start)) = deferred {
            // Taken over while it was being installed: the connection sees
            // its slot gone and closes without CONNACK.
            self.evict(&client_id, claimant, clean_start, Instant::now());
        }
        key
    }

    /// Kills every live connection with `reason` (shutdown).
    pub fn kill_all(&self, reason: DisconnectReasonCode) {
        let mut sessions = self.sessions.borrow_mut();
        for key in sessions.online_keys() {
            if let Some(slot) = sessions.get_mut(key) {
                self.unpark(slot);
                if let Some(link) = slot.link() {
                    link.kill(reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(core: &Core, id: &str) -> SessionKey {
        let key = core.session_for_tests(id);
        let mut sessions = core.sessions.borrow_mut();
        sessions.get_mut(key).unwrap().expiry = 300;
        key
    }

    /// `max_offline_sessions` (2 over 2 cores: 1 here): when a second
    /// session goes offline, the one offline longest ends as if it had
    /// expired: its delayed will is published and it is counted as
    /// evicted; the newer one stays, as do online sessions.
    #[test]
    fn the_session_offline_longest_is_evicted_with_its_will() {
        let core = Core::for_tests(|c| c.limits.max_offline_sessions = 2);
        assert_eq!(core.max_offline_sessions, 1);
        let t0 = Instant::now();
        let old = session(&core, "old");
        let new = session(&core, "new");
        let online = session(&core, "online");
        core.sessions.borrow_mut().detach(old, t0);
        core.sessions
            .borrow_mut()
            .get_mut(old)
            .unwrap()
            .pending_will = Some(Box::new((
            super::super::super::sessions::tests::will(),
            t0 + std::time::Duration::from_secs(60),
        )));
        core.evict_offline_sessions(t0);
        assert_eq!(core.stats.sessions_evicted.get(), 0, "within the limit");

        core.sessions.borrow_mut().detach(new, t0);
        core.evict_offline_sessions(t0);
        assert_eq!(core.stats.sessions_evicted.get(), 1);
        assert_eq!(core.stats.wills_published.get(), 1);
        let mut sessions = core.sessions.borrow_mut();
        assert!(sessions.get_mut(old).is_none());
        assert!(sessions.get_mut(new).is_some());
        assert!(sessions.get_mut(online).is_some());
        assert_eq!((sessions.online(), sessions.offline()), (1, 1));
    }
}
