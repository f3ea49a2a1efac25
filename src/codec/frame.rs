//! Framing: the fixed header (MQTT 5.0 §2.1, 3.1.1 §2.2) and the
//! streaming [`Decoder`] that cuts whole packets off a connection's input.
//!
//! Owns: the packet type and flag checks on the first byte, the remaining
//! length, the maximum packet size (checked before any body is buffered),
//! and handing a whole frame to [`Packet`]'s body decoder. Does not own: the
//! packet bodies (`packet.rs` dispatches to one module per packet family)
//! or the wire primitives (`wire.rs`).

use bytes::{Buf, BytesMut};

use super::error::DecodeError;
use super::packet::Packet;
use super::types::ProtocolVersion;
use super::wire::{parse_varint, Reader, VarintParse, VARINT_MAX};

/// The largest packet MQTT can frame: a one-byte fixed header, four bytes of
/// remaining length and 268,435,455 bytes of body.
pub const MAX_PACKET_SIZE_LIMIT: u32 = 1 + 4 + VARINT_MAX;

/// Control packet types (5.0 §2.1.2, 3.1.1 §2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// Checks the first byte of a fixed header and returns the packet type.
    ///
    /// Type 0 is reserved, and so is 15 before 5.0. Flags must be 0b0010
    /// for PUBREL, SUBSCRIBE and UNSUBSCRIBE and 0 for the other non-PUBLISH
    /// types ([MQTT-2.2.2-1], [MQTT-2.2.2-2] in 3.1.1; [MQTT-2.1.3-1] in
    /// 5.0). MQTT 3.1 also allowed DUP on those three, so level 3 accepts
    /// 0b1010 too. PUBLISH QoS 3 is malformed ([MQTT-3.3.1-4]).
    pub fn from_first_byte(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        use PacketType::*;
        let flags = byte & 0x0F;
        let packet = match byte >> 4 {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 if version.is_v5() => Auth,
            other => return Err(DecodeError::ReservedPacketType(other)),
        };
        let flags_ok = match packet {
            Publish => {
                if (flags >> 1) & 0x03 == 3 {
                    return Err(DecodeError::InvalidQoS);
                }
                true
            }
            PubRel | Subscribe | Unsubscribe => {
                flags == 0b0010 || (version == ProtocolVersion::V3_1 && flags == 0b1010)
            }
            _ => flags == 0,
        };
        if flags_ok {
            Ok(packet)
        } else {
            Err(DecodeError::InvalidFixedHeaderFlags { packet, flags })
        }
    }
}

/// What the fixed header at the front of a buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub packet: PacketType,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// Fixed header length: 2 to 5 bytes.
    pub header_len: usize,
    /// The remaining length.
    pub body_len: usize,
}

impl FrameHeader {
    /// The whole packet's size in bytes.
    pub fn total_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// A streaming decoder for one connection.
///
/// `version` is the connection's protocol level: the CONNECT packet itself
/// decodes whatever it is set to, and the session sets it from CONNECT (or,
/// on a client, from what it sent). `max_packet_size` bounds the whole
/// packet, fixed header included, as 5.0's Maximum Packet Size does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    pub version: ProtocolVersion,
    pub max_packet_size: u32,
}

impl Decoder {
    pub fn new(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Decoder {
            version,
            max_packet_size,
        }
    }

    /// Parses the fixed header at the front of `buf` without consuming it.
    ///
    /// The packet type and flags are checked as soon as the first byte is
    /// there, and the size as soon as the remaining length is, so a bad or
    /// oversized packet is rejected before any of its body is buffered.
    pub fn peek_header(&self, buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet = PacketType::from_first_byte(first, self.version)?;
        let (body_len, used) = match parse_varint(&buf[1..])? {
            VarintParse::Done(len, used) => (len as usize, used),
            VarintParse::Incomplete => return Ok(None),
        };
        let header = FrameHeader {
            packet,
            flags: first & 0x0F,
            header_len: 1 + used,
            body_len,
        };
        if header.total_len() > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: header.total_len(),
                max: self.max_packet_size,
            });
        }
        Ok(Some(header))
    }

    /// Takes one whole packet off the front of `buf`, or returns `Ok(None)`
    /// if more bytes are needed. On an error the connection is beyond
    /// repair: the caller reports it and closes.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = self.peek_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < header.total_len() {
            return Ok(None);
        }
        let mut frame = buf.split_to(header.total_len()).freeze();
        frame.advance(header.header_len);
        Packet::decode_body(
            header.packet,
            header.flags,
            Reader::new(frame),
            self.version,
        )
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;
    use crate::codec::tests::{decode, decode_err, pid, V3, V4, V5};
    use crate::codec::{ConnectReasonCode, DisconnectReasonCode, PubAck};

    /// Packet type 0 is reserved at every level (5.0 §2.1.2, 3.1.1 §2.2.1).
    #[test]
    fn packet_type_0_is_reserved() {
        for version in [V3, V4, V5] {
            let err = decode_err(version, &[0x00, 0x00]);
            assert_eq!(err, DecodeError::ReservedPacketType(0));
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        }
    }

    /// Packet type 15 is reserved before 5.0, where it became AUTH
    /// (3.1.1 §2.2.1).
    #[test]
    fn packet_type_15_is_reserved_before_v5() {
        for version in [V3, V4] {
            assert_eq!(
                decode_err(version, &[0xF0, 0x00]),
                DecodeError::ReservedPacketType(15)
            );
        }
        assert!(matches!(decode(V5, &[0xF0, 0x00]), Ok(Packet::Auth(_))));
    }

    /// [MQTT-2.1.3-1] (5.0) / [MQTT-2.2.2-1], [MQTT-2.2.2-2] (3.1.1): the
    /// reserved fixed-header flags must hold the listed value: 0b0010 for
    /// PUBREL ([MQTT-3.6.1-1]), SUBSCRIBE ([MQTT-3.8.1-1]) and UNSUBSCRIBE
    /// ([MQTT-3.10.1-1]), 0 for every other type but PUBLISH.
    #[test]
    fn reserved_fixed_header_flags_must_have_their_listed_value() {
        use PacketType::*;
        let table = [
            (Connect, 0b0000),
            (ConnAck, 0b0000),
            (PubAck, 0b0000),
            (PubRec, 0b0000),
            (PubRel, 0b0010),
            (PubComp, 0b0000),
            (Subscribe, 0b0010),
            (SubAck, 0b0000),
            (Unsubscribe, 0b0010),
            (UnsubAck, 0b0000),
            (PingReq, 0b0000),
            (PingResp, 0b0000),
            (Disconnect, 0b0000),
            (Auth, 0b0000),
        ];
        for (packet, listed) in table {
            for version in [V4, V5] {
                if packet == Auth && version == V4 {
                    continue;
                }
                for flags in 0u8..16 {
                    let byte = (packet as u8) << 4 | flags;
                    let got = PacketType::from_first_byte(byte, version);
                    if flags == listed {
                        assert_eq!(got, Ok(packet), "{packet:?} {flags:#06b}");
                    } else {
                        let err = got.unwrap_err();
                        assert_eq!(err, DecodeError::InvalidFixedHeaderFlags { packet, flags });
                        assert!(err.to_string().contains("[MQTT-2.1.3-1]"), "{err}");
                        assert!(err.to_string().contains("[MQTT-2.2.2-1]"), "{err}");
                        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
                    }
                }
            }
        }
    }

    /// MQTT 3.1 set DUP and QoS 1 in the fixed header of PUBREL, SUBSCRIBE
    /// and UNSUBSCRIBE (3.1 §3.6, §3.8, §3.10), so level 3 also accepts
    /// 0b1010 there; 3.1.1 and 5.0 do not.
    #[test]
    fn level_3_also_allows_dup_on_pubrel_subscribe_unsubscribe() {
        for packet in [
            PacketType::PubRel,
            PacketType::Subscribe,
            PacketType::Unsubscribe,
        ] {
            let byte = (packet as u8) << 4 | 0b1010;
            assert_eq!(PacketType::from_first_byte(byte, V3), Ok(packet));
            for version in [V4, V5] {
                assert_eq!(
                    PacketType::from_first_byte(byte, version),
                    Err(DecodeError::InvalidFixedHeaderFlags {
                        packet,
                        flags: 0b1010
                    })
                );
            }
        }
        // Other types gain nothing at level 3.
        assert!(PacketType::from_first_byte(0x48, V3).is_err());
    }

    /// [MQTT-3.3.1-4]: a PUBLISH must not have both QoS bits set; the check
    /// runs on the first byte, before the remaining length is known.
    #[test]
    fn publish_qos_3_is_rejected_from_the_first_byte() {
        let d = Decoder::new(V4, MAX_PACKET_SIZE_LIMIT);
        for first in [0x36, 0x37, 0x3E, 0x3F] {
            let err = d.peek_header(&[first]).unwrap_err();
            assert_eq!(err, DecodeError::InvalidQoS);
            assert!(err.to_string().contains("[MQTT-3.3.1-4]"));
        }
    }

    /// The remaining length is at most four bytes (5.0 §1.5.5 and §2.1.4,
    /// 3.1.1 §2.2.3): a fourth byte with its continuation bit set is already
    /// an error, without waiting for a fifth.
    #[test]
    fn remaining_length_of_more_than_four_bytes_is_malformed() {
        let d = Decoder::new(V5, MAX_PACKET_SIZE_LIMIT);
        assert_eq!(
            d.peek_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::VarintTooLong)
        );
        let err = decode_err(V4, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert_eq!(err, DecodeError::VarintTooLong);
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        // Three continuation bytes are just an incomplete header.
        assert_eq!(d.peek_header(&[0x30, 0xFF, 0xFF, 0xFF]), Ok(None));
    }

    /// [MQTT-1.5.5-1] (5.0): the remaining length uses the fewest bytes.
    #[test]
    fn non_minimal_remaining_length_is_malformed() {
        let err = decode_err(V5, &[0xC0, 0x80, 0x00]);
        assert_eq!(err, DecodeError::NonMinimalVarint);
        assert!(err.to_string().contains("[MQTT-1.5.5-1]"));
    }

    /// The largest remaining length that four bytes hold parses, and the
    /// header says how big the whole packet is.
    #[test]
    fn peek_header_reports_the_frame_size() {
        let d = Decoder::new(V4, MAX_PACKET_SIZE_LIMIT);
        let header = d
            .peek_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F])
            .unwrap()
            .unwrap();
        assert_eq!(header.packet, PacketType::Publish);
        assert_eq!(header.header_len, 5);
        assert_eq!(header.body_len, VARINT_MAX as usize);
        assert_eq!(header.total_len(), MAX_PACKET_SIZE_LIMIT as usize);
        assert_eq!(d.peek_header(&[]), Ok(None));
        assert_eq!(d.peek_header(&[0x30]), Ok(None));
    }

    /// An oversized packet is refused as soon as its remaining length is
    /// known, before any of the body has arrived (5.0 §3.1.2.11.4 and
    /// §3.2.2.3.6: Packet too large, 0x95).
    #[test]
    fn oversized_remaining_length_is_rejected_before_the_body_arrives() {
        let d = Decoder::new(V5, 100);
        // Remaining length 1000: 0xE8 0x07. Only the header is buffered.
        let err = d.peek_header(&[0x30, 0xE8, 0x07]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::PacketTooLarge {
                size: 1003,
                max: 100
            }
        );
        assert_eq!(err.reason_code(), DisconnectReasonCode::PacketTooLarge);
        assert_eq!(err.connack_code(), ConnectReasonCode::PacketTooLarge);
        let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
        assert_eq!(d.decode(&mut buf), Err(err));
        // The limit counts the fixed header too: 98 + 2 = 100 fits.
        assert!(d.peek_header(&[0x30, 98]).unwrap().is_some());
        assert!(d.peek_header(&[0x30, 99]).is_err());
    }

    const PUBLISH_QOS1: &[u8] = &[
        0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'e', b'y',
    ];

    #[test]
    fn a_packet_fed_one_byte_at_a_time_decodes_only_when_whole() {
        let d = Decoder::new(V4, MAX_PACKET_SIZE_LIMIT);
        let mut buf = BytesMut::new();
        for (i, &byte) in PUBLISH_QOS1.iter().enumerate() {
            buf.put_u8(byte);
            let got = d.decode(&mut buf).unwrap();
            if i + 1 < PUBLISH_QOS1.len() {
                assert_eq!(got, None, "after {} bytes", i + 1);
                assert_eq!(buf.len(), i + 1, "nothing consumed early");
            } else {
                let Some(Packet::Publish(p)) = got else {
                    panic!("expected a PUBLISH, got {got:?}");
                };
                assert_eq!(p.topic.as_str(), "a/b");
                assert_eq!(p.pid(), Some(pid(7)));
                assert_eq!(&p.payload[..], b"hey");
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn two_packets_in_one_buffer_decode_in_order() {
        let d = Decoder::new(V4, MAX_PACKET_SIZE_LIMIT);
        let mut buf = BytesMut::from(PUBLISH_QOS1);
        buf.extend_from_slice(&[0xC0, 0x00, 0x40]);
        assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Publish(_)))));
        assert_eq!(d.decode(&mut buf), Ok(Some(Packet::PingReq)));
        // The start of a third packet stays buffered.
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &[0x40]);
        buf.extend_from_slice(&[0x02, 0x00, 0x07]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Packet::PubAck(PubAck::new(pid(7)))))
        );
        assert!(buf.is_empty());
    }

    /// The payload is a view into the received buffer, not a copy.
    #[test]
    fn publish_payload_shares_the_input_buffer() {
        let d = Decoder::new(V4, MAX_PACKET_SIZE_LIMIT);
        let mut buf = BytesMut::from(PUBLISH_QOS1);
        let start = buf.as_ptr() as usize;
        let end = start + buf.len();
        let Some(Packet::Publish(p)) = d.decode(&mut buf).unwrap() else {
            panic!("expected a PUBLISH");
        };
        let payload = p.payload.as_ptr() as usize;
        assert!(payload >= start && payload + p.payload.len() <= end);
        assert_eq!(payload, start + PUBLISH_QOS1.len() - 3);
        // So does the topic.
        let topic = p.topic.as_str().as_ptr() as usize;
        assert_eq!(topic, start + 4);
    }
}
