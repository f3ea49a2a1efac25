//! Moving a live connection, with its session, from one core to another
//! without losing, duplicating or reordering a message (see `affinity.rs`
//! for when).
//!
//! The connection's socket stays open: its task on the old core stops at a
//! quiet point (everything buffered handled, everything produced written)
//! and hands a duplicate of the descriptor, the protocol state and the
//! session to the new core, which serves it from there. The client sees
//! nothing. Every other core's replica then switches the subscriptions from
//! the old session key to the new one, and until every core has switched,
//! messages still routed to the old key reach the new core through the old
//! one, in order:
//!
//! ```text
//!  old core B                      new core A                  other core X
//!  task stops, slot removed,
//!  old key K forwards to A
//!   |--- Adopt(fd, conn, session) ->| installs K', serves the
//!   |                               | socket; its replica K -> K';
//!   |                               | K' deliveries are held
//!   |<-- Rekey(K, K') --------------|--- Rekey(K, K') ---------->| K -> K'
//!   |<----------------------------------------- Marker(K) ------|
//!   |  (everything X routed to K before switching came first)
//!   |  B's replica K -> K'
//!   |--- Forwarded(K, msg) ... ---->| delivered at once
//!   |--- ForwardingDone(K') ------->| held deliveries follow
//!   |                               |--- Reowned(id, B#t -> A#t') -> home core
//! ```
//! Mesh channels are FIFO per pair of cores, so every message for `K` that
//! a core routed before it switched reaches B before that core's marker
//! (A's own marker is its `Rekey`), and B forwards it to A before it sends
//! `ForwardingDone`. A delivers what came directly to `K'` only after that:
//! per publisher, the old path's messages all come first.
//!
//! The client id's home core learns the new owner from `Reowned`. An
//! `Evict` it sent to B before that (a takeover racing the move) is
//! forwarded by B to A, which holds the session by then; B forgets the id
//! once the home core acknowledges.
//!
//! Owns: the forwarding, holding and hand-over bookkeeping of moves in
//! progress. Does not own: deciding to move (`affinity.rs`) or serving the
//! socket (`conn.rs`).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::BytesMut;

use crate::broker::connection::Connection;
use crate::broker::message::{DeliveryPlan, Message, SessionKey, SubscriptionEntry};
use crate::broker::session::SessionState;
use crate::codec::{MqttStr, TopicFilter};

use super::core::{home_core, Core};
use super::mailbox::{Claimant, CoreMsg};
use super::sessions::{ConnLink, Presence, SessionSlot, StoredId};

/// A connection and its session on their way to another core.
#[derive(Debug)]
pub struct Adoption {
    pub fd: OwnedFd,
    pub conn: Connection,
    /// Bytes read but not yet a whole packet.
    pub input: BytesMut,
    pub peer: SocketAddr,
    pub client_id: StoredId,
    /// The claim the session held on the old core.
    pub owner: Claimant,
    pub state: SessionState,
    pub expiry: u32,
    pub old_key: SessionKey,
}

/// On the core a connection left: where messages for its old key go.
struct Forwarding {
    to: usize,
    /// The new key, once the adopting core's `Rekey` has arrived.
    new_key: Option<SessionKey>,
    /// The subscriptions that move from the old key to the new one here.
    filters: Vec<(TopicFilter, SubscriptionEntry)>,
    /// Markers still expected from cores other than the two.
    markers_left: usize,
}

/// A connection adopted from another core, to be served by a new task.
pub struct ToServe {
    pub adoption: Box<Adoption>,
    pub link: Rc<ConnLink>,
}

/// Moves in progress on one core.
#[derive(Default)]
pub struct Migrations {
    forwarding: AHashMap<SessionKey, Forwarding>,
    /// Client ids that left this core, and where to, until their home core
    /// has acknowledged the new owner.
    moved_ids: AHashMap<StoredId, usize>,
    /// On the adopting core: old key to new key, for forwarded messages.
    adopted: AHashMap<SessionKey, SessionKey>,
    /// New keys whose other deliveries wait for `ForwardingDone`.
    holding: AHashMap<SessionKey, Vec<Held>>,
    /// On a core that won a takeover: old keys whose session has been
    /// handed over but not installed yet, with what was forwarded for them
    /// meanwhile.
    awaiting_install: AHashMap<SessionKey, Vec<(Message, DeliveryPlan)>>,
    pub to_serve: Vec<ToServe>,
}

/// What [`Migrations::hold`] did with a delivery.
pub enum Holding {
    Held,
    /// QoS 0 beyond the bound.
    Dropped,
    /// Not held: deliver it now.
    NotHeld(DeliveryPlan),
}

/// A delivery to a session that just moved here, waiting for the old
/// path to drain.
struct Held {
    message: Message,
    plan: DeliveryPlan,
    /// A retained message sent on subscribe (not bounded by the queue).
    retained: bool,
}

impl Migrations {
    /// Keeps the delivery if deliveries to `key` are held; otherwise hands
    /// `plan` back.
    ///
    /// What is held waits for one round of markers through every core, so
    /// it is bounded in time. QoS 0 is also bounded in number: beyond
    /// `max_queued` held messages it is dropped (the session queue's bound
    /// and its `queue_full` count); QoS 1/2, acknowledged to publishers, is
    /// always kept.
    pub fn hold(
        &mut self,
        key: SessionKey,
        message: &Message,
        plan: DeliveryPlan,
        retained: bool,
        max_queued: usize,
    ) -> Holding {
        let Some(held) = self.holding.get_mut(&key) else {
            return Holding::NotHeld(plan);
        };
        if plan.qos == crate::codec::QoS::AtMostOnce && !retained && held.len() >= max_queued {
            return Holding::Dropped;
        }
        held.push(Held {
            message: message.clone(),
            plan,
            retained,
        });
        Holding::Held
    }

    pub fn is_holding(&self) -> bool {
        !self.holding.is_empty()
    }

    /// The core messages for a departed `key` go to.
    pub fn forward_to(&self, key: SessionKey) -> Option<usize> {
        self.forwarding.get(&key).map(|f| f.to)
    }

    /// The new key of a session that left this core under `old`, once
    /// known.
    pub fn renamed(&self, old: SessionKey) -> Option<SessionKey> {
        self.forwarding.get(&old).and_then(|f| f.new_key)
    }

    /// Whether `key` moved here and still waits for its old path to
    /// drain: it must not move on before, or what waits would arrive at
    /// its next core after newer messages.
    pub fn is_settling(&self, key: SessionKey) -> bool {
        self.holding.contains_key(&key)
    }

    /// Where a client id that left this core went, while its home core may
    /// not know yet.
    pub fn moved_to(&self, client_id: &MqttStr) -> Option<usize> {
        self.moved_ids.get(client_id.as_bytes()).copied()
    }
}

/// The old core's side: the connection's task has stopped at a quiet
/// point and left `fd`. Removes the session, starts forwarding its key, and
/// sends everything to `target`. The caller has checked that the session
/// is present.
pub fn send_away(
    core: &Core,
    fd: OwnedFd,
    conn: Connection,
    input: BytesMut,
    peer: SocketAddr,
    target: usize,
) {
    let slot = conn
        .session_key
        .and_then(|key| Some((key, core.sessions.borrow_mut().remove(key)?)));
    let Some((key, slot)) = slot else {
        tracing::warn!(core = core.id, "a moving connection has no session; closed");
        return;
    };
    let filters = slot
        .state
        .subscriptions
        .iter()
        .map(|(f, e)| (f.clone(), *e))
        .collect();
    {
        let mut migrations = core.migrations.borrow_mut();
        migrations.forwarding.insert(
            key,
            Forwarding {
                to: target,
                new_key: None,
                filters,
                markers_left: core.ncores.saturating_sub(2),
            },
        );
        migrations.moved_ids.insert(slot.client_id.clone(), target);
    }
    core.connection_ended();
    core.stats.connections_current.dec();
    core.stats.connections_moved_out.inc();
    core.send(
        target,
        CoreMsg::Adopt(Box::new(Adoption {
            fd,
            conn,
            input,
            peer,
            client_id: slot.client_id,
            owner: slot.owner,
            state: slot.state,
            expiry: slot.expiry,
            old_key: key,
        })),
    );
}

/// The new core's side of `Adopt`: installs the session under a new key,
/// switches this replica, tells every peer, and queues the connection to
/// be served.
pub fn adopt(core: &Core, mut adoption: Box<Adoption>) {
    let link = Rc::new(ConnLink::default());
    let owner = Claimant {
        core: core.id,
        ticket: core.next_ticket(),
    };
    let filters: Vec<(TopicFilter, SubscriptionEntry)> = adoption
        .state
        .subscriptions
        .iter()
        .map(|(f, e)| (f.clone(), *e))
        .collect();
    let state = std::mem::replace(&mut adoption.state, SessionState::new(core.session_limits));
    let key = core.sessions.borrow_mut().insert(SessionSlot {
        client_id: adoption.client_id.clone(),
        owner,
        state,
        presence: Presence::Live(link.clone()),
        expiry: adoption.expiry,
        offline_since: None,
        pending_will: None,
    });
    adoption.conn.session_key = Some(key);
    let old = adoption.old_key;
    {
        let mut migrations = core.migrations.borrow_mut();
        migrations.adopted.insert(old, key);
        migrations.holding.insert(key, Vec::new());
    }
    switch_replicas(core, old, key, &filters);
    let client_id = adoption.client_id.to_mqtt();
    core.send(
        home_core(client_id.as_bytes(), core.ncores),
        CoreMsg::Reowned {
            client_id,
            from: adoption.owner,
            to: owner,
        },
    );
    core.open_connections.set(core.open_connections.get() + 1);
    core.stats.connections_current.inc();
    core.migrations
        .borrow_mut()
        .to_serve
        .push(ToServe { adoption, link });
    core.resume_ready.notify();
}

/// Switches this core's replica from `old` to `new` and tells every peer
/// to do the same (`Rekey`).
fn switch_replicas(
    core: &Core,
    old: SessionKey,
    new: SessionKey,
    filters: &[(TopicFilter, SubscriptionEntry)],
) {
    {
        let mut trie = core.trie.borrow_mut();
        for (filter, entry) in filters {
            trie.remove(filter, old);
            trie.insert(filter, new, *entry);
        }
    }
    for peer in (0..core.ncores).filter(|&p| p != core.id) {
        core.send(
            peer,
            CoreMsg::Rekey {
                old,
                new,
                filters: filters.to_vec(),
            },
        );
    }
}

/// The old core's side of a takeover that continues the session on core
/// `to` (see `Core::evict`): as for a move, messages routed to `key` go on
/// to `to` until every replica routes by the session's new key. `to` may
/// be this core.
pub fn forward_taken_over(core: &Core, key: SessionKey, slot: &SessionSlot, to: usize) {
    let filters = slot
        .state
        .subscriptions
        .iter()
        .map(|(f, e)| (f.clone(), *e))
        .collect();
    // Markers come from every core but this one and `to`.
    let others = core.ncores - 1 - usize::from(to != core.id);
    core.migrations.borrow_mut().forwarding.insert(
        key,
        Forwarding {
            to,
            new_key: None,
            filters,
            markers_left: others,
        },
    );
}

/// The claimant's side of a Handover that carries a session: what the old
/// core forwards for `old` is kept until the session is installed.
pub fn expect_forwarded(core: &Core, old: SessionKey) {
    core.migrations
        .borrow_mut()
        .awaiting_install
        .insert(old, Vec::new());
}

/// The claimant's side, once the session taken over from `old` is
/// installed under `new`: what was forwarded meanwhile is delivered, other
/// deliveries wait for the old path to drain, and every replica switches
/// to the new key.
pub fn resume_taken_over(
    core: &Core,
    old: SessionKey,
    new: SessionKey,
    filters: Vec<(TopicFilter, SubscriptionEntry)>,
) {
    let forwarded = {
        let mut migrations = core.migrations.borrow_mut();
        migrations.adopted.insert(old, new);
        migrations.holding.insert(new, Vec::new());
        migrations.awaiting_install.remove(&old).unwrap_or_default()
    };
    let now = std::time::Instant::now();
    for (message, plan) in forwarded {
        core.deliver_forwarded(new, &message, plan, now, false);
    }
    switch_replicas(core, old, new, &filters);
    if usize::from(old.core) == core.id {
        // Taken over on the same core: this core is the old one too.
        rekey(core, old, new, filters);
    }
}

/// A peer's side of `Rekey`. The old core switches only once every other
/// core has (see the module docs); any other core switches now and tells
/// the old core so, behind what it routed to the old key.
pub fn rekey(
    core: &Core,
    old: SessionKey,
    new: SessionKey,
    filters: Vec<(TopicFilter, SubscriptionEntry)>,
) {
    if usize::from(old.core) == core.id {
        let done = {
            let mut migrations = core.migrations.borrow_mut();
            let Some(forwarding) = migrations.forwarding.get_mut(&old) else {
                return;
            };
            forwarding.new_key = Some(new);
            forwarding.markers_left == 0
        };
        if done {
            finish_forwarding(core, old);
        }
        return;
    }
    {
        let mut trie = core.trie.borrow_mut();
        for (filter, entry) in &filters {
            trie.remove(filter, old);
            trie.insert(filter, new, *entry);
        }
    }
    core.send(usize::from(old.core), CoreMsg::RekeyMarker { old });
}

/// The old core's side of a peer's marker.
pub fn marker(core: &Core, old: SessionKey) {
    let done = {
        let mut migrations = core.migrations.borrow_mut();
        let Some(forwarding) = migrations.forwarding.get_mut(&old) else {
            return;
        };
        forwarding.markers_left = forwarding.markers_left.saturating_sub(1);
        forwarding.markers_left == 0 && forwarding.new_key.is_some()
    };
    if done {
        finish_forwarding(core, old);
    }
}

/// Every core has switched: nothing more can arrive for `old`. Switches
/// this replica last and tells the adopting core.
fn finish_forwarding(core: &Core, old: SessionKey) {
    let Some(forwarding) = core.migrations.borrow_mut().forwarding.remove(&old) else {
        return;
    };
    let Some(new) = forwarding.new_key else {
        return;
    };
    {
        let mut trie = core.trie.borrow_mut();
        for (filter, entry) in &forwarding.filters {
            trie.remove(filter, old);
            trie.insert(filter, new, *entry);
        }
    }
    core.send(forwarding.to, CoreMsg::ForwardingDone { old, new });
}

/// A replica update for `key` reached the old core while it still routes
/// by the old key: the moved session changed that subscription on its new
/// core, so the old key's copy must not be switched over later.
pub fn subscription_changed(core: &Core, key: SessionKey, filter: &TopicFilter) {
    let mut migrations = core.migrations.borrow_mut();
    if migrations.forwarding.is_empty() {
        return;
    }
    for (old, forwarding) in migrations.forwarding.iter_mut() {
        if forwarding.new_key == Some(key) {
            forwarding.filters.retain(|(f, _)| f != filter);
            core.trie.borrow_mut().remove(filter, *old);
        }
    }
}

/// The adopting core's side of `ForwardingDone`: what waited is delivered,
/// after everything forwarded.
pub fn forwarding_done(core: &Core, old: SessionKey, new: SessionKey, now: std::time::Instant) {
    let held = {
        let mut migrations = core.migrations.borrow_mut();
        migrations.adopted.remove(&old);
        migrations.holding.remove(&new).unwrap_or_default()
    };
    for held in held {
        core.deliver_forwarded(new, &held.message, held.plan, now, held.retained);
    }
    core.settled(new);
}

/// The adopting core's side of `Forwarded`.
pub fn forwarded(
    core: &Core,
    old: SessionKey,
    message: &Message,
    plan: DeliveryPlan,
    now: std::time::Instant,
) {
    let new = {
        let mut migrations = core.migrations.borrow_mut();
        let new = migrations.adopted.get(&old).copied();
        if new.is_none() {
            if let Some(waiting) = migrations.awaiting_install.get_mut(&old) {
                waiting.push((message.clone(), plan));
                return;
            }
        }
        new
    };
    if let Some(new) = new {
        core.deliver_forwarded(new, message, plan, now, false);
    }
}

/// The home core's side of `Reowned`.
pub fn reowned(core: &Core, client_id: MqttStr, from: Claimant, to: Claimant) {
    core.reown(&client_id, from, to);
    core.send(from.core, CoreMsg::ReownedAck { client_id });
}

/// The old core's side of `ReownedAck`.
pub fn reowned_ack(core: &Core, client_id: &MqttStr) {
    core.migrations
        .borrow_mut()
        .moved_ids
        .remove(client_id.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Publish, QoS, QosPid, SubscriptionOptions, TopicName};
    use bytes::Bytes;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Instant;

    const OLD: SessionKey = SessionKey {
        core: 1,
        slot: 5,
        generation: 1,
    };
    const NEW: SessionKey = SessionKey {
        core: 0,
        slot: 9,
        generation: 1,
    };

    /// Core 1 of 3, the old core of a session `OLD` that subscribed to
    /// `t/#` with No Local and left for core 0, where it is `NEW`; core 2
    /// has not sent its marker yet.
    fn old_core_forwarding() -> (Core, Vec<(TopicFilter, SubscriptionEntry)>) {
        let config = crate::server::config::Config::default();
        let core = Core::new(1, 3, &config, Arc::new(AtomicBool::new(false)));
        let filter = TopicFilter::try_from("t/#").unwrap();
        let entry = SubscriptionEntry {
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
            identifier: None,
        };
        core.trie.borrow_mut().insert(&filter, OLD, entry);
        let filters = vec![(filter, entry)];
        core.migrations.borrow_mut().forwarding.insert(
            OLD,
            Forwarding {
                to: 0,
                new_key: None,
                filters: filters.clone(),
                markers_left: 1,
            },
        );
        (core, filters)
    }

    fn message(origin: SessionKey) -> Message {
        let mut publish = Publish::new(TopicName::try_from("t/x").unwrap(), Bytes::from("m"));
        publish.qos_pid = QosPid::AtMostOnce;
        Message::from_publish(&publish, Some(origin), Instant::now())
    }

    /// What core 1 sent core 0: forwarded messages' origins, and whether
    /// forwarding was declared done.
    fn sent_to_new_core(core: &Core) -> (Vec<Option<SessionKey>>, bool) {
        let mut forwarded = Vec::new();
        let mut done = false;
        for msg in core.outboxes[0].take_batch() {
            match msg {
                CoreMsg::Forwarded { message, .. } => forwarded.push(message.origin),
                CoreMsg::ForwardingDone { old, new } => done = (old, new) == (OLD, NEW),
                _ => {}
            }
        }
        (forwarded, done)
    }

    /// On the adopting core, deliveries to the new key wait for
    /// `ForwardingDone`; retained messages sent on subscribe keep their
    /// exemption from the queue bound while they wait: with
    /// `max_queued = 1`, both of two arrive.
    #[test]
    fn held_retained_deliveries_stay_exempt_from_the_queue_bound() {
        let core = Core::for_tests(|c| {
            c.limits.max_queued = 1;
            c.limits.queue_qos0_offline = true;
        });
        let new = core.session_for_tests("moved");
        core.migrations.borrow_mut().holding.insert(new, Vec::new());
        let entry = SubscriptionEntry {
            options: SubscriptionOptions::default(),
            identifier: None,
        };
        let now = Instant::now();
        for topic in ["r/1", "r/2"] {
            let mut publish = Publish::new(TopicName::try_from(topic).unwrap(), Bytes::from("m"));
            publish.retain = true;
            let message = Message::from_publish(&publish, None, now);
            let plan = DeliveryPlan::new(&message, &entry, true);
            core.deliver_retained_to(new, &message, plan, now);
        }
        let queued = |core: &Core| {
            let mut sessions = core.sessions.borrow_mut();
            sessions.get_mut(new).unwrap().state.queued_len()
        };
        assert_eq!(queued(&core), 0, "held");
        forwarding_done(&core, OLD, new, now);
        assert_eq!(queued(&core), 2, "both retained messages delivered");
        assert!(!core.migrations.borrow().is_holding());
    }

    /// Held QoS 0 deliveries stop at `max_queued` (dropped, counted as
    /// queue_full); QoS 1 is held whatever their number.
    #[test]
    fn held_qos0_is_bounded_and_qos1_is_kept() {
        let core = Core::for_tests(|c| c.limits.max_queued = 2);
        let new = core.session_for_tests("moved");
        core.migrations.borrow_mut().holding.insert(new, Vec::new());
        let now = Instant::now();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let entry = SubscriptionEntry {
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
                identifier: None,
            };
            for _ in 0..4 {
                let mut publish =
                    Publish::new(TopicName::try_from("h/t").unwrap(), Bytes::from("m"));
                if qos == QoS::AtLeastOnce {
                    publish.qos_pid =
                        QosPid::new(QoS::AtLeastOnce, crate::codec::PacketId::new(1)).unwrap();
                }
                let message = Message::from_publish(&publish, None, now);
                let plan = DeliveryPlan::new(&message, &entry, false);
                core.deliver_to(new, &message, plan, now);
            }
        }
        let held = core.migrations.borrow().holding[&new].len();
        assert_eq!(held, 2 + 4, "two QoS 0 (the bound) and every QoS 1");
        let queue_full = crate::server::stats::DropCause::QueueFull as usize;
        assert_eq!(core.stats.drops[queue_full].get(), 2);
    }

    /// [MQTT-3.8.3-3] while the old core still routes by the old key: the
    /// moved session's own message, published under its new key and sent
    /// here for another subscriber, is not forwarded back to it; another
    /// client's message is. Once the last marker is in, the replica holds
    /// the new key and the new core hears that forwarding is done.
    #[test]
    fn no_local_is_kept_by_the_old_key_until_every_core_switched() {
        let (core, filters) = old_core_forwarding();
        let now = Instant::now();
        core.dispatch(
            CoreMsg::Rekey {
                old: OLD,
                new: NEW,
                filters,
            },
            now,
        );
        let other = SessionKey {
            core: 2,
            slot: 1,
            generation: 1,
        };
        core.dispatch(CoreMsg::Publish(message(NEW)), now);
        core.dispatch(CoreMsg::Publish(message(other)), now);
        assert_eq!(sent_to_new_core(&core), (vec![Some(other)], false));

        core.dispatch(CoreMsg::RekeyMarker { old: OLD }, now);
        assert_eq!(sent_to_new_core(&core), (vec![], true));
        let mut holders = Vec::new();
        core.trie
            .borrow()
            .match_topic("t/x", |key, _| holders.push(key), |_, _| {});
        assert_eq!(holders, [NEW]);
    }
}
