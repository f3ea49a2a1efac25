//! SUBACK and UNSUBACK (MQTT 5.0 §3.9, §3.11; 3.1.1 §3.9, §3.11): one
//! reason code per filter of the SUBSCRIBE or UNSUBSCRIBE they answer.
//!
//! Owns: their byte layout, the 3.x forms (SUBACK failures as 0x80, an
//! UNSUBACK of the packet id alone) and which reason codes are valid. Does
//! not own: the requests (`subscribe.rs`) or which code a filter gets (the
//! broker's policy).

use bytes::{BufMut, BytesMut};

use super::read_pid;
use crate::codec::error::DecodeError;
use crate::codec::properties::AckProperties;
use crate::codec::reason::{SubAckReasonCode, UnsubAckReasonCode};
use crate::codec::types::{PacketId, ProtocolVersion};
use crate::codec::wire::Reader;
use crate::codec::PacketType;

/// A SUBACK packet: one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pid: PacketId,
    /// Empty unless the protocol is 5.0.
    pub properties: AckProperties,
    /// In 3.x, failures are written as 0x80 ([`SubAckReasonCode::to_v3`]).
    pub reason_codes: Vec<SubAckReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = read_pid(r, PacketType::SubAck)?;
        let properties = if version.is_v5() {
            AckProperties::decode(r, PacketType::SubAck)?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8("reason code")?;
            let reason = if version.is_v5() {
                SubAckReasonCode::from_u8(code)
            } else {
                SubAckReasonCode::from_v3(code)
            };
            reason_codes.push(reason.ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code,
            })?);
        }
        Ok(SubAck {
            pid,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props + self.reason_codes.len()
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties.encode(buf);
            for code in &self.reason_codes {
                buf.put_u8(code.as_u8());
            }
        } else {
            for code in &self.reason_codes {
                buf.put_u8(code.to_v3());
            }
        }
    }
}

/// An UNSUBACK packet. 3.x carries only the packet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub pid: PacketId,
    /// Empty unless the protocol is 5.0.
    pub properties: AckProperties,
    /// One per filter in 5.0; always empty in 3.x.
    pub reason_codes: Vec<UnsubAckReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = read_pid(r, PacketType::UnsubAck)?;
        let mut ack = UnsubAck {
            pid,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        };
        if version.is_v5() {
            ack.properties = AckProperties::decode(r, PacketType::UnsubAck)?;
            while !r.is_empty() {
                let code = r.u8("reason code")?;
                ack.reason_codes
                    .push(UnsubAckReasonCode::from_u8(code).ok_or(
                        DecodeError::InvalidReasonCode {
                            packet: PacketType::UnsubAck,
                            code,
                        },
                    )?);
            }
        }
        r.finish(PacketType::UnsubAck)?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len() + self.reason_codes.len()
        } else {
            2
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties.encode(buf);
            for code in &self.reason_codes {
                buf.put_u8(code.as_u8());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{assert_wire, decode_err, encode, pid, s, V3, V4, V5};
    use crate::codec::{DisconnectReasonCode, Packet};

    /// 3.1.1 §3.9.3: granted QoS per filter, 0x80 for a failure.
    #[test]
    fn suback_v3_v4() {
        let wire: &[u8] = &[0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80];
        let packet = Packet::SubAck(SubAck {
            pid: pid(10),
            properties: AckProperties::default(),
            reason_codes: vec![
                SubAckReasonCode::GrantedQoS0,
                SubAckReasonCode::GrantedQoS2,
                SubAckReasonCode::UnspecifiedError,
            ],
        });
        assert_wire(V4, wire, &packet);
        assert_wire(V3, wire, &packet);
        // 5.0 failure codes collapse to 0x80.
        let packet = Packet::SubAck(SubAck {
            pid: pid(10),
            properties: AckProperties::default(),
            reason_codes: vec![
                SubAckReasonCode::NotAuthorized,
                SubAckReasonCode::GrantedQoS1,
            ],
        });
        assert_eq!(encode(V4, &packet), [0x90, 0x04, 0x00, 0x0A, 0x80, 0x01]);
    }

    /// 5.0 §3.9: properties, then one reason code per filter.
    #[test]
    fn suback_v5_with_reason_string() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x90, 0x0B,
            0x00, 0x0A,
            0x05, 0x1F, 0x00, 0x02, b'n', b'o',
            0x01, 0x87, 0xA2,
        ];
        let packet = Packet::SubAck(SubAck {
            pid: pid(10),
            properties: AckProperties {
                reason_string: Some(s("no")),
                user_properties: Vec::new(),
            },
            reason_codes: vec![
                SubAckReasonCode::GrantedQoS1,
                SubAckReasonCode::NotAuthorized,
                SubAckReasonCode::WildcardSubscriptionsNotSupported,
            ],
        });
        assert_wire(V5, wire, &packet);
        assert_wire(
            V5,
            &[0x90, 0x04, 0x00, 0x0A, 0x00, 0x8F],
            &Packet::SubAck(SubAck {
                pid: pid(10),
                properties: AckProperties::default(),
                reason_codes: vec![SubAckReasonCode::TopicFilterInvalid],
            }),
        );
    }

    /// 3.1.1 §3.11: UNSUBACK is the packet id alone.
    #[test]
    fn unsuback_v3_v4() {
        let packet = Packet::UnsubAck(UnsubAck {
            pid: pid(11),
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        });
        assert_wire(V4, &[0xB0, 0x02, 0x00, 0x0B], &packet);
        assert_wire(V3, &[0xB0, 0x02, 0x00, 0x0B], &packet);
    }

    /// 5.0 §3.11: properties and a reason code per filter.
    #[test]
    fn unsuback_v5() {
        let plain = UnsubAck {
            pid: pid(11),
            properties: AckProperties::default(),
            reason_codes: vec![
                UnsubAckReasonCode::Success,
                UnsubAckReasonCode::NoSubscriptionExisted,
            ],
        };
        assert_wire(
            V5,
            &[0xB0, 0x05, 0x00, 0x0B, 0x00, 0x00, 0x11],
            &Packet::UnsubAck(plain.clone()),
        );
        // 3.1.1 drops the codes.
        assert_eq!(
            encode(V4, &Packet::UnsubAck(plain)),
            [0xB0, 0x02, 0x00, 0x0B]
        );
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0xB0, 0x09,
            0x00, 0x0B,
            0x04, 0x1F, 0x00, 0x01, b'x',
            0x87, 0x00,
        ];
        assert_wire(
            V5,
            wire,
            &Packet::UnsubAck(UnsubAck {
                pid: pid(11),
                properties: AckProperties {
                    reason_string: Some(s("x")),
                    user_properties: Vec::new(),
                },
                reason_codes: vec![
                    UnsubAckReasonCode::NotAuthorized,
                    UnsubAckReasonCode::Success,
                ],
            }),
        );
    }

    /// 3.1.1 [MQTT-3.9.3-2]: SUBACK return codes other than 0x00-0x02 and
    /// 0x80 are reserved; 5.0 §3.9.3 and §3.11.3 list their codes.
    #[test]
    fn invalid_suback_and_unsuback_codes_are_rejected() {
        for (version, wire, code) in [
            (V4, &[0x90, 0x03, 0x00, 0x0A, 0x03][..], 0x03),
            (V4, &[0x90, 0x03, 0x00, 0x0A, 0x87], 0x87),
            (V5, &[0x90, 0x04, 0x00, 0x0A, 0x00, 0x11], 0x11),
        ] {
            let err = decode_err(version, wire);
            assert_eq!(
                err,
                DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code
                }
            );
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        }
        assert_eq!(
            decode_err(V5, &[0xB0, 0x04, 0x00, 0x0B, 0x00, 0x02]),
            DecodeError::InvalidReasonCode {
                packet: PacketType::UnsubAck,
                code: 0x02
            }
        );
    }
}
