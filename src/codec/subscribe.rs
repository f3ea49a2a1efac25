//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 5.0 §3.8–§3.11,
//! 3.1.1 §3.8–§3.11).
//!
//! Owns: their byte layout, the subscription options byte and the rule that
//! a (UN)SUBSCRIBE names at least one filter. Does not own: whether a
//! filter is granted (the broker's policy) or how it is matched (the trie).

use std::num::NonZeroU16;

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::{AckProperties, SubscribeProperties, UnsubscribeProperties};
use super::reason::{SubAckReasonCode, UnsubAckReasonCode};
use super::types::{PacketId, ProtocolVersion, QoS, TopicFilter};
use super::wire::{prefixed_len, put_str, Reader};
use super::PacketType;

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

fn read_pid(r: &mut Reader, packet: PacketType) -> Result<PacketId, DecodeError> {
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

/// A SUBACK packet: one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pid: PacketId,
    /// Empty unless the protocol is 5.0.
    pub properties: AckProperties,
    /// In 3.x, failures are written as 0x80 ([`SubAckReasonCode::to_v3`]).
    pub reason_codes: Vec<SubAckReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = read_pid(r, PacketType::SubAck)?;
        let properties = if version.is_v5() {
            AckProperties::decode(r, PacketType::SubAck)?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8("reason code")?;
            let reason = if version.is_v5() {
                SubAckReasonCode::from_u8(code)
            } else {
                SubAckReasonCode::from_v3(code)
            };
            reason_codes.push(reason.ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code,
            })?);
        }
        Ok(SubAck {
            pid,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props + self.reason_codes.len()
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties.encode(buf);
            for code in &self.reason_codes {
                buf.put_u8(code.as_u8());
            }
        } else {
            for code in &self.reason_codes {
                buf.put_u8(code.to_v3());
            }
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

/// An UNSUBACK packet. 3.x carries only the packet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub pid: PacketId,
    /// Empty unless the protocol is 5.0.
    pub properties: AckProperties,
    /// One per filter in 5.0; always empty in 3.x.
    pub reason_codes: Vec<UnsubAckReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = read_pid(r, PacketType::UnsubAck)?;
        let mut ack = UnsubAck {
            pid,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        };
        if version.is_v5() {
            ack.properties = AckProperties::decode(r, PacketType::UnsubAck)?;
            while !r.is_empty() {
                let code = r.u8("reason code")?;
                ack.reason_codes
                    .push(UnsubAckReasonCode::from_u8(code).ok_or(
                        DecodeError::InvalidReasonCode {
                            packet: PacketType::UnsubAck,
                            code,
                        },
                    )?);
            }
        }
        r.finish(PacketType::UnsubAck)?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len() + self.reason_codes.len()
        } else {
            2
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties.encode(buf);
            for code in &self.reason_codes {
                buf.put_u8(code.as_u8());
            }
        }
    }
}
