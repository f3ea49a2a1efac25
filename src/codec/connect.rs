//! CONNECT (MQTT 5.0 §3.1, 3.1.1 §3.1, 3.1 §3.1) and CONNACK (§3.2).
//!
//! Owns: the byte layout of both packets for every protocol level, the
//! protocol name/level negotiation and the CONNECT flag rules. Does not own:
//! what a server does with a client id, credentials or a will.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::properties::{ConnAckProperties, ConnectProperties, WillProperties};
use super::reason::ConnectReasonCode;
use super::types::{ClientId, MqttStr, ProtocolVersion, QoS, TopicName};
use super::wire::{prefixed_len, put_binary, put_str, Reader};
use super::PacketType;

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
    /// 3.x allows a password only with a user name ([MQTT-3.1.2-22]); 5.0
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

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol.is_v5();
        let mut len = prefixed_len(self.protocol.protocol_name().len()) + 1 + 1 + 2;
        if v5 {
            len += self.properties.encoded_len();
        }
        len += prefixed_len(self.client_id.as_mqtt_str().len());
        if let Some(will) = &self.will {
            if v5 {
                len += will.properties.encoded_len();
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

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        let v5 = self.protocol.is_v5();
        put_binary(buf, self.protocol.protocol_name().as_bytes());
        buf.put_u8(self.protocol.level());
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(buf);
        }
        put_str(buf, self.client_id.as_mqtt_str());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.encode(buf);
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
        buf.put_u8(u8::from(present));
        if version.is_v5() {
            buf.put_u8(self.code.as_u8());
            self.properties.encode(buf);
        } else {
            buf.put_u8(self.code.to_v3());
        }
    }
}
