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
//!
//! The fixed header and the streaming decoder are in `frame.rs`, the
//! [`Packet`] enum and its dispatch in `packet.rs`.

mod ack;
mod connect;
mod disconnect;
mod error;
mod frame;
mod packet;
mod properties;
mod publish;
mod reason;
#[cfg(test)]
mod roundtrip_tests;
mod subscribe;
mod types;
mod wire;

pub use ack::{Ack, AckReason, PubAck, PubComp, PubRec, PubRel};
pub use connect::{ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use frame::{Decoder, FrameHeader, PacketType, MAX_PACKET_SIZE_LIMIT};
pub use packet::Packet;
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

#[cfg(test)]
pub(crate) mod tests {
    //! The helpers every packet module's byte-literal tests share.

    use super::*;
    use bytes::{Bytes, BytesMut};

    pub(crate) const V3: ProtocolVersion = ProtocolVersion::V3_1;
    pub(crate) const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

    /// Decodes exactly one whole packet from `bytes` at `version`.
    pub(crate) fn decode(version: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = Decoder::new(version, MAX_PACKET_SIZE_LIMIT)
            .decode(&mut buf)?
            .expect("the bytes hold a whole packet");
        assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
        Ok(packet)
    }

    /// The decode error for `bytes` at `version`.
    #[track_caller]
    pub(crate) fn decode_err(version: ProtocolVersion, bytes: &[u8]) -> DecodeError {
        match decode(version, bytes) {
            Ok(packet) => panic!("decoded {packet:?}, expected an error"),
            Err(err) => err,
        }
    }

    /// Encodes `packet` at `version`, checking `encoded_len` on the way.
    pub(crate) fn encode(version: ProtocolVersion, packet: &Packet) -> Vec<u8> {
        let mut buf = BytesMut::new();
        packet.encode(version, &mut buf).expect("encodable packet");
        assert_eq!(buf.len(), packet.encoded_len(version), "encoded_len");
        buf.to_vec()
    }

    /// `bytes` decode to `packet` and `packet` encodes to `bytes`.
    #[track_caller]
    pub(crate) fn assert_wire(version: ProtocolVersion, bytes: &[u8], packet: &Packet) {
        assert_eq!(&decode(version, bytes).expect("decodes"), packet, "decode");
        assert_eq!(encode(version, packet), bytes, "encode");
    }

    pub(crate) fn s(text: &str) -> MqttStr {
        MqttStr::try_from(text).unwrap()
    }

    pub(crate) fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).unwrap()
    }

    pub(crate) fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    pub(crate) fn pid(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    pub(crate) fn user(key: &str, value: &str) -> UserProperty {
        UserProperty {
            key: s(key),
            value: s(value),
        }
    }

    pub(crate) fn bytes(data: &'static [u8]) -> Bytes {
        Bytes::from_static(data)
    }
}
