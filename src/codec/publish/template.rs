//! [`PublishTemplate`], the form of a PUBLISH a broker fans out: the parts
//! every subscriber shares are prepared once, the per-subscriber parts
//! ([`Delivery`]) are written per delivery, and the payload is never copied
//! to do it.
//!
//! Owns: the split between shared and per-delivery parts and writing one
//! delivery's bytes. Does not own: the PUBLISH packet itself (`publish.rs`),
//! or what a delivery carries (the session picks the QoS, packet id, alias
//! and remaining expiry).

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};

use super::{publish_first_byte, Publish};
use crate::codec::error::EncodeError;
use crate::codec::properties::{id, PublishProperties};
use crate::codec::types::{ProtocolVersion, QosPid, SubscriptionId, TopicName};
use crate::codec::wire::{prefixed_len, put_str, put_varint, varint_len, VARINT_MAX};

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
        buf.extend_from_slice(&[publish_first_byte(d.qos_pid.qos(), d.dup, d.retain)]);
        put_varint(buf, body);
        if d.send_topic {
            put_str(buf, self.topic.as_mqtt_str());
        } else {
            buf.extend_from_slice(&u16::to_be_bytes(0));
        }
        if let Some(pid) = d.qos_pid.pid() {
            buf.extend_from_slice(&u16::to_be_bytes(pid.get()));
        }
        if version.is_v5() {
            put_varint(buf, self.properties_len(d));
            if let Some(expiry) = d.message_expiry_interval {
                buf.extend_from_slice(&[id::MESSAGE_EXPIRY_INTERVAL]);
                buf.extend_from_slice(&u32::to_be_bytes(expiry));
            }
            if let Some(alias) = d.topic_alias {
                buf.extend_from_slice(&[id::TOPIC_ALIAS]);
                buf.extend_from_slice(&u16::to_be_bytes(alias.get()));
            }
            for sid in d.subscription_identifiers {
                buf.extend_from_slice(&[id::SUBSCRIPTION_IDENTIFIER]);
                put_varint(buf, sid.get() as usize);
            }
            buf.extend_from_slice(&self.shared_properties);
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
        buf.extend_from_slice(&self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::publish;
    use super::*;
    use crate::codec::tests::{bytes, decode, encode, pid, s, topic, user, V4, V5};
    use crate::codec::{Packet, PayloadFormat};

    fn shared_properties() -> PublishProperties {
        PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            response_topic: Some(topic("reply/to")),
            correlation_data: Some(bytes(b"c")),
            content_type: Some(s("text/plain")),
            user_properties: vec![user("a", "1"), user("b", "2")],
            ..Default::default()
        }
    }

    fn template_bytes(t: &PublishTemplate, version: ProtocolVersion, d: &Delivery<'_>) -> Vec<u8> {
        let mut whole = BytesMut::new();
        t.encode(version, d, &mut whole).unwrap();
        assert_eq!(whole.len(), t.delivery_len(version, d), "delivery_len");
        let mut split = BytesMut::new();
        t.encode_header(version, d, &mut split).unwrap();
        split.extend_from_slice(t.payload());
        assert_eq!(split, whole, "encode_header + payload == encode");
        whole.to_vec()
    }

    /// The PUBLISH a delivery stands for.
    fn equivalent(original: &Publish, d: &Delivery<'_>) -> Publish {
        let mut properties = original.properties.clone();
        properties.message_expiry_interval = d.message_expiry_interval;
        properties.topic_alias = d.topic_alias;
        properties.subscription_identifiers = d.subscription_identifiers.iter().copied().collect();
        Publish {
            dup: d.dup,
            qos_pid: d.qos_pid,
            retain: d.retain,
            topic: if d.send_topic {
                original.topic.clone()
            } else {
                TopicName::empty_for_alias()
            },
            properties,
            payload: original.payload.clone(),
        }
    }

    /// Subscription ids 3 (one byte) and 200,000 (three bytes).
    fn sids() -> &'static [SubscriptionId] {
        static SIDS: std::sync::OnceLock<[SubscriptionId; 2]> = std::sync::OnceLock::new();
        SIDS.get_or_init(|| {
            [
                SubscriptionId::new(3).unwrap(),
                SubscriptionId::new(200_000).unwrap(),
            ]
        })
    }

    fn per_delivery(qos_pid: QosPid) -> Delivery<'static> {
        Delivery {
            qos_pid,
            dup: true,
            retain: true,
            message_expiry_interval: Some(30),
            subscription_identifiers: sids(),
            topic_alias: NonZeroU16::new(9),
            send_topic: true,
        }
    }

    /// A delivery encodes to the same bytes as the PUBLISH it stands for
    /// whenever that PUBLISH's properties are all shared or all
    /// per-delivery: the template writes the per-delivery ones first.
    #[test]
    fn template_delivery_matches_the_equivalent_publish_bytes() {
        let bare = publish(QosPid::AtMostOnce, "s/1", b"payload");
        let mut shared = bare.clone();
        shared.properties = shared_properties();
        let cases = [
            (&bare, Delivery::plain(QosPid::AtMostOnce, false)),
            (&bare, Delivery::plain(QosPid::AtLeastOnce(pid(5)), true)),
            (&bare, per_delivery(QosPid::ExactlyOnce(pid(6)))),
            (&shared, Delivery::plain(QosPid::AtLeastOnce(pid(7)), false)),
        ];
        for (original, d) in cases {
            let template = PublishTemplate::new(original);
            for version in [V4, V5] {
                let expected = encode(version, &Packet::Publish(equivalent(original, &d)));
                assert_eq!(template_bytes(&template, version, &d), expected, "{d:?}");
            }
        }
        // A template built without a Publish says the same.
        let d = Delivery::plain(QosPid::AtLeastOnce(pid(5)), false);
        let t = PublishTemplate::bare(topic("s/1"), bytes(b"payload"));
        assert_eq!(
            template_bytes(&t, V5, &d),
            template_bytes(&PublishTemplate::new(&bare), V5, &d)
        );
    }

    /// With both shared and per-delivery properties the order of the
    /// properties differs from `Publish::encode` (which property comes
    /// first carries no meaning, 5.0 §2.2.2), so compare what decodes.
    #[test]
    fn template_delivery_with_all_properties_decodes_to_the_equivalent_publish() {
        let mut original = publish(QosPid::AtMostOnce, "s/1", b"payload");
        original.properties = shared_properties();
        // Per-hop properties on the incoming PUBLISH are not forwarded.
        original.properties.topic_alias = NonZeroU16::new(1);
        original.properties.message_expiry_interval = Some(100);
        let template = PublishTemplate::new(&original);
        let mut with_alias_only = per_delivery(QosPid::AtLeastOnce(pid(8)));
        with_alias_only.send_topic = false;
        for d in [per_delivery(QosPid::AtLeastOnce(pid(8))), with_alias_only] {
            let mut cleared = original.clone();
            cleared.properties.topic_alias = None;
            cleared.properties.message_expiry_interval = None;
            let expected = equivalent(&cleared, &d);
            let wire = template_bytes(&template, V5, &d);
            assert_eq!(
                wire.len(),
                Packet::Publish(expected.clone()).encoded_len(V5)
            );
            assert_eq!(
                decode(V5, &wire).unwrap(),
                Packet::Publish(expected.clone())
            );
            // 3.1.1 has no properties: byte-for-byte equal again, and the
            // topic is always sent.
            let mut v4 = d;
            v4.send_topic = true;
            assert_eq!(
                template_bytes(&template, V4, &v4),
                encode(V4, &Packet::Publish(equivalent(&cleared, &v4)))
            );
        }
    }

    /// The exact bytes of a 5.0 delivery: per-delivery properties first,
    /// then the shared ones, then the payload; an aliased delivery sends a
    /// zero-length topic.
    #[test]
    fn template_delivery_v5_bytes() {
        let mut original = publish(QosPid::AtMostOnce, "t", b"P");
        original.properties.content_type = Some(s("c"));
        let template = PublishTemplate::new(&original);
        let d = Delivery {
            qos_pid: QosPid::AtLeastOnce(pid(2)),
            dup: false,
            retain: false,
            message_expiry_interval: Some(7),
            subscription_identifiers: &sids()[..1],
            topic_alias: NonZeroU16::new(1),
            send_topic: false,
        };
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x32, 0x14,
            0x00, 0x00,
            0x00, 0x02,
            0x0E,
            0x02, 0x00, 0x00, 0x00, 0x07,
            0x23, 0x00, 0x01,
            0x0B, 0x03,
            0x03, 0x00, 0x01, b'c',
            b'P',
        ];
        assert_eq!(template_bytes(&template, V5, &d), expected);
    }

    /// The payload is shared with the template, never copied into it.
    #[test]
    fn template_shares_topic_and_payload() {
        let original = publish(QosPid::AtMostOnce, "t", b"shared payload");
        let template = PublishTemplate::new(&original);
        assert_eq!(template.payload().as_ptr(), original.payload.as_ptr());
        assert_eq!(template.topic(), &original.topic);
    }
}
