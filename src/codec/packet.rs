//! [`Packet`], any MQTT control packet, and dispatch between it and the
//! module of each packet family: which body encoder or decoder a packet
//! type uses, its first byte, and its encoded size.
//!
//! Owns: the enum, `encode` (sizing, the checks every packet shares, the
//! fixed header) and body decoding once the frame is whole. Does not own:
//! finding frames in a byte stream (`frame.rs`) or any packet's byte layout
//! (`ack.rs`, `connect.rs`, `disconnect.rs`, `publish.rs`, `subscribe.rs`).

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::types::ProtocolVersion;
use super::wire::{put_varint, varint_len, Reader, VARINT_MAX};
use super::{
    Ack, Auth, ConnAck, Connect, Disconnect, PacketType, PubAck, PubComp, PubRec, PubRel, Publish,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

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
    pub(super) fn decode_body(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{assert_wire, decode_err, pid, V3, V4, V5};

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
