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

/// An `Evict` from a client id's home core.
#[derive(Debug, Clone)]
pub struct Eviction {
    pub client_id: MqttStr,
    pub claimant: Claimant,
    /// The owner the home core replaced.
    pub previous: Claimant,
    pub clean_start: bool,
}

/// An eviction that has to wait (see [`Core::evict`]).
#[derive(Debug)]
pub struct DeferredEviction {
    eviction: Eviction,
    until: Until,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// This core's claim with this ticket is installed.
    Installed(u64),
    /// The session under this key, which just moved here, has settled.
    Settled(SessionKey),
}

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
        self.installing.borrow_mut().insert(claimant.ticket);
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

    /// The previous owner's side of a takeover: closes the session's
    /// connection and hands the session to the claimant.
    ///
    /// Waits first in two cases, or two connections would own the id:
    /// - the previous owner is a claim of this core that won but is not
    ///   installed yet (its Handover and this Evict came from different
    ///   cores, in either order): evicted once installed;
    /// - the session just moved here and messages for its old key are
    ///   still on their way: evicted once they are in, so that the next
    ///   owner gets them in order.
    ///
    /// A previous owner that is neither here nor pending has ended: the
    /// claimant starts afresh. A session that continues (no Clean Start)
    /// keeps its subscriptions in every replica under its old key, which
    /// forwards to the claimant's core until every replica has switched to
    /// its new key (`migrate.rs`), so nothing published meanwhile is lost.
    pub(super) fn evict(&self, eviction: Eviction, now: Instant) {
        let client_id = &eviction.client_id;
        let key = self.sessions.borrow().key_of_client(client_id);
        let until = match key {
            None => {
                let moved_to = self.migrations.borrow().moved_to(client_id);
                if let Some(to) = moved_to {
                    // The session moved cores before its home core learnt of it.
                    self.send(
                        to,
                        CoreMsg::Evict {
                            client_id: eviction.client_id.clone(),
                            claimant: eviction.claimant,
                            previous: eviction.previous,
                            clean_start: eviction.clean_start,
                        },
                    );
                    return;
                }
                let previous = eviction.previous;
                let pending =
                    previous.core == self.id && self.installing.borrow().contains(&previous.ticket);
                pending.then_some(Until::Installed(previous.ticket))
            }
            Some(key) => self
                .migrations
                .borrow()
                .is_settling(key)
                .then_some(Until::Settled(key)),
        };
        if let Some(until) = until {
            self.deferred_evictions
                .borrow_mut()
                .push(DeferredEviction { eviction, until });
            return;
        }
        let Eviction {
            claimant,
            clean_start,
            ..
        } = eviction;
        let slot = key.and_then(|key| Some((key, self.sessions.borrow_mut().remove(key)?)));
        let session = slot.and_then(|(key, mut slot)| {
            self.unpark(&mut slot);
            if let Some(link) = slot.link() {
                // [MQTT-3.1.4-3]: the existing connection is closed, 5.0
                // clients with DISCONNECT 0x8E.
                link.session_ended.set(clean_start);
                link.kill(DisconnectReasonCode::SessionTakenOver);
            }
            if clean_start {
                // The old session ends: its subscriptions go, and a delayed
                // will is published now.
                for filter in slot.state.subscriptions.keys() {
                    self.remove_subscription(key, filter);
                }
                if let Some((will, _)) = slot.pending_will.map(|due| *due) {
                    self.publish_will(will, now);
                }
                return None;
            }
            // Until the claimant's CONNACK, deliveries queue.
            slot.state.suspend();
            crate::server::migrate::forward_taken_over(self, key, &slot, claimant.core);
            Some(Box::new(SessionTransfer {
                state: slot.state,
                old_key: key,
            }))
        });
        self.send(
            claimant.core,
            CoreMsg::Handover {
                ticket: claimant.ticket,
                session,
            },
        );
    }

    /// Carries out the evictions that waited for `until`.
    fn evict_deferred(&self, until: Until) {
        let ready: Vec<Eviction> = {
            let mut deferred = self.deferred_evictions.borrow_mut();
            if deferred.is_empty() {
                return;
            }
            let (ready, waiting) = std::mem::take(&mut *deferred)
                .into_iter()
                .partition(|d| d.until == until);
            *deferred = waiting;
            ready.into_iter().map(|d| d.eviction).collect()
        };
        for eviction in ready {
            self.evict(eviction, Instant::now());
        }
    }

    /// A session that moved here has settled (`migrate.rs`): evictions
    /// that waited for it go ahead.
    pub fn settled(&self, key: SessionKey) {
        self.evict_deferred(Until::Settled(key));
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

    /// Creates a session slot for a connection that won its claim. A
    /// session taken over from `old_key` switches every replica to its new
    /// key (`migrate.rs`); any other has no subscriptions yet.
    pub fn install_session(
        &self,
        client_id: MqttStr,
        owner: Claimant,
        state: SessionState,
        old_key: Option<SessionKey>,
        link: Rc<ConnLink>,
    ) -> SessionKey {
        let filters: Vec<_> = state
            .subscriptions
            .iter()
            .map(|(f, e)| (f.clone(), *e))
            .collect();
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
        match old_key {
            Some(old) => crate::server::migrate::resume_taken_over(self, old, key, filters),
            None => {
                for (filter, entry) in &filters {
                    self.add_subscription(key, filter, *entry);
                }
            }
        }
        self.installing.borrow_mut().remove(&owner.ticket);
        // Taken over while it was being installed: the connection sees its
        // slot gone and closes without CONNACK.
        self.evict_deferred(Until::Installed(owner.ticket));
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

    fn mstr(id: &str) -> MqttStr {
        MqttStr::try_from(id).expect("a valid client id")
    }

    /// The previous owner's connection closed before the Evict arrived,
    /// while the claimant is a connection on this same core: the claimant
    /// gets its Handover at once. (Deferring because *some* claim for the
    /// id was pending here left the claimant waiting for its own install.)
    #[test]
    fn evicting_an_owner_that_has_ended_hands_over_at_once() {
        let core = Core::for_tests(|_| {});
        let key = session(&core, "id");
        let previous = core.sessions.borrow_mut().get_mut(key).unwrap().owner;
        let claimant = Claimant {
            core: core.id,
            ticket: core.next_ticket(),
        };
        core.installing.borrow_mut().insert(claimant.ticket);
        core.end_session(key);
        core.take_self_messages();
        let eviction = Eviction {
            client_id: mstr("id"),
            claimant,
            previous,
            clean_start: true,
        };
        core.evict(eviction, Instant::now());
        let sent = core.take_self_messages();
        assert!(
            matches!(sent.as_slice(), [CoreMsg::Handover { ticket, session: None }] if *ticket == claimant.ticket),
            "{sent:?}"
        );
        assert!(core.deferred_evictions.borrow().is_empty());
    }

    /// The previous owner won its claim here but is not installed yet: the
    /// eviction waits, then hands the installed session over, with its
    /// old key so that what is routed to it meanwhile follows it.
    #[test]
    fn evicting_a_claim_not_yet_installed_waits_for_it() {
        let core = Core::for_tests(|_| {});
        let previous = Claimant {
            core: core.id,
            ticket: core.next_ticket(),
        };
        core.installing.borrow_mut().insert(previous.ticket);
        let claimant = Claimant { core: 0, ticket: 7 };
        let eviction = Eviction {
            client_id: mstr("id"),
            claimant,
            previous,
            clean_start: false,
        };
        core.evict(eviction, Instant::now());
        assert!(
            core.outboxes[0].take_batch().is_empty(),
            "evicted too early"
        );
        assert_eq!(core.deferred_evictions.borrow().len(), 1);

        let state = SessionState::new(core.session_limits);
        let key = core.install_session(mstr("id"), previous, state, None, Rc::default());
        assert!(core.sessions.borrow_mut().get_mut(key).is_none());
        let sent = core.outboxes[0].take_batch();
        assert!(
            matches!(sent.as_slice(), [CoreMsg::Handover { ticket: 7, session: Some(t) }] if t.old_key == key),
            "{sent:?}"
        );
        assert_eq!(core.migrations.borrow().forward_to(key), Some(0));
    }

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
