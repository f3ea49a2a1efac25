//! The sessions one core owns: a slab of slots addressed by
//! [`SessionKey`], an index by client id, and the link to each session's
//! live connection.
//!
//! Owns: slot allocation (with generations, so a stale key never reaches a
//! reused slot) and the offline bookkeeping (expiry, delayed wills, which
//! session has been offline longest). Does not own: the session's protocol
//! state ([`SessionState`]), sockets, or ending a session (`Core`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::BytesMut;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::broker::message::SessionKey;
use crate::broker::session::SessionState;
use crate::codec::{DisconnectReasonCode, MqttStr, Will};

use super::mailbox::Claimant;
use super::notify::Notify;
use super::parking::ParkId;

/// A client id as a core keeps it for as long as the session lives:
/// inline up to 24 bytes (most ids), so it holds no heap allocation of its
/// own and no CONNECT packet alive. Made only from an [`MqttStr`], so it is
/// always UTF-8. Hashes and compares as its bytes (`Borrow<[u8]>`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoredId(SmallVec<[u8; 24]>);

impl StoredId {
    pub fn new(id: &MqttStr) -> Self {
        StoredId(SmallVec::from_slice(id.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as a packet field (allocates).
    pub fn to_mqtt(&self) -> MqttStr {
        MqttStr::try_from(self.as_str()).unwrap_or_default()
    }
}

impl std::borrow::Borrow<[u8]> for StoredId {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for StoredId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What other tasks on the core need of a live connection: its output
/// buffer, a way to wake it, and a way to end it.
#[derive(Default)]
pub struct ConnLink {
    pub out: RefCell<BytesMut>,
    pub notify: Notify,
    killed: Cell<Option<DisconnectReasonCode>>,
    /// Set when a takeover with Clean Start ends the session: a delayed
    /// will is then due at once ([MQTT-3.1.2-8]).
    pub session_ended: Cell<bool>,
    /// Set once the client failed to drain its output within the grace
    /// period: a slow consumer no longer holds publishers back, and QoS 0
    /// beyond its cap is dropped. Cleared when its output empties.
    slow: Cell<bool>,
    /// Messages queued in the session (mirrored here by the core).
    queued: Cell<usize>,
    /// Publishers waiting for `out` to drain below the back-pressure mark.
    drain_waiters: RefCell<Vec<std::task::Waker>>,
    /// When the messages now in `out` were received: latency samples.
    pub stamps: super::metrics::LatencyStamps,
    /// Bytes written to the client so far: whether a consumer over its
    /// mark is still reading (see `Core::wait_for_consumers`).
    written: Cell<u64>,
    /// Where its deliveries come from (see `affinity.rs`).
    pub feed: Cell<super::affinity::Feed>,
    /// The core the connection has been asked to move to (see
    /// `migrate.rs`).
    moving: Cell<Option<u16>>,
}

impl ConnLink {
    /// Asks the connection to close with `reason` (takeover, shutdown).
    pub fn kill(&self, reason: DisconnectReasonCode) {
        if self.killed.get().is_none() {
            self.killed.set(Some(reason));
        }
        self.notify.notify();
        for waker in self.drain_waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Asks the connection's task to hand it to core `target` at its next
    /// quiet point. False if it is being closed or already moving.
    pub fn request_move(&self, target: usize) -> bool {
        if self.killed.get().is_some() || self.moving.get().is_some() {
            return false;
        }
        self.moving.set(Some(target as u16));
        self.notify.notify();
        true
    }

    /// The core the connection should move to, if asked.
    pub fn move_requested(&self) -> Option<usize> {
        self.moving.get().map(usize::from)
    }

    /// Drops a move request the task could not carry out.
    pub fn cancel_move(&self) {
        self.moving.set(None);
    }

    /// Whether nothing waits on this connection: no publisher held back
    /// by it and no latency samples pending (it may park).
    pub fn is_quiet(&self) -> bool {
        self.drain_waiters.borrow().is_empty() && self.stamps.is_empty()
    }

    /// Gives back what an idle link holds on the heap, and the ended
    /// task's waker (before parking).
    pub fn release_buffers(&self) {
        self.notify.forget_waiter();
        *self.out.borrow_mut() = BytesMut::new();
        self.stamps.release();
        *self.drain_waiters.borrow_mut() = Vec::new();
    }

    pub fn killed(&self) -> Option<DisconnectReasonCode> {
        self.killed.get()
    }

    /// Counts bytes written to the client.
    pub fn wrote(&self, bytes: usize) {
        self.written.set(self.written.get() + bytes as u64);
    }

    /// Bytes written to the client so far.
    pub fn progress(&self) -> u64 {
        self.written.get()
    }

    pub fn is_slow(&self) -> bool {
        self.slow.get()
    }

    pub fn mark_slow(&self) {
        self.slow.set(true);
    }

    /// Records how much the connection has waiting (`out` bytes and
    /// queued messages) and wakes the publishers waiting on it once both
    /// are under their marks. A slow consumer is forgiven once it has
    /// caught up completely.
    pub fn update_backlog(&self, out_len: usize, queued: usize, marks: Marks) {
        self.queued.set(queued);
        if out_len == 0 && queued == 0 {
            self.slow.set(false);
        }
        if out_len < marks.out_bytes && queued < marks.queued {
            for waker in self.drain_waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Whether the connection is over either back-pressure mark.
    pub fn over(&self, marks: Marks) -> bool {
        self.out.borrow().len() >= marks.out_bytes || self.queued.get() >= marks.queued
    }

    /// Resolves once the connection is under both marks or closing.
    pub async fn drained(&self, marks: Marks) {
        std::future::poll_fn(|cx| {
            if !self.over(marks) || self.killed.get().is_some() {
                std::task::Poll::Ready(())
            } else {
                // Polled again by the same task (a wait that goes on past a
                // grace period): one waker each, not one per poll.
                let mut waiters = self.drain_waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// What becomes of the will of a connection that closed without a normal
/// DISCONNECT (see [`will_fate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillFate {
    PublishNow,
    /// Kept with the offline session until then, unless a reconnect
    /// cancels it ([`Sessions::due`] hands it out).
    DueAt(Instant),
    /// The session lives on with a new connection, which cancels it.
    Cancelled,
}

/// When a closed connection's will is published ([MQTT-3.1.2-8],
/// [MQTT-3.1.3-9]): after the Will Delay Interval (`delay`, seconds; 0 for
/// 3.x) or when the session ends, whichever is first, and not at all if a
/// new connection resumes the session before then.
/// - `expiry`: the session's expiry interval in seconds (0: it ends with
///   the connection);
/// - `still_ours`: the session is still on this core, now offline (not
///   taken over by a new connection);
/// - `ended_by_takeover`: a new connection took the id with Clean Start,
///   which ends the old session.
pub fn will_fate(
    delay: u32,
    expiry: u32,
    still_ours: bool,
    ended_by_takeover: bool,
    now: Instant,
) -> WillFate {
    if delay == 0 || (still_ours && expiry == 0) || ended_by_takeover {
        WillFate::PublishNow
    } else if still_ours {
        WillFate::DueAt(now + std::time::Duration::from_secs(u64::from(delay.min(expiry))))
    } else {
        WillFate::Cancelled
    }
}

/// Back-pressure marks: output bytes and queued messages above which a
/// subscriber's feeders wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub out_bytes: usize,
    pub queued: usize,
}

/// Whether, and how, a session's client is connected.
pub enum Presence {
    /// No connection: the session is offline.
    Offline,
    /// Served by a task (or queued to be resumed by one), through this link.
    Live(Rc<ConnLink>),
    /// Parked while idle (see `parking.rs`). No link is kept, so an idle
    /// connection holds no heap allocation of its own: the first delivery
    /// or kill makes one (`Core::unpark`) and resumes the task.
    Parked(ParkId),
}

pub struct SessionSlot {
    pub client_id: StoredId,
    /// The claim that owns the client id, for `Release`.
    pub owner: Claimant,
    pub state: SessionState,
    pub presence: Presence,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry: u32,
    pub offline_since: Option<Instant>,
    /// A will waiting for its Will Delay Interval, and when it is due.
    /// Boxed: rare, and a slot should be small.
    pub pending_will: Option<Box<(Will, Instant)>>,
}

impl SessionSlot {
    /// Whether a connection (served or parked) holds the session.
    pub fn is_online(&self) -> bool {
        !matches!(self.presence, Presence::Offline)
    }

    /// The link of a served connection.
    pub fn link(&self) -> Option<&Rc<ConnLink>> {
        match &self.presence {
            Presence::Live(link) => Some(link),
            _ => None,
        }
    }

    fn expires_at(&self) -> Option<Instant> {
        if self.expiry == u32::MAX {
            return None;
        }
        self.offline_since
            .map(|since| since + Duration::from_secs(u64::from(self.expiry)))
    }
}

pub struct Sessions {
    core: u16,
    slots: Vec<Option<SessionSlot>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Slot indexes by client id. Only the index is stored (the id is in
    /// the slot), 5 bytes a bucket instead of a second copy of the key.
    by_client: HashTable<u32>,
    hasher: RandomState,
    online: usize,
    /// Keys of sessions in the order they went offline. A session leaves
    /// the offline state only by being removed (a reconnect installs a new
    /// slot), so an entry whose key is no longer valid is stale: skipped
    /// at the front, compacted away when they outnumber the live ones.
    offline_order: VecDeque<SessionKey>,
}

/// The client id of slot `index`, if it holds a session.
fn slot_id(slots: &[Option<SessionSlot>], index: u32) -> Option<&[u8]> {
    slots
        .get(index as usize)?
        .as_ref()
        .map(|slot| slot.client_id.as_bytes())
}

impl Sessions {
    pub fn new(core: u16) -> Self {
        Sessions {
            core,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_client: HashTable::new(),
            hasher: RandomState::new(),
            online: 0,
            offline_order: VecDeque::new(),
        }
    }

    pub fn online(&self) -> usize {
        self.online
    }

    /// Sessions without a connection.
    pub fn offline(&self) -> usize {
        self.slots.len() - self.free.len() - self.online
    }

    pub fn insert(&mut self, slot: SessionSlot) -> SessionKey {
        let offline = !slot.is_online();
        if !offline {
            self.online += 1;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let hash = self.hasher.hash_one(slot.client_id.as_bytes());
        self.slots[index as usize] = Some(slot);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_client.insert_unique(hash, index, |&i| {
            hasher.hash_one(slot_id(slots, i).unwrap_or_default())
        });
        let key = SessionKey {
            core: self.core,
            slot: index,
            generation: self.generations[index as usize],
        };
        if offline {
            self.went_offline(key);
        }
        key
    }

    fn valid(&self, key: SessionKey) -> bool {
        key.core == self.core && self.generations.get(key.slot as usize) == Some(&key.generation)
    }

    pub fn get_mut(&mut self, key: SessionKey) -> Option<&mut SessionSlot> {
        if !self.valid(key) {
            return None;
        }
        self.slots[key.slot as usize].as_mut()
    }

    pub fn remove(&mut self, key: SessionKey) -> Option<SessionSlot> {
        if !self.valid(key) {
            return None;
        }
        let slot = self.slots[key.slot as usize].take()?;
        self.generations[key.slot as usize] = self.generations[key.slot as usize].wrapping_add(1);
        self.free.push(key.slot);
        let hash = self.hasher.hash_one(slot.client_id.as_bytes());
        if let Ok(entry) = self.by_client.find_entry(hash, |&i| i == key.slot) {
            entry.remove();
        }
        if slot.is_online() {
            self.online -= 1;
        }
        Some(slot)
    }

    /// The key of the session of `client_id` on this core, if any.
    pub fn key_of_client(&self, client_id: &MqttStr) -> Option<SessionKey> {
        let hash = self.hasher.hash_one(client_id.as_bytes());
        let slots = &self.slots;
        let index = *self
            .by_client
            .find(hash, |&i| slot_id(slots, i) == Some(client_id.as_bytes()))?;
        Some(SessionKey {
            core: self.core,
            slot: index,
            generation: self.generations[index as usize],
        })
    }

    #[cfg(test)]
    pub fn remove_by_client(&mut self, client_id: &MqttStr) -> Option<(SessionKey, SessionSlot)> {
        let key = self.key_of_client(client_id)?;
        self.remove(key).map(|slot| (key, slot))
    }

    /// Marks a session's connection gone.
    pub fn detach(&mut self, key: SessionKey, now: Instant) {
        if let Some(slot) = self.get_mut(key) {
            if !matches!(
                std::mem::replace(&mut slot.presence, Presence::Offline),
                Presence::Offline
            ) {
                slot.state.detach(now);
                slot.offline_since = Some(now);
                self.online -= 1;
                self.went_offline(key);
            }
        }
    }

    fn went_offline(&mut self, key: SessionKey) {
        self.offline_order.push_back(key);
        if self.offline_order.len() > 2 * self.offline() + 32 {
            let mut order = std::mem::take(&mut self.offline_order);
            order.retain(|k| self.is_offline(*k));
            self.offline_order = order;
        }
    }

    fn is_offline(&self, key: SessionKey) -> bool {
        self.valid(key)
            && self.slots[key.slot as usize]
                .as_ref()
                .is_some_and(|slot| !slot.is_online())
    }

    /// The session offline longest, if more than `limit` sessions are
    /// offline (`limit` 0: no limit). The caller ends it.
    pub fn over_offline_limit(&mut self, limit: usize) -> Option<SessionKey> {
        if limit == 0 || self.offline() <= limit {
            return None;
        }
        while let Some(&key) = self.offline_order.front() {
            if self.is_offline(key) {
                return Some(key);
            }
            self.offline_order.pop_front();
        }
        None
    }

    /// Sessions whose expiry has passed, and delayed wills now due.
    pub fn due(&mut self, now: Instant) -> (Vec<SessionKey>, Vec<Will>) {
        let mut expired = Vec::new();
        let mut wills = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.is_online() {
                continue;
            }
            if slot.pending_will.as_ref().is_some_and(|due| due.1 <= now) {
                wills.push(slot.pending_will.take().expect("checked").0);
            }
            if slot.expires_at().is_some_and(|at| at <= now) {
                expired.push(SessionKey {
                    core: self.core,
                    slot: index as u32,
                    generation: self.generations[index],
                });
            }
        }
        (expired, wills)
    }

    /// Visits every session, online or not (the stats tick's walk).
    pub fn for_each_mut(&mut self, mut visit: impl FnMut(&mut SessionSlot)) {
        for slot in self.slots.iter_mut().flatten() {
            visit(slot);
        }
    }

    /// The sessions a connection holds, served or parked.
    pub fn online_keys(&self) -> Vec<SessionKey> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.as_ref().is_some_and(SessionSlot::is_online))
            .map(|(index, _)| SessionKey {
                core: self.core,
                slot: index as u32,
                generation: self.generations[index],
            })
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::broker::session::SessionLimits;
    use crate::codec::{QoS, TopicName, WillProperties};
    use bytes::Bytes;

    fn slot(id: &str, expiry: u32, link: Option<Rc<ConnLink>>) -> SessionSlot {
        SessionSlot {
            client_id: StoredId::new(&MqttStr::try_from(id).unwrap()),
            owner: Claimant { core: 0, ticket: 1 },
            state: SessionState::new(SessionLimits::default()),
            presence: link.map_or(Presence::Offline, Presence::Live),
            expiry,
            offline_since: None,
            pending_will: None,
        }
    }

    pub(crate) fn will() -> Will {
        Will {
            topic: TopicName::try_from("w").unwrap(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties::default(),
        }
    }

    /// 5.0 §3.1.2.11.2: a session ends Session Expiry Interval seconds after
    /// its connection closed; `u32::MAX` never expires. Simulated time.
    #[test]
    fn offline_sessions_expire_after_their_interval() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(0);
        let short = sessions.insert(slot("short", 5, Some(Rc::default())));
        let forever = sessions.insert(slot("forever", u32::MAX, Some(Rc::default())));
        let online = sessions.insert(slot("online", 1, Some(Rc::default())));
        sessions.detach(short, t0);
        sessions.detach(forever, t0);
        assert!(sessions.due(t0 + Duration::from_secs(4)).0.is_empty());
        let (expired, _) = sessions.due(t0 + Duration::from_secs(5));
        assert_eq!(expired, [short]);
        assert!(sessions
            .due(t0 + Duration::from_secs(1 << 30))
            .0
            .iter()
            .all(|k| *k == short));
        let _ = online;
        assert_eq!(sessions.online(), 1);
    }

    /// [MQTT-3.1.3-9]: a delayed will is due after its delay, once.
    #[test]
    fn delayed_wills_fall_due_once() {
        let t0 = Instant::now();
        let mut sessions = Sessions::new(0);
        let key = sessions.insert(slot("w", 100, Some(Rc::default())));
        sessions.detach(key, t0);
        sessions.get_mut(key).unwrap().pending_will =
            Some(Box::new((will(), t0 + Duration::from_secs(10))));
        assert!(sessions.due(t0 + Duration::from_secs(9)).1.is_empty());
        assert_eq!(sessions.due(t0 + Duration::from_secs(10)).1.len(), 1);
        assert!(sessions.due(t0 + Duration::from_secs(11)).1.is_empty());
    }

    /// [MQTT-3.1.3-9] on simulated time: a will waits for its delay or the
    /// session's end, whichever is first; a session that ends with its
    /// connection (expiry 0), a zero delay, or a takeover with Clean Start
    /// publishes it at once; a takeover that resumes the session cancels
    /// it ([MQTT-3.1.2-8] covers the connection closing; a normal
    /// DISCONNECT never reaches here, [MQTT-3.1.2-10]).
    #[test]
    fn a_will_is_due_after_its_delay_or_the_sessions_end() {
        let t0 = Instant::now();
        let secs = |s| t0 + Duration::from_secs(s);
        // (delay, expiry, still ours, ended by takeover) -> fate
        let cases = [
            ((0, 100, true, false), WillFate::PublishNow),
            ((5, 100, true, false), WillFate::DueAt(secs(5))),
            ((30, 10, true, false), WillFate::DueAt(secs(10))),
            ((30, 0, true, false), WillFate::PublishNow),
            ((30, 100, false, false), WillFate::Cancelled),
            ((0, 100, false, false), WillFate::PublishNow),
            ((30, 100, false, true), WillFate::PublishNow),
            ((30, u32::MAX, true, false), WillFate::DueAt(secs(30))),
        ];
        for ((delay, expiry, still_ours, ended), fate) in cases {
            assert_eq!(
                will_fate(delay, expiry, still_ours, ended, t0),
                fate,
                "delay {delay}, expiry {expiry}, still ours {still_ours}, ended {ended}"
            );
        }
        // And the offline session hands the delayed will out then, once.
        let mut sessions = Sessions::new(0);
        let key = sessions.insert(slot("w", 100, Some(Rc::default())));
        sessions.detach(key, t0);
        let WillFate::DueAt(at) = will_fate(5, 100, true, false, t0) else {
            panic!("delayed")
        };
        sessions.get_mut(key).unwrap().pending_will = Some(Box::new((will(), at)));
        assert!(sessions.due(secs(4)).1.is_empty());
        assert_eq!(sessions.due(secs(5)).1.len(), 1);
        assert!(sessions.due(secs(6)).1.is_empty());
    }

    /// `max_offline_sessions`: once more sessions are offline than the
    /// limit, the one offline longest is named, whatever order the
    /// sessions were created in; online sessions do not count, and one
    /// that left the offline state (removed: expired, taken over) is
    /// skipped. 0 means no limit. Simulated time.
    #[test]
    fn the_session_offline_longest_is_named_beyond_the_limit() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut sessions = Sessions::new(0);
        let keys: Vec<SessionKey> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| sessions.insert(slot(id, 100, Some(Rc::default()))))
            .collect();
        let [a, b, c, d, e] = keys[..] else { panic!() };
        sessions.detach(c, at(1));
        sessions.detach(a, at(2));
        assert_eq!(sessions.offline(), 2);
        assert_eq!(sessions.over_offline_limit(2), None, "at the limit");
        sessions.detach(d, at(3));
        assert_eq!(sessions.over_offline_limit(0), None, "no limit");
        assert_eq!(sessions.over_offline_limit(2), Some(c));
        sessions.remove(c);
        assert_eq!(sessions.over_offline_limit(2), None);
        // The longest-offline one is taken over before the next check.
        sessions.detach(b, at(4));
        sessions.remove_by_client(&MqttStr::try_from("a").unwrap());
        assert_eq!(sessions.over_offline_limit(2), None);
        sessions.detach(e, at(5));
        assert_eq!(sessions.over_offline_limit(2), Some(d));
        assert_eq!(sessions.over_offline_limit(1), Some(d));
        sessions.remove(d);
        assert_eq!(sessions.over_offline_limit(1), Some(b));
        assert_eq!(sessions.online(), 0);
        assert_eq!(sessions.offline(), 2);
    }

    /// Clients that come and go (sessions ending at disconnect, reconnects
    /// that replace the slot) leave stale entries in the offline order;
    /// they are compacted away, so it stays proportional to the sessions
    /// actually offline.
    #[test]
    fn the_offline_order_does_not_grow_with_churn() {
        let now = Instant::now();
        let mut sessions = Sessions::new(0);
        let kept = sessions.insert(slot("kept", 100, Some(Rc::default())));
        sessions.detach(kept, now);
        for i in 0..10_000 {
            let key = sessions.insert(slot(&format!("c{i}"), 0, Some(Rc::default())));
            sessions.detach(key, now);
            assert!(sessions.offline_order.len() <= 2 * sessions.offline() + 32);
            sessions.remove(key);
        }
        assert_eq!(sessions.offline(), 1);
        let extra = sessions.insert(slot("extra", 100, None));
        assert_eq!(sessions.over_offline_limit(1), Some(kept));
        sessions.remove(kept);
        assert_eq!(sessions.over_offline_limit(0), None);
        assert_eq!(sessions.over_offline_limit(1), None);
        let _ = extra;
    }

    /// A removed slot's key never reaches the slot's next occupant.
    #[test]
    fn stale_keys_do_not_reach_a_reused_slot() {
        let mut sessions = Sessions::new(3);
        let first = sessions.insert(slot("a", 0, None));
        assert!(sessions.remove(first).is_some());
        let second = sessions.insert(slot("b", 0, None));
        assert_eq!(first.slot, second.slot);
        assert!(sessions.get_mut(first).is_none());
        assert_eq!(sessions.get_mut(second).unwrap().client_id.as_str(), "b");
        assert!(sessions
            .remove_by_client(&MqttStr::try_from("b").unwrap())
            .is_some());
        assert!(sessions.get_mut(second).is_none());
    }

    /// What an idle connection costs is mostly these two records, kept in
    /// slabs (benches/conn.sh measures the whole). A field that grows
    /// them should be boxed or justified here.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_records_of_an_idle_connection_stay_small() {
        use std::mem::size_of;
        assert!(
            size_of::<SessionSlot>() <= 296,
            "{}",
            size_of::<SessionSlot>()
        );
        assert!(size_of::<super::super::parking::Parked>() <= 136);
        assert_eq!(
            size_of::<StoredId>(),
            32,
            "a client id of up to 24 bytes is inline"
        );
    }

    /// A client id is found again by its bytes after other sessions come
    /// and go (the index keeps slot numbers only).
    #[test]
    fn sessions_are_found_by_client_id_after_churn() {
        let mut sessions = Sessions::new(0);
        let keys: Vec<_> = (0..100)
            .map(|i| sessions.insert(slot(&format!("client-{i}"), 0, None)))
            .collect();
        for key in keys.iter().step_by(2) {
            sessions.remove(*key);
        }
        let id = |i: usize| MqttStr::try_from(format!("client-{i}").as_str()).unwrap();
        assert!(sessions.remove_by_client(&id(0)).is_none());
        let (key, found) = sessions.remove_by_client(&id(51)).unwrap();
        assert_eq!((key, found.client_id.as_str()), (keys[51], "client-51"));
        let long = "a-client-id-longer-than-twenty-four-bytes";
        let key = sessions.insert(slot(long, 0, None));
        let (found, _) = sessions
            .remove_by_client(&MqttStr::try_from(long).unwrap())
            .unwrap();
        assert_eq!(found, key);
    }
}
