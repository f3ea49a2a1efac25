//! One executor's share of the broker: its sessions, its replica of the
//! subscription index and of the retained store, its outboxes to the other
//! cores, and the part of the client-id directory it is home for.
//!
//! Owns: the core's state, its mailboxes to the other cores, applying what
//! they send (replica updates, barriers, the client-id directory it is home
//! for) and back-pressure. Routing and delivery live in `core/routing.rs`,
//! a session's claim, takeover and end in `core/ownership.rs`. Does not
//! own: sockets (see `conn.rs`) or protocol rules (see `crate::broker`).
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

use crate::broker::connection::ConnectionLimits;
use crate::broker::message::{DeliveryPlan, Message, SessionKey, SubscriptionEntry};
use crate::broker::retained::RetainedStore;
use crate::broker::session::SessionLimits;
use crate::broker::trie::SubscriptionTrie;
use crate::codec::{MqttStr, TopicFilter};

use super::mailbox::{Claimant, CoreMsg, Outbox, SessionTransfer};
use super::notify::Notify;
use super::parking::ParkingLot;
use super::sessions::{ConnLink, Marks, Presence, SessionSlot, Sessions, StoredId};
use super::stats::CoreStats;

mod ownership;
mod routing;
mod shared_members;

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
    /// How long a new connection may take to send its CONNECT.
    pub connect_timeout: Duration,
    /// How long a subscriber over its mark may read nothing before it is a
    /// slow consumer.
    pub slow_consumer_grace: Duration,
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
    /// Tickets of this core's claims whose session is not yet installed.
    installing: RefCell<ahash::AHashSet<u64>>,
    /// Evictions that must wait for a claim to be installed or for a
    /// session that just moved here to settle (see `evict`).
    deferred_evictions: RefCell<Vec<ownership::DeferredEviction>>,
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
            max_connections: config.limits.per_core_connections(),
            connect_timeout: Duration::from_millis(config.limits.connect_timeout_ms),
            slow_consumer_grace: Duration::from_millis(config.limits.slow_consumer_grace_ms),
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
            installing: RefCell::new(ahash::AHashSet::new()),
            deferred_evictions: RefCell::new(Vec::new()),
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
    /// One that writes nothing for a whole grace period
    /// (`limits.slow_consumer_grace_ms`) is marked a slow consumer and no
    /// longer waited for: it must not slow anyone else (its QoS 0 overflow
    /// is dropped at its cap instead). The grace periods run together, so
    /// any number of stuck subscribers cost one, not one each.
    pub async fn wait_for_consumers(&self) {
        let mut waiting: Vec<(Rc<ConnLink>, u64)> = {
            let mut congested = self.congested.borrow_mut();
            if congested.is_empty() {
                return;
            }
            congested
                .drain(..)
                .filter(|link| !link.is_slow() && link.over(self.marks))
                .map(|link| {
                    let progress = link.progress();
                    (link, progress)
                })
                .collect()
        };
        waiting.sort_unstable_by_key(|(link, _)| Rc::as_ptr(link) as usize);
        waiting.dedup_by(|a, b| Rc::ptr_eq(&a.0, &b.0));
        // A subscriber that keeps reading is waited for however long it
        // takes: its QoS 1/2 messages are acknowledged to publishers and
        // must not be dropped. Each is waited for until it drains below
        // its mark once (its drain wakes this task, so a dip between two
        // refills counts); the grace periods are shared: one whose deadline
        // passes is slow if it wrote nothing since the wait began, so a
        // second stuck subscriber costs no second period.
        let grace = self.slow_consumer_grace;
        let mut deadline = Instant::now() + grace;
        for (link, mut progress) in waiting {
            loop {
                if link.is_slow() || !link.over(self.marks) || link.killed().is_some() {
                    break;
                }
                let drained = futures_lite::future::or(
                    async {
                        link.drained(self.marks).await;
                        true
                    },
                    async {
                        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()))
                            .await;
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
                        "slow consumer: nothing read for {grace:?}; its QoS 0 overflow is dropped and its queue bound applies"
                    );
                    break;
                }
                progress = now;
                deadline = Instant::now() + grace;
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
                    Some(previous) => self.send(
                        previous.core,
                        CoreMsg::Evict {
                            client_id,
                            claimant,
                            previous,
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
                previous,
                clean_start,
            } => self.evict(
                ownership::Eviction {
                    client_id,
                    claimant,
                    previous,
                    clean_start,
                },
                now,
            ),
            CoreMsg::Handover { ticket, session } => {
                if let Some(transfer) = &session {
                    // What the old core forwards for the session's old key
                    // may arrive before the claimant installs it.
                    super::migrate::expect_forwarded(self, transfer.old_key);
                }
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
            CoreMsg::SharedOffline { key, filters } => self.mark_shared_offline(key, &filters),
        }
    }
}

#[cfg(test)]
impl Core {
    /// Core 1 of 2, after `adjust` has changed the configuration.
    pub(crate) fn for_tests(adjust: impl FnOnce(&mut super::config::Config)) -> Core {
        let mut config = super::config::Config::default();
        adjust(&mut config);
        Core::new(1, 2, &config, Arc::new(AtomicBool::new(false)))
    }

    /// Installs a new session for client `id`, with a live link and no
    /// peer attached (nothing is written; deliveries queue).
    pub(crate) fn session_for_tests(&self, id: &str) -> SessionKey {
        let owner = Claimant {
            core: self.id,
            ticket: self.next_id(),
        };
        let state = crate::broker::session::SessionState::new(self.session_limits);
        let client_id = MqttStr::try_from(id).expect("a valid client id");
        self.install_session(client_id, owner, state, None, Rc::default())
    }
}
