//! One session's outbound inflight window: the QoS 1/2 messages sent and
//! not yet acknowledged, oldest first, and the packet ids they hold.
//!
//! Owns: packet-id allocation ([MQTT-2.2.1-3]: no id reused while its flow
//! is open) and finding an entry by id cheaply, so a window of thousands
//! (a 5.0 client's Receive Maximum) costs no scan per message. Does not
//! own: what is in an entry, the window's size, sending or resending (all
//! `SessionState`'s).
//!
//! Ids are handed out in sequence. While no full lap of the 65,535 ids has
//! happened since the window was last empty, the ids in the window run in
//! allocation order between the front's and the last one handed out: the
//! next id is in use only if it is the front's, and an id is found at the
//! front (acknowledgements in order, the usual case) or by binary search on
//! its distance from the front's. An id stuck at the front for a whole lap
//! ends that ordering, and ids are then checked by scan until the window
//! empties.

use std::collections::VecDeque;
use std::num::NonZeroU16;

use crate::codec::PacketId;

/// Where a flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightStage {
    /// PUBLISH sent on an earlier connection and not yet sent again on
    /// this one: it waits for room in the client's window (5.0 Receive
    /// Maximum) to be resent with DUP and its original id.
    AwaitResend,
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitAck,
    /// PUBREL sent; waiting for PUBCOMP.
    AwaitComplete,
}

/// One open flow: its id, its stage and what was sent (`P`).
#[derive(Debug, Clone)]
pub struct Inflight<P> {
    pub pid: PacketId,
    pub stage: InflightStage,
    pub pending: P,
}

/// The window itself.
#[derive(Debug, Clone)]
pub struct InflightWindow<P> {
    next_pid: u16,
    /// Whether the ids run in allocation order (see the module docs).
    pids_in_order: bool,
    entries: VecDeque<Inflight<P>>,
}

impl<P> Default for InflightWindow<P> {
    fn default() -> Self {
        InflightWindow {
            next_pid: 0,
            pids_in_order: true,
            entries: VecDeque::new(),
        }
    }
}

impl<P> InflightWindow<P> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next free packet id.
    pub fn allocate_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = NonZeroU16::new(self.next_pid) else {
                continue;
            };
            let Some(front) = self.entries.front() else {
                self.pids_in_order = true;
                return pid;
            };
            if self.pids_in_order {
                if front.pid != pid {
                    return pid;
                }
                // A full lap: the front's id comes round again.
                self.pids_in_order = false;
                continue;
            }
            if !self.entries.iter().any(|e| e.pid == pid) {
                return pid;
            }
        }
    }

    /// Opens a flow with an id from [`InflightWindow::allocate_pid`].
    pub fn push(&mut self, pid: PacketId, pending: P) {
        self.entries.push_back(Inflight {
            pid,
            stage: InflightStage::AwaitAck,
            pending,
        });
    }

    /// Takes every open flow out, oldest first, to be sent again and put
    /// back with [`InflightWindow::put_back`] in the same order (or left
    /// out): the ids keep their order, so the window stays cheap.
    pub fn take_all(&mut self) -> VecDeque<Inflight<P>> {
        std::mem::take(&mut self.entries)
    }

    pub fn put_back(&mut self, entry: Inflight<P>) {
        self.entries.push_back(entry);
    }

    /// The open flow with `pid`, if any.
    pub fn get_mut(&mut self, pid: PacketId) -> Option<&mut Inflight<P>> {
        let index = self.index_of(pid)?;
        self.entries.get_mut(index)
    }

    /// Ends the flow with `pid` if `keep` says so of it; the entry is
    /// dropped where it lies. False when there is no such flow or `keep`
    /// refused.
    pub fn end_if(&mut self, pid: PacketId, keep: impl FnOnce(&Inflight<P>) -> bool) -> bool {
        match self.index_of(pid) {
            Some(index) if keep(&self.entries[index]) => {
                self.entries.drain(index..=index);
                true
            }
            _ => false,
        }
    }

    fn index_of(&self, pid: PacketId) -> Option<usize> {
        let front = self.entries.front()?.pid;
        if front == pid {
            return Some(0);
        }
        if self.pids_in_order {
            // Distance along the ring of non-zero ids.
            let lap =
                |to: PacketId| (u32::from(to.get()) + 65_535 - u32::from(front.get())) % 65_535;
            return self
                .entries
                .binary_search_by_key(&lap(pid), |e| lap(e.pid))
                .ok();
        }
        self.entries.iter().position(|e| e.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn open(window: &mut InflightWindow<u32>, n: u32) -> PacketId {
        let pid = window.allocate_pid();
        window.push(pid, n);
        pid
    }

    /// Flows end in any order, each found by its id; an id not open (or
    /// already ended) is not found.
    #[test]
    fn flows_end_in_any_order() {
        let mut window = InflightWindow::default();
        let pids: Vec<_> = (0..1000).map(|n| open(&mut window, n)).collect();
        assert_eq!(pids[0], pid(1));
        for &p in pids[500..].iter().rev() {
            assert!(window.end_if(p, |_| true));
        }
        for &p in pids[..500]
            .iter()
            .step_by(2)
            .chain(pids[1..500].iter().step_by(2))
        {
            assert!(window.get_mut(p).is_some());
            assert!(window.end_if(p, |_| true));
        }
        assert!(window.is_empty());
        assert!(!window.end_if(pid(7), |_| true));
    }

    /// `end_if` leaves a flow that `keep` refuses, and finds it again.
    #[test]
    fn a_refused_end_leaves_the_flow() {
        let mut window = InflightWindow::default();
        let p = open(&mut window, 1);
        assert!(!window.end_if(p, |e| e.stage == InflightStage::AwaitComplete));
        window.get_mut(p).unwrap().stage = InflightStage::AwaitComplete;
        assert!(window.end_if(p, |e| e.stage == InflightStage::AwaitComplete));
    }

    /// [MQTT-2.2.1-3]: an id stuck at the front while 65,534 others come
    /// and go is skipped when its turn comes round, and flows are still
    /// found after that lap.
    #[test]
    fn a_stuck_id_is_not_reused_after_a_lap() {
        let mut window = InflightWindow::default();
        let stuck = open(&mut window, 0);
        for n in 0..65_534 {
            let p = open(&mut window, n);
            assert_ne!(p, stuck);
            assert!(window.end_if(p, |_| true));
        }
        let after_lap = open(&mut window, 1);
        assert_ne!(after_lap, stuck);
        assert_eq!(after_lap.get(), stuck.get() + 1);
        let next = open(&mut window, 2);
        assert_eq!(next.get(), stuck.get() + 2);
        assert!(window.end_if(after_lap, |_| true));
        assert!(window.end_if(stuck, |_| true));
        assert!(window.end_if(next, |_| true));
        assert!(window.is_empty());
        // Empty again: ids run in order once more.
        let fresh = open(&mut window, 3);
        assert_eq!(fresh.get(), next.get() + 1);
    }

    /// Taking every flow out and putting them back keeps them findable.
    #[test]
    fn flows_put_back_are_found() {
        let mut window = InflightWindow::default();
        let pids: Vec<_> = (0..10).map(|n| open(&mut window, n)).collect();
        for (i, entry) in window.take_all().into_iter().enumerate() {
            if i != 3 {
                window.put_back(entry);
            }
        }
        assert_eq!(window.len(), 9);
        assert!(window.get_mut(pids[3]).is_none());
        assert_eq!(window.get_mut(pids[7]).unwrap().pending, 7);
    }
}
