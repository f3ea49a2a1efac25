//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5.0 §3.4–§3.7, 3.1.1 §3.4–§3.7):
//! one layout, a packet id then, in 5.0, an optional reason code and
//! optional properties.
//!
//! Owns: that layout and its shortest encoding (5.0 §3.4.2.1: the reason
//! code and property length may be omitted when they are Success and
//! empty). Does not own: the QoS flows that send them.

use std::num::NonZeroU16;

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::AckProperties;
use super::reason::{PubAckReasonCode, PubRelReasonCode};
use super::types::{PacketId, ProtocolVersion};
use super::wire::Reader;
use super::PacketType;

/// A reason-code family that an acknowledgement can carry.
pub trait AckReason: Copy + Eq + std::fmt::Debug {
    const SUCCESS: Self;
    fn from_u8(value: u8) -> Option<Self>;
    fn as_u8(self) -> u8;
}

impl AckReason for PubAckReasonCode {
    const SUCCESS: Self = PubAckReasonCode::Success;
    fn from_u8(value: u8) -> Option<Self> {
        PubAckReasonCode::from_u8(value)
    }
    fn as_u8(self) -> u8 {
        self as u8
    }
}

impl AckReason for PubRelReasonCode {
    const SUCCESS: Self = PubRelReasonCode::Success;
    fn from_u8(value: u8) -> Option<Self> {
        PubRelReasonCode::from_u8(value)
    }
    fn as_u8(self) -> u8 {
        self as u8
    }
}

/// An acknowledgement in a QoS 1 or QoS 2 flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack<R> {
    pub pid: PacketId,
    /// Always Success in 3.x, which has no reason codes.
    pub reason: R,
    /// Empty unless the protocol is 5.0.
    pub properties: AckProperties,
}

/// PUBACK: the QoS 1 acknowledgement.
pub type PubAck = Ack<PubAckReasonCode>;
/// PUBREC: the first QoS 2 acknowledgement.
pub type PubRec = Ack<PubAckReasonCode>;
/// PUBREL: the QoS 2 release.
pub type PubRel = Ack<PubRelReasonCode>;
/// PUBCOMP: the QoS 2 completion.
pub type PubComp = Ack<PubRelReasonCode>;

impl<R: AckReason> Ack<R> {
    /// A successful acknowledgement without properties.
    pub fn new(pid: PacketId) -> Self {
        Ack {
            pid,
            reason: R::SUCCESS,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(
        packet: PacketType,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let pid = NonZeroU16::new(r.u16("packet identifier")?)
            .ok_or(DecodeError::ZeroPacketId { packet })?;
        let mut ack = Ack::new(pid);
        if version.is_v5() && !r.is_empty() {
            let code = r.u8("reason code")?;
            ack.reason = R::from_u8(code).ok_or(DecodeError::InvalidReasonCode { packet, code })?;
            if !r.is_empty() {
                ack.properties = AckProperties::decode(r, packet)?;
            }
        }
        r.finish(packet)?;
        Ok(ack)
    }

    /// 5.0 omits what is Success and empty; 3.x has only the packet id.
    fn tail(&self, version: ProtocolVersion) -> AckTail {
        if !version.is_v5() {
            AckTail::None
        } else if !self.properties.is_empty() {
            AckTail::ReasonAndProperties
        } else if self.reason != R::SUCCESS {
            AckTail::Reason
        } else {
            AckTail::None
        }
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        match self.tail(version) {
            AckTail::None => 2,
            AckTail::Reason => 3,
            AckTail::ReasonAndProperties => 3 + self.properties.encoded_len(),
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        let tail = self.tail(version);
        if tail != AckTail::None {
            buf.put_u8(self.reason.as_u8());
        }
        if tail == AckTail::ReasonAndProperties {
            self.properties.encode(buf);
        }
    }
}

#[derive(PartialEq, Eq)]
enum AckTail {
    None,
    Reason,
    ReasonAndProperties,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{assert_wire, decode, decode_err, encode, pid, s, user, V3, V4, V5};
    use crate::codec::{DisconnectReasonCode, Packet};

    /// The four acks at each level, as (first byte, packet for a pid).
    fn all_acks(id: PacketId) -> [(u8, Packet); 4] {
        [
            (0x40, Packet::PubAck(PubAck::new(id))),
            (0x50, Packet::PubRec(PubRec::new(id))),
            (0x62, Packet::PubRel(PubRel::new(id))),
            (0x70, Packet::PubComp(PubComp::new(id))),
        ]
    }

    /// 3.1 and 3.1.1 §3.4-§3.7: remaining length 2, the packet identifier.
    #[test]
    fn acks_v3_v4_are_a_packet_id() {
        for version in [V3, V4] {
            for (first, packet) in all_acks(pid(10)) {
                assert_wire(version, &[first, 0x02, 0x00, 0x0A], &packet);
            }
        }
    }

    /// 5.0 §3.4.2.1 (and §3.5-§3.7): remaining length 2 means Success and
    /// no properties, and Success without properties is written that way.
    #[test]
    fn acks_v5_short_form_is_success() {
        for (first, packet) in all_acks(pid(0x1234)) {
            assert_wire(V5, &[first, 0x02, 0x12, 0x34], &packet);
            // Reason code 0 with or without an empty property block
            // decodes the same.
            assert_eq!(
                decode(V5, &[first, 0x03, 0x12, 0x34, 0x00]).unwrap(),
                packet
            );
            assert_eq!(
                decode(V5, &[first, 0x04, 0x12, 0x34, 0x00, 0x00]).unwrap(),
                packet
            );
        }
    }

    /// 5.0: remaining length 3 carries a reason code and no properties.
    #[test]
    fn acks_v5_with_reason_code_only() {
        let puback = PubAck {
            reason: PubAckReasonCode::NoMatchingSubscribers,
            ..PubAck::new(pid(10))
        };
        assert_wire(V5, &[0x40, 0x03, 0x00, 0x0A, 0x10], &Packet::PubAck(puback));
        let pubrec = PubRec {
            reason: PubAckReasonCode::QuotaExceeded,
            ..PubRec::new(pid(10))
        };
        assert_wire(V5, &[0x50, 0x03, 0x00, 0x0A, 0x97], &Packet::PubRec(pubrec));
        let pubrel = PubRel {
            reason: PubRelReasonCode::PacketIdentifierNotFound,
            ..PubRel::new(pid(10))
        };
        assert_wire(
            V5,
            &[0x62, 0x03, 0x00, 0x0A, 0x92],
            &Packet::PubRel(pubrel.clone()),
        );
        let pubcomp = PubComp {
            reason: PubRelReasonCode::PacketIdentifierNotFound,
            ..PubComp::new(pid(10))
        };
        assert_wire(
            V5,
            &[0x70, 0x03, 0x00, 0x0A, 0x92],
            &Packet::PubComp(pubcomp),
        );
        // 3.1.1 has no reason codes: only the packet id is written.
        assert_eq!(
            encode(V4, &Packet::PubRel(pubrel)),
            [0x62, 0x02, 0x00, 0x0A]
        );
    }

    /// 5.0 §3.4.2.2: a Reason String and User Properties.
    #[test]
    fn acks_v5_with_reason_string_and_user_property() {
        #[rustfmt::skip]
        let puback: &[u8] = &[
            0x40, 0x0B,
            0x00, 0x0A,
            0x87,
            0x07, 0x1F, 0x00, 0x04, b'n', b'o', b'p', b'e',
        ];
        let mut ack = PubAck {
            reason: PubAckReasonCode::NotAuthorized,
            ..PubAck::new(pid(10))
        };
        ack.properties.reason_string = Some(s("nope"));
        assert_wire(V5, puback, &Packet::PubAck(ack));

        #[rustfmt::skip]
        let pubrec: &[u8] = &[
            0x50, 0x11,
            0x00, 0x0B,
            0x91,
            0x0D,
            0x1F, 0x00, 0x03, b'u', b's', b'e',
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        ];
        let mut rec = PubRec {
            reason: PubAckReasonCode::PacketIdentifierInUse,
            ..PubRec::new(pid(11))
        };
        rec.properties.reason_string = Some(s("use"));
        rec.properties.user_properties = vec![user("k", "v")];
        assert_wire(V5, pubrec, &Packet::PubRec(rec));

        // Success with properties keeps the reason byte.
        let mut comp = PubComp::new(pid(1));
        comp.properties.user_properties = vec![user("a", "")];
        assert_wire(
            V5,
            &[
                0x70, 0x0A, 0x00, 0x01, 0x00, 0x06, 0x26, 0x00, 0x01, b'a', 0x00, 0x00,
            ],
            &Packet::PubComp(comp),
        );
    }

    /// [MQTT-2.2.1-5] (5.0) / [MQTT-2.3.1-6] (3.1.1): an ack names the
    /// packet it acknowledges, and no packet has id 0.
    #[test]
    fn acks_with_packet_id_0_are_rejected() {
        let table = [
            (0x40, PacketType::PubAck),
            (0x50, PacketType::PubRec),
            (0x62, PacketType::PubRel),
            (0x70, PacketType::PubComp),
        ];
        for version in [V3, V4, V5] {
            for (first, packet) in table {
                let err = decode_err(version, &[first, 0x02, 0x00, 0x00]);
                assert_eq!(err, DecodeError::ZeroPacketId { packet });
                assert!(err.to_string().contains("[MQTT-2.2.1-3]"));
                assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
            }
        }
    }

    /// 5.0 §3.4.2.1, §3.6.2.1: each ack carries only the codes of its own
    /// table. 0x92 belongs to PUBREL/PUBCOMP, 0x10 to PUBACK/PUBREC.
    #[test]
    fn acks_with_reason_codes_of_another_table_are_rejected() {
        let err = decode_err(V5, &[0x40, 0x03, 0x00, 0x01, 0x92]);
        assert_eq!(
            err,
            DecodeError::InvalidReasonCode {
                packet: PacketType::PubAck,
                code: 0x92
            }
        );
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        assert_eq!(
            decode_err(V5, &[0x62, 0x03, 0x00, 0x01, 0x10]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::PubRel,
                code: 0x10
            }
        );
        assert_eq!(
            decode_err(V5, &[0x70, 0x03, 0x00, 0x01, 0x80]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::PubComp,
                code: 0x80
            }
        );
        assert_eq!(
            decode_err(V5, &[0x50, 0x03, 0x00, 0x01, 0x01]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::PubRec,
                code: 0x01
            }
        );
    }

    /// 5.0 §3.4.2.2: Reason String at most once; and a property no ack may
    /// carry.
    #[test]
    fn ack_property_rules_apply_inside_the_packet() {
        let err = decode_err(
            V5,
            &[
                0x40, 0x0A, 0x00, 0x0A, 0x00, 0x06, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00,
            ],
        );
        assert_eq!(err, DecodeError::DuplicateProperty { id: 0x1F });
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        let err = decode_err(V5, &[0x62, 0x07, 0x00, 0x0A, 0x00, 0x03, 0x23, 0x00, 0x01]);
        assert_eq!(
            err,
            DecodeError::UnexpectedProperty {
                packet: PacketType::PubRel,
                id: 0x23
            }
        );
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
    }

    /// Bytes after the last field are malformed: after the id in 3.x, after
    /// the properties in 5.0.
    #[test]
    fn acks_with_trailing_bytes_are_malformed() {
        assert_eq!(
            decode_err(V4, &[0x40, 0x03, 0x00, 0x0A, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::PubAck,
                count: 1
            }
        );
        assert_eq!(
            decode_err(V5, &[0x70, 0x05, 0x00, 0x0A, 0x00, 0x00, 0xFF]),
            DecodeError::TrailingBytes {
                packet: PacketType::PubComp,
                count: 1
            }
        );
        // A property length that runs past the packet.
        assert_eq!(
            decode_err(V5, &[0x50, 0x04, 0x00, 0x0A, 0x00, 0x05]),
            DecodeError::Truncated {
                field: "properties"
            }
        );
        // Too short for a packet id.
        assert_eq!(
            decode_err(V4, &[0x40, 0x01, 0x00]),
            DecodeError::Truncated {
                field: "packet identifier"
            }
        );
    }
}
