//! CONNECT (MQTT 5.0 §3.1, 3.1.1 §3.1, 3.1 §3.1) and, in `connect/connack.rs`,
//! CONNACK (§3.2).
//!
//! Owns: the byte layout of CONNECT for every protocol level, the protocol
//! name/level negotiation and the CONNECT flag rules. Does not own: CONNACK's
//! layout (`connect/connack.rs`), or what a server does with a client id,
//! credentials or a will.

use bytes::{Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::{ConnectProperties, WillProperties};
use super::types::{ClientId, MqttStr, ProtocolVersion, QoS, TopicName};
use super::wire::{prefixed_len, put_binary, put_str, put_varint, varint_len, Reader, VARINT_MAX};
use super::PacketType;

mod connack;

pub use connack::ConnAck;

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

/// A CONNECT packet. Its protocol level travels inside it, so it decodes and
/// encodes the same whatever level the connection was assumed to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean_start: bool,
    pub keep_alive: u16,
    /// Empty unless `protocol` is 5.0.
    pub properties: ConnectProperties,
    pub client_id: ClientId,
    pub will: Option<Will>,
    pub username: Option<MqttStr>,
    /// 3.x allows a password only with a user name ([MQTT-3.1.2-22], 3.1.1); 5.0
    /// allows it alone.
    pub password: Option<Bytes>,
}

/// The Will Message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Empty unless the protocol is 5.0.
    pub properties: WillProperties,
}

impl Connect {
    /// A clean 5.0 or 3.1.1 CONNECT with no will and no credentials.
    pub fn new(protocol: ProtocolVersion, client_id: ClientId, keep_alive: u16) -> Self {
        Connect {
            protocol,
            clean_start: true,
            keep_alive,
            properties: ConnectProperties::default(),
            client_id,
            will: None,
            username: None,
            password: None,
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let name = r.binary("protocol name")?;
        let level = r.u8("protocol level")?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", other) => {
                return Err(DecodeError::UnsupportedProtocolLevel(other));
            }
            _ => {
                return Err(DecodeError::InvalidProtocolName(
                    String::from_utf8_lossy(&name).into_owned(),
                ));
            }
        };
        let flags = r.u8("connect flags")?;
        if flags & FLAG_RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let has_will = flags & FLAG_WILL != 0;
        let will_qos_bits = (flags >> 3) & 0x03;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !has_will && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidWillQoS)?;
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        if protocol != ProtocolVersion::V5 && has_password && !has_username {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        let properties = if protocol.is_v5() {
            ConnectProperties::decode(r, PacketType::Connect)?
        } else {
            ConnectProperties::default()
        };
        let client_id = ClientId::new(r.string("client identifier")?);
        let will = if has_will {
            let properties = if protocol.is_v5() {
                WillProperties::decode(r, PacketType::Connect)?
            } else {
                WillProperties::default()
            };
            let field = "will topic";
            let topic = TopicName::new(r.string(field)?)
                .map_err(|error| DecodeError::InvalidTopicName { field, error })?;
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string("user name")).transpose()?;
        let password = has_password.then(|| r.binary("password")).transpose()?;
        r.finish(PacketType::Connect)?;
        Ok(Connect {
            protocol,
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << 3);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        flags
    }

    /// The body lengths of the CONNECT and will property sets (0 before 5.0).
    #[inline]
    fn property_lens(&self) -> (usize, usize) {
        if !self.protocol.is_v5() {
            return (0, 0);
        }
        let will = self.will.as_ref().map_or(0, |w| w.properties.body_len());
        (self.properties.body_len(), will)
    }

    pub(crate) fn body_len(&self) -> usize {
        self.body_len_with(self.property_lens())
    }

    #[inline]
    fn body_len_with(&self, (props, will_props): (usize, usize)) -> usize {
        let v5 = self.protocol.is_v5();
        let mut len = prefixed_len(self.protocol.protocol_name().len()) + 1 + 1 + 2;
        if v5 {
            len += varint_len(props) + props;
        }
        len += prefixed_len(self.client_id.as_mqtt_str().len());
        if let Some(will) = &self.will {
            if v5 {
                len += varint_len(will_props) + will_props;
            }
            len += prefixed_len(will.topic.len()) + prefixed_len(will.payload.len());
        }
        if let Some(username) = &self.username {
            len += prefixed_len(username.len());
        }
        if let Some(password) = &self.password {
            len += prefixed_len(password.len());
        }
        len
    }

    /// The whole packet, as [`super::Packet::encode`] writes it, with each
    /// property set sized once.
    pub(crate) fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let lens = self.property_lens();
        let body = self.body_len_with(lens);
        if body > VARINT_MAX as usize {
            return Err(EncodeError::TooLarge(body));
        }
        buf.reserve(1 + varint_len(body) + body);
        buf.extend_from_slice(&[(PacketType::Connect as u8) << 4]);
        put_varint(buf, body);
        self.encode_body_with(lens, buf);
        Ok(())
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        self.encode_body_with(self.property_lens(), buf);
    }

    #[inline]
    fn encode_body_with(&self, (props, will_props): (usize, usize), buf: &mut BytesMut) {
        let v5 = self.protocol.is_v5();
        // The variable header before the properties in one write: the
        // protocol name, level, flags and keep alive.
        let [ka_hi, ka_lo] = self.keep_alive.to_be_bytes();
        let (level, flags) = (self.protocol.level(), self.flags());
        match self.protocol {
            ProtocolVersion::V3_1 => buf.extend_from_slice(&[
                0, 6, b'M', b'Q', b'I', b's', b'd', b'p', level, flags, ka_hi, ka_lo,
            ]),
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => {
                buf.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', level, flags, ka_hi, ka_lo])
            }
        }
        if v5 {
            self.properties.encode_with_len(props, buf);
        }
        put_str(buf, self.client_id.as_mqtt_str());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.encode_with_len(will_props, buf);
            }
            put_str(buf, will.topic.as_mqtt_str());
            put_binary(buf, &will.payload);
        }
        if let Some(username) = &self.username {
            put_str(buf, username);
        }
        if let Some(password) = &self.password {
            put_binary(buf, password);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use crate::codec::tests::{assert_wire, bytes, decode, decode_err, s, topic, user, V3, V4, V5};
    use crate::codec::{
        ConnectReasonCode, DisconnectReasonCode, Packet, PayloadFormat, StrError, TopicError,
    };

    fn connect(c: Connect) -> Packet {
        Packet::Connect(Box::new(c))
    }

    /// MQTT 3.1 (§3.1): protocol name "MQIsdp", level 3, with a will, a
    /// user name and a password.
    #[test]
    fn connect_v3_with_will_and_credentials() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x10, 0x21,
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
            0xEE, // user name, password, will retain, will QoS 1, will, clean
            0x00, 0x3C,
            0x00, 0x02, b'c', b'1',
            0x00, 0x03, b'w', b'/', b't',
            0x00, 0x03, b'b', b'y', b'e',
            0x00, 0x01, b'u',
            0x00, 0x02, b'p', b'w',
        ];
        let packet = connect(Connect {
            protocol: V3,
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            client_id: ClientId::try_from("c1").unwrap(),
            will: Some(Will {
                topic: topic("w/t"),
                payload: bytes(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some(s("u")),
            password: Some(bytes(b"pw")),
        });
        // CONNECT carries its own level, whatever the decoder assumed.
        for assumed in [V3, V4, V5] {
            assert_wire(assumed, wire, &packet);
        }
    }

    /// 3.1.1 §3.1.2 (Figure 3.2, 3.3): "MQTT", level 4, Clean Session.
    #[test]
    fn connect_v4_minimal() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x10, 0x0F,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
            0x02,
            0x00, 0x0A,
            0x00, 0x03, b'a', b'b', b'c',
        ];
        let packet = connect(Connect::new(V4, ClientId::try_from("abc").unwrap(), 10));
        assert_wire(V4, wire, &packet);
    }

    /// 3.1.1: an empty client id, a QoS 2 will with an empty message, and a
    /// user name without a password.
    #[test]
    fn connect_v4_with_qos2_will_and_user_name() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x10, 0x14,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
            0x94, // user name, will QoS 2, will
            0x00, 0x00,
            0x00, 0x00,
            0x00, 0x01, b't',
            0x00, 0x00,
            0x00, 0x01, b'u',
        ];
        let packet = connect(Connect {
            protocol: V4,
            clean_start: false,
            keep_alive: 0,
            properties: ConnectProperties::default(),
            client_id: ClientId::default(),
            will: Some(Will {
                topic: topic("t"),
                payload: bytes(b""),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: WillProperties::default(),
            }),
            username: Some(s("u")),
            password: None,
        });
        assert_wire(V4, wire, &packet);
    }

    /// 5.0 §3.1.2.11 and §3.1.3.2: CONNECT properties (Session Expiry
    /// Interval, Receive Maximum, a User Property) and every Will property.
    #[test]
    fn connect_v5_with_properties_and_will_properties() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x10, 0x50,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
            0xCE, // user name, password, will QoS 1, will, clean start
            0x00, 0x1E,
            // Properties.
            0x0F,
            0x11, 0x00, 0x00, 0x0E, 0x10,
            0x21, 0x00, 0x14,
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
            // Client identifier.
            0x00, 0x01, b'c',
            // Will properties.
            0x25,
            0x18, 0x00, 0x00, 0x00, 0x05,
            0x01, 0x01,
            0x02, 0x00, 0x00, 0x00, 0x3C,
            0x03, 0x00, 0x04, b't', b'e', b'x', b't',
            0x08, 0x00, 0x03, b'r', b'/', b't',
            0x09, 0x00, 0x02, 0x01, 0x02,
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b',
            // Will topic and payload, user name, password.
            0x00, 0x01, b'w',
            0x00, 0x01, b'x',
            0x00, 0x01, b'u',
            0x00, 0x02, 0xFF, 0x00,
        ];
        let packet = connect(Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 30,
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: NonZeroU16::new(20),
                user_properties: vec![user("k", "v")],
                ..Default::default()
            },
            client_id: ClientId::try_from("c").unwrap(),
            will: Some(Will {
                topic: topic("w"),
                payload: bytes(b"x"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(60),
                    content_type: Some(s("text")),
                    response_topic: Some(topic("r/t")),
                    correlation_data: Some(bytes(&[1, 2])),
                    user_properties: vec![user("a", "b")],
                },
            }),
            username: Some(s("u")),
            password: Some(bytes(&[0xFF, 0x00])),
        });
        assert_wire(V4, wire, &packet);
        assert_wire(V5, wire, &packet);
    }

    /// 5.0 §3.1.2.9 allows a password without a user name.
    #[test]
    fn connect_v5_password_without_user_name_is_allowed() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x10, 0x10,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
            0x42,
            0x00, 0x00,
            0x00,
            0x00, 0x00,
            0x00, 0x01, b'p',
        ];
        let mut c = Connect::new(V5, ClientId::default(), 0);
        c.password = Some(bytes(b"p"));
        assert_wire(V5, wire, &connect(c));
    }

    /// [MQTT-3.1.2-22] (3.1.1): a password needs a user name before 5.0.
    #[test]
    fn password_without_user_name_before_v5_is_malformed() {
        #[rustfmt::skip]
        let v4: &[u8] = &[
            0x10, 0x0F,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
            0x42,
            0x00, 0x00,
            0x00, 0x00,
            0x00, 0x01, b'p',
        ];
        let err = decode_err(V4, v4);
        assert_eq!(err, DecodeError::PasswordWithoutUsername);
        assert!(err.to_string().contains("[MQTT-3.1.2-22]"));
        assert_eq!(err.connack_code(), ConnectReasonCode::MalformedPacket);
        #[rustfmt::skip]
        let v3: &[u8] = &[
            0x10, 0x11,
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
            0x42,
            0x00, 0x00,
            0x00, 0x00,
            0x00, 0x01, b'p',
        ];
        assert_eq!(decode_err(V3, v3), DecodeError::PasswordWithoutUsername);
    }

    /// A CONNECT for `level` with the given name, flags and a two-byte
    /// client id "ab" (no properties before 5.0, an empty set in 5.0).
    fn connect_bytes(name: &[u8], level: u8, flags: u8) -> Vec<u8> {
        let mut body = vec![0x00, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
        if level == 5 {
            body.push(0x00);
        }
        body.extend_from_slice(&[0x00, 0x02, b'a', b'b']);
        let mut wire = vec![0x10, body.len() as u8];
        wire.extend_from_slice(&body);
        wire
    }

    #[test]
    fn connect_bytes_builds_a_valid_connect() {
        for (name, level) in [(&b"MQIsdp"[..], 3), (b"MQTT", 4), (b"MQTT", 5)] {
            let Packet::Connect(c) = decode(V4, &connect_bytes(name, level, 0x02)).unwrap() else {
                panic!("expected CONNECT");
            };
            assert_eq!(c.protocol.level(), level);
            assert_eq!(c.client_id.as_str(), "ab");
        }
    }

    /// [MQTT-3.1.2-3]: the reserved CONNECT flag must be 0 (Malformed Packet
    /// in 5.0).
    #[test]
    fn connect_reserved_flag_is_malformed() {
        for (name, level) in [(&b"MQIsdp"[..], 3), (b"MQTT", 4), (b"MQTT", 5)] {
            let err = decode_err(V4, &connect_bytes(name, level, 0x03));
            assert_eq!(err, DecodeError::ConnectReservedFlag);
            assert!(err.to_string().contains("[MQTT-3.1.2-3]"));
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
            assert_eq!(err.connack_code(), ConnectReasonCode::MalformedPacket);
        }
    }

    /// [MQTT-3.1.2-11], [MQTT-3.1.2-13] (5.0) / [MQTT-3.1.2-11],
    /// [MQTT-3.1.2-13], [MQTT-3.1.2-15] (3.1.1): without the will flag, Will
    /// QoS and Will Retain are 0.
    #[test]
    fn will_qos_or_retain_without_will_flag_is_malformed() {
        for flags in [0x0A, 0x12, 0x22, 0x3A] {
            for level in [4, 5] {
                let err = decode_err(V4, &connect_bytes(b"MQTT", level, flags));
                assert_eq!(err, DecodeError::WillFlagsWithoutWill, "{flags:#04x}");
                let text = err.to_string();
                assert!(text.contains("[MQTT-3.1.2-11]") && text.contains("[MQTT-3.1.2-15]"));
            }
        }
    }

    /// [MQTT-3.1.2-12] (5.0) / [MQTT-3.1.2-14] (3.1.1): Will QoS 3 is
    /// malformed.
    #[test]
    fn will_qos_3_is_malformed() {
        for level in [4, 5] {
            let err = decode_err(V4, &connect_bytes(b"MQTT", level, 0x1E));
            assert_eq!(err, DecodeError::InvalidWillQoS);
            assert!(err.to_string().contains("[MQTT-3.1.2-12]"));
            assert!(err.to_string().contains("[MQTT-3.1.2-14]"));
            assert_eq!(err.connack_code(), ConnectReasonCode::MalformedPacket);
        }
    }

    /// [MQTT-3.1.2-2]: an unsupported level is answered with 0x84 in 5.0
    /// and return code 0x01 (unacceptable protocol version) in 3.x.
    #[test]
    fn unsupported_protocol_level_gets_0x84_or_0x01() {
        for (name, level) in [
            (&b"MQTT"[..], 3),
            (b"MQTT", 6),
            (b"MQTT", 0),
            (b"MQIsdp", 4),
        ] {
            let err = decode_err(V4, &connect_bytes(name, level, 0x02));
            assert_eq!(err, DecodeError::UnsupportedProtocolLevel(level));
            assert!(err.to_string().contains("[MQTT-3.1.2-2]"));
            let code = err.connack_code();
            assert_eq!(code, ConnectReasonCode::UnsupportedProtocolVersion);
            assert_eq!(code.as_u8(), 0x84);
            assert_eq!(code.to_v3(), 0x01);
        }
    }

    /// [MQTT-3.1.2-1]: a wrong protocol name. 5.0 lets the server answer
    /// with 0x84 before it closes; 3.x gets return code 0x01.
    #[test]
    fn unsupported_protocol_name_gets_0x84_or_0x01() {
        let err = decode_err(V4, &connect_bytes(b"MQTX", 4, 0x02));
        assert_eq!(err, DecodeError::InvalidProtocolName("MQTX".into()));
        assert!(err.to_string().contains("[MQTT-3.1.2-1]"));
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        let code = err.connack_code();
        assert_eq!(code, ConnectReasonCode::UnsupportedProtocolVersion);
        assert_eq!(code.to_v3(), 0x01);
        // Case matters, and "MQIsdp" is only valid at level 3.
        assert!(matches!(
            decode_err(V4, &connect_bytes(b"mqtt", 4, 0x02)),
            DecodeError::InvalidProtocolName(_)
        ));
    }

    /// [MQTT-3.3.2-2] / [MQTT-4.7.0-1] (5.0), [MQTT-4.7.1-1] (3.1.1): the
    /// will topic is a topic name, so it carries no wildcards.
    #[test]
    fn will_topic_with_wildcards_is_invalid() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x10, 0x12,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
            0x06,
            0x00, 0x00,
            0x00, 0x00,
            0x00, 0x03, b'a', b'/', b'#',
            0x00, 0x00,
        ];
        let err = decode_err(V4, wire);
        assert_eq!(
            err,
            DecodeError::InvalidTopicName {
                field: "will topic",
                error: TopicError::WildcardInName
            }
        );
        assert!(err.to_string().contains("[MQTT-3.3.2-2]"));
        assert_eq!(err.connack_code(), ConnectReasonCode::TopicNameInvalid);
    }

    /// [MQTT-1.5.4-1..3] (5.0) / [MQTT-1.5.3-1..3] (3.1.1) inside CONNECT:
    /// ill-formed UTF-8, U+0000 and a surrogate are malformed; a BOM stays.
    #[test]
    fn connect_strings_follow_the_utf8_rules() {
        let with_client_id = |id: &[u8]| {
            let mut wire = vec![0x10, 12 + id.len() as u8];
            wire.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x00]);
            wire.extend_from_slice(&[0x00, id.len() as u8]);
            wire.extend_from_slice(id);
            wire
        };
        let cases: [(&[u8], StrError); 3] = [
            (&[b'a', 0xC3, 0x28], StrError::InvalidUtf8),
            (&[b'a', 0x00, b'b'], StrError::NullCharacter),
            (&[0xED, 0xA0, 0x80], StrError::InvalidUtf8),
        ];
        for (id, error) in cases {
            let err = decode_err(V4, &with_client_id(id));
            assert_eq!(
                err,
                DecodeError::InvalidString {
                    field: "client identifier",
                    error
                }
            );
            assert!(err.to_string().contains("[MQTT-1.5.4-"), "{err}");
            assert!(err.to_string().contains("[MQTT-1.5.3-"), "{err}");
            assert_eq!(err.connack_code(), ConnectReasonCode::MalformedPacket);
        }
        let Packet::Connect(c) = decode(V4, &with_client_id(b"\xEF\xBB\xBFid")).unwrap() else {
            panic!("expected CONNECT");
        };
        assert_eq!(c.client_id.as_str().as_bytes(), b"\xEF\xBB\xBFid");
        assert_eq!(c.client_id.as_str(), "\u{FEFF}id");
    }

    /// 5.0 §3.1.2.11: a property that may appear once, twice; and one that
    /// CONNECT may not carry at all (Topic Alias).
    #[test]
    fn connect_property_rules_apply_inside_the_packet() {
        let with_props = |props: &[u8]| {
            let mut wire = vec![0x10, 13 + props.len() as u8];
            wire.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00]);
            wire.push(props.len() as u8);
            wire.extend_from_slice(props);
            wire.extend_from_slice(&[0x00, 0x00]);
            wire
        };
        let err = decode_err(V5, &with_props(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]));
        assert_eq!(err, DecodeError::DuplicateProperty { id: 0x11 });
        assert_eq!(err.connack_code(), ConnectReasonCode::ProtocolError);
        let err = decode_err(V5, &with_props(&[0x23, 0x00, 0x01]));
        assert_eq!(
            err,
            DecodeError::UnexpectedProperty {
                packet: PacketType::Connect,
                id: 0x23
            }
        );
        assert_eq!(err.connack_code(), ConnectReasonCode::MalformedPacket);
        // Will properties are checked against the will's own table.
        #[rustfmt::skip]
        let will_with_session_expiry: &[u8] = &[
            0x10, 0x18,
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
            0x06,
            0x00, 0x00,
            0x00,
            0x00, 0x00,
            0x05, 0x11, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x01, b't',
            0x00, 0x00,
        ];
        assert_eq!(
            decode_err(V5, will_with_session_expiry),
            DecodeError::UnexpectedProperty {
                packet: PacketType::Connect,
                id: 0x11
            }
        );
    }

    #[test]
    fn connect_with_trailing_bytes_is_malformed() {
        let mut wire = connect_bytes(b"MQTT", 4, 0x02);
        wire[1] += 1;
        wire.push(0x00);
        assert_eq!(
            decode_err(V4, &wire),
            DecodeError::TrailingBytes {
                packet: PacketType::Connect,
                count: 1
            }
        );
    }
}
