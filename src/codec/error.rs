//! Typed decode and encode errors. Each decode error names the normative
//! statement it enforces and maps onto the reason code a 5.0 broker sends
//! (or, for 3.x, the reason it logs before it closes the connection).
//!
//! Owns: the error taxonomy and its mapping onto reason codes. Does not own:
//! deciding whether to answer with CONNACK, DISCONNECT or a silent close;
//! that is the session's call.

use thiserror::Error;

use super::reason::{ConnectReasonCode, DisconnectReasonCode};
use super::types::{StrError, TopicError};
use super::PacketType;

/// Why bytes from the network are not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// At most four bytes: 5.0 §1.5.5 and §2.1.4, 3.1.1 §2.2.3 (neither
    /// gives the rule a statement id).
    #[error("variable byte integer longer than four bytes (5.0 §1.5.5, 3.1.1 §2.2.3)")]
    VarintTooLong,
    /// 3.1.1 has no such rule; a broker may still refuse the longer forms.
    #[error("variable byte integer not in its minimal encoding [MQTT-1.5.5-1] (5.0)")]
    NonMinimalVarint,
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },
    #[error("packet type {0} is reserved (5.0 §2.1.2, 3.1.1 §2.2.1)")]
    ReservedPacketType(u8),
    #[error(
        "{packet:?} with fixed header flags {flags:#06b} \
         [MQTT-2.1.3-1] (5.0) / [MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1)"
    )]
    InvalidFixedHeaderFlags { packet: PacketType, flags: u8 },
    #[error("packet ends inside its {field} field")]
    Truncated { field: &'static str },
    #[error("{count} bytes left over after the last field of {packet:?}")]
    TrailingBytes { packet: PacketType, count: usize },
    #[error("{field}: {error}")]
    InvalidString {
        field: &'static str,
        error: StrError,
    },
    #[error("PUBLISH with QoS 3 [MQTT-3.3.1-4]")]
    InvalidQoS,
    #[error("PUBLISH with QoS 0 and DUP set [MQTT-3.3.1-2]")]
    DupWithQoS0,
    #[error("{field}: {error}")]
    InvalidTopicName {
        field: &'static str,
        error: TopicError,
    },
    /// 5.0 §3.3.2.1: "It is a Protocol Error if the Topic Name is zero
    /// length and there is no Topic Alias."
    #[error("PUBLISH with an empty topic name and no topic alias (5.0 §3.3.2.1) [MQTT-4.7.3-1]")]
    EmptyTopicWithoutAlias,
    #[error("topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    #[error("{packet:?} with packet identifier 0 [MQTT-2.2.1-3] (5.0) / [MQTT-2.3.1-1] (3.1.1)")]
    ZeroPacketId { packet: PacketType },
    #[error("CONNECT protocol name {0:?} is neither MQTT nor MQIsdp [MQTT-3.1.2-1]")]
    InvalidProtocolName(String),
    #[error("CONNECT protocol level {0} is not supported [MQTT-3.1.2-2]")]
    UnsupportedProtocolLevel(u8),
    #[error("CONNECT reserved flag is set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will QoS: [MQTT-3.1.2-11] (5.0), [MQTT-3.1.2-13] (3.1.1); Will
    /// Retain: [MQTT-3.1.2-13] (5.0), [MQTT-3.1.2-15] (3.1.1); 3.1.1 also
    /// states both in [MQTT-3.1.2-11].
    #[error(
        "CONNECT will QoS or will retain set without the will flag \
         [MQTT-3.1.2-11] [MQTT-3.1.2-13] (5.0) / [MQTT-3.1.2-13] [MQTT-3.1.2-15] (3.1.1)"
    )]
    WillFlagsWithoutWill,
    #[error("CONNECT will QoS 3 [MQTT-3.1.2-12] (5.0) / [MQTT-3.1.2-14] (3.1.1)")]
    InvalidWillQoS,
    /// 5.0 dropped the rule (§3.1.2.9 allows a password alone).
    #[error("CONNECT password flag without user name flag [MQTT-3.1.2-22] (3.1.1)")]
    PasswordWithoutUsername,
    /// 3.1.1 §3.2.2.1 states the same rule without a statement id.
    #[error("CONNACK acknowledge flags {0:#04x} have reserved bits set [MQTT-3.2.2-1] (5.0)")]
    ConnAckReservedFlags(u8),
    #[error(
        "CONNACK with session present and a failure code [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1)"
    )]
    SessionPresentOnFailure,
    /// Bits 7-6 in 5.0, bits 7-2 in 3.1.1. The 3.1.1 id is printed
    /// "MQTT-3-8.3-4" in the standard.
    #[error(
        "subscription options {0:#04x} have reserved bits set \
         [MQTT-3.8.3-5] (5.0) / [MQTT-3-8.3-4] (3.1.1)"
    )]
    SubscriptionOptionsReserved(u8),
    /// 5.0 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field has
    /// the value 3"; 3.1.1 calls it malformed.
    #[error("subscription option QoS 3 (5.0 §3.8.3.1) / [MQTT-3-8.3-4] (3.1.1)")]
    SubscriptionQoS3,
    #[error("retain handling 3 is a protocol error (5.0 §3.8.3.1)")]
    RetainHandling3,
    #[error("no local on a shared subscription [MQTT-3.8.3-4] (5.0)")]
    NoLocalOnSharedSubscription,
    #[error("SUBSCRIBE without any topic filter [MQTT-3.8.3-2] (5.0) / [MQTT-3.8.3-3] (3.1.1)")]
    EmptySubscribe,
    #[error("UNSUBSCRIBE without any topic filter [MQTT-3.10.3-2]")]
    EmptyUnsubscribe,
    #[error("{packet:?} with unknown reason code {code:#04x}")]
    InvalidReasonCode { packet: PacketType, code: u8 },
    #[error("property {id:#04x} is not allowed in {packet:?} (5.0 §2.2.2.2)")]
    UnexpectedProperty { packet: PacketType, id: u32 },
    /// Each property's own section in 5.0 §3 says where a second copy is a
    /// Protocol Error.
    #[error("property {id:#04x} appears more than once (5.0 §3, per property)")]
    DuplicateProperty { id: u8 },
    #[error("property {id:#04x} has the invalid value {value}")]
    InvalidPropertyValue { id: u8, value: u32 },
}

impl DecodeError {
    /// The reason code a 5.0 DISCONNECT carries for this error.
    pub fn reason_code(&self) -> DisconnectReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => DisconnectReasonCode::PacketTooLarge,
            InvalidTopicName { .. } => DisconnectReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => DisconnectReasonCode::TopicFilterInvalid,
            // 5.0 §3.3.4: "A Topic Alias value of 0 [...] is a Protocol
            // Error, the receiver uses DISCONNECT with Reason Code of 0x94".
            InvalidPropertyValue {
                id: super::properties::id::TOPIC_ALIAS,
                ..
            } => DisconnectReasonCode::TopicAliasInvalid,
            EmptyTopicWithoutAlias
            | ZeroPacketId { .. }
            | RetainHandling3
            | NoLocalOnSharedSubscription
            | EmptySubscribe
            | EmptyUnsubscribe
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | SessionPresentOnFailure
            | SubscriptionQoS3
            | UnsupportedProtocolLevel(_) => DisconnectReasonCode::ProtocolError,
            VarintTooLong
            | NonMinimalVarint
            | ReservedPacketType(_)
            | InvalidFixedHeaderFlags { .. }
            | Truncated { .. }
            | TrailingBytes { .. }
            | InvalidString { .. }
            | InvalidQoS
            | DupWithQoS0
            | InvalidProtocolName(_)
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | InvalidWillQoS
            | PasswordWithoutUsername
            | ConnAckReservedFlags(_)
            | SubscriptionOptionsReserved(_)
            | InvalidReasonCode { .. }
            | UnexpectedProperty { .. } => DisconnectReasonCode::MalformedPacket,
        }
    }

    /// The CONNACK code for an error found while decoding CONNECT. An
    /// unsupported level ([MQTT-3.1.2-2]) or protocol name ([MQTT-3.1.2-1],
    /// 5.0) gets 0x84 in 5.0 and return code 0x01 in 3.x; see
    /// [`ConnectReasonCode::to_v3`].
    pub fn connack_code(&self) -> ConnectReasonCode {
        match self {
            DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName(_) => {
                ConnectReasonCode::UnsupportedProtocolVersion
            }
            DecodeError::PacketTooLarge { .. } => ConnectReasonCode::PacketTooLarge,
            DecodeError::InvalidTopicName { .. } => ConnectReasonCode::TopicNameInvalid,
            other => match other.reason_code() {
                DisconnectReasonCode::ProtocolError => ConnectReasonCode::ProtocolError,
                _ => ConnectReasonCode::MalformedPacket,
            },
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("remaining length {0} exceeds 268,435,455 bytes (5.0 §2.1.4, 3.1.1 §2.2.3)")]
    TooLarge(usize),
    #[error("{0:?} must carry at least one topic filter")]
    NoTopicFilters(PacketType),
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
