//! One executor's share of the broker: its sessions, its replica of the
//! subscription index and of the retained store, its outboxes to the other
//! cores, and the part of the client-id directory it is home for.
//!
//! Owns: routing a PUBLISH (local delivery, one message per other core that
//! has subscribers, shared-subscription picks), applying replica updates,
//! barriers, and the client-id ownership protocol. Does not own: sockets
//! (see `conn.rs`) or protocol rules (see `crate::broker`).
//!
//! # Replicas and barriers
//! Every core holds every subscription and every retained message. A core
//! that changes either applies it locally and sends the change to every
//! peer. Mesh channels are FIFO per pair of cores, so a `BarrierRequest`
//! sent after the changes is answered only once each peer has applied them.
//! SUBACK, and PUBACK/PUBREC of a retained message, wait for that answer.
//! That gives the two guarantees the broker promises:
//! - a PUBLISH received on any core after the SUBACK was sent matches the
//!   new subscription, because that core had applied it before acking;
//! - a retained message that was acknowledged (or received at QoS 0) before
//!   a SUBSCRIBE arrived is in the subscribing core's replica once that
//!   SUBSCRIBE's barrier completes, because the core that received it sent
//!   the update before it answered the barrier.
//!
//! # Client-id ownership
//! Each client id has a home core (a hash of the id). The home core keeps
//! who owns the id; every CONNECT claims it there, so claims for one id are
//! serialised in one place and exactly one connection ends up owning it.
//!
//! ```text
//!   new conn (core A)          home core H              old owner (core B)
//!        |--- Claim(id, A#t) ------>|                            |
//!        |                          | owner := A#t               |
//!        |                          |--- Evict(id, A#t) -------->| close old conn (0x8E)
//!        |                          |                            | drop its subscriptions
//!        |<------------------------------ Handover(t, session) --|
//!        | re-register subscriptions, barrier, CONNACK           |
//! ```
//! With no previous owner, H answers `Handover(t, None)` itself. A session
//! that ends sends `Release(id, owner)` to H, which forgets the id only if
//! that owner is still the current one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::BytesMut;
use smallvec::SmallVec;

use crate::broker::connection::ConnectionLimits;
use crate::broker::message::{DeliveryPlan, Message, SessionKey, SubscriptionEntry};
use crate::broker::retained::RetainedStore;
use crate::broker::session::{QueueBound, SessionLimits, SessionState};
use crate::broker::trie::SubscriptionTrie;
use crate::codec::{
    DisconnectReasonCode, MqttStr, QoS, RetainHandling, TopicFilter, TopicName, Will,
};

use super::mailbox::{Claimant, CoreMsg, Outbox, SessionTransfer};
use super::notify::Notify;
use super::parking::ParkingLot;
use super::sessions::{ConnLink, Marks, Presence, SessionSlot, Sessions, StoredId};
use super::stats::CoreStats;

/// How long a subscriber may take to drain below the back-pressure mark
/// before it counts as a slow consumer.
pub const SLOW_CONSUMER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Home core of a client id.
pub fn home_core(client_id: &[u8], ncores: usize) -> usize {
    // Fixed seeds: every core must compute the same home.
    let state = ahash::RandomState::with_seeds(0x7661, 0x6e65, 0x6d71, 0x7474);
    (state.hash_one(client_id) % ncores as u64) as usize
}

struct BarrierState {
    remaining: usize,
    done: Rc<Notify>,
}

/// A connection waiting for its client id's session.
struct ClaimWaiter {
    done: Rc<Notify>,
    result: Rc<RefCell<Option<Option<Box<SessionTransfer>>>>>,
}

pub struct Core {
    pub id: usize,
    pub ncores: usize,
    pub connection_limits: ConnectionLimits,
    pub session_limits: SessionLimits,
    pub max_connections: usize,
    /// `max_retained_messages` (0: no limit), checked by the core that
    /// receives a retained PUBLISH against its replica.
    pub max_retained: usize,
    /// This core's share of `max_offline_sessions` (0: no limit).
    pub max_offline_sessions: usize,
    pub sessions: RefCell<Sessions>,
    pub trie: RefCell<SubscriptionTrie<SessionKey, SubscriptionEntry>>,
    pub retained: RefCell<RetainedStore<Message>>,
    pub outboxes: Vec<Outbox>,
    /// Messages from this core to itself, handled by the dispatcher task in
    /// order, like a peer's.
    self_queue: RefCell<VecDeque<CoreMsg>>,
    pub self_ready: Notify,
    barriers: RefCell<AHashMap<u64, BarrierState>>,
    next_id: Cell<u64>,
    /// Client ids this core is home for, and who owns each.
    directory: RefCell<AHashMap<StoredId, Claimant>>,
    claims: RefCell<AHashMap<u64, ClaimWaiter>>,
    /// Client ids with a claim on this core whose session is not yet
    /// installed, and how many such claims each has.
    installing: RefCell<AHashMap<MqttStr, usize>>,
    /// Evictions that found no session because its claim was still being
    /// installed: carried out once it is (see `evict`).
    deferred_evictions: RefCell<AHashMap<MqttStr, (Claimant, bool)>>,
    /// This core's counters: written only here, read by the stats
    /// endpoint and the $SYS publisher (see `stats.rs`).
    pub stats: Arc<CoreStats>,
    /// Latency sampling and the stats tick's state (see `metrics.rs`).
    pub telemetry: super::metrics::Telemetry,
    pub shutdown: Arc<AtomicBool>,
    pub stopping: Notify,
    /// Output bytes and queued messages of a subscriber above which whoever
    /// is feeding it (a publisher's task, a mailbox receiver) waits for it
    /// to drain: a quarter of the write cap, half the queue bound.
    pub marks: Marks,
    /// Subscribers found over `backpressure_mark` since the last wait.
    congested: RefCell<Vec<Rc<ConnLink>>>,
    /// Where every connection of this core reads into, one poll at a time.
    pub read_scratch: RefCell<Vec<u8>>,
    /// Idle connections, parked (see `parking.rs`).
    pub parking: RefCell<ParkingLot>,
    /// How long a connection must be idle before it parks; `None`: never.
    pub park_after: Option<Duration>,
    /// Connections open on this core (served or parked), for the cap.
    pub open_connections: Cell<usize>,
    /// Parked connections to serve again, for `parking::resume_queued`
    /// (never resumed inline: glommio runs a spawned task at once, and the
    /// callers hold borrows of the core's state).
    pub to_resume: RefCell<Vec<super::parking::ParkId>>,
    pub resume_ready: Notify,
    /// Filters whose SUBSCRIBE is refused (`deny_subscribe`).
    pub deny_subscribe: Vec<TopicFilter>,
    /// Scratch for merging the plans of one PUBLISH, reused across calls.
    plans: RefCell<Vec<(SessionKey, DeliveryPlan)>>,
    /// Messages this core routed lately (at most [`RECENT_CAP`], none older
    /// than [`RECENT_WINDOW`]), for [`Core::catch_up`].
    recent: RefCell<VecDeque<Message>>,
    /// Following publishers (`affinity.rs`); None when off.
    pub follow: Option<super::affinity::FollowSettings>,
    /// The current review interval, and the live connections due for
    /// review at its end.
    pub follow_epoch: Cell<u8>,
    pub follow_candidates: RefCell<Vec<SessionKey>>,
    /// Connections moving between cores (`migrate.rs`).
    pub migrations: RefCell<super::migrate::Migrations>,
}

/// How many recently routed messages a core keeps for subscriptions that
/// reach it from another core, and for how long.
const RECENT_CAP: usize = 1024;
const RECENT_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

impl Core {
    pub fn new(
        id: usize,
        ncores: usize,
        config: &super::config::Config,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        Core {
            id,
            ncores,
            connection_limits: config.limits.connection(),
            session_limits: config.limits.session(),
            max_connections: config.limits.per_core_connections(ncores),
            max_retained: config.limits.max_retained_messages,
            max_offline_sessions: config.limits.per_core_offline_sessions(ncores),
            sessions: RefCell::new(Sessions::new(id as u16)),
            trie: RefCell::new(SubscriptionTrie::new()),
            retained: RefCell::new(RetainedStore::new()),
            outboxes: (0..ncores).map(|_| Outbox::default()).collect(),
            self_queue: RefCell::new(VecDeque::new()),
            self_ready: Notify::default(),
            barriers: RefCell::new(AHashMap::new()),
            next_id: Cell::new(1),
            directory: RefCell::new(AHashMap::new()),
            claims: RefCell::new(AHashMap::new()),
            installing: RefCell::new(AHashMap::new()),
            deferred_evictions: RefCell::new(AHashMap::new()),
            stats: Arc::default(),
            telemetry: Default::default(),
            shutdown,
            stopping: Notify::default(),
            marks: Marks {
                out_bytes: (config.limits.write_buffer_cap / 4).max(1),
                queued: (config.limits.max_queued / 2).max(1),
            },
            congested: RefCell::new(Vec::new()),
            read_scratch: RefCell::new(vec![0; super::conn::READ_CHUNK]),
            parking: RefCell::new(ParkingLot::new()),
            park_after: (config.executor.park_idle_after_ms > 0)
                .then(|| Duration::from_millis(config.executor.park_idle_after_ms)),
            open_connections: Cell::new(0),
            to_resume: RefCell::new(Vec::new()),
            resume_ready: Notify::default(),
            deny_subscribe: config
                .deny_subscribe
                .iter()
                .filter_map(|f| TopicFilter::try_from(f.as_str()).ok())
                .collect(),
            plans: RefCell::new(Vec::new()),
            recent: RefCell::new(VecDeque::new()),
            follow: config.executor.follow(ncores),
            follow_epoch: Cell::new(0),
            follow_candidates: RefCell::new(Vec::new()),
            migrations: RefCell::new(super::migrate::Migrations::default()),
        }
    }

    /// Gives the session's connection a link if it is parked, and has it
    /// resumed, so that it can be written to or killed now through
    /// [`SessionSlot::link`].
    fn unpark(&self, slot: &mut SessionSlot) {
        if let Presence::Parked(id) = slot.presence {
            // The lot hands this link to the task that resumes the
            // connection, even if the slot is gone by then (a takeover
            // removes it and kills the connection through the link).
            let link = Rc::new(ConnLink::default());
            if self.parking.borrow_mut().attach(id, link.clone()) {
                self.resume_parked(id);
            }
            slot.presence = Presence::Live(link);
        }
    }

    /// The link a connection taken out of the parking lot is served with:
    /// the one a delivery or kill made for it, or a new one its session
    /// now writes to.
    pub fn link_for_resumed(
        &self,
        id: super::parking::ParkId,
        parked: &super::parking::Parked,
    ) -> Rc<ConnLink> {
        if let Some(link) = &parked.link {
            return link.clone();
        }
        let link = Rc::new(ConnLink::default());
        let mut sessions = self.sessions.borrow_mut();
        if let Some(slot) = parked
            .conn
            .session_key
            .and_then(|key| sessions.get_mut(key))
        {
            if matches!(slot.presence, Presence::Parked(p) if p == id) {
                slot.presence = Presence::Live(link.clone());
            }
        }
        link
    }

    /// Serves a parked connection again, in a new task, soon. Stale ids
    /// (already resumed) are ignored then.
    pub fn resume_parked(&self, id: super::parking::ParkId) {
        self.to_resume.borrow_mut().push(id);
        self.resume_ready.notify();
    }

    /// A connection closed for good (not parked).
    pub fn connection_ended(&self) {
        self.open_connections
            .set(self.open_connections.get().saturating_sub(1));
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// A claim ticket, unique on this core.
    pub fn next_ticket(&self) -> u64 {
        self.next_id()
    }

    /// The home core's side of a move: `from` handed the client id to `to`,
    /// unless a later claim already owns it.
    pub fn reown(&self, client_id: &MqttStr, from: Claimant, to: Claimant) {
        let mut directory = self.directory.borrow_mut();
        if let Some(owner) = directory.get_mut(client_id.as_bytes()) {
            if *owner == from {
                *owner = to;
            }
        }
    }

    /// Sends `msg` to core `to` (itself included), in FIFO order per pair.
    pub fn send(&self, to: usize, msg: CoreMsg) {
        if to == self.id {
            self.self_queue.borrow_mut().push_back(msg);
            self.self_ready.notify();
        } else {
            self.stats
                .mailbox_messages
                .set(self.stats.mailbox_messages.get() + 1);
            self.outboxes[to].push(msg);
        }
    }

    fn broadcast(&self, mut make: impl FnMut() -> CoreMsg) {
        for peer in 0..self.ncores {
            if peer != self.id {
                self.send(peer, make());
            }
        }
    }

    /// Takes the messages this core sent itself.
    pub fn take_self_messages(&self) -> Vec<CoreMsg> {
        self.self_queue.borrow_mut().drain(..).collect()
    }

    /// Waits until every peer has applied everything this core sent it
    /// before the call (see the module docs).
    pub async fn barrier(&self) {
        if self.ncores == 1 {
            return;
        }
        let id = self.next_id();
        let done = Rc::new(Notify::default());
        self.barriers.borrow_mut().insert(
            id,
            BarrierState {
                remaining: self.ncores - 1,
                done: done.clone(),
            },
        );
        let from = self.id;
        self.broadcast(|| CoreMsg::BarrierRequest { id, from });
        done.notified().await;
    }

    /// Waits while any outbox is congested: the backpressure that stops a
    /// publisher from reading when other cores cannot keep up.
    pub async fn outbox_room(&self) {
        for outbox in &self.outboxes {
            if outbox.is_congested() {
                self.stats.mailbox_full.inc();
                outbox.room().await;
            }
        }
    }

    /// Whether a publisher has to wait before reading on: a local
    /// subscriber is over its mark or a peer core's outbox is congested.
    pub fn must_wait(&self) -> bool {
        !self.congested.borrow().is_empty() || self.outboxes.iter().any(Outbox::is_congested)
    }

    /// Both kinds of back-pressure, local subscribers first.
    pub async fn backpressure(&self) {
        self.wait_for_consumers().await;
        self.outbox_room().await;
    }

    /// Back-pressure towards local subscribers: waits until every
    /// subscriber this task just filled past the mark has drained below it.
    /// One that does not drain within [`SLOW_CONSUMER_GRACE`] is marked a
    /// slow consumer and no longer waited for: it must not slow anyone else
    /// (its QoS 0 overflow is dropped at its cap instead).
    pub async fn wait_for_consumers(&self) {
        loop {
            let Some(link) = self.congested.borrow_mut().pop() else {
                return;
            };
            if link.is_slow() || !link.over(self.marks) {
                continue;
            }
            // A subscriber that keeps reading is waited for however long it
            // takes: its QoS 1/2 messages are acknowledged to publishers
            // and must not be dropped. Only one that wrote nothing for a
            // whole grace period is a slow consumer.
            let mut progress = link.progress();
            loop {
                let drained = futures_lite::future::or(
                    async {
                        link.drained(self.marks).await;
                        true
                    },
                    async {
                        glommio::timer::sleep(SLOW_CONSUMER_GRACE).await;
                        false
                    },
                )
                .await;
                if drained {
                    break;
                }
                let now = link.progress();
                if now == progress {
                    link.mark_slow();
                    tracing::debug!(
                        core = self.id,
                        "slow consumer: nothing read for {SLOW_CONSUMER_GRACE:?}; its QoS 0 overflow is dropped and its queue bound applies"
                    );
                    break;
                }
                progress = now;
            }
        }
    }

    /// Applies one message from a peer (or from itself). Never awaits, so
    /// two cores can never wait on each other here.
    pub fn dispatch(&self, msg: CoreMsg, now: Instant) {
        match msg {
            CoreMsg::Publish(message) => {
                self.deliver_local(&message, false, now);
            }
            CoreMsg::SharedDeliver {
                key,
                entry,
                message,
            } => {
                let plan = DeliveryPlan::new(&message, &entry, false);
                self.deliver_to(key, &message, plan, now);
            }
            CoreMsg::Subscribe {
                key,
                filter,
                entry,
                since,
            } => {
                if let Some(since) = since {
                    self.catch_up(key, &filter, &entry, since);
                }
                super::migrate::subscription_changed(self, key, &filter);
                self.trie.borrow_mut().insert(&filter, key, entry);
            }
            CoreMsg::Unsubscribe { key, filter } => {
                super::migrate::subscription_changed(self, key, &filter);
                self.trie.borrow_mut().remove(&filter, key);
            }
            CoreMsg::Retain { topic, message } => self.apply_retain(&topic, message),
            CoreMsg::BarrierRequest { id, from } => self.send(from, CoreMsg::BarrierAck { id }),
            CoreMsg::BarrierAck { id } => {
                let mut barriers = self.barriers.borrow_mut();
                if let Some(state) = barriers.get_mut(&id) {
                    state.remaining -= 1;
                    if state.remaining == 0 {
                        let state = barriers.remove(&id).expect("present");
                        state.done.notify();
                    }
                }
            }
            CoreMsg::Claim {
                client_id,
                claimant,
                clean_start,
            } => {
                let previous = self
                    .directory
                    .borrow_mut()
                    .insert(StoredId::new(&client_id), claimant);
                match previous {
                    Some(owner) => self.send(
                        owner.core,
                        CoreMsg::Evict {
                            client_id,
                            claimant,
                            clean_start,
                        },
                    ),
                    None => self.send(
                        claimant.core,
                        CoreMsg::Handover {
                            ticket: claimant.ticket,
                            session: None,
                        },
                    ),
                }
            }
            CoreMsg::Evict {
                client_id,
                claimant,
                clean_start,
            } => self.evict(&client_id, claimant, clean_start, now),
            CoreMsg::Handover { ticket, session } => {
                if let Some(waiter) = self.claims.borrow_mut().remove(&ticket) {
                    *waiter.result.borrow_mut() = Some(session);
                    waiter.done.notify();
                }
            }
            CoreMsg::Release { client_id, owner } => {
                let mut directory = self.directory.borrow_mut();
                if directory.get(client_id.as_bytes()) == Some(&owner) {
                    directory.remove(client_id.as_bytes());
                }
            }
            CoreMsg::Adopt(adoption) => super::migrate::adopt(self, adoption),
            CoreMsg::Rekey { old, new, filters } => super::migrate::rekey(self, old, new, filters),
            CoreMsg::RekeyMarker { old } => super::migrate::marker(self, old),
            CoreMsg::Forwarded { old, message, plan } => {
                super::migrate::forwarded(self, old, &message, plan, now)
            }
            CoreMsg::ForwardingDone { old, new } => {
                super::migrate::forwarding_done(self, old, new, now)
            }
            CoreMsg::Reowned {
                client_id,
                from,
                to,
            } => super::migrate::reowned(self, client_id, from, to),
            CoreMsg::ReownedAck { client_id } => super::migrate::reowned_ack(self, &client_id),
        }
    }

    fn apply_retain(&self, topic: &TopicName, message: Option<Message>) {
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
            self.stats
                .dropped(super::stats::DropCause::NoSubscribers, 1);
        }
        matched
    }

    /// Delivers `message` to this core's matching sessions. On the core
    /// that received it (`origin`), also forwards it once to each other
    /// core with matching subscribers and picks shared-subscription members.
    fn deliver_local(&self, message: &Message, origin: bool, now: Instant) -> bool {
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
        if self.held(key, message, &plan) {
            return;
        }
        self.deliver_with(key, message, plan, now, false);
    }

    /// Hands a session that just moved here a message that took the old
    /// path (see `migrate.rs`): not held.
    pub fn deliver_forwarded(
        &self,
        key: SessionKey,
        message: &Message,
        plan: DeliveryPlan,
        now: Instant,
    ) {
        self.deliver_with(key, message, plan, now, false);
    }

    /// Whether `key` just moved here and its deliveries wait for the old
    /// path to drain; if so, `message` waits with them.
    fn held(&self, key: SessionKey, message: &Message, plan: &DeliveryPlan) -> bool {
        let mut migrations = self.migrations.borrow_mut();
        migrations.is_holding() && migrations.hold(key, message, plan)
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
        if self.held(key, message, &plan) {
            return;
        }
        self.deliver_with(key, message, plan, now, true);
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
    fn catch_up(
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

    /// Claims `client_id` for a connection on this core and waits for the
    /// session it resumes (None: start a new one).
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
    fn evict(&self, client_id: &MqttStr, claimant: Claimant, clean_start: bool, now: Instant) {
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
mod catch_up_tests {
    use super::*;
    use crate::codec::{Publish, QoS, QosPid, SubscriptionOptions};
    use bytes::Bytes;
    use std::time::Duration;

    fn core() -> Core {
        let config = super::super::config::Config::default();
        Core::new(1, 2, &config, Arc::new(AtomicBool::new(false)))
    }

    fn message(topic: &str, retain: bool, now: Instant) -> Message {
        let mut publish = Publish::new(
            TopicName::try_from(topic).unwrap(),
            Bytes::from_static(b"m"),
        );
        publish.qos_pid = QosPid::AtMostOnce;
        publish.retain = retain;
        Message::from_publish(&publish, None, now)
    }

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

    pub(super) fn caught_up(core: &Core) -> Vec<String> {
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

    /// A subscription replicated from core 0 gets what core 1 routed after
    /// its SUBSCRIBE was read, matching it, and nothing routed before.
    #[test]
    fn replicated_subscription_catches_up_on_later_messages() {
        let t0 = Instant::now();
        let core = core();
        core.route(&message("a/before", false, t0), t0);
        let since = t0 + Duration::from_millis(1);
        let t1 = t0 + Duration::from_millis(2);
        core.route(&message("a/after", false, t1), t1);
        core.route(&message("b/after", false, t1), t1);
        core.route(&message("a/kept", true, t1), t1);
        core.dispatch(subscribe("a/+", Some(since)), t1);
        assert_eq!(caught_up(&core), ["a/after"]);

        // Already subscribed through the same filter: nothing twice.
        core.dispatch(subscribe("a/+", Some(since)), t1);
        assert!(caught_up(&core).is_empty());
        // Re-registered subscriptions carry no time and catch nothing up.
        core.dispatch(subscribe("b/#", None), t1);
        assert!(caught_up(&core).is_empty());
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::codec::{Publish, QoS, QosPid};
    use bytes::Bytes;

    /// Core 1 of 2, after `adjust` has changed the configuration.
    fn core(adjust: impl FnOnce(&mut super::super::config::Config)) -> Core {
        let mut config = super::super::config::Config::default();
        adjust(&mut config);
        Core::new(1, 2, &config, Arc::new(AtomicBool::new(false)))
    }

    fn retained(topic: &str, payload: &'static [u8]) -> Message {
        let mut publish = Publish::new(
            TopicName::try_from(topic).unwrap(),
            Bytes::from_static(payload),
        );
        publish.qos_pid = QosPid::AtMostOnce;
        publish.retain = true;
        Message::from_publish(&publish, None, Instant::now())
    }

    /// The retained updates core 1 sent its peer, as (topic, stored).
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

    /// `max_retained_messages`: the receiving core refuses a new topic at
    /// the limit, counts it and sends its peers nothing, so no replica
    /// stores it; replacing and clearing still replicate. What a peer
    /// stored is applied whatever the limit, so replicas never diverge.
    /// The broker's own `$SYS` figures are stored regardless.
    #[test]
    fn a_new_retained_topic_at_the_limit_is_refused_on_the_receiving_core() {
        let core = core(|c| c.limits.max_retained_messages = 2);
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
        use crate::codec::SubscriptionOptions;
        let core = core(|c| c.limits.max_retained_messages = 1);
        let t0 = Instant::now();
        core.route(&retained("k/stored", b"1"), t0);
        core.route(&retained("k/refused", b"1"), t0);
        core.outboxes[0].take_batch();
        let subscribe = CoreMsg::Subscribe {
            key: SessionKey {
                core: 0,
                slot: 7,
                generation: 1,
            },
            filter: TopicFilter::try_from("k/+").unwrap(),
            entry: SubscriptionEntry {
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
                identifier: None,
            },
            since: Some(t0),
        };
        core.dispatch(subscribe, t0);
        assert_eq!(super::catch_up_tests::caught_up(&core), ["k/refused"]);
    }

    fn session(core: &Core, id: &str) -> SessionKey {
        let client_id = MqttStr::try_from(id).unwrap();
        let owner = core.next_id();
        let key = core.install_session(
            client_id,
            Claimant {
                core: core.id,
                ticket: owner,
            },
            SessionState::new(core.session_limits),
            Rc::default(),
        );
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
        let core = core(|c| c.limits.max_offline_sessions = 2);
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
            super::super::sessions::tests::will(),
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
