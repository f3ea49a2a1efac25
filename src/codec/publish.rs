//! PUBLISH (MQTT 5.0 §3.3, 3.1.1 §3.3): the packet itself, decoded and
//! encoded.
//!
//! Owns: the PUBLISH byte layout (the fast path for the common packet
//! included) and the topic name checks that depend on the properties.
//! Does not own: the fan-out form a broker writes per subscriber
//! ([`PublishTemplate`], in `publish/template.rs`), topic alias tables,
//! expiry clocks or packet id allocation (the session's).

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::PublishProperties;
use super::types::{MqttStr, PacketId, ProtocolVersion, QoS, QosPid, TopicName};
use super::wire::{prefixed_len, put_fixed_header_u16, put_str, varint_len, Reader, VARINT_MAX};
use super::PacketType;

mod template;

pub use template::{Delivery, PublishTemplate};

pub(crate) const FLAG_RETAIN: u8 = 0x01;
pub(crate) const FLAG_DUP: u8 = 0x08;

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Only meaningful with QoS 1 or 2; never sent with QoS 0 ([MQTT-3.3.1-2]).
    pub dup: bool,
    pub qos_pid: QosPid,
    pub retain: bool,
    /// Empty only in a 5.0 PUBLISH that carries a Topic Alias.
    pub topic: TopicName,
    /// Empty unless the protocol is 5.0.
    pub properties: PublishProperties,
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 PUBLISH with no properties.
    pub fn new(topic: TopicName, payload: Bytes) -> Self {
        Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic,
            properties: PublishProperties::default(),
            payload,
        }
    }

    #[inline]
    pub fn qos(&self) -> QoS {
        self.qos_pid.qos()
    }

    #[inline]
    pub fn pid(&self) -> Option<PacketId> {
        self.qos_pid.pid()
    }

    #[inline]
    pub(crate) fn decode(
        flags: u8,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        let dup = flags & FLAG_DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        // Ok: already a valid name; Err: a valid string still to be
        // checked as a name, after the properties as before.
        let topic = match TopicName::from_plain_ascii(r.binary("topic name")?) {
            Ok(name) => Ok(name),
            Err(raw) => {
                Err(
                    MqttStr::from_bytes(raw).map_err(|error| DecodeError::InvalidString {
                        field: "topic name",
                        error,
                    })?,
                )
            }
        };
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce | QoS::ExactlyOnce => {
                let pid = NonZeroU16::new(r.u16("packet identifier")?).ok_or(
                    DecodeError::ZeroPacketId {
                        packet: PacketType::Publish,
                    },
                )?;
                QosPid::new(qos, Some(pid)).expect("QoS above 0 with an id")
            }
        };
        let retain = flags & FLAG_RETAIN != 0;
        if !version.is_v5() || r.skip_zero_byte() {
            // No properties (3.x, or a zero property length): the packet is
            // built without a property set to move around.
            return Ok(Publish {
                dup,
                qos_pid,
                retain,
                topic: finish_topic(topic, version, false)?,
                properties: PublishProperties::default(),
                payload: r.rest(),
            });
        }
        let mut properties = PublishProperties::default();
        properties.decode_into(r, PacketType::Publish)?;
        Ok(Publish {
            dup,
            qos_pid,
            retain,
            topic: finish_topic(topic, version, properties.topic_alias.is_some())?,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn first_byte(&self) -> u8 {
        publish_first_byte(self.qos_pid.qos(), self.dup, self.retain)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = prefixed_len(self.topic.len()) + self.payload.len();
        if self.qos_pid.pid().is_some() {
            len += 2;
        }
        if version.is_v5() {
            len += self.properties.encoded_len();
        }
        len
    }

    /// The whole packet, as [`super::Packet::encode`] writes it, with the
    /// property length computed once.
    #[inline]
    pub(crate) fn encode(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let mut body = prefixed_len(self.topic.len()) + self.payload.len();
        if self.qos_pid.pid().is_some() {
            body += 2;
        }
        let props = if !version.is_v5() {
            0
        } else if self.properties.is_empty() {
            body += 1;
            0
        } else {
            let props = self.properties.body_len();
            body += varint_len(props) + props;
            props
        };
        if body > VARINT_MAX as usize {
            return Err(EncodeError::TooLarge(body));
        }
        if props == 0 && body < 16_384 {
            self.encode_small(version, body, buf);
            return Ok(());
        }
        buf.reserve(1 + varint_len(body) + body);
        let topic = self.topic.as_mqtt_str().as_bytes();
        put_fixed_header_u16(buf, self.first_byte(), body, topic.len() as u16);
        buf.extend_from_slice(topic);
        match (self.qos_pid.pid(), version.is_v5() && props == 0) {
            // The common tails in one write each.
            (Some(pid), true) => {
                let [hi, lo] = pid.get().to_be_bytes();
                buf.extend_from_slice(&[hi, lo, 0]);
            }
            (None, true) => buf.extend_from_slice(&[0]),
            (pid, false) => {
                if let Some(pid) = pid {
                    buf.extend_from_slice(&u16::to_be_bytes(pid.get()));
                }
                if version.is_v5() {
                    self.properties.encode_with_len(props, buf);
                }
            }
        }
        buf.extend_from_slice(&self.payload);
        Ok(())
    }

    /// The common PUBLISH: no properties to write and a remaining length
    /// under 16,384. One capacity check; the header and the id/property
    /// tail are written as fixed-size 8-byte stores (their spare bytes are
    /// overwritten by what follows, or lie past the new length), so only
    /// the topic and the payload cost a `memcpy`.
    #[inline]
    fn encode_small(&self, version: ProtocolVersion, body: usize, buf: &mut BytesMut) {
        let topic = self.topic.as_mqtt_str().as_bytes();
        let mut head = [0u8; 8];
        head[0] = self.first_byte();
        let mut n = if body < 128 {
            head[1] = body as u8;
            2
        } else {
            head[1] = (body & 0x7f) as u8 | 0x80;
            head[2] = (body >> 7) as u8;
            3
        };
        head[n..n + 2].copy_from_slice(&(topic.len() as u16).to_be_bytes());
        n += 2;
        let mut tail = [0u8; 8];
        let mut t = 0;
        if let Some(pid) = self.qos_pid.pid() {
            tail[..2].copy_from_slice(&pid.get().to_be_bytes());
            t = 2;
        }
        if version.is_v5() {
            // tail[t] is already 0: the empty property length.
            t += 1;
        }
        let total = n + topic.len() + t + self.payload.len();
        buf.reserve(total + 8);
        // SAFETY: `reserve` left at least `total + 8` bytes of spare
        // capacity. The writes below stay inside it: the 8-byte stores at
        // offsets below `total`, plus at most 8 bytes, and the two copies
        // end exactly at `total`. Every byte below `total` is written (the
        // later parts overwrite the stores' spare bytes) before `set_len`
        // exposes them; nothing it copies from can overlap the buffer.
        unsafe {
            let start = buf.spare_capacity_mut().as_mut_ptr().cast::<u8>();
            start.cast::<[u8; 8]>().write_unaligned(head);
            let at = start.add(n);
            std::ptr::copy_nonoverlapping(topic.as_ptr(), at, topic.len());
            let at = at.add(topic.len());
            at.cast::<[u8; 8]>().write_unaligned(tail);
            let at = at.add(t);
            std::ptr::copy_nonoverlapping(self.payload.as_ptr(), at, self.payload.len());
            buf.set_len(buf.len() + total);
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        put_str(buf, self.topic.as_mqtt_str());
        if let Some(pid) = self.qos_pid.pid() {
            buf.extend_from_slice(&u16::to_be_bytes(pid.get()));
        }
        if version.is_v5() {
            self.properties.encode(buf);
        }
        buf.extend_from_slice(&self.payload);
    }
}

/// The topic name check that comes after the properties: `topic` is either
/// a name already checked or a string still to be checked as one.
#[inline]
fn finish_topic(
    topic: Result<TopicName, MqttStr>,
    version: ProtocolVersion,
    has_alias: bool,
) -> Result<TopicName, DecodeError> {
    match topic {
        Ok(name) => Ok(name),
        Err(topic) if topic.is_empty() && version.is_v5() => {
            // §3.3.2.3.4: a zero-length name is how a sender uses an alias.
            if !has_alias {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            Ok(TopicName::empty_for_alias())
        }
        Err(topic) => {
            let field = "topic name";
            TopicName::new(topic).map_err(|error| DecodeError::InvalidTopicName { field, error })
        }
    }
}

#[inline]
pub(super) fn publish_first_byte(qos: QoS, dup: bool, retain: bool) -> u8 {
    let mut byte = (PacketType::Publish as u8) << 4 | (qos as u8) << 1;
    if dup && qos != QoS::AtMostOnce {
        byte |= FLAG_DUP;
    }
    if retain {
        byte |= FLAG_RETAIN;
    }
    byte
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{
        assert_wire, bytes, decode, decode_err, encode, pid, s, topic, user, V3, V4, V5,
    };
    use crate::codec::{
        DisconnectReasonCode, Packet, PayloadFormat, StrError, SubscriptionId, TopicError,
    };

    pub(super) fn publish(qos_pid: QosPid, topic_name: &str, payload: &'static [u8]) -> Publish {
        Publish {
            qos_pid,
            ..Publish::new(topic(topic_name), bytes(payload))
        }
    }

    /// 3.1.1 §3.3 (and 3.1): QoS 0, no packet identifier.
    #[test]
    fn publish_qos0_v3_v4() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x30, 0x0A,
            0x00, 0x03, b'a', b'/', b'b',
            b'h', b'e', b'l', b'l', b'o',
        ];
        let packet = Packet::Publish(publish(QosPid::AtMostOnce, "a/b", b"hello"));
        assert_wire(V3, wire, &packet);
        assert_wire(V4, wire, &packet);
    }

    /// 3.1.1 §3.3.1: DUP, QoS 1 and RETAIN in the first byte, then the
    /// packet identifier after the topic (§3.3.2.2).
    #[test]
    fn publish_qos1_dup_retain_v4() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x3B, 0x08,
            0x00, 0x03, b'a', b'/', b'b',
            0x00, 0x0A,
            b'x',
        ];
        let packet = Packet::Publish(Publish {
            dup: true,
            retain: true,
            ..publish(QosPid::AtLeastOnce(pid(10)), "a/b", b"x")
        });
        assert_wire(V4, wire, &packet);
        assert_wire(V3, wire, &packet);
    }

    #[test]
    fn publish_qos2_with_empty_payload_v4() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x34, 0x07,
            0x00, 0x03, b'a', b'/', b'b',
            0xFF, 0xFF,
        ];
        let packet = Packet::Publish(publish(QosPid::ExactlyOnce(pid(0xFFFF)), "a/b", b""));
        assert_wire(V4, wire, &packet);
    }

    /// 5.0 §3.3.2.3: the property length is always present, 0 when empty.
    #[test]
    fn publish_qos0_v5_without_properties() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x30, 0x08,
            0x00, 0x03, b'a', b'/', b'b',
            0x00,
            b'h', b'i',
        ];
        let packet = Packet::Publish(publish(QosPid::AtMostOnce, "a/b", b"hi"));
        assert_wire(V5, wire, &packet);
    }

    /// 5.0 §3.3.2.3: every PUBLISH property, two Subscription Identifiers
    /// (one of them a two-byte Variable Byte Integer) and a User Property.
    #[test]
    fn publish_v5_with_topic_alias_and_subscription_ids() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x32, 0x2B,
            0x00, 0x03, b'a', b'/', b'b',
            0x00, 0x01,
            0x22,
            0x01, 0x01,
            0x02, 0x00, 0x00, 0x00, 0x0A,
            0x23, 0x00, 0x05,
            0x08, 0x00, 0x01, b'r',
            0x09, 0x00, 0x01, 0x07,
            0x03, 0x00, 0x01, b't',
            0x0B, 0x01,
            0x0B, 0x80, 0x01,
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
            b'p',
        ];
        let mut p = publish(QosPid::AtLeastOnce(pid(1)), "a/b", b"p");
        p.properties = PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(10),
            topic_alias: NonZeroU16::new(5),
            response_topic: Some(topic("r")),
            correlation_data: Some(bytes(&[7])),
            content_type: Some(s("t")),
            subscription_identifiers: [1, 128]
                .into_iter()
                .map(|id| SubscriptionId::new(id).unwrap())
                .collect(),
            user_properties: vec![user("k", "v")],
        };
        assert_wire(V5, wire, &Packet::Publish(p.clone()));
        // The same PUBLISH written for 3.1.1 loses its properties.
        let v4 = encode(V4, &Packet::Publish(p));
        assert_eq!(
            v4,
            [0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'p']
        );
    }

    /// 5.0 §3.3.2.3.4: a zero-length topic name with a Topic Alias.
    #[test]
    fn publish_v5_with_empty_topic_and_alias() {
        let wire: &[u8] = &[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05];
        let Packet::Publish(p) = decode(V5, wire).unwrap() else {
            panic!("expected PUBLISH");
        };
        assert!(p.topic.is_empty());
        assert_eq!(p.properties.topic_alias, NonZeroU16::new(5));
        assert!(p.payload.is_empty());
        assert_eq!(encode(V5, &Packet::Publish(p)), wire);
    }

    /// 5.0 §3.3.2.1: a zero-length topic name without a Topic Alias is a
    /// Protocol Error; before 5.0 it is an invalid topic [MQTT-4.7.3-1].
    #[test]
    fn empty_topic_without_alias_is_rejected() {
        let err = decode_err(V5, &[0x30, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(err, DecodeError::EmptyTopicWithoutAlias);
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        let err = decode_err(V4, &[0x30, 0x02, 0x00, 0x00]);
        assert_eq!(
            err,
            DecodeError::InvalidTopicName {
                field: "topic name",
                error: TopicError::Empty
            }
        );
        assert!(err.to_string().contains("[MQTT-4.7.3-1]"));
        // An alias does not make an empty topic valid in 3.1.1 (no
        // properties there: the bytes are payload).
        assert!(decode(V4, &[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05]).is_err());
    }

    /// [MQTT-3.3.1-2]: DUP is 0 for all QoS 0 messages.
    #[test]
    fn dup_with_qos0_is_malformed() {
        for version in [V3, V4, V5] {
            let err = decode_err(version, &[0x38, 0x03, 0x00, 0x01, b'a']);
            assert_eq!(err, DecodeError::DupWithQoS0);
            assert!(err.to_string().contains("[MQTT-3.3.1-2]"));
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        }
        // And the encoder never writes it.
        let p = Publish {
            dup: true,
            ..publish(QosPid::AtMostOnce, "a", b"")
        };
        assert_eq!(
            encode(V4, &Packet::Publish(p)),
            [0x30, 0x03, 0x00, 0x01, b'a']
        );
    }

    /// [MQTT-3.3.1-4]: a PUBLISH with QoS 3 is malformed.
    #[test]
    fn qos_3_is_malformed() {
        for version in [V3, V4, V5] {
            let err = decode_err(version, &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]);
            assert_eq!(err, DecodeError::InvalidQoS);
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        }
    }

    /// [MQTT-2.2.1-3] (5.0) / [MQTT-2.3.1-1] (3.1.1): QoS 1 and 2 PUBLISH
    /// packets carry a non-zero packet identifier.
    #[test]
    fn packet_id_0_with_qos_above_0_is_rejected() {
        for first in [0x32, 0x34] {
            for version in [V4, V5] {
                let err = decode_err(version, &[first, 0x06, 0x00, 0x01, b'a', 0x00, 0x00, 0x00]);
                assert_eq!(
                    err,
                    DecodeError::ZeroPacketId {
                        packet: PacketType::Publish
                    }
                );
                assert!(err.to_string().contains("[MQTT-2.2.1-3]"));
                assert!(err.to_string().contains("[MQTT-2.3.1-1]"));
            }
        }
    }

    /// A QoS 1 PUBLISH too short to hold its packet identifier.
    #[test]
    fn truncated_packet_id_is_malformed() {
        assert_eq!(
            decode_err(V4, &[0x32, 0x04, 0x00, 0x01, b'a', 0x00]),
            DecodeError::Truncated {
                field: "packet identifier"
            }
        );
    }

    /// [MQTT-3.3.2-2]: the topic name carries no wildcards.
    #[test]
    fn topic_name_with_wildcards_is_invalid() {
        for wildcard in [b'+', b'#'] {
            for version in [V4, V5] {
                let mut wire = vec![0x30, 0x05, 0x00, 0x03, b'a', b'/', wildcard];
                if version == V5 {
                    wire[1] += 1;
                    wire.push(0x00);
                }
                let err = decode_err(version, &wire);
                assert_eq!(
                    err,
                    DecodeError::InvalidTopicName {
                        field: "topic name",
                        error: TopicError::WildcardInName
                    }
                );
                assert!(err.to_string().contains("[MQTT-3.3.2-2]"));
                assert_eq!(err.reason_code(), DisconnectReasonCode::TopicNameInvalid);
            }
        }
    }

    /// [MQTT-3.3.2-14] (5.0): the Response Topic carries no wildcards.
    #[test]
    fn response_topic_with_wildcards_is_invalid() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x30, 0x09,
            0x00, 0x01, b'a',
            0x05, 0x08, 0x00, 0x02, b'r', b'#',
        ];
        assert_eq!(
            decode_err(V5, wire),
            DecodeError::InvalidTopicName {
                field: "response topic",
                error: TopicError::WildcardInName
            }
        );
    }

    fn publish_with_topic(name: &[u8]) -> Vec<u8> {
        let mut wire = vec![0x30, 2 + name.len() as u8, 0x00, name.len() as u8];
        wire.extend_from_slice(name);
        wire
    }

    /// [MQTT-1.5.4-1] (5.0) / [MQTT-1.5.3-1] (3.1.1): ill-formed UTF-8,
    /// including an encoded surrogate, is malformed in a topic name.
    #[test]
    fn topic_with_ill_formed_utf8_is_malformed() {
        let cases: [&[u8]; 4] = [
            &[b'a', 0xC3, 0x28],
            &[0xC0, 0xAF],
            &[0xED, 0xA0, 0x80],
            &[0xED, 0xBF, 0xBF],
        ];
        for name in cases {
            let err = decode_err(V4, &publish_with_topic(name));
            assert_eq!(
                err,
                DecodeError::InvalidString {
                    field: "topic name",
                    error: StrError::InvalidUtf8
                },
                "{name:x?}"
            );
            assert!(err.to_string().contains("[MQTT-1.5.4-1]"));
            assert!(err.to_string().contains("[MQTT-1.5.3-1]"));
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        }
    }

    /// [MQTT-1.5.4-2] (5.0) / [MQTT-1.5.3-2] (3.1.1): U+0000 is malformed.
    #[test]
    fn topic_with_null_character_is_malformed() {
        let err = decode_err(V4, &publish_with_topic(b"a\0b"));
        assert_eq!(
            err,
            DecodeError::InvalidString {
                field: "topic name",
                error: StrError::NullCharacter
            }
        );
        assert!(err.to_string().contains("[MQTT-1.5.4-2]"));
    }

    /// [MQTT-1.5.4-3] (5.0) / [MQTT-1.5.3-3] (3.1.1): a BOM is kept, not
    /// stripped.
    #[test]
    fn topic_keeps_its_byte_order_mark() {
        let wire = publish_with_topic(b"\xEF\xBB\xBFa/b");
        let Packet::Publish(p) = decode(V4, &wire).unwrap() else {
            panic!("expected PUBLISH");
        };
        assert_eq!(p.topic.as_str(), "\u{FEFF}a/b");
        assert_eq!(encode(V4, &Packet::Publish(p)), wire);
    }

    /// 5.0 §3.3.2.3: a property that may appear once, twice (Topic Alias),
    /// and one that PUBLISH may not carry (Session Expiry Interval).
    #[test]
    fn publish_property_rules_apply_inside_the_packet() {
        #[rustfmt::skip]
        let twice: &[u8] = &[
            0x30, 0x0A,
            0x00, 0x01, b'a',
            0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02,
        ];
        let err = decode_err(V5, twice);
        assert_eq!(err, DecodeError::DuplicateProperty { id: 0x23 });
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        #[rustfmt::skip]
        let foreign: &[u8] = &[
            0x30, 0x09,
            0x00, 0x01, b'a',
            0x05, 0x11, 0x00, 0x00, 0x00, 0x01,
        ];
        let err = decode_err(V5, foreign);
        assert_eq!(
            err,
            DecodeError::UnexpectedProperty {
                packet: PacketType::Publish,
                id: 0x11
            }
        );
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        // Topic Alias 0 is not a valid alias: DISCONNECT with 0x94 (Topic
        // Alias invalid), 5.0 §3.3.4.
        let err = decode_err(V5, &[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00]);
        assert_eq!(
            err,
            DecodeError::InvalidPropertyValue { id: 0x23, value: 0 }
        );
        assert_eq!(err.reason_code(), DisconnectReasonCode::TopicAliasInvalid);
    }
}
