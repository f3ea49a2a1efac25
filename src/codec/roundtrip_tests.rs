//! Property tests for the whole codec: strategies that build arbitrary valid
//! packets for each protocol level, and the properties every packet and every
//! byte string must have.
//!
//! (a) A valid packet encodes to exactly `encoded_len` bytes and decodes back
//!     to itself, consuming all of them, at every level.
//! (b) Whatever decodes (random bytes, mutated valid streams) re-encodes into
//!     bytes that decode to the same packet and encode to the same bytes.
//! (c) Decoding never panics, whatever the input and the size limit.
//! (d) Every `PublishTemplate` delivery decodes to the PUBLISH it stands for.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use smallvec::SmallVec;

use super::*;

const LEVELS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn any_level() -> impl Strategy<Value = ProtocolVersion> {
    select(&LEVELS[..])
}

// ---------------------------------------------------------------------------
// Strings, topics, scalars
// ---------------------------------------------------------------------------

/// Any character an MQTT string may hold, biased towards ASCII but with
/// two-, three- and four-byte UTF-8, a BOM and the topic metacharacters.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        1 => select(&[' ', '/', '+', '#', '$', '\u{7f}'][..]),
        2 => select(&['é', 'ß', 'Ω', '€', '中', '\u{feff}', '😀', '\u{10ffff}'][..]),
        1 => any::<char>(),
    ]
    .prop_filter("U+0000 is not allowed [MQTT-1.5.4-2]", |c| *c != '\0')
}

fn string_of(
    chars: impl Strategy<Value = char>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    vec(chars, len).prop_map(String::from_iter)
}

fn mqtt_str() -> impl Strategy<Value = MqttStr> {
    string_of(text_char(), 0..8).prop_map(|s| MqttStr::try_from(s).unwrap())
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

/// One level of a topic: no separators, no wildcards, possibly empty.
fn plain_level() -> impl Strategy<Value = String> {
    string_of(
        text_char().prop_filter("not a separator or wildcard", |c| {
            !matches!(c, '/' | '+' | '#')
        }),
        0..5,
    )
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    (
        option::of(select(&["$SYS", "$share", "$"][..])),
        vec(plain_level(), 1..4),
    )
        .prop_filter_map("topic names are not empty", |(prefix, levels)| {
            let mut name = levels.join("/");
            if let Some(prefix) = prefix {
                name = format!("{prefix}/{name}");
            }
            TopicName::try_from(name.as_str()).ok()
        })
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![3 => plain_level(), 1 => Just("+".to_string())];
    let group = string_of(
        text_char().prop_filter("a share name has no '/', '+' or '#'", |c| {
            !matches!(c, '/' | '+' | '#')
        }),
        1..5,
    );
    (
        vec(level, 0..4),
        any::<bool>(),
        option::weighted(0.3, group),
    )
        .prop_filter_map(
            "topic filters are not empty",
            |(mut levels, multi, share)| {
                if multi {
                    levels.push("#".to_string());
                }
                let mut filter = levels.join("/");
                if let Some(group) = share {
                    filter = format!("$share/{group}/{filter}");
                }
                TopicFilter::try_from(filter.as_str()).ok()
            },
        )
}

fn pid() -> impl Strategy<Value = PacketId> {
    prop_oneof![
        Just(PacketId::MIN),
        Just(PacketId::MAX),
        (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap()),
    ]
}

fn nonzero_u16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|v| NonZeroU16::new(v).unwrap())
}

fn nonzero_u32() -> impl Strategy<Value = NonZeroU32> {
    (1..=u32::MAX).prop_map(|v| NonZeroU32::new(v).unwrap())
}

/// Subscription identifiers, with every Variable Byte Integer width.
fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![
        1..128u32,
        128..16_384u32,
        select(&[127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX][..]),
        1..=VARINT_MAX,
    ]
    .prop_map(|v| SubscriptionId::new(v).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

fn qos_pid() -> impl Strategy<Value = QosPid> {
    prop_oneof![
        Just(QosPid::AtMostOnce),
        pid().prop_map(QosPid::AtLeastOnce),
        pid().prop_map(QosPid::ExactlyOnce),
    ]
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(&[PayloadFormat::Unspecified, PayloadFormat::Utf8][..])
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (mqtt_str(), mqtt_str()).prop_map(|(key, value)| UserProperty { key, value }),
        0..3,
    )
}

// ---------------------------------------------------------------------------
// Property sets (5.0 only; 3.x packets carry the empty set)
// ---------------------------------------------------------------------------

/// `strategy` at 5.0, the empty set before it.
fn props_for<T>(
    level: ProtocolVersion,
    strategy: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T>
where
    T: Default + Clone + std::fmt::Debug + 'static,
{
    if level.is_v5() {
        strategy.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(nonzero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(mqtt_str()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, am, ad, user)| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                authentication_method: am,
                authentication_data: ad,
                user_properties: user,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(mqtt_str()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, user)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
        })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let first = (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(select(
            &[MaximumQoS::AtMostOnce, MaximumQoS::AtLeastOnce][..],
        )),
        option::of(any::<bool>()),
        option::of(nonzero_u32()),
        option::of(mqtt_str().prop_map(ClientId::new)),
        option::of(any::<u16>()),
        option::of(mqtt_str()),
    );
    let second = (
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
        option::of(mqtt_str()),
        option::of(mqtt_str()),
        option::of(mqtt_str()),
        option::of(binary()),
        user_properties(),
    );
    (first, second).prop_map(
        |((sei, rm, mq, ra, mps, aci, tam, rs), (wsa, sia, ssa, ska, ri, sr, am, ad, user))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_method: am,
                authentication_data: ad,
                user_properties: user,
            }
        },
    )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(topic_name()),
        option::of(binary()),
        option::of(mqtt_str()),
        vec(subscription_id(), 0..3),
        user_properties(),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, ct, sids, user)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            content_type: ct,
            subscription_identifiers: SmallVec::from_vec(sids),
            user_properties: user,
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mqtt_str()), user_properties()).prop_map(|(rs, user)| AckProperties {
        reason_string: rs,
        user_properties: user,
    })
}

fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_id()), user_properties()).prop_map(|(sid, user)| SubscribeProperties {
        subscription_identifier: sid,
        user_properties: user,
    })
}

fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user| UnsubscribeProperties {
        user_properties: user,
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(mqtt_str()),
        option::of(mqtt_str()),
        user_properties(),
    )
        .prop_map(|(sei, rs, sr, user)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            server_reference: sr,
            user_properties: user,
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        option::of(mqtt_str()),
        option::of(binary()),
        option::of(mqtt_str()),
        user_properties(),
    )
        .prop_map(|(am, ad, rs, user)| AuthProperties {
            authentication_method: am,
            authentication_data: ad,
            reason_string: rs,
            user_properties: user,
        })
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

fn will(level: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        props_for(level, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        props_for(level, connect_properties()),
        mqtt_str().prop_map(ClientId::new),
        option::of(will(level)),
        option::of(mqtt_str()),
        option::of(binary()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // 3.x allows a password only with a user name [MQTT-3.1.2-22].
                let password = if level.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: level,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

fn connack(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if level.is_v5() {
        select(ConnectReasonCode::ALL).boxed()
    } else {
        (0..=5u8)
            .prop_map(|c| ConnectReasonCode::from_v3(c).unwrap())
            .boxed()
    };
    (any::<bool>(), code, props_for(level, connack_properties())).prop_map(
        move |(present, code, properties)| {
            // Level 3 has no session present flag, and no level sends it
            // with a failure [MQTT-3.2.2-6].
            let session_present = present && level != ProtocolVersion::V3_1 && !code.is_error();
            Packet::ConnAck(Box::new(ConnAck {
                session_present,
                code,
                properties,
            }))
        },
    )
}

fn publish(level: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos_pid(),
        any::<bool>(),
        topic_name(),
        Just(level.is_v5()),
        props_for(level, publish_properties()),
        any::<bool>(),
        vec(any::<u8>(), 0..32),
    )
        .prop_map(
            move |(dup, qos_pid, retain, topic, v5, mut properties, alias_only, payload)| {
                // An empty topic name exists only in 5.0, with a Topic Alias.
                let topic = if v5 && alias_only {
                    properties.topic_alias.get_or_insert(NonZeroU16::MIN);
                    TopicName::empty_for_alias()
                } else {
                    topic
                };
                Publish {
                    // DUP is never set with QoS 0 [MQTT-3.3.1-2].
                    dup: dup && qos_pid != QosPid::AtMostOnce,
                    qos_pid,
                    retain,
                    topic,
                    properties,
                    payload: Bytes::from(payload),
                }
            },
        )
}

fn pub_ack_reason(level: ProtocolVersion) -> BoxedStrategy<PubAckReasonCode> {
    if level.is_v5() {
        select(PubAckReasonCode::ALL).boxed()
    } else {
        Just(PubAckReasonCode::Success).boxed()
    }
}

fn pub_rel_reason(level: ProtocolVersion) -> BoxedStrategy<PubRelReasonCode> {
    if level.is_v5() {
        select(PubRelReasonCode::ALL).boxed()
    } else {
        Just(PubRelReasonCode::Success).boxed()
    }
}

fn ack<R: AckReason + 'static>(
    level: ProtocolVersion,
    reason: BoxedStrategy<R>,
) -> impl Strategy<Value = Ack<R>> {
    (pid(), reason, props_for(level, ack_properties())).prop_map(|(pid, reason, properties)| Ack {
        pid,
        reason,
        properties,
    })
}

fn subscribe(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let options = (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(
            &[
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendAtNewSubscribe,
                RetainHandling::DoNotSend,
            ][..],
        ),
    );
    let subscription = (topic_filter(), options).prop_map(move |(filter, (qos, nl, rap, rh))| {
        let options = if level.is_v5() {
            SubscriptionOptions {
                qos,
                // No Local on a shared subscription is a Protocol
                // Error [MQTT-3.8.3-4].
                no_local: nl && filter.shared().is_none(),
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            }
        };
        Subscription { filter, options }
    });
    (
        pid(),
        props_for(level, subscribe_properties()),
        vec(subscription, 1..5),
    )
        .prop_map(|(pid, properties, subscriptions)| {
            Packet::Subscribe(Subscribe {
                pid,
                properties,
                subscriptions,
            })
        })
}

fn suback(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if level.is_v5() {
        select(SubAckReasonCode::ALL).boxed()
    } else {
        (0..4u8)
            .prop_map(|c| SubAckReasonCode::from_v3(if c == 3 { 0x80 } else { c }).unwrap())
            .boxed()
    };
    (pid(), props_for(level, ack_properties()), vec(code, 0..5)).prop_map(
        |(pid, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                pid,
                properties,
                reason_codes,
            })
        },
    )
}

fn unsubscribe(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        pid(),
        props_for(level, unsubscribe_properties()),
        vec(topic_filter(), 1..5),
    )
        .prop_map(|(pid, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                pid,
                properties,
                filters,
            })
        })
}

fn unsuback(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if level.is_v5() {
        vec(select(UnsubAckReasonCode::ALL), 0..5).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (pid(), props_for(level, ack_properties()), codes).prop_map(
        |(pid, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                pid,
                properties,
                reason_codes,
            })
        },
    )
}

fn disconnect(level: ProtocolVersion) -> BoxedStrategy<Packet> {
    if level.is_v5() {
        (select(DisconnectReasonCode::ALL), disconnect_properties())
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed()
    } else {
        Just(Packet::Disconnect(Disconnect::default())).boxed()
    }
}

fn auth() -> impl Strategy<Value = Packet> {
    (select(AuthReasonCode::ALL), auth_properties())
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any valid packet of `level`: every type, AUTH only at 5.0.
fn packet(level: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut kinds: Vec<(u32, BoxedStrategy<Packet>)> = vec![
        (2, connect(level).boxed()),
        (1, connack(level).boxed()),
        (3, publish(level).prop_map(Packet::Publish).boxed()),
        (
            1,
            ack(level, pub_ack_reason(level))
                .prop_map(Packet::PubAck)
                .boxed(),
        ),
        (
            1,
            ack(level, pub_ack_reason(level))
                .prop_map(Packet::PubRec)
                .boxed(),
        ),
        (
            1,
            ack(level, pub_rel_reason(level))
                .prop_map(Packet::PubRel)
                .boxed(),
        ),
        (
            1,
            ack(level, pub_rel_reason(level))
                .prop_map(Packet::PubComp)
                .boxed(),
        ),
        (2, subscribe(level).boxed()),
        (1, suback(level).boxed()),
        (1, unsubscribe(level).boxed()),
        (1, unsuback(level).boxed()),
        (1, Just(Packet::PingReq).boxed()),
        (1, Just(Packet::PingResp).boxed()),
        (1, disconnect(level)),
    ];
    if level.is_v5() {
        kinds.push((1, auth().boxed()));
    }
    proptest::strategy::Union::new_weighted(kinds).boxed()
}

/// A level and a packet valid at it.
fn level_and_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    any_level().prop_flat_map(|level| (Just(level), packet(level)))
}

// ---------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------

fn encode(packet: &Packet, level: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(level, &mut buf)
        .expect("valid packet encodes");
    buf
}

/// (b): a decoded packet re-encodes, decodes to itself and encodes to the
/// same bytes again; the shortest form never grows past what was received.
fn check_stable(
    level: ProtocolVersion,
    packet: &Packet,
    consumed: usize,
) -> Result<(), TestCaseError> {
    let mut first = BytesMut::new();
    prop_assert!(packet.encode(level, &mut first).is_ok(), "{packet:?}");
    prop_assert_eq!(first.len(), packet.encoded_len(level));
    prop_assert!(first.len() <= consumed, "re-encoding grew: {:?}", packet);
    let mut again = first.clone();
    let decoded = Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut again);
    prop_assert_eq!(decoded.as_ref(), Ok(&Some(packet.clone())));
    prop_assert!(again.is_empty());
    let second = encode(&decoded.unwrap().unwrap(), level);
    prop_assert_eq!(first, second);
    Ok(())
}

/// Decodes every packet at the front of `bytes` and checks each one with
/// [`check_stable`]; stops at the first error or incomplete packet.
fn decode_all_stable(decoder: Decoder, bytes: &[u8]) -> Result<usize, TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    let mut count = 0;
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                check_stable(decoder.version, &packet, before - buf.len())?;
                count += 1;
            }
            Ok(None) | Err(_) => return Ok(count),
        }
    }
}

/// Bytes that look like a packet more often than uniform noise does: a
/// plausible first byte, a remaining length that matches the body, and a
/// body of mostly small numbers and topic characters.
fn framed_noise() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![Just(0u8), Just(2u8), 0..16u8];
    let byte = prop_oneof![
        3 => 0..4u8,
        1 => select(&[b'a', b'/', b'+', b'#', 0x26, 0x80, 0xFF][..]),
        2 => any::<u8>(),
    ];
    let body = prop_oneof![2 => vec(byte.clone(), 0..5), 1 => vec(byte, 0..24)];
    (1..16u8, flags, body).prop_map(|(kind, flags, body)| {
        let mut out = vec![kind << 4 | flags, body.len() as u8];
        out.extend(body);
        out
    })
}

fn max_packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![
        select(&[2, 5, 64, 1024, 65_536, MAX_PACKET_SIZE_LIMIT][..]),
        2..512u32,
    ]
}

/// One change to a byte stream.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match *m {
        Mutation::Set(i, b) => {
            let i = at(i);
            bytes[i] = b;
        }
        Mutation::Flip(i, bit) => {
            let i = at(i);
            bytes[i] ^= 1 << bit;
        }
        Mutation::Insert(i, b) => {
            let i = at(i);
            bytes.insert(i, b);
        }
        Mutation::Remove(i) => {
            let i = at(i);
            bytes.remove(i);
        }
        Mutation::Truncate(i) => {
            let i = at(i);
            bytes.truncate(i);
        }
    }
}

/// What `template` should decode to when delivered as `d` at `level`.
fn expected_delivery(original: &Publish, level: ProtocolVersion, d: &Delivery<'_>) -> Publish {
    let properties = if level.is_v5() {
        let p = &original.properties;
        PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: d.message_expiry_interval,
            topic_alias: d.topic_alias,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            content_type: p.content_type.clone(),
            subscription_identifiers: SmallVec::from_slice(d.subscription_identifiers),
            user_properties: p.user_properties.clone(),
        }
    } else {
        PublishProperties::default()
    };
    Publish {
        dup: d.dup && d.qos_pid != QosPid::AtMostOnce,
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

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) encode -> decode is the identity, and consumes exactly
    /// `encoded_len` bytes.
    #[test]
    fn valid_packets_round_trip((level, packet) in level_and_packet()) {
        let bytes = encode(&packet, level);
        prop_assert_eq!(bytes.len(), packet.encoded_len(level));
        let mut buf = bytes.clone();
        // Trailing bytes of a next packet must stay in the buffer.
        buf.extend_from_slice(&[0xC0, 0x00]);
        let decoded = Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        prop_assert_eq!(&buf[..], &[0xC0, 0x00][..]);
        // The encoding is canonical: encoding the decoded packet again
        // gives the same bytes.
        check_stable(level, &packet, bytes.len())?;
    }

    /// (a) The size limit is inclusive: a packet of exactly the maximum
    /// decodes, one byte less is rejected before the body is needed.
    #[test]
    fn maximum_packet_size_is_exact((level, packet) in level_and_packet()) {
        let bytes = encode(&packet, level);
        let len = bytes.len() as u32;
        let mut buf = bytes.clone();
        prop_assert_eq!(Decoder::new(level, len).decode(&mut buf), Ok(Some(packet)));
        let header_only = &bytes[..bytes.len().min(5)];
        let mut buf = BytesMut::from(header_only);
        let err = Decoder::new(level, len - 1).decode(&mut buf);
        prop_assert!(
            matches!(err, Err(DecodeError::PacketTooLarge { size, max })
                if size == bytes.len() && max == len - 1),
            "{:?}", err
        );
    }

    /// (a) Streaming: a stream of valid packets fed in two arbitrary chunks
    /// decodes to the same packets.
    #[test]
    fn streams_decode_across_chunk_boundaries(
        (level, packets) in any_level().prop_flat_map(|l| (Just(l), vec(packet(l), 1..5))),
        split in any::<prop::sample::Index>(),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(level, &mut stream).unwrap();
        }
        let at = split.index(stream.len() + 1);
        let decoder = Decoder::new(level, MAX_PACKET_SIZE_LIMIT);
        let mut buf = BytesMut::from(&stream[..at]);
        let mut out = Vec::new();
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            out.push(p);
        }
        buf.extend_from_slice(&stream[at..]);
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            out.push(p);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, packets);
    }

    /// (b), (c) Random bytes: decoding never panics and whatever decodes is
    /// stable.
    #[test]
    fn random_bytes_decode_stably(
        level in any_level(),
        max in max_packet_size(),
        bytes in prop_oneof![1 => vec(any::<u8>(), 0..128), 3 => framed_noise()],
    ) {
        decode_all_stable(Decoder::new(level, max), &bytes)?;
    }

    /// (b), (c) Valid streams with a few bytes changed, inserted, removed or
    /// cut off.
    #[test]
    fn mutated_encodings_decode_stably(
        (level, packets) in any_level().prop_flat_map(|l| (Just(l), vec(packet(l), 1..4))),
        mutations in vec(mutation(), 1..4),
        max in max_packet_size(),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(level, &mut stream).unwrap();
        }
        let mut bytes = stream.to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_all_stable(Decoder::new(level, max), &bytes)?;
        decode_all_stable(Decoder::new(level, MAX_PACKET_SIZE_LIMIT), &bytes)?;
        // The same bytes read at another level must not panic either.
        for other in LEVELS {
            decode_all_stable(Decoder::new(other, MAX_PACKET_SIZE_LIMIT), &bytes)?;
        }
    }

    /// (d) Every delivery of a template decodes to the PUBLISH it stands for,
    /// and is exactly `delivery_len` bytes; header + payload is the whole.
    #[test]
    fn template_deliveries_decode_to_the_expected_publish(
        level in any_level(),
        original in publish(ProtocolVersion::V5),
        plain_topic in topic_name(),
        qos_pid in qos_pid(),
        dup in any::<bool>(),
        retain in any::<bool>(),
        expiry in option::of(any::<u32>()),
        sids in vec(subscription_id(), 0..4),
        alias in option::of(nonzero_u16()),
        send_topic in any::<bool>(),
    ) {
        // The message as received may have used an alias; the template
        // holds the resolved topic name.
        let original = Publish {
            topic: if original.topic.is_empty() { plain_topic } else { original.topic },
            ..original
        };
        let template = PublishTemplate::new(&original);
        let v5 = level.is_v5();
        let d = Delivery {
            qos_pid,
            dup,
            retain,
            message_expiry_interval: expiry.filter(|_| v5),
            subscription_identifiers: if v5 { &sids } else { &[] },
            topic_alias: alias.filter(|_| v5),
            // The name may only be left out when an alias stands for it.
            send_topic: send_topic || !v5 || alias.is_none(),
        };
        let mut whole = BytesMut::new();
        template.encode(level, &d, &mut whole).unwrap();
        prop_assert_eq!(whole.len(), template.delivery_len(level, &d));
        let mut split = BytesMut::new();
        template.encode_header(level, &d, &mut split).unwrap();
        split.extend_from_slice(template.payload());
        prop_assert_eq!(&split, &whole);

        let expected = expected_delivery(&original, level, &d);
        let decoded = Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut whole);
        prop_assert_eq!(decoded, Ok(Some(Packet::Publish(expected.clone()))));
        prop_assert!(whole.is_empty());

        // A bare template is the same message without 5.0 properties.
        let bare = PublishTemplate::bare(original.topic.clone(), original.payload.clone());
        let mut buf = BytesMut::new();
        bare.encode(level, &d, &mut buf).unwrap();
        let want = Publish {
            properties: PublishProperties {
                payload_format_indicator: None,
                response_topic: None,
                correlation_data: None,
                content_type: None,
                user_properties: Vec::new(),
                ..expected.properties
            },
            ..expected
        };
        prop_assert_eq!(
            Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut buf),
            Ok(Some(Packet::Publish(want)))
        );
    }
}

/// The strategies do produce every packet type at every level, so the
/// properties above are not vacuous for any of them.
#[test]
fn strategies_cover_every_packet_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::HashSet;

    let mut runner = TestRunner::deterministic();
    for level in LEVELS {
        let strategy = packet(level);
        let mut seen = HashSet::new();
        for _ in 0..2_000 {
            seen.insert(
                strategy
                    .new_tree(&mut runner)
                    .unwrap()
                    .current()
                    .packet_type(),
            );
        }
        let expected = if level.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{level:?}: {seen:?}");
    }
}
