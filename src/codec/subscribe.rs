//! SUBSCRIBE and UNSUBSCRIBE (MQTT 5.0 §3.8, §3.10; 3.1.1 §3.8, §3.10),
//! and, in `subscribe/acks.rs`, their acknowledgements SUBACK and UNSUBACK
//! (§3.9, §3.11).
//!
//! Owns: the requests' byte layout, the subscription options byte and the
//! rule that a (UN)SUBSCRIBE names at least one filter. Does not own: the
//! acks' layout (`subscribe/acks.rs`), whether a filter is granted (the
//! broker's policy) or how it is matched (the trie).

use std::num::NonZeroU16;

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::{SubscribeProperties, UnsubscribeProperties};
use super::types::{PacketId, ProtocolVersion, QoS, TopicFilter};
use super::wire::{prefixed_len, put_str, Reader};
use super::PacketType;

mod acks;

pub use acks::{SubAck, UnsubAck};

/// Retain Handling (5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    SendAtNewSubscribe = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// The options byte of one SUBSCRIBE entry. In 3.x only `qos` exists and
/// the other fields keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved(byte));
        }
        let qos = QoS::from_bits(byte & 0x03).ok_or(DecodeError::SubscriptionQoS3)?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtNewSubscribe,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::RetainHandling3),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(&self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            byte |= u8::from(self.no_local) << 2;
            byte |= u8::from(self.retain_as_published) << 3;
            byte |= (self.retain_handling as u8) << 4;
        }
        byte
    }
}

/// One topic filter and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pid: PacketId,
    /// Empty unless the protocol is 5.0.
    pub properties: SubscribeProperties,
    /// Never empty ([MQTT-3.8.3-3] 3.1.1, [MQTT-3.8.3-2] 5.0).
    pub subscriptions: Vec<Subscription>,
}

pub(super) fn read_pid(r: &mut Reader, packet: PacketType) -> Result<PacketId, DecodeError> {
    NonZeroU16::new(r.u16("packet identifier")?).ok_or(DecodeError::ZeroPacketId { packet })
}

fn read_filter(r: &mut Reader) -> Result<TopicFilter, DecodeError> {
    TopicFilter::new(r.string("topic filter")?).map_err(DecodeError::InvalidTopicFilter)
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = read_pid(r, PacketType::Subscribe)?;
        let properties = if version.is_v5() {
            SubscribeProperties::decode(r, PacketType::Subscribe)?
        } else {
            SubscribeProperties::default()
        };
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(r)?;
            let options = SubscriptionOptions::decode(r.u8("subscription options")?, version)?;
            if options.no_local && filter.shared().is_some() && version.is_v5() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::EmptySubscribe);
        }
        Ok(Subscribe {
            pid,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len();
        }
        for s in &self.subscriptions {
            len += prefixed_len(s.filter.as_mqtt_str().len()) + 1;
        }
        len
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties.encode(buf);
        }
        for s in &self.subscriptions {
            put_str(buf, s.filter.as_mqtt_str());
            buf.put_u8(s.options.encode(version));
        }
    }
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pid: PacketId,
    /// Empty unless the protocol is 5.0.
    pub properties: UnsubscribeProperties,
    /// Never empty ([MQTT-3.10.3-2]).
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = read_pid(r, PacketType::Unsubscribe)?;
        let properties = if version.is_v5() {
            UnsubscribeProperties::decode(r, PacketType::Unsubscribe)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(r)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscribe);
        }
        Ok(Unsubscribe {
            pid,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        let filters: usize = self
            .filters
            .iter()
            .map(|f| prefixed_len(f.as_mqtt_str().len()))
            .sum();
        2 + props + filters
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties.encode(buf);
        }
        for filter in &self.filters {
            put_str(buf, filter.as_mqtt_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{
        assert_wire, decode, decode_err, encode, filter, pid, user, V3, V4, V5,
    };
    use crate::codec::{DisconnectReasonCode, Packet, SubscriptionId, TopicError};

    fn sub(text: &str, qos: QoS) -> Subscription {
        Subscription {
            filter: filter(text),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }
    }

    /// 3.1.1 §3.8.3 (Figure 3.23): two filters with QoS 1 and 2.
    #[test]
    fn subscribe_v3_v4() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x82, 0x0E,
            0x00, 0x0A,
            0x00, 0x03, b'a', b'/', b'b', 0x01,
            0x00, 0x03, b'c', b'/', b'd', 0x02,
        ];
        let packet = Packet::Subscribe(Subscribe {
            pid: pid(10),
            properties: SubscribeProperties::default(),
            subscriptions: vec![sub("a/b", QoS::AtLeastOnce), sub("c/d", QoS::ExactlyOnce)],
        });
        assert_wire(V4, wire, &packet);
        assert_wire(V3, wire, &packet);
        // MQTT 3.1 clients may set DUP on SUBSCRIBE.
        let mut dup = wire.to_vec();
        dup[0] = 0x8A;
        assert_eq!(decode(V3, &dup).unwrap(), packet);
    }

    /// 5.0 §3.8.2.1 and §3.8.3.1: a Subscription Identifier, a User
    /// Property, every subscription option, and a shared subscription.
    #[test]
    fn subscribe_v5_with_properties_and_options() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0x82, 0x1F,
            0x00, 0x01,
            0x09, 0x0B, 0x05, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
            0x00, 0x03, b'a', b'/', b'+',
            0x2D, // retain handling 2, retain as published, no local, QoS 1
            0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'b',
            0x10, // retain handling 1, QoS 0
        ];
        let packet = Packet::Subscribe(Subscribe {
            pid: pid(1),
            properties: SubscribeProperties {
                subscription_identifier: SubscriptionId::new(5),
                user_properties: vec![user("k", "v")],
            },
            subscriptions: vec![
                Subscription {
                    filter: filter("a/+"),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                },
                Subscription {
                    filter: filter("$share/g/b"),
                    options: SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendAtNewSubscribe,
                    },
                },
            ],
        });
        assert_wire(V5, wire, &packet);
        // Written for 3.1.1, only the QoS bits of the options survive.
        assert_eq!(
            encode(V4, &packet),
            [
                0x82, 0x15, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'+', 0x01, 0x00, 0x0A, b'$', b's',
                b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'b', 0x00
            ]
        );
    }

    /// 3.1.1 §3.10.3: a list of filters.
    #[test]
    fn unsubscribe_v3_v4() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0xA2, 0x0C,
            0x00, 0x0B,
            0x00, 0x03, b'a', b'/', b'b',
            0x00, 0x03, b'c', b'/', b'd',
        ];
        let packet = Packet::Unsubscribe(Unsubscribe {
            pid: pid(11),
            properties: UnsubscribeProperties::default(),
            filters: vec![filter("a/b"), filter("c/d")],
        });
        assert_wire(V4, wire, &packet);
        assert_wire(V3, wire, &packet);
    }

    /// 5.0 §3.10.2.1: UNSUBSCRIBE carries User Properties only.
    #[test]
    fn unsubscribe_v5_with_user_property() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            0xA2, 0x0F,
            0x00, 0x0B,
            0x07, 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
            0x00, 0x03, b'a', b'/', b'#',
        ];
        let packet = Packet::Unsubscribe(Unsubscribe {
            pid: pid(11),
            properties: UnsubscribeProperties {
                user_properties: vec![user("k", "v")],
            },
            filters: vec![filter("a/#")],
        });
        assert_wire(V5, wire, &packet);
    }

    /// [MQTT-3.8.3-2] (5.0) / [MQTT-3.8.3-3] (3.1.1): a SUBSCRIBE holds at
    /// least one filter; 5.0 calls an empty one a Protocol Error.
    #[test]
    fn empty_subscribe_is_rejected() {
        for (version, wire) in [
            (V3, &[0x82, 0x02, 0x00, 0x0A][..]),
            (V4, &[0x82, 0x02, 0x00, 0x0A]),
            (V5, &[0x82, 0x03, 0x00, 0x0A, 0x00]),
        ] {
            let err = decode_err(version, wire);
            assert_eq!(err, DecodeError::EmptySubscribe);
            assert!(err.to_string().contains("[MQTT-3.8.3-2]"));
            assert!(err.to_string().contains("[MQTT-3.8.3-3]"));
            assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        }
    }

    /// [MQTT-3.10.3-2]: an UNSUBSCRIBE holds at least one filter.
    #[test]
    fn empty_unsubscribe_is_rejected() {
        for (version, wire) in [
            (V4, &[0xA2, 0x02, 0x00, 0x0B][..]),
            (V5, &[0xA2, 0x03, 0x00, 0x0B, 0x00]),
        ] {
            let err = decode_err(version, wire);
            assert_eq!(err, DecodeError::EmptyUnsubscribe);
            assert!(err.to_string().contains("[MQTT-3.10.3-2]"));
            assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        }
    }

    /// [MQTT-2.2.1-3] (5.0) / [MQTT-2.3.1-1] (3.1.1) for SUBSCRIBE and
    /// UNSUBSCRIBE; [MQTT-2.2.1-6] (5.0) / [MQTT-2.3.1-7] (3.1.1) for their
    /// acks, which repeat that id.
    #[test]
    fn packet_id_0_is_rejected() {
        let cases: [(ProtocolVersion, &[u8], PacketType); 6] = [
            (
                V4,
                &[0x82, 0x08, 0x00, 0x00, 0x00, 0x03, b'a', b'/', b'b', 0x00],
                PacketType::Subscribe,
            ),
            (
                V5,
                &[0xA2, 0x08, 0x00, 0x00, 0x00, 0x00, 0x03, b'a', b'/', b'b'],
                PacketType::Unsubscribe,
            ),
            (
                V4,
                &[0xA2, 0x07, 0x00, 0x00, 0x00, 0x03, b'a', b'/', b'b'],
                PacketType::Unsubscribe,
            ),
            (V4, &[0x90, 0x03, 0x00, 0x00, 0x00], PacketType::SubAck),
            (
                V5,
                &[0x90, 0x04, 0x00, 0x00, 0x00, 0x00],
                PacketType::SubAck,
            ),
            (V4, &[0xB0, 0x02, 0x00, 0x00], PacketType::UnsubAck),
        ];
        for (version, wire, packet) in cases {
            let err = decode_err(version, wire);
            assert_eq!(err, DecodeError::ZeroPacketId { packet });
            assert!(err.to_string().contains("[MQTT-2.3.1-1]"));
        }
    }

    fn subscribe_one(version: ProtocolVersion, filter: &[u8], options: u8) -> Vec<u8> {
        let mut wire = vec![0x82, 0, 0x00, 0x0A];
        if version.is_v5() {
            wire.push(0x00);
        }
        wire.extend_from_slice(&[0x00, filter.len() as u8]);
        wire.extend_from_slice(filter);
        wire.push(options);
        wire[1] = (wire.len() - 2) as u8;
        wire
    }

    fn unsubscribe_one(version: ProtocolVersion, filter: &[u8]) -> Vec<u8> {
        let mut wire = vec![0xA2, 0, 0x00, 0x0B];
        if version.is_v5() {
            wire.push(0x00);
        }
        wire.extend_from_slice(&[0x00, filter.len() as u8]);
        wire.extend_from_slice(filter);
        wire[1] = (wire.len() - 2) as u8;
        wire
    }

    /// [MQTT-4.7.1-1] (5.0) / [MQTT-4.7.1-2] (3.1.1): `#` is a whole level
    /// and the last one; [MQTT-4.7.1-2] (5.0) / [MQTT-4.7.1-3] (3.1.1): `+`
    /// is a whole level. Checked in SUBSCRIBE and UNSUBSCRIBE.
    #[test]
    fn malformed_topic_filters_are_rejected() {
        let cases: [(&[u8], TopicError, &str); 5] = [
            (
                b"a/#/b",
                TopicError::MisplacedMultiLevelWildcard,
                "[MQTT-4.7.1-2] (3.1.1)",
            ),
            (
                b"#/a",
                TopicError::MisplacedMultiLevelWildcard,
                "[MQTT-4.7.1-1] (5.0)",
            ),
            (
                b"a#",
                TopicError::MisplacedMultiLevelWildcard,
                "[MQTT-4.7.1-1] (5.0)",
            ),
            (
                b"a+",
                TopicError::MisplacedSingleLevelWildcard,
                "[MQTT-4.7.1-3] (3.1.1)",
            ),
            (
                b"a/+b",
                TopicError::MisplacedSingleLevelWildcard,
                "[MQTT-4.7.1-2] (5.0)",
            ),
        ];
        for (text, error, id) in cases {
            for version in [V4, V5] {
                for wire in [
                    subscribe_one(version, text, 0x00),
                    unsubscribe_one(version, text),
                ] {
                    let err = decode_err(version, &wire);
                    assert_eq!(err, DecodeError::InvalidTopicFilter(error), "{wire:x?}");
                    assert!(err.to_string().contains(id), "{err}");
                    assert_eq!(err.reason_code(), DisconnectReasonCode::TopicFilterInvalid);
                }
            }
        }
        // [MQTT-4.7.3-1]: an empty filter.
        assert_eq!(
            decode_err(V4, &subscribe_one(V4, b"", 0x00)),
            DecodeError::InvalidTopicFilter(TopicError::Empty)
        );
        // [MQTT-4.8.2-1] (5.0): a shared subscription needs a share name.
        assert_eq!(
            decode_err(V5, &subscribe_one(V5, b"$share//a", 0x00)),
            DecodeError::InvalidTopicFilter(TopicError::BadSharedSubscription)
        );
    }

    /// [MQTT-1.5.4-1] (5.0) / [MQTT-1.5.3-1] (3.1.1) inside a filter.
    #[test]
    fn topic_filter_with_ill_formed_utf8_is_malformed() {
        let err = decode_err(V4, &subscribe_one(V4, &[b'a', 0xFF], 0x00));
        assert!(matches!(
            err,
            DecodeError::InvalidString {
                field: "topic filter",
                ..
            }
        ));
        assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
    }

    /// [MQTT-3-8.3-4] (3.1.1): bits 7-2 of the requested QoS byte are
    /// reserved; [MQTT-3.8.3-5] (5.0): bits 7-6 of the options are.
    #[test]
    fn subscription_options_reserved_bits_are_malformed() {
        for options in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
            let err = decode_err(V4, &subscribe_one(V4, b"a", options));
            assert_eq!(err, DecodeError::SubscriptionOptionsReserved(options));
            assert!(err.to_string().contains("[MQTT-3-8.3-4]"));
            assert_eq!(err.reason_code(), DisconnectReasonCode::MalformedPacket);
        }
        for options in [0x40, 0x80, 0xC1] {
            let err = decode_err(V5, &subscribe_one(V5, b"a", options));
            assert_eq!(err, DecodeError::SubscriptionOptionsReserved(options));
            assert!(err.to_string().contains("[MQTT-3.8.3-5]"));
        }
        // Bits 2-5 mean something in 5.0.
        assert!(decode(V5, &subscribe_one(V5, b"a", 0x2E)).is_ok());
    }

    /// [MQTT-3-8.3-4] (3.1.1) / 5.0 §3.8.3.1: a requested QoS of 3.
    #[test]
    fn subscription_qos_3_is_rejected() {
        assert_eq!(
            decode_err(V4, &subscribe_one(V4, b"a", 0x03)),
            DecodeError::SubscriptionQoS3
        );
        let err = decode_err(V5, &subscribe_one(V5, b"a", 0x03));
        assert_eq!(err, DecodeError::SubscriptionQoS3);
        // 5.0 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field
        // has the value 3."
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
    }

    /// 5.0 §3.8.3.1: "It is a Protocol Error to send a Retain Handling
    /// value of 3."
    #[test]
    fn retain_handling_3_is_a_protocol_error() {
        let err = decode_err(V5, &subscribe_one(V5, b"a", 0x30));
        assert_eq!(err, DecodeError::RetainHandling3);
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
    }

    /// [MQTT-3.8.3-4] (5.0): No Local on a shared subscription is a
    /// Protocol Error.
    #[test]
    fn no_local_on_a_shared_subscription_is_a_protocol_error() {
        let err = decode_err(V5, &subscribe_one(V5, b"$share/g/a", 0x04));
        assert_eq!(err, DecodeError::NoLocalOnSharedSubscription);
        assert!(err.to_string().contains("[MQTT-3.8.3-4]"));
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        // Without No Local it is fine, and so is No Local elsewhere.
        assert!(decode(V5, &subscribe_one(V5, b"$share/g/a", 0x00)).is_ok());
        assert!(decode(V5, &subscribe_one(V5, b"$shared/a", 0x04)).is_ok());
    }

    /// 5.0 §3.8.2.1.2: one Subscription Identifier, and no property that
    /// SUBSCRIBE may not carry; UNSUBSCRIBE carries User Properties only.
    #[test]
    fn subscribe_property_rules_apply_inside_the_packet() {
        #[rustfmt::skip]
        let twice: &[u8] = &[
            0x82, 0x0B,
            0x00, 0x0A,
            0x04, 0x0B, 0x01, 0x0B, 0x02,
            0x00, 0x01, b'a', 0x00,
        ];
        let err = decode_err(V5, twice);
        assert_eq!(err, DecodeError::DuplicateProperty { id: 0x0B });
        assert_eq!(err.reason_code(), DisconnectReasonCode::ProtocolError);
        #[rustfmt::skip]
        let reason_string: &[u8] = &[
            0x82, 0x0A,
            0x00, 0x0A,
            0x03, 0x1F, 0x00, 0x00,
            0x00, 0x01, b'a', 0x00,
        ];
        assert_eq!(
            decode_err(V5, reason_string),
            DecodeError::UnexpectedProperty {
                packet: PacketType::Subscribe,
                id: 0x1F
            }
        );
        #[rustfmt::skip]
        let unsubscribe_with_sid: &[u8] = &[
            0xA2, 0x08,
            0x00, 0x0B,
            0x02, 0x0B, 0x01,
            0x00, 0x01, b'a',
        ];
        assert_eq!(
            decode_err(V5, unsubscribe_with_sid),
            DecodeError::UnexpectedProperty {
                packet: PacketType::Unsubscribe,
                id: 0x0B
            }
        );
        // SUBACK and UNSUBACK share the ack table: no Subscription
        // Identifier, Reason String at most once.
        assert_eq!(
            decode_err(V5, &[0x90, 0x06, 0x00, 0x0A, 0x02, 0x0B, 0x01, 0x00]),
            DecodeError::UnexpectedProperty {
                packet: PacketType::SubAck,
                id: 0x0B
            }
        );
        assert_eq!(
            decode_err(
                V5,
                &[0xB0, 0x0A, 0x00, 0x0B, 0x06, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00]
            ),
            DecodeError::DuplicateProperty { id: 0x1F }
        );
    }

    /// A filter with no options byte after it, and an UNSUBACK with bytes
    /// after the packet id in 3.1.1.
    #[test]
    fn truncated_and_trailing_bytes_are_malformed() {
        let mut wire = subscribe_one(V4, b"a", 0x00);
        wire.pop();
        wire[1] -= 1;
        assert_eq!(
            decode_err(V4, &wire),
            DecodeError::Truncated {
                field: "subscription options"
            }
        );
        assert_eq!(
            decode_err(V4, &[0xB0, 0x03, 0x00, 0x0B, 0x00]),
            DecodeError::TrailingBytes {
                packet: PacketType::UnsubAck,
                count: 1
            }
        );
        // A filter length that runs past the packet.
        assert_eq!(
            decode_err(V4, &[0xA2, 0x05, 0x00, 0x0B, 0x00, 0x05, b'a']),
            DecodeError::Truncated {
                field: "topic filter"
            }
        );
    }
}
