//! The MQTT codec: every control packet of MQTT 3.1 (level 3), 3.1.1
//! (level 4) and 5.0 (level 5), decoded from and encoded into `bytes`
//! buffers. Sans-IO: no sockets, no clocks, no glommio.
//!
//! Owns: framing (the fixed header and the maximum packet size, checked
//! before any body is buffered), the [`Packet`] enum, and dispatch to one
//! module per packet family. Does not own: session state (which packet may
//! come when, topic aliases, packet id allocation).
//!
//! Decoding is streaming: [`Decoder::decode`] takes a `BytesMut` that holds
//! whatever has arrived, and returns `Ok(None)` until a whole packet is
//! there. A PUBLISH payload is a slice of the received buffer, not a copy.

mod ack;
mod connect;
mod disconnect;
mod error;
mod properties;
mod publish;
mod reason;
#[cfg(test)]
mod roundtrip_tests;
mod subscribe;
mod types;
mod wire;

use bytes::{Buf, BufMut, BytesMut};

pub use ack::{Ack, AckReason, PubAck, PubComp, PubRec, PubRel};
pub use connect::{ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use properties::{
    id as property_id, AckProperties, AuthProperties, ConnAckProperties, ConnectProperties,
    DisconnectProperties, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    WillProperties,
};
pub use publish::{Delivery, Publish, PublishTemplate};
pub use reason::{
    AuthReasonCode, ConnectReasonCode, DisconnectReasonCode, PubAckReasonCode, PubRelReasonCode,
    SubAckReasonCode, UnsubAckReasonCode,
};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use types::{
    ClientId, MaximumQoS, MqttStr, PacketId, PayloadFormat, ProtocolVersion, QoS, QosPid, StrError,
    SubscriptionId, TopicError, TopicFilter, TopicName, UserProperty,
};
pub use wire::VARINT_MAX;

use wire::{parse_varint, put_varint, varint_len, Reader, VarintParse};

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

/// Any MQTT control packet. The rare, large ones are boxed so that the
/// enum stays the size of a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    fn first_byte(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.first_byte(),
            other => {
                let kind = other.packet_type();
                let flags = match kind {
                    PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
                    _ => 0,
                };
                (kind as u8) << 4 | flags
            }
        }
    }

    /// The remaining length: everything after the fixed header.
    fn body_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Packet::Connect(p) => p.body_len(),
            Packet::ConnAck(p) => p.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(p) | Packet::PubRec(p) => p.body_len(version),
            Packet::PubRel(p) | Packet::PubComp(p) => p.body_len(version),
            Packet::Subscribe(p) => p.body_len(version),
            Packet::SubAck(p) => p.body_len(version),
            Packet::Unsubscribe(p) => p.body_len(version),
            Packet::UnsubAck(p) => p.body_len(version),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(p) => p.body_len(version),
            Packet::Auth(p) => p.body_len(),
        }
    }

    /// The exact number of bytes [`Packet::encode`] writes for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + varint_len(body) + body
    }

    /// Appends the packet to `buf`, reserving its exact size first.
    ///
    /// Fields that `version` lacks (properties, reason codes before 5.0) are
    /// left out; CONNECT always uses its own protocol level. AUTH has no 3.x
    /// form and is written as 5.0.
    #[inline]
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        // These two size their property sets once rather than twice.
        match self {
            Packet::Publish(p) => return p.encode(version, buf),
            Packet::Connect(p) => return p.encode(buf),
            _ => {}
        }
        let body = self.body_len(version);
        if body > VARINT_MAX as usize {
            return Err(EncodeError::TooLarge(body));
        }
        match self {
            Packet::Subscribe(p) if p.subscriptions.is_empty() => {
                return Err(EncodeError::NoTopicFilters(PacketType::Subscribe));
            }
            Packet::Unsubscribe(p) if p.filters.is_empty() => {
                return Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
            }
            _ => {}
        }
        buf.reserve(1 + varint_len(body) + body);
        buf.put_u8(self.first_byte());
        put_varint(buf, body);
        match self {
            Packet::Connect(p) => p.encode_body(buf),
            Packet::ConnAck(p) => p.encode_body(version, buf),
            Packet::Publish(p) => p.encode_body(version, buf),
            Packet::PubAck(p) | Packet::PubRec(p) => p.encode_body(version, buf),
            Packet::PubRel(p) | Packet::PubComp(p) => p.encode_body(version, buf),
            Packet::Subscribe(p) => p.encode_body(version, buf),
            Packet::SubAck(p) => p.encode_body(version, buf),
            Packet::Unsubscribe(p) => p.encode_body(version, buf),
            Packet::UnsubAck(p) => p.encode_body(version, buf),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.encode_body(version, buf),
            Packet::Auth(p) => p.encode_body(buf),
        }
        Ok(())
    }

    /// Decodes one packet body whose fixed header has been checked.
    fn decode_body(
        packet: PacketType,
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Packet, DecodeError> {
        let r = &mut r;
        let out = match packet {
            PacketType::Connect => Packet::Connect(Box::new(Connect::decode(r)?)),
            PacketType::ConnAck => Packet::ConnAck(Box::new(ConnAck::decode(r, version)?)),
            PacketType::Publish => Packet::Publish(Publish::decode(flags, r, version)?),
            PacketType::PubAck => Packet::PubAck(Ack::decode(packet, r, version)?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(packet, r, version)?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(packet, r, version)?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(packet, r, version)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
            PacketType::PingReq => {
                r.finish(packet)?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                r.finish(packet)?;
                Packet::PingResp
            }
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, version)?),
            PacketType::Auth => Packet::Auth(Auth::decode(r)?),
        };
        Ok(out)
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
pub(crate) mod tests {
    //! Framing tests, and the helpers every packet module's byte-literal
    //! tests share.

    use super::*;
    use bytes::Bytes;

    pub(crate) const V3: ProtocolVersion = ProtocolVersion::V3_1;
    pub(crate) const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

    /// Decodes exactly one whole packet from `bytes` at `version`.
    pub(crate) fn decode(version: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = Decoder::new(version, MAX_PACKET_SIZE_LIMIT)
            .decode(&mut buf)?
            .expect("the bytes hold a whole packet");
        assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
        Ok(packet)
    }

    /// The decode error for `bytes` at `version`.
    #[track_caller]
    pub(crate) fn decode_err(version: ProtocolVersion, bytes: &[u8]) -> DecodeError {
        match decode(version, bytes) {
            Ok(packet) => panic!("decoded {packet:?}, expected an error"),
            Err(err) => err,
        }
    }

    /// Encodes `packet` at `version`, checking `encoded_len` on the way.
    pub(crate) fn encode(version: ProtocolVersion, packet: &Packet) -> Vec<u8> {
        let mut buf = BytesMut::new();
        packet.encode(version, &mut buf).expect("encodable packet");
        assert_eq!(buf.len(), packet.encoded_len(version), "encoded_len");
        buf.to_vec()
    }

    /// `bytes` decode to `packet` and `packet` encodes to `bytes`.
    #[track_caller]
    pub(crate) fn assert_wire(version: ProtocolVersion, bytes: &[u8], packet: &Packet) {
        assert_eq!(&decode(version, bytes).expect("decodes"), packet, "decode");
        assert_eq!(encode(version, packet), bytes, "encode");
    }

    pub(crate) fn s(text: &str) -> MqttStr {
        MqttStr::try_from(text).unwrap()
    }

    pub(crate) fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).unwrap()
    }

    pub(crate) fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    pub(crate) fn pid(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    pub(crate) fn user(key: &str, value: &str) -> UserProperty {
        UserProperty {
            key: s(key),
            value: s(value),
        }
    }

    pub(crate) fn bytes(data: &'static [u8]) -> Bytes {
        Bytes::from_static(data)
    }

    #[test]
    fn pingreq_and_pingresp_are_two_bytes_at_every_level() {
        for version in [V3, V4, V5] {
            assert_wire(version, &[0xC0, 0x00], &Packet::PingReq);
            assert_wire(version, &[0xD0, 0x00], &Packet::PingResp);
        }
    }

    /// PINGREQ and PINGRESP have no variable header and no payload
    /// (5.0 §3.12, §3.13; 3.1.1 §3.12, §3.13).
    #[test]
    fn ping_with_a_body_is_malformed() {
        assert_eq!(
            decode_err(V4, &[0xC0, 0x01, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::PingReq,
                count: 1
            }
        );
        assert_eq!(
            decode_err(V5, &[0xD0, 0x02, 0x00, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::PingResp,
                count: 2
            }
        );
    }

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

    /// [`DecodeError::reason_code`]: Malformed Packet (0x81) for bytes that
    /// cannot be parsed, Protocol Error (0x82) for parseable packets that
    /// break a rule, and the specific codes where the spec names one.
    #[test]
    fn decode_errors_map_onto_disconnect_reason_codes() {
        use DecodeError as E;
        use DisconnectReasonCode as R;
        let cases = [
            (E::VarintTooLong, R::MalformedPacket),
            (E::NonMinimalVarint, R::MalformedPacket),
            (E::PacketTooLarge { size: 9, max: 8 }, R::PacketTooLarge),
            (E::ReservedPacketType(0), R::MalformedPacket),
            (E::Truncated { field: "x" }, R::MalformedPacket),
            (
                E::TrailingBytes {
                    packet: PacketType::PubAck,
                    count: 1,
                },
                R::MalformedPacket,
            ),
            (E::InvalidQoS, R::MalformedPacket),
            (E::DupWithQoS0, R::MalformedPacket),
            (
                E::InvalidTopicName {
                    field: "topic name",
                    error: TopicError::WildcardInName,
                },
                R::TopicNameInvalid,
            ),
            (E::EmptyTopicWithoutAlias, R::ProtocolError),
            (
                E::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard),
                R::TopicFilterInvalid,
            ),
            (
                E::ZeroPacketId {
                    packet: PacketType::Subscribe,
                },
                R::ProtocolError,
            ),
            (E::ConnectReservedFlag, R::MalformedPacket),
            (E::InvalidWillQoS, R::MalformedPacket),
            (E::SubscriptionOptionsReserved(0x40), R::MalformedPacket),
            (E::SubscriptionQoS3, R::ProtocolError),
            (E::RetainHandling3, R::ProtocolError),
            (E::NoLocalOnSharedSubscription, R::ProtocolError),
            (E::EmptySubscribe, R::ProtocolError),
            (E::EmptyUnsubscribe, R::ProtocolError),
            (
                E::UnexpectedProperty {
                    packet: PacketType::Connect,
                    id: 0x23,
                },
                R::MalformedPacket,
            ),
            (E::DuplicateProperty { id: 0x21 }, R::ProtocolError),
            (
                E::InvalidPropertyValue { id: 0x21, value: 0 },
                R::ProtocolError,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.reason_code(), code, "{err:?}");
        }
    }

    #[test]
    fn encoding_a_subscribe_or_unsubscribe_without_filters_fails() {
        let sub = Packet::Subscribe(Subscribe {
            pid: pid(1),
            properties: Default::default(),
            subscriptions: Vec::new(),
        });
        let mut buf = BytesMut::new();
        assert_eq!(
            sub.encode(V4, &mut buf),
            Err(EncodeError::NoTopicFilters(PacketType::Subscribe))
        );
        let unsub = Packet::Unsubscribe(Unsubscribe {
            pid: pid(1),
            properties: Default::default(),
            filters: Vec::new(),
        });
        assert_eq!(
            unsub.encode(V5, &mut buf),
            Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe))
        );
        assert!(buf.is_empty());
    }
}
