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
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
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
