//! The sessions one core owns: a slab of slots addressed by
//! [`SessionKey`], an index by client id, and the link to each session's
//! live connection.
//!
//! Owns: slot allocation (with generations, so a stale key never reaches a
//! reused slot) and the offline bookkeeping (expiry, delayed wills). Does
//! not own: the session's protocol state ([`SessionState`]) or sockets.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::BytesMut;

use crate::broker::message::SessionKey;
use crate::broker::session::SessionState;
use crate::codec::{DisconnectReasonCode, MqttStr, Will};

use super::mailbox::Claimant;
use super::notify::Notify;

/// What other tasks on the core need of a live connection: its output
/// buffer, a way to wake it, and a way to end it.
#[derive(Default)]
pub struct ConnLink {
    pub out: RefCell<BytesMut>,
    pub notify: Notify,
    killed: Cell<Option<DisconnectReasonCode>>,
}

impl ConnLink {
    /// Asks the connection to close with `reason` (takeover, shutdown).
    pub fn kill(&self, reason: DisconnectReasonCode) {
        if self.killed.get().is_none() {
            self.killed.set(Some(reason));
        }
        self.notify.notify();
    }

    pub fn killed(&self) -> Option<DisconnectReasonCode> {
        self.killed.get()
    }
}

pub struct SessionSlot {
    pub client_id: MqttStr,
    /// The claim that owns the client id, for `Release`.
    pub owner: Claimant,
    pub state: SessionState,
    pub link: Option<Rc<ConnLink>>,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry: u32,
    pub offline_since: Option<Instant>,
    /// A will waiting for its Will Delay Interval, and when it is due.
    pub pending_will: Option<(Will, Instant)>,
}

impl SessionSlot {
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
    by_client: AHashMap<MqttStr, u32>,
    online: usize,
}

impl Sessions {
    pub fn new(core: u16) -> Self {
        Sessions {
            core,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_client: AHashMap::new(),
            online: 0,
        }
    }

    pub fn online(&self) -> usize {
        self.online
    }

    pub fn insert(&mut self, slot: SessionSlot) -> SessionKey {
        if slot.link.is_some() {
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
        self.by_client.insert(slot.client_id.clone(), index);
        self.slots[index as usize] = Some(slot);
        SessionKey {
            core: self.core,
            slot: index,
            generation: self.generations[index as usize],
        }
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
        self.by_client.remove(&slot.client_id);
        if slot.link.is_some() {
            self.online -= 1;
        }
        Some(slot)
    }

    pub fn remove_by_client(&mut self, client_id: &MqttStr) -> Option<(SessionKey, SessionSlot)> {
        let index = *self.by_client.get(client_id)?;
        let key = SessionKey {
            core: self.core,
            slot: index,
            generation: self.generations[index as usize],
        };
        self.remove(key).map(|slot| (key, slot))
    }

    /// Marks a session's connection gone.
    pub fn detach(&mut self, key: SessionKey, now: Instant) {
        if let Some(slot) = self.get_mut(key) {
            if slot.link.take().is_some() {
                slot.state.detach();
                slot.offline_since = Some(now);
                self.online -= 1;
            }
        }
    }

    /// Sessions whose expiry has passed, and delayed wills now due.
    pub fn due(&mut self, now: Instant) -> (Vec<SessionKey>, Vec<Will>) {
        let mut expired = Vec::new();
        let mut wills = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.link.is_some() {
                continue;
            }
            if slot.pending_will.as_ref().is_some_and(|(_, at)| *at <= now) {
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

    pub fn live_links(&self) -> Vec<Rc<ConnLink>> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|slot| slot.link.clone())
            .collect()
    }
}
