//! DISCONNECT (MQTT 5.0 §3.14, 3.1.1 §3.14) and AUTH (5.0 §3.15): a
//! reason code and properties, both omitted when they are the default.
//!
//! Owns: their byte layout. AUTH does not exist before 5.0; the framing
//! layer rejects packet type 15 for 3.x. Does not own: when either is sent.

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::{AuthProperties, DisconnectProperties};
use super::reason::{AuthReasonCode, DisconnectReasonCode};
use super::types::ProtocolVersion;
use super::wire::Reader;
use super::PacketType;

/// A DISCONNECT packet. 3.x has no body, so only the default reason and
/// empty properties survive a 3.x round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason: DisconnectReasonCode,
    pub properties: DisconnectProperties,
}

impl Disconnect {
    pub fn new(reason: DisconnectReasonCode) -> Self {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut out = Disconnect::default();
        if version.is_v5() && !r.is_empty() {
            let code = r.u8("reason code")?;
            out.reason =
                DisconnectReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                })?;
            if !r.is_empty() {
                out.properties = DisconnectProperties::decode(r, PacketType::Disconnect)?;
            }
        }
        r.finish(PacketType::Disconnect)?;
        Ok(out)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            0
        } else if !self.properties.is_empty() {
            1 + self.properties.encoded_len()
        } else if self.reason != DisconnectReasonCode::NormalDisconnection {
            1
        } else {
            0
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        let len = self.body_len(version);
        if len >= 1 {
            buf.put_u8(self.reason.as_u8());
        }
        if len > 1 {
            self.properties.encode(buf);
        }
    }
}

/// An AUTH packet (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: AuthReasonCode,
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut out = Auth {
            reason: AuthReasonCode::Success,
            properties: AuthProperties::default(),
        };
        if !r.is_empty() {
            let code = r.u8("reason code")?;
            out.reason = AuthReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code,
            })?;
            if !r.is_empty() {
                out.properties = AuthProperties::decode(r, PacketType::Auth)?;
            }
        }
        r.finish(PacketType::Auth)?;
        Ok(out)
    }

    pub(crate) fn body_len(&self) -> usize {
        if !self.properties.is_empty() {
            1 + self.properties.encoded_len()
        } else if self.reason != AuthReasonCode::Success {
            1
        } else {
            0
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        let len = self.body_len();
        if len >= 1 {
            buf.put_u8(self.reason.as_u8());
        }
        if len > 1 {
            self.properties.encode(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{
        assert_wire, bytes, decode, decode_err, encode, s, user, V3, V4, V5,
    };
    use crate::codec::Packet;

    /// 3.1 and 3.1.1 §3.14: no variable header, no payload.
    #[test]
    fn disconnect_v3_v4() {
        for version in [V3, V4] {
            assert_wire(
                version,
                &[0xE0, 0x00],
                &Packet::Disconnect(Disconnect::default()),
            );
            assert_eq!(
                decode_err(version, &[0xE0, 0x01, 0x00]),
                DecodeError::TrailingBytes {
                    packet: PacketType::Disconnect,
                    count: 1
                }
            );
        }
        // A 5.0 reason cannot be written in 3.1.1.
        let d = Packet::Disconnect(Disconnect::new(DisconnectReasonCode::ServerShuttingDown));
        assert_eq!(encode(V4, &d), [0xE0, 0x00]);
    }

    /// 5.0 §3.14.2.1: remaining length 0 means Normal disconnection; 1 is a
    /// reason code without properties.
    #[test]
    fn disconnect_v5_short_forms() {
        assert_wire(
            V5,
            &[0xE0, 0x00],
            &Packet::Disconnect(Disconnect::default()),
        );
        assert_wire(
            V5,
            &[0xE0, 0x01, 0x04],
            &Packet::Disconnect(Disconnect::new(
                DisconnectReasonCode::DisconnectWithWillMessage,
            )),
        );
        // Normal disconnection spelled out decodes the same.
        for wire in [&[0xE0, 0x01, 0x00][..], &[0xE0, 0x02, 0x00, 0x00]] {
            assert_eq!(
                decode(V5, wire).unwrap(),
                Packet::Disconnect(Disconnect::default())
            );
        }
    }

    /// 5.0 §3.14.2.2: Session Expiry Interval, Reason String and Server
    /// Reference.
    #[test]
    fn disconnect_v5_with_properties() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0xE0, 0x11,
            0x9C,
            0x0F,
            0x11, 0x00, 0x00, 0x00, 0x00,
            0x1F, 0x00, 0x03, b'b', b'y', b'e',
            0x1C, 0x00, 0x01, b's',
        ];
        let packet = Packet::Disconnect(Disconnect {
            reason: DisconnectReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye")),
                server_reference: Some(s("s")),
                user_properties: Vec::new(),
            },
        });
        assert_wire(V5, wire, &packet);
        // A normal disconnection with a property keeps its reason byte.
        let mut normal = Disconnect::default();
        normal.properties.user_properties = vec![user("k", "")];
        assert_wire(
            V5,
            &[0xE0, 0x08, 0x00, 0x06, 0x26, 0x00, 0x01, b'k', 0x00, 0x00],
            &Packet::Disconnect(normal),
        );
    }

    /// 5.0 §3.14.2.1: only the listed codes; 0x03 is not one.
    #[test]
    fn disconnect_v5_invalid_reason_code() {
        let err = decode_err(V5, &[0xE0, 0x01, 0x03]);
        assert_eq!(
            err,
            DecodeError::InvalidReasonCode {
                packet: PacketType::Disconnect,
                code: 0x03
            }
        );
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        // 0x18 is an AUTH code.
        assert!(decode(V5, &[0xE0, 0x01, 0x18]).is_err());
    }

    /// 5.0 §3.14.2.2: each property at most once, and only its own.
    #[test]
    fn disconnect_property_rules_apply_inside_the_packet() {
        let err = decode_err(
            V5,
            &[0xE0, 0x08, 0x00, 0x06, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00],
        );
        assert_eq!(err, DecodeError::DuplicateProperty { id: 0x1F });
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        assert_eq!(
            decode_err(V5, &[0xE0, 0x05, 0x00, 0x03, 0x21, 0x00, 0x01]),
            DecodeError::UnexpectedProperty {
                packet: PacketType::Disconnect,
                id: 0x21
            }
        );
        assert_eq!(
            decode_err(V5, &[0xE0, 0x03, 0x00, 0x00, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::Disconnect,
                count: 1
            }
        );
    }

    /// 5.0 §3.15.2.1: remaining length 0 is Success; 1 a reason code.
    #[test]
    fn auth_short_forms() {
        assert_wire(
            V5,
            &[0xF0, 0x00],
            &Packet::Auth(Auth {
                reason: AuthReasonCode::Success,
                properties: AuthProperties::default(),
            }),
        );
        assert_wire(
            V5,
            &[0xF0, 0x01, 0x19],
            &Packet::Auth(Auth {
                reason: AuthReasonCode::ReAuthenticate,
                properties: AuthProperties::default(),
            }),
        );
    }

    /// 5.0 §3.15.2.2: Authentication Method and Data.
    #[test]
    fn auth_with_properties() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0xF0, 0x0F,
            0x18,
            0x0D,
            0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M',
            0x16, 0x00, 0x02, 0x01, 0x02,
        ];
        let packet = Packet::Auth(Auth {
            reason: AuthReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(bytes(&[1, 2])),
                reason_string: None,
                user_properties: Vec::new(),
            },
        });
        assert_wire(V5, wire, &packet);
        // AUTH exists only in 5.0 and is always written as 5.0.
        assert_eq!(encode(V4, &packet), wire);
    }

    /// 5.0 §3.15.2.1 and §3.15.2.2: unknown codes, repeated and foreign
    /// properties, reserved flags ([MQTT-2.1.3-1]).
    #[test]
    fn auth_validation() {
        assert_eq!(
            decode_err(V5, &[0xF0, 0x01, 0x01]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code: 0x01
            }
        );
        assert_eq!(
            decode_err(
                V5,
                &[0xF0, 0x0A, 0x18, 0x08, 0x15, 0x00, 0x01, b'a', 0x15, 0x00, 0x01, b'b']
            ),
            DecodeError::DuplicateProperty { id: 0x15 }
        );
        assert_eq!(
            decode_err(V5, &[0xF0, 0x07, 0x18, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01]),
            DecodeError::UnexpectedProperty {
                packet: PacketType::Auth,
                id: 0x11
            }
        );
        assert_eq!(
            decode_err(V5, &[0xF1, 0x00]),
            DecodeError::InvalidFixedHeaderFlags {
                packet: PacketType::Auth,
                flags: 1
            }
        );
        // An empty property block ends the packet.
        assert_eq!(
            decode_err(V5, &[0xF0, 0x03, 0x18, 0x00, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::Auth,
                count: 1
            }
        );
        // Type 15 before 5.0 is reserved, whatever follows.
        assert_eq!(
            decode_err(V4, &[0xF0, 0x01, 0x18]),
            DecodeError::ReservedPacketType(15)
        );
    }
}
