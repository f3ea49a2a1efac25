//! CONNACK (MQTT 5.0 §3.2, 3.1.1 §3.2, 3.1 §3.2): the server's answer to
//! CONNECT.
//!
//! Owns: CONNACK's byte layout for every protocol level, its reserved
//! flags, and the rule that Session Present is 0 with a failure code. Does
//! not own: choosing the reason code or the properties a server sends (the
//! connection's), or mapping 5.0 codes onto 3.x return codes (`reason.rs`).

use bytes::BytesMut;

use crate::codec::error::DecodeError;
use crate::codec::properties::ConnAckProperties;
use crate::codec::reason::ConnectReasonCode;
use crate::codec::types::ProtocolVersion;
use crate::codec::wire::Reader;
use crate::codec::PacketType;

/// A CONNACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Always sent as 0 with a failure code ([MQTT-3.2.2-4] 3.1.1,
    /// [MQTT-3.2.2-6] 5.0) and at level 3, which has no such flag.
    pub session_present: bool,
    /// In 3.x, written as the nearest return code ([`ConnectReasonCode::to_v3`]).
    pub code: ConnectReasonCode,
    /// Empty unless the protocol is 5.0.
    pub properties: ConnAckProperties,
}

impl ConnAck {
    pub fn new(code: ConnectReasonCode, session_present: bool) -> Self {
        ConnAck {
            session_present,
            code,
            properties: ConnAckProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8("connect acknowledge flags")?;
        // MQTT 3.1 defines the byte as unused; 3.1.1 and 5.0 reserve bits 7-1.
        let session_present = match version {
            ProtocolVersion::V3_1 => false,
            _ if flags & 0xFE != 0 => return Err(DecodeError::ConnAckReservedFlags(flags)),
            _ => flags & 0x01 != 0,
        };
        let raw = r.u8("connect reason code")?;
        let code = if version.is_v5() {
            ConnectReasonCode::from_u8(raw)
        } else {
            ConnectReasonCode::from_v3(raw)
        }
        .ok_or(DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code: raw,
        })?;
        if session_present && code.is_error() {
            return Err(DecodeError::SessionPresentOnFailure);
        }
        let properties = if version.is_v5() {
            ConnAckProperties::decode(r, PacketType::ConnAck)?
        } else {
            ConnAckProperties::default()
        };
        r.finish(PacketType::ConnAck)?;
        Ok(ConnAck {
            session_present,
            code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        let present =
            self.session_present && !self.code.is_error() && version != ProtocolVersion::V3_1;
        buf.extend_from_slice(&[u8::from(present)]);
        if version.is_v5() {
            buf.extend_from_slice(&[self.code.as_u8()]);
            self.properties.encode(buf);
        } else {
            buf.extend_from_slice(&[self.code.to_v3()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use crate::codec::tests::{assert_wire, decode, decode_err, encode, s, user, V3, V4, V5};
    use crate::codec::{ClientId, Packet};

    fn connack(c: ConnAck) -> Packet {
        Packet::ConnAck(Box::new(c))
    }

    /// 3.1 §3.2: the first byte is unused, so Session Present is always 0
    /// at level 3; return codes 0..5 as in 3.1.1.
    #[test]
    fn connack_v3() {
        assert_wire(
            V3,
            &[0x20, 0x02, 0x00, 0x00],
            &connack(ConnAck::new(ConnectReasonCode::Success, false)),
        );
        assert_wire(
            V3,
            &[0x20, 0x02, 0x00, 0x02],
            &connack(ConnAck::new(
                ConnectReasonCode::ClientIdentifierNotValid,
                false,
            )),
        );
        // Nothing to report a session with at level 3.
        assert_eq!(
            encode(V3, &connack(ConnAck::new(ConnectReasonCode::Success, true))),
            [0x20, 0x02, 0x00, 0x00]
        );
    }

    /// 3.1.1 §3.2.2: Session Present and the six return codes.
    #[test]
    fn connack_v4() {
        assert_wire(
            V4,
            &[0x20, 0x02, 0x01, 0x00],
            &connack(ConnAck::new(ConnectReasonCode::Success, true)),
        );
        assert_wire(
            V4,
            &[0x20, 0x02, 0x00, 0x05],
            &connack(ConnAck::new(ConnectReasonCode::NotAuthorized, false)),
        );
        // 5.0-only codes collapse onto the nearest return code.
        assert_eq!(
            encode(V4, &connack(ConnAck::new(ConnectReasonCode::Banned, false))),
            [0x20, 0x02, 0x00, 0x05]
        );
        assert_eq!(
            encode(
                V4,
                &connack(ConnAck::new(ConnectReasonCode::ServerBusy, false))
            ),
            [0x20, 0x02, 0x00, 0x03]
        );
    }

    /// 5.0 §3.2.2.3: a CONNACK carrying many properties.
    #[test]
    fn connack_v5_with_properties() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x20, 0x2C,
            0x01, 0x00,
            0x29,
            0x11, 0x00, 0x00, 0x00, 0x78,
            0x21, 0x00, 0x0A,
            0x24, 0x01,
            0x25, 0x00,
            0x27, 0x00, 0x00, 0x10, 0x00,
            0x12, 0x00, 0x04, b'a', b'u', b't', b'o',
            0x22, 0x00, 0x05,
            0x28, 0x01,
            0x2A, 0x01,
            0x13, 0x00, 0x3C,
            0x26, 0x00, 0x01, b'x', 0x00, 0x01, b'y',
        ];
        let packet = connack(ConnAck {
            session_present: true,
            code: ConnectReasonCode::Success,
            properties: ConnAckProperties {
                session_expiry_interval: Some(120),
                receive_maximum: NonZeroU16::new(10),
                maximum_qos: Some(crate::codec::MaximumQoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size: std::num::NonZeroU32::new(4096),
                assigned_client_identifier: Some(ClientId::try_from("auto").unwrap()),
                topic_alias_maximum: Some(5),
                wildcard_subscription_available: Some(true),
                shared_subscription_available: Some(true),
                server_keep_alive: Some(60),
                user_properties: vec![user("x", "y")],
                ..Default::default()
            },
        });
        assert_wire(V5, wire, &packet);
    }

    /// 5.0 §3.2.2.2: failure codes, with an empty property set and with a
    /// Reason String.
    #[test]
    fn connack_v5_failures() {
        assert_wire(
            V5,
            &[0x20, 0x03, 0x00, 0x84, 0x00],
            &connack(ConnAck::new(
                ConnectReasonCode::UnsupportedProtocolVersion,
                false,
            )),
        );
        let mut refused = ConnAck::new(ConnectReasonCode::NotAuthorized, false);
        refused.properties.reason_string = Some(s("no"));
        assert_wire(
            V5,
            &[0x20, 0x08, 0x00, 0x87, 0x05, 0x1F, 0x00, 0x02, b'n', b'o'],
            &connack(refused),
        );
        // Session Present is never written with a failure code.
        assert_eq!(
            encode(
                V5,
                &connack(ConnAck::new(ConnectReasonCode::ServerBusy, true))
            ),
            [0x20, 0x03, 0x00, 0x89, 0x00]
        );
    }

    /// [MQTT-3.2.2-1] (5.0), 3.1.1 §3.2.2.1: bits 7-1 of the acknowledge
    /// flags are reserved.
    #[test]
    fn connack_reserved_flags_are_malformed() {
        let err = decode_err(V4, &[0x20, 0x02, 0x02, 0x00]);
        assert_eq!(err, DecodeError::ConnAckReservedFlags(0x02));
        assert!(err.to_string().contains("[MQTT-3.2.2-1]"));
        assert_eq!(
            decode_err(V5, &[0x20, 0x03, 0x80, 0x00, 0x00]),
            DecodeError::ConnAckReservedFlags(0x80)
        );
        // Level 3 leaves the byte unused.
        assert!(decode(V3, &[0x20, 0x02, 0x02, 0x00]).is_ok());
    }

    /// [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1): Session Present is 0
    /// with a failure code.
    #[test]
    fn connack_session_present_with_failure_is_rejected() {
        let err = decode_err(V4, &[0x20, 0x02, 0x01, 0x05]);
        assert_eq!(err, DecodeError::SessionPresentOnFailure);
        assert!(err.to_string().contains("[MQTT-3.2.2-4]"));
        assert_eq!(
            decode_err(V5, &[0x20, 0x03, 0x01, 0x80, 0x00]),
            DecodeError::SessionPresentOnFailure
        );
    }

    /// 3.1.1 §3.2.2.3: return codes 6-255 are reserved; 5.0 §3.2.2.2 lists
    /// its codes, and 0x01..0x05 are not among them.
    #[test]
    fn connack_unknown_codes_are_rejected() {
        assert_eq!(
            decode_err(V4, &[0x20, 0x02, 0x00, 0x06]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: 0x06
            }
        );
        assert_eq!(
            decode_err(V5, &[0x20, 0x03, 0x00, 0x01, 0x00]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: 0x01
            }
        );
    }

    /// 5.0 §3.2.2.3: properties CONNECT may carry but CONNACK may not, and
    /// repeated ones, inside a real CONNACK.
    #[test]
    fn connack_property_rules_apply_inside_the_packet() {
        assert_eq!(
            decode_err(V5, &[0x20, 0x05, 0x00, 0x00, 0x02, 0x17, 0x01]),
            DecodeError::UnexpectedProperty {
                packet: PacketType::ConnAck,
                id: 0x17
            }
        );
        assert_eq!(
            decode_err(V5, &[0x20, 0x07, 0x00, 0x00, 0x04, 0x24, 0x00, 0x24, 0x01]),
            DecodeError::DuplicateProperty { id: 0x24 }
        );
        // Maximum QoS is 0 or 1 only (5.0 §3.2.2.3.4).
        assert_eq!(
            decode_err(V5, &[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02]),
            DecodeError::InvalidPropertyValue { id: 0x24, value: 2 }
        );
    }

    #[test]
    fn connack_with_trailing_bytes_is_malformed() {
        assert_eq!(
            decode_err(V4, &[0x20, 0x03, 0x00, 0x00, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::ConnAck,
                count: 1
            }
        );
    }
}
