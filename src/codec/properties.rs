//! MQTT 5.0 properties (§2.2.2): one typed set per packet, each holding only
//! the properties the spec allows there.
//!
//! Owns: the property identifiers, their data types, which packet may carry
//! which, and the rules that apply to every set: an identifier not valid for
//! the packet is a Malformed Packet, one that appears twice where the spec
//! allows it once is a Protocol Error, and values the spec forbids (zero
//! Receive Maximum, a boolean other than 0 or 1, …) are Protocol Errors.
//! Does not own: what a property means to a session.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::error::DecodeError;
use super::types::{
    ClientId, MaximumQoS, MqttStr, PayloadFormat, SubscriptionId, TopicName, UserProperty,
};
use super::wire::{prefixed_len, put_str, put_varint, varint_len, Reader};
use super::PacketType;

/// Property identifiers (5.0 §2.2.2.2, Table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// A value type a property can hold: how it is read, written and sized.
pub(crate) trait PropertyValue: Sized {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError>;
    /// Writes the property: its identifier, then its value. Fixed-size
    /// values and the length prefix of strings go out in the same write as
    /// the identifier.
    fn write(&self, id: u8, buf: &mut BytesMut);
    fn len(&self) -> usize;
}

/// Identifier, length prefix and bytes of a string or binary property.
#[inline]
fn put_tagged_binary(buf: &mut BytesMut, id: u8, bytes: &[u8]) {
    let [hi, lo] = (bytes.len() as u16).to_be_bytes();
    buf.extend_from_slice(&[id, hi, lo]);
    buf.extend_from_slice(bytes);
}

fn invalid(id: u8, value: u32) -> DecodeError {
    DecodeError::InvalidPropertyValue { id, value }
}

/// Byte properties that are booleans: anything but 0 or 1 is a Protocol Error.
impl PropertyValue for bool {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError> {
        match r.u8("property")? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(invalid(id, other.into())),
        }
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        buf.extend_from_slice(&[id, u8::from(*self)]);
    }
    fn len(&self) -> usize {
        1
    }
}

impl PropertyValue for PayloadFormat {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError> {
        match r.u8("property")? {
            0 => Ok(PayloadFormat::Unspecified),
            1 => Ok(PayloadFormat::Utf8),
            other => Err(invalid(id, other.into())),
        }
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        buf.extend_from_slice(&[id, *self as u8]);
    }
    fn len(&self) -> usize {
        1
    }
}

impl PropertyValue for MaximumQoS {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError> {
        match r.u8("property")? {
            0 => Ok(MaximumQoS::AtMostOnce),
            1 => Ok(MaximumQoS::AtLeastOnce),
            other => Err(invalid(id, other.into())),
        }
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        buf.extend_from_slice(&[id, *self as u8]);
    }
    fn len(&self) -> usize {
        1
    }
}

impl PropertyValue for u16 {
    fn read(r: &mut Reader, _id: u8) -> Result<Self, DecodeError> {
        r.u16("property")
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        let [hi, lo] = self.to_be_bytes();
        buf.extend_from_slice(&[id, hi, lo]);
    }
    fn len(&self) -> usize {
        2
    }
}

impl PropertyValue for NonZeroU16 {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError> {
        NonZeroU16::new(r.u16("property")?).ok_or_else(|| invalid(id, 0))
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        let [hi, lo] = self.get().to_be_bytes();
        buf.extend_from_slice(&[id, hi, lo]);
    }
    fn len(&self) -> usize {
        2
    }
}

impl PropertyValue for u32 {
    fn read(r: &mut Reader, _id: u8) -> Result<Self, DecodeError> {
        r.u32("property")
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        let [a, b, c, d] = self.to_be_bytes();
        buf.extend_from_slice(&[id, a, b, c, d]);
    }
    fn len(&self) -> usize {
        4
    }
}

impl PropertyValue for NonZeroU32 {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError> {
        NonZeroU32::new(r.u32("property")?).ok_or_else(|| invalid(id, 0))
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        let [a, b, c, d] = self.get().to_be_bytes();
        buf.extend_from_slice(&[id, a, b, c, d]);
    }
    fn len(&self) -> usize {
        4
    }
}

impl PropertyValue for SubscriptionId {
    fn read(r: &mut Reader, id: u8) -> Result<Self, DecodeError> {
        let value = r.varint("subscription identifier")?;
        SubscriptionId::new(value).ok_or_else(|| invalid(id, value))
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        buf.extend_from_slice(&[id]);
        put_varint(buf, self.get() as usize);
    }
    fn len(&self) -> usize {
        varint_len(self.get() as usize)
    }
}

impl PropertyValue for MqttStr {
    fn read(r: &mut Reader, _id: u8) -> Result<Self, DecodeError> {
        r.string("property")
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        put_tagged_binary(buf, id, self.as_bytes());
    }
    fn len(&self) -> usize {
        prefixed_len(MqttStr::len(self))
    }
}

impl PropertyValue for ClientId {
    fn read(r: &mut Reader, _id: u8) -> Result<Self, DecodeError> {
        Ok(ClientId::new(r.string("assigned client identifier")?))
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        put_tagged_binary(buf, id, self.as_mqtt_str().as_bytes());
    }
    fn len(&self) -> usize {
        prefixed_len(self.as_mqtt_str().len())
    }
}

/// Response Topic: a topic name, so no wildcards ([MQTT-3.3.2-14], 5.0).
impl PropertyValue for TopicName {
    fn read(r: &mut Reader, _id: u8) -> Result<Self, DecodeError> {
        let field = "response topic";
        TopicName::new(r.string(field)?)
            .map_err(|error| DecodeError::InvalidTopicName { field, error })
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        put_tagged_binary(buf, id, self.as_mqtt_str().as_bytes());
    }
    fn len(&self) -> usize {
        prefixed_len(TopicName::len(self))
    }
}

/// Binary Data: Correlation Data and Authentication Data.
impl PropertyValue for Bytes {
    fn read(r: &mut Reader, _id: u8) -> Result<Self, DecodeError> {
        r.binary("property")
    }
    fn write(&self, id: u8, buf: &mut BytesMut) {
        put_tagged_binary(buf, id, self);
    }
    fn len(&self) -> usize {
        prefixed_len(Bytes::len(self))
    }
}

/// Reads the property length and returns a reader over exactly the
/// properties, leaving the outer reader after them.
fn property_block(r: &mut Reader) -> Result<Reader, DecodeError> {
    let len = r.varint("property length")? as usize;
    Ok(Reader::new(r.take(len, "properties")?))
}

/// Marks `id` as seen; a second sighting is a Protocol Error.
#[inline]
fn first_sighting(seen: &mut u64, id: u8) -> Result<(), DecodeError> {
    let bit = 1u64 << id;
    if *seen & bit != 0 {
        return Err(DecodeError::DuplicateProperty { id });
    }
    *seen |= bit;
    Ok(())
}

fn user_properties_len(props: &[UserProperty]) -> usize {
    props
        .iter()
        .map(|p| 1 + prefixed_len(p.key.len()) + prefixed_len(p.value.len()))
        .sum()
}

fn write_user_properties(props: &[UserProperty], buf: &mut BytesMut) {
    for p in props {
        put_tagged_binary(buf, id::USER_PROPERTY, p.key.as_bytes());
        put_str(buf, &p.value);
    }
}

/// Defines a property set: the struct, its decoder (with the duplicate and
/// not-allowed checks) and its encoder. Fields listed under `repeated` may
/// appear many times; User Property is always allowed and repeatable.
macro_rules! property_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $pid:ident => $field:ident : $ty:ty, )*
        }
        $( repeated { $( $(#[$rmeta:meta])* $rpid:ident => $rfield:ident : $rty:ty, )* } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Option<$ty>, )*
            $( $( $(#[$rmeta])* pub $rfield: SmallVec<[$rty; 1]>, )* )?
            /// User Properties, in the order they were received ([MQTT-3.3.2-18],
            /// and [MQTT-3.1.3-10] for the Will; 5.0).
            pub user_properties: Vec<UserProperty>,
        }

        impl $name {
            /// Reads the property length and the properties that follow it.
            #[inline]
            #[allow(dead_code)] // PUBLISH decodes its set in place
            pub(crate) fn decode(r: &mut Reader, packet: PacketType) -> Result<Self, DecodeError> {
                let mut out = Self::default();
                out.decode_into(r, packet)?;
                Ok(out)
            }

            /// [`Self::decode`] into `self`, which must be empty: the caller
            /// builds its packet in place instead of moving a set around.
            #[inline]
            pub(crate) fn decode_into(
                &mut self,
                r: &mut Reader,
                packet: PacketType,
            ) -> Result<(), DecodeError> {
                // Most packets carry none: a zero property length.
                if r.skip_zero_byte() {
                    return Ok(());
                }
                self.decode_block(r, packet)
            }

            fn decode_block(&mut self, r: &mut Reader, packet: PacketType) -> Result<(), DecodeError> {
                let mut block = property_block(r)?;
                let out = self;
                #[allow(unused_mut, unused_variables)]
                let mut seen = 0u64;
                while !block.is_empty() {
                    let raw_id = block.varint("property identifier")?;
                    match raw_id {
                        $( x if x == u32::from(id::$pid) => {
                            first_sighting(&mut seen, id::$pid)?;
                            out.$field = Some(PropertyValue::read(&mut block, id::$pid)?);
                        } )*
                        $( $( x if x == u32::from(id::$rpid) => {
                            out.$rfield.push(PropertyValue::read(&mut block, id::$rpid)?);
                        } )* )?
                        x if x == u32::from(id::USER_PROPERTY) => {
                            let key = block.string("user property")?;
                            let value = block.string("user property")?;
                            out.user_properties.push(UserProperty { key, value });
                        }
                        other => {
                            return Err(DecodeError::UnexpectedProperty { packet, id: other });
                        }
                    }
                }
                Ok(())
            }

            /// Length of the properties, without the property length field.
            #[inline]
            pub fn body_len(&self) -> usize {
                #[allow(unused_mut)]
                let mut len = user_properties_len(&self.user_properties);
                // `PropertyValue::len`, not `value.len()`: the inherent `len` of
                // `MqttStr`, `TopicName` and `Bytes` would win and leave out
                // the two-byte length prefix.
                $( if let Some(value) = &self.$field { len += 1 + PropertyValue::len(value); } )*
                $( $( for value in &self.$rfield { len += 1 + PropertyValue::len(value); } )* )?
                len
            }

            /// Length including the property length field.
            #[inline]
            pub fn encoded_len(&self) -> usize {
                let body = self.body_len();
                varint_len(body) + body
            }

            /// Writes the property length and the properties.
            #[inline]
            #[allow(dead_code)] // CONNECT and PUBLISH size their sets once
            pub(crate) fn encode(&self, buf: &mut BytesMut) {
                self.encode_with_len(self.body_len(), buf);
            }

            /// [`Self::encode`] with `body_len` already computed by the caller.
            #[inline]
            pub(crate) fn encode_with_len(&self, body_len: usize, buf: &mut BytesMut) {
                put_varint(buf, body_len);
                if body_len > 0 {
                    self.encode_body(buf);
                }
            }

            /// Writes the properties without the length field.
            pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
                $( if let Some(value) = &self.$field {
                    value.write(id::$pid, buf);
                } )*
                $( $( for value in &self.$rfield {
                    value.write(id::$rpid, buf);
                } )* )?
                write_user_properties(&self.user_properties, buf);
            }

            /// True when no property is set.
            #[inline]
            pub fn is_empty(&self) -> bool {
                // `&`, not `&&`: every test is a load and a compare, cheaper
                // together than one branch each.
                self.user_properties.is_empty()
                    $( & self.$field.is_none() )*
                    $( $( & self.$rfield.is_empty() )* )?
            }
        }
    };
}

property_set! {
    /// CONNECT properties (5.0 §3.1.2.11).
    pub struct ConnectProperties {
        SESSION_EXPIRY_INTERVAL => session_expiry_interval: u32,
        RECEIVE_MAXIMUM => receive_maximum: NonZeroU16,
        MAXIMUM_PACKET_SIZE => maximum_packet_size: NonZeroU32,
        TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: u16,
        REQUEST_RESPONSE_INFORMATION => request_response_information: bool,
        REQUEST_PROBLEM_INFORMATION => request_problem_information: bool,
        AUTHENTICATION_METHOD => authentication_method: MqttStr,
        AUTHENTICATION_DATA => authentication_data: Bytes,
    }
}

property_set! {
    /// Will properties (5.0 §3.1.3.2).
    pub struct WillProperties {
        WILL_DELAY_INTERVAL => will_delay_interval: u32,
        PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: PayloadFormat,
        MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: u32,
        CONTENT_TYPE => content_type: MqttStr,
        RESPONSE_TOPIC => response_topic: TopicName,
        CORRELATION_DATA => correlation_data: Bytes,
    }
}

property_set! {
    /// CONNACK properties (5.0 §3.2.2.3).
    pub struct ConnAckProperties {
        SESSION_EXPIRY_INTERVAL => session_expiry_interval: u32,
        RECEIVE_MAXIMUM => receive_maximum: NonZeroU16,
        MAXIMUM_QOS => maximum_qos: MaximumQoS,
        RETAIN_AVAILABLE => retain_available: bool,
        MAXIMUM_PACKET_SIZE => maximum_packet_size: NonZeroU32,
        ASSIGNED_CLIENT_IDENTIFIER => assigned_client_identifier: ClientId,
        TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: u16,
        REASON_STRING => reason_string: MqttStr,
        WILDCARD_SUBSCRIPTION_AVAILABLE => wildcard_subscription_available: bool,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => subscription_identifiers_available: bool,
        SHARED_SUBSCRIPTION_AVAILABLE => shared_subscription_available: bool,
        SERVER_KEEP_ALIVE => server_keep_alive: u16,
        RESPONSE_INFORMATION => response_information: MqttStr,
        SERVER_REFERENCE => server_reference: MqttStr,
        AUTHENTICATION_METHOD => authentication_method: MqttStr,
        AUTHENTICATION_DATA => authentication_data: Bytes,
    }
}

property_set! {
    /// PUBLISH properties (5.0 §3.3.2.3). Subscription Identifiers may repeat
    /// (§3.3.2.3.8); every other property appears at most once.
    pub struct PublishProperties {
        PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: PayloadFormat,
        MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: u32,
        TOPIC_ALIAS => topic_alias: NonZeroU16,
        RESPONSE_TOPIC => response_topic: TopicName,
        CORRELATION_DATA => correlation_data: Bytes,
        CONTENT_TYPE => content_type: MqttStr,
    }
    repeated {
        SUBSCRIPTION_IDENTIFIER => subscription_identifiers: SubscriptionId,
    }
}

property_set! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK:
    /// a Reason String and User Properties (5.0 §3.4.2.2 and the like).
    pub struct AckProperties {
        REASON_STRING => reason_string: MqttStr,
    }
}

property_set! {
    /// SUBSCRIBE properties (5.0 §3.8.2.1): one Subscription Identifier at most.
    pub struct SubscribeProperties {
        SUBSCRIPTION_IDENTIFIER => subscription_identifier: SubscriptionId,
    }
}

property_set! {
    /// UNSUBSCRIBE properties (5.0 §3.10.2.1): User Properties only.
    pub struct UnsubscribeProperties {}
}

property_set! {
    /// DISCONNECT properties (5.0 §3.14.2.2).
    pub struct DisconnectProperties {
        SESSION_EXPIRY_INTERVAL => session_expiry_interval: u32,
        REASON_STRING => reason_string: MqttStr,
        SERVER_REFERENCE => server_reference: MqttStr,
    }
}

property_set! {
    /// AUTH properties (5.0 §3.15.2.2).
    pub struct AuthProperties {
        AUTHENTICATION_METHOD => authentication_method: MqttStr,
        AUTHENTICATION_DATA => authentication_data: Bytes,
        REASON_STRING => reason_string: MqttStr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T>(
        bytes: &'static [u8],
        f: fn(&mut Reader, PacketType) -> Result<T, DecodeError>,
        packet: PacketType,
    ) -> Result<T, DecodeError> {
        let mut r = Reader::new(Bytes::from_static(bytes));
        let out = f(&mut r, packet)?;
        assert!(r.is_empty(), "property block left bytes behind");
        Ok(out)
    }

    /// 5.0 §3.1.2.11.3: "It is a Protocol Error to include the Receive
    /// Maximum value more than once or for it to have the value 0."
    #[test]
    fn receive_maximum_twice_or_zero_is_a_protocol_error() {
        let twice = decode(
            &[6, 0x21, 0, 1, 0x21, 0, 2],
            ConnectProperties::decode,
            PacketType::Connect,
        );
        assert_eq!(
            twice.unwrap_err(),
            DecodeError::DuplicateProperty { id: 0x21 }
        );
        let zero = decode(
            &[3, 0x21, 0, 0],
            ConnectProperties::decode,
            PacketType::Connect,
        );
        assert_eq!(
            zero.unwrap_err(),
            DecodeError::InvalidPropertyValue { id: 0x21, value: 0 }
        );
    }

    /// 5.0 §2.2.2.2: an identifier not valid for the packet is malformed.
    #[test]
    fn property_not_allowed_in_the_packet_is_malformed() {
        // Topic Alias inside CONNECT.
        let err = decode(
            &[3, 0x23, 0, 1],
            ConnectProperties::decode,
            PacketType::Connect,
        )
        .unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnexpectedProperty {
                packet: PacketType::Connect,
                id: 0x23
            }
        );
        assert_eq!(
            err.reason_code(),
            crate::codec::DisconnectReasonCode::MalformedPacket
        );
        // An identifier that exists nowhere.
        let err = decode(
            &[2, 0x7f, 0],
            PublishProperties::decode,
            PacketType::Publish,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnexpectedProperty { id: 0x7f, .. }
        ));
    }

    /// 5.0 §3.1.2.11.6/7: Request Response/Problem Information must be 0 or 1.
    #[test]
    fn boolean_property_other_than_0_or_1_is_a_protocol_error() {
        let err = decode(
            &[2, 0x17, 2],
            ConnectProperties::decode,
            PacketType::Connect,
        )
        .unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidPropertyValue { id: 0x17, value: 2 }
        );
        assert_eq!(
            err.reason_code(),
            crate::codec::DisconnectReasonCode::ProtocolError
        );
    }

    /// 5.0 §3.3.2.3.8: several Subscription Identifiers may accompany one
    /// PUBLISH; user properties repeat and keep their order.
    #[test]
    fn repeatable_properties_accumulate_in_order() {
        let bytes: &'static [u8] = &[
            17, 0x0B, 1, 0x0B, 0x80, 0x01, 0x26, 0, 1, b'k', 0, 1, b'v', 0x26, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(Bytes::from_static(bytes));
        let props = PublishProperties::decode(&mut r, PacketType::Publish).unwrap();
        let ids: Vec<u32> = props
            .subscription_identifiers
            .iter()
            .map(|s| s.get())
            .collect();
        assert_eq!(ids, [1, 128]);
        assert_eq!(props.user_properties.len(), 2);
        assert_eq!(props.user_properties[0].key.as_str(), "k");
        assert_eq!(props.user_properties[1].value.as_str(), "");
    }

    /// 5.0 §3.8.2.1.2: one Subscription Identifier per SUBSCRIBE, never 0.
    #[test]
    fn subscribe_subscription_identifier_rules() {
        let twice = decode(
            &[4, 0x0B, 1, 0x0B, 2],
            SubscribeProperties::decode,
            PacketType::Subscribe,
        );
        assert_eq!(
            twice.unwrap_err(),
            DecodeError::DuplicateProperty { id: 0x0B }
        );
        let zero = decode(
            &[2, 0x0B, 0],
            SubscribeProperties::decode,
            PacketType::Subscribe,
        );
        assert_eq!(
            zero.unwrap_err(),
            DecodeError::InvalidPropertyValue { id: 0x0B, value: 0 }
        );
    }

    #[test]
    fn property_length_beyond_the_packet_is_malformed() {
        let err = decode(
            &[9, 0x21, 0, 1],
            ConnectProperties::decode,
            PacketType::Connect,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }));
    }

    #[test]
    fn encode_then_decode_gives_the_same_set() {
        let props = ConnAckProperties {
            receive_maximum: NonZeroU16::new(10),
            maximum_qos: Some(MaximumQoS::AtLeastOnce),
            assigned_client_identifier: Some(ClientId::try_from("auto-1").unwrap()),
            shared_subscription_available: Some(true),
            user_properties: vec![UserProperty {
                key: MqttStr::try_from("a").unwrap(),
                value: MqttStr::try_from("b").unwrap(),
            }],
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        props.encode(&mut buf);
        assert_eq!(buf.len(), props.encoded_len());
        let mut r = Reader::new(buf.freeze());
        assert_eq!(
            ConnAckProperties::decode(&mut r, PacketType::ConnAck).unwrap(),
            props
        );
    }
}
