//! Resuming a session on a new connection: the flows left open on an
//! earlier one are taken up again ([MQTT-4.4.0-1]): unacknowledged
//! PUBLISHes are resent with DUP and their original ids, PUBRELs are
//! repeated, in their original order ([MQTT-4.6.0-1]), and no more
//! PUBLISHes are unacknowledged at once than the new connection's window
//! allows ([MQTT-3.3.4-9]): the rest wait at
//! [`InflightStage::AwaitResend`] and go out, before anything new, as
//! acknowledgements free the window.
//!
//! Owns: which inflight entries are sent again, and when. Does not own:
//! the window's size or the queue (`SessionState`'s).

use std::time::Instant;

use bytes::BytesMut;

use super::queue::Pending;
use super::{write_pubrel, DropReason, Peer, SessionState};
use crate::broker::inflight::{Inflight, InflightStage};
use crate::codec::{PacketId, QosPid};

impl SessionState {
    /// Attaches a connection. Unacknowledged PUBLISH packets are sent again
    /// with DUP set and their original ids, and PUBRELs are repeated, in
    /// their original order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]); then queued
    /// messages flow. Only as many PUBLISHes as the new connection's window
    /// allows are resent at once (a 5.0 client may resume with a smaller
    /// Receive Maximum, [MQTT-3.3.4-9]); the rest are resent, still with
    /// their original ids and before anything new, as acknowledgements
    /// free the window (see [`SessionState::pump`]).
    pub fn attach(&mut self, peer: Peer, now: Instant, out: &mut BytesMut) {
        self.peer = Some(peer);
        self.out_aliases = None;
        self.resend = None;
        let window = self.window();
        for mut entry in self.inflight.take_all() {
            match entry.stage {
                InflightStage::AwaitAck | InflightStage::AwaitResend => {
                    if entry.pending.message.is_expired(now) {
                        self.drops.count(DropReason::Expired);
                        continue;
                    }
                    let room = self.resend.is_none()
                        && self.inflight.len() < window
                        && out.len() < self.limits.write_buffer_cap;
                    if !room {
                        entry.stage = InflightStage::AwaitResend;
                        self.resend
                            .get_or_insert_with(Box::default)
                            .push_back(entry.pid);
                    } else if self.resend_publish(&entry, now, out).is_err() {
                        continue;
                    } else {
                        entry.stage = InflightStage::AwaitAck;
                    }
                }
                InflightStage::AwaitComplete => write_pubrel(peer.version, entry.pid, out),
            }
            self.inflight.put_back(entry);
        }
        self.pump(now, out);
    }

    /// Writes an inflight entry's PUBLISH again: DUP set, its original id.
    fn resend_publish(
        &mut self,
        entry: &Inflight<Pending>,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), DropReason> {
        let qos_pid = QosPid::new(entry.pending.plan.qos, Some(entry.pid))
            .expect("inflight messages have QoS 1 or 2");
        let Pending { message, plan } = &entry.pending;
        self.write_publish(message, plan, qos_pid, true, now, out)
    }

    /// Resends the oldest entry waiting at [`InflightStage::AwaitResend`];
    /// one that has expired meanwhile, or no longer fits the client's
    /// Maximum Packet Size, ends instead (and is counted).
    pub(super) fn resend_next(&mut self, now: Instant, out: &mut BytesMut) {
        let Some(ids) = self.resend.as_mut() else {
            return;
        };
        let Some(pid) = ids.pop_front() else {
            return;
        };
        if ids.is_empty() {
            self.resend = None;
        }
        let Some(entry) = self.inflight.get_mut(pid) else {
            debug_assert!(false, "ids waiting for a resend are inflight");
            return;
        };
        if entry.pending.message.is_expired(now) {
            self.inflight.end_if(pid, |_| true);
            self.drops.count(DropReason::Expired);
            return;
        }
        entry.stage = InflightStage::AwaitAck;
        let entry = entry.clone();
        if self.resend_publish(&entry, now, out).is_err() {
            self.inflight.end_if(pid, |_| true);
        }
    }

    /// An entry waiting for its resend left that stage (acknowledged
    /// early, or ended): it is no longer waiting. Rare, so a scan.
    pub(super) fn forget_resend(&mut self, pid: PacketId) {
        let Some(ids) = self.resend.as_mut() else {
            return;
        };
        if let Some(i) = ids.iter().position(|&p| p == pid) {
            ids.remove(i);
        }
        if ids.is_empty() {
            self.resend = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_all, message, peer, pids, plan, send};
    use super::super::*;
    use crate::codec::QoS;
    use std::time::Duration;

    /// [MQTT-4.4.0-1]: on reconnect, unacknowledged PUBLISHes are resent
    /// with DUP=1 and the same ids, before anything new.
    #[test]
    fn reattach_resends_inflight_with_dup_in_order() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        s.attach(peer(10), now, &mut out);
        send(&mut s, QoS::AtLeastOnce, now, &mut out);
        send(&mut s, QoS::ExactlyOnce, now, &mut out);
        out.clear();
        s.detach(now);
        send(&mut s, QoS::AtLeastOnce, now, &mut out);
        assert!(out.is_empty(), "nothing is written while offline");
        s.attach(peer(10), now, &mut out);
        assert_eq!(
            pids(&decode_all(&mut out)),
            [(1, true), (2, true), (3, false)]
        );
    }

    /// A session whose window of 32 (3.x) is full resumes as a 5.0 client
    /// with Receive Maximum 5: only 5 PUBLISHes are resent at once
    /// ([MQTT-3.3.4-9]), with DUP and their original ids ([MQTT-4.4.0-1]);
    /// each acknowledgement lets the next one out, in order, before the
    /// message queued meanwhile gets a new id. Simulated time: one still
    /// waiting when it expires is dropped and counted, and an early
    /// acknowledgement of one still waiting ends it without a resend.
    #[test]
    fn resend_after_reconnect_respects_the_new_receive_maximum() {
        let t0 = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        let v311 = Peer {
            version: ProtocolVersion::V3_1_1,
            ..peer(u16::MAX)
        };
        s.attach(v311, t0, &mut out);
        for n in 0..32 {
            let mut m = message(QoS::AtLeastOnce, b"x");
            if n == 7 {
                m.expires_at = Some(t0 + Duration::from_secs(10));
            }
            let p = plan(&m);
            s.deliver(&m, p, t0, &mut out, QueueBound::Configured);
        }
        assert_eq!(s.inflight_len(), 32);
        out.clear();
        s.detach(t0);
        send(&mut s, QoS::AtLeastOnce, t0, &mut out);
        s.attach(peer(5), t0, &mut out);
        let resent =
            |ids: std::ops::RangeInclusive<u16>| ids.map(|id| (id, true)).collect::<Vec<_>>();
        assert_eq!(pids(&decode_all(&mut out)), resent(1..=5));
        assert_eq!((s.inflight_len(), s.queued_len()), (32, 1));
        let ack = |s: &mut SessionState, id: u16, now: Instant, out: &mut BytesMut| {
            s.on_puback(PacketId::new(id).unwrap(), now, out).unwrap();
            pids(&decode_all(out))
        };
        assert_eq!(ack(&mut s, 2, t0, &mut out), resent(6..=6));
        // Id 9 was delivered on the first connection: its acknowledgement
        // now ends its flow, and it is not sent again.
        assert_eq!(ack(&mut s, 9, t0, &mut out), []);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(ack(&mut s, 1, t1, &mut out), [(7, true)]);
        // Id 8 (the message expiring at t0 + 10 s) expired while it waited.
        assert_eq!(ack(&mut s, 3, t1, &mut out), [(10, true)]);
        assert_eq!(s.drops.expired, 1);
        let mut sent = vec![6, 7, 10];
        for (id, next) in [(4, 11), (5, 12)] {
            assert_eq!(ack(&mut s, id, t1, &mut out), [(next, true)]);
            sent.push(next);
        }
        // Never more than five unacknowledged on this connection.
        let mut acked = 0;
        let mut next = 13;
        while next <= 32 {
            let id = sent[acked];
            acked += 1;
            let got = ack(&mut s, id, t1, &mut out);
            assert_eq!(got, [(next, true)], "one out for one in");
            sent.push(next);
            next += 1;
        }
        // Every old one resent: the queued message follows with a new id.
        assert_eq!(ack(&mut s, sent[acked], t1, &mut out), [(33, false)]);
        assert_eq!(s.inflight_len(), 5);
    }

    /// QoS 2 outbound: PUBREC -> PUBREL, repeated on reconnect
    /// ([MQTT-4.4.0-1]), and PUBCOMP ends the flow.
    #[test]
    fn qos2_outbound_flow_resends_pubrel_after_reconnect() {
        let now = Instant::now();
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = BytesMut::new();
        s.attach(peer(10), now, &mut out);
        send(&mut s, QoS::ExactlyOnce, now, &mut out);
        out.clear();
        let pid = PacketId::new(1).unwrap();
        s.on_pubrec(pid, false, now, &mut out).unwrap();
        assert_eq!(decode_all(&mut out), [Packet::PubRel(PubRel::new(pid))]);
        s.detach(now);
        s.attach(peer(10), now, &mut out);
        assert_eq!(decode_all(&mut out), [Packet::PubRel(PubRel::new(pid))]);
        s.on_pubcomp(pid, now, &mut out).unwrap();
        assert_eq!(s.inflight_len(), 0);
    }
}
