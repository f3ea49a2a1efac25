//! Acknowledgements: PUBACK, PUBREC and PUBCOMP end (or move on) the
//! session's outbound QoS 1 and 2 flows (5.0 §4.3.2, §4.3.3), and the
//! inbound QoS 2 state remembers which packet ids await PUBREL so that a
//! redelivered PUBLISH is routed only once.
//!
//! Owns: which acknowledgement ends which inflight entry (an entry still
//! waiting to be resent included), answering PUBREC with PUBREL, and the
//! inbound QoS 2 packet ids. Does not own: the window or packet id
//! allocation (`InflightWindow`), what flows once the window frees
//! (`session/deliver.rs`), or decoding the packets (the connection's).

use std::time::Instant;

use bytes::BytesMut;

use super::{encode_infallible, write_pubrel, AckError, SessionState};
use crate::broker::inflight::InflightStage;
use crate::codec::{Packet, PacketId, ProtocolVersion, PubRel, PubRelReasonCode, QoS};

impl SessionState {
    /// Ends the inflight flow of `pid` if it is at `stage` with `qos`. An
    /// acknowledgement of a PUBLISH still waiting to be resent (the client
    /// had it from an earlier connection) ends its flow too.
    fn end_inflight(
        &mut self,
        pid: PacketId,
        stage: InflightStage,
        qos: QoS,
    ) -> Result<(), AckError> {
        let mut waiting = false;
        let ended = self.inflight.end_if(pid, |e| {
            waiting = e.stage == InflightStage::AwaitResend;
            let at = e.stage == stage || (waiting && stage == InflightStage::AwaitAck);
            at && e.pending.plan.qos == qos
        });
        if ended && waiting {
            self.forget_resend(pid);
        }
        ended
            .then_some(())
            .ok_or(AckError::UnknownPacketId(pid.get()))
    }

    /// PUBACK: the QoS 1 flow ends ([MQTT-4.3.2-4]... the id is free again).
    pub fn on_puback(
        &mut self,
        pid: PacketId,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), AckError> {
        self.end_inflight(pid, InflightStage::AwaitAck, QoS::AtLeastOnce)?;
        self.pump(now, out);
        Ok(())
    }

    /// PUBREC: answer with PUBREL ([MQTT-4.3.3-4]); a failure reason ends
    /// the flow (5.0 §4.3.3).
    pub fn on_pubrec(
        &mut self,
        pid: PacketId,
        failed: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), AckError> {
        let version = self.peer.map_or(ProtocolVersion::V5, |p| p.version);
        match self.inflight.get_mut(pid) {
            Some(entry) if entry.pending.plan.qos == QoS::ExactlyOnce => {
                let waiting = entry.stage == InflightStage::AwaitResend;
                if !failed {
                    entry.stage = InflightStage::AwaitComplete;
                }
                if waiting {
                    self.forget_resend(pid);
                }
            }
            _ => {
                if version.is_v5() {
                    let mut rel = PubRel::new(pid);
                    rel.reason = PubRelReasonCode::PacketIdentifierNotFound;
                    encode_infallible(&Packet::PubRel(rel), version, out);
                }
                return Err(AckError::UnknownPacketId(pid.get()));
            }
        }
        if failed {
            self.inflight.end_if(pid, |_| true);
            self.pump(now, out);
            return Ok(());
        }
        write_pubrel(version, pid, out);
        Ok(())
    }

    /// PUBCOMP: the QoS 2 flow ends.
    pub fn on_pubcomp(
        &mut self,
        pid: PacketId,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), AckError> {
        self.end_inflight(pid, InflightStage::AwaitComplete, QoS::ExactlyOnce)?;
        self.pump(now, out);
        Ok(())
    }

    /// An inbound QoS 2 PUBLISH. Returns true the first time its packet id
    /// is seen, false for a redelivery before PUBREL: the message is routed
    /// only once ([MQTT-4.3.3-10] 5.0 / [MQTT-4.3.3-2] 3.1.1 method B).
    pub fn on_inbound_qos2(&mut self, pid: PacketId) -> bool {
        self.inbound_qos2.insert(pid.get())
    }

    /// PUBREL: the id may be used again. Returns false if it was unknown,
    /// which 5.0 answers with PUBCOMP 0x92.
    pub fn on_pubrel(&mut self, pid: PacketId) -> bool {
        self.inbound_qos2.remove(&pid.get())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{peer, send};
    use super::*;
    use crate::broker::session::SessionLimits;

    /// Acknowledgements in any order end their flows through the session
    /// (the window's own tests, in `inflight.rs`, cover the id lap).
    #[test]
    fn acknowledgements_in_any_order_end_their_flows() {
        let now = Instant::now();
        let limits = SessionLimits {
            max_queued: 100_000,
            write_buffer_cap: usize::MAX,
            max_inflight_v5: u16::MAX,
            ..SessionLimits::default()
        };
        let mut s = SessionState::new(limits);
        let mut out = BytesMut::new();
        s.attach(peer(u16::MAX), now, &mut out);
        let puback = |s: &mut SessionState, pid: u16, out: &mut BytesMut| {
            s.on_puback(PacketId::new(pid).unwrap(), now, out)
        };
        // 1,000 inflight, acknowledged from the back, then odd ids first.
        for _ in 0..1000 {
            send(&mut s, QoS::AtLeastOnce, now, &mut out);
        }
        assert_eq!(s.inflight_len(), 1000);
        out.clear();
        for pid in (501..=1000).rev() {
            puback(&mut s, pid, &mut out).unwrap();
        }
        for pid in (1..=500)
            .filter(|p| p % 2 == 1)
            .chain((1..=500).filter(|p| p % 2 == 0))
        {
            puback(&mut s, pid, &mut out).unwrap();
        }
        assert_eq!(s.inflight_len(), 0);
        assert_eq!(
            puback(&mut s, 7, &mut out),
            Err(AckError::UnknownPacketId(7))
        );
    }

    /// Inbound QoS 2: a PUBLISH redelivered before PUBREL is not routed
    /// twice ([MQTT-4.3.3-10]).
    #[test]
    fn inbound_qos2_duplicates_are_detected_until_pubrel() {
        let mut s = SessionState::new(SessionLimits::default());
        let pid = PacketId::new(5).unwrap();
        assert!(s.on_inbound_qos2(pid));
        assert!(!s.on_inbound_qos2(pid));
        assert!(s.on_pubrel(pid));
        assert!(!s.on_pubrel(pid));
        assert!(s.on_inbound_qos2(pid));
    }
}
