//! PUBLISH (MQTT 5.0 §3.3, 3.1.1 §3.3), and [`PublishTemplate`], the form
//! a broker fans out: the parts every subscriber shares are prepared once,
//! the per-subscriber parts are written per delivery, and the payload is
//! never copied to do it.
//!
//! Owns: the PUBLISH byte layout and the split between shared and
//! per-delivery parts. Does not own: topic alias tables, expiry clocks or
//! packet id allocation (the session's).

use std::num::NonZeroU16;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::{id, PublishProperties};
use super::types::{PacketId, ProtocolVersion, QoS, QosPid, SubscriptionId, TopicName};
use super::wire::{prefixed_len, put_str, put_varint, varint_len, Reader, VARINT_MAX};
use super::PacketType;

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
        let topic = r.string("topic name")?;
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
        let properties = if version.is_v5() {
            PublishProperties::decode(r, PacketType::Publish)?
        } else {
            PublishProperties::default()
        };
        let topic = if topic.is_empty() && version.is_v5() {
            // §3.3.2.3.4: a zero-length name is how a sender uses an alias.
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            TopicName::empty_for_alias()
        } else {
            let field = "topic name";
            TopicName::new(topic).map_err(|error| DecodeError::InvalidTopicName { field, error })?
        };
        Ok(Publish {
            dup,
            qos_pid,
            retain: flags & FLAG_RETAIN != 0,
            topic,
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

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        put_str(buf, self.topic.as_mqtt_str());
        if let Some(pid) = self.qos_pid.pid() {
            buf.put_u16(pid.get());
        }
        if version.is_v5() {
            self.properties.encode(buf);
        }
        buf.put_slice(&self.payload);
    }
}

#[inline]
fn publish_first_byte(qos: QoS, dup: bool, retain: bool) -> u8 {
    let mut byte = (PacketType::Publish as u8) << 4 | (qos as u8) << 1;
    if dup && qos != QoS::AtMostOnce {
        byte |= FLAG_DUP;
    }
    if retain {
        byte |= FLAG_RETAIN;
    }
    byte
}

/// What differs between two subscribers of one message.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub qos_pid: QosPid,
    pub dup: bool,
    /// The RETAIN flag as this subscriber sees it (Retain As Published,
    /// retained-on-subscribe).
    pub retain: bool,
    /// The Message Expiry Interval left for this delivery (5.0 §3.3.2.3.3).
    pub message_expiry_interval: Option<u32>,
    pub subscription_identifiers: &'a [SubscriptionId],
    /// A Topic Alias to send (5.0 §3.3.2.3.4).
    pub topic_alias: Option<NonZeroU16>,
    /// False when the alias is already known to the client, so the topic
    /// name is sent empty.
    pub send_topic: bool,
}

impl Delivery<'_> {
    /// A plain delivery: the topic sent, no alias, no subscription ids.
    pub fn plain(qos_pid: QosPid, retain: bool) -> Delivery<'static> {
        Delivery {
            qos_pid,
            dup: false,
            retain,
            message_expiry_interval: None,
            subscription_identifiers: &[],
            topic_alias: None,
            send_topic: true,
        }
    }
}

/// A PUBLISH prepared once for fan-out. The topic and payload are shared
/// (`Bytes`), the 5.0 message properties that every subscriber receives
/// unchanged (Payload Format Indicator, Content Type, Response Topic,
/// Correlation Data, User Properties) are encoded once, and each delivery
/// writes only its own header around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishTemplate {
    topic: TopicName,
    payload: Bytes,
    /// Encoded 5.0 properties without a length prefix.
    shared_properties: Bytes,
}

impl PublishTemplate {
    /// Prepares `publish` for fan-out. The per-hop properties (Topic Alias,
    /// Subscription Identifiers, Message Expiry Interval) are left out: each
    /// delivery supplies its own.
    pub fn new(publish: &Publish) -> Self {
        let props = &publish.properties;
        let shared = PublishProperties {
            payload_format_indicator: props.payload_format_indicator,
            response_topic: props.response_topic.clone(),
            correlation_data: props.correlation_data.clone(),
            content_type: props.content_type.clone(),
            user_properties: props.user_properties.clone(),
            ..PublishProperties::default()
        };
        let shared_properties = if shared.is_empty() {
            Bytes::new()
        } else {
            let mut buf = BytesMut::with_capacity(shared.body_len());
            shared.encode_body(&mut buf);
            buf.freeze()
        };
        PublishTemplate {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            shared_properties,
        }
    }

    /// A template for a message with no 5.0 properties.
    pub fn bare(topic: TopicName, payload: Bytes) -> Self {
        PublishTemplate {
            topic,
            payload,
            shared_properties: Bytes::new(),
        }
    }

    #[inline]
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    #[inline]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    fn properties_len(&self, d: &Delivery<'_>) -> usize {
        let mut len = self.shared_properties.len();
        if d.message_expiry_interval.is_some() {
            len += 1 + 4;
        }
        if d.topic_alias.is_some() {
            len += 1 + 2;
        }
        for sid in d.subscription_identifiers {
            len += 1 + varint_len(sid.get() as usize);
        }
        len
    }

    fn body_len(&self, version: ProtocolVersion, d: &Delivery<'_>) -> usize {
        let topic_len = if d.send_topic { self.topic.len() } else { 0 };
        let mut len = prefixed_len(topic_len) + self.payload.len();
        if d.qos_pid.pid().is_some() {
            len += 2;
        }
        if version.is_v5() {
            let props = self.properties_len(d);
            len += varint_len(props) + props;
        }
        len
    }

    /// Total encoded size of this delivery, payload included: what a
    /// client's Maximum Packet Size is compared with.
    pub fn delivery_len(&self, version: ProtocolVersion, d: &Delivery<'_>) -> usize {
        let body = self.body_len(version, d);
        1 + varint_len(body) + body
    }

    /// Writes everything before the payload. The caller sends
    /// [`Self::payload`] after it (appended, or as a second iovec).
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        d: &Delivery<'_>,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let body = self.body_len(version, d);
        if body > VARINT_MAX as usize {
            return Err(EncodeError::TooLarge(body));
        }
        buf.reserve(1 + varint_len(body) + body - self.payload.len());
        buf.put_u8(publish_first_byte(d.qos_pid.qos(), d.dup, d.retain));
        put_varint(buf, body);
        if d.send_topic {
            put_str(buf, self.topic.as_mqtt_str());
        } else {
            buf.put_u16(0);
        }
        if let Some(pid) = d.qos_pid.pid() {
            buf.put_u16(pid.get());
        }
        if version.is_v5() {
            put_varint(buf, self.properties_len(d));
            if let Some(expiry) = d.message_expiry_interval {
                buf.put_u8(id::MESSAGE_EXPIRY_INTERVAL);
                buf.put_u32(expiry);
            }
            if let Some(alias) = d.topic_alias {
                buf.put_u8(id::TOPIC_ALIAS);
                buf.put_u16(alias.get());
            }
            for sid in d.subscription_identifiers {
                buf.put_u8(id::SUBSCRIPTION_IDENTIFIER);
                put_varint(buf, sid.get() as usize);
            }
            buf.put_slice(&self.shared_properties);
        }
        Ok(())
    }

    /// Writes the whole packet, payload included.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        d: &Delivery<'_>,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        buf.reserve(self.delivery_len(version, d));
        self.encode_header(version, d, buf)?;
        buf.put_slice(&self.payload);
        Ok(())
    }
}
