//! Strategies that build arbitrary valid packets, and their parts, for
//! each protocol level: what the properties in `roundtrip_tests.rs` run on.
//! A 3.x packet gets only what its level can carry (no properties, no
//! reason codes beyond the level's).

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use smallvec::SmallVec;

use crate::codec::*;

pub(super) const LEVELS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

pub(super) fn any_level() -> impl Strategy<Value = ProtocolVersion> {
    select(&LEVELS[..])
}

// ---------------------------------------------------------------------------
// Strings, topics, scalars
// ---------------------------------------------------------------------------

/// Any character an MQTT string may hold, biased towards ASCII but with
/// two-, three- and four-byte UTF-8, a BOM and the topic metacharacters.
pub(super) fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        1 => select(&[' ', '/', '+', '#', '$', '\u{7f}'][..]),
        2 => select(&['é', 'ß', 'Ω', '€', '中', '\u{feff}', '😀', '\u{10ffff}'][..]),
        1 => any::<char>(),
    ]
    .prop_filter("U+0000 is not allowed [MQTT-1.5.4-2]", |c| *c != '\0')
}

pub(super) fn string_of(
    chars: impl Strategy<Value = char>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    vec(chars, len).prop_map(String::from_iter)
}

pub(super) fn mqtt_str() -> impl Strategy<Value = MqttStr> {
    string_of(text_char(), 0..8).prop_map(|s| MqttStr::try_from(s).unwrap())
}

pub(super) fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

/// One level of a topic: no separators, no wildcards, possibly empty.
pub(super) fn plain_level() -> impl Strategy<Value = String> {
    string_of(
        text_char().prop_filter("not a separator or wildcard", |c| {
            !matches!(c, '/' | '+' | '#')
        }),
        0..5,
    )
}

pub(super) fn topic_name() -> impl Strategy<Value = TopicName> {
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

pub(super) fn topic_filter() -> impl Strategy<Value = TopicFilter> {
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

pub(super) fn pid() -> impl Strategy<Value = PacketId> {
    prop_oneof![
        Just(PacketId::MIN),
        Just(PacketId::MAX),
        (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap()),
    ]
}

pub(super) fn nonzero_u16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|v| NonZeroU16::new(v).unwrap())
}

pub(super) fn nonzero_u32() -> impl Strategy<Value = NonZeroU32> {
    (1..=u32::MAX).prop_map(|v| NonZeroU32::new(v).unwrap())
}

/// Subscription identifiers, with every Variable Byte Integer width.
pub(super) fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![
        1..128u32,
        128..16_384u32,
        select(&[127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX][..]),
        1..=VARINT_MAX,
    ]
    .prop_map(|v| SubscriptionId::new(v).unwrap())
}

pub(super) fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

pub(super) fn qos_pid() -> impl Strategy<Value = QosPid> {
    prop_oneof![
        Just(QosPid::AtMostOnce),
        pid().prop_map(QosPid::AtLeastOnce),
        pid().prop_map(QosPid::ExactlyOnce),
    ]
}

pub(super) fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(&[PayloadFormat::Unspecified, PayloadFormat::Utf8][..])
}

pub(super) fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (mqtt_str(), mqtt_str()).prop_map(|(key, value)| UserProperty { key, value }),
        0..3,
    )
}

// ---------------------------------------------------------------------------
// Property sets (5.0 only; 3.x packets carry the empty set)
// ---------------------------------------------------------------------------

/// `strategy` at 5.0, the empty set before it.
pub(super) fn props_for<T>(
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

pub(super) fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
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

pub(super) fn will_properties() -> impl Strategy<Value = WillProperties> {
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

pub(super) fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
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

pub(super) fn publish_properties() -> impl Strategy<Value = PublishProperties> {
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

pub(super) fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mqtt_str()), user_properties()).prop_map(|(rs, user)| AckProperties {
        reason_string: rs,
        user_properties: user,
    })
}

pub(super) fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_id()), user_properties()).prop_map(|(sid, user)| SubscribeProperties {
        subscription_identifier: sid,
        user_properties: user,
    })
}

pub(super) fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user| UnsubscribeProperties {
        user_properties: user,
    })
}

pub(super) fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
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

pub(super) fn auth_properties() -> impl Strategy<Value = AuthProperties> {
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

pub(super) fn will(level: ProtocolVersion) -> impl Strategy<Value = Will> {
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

pub(super) fn connect(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
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

pub(super) fn connack(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
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

pub(super) fn publish(level: ProtocolVersion) -> impl Strategy<Value = Publish> {
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

pub(super) fn pub_ack_reason(level: ProtocolVersion) -> BoxedStrategy<PubAckReasonCode> {
    if level.is_v5() {
        select(PubAckReasonCode::ALL).boxed()
    } else {
        Just(PubAckReasonCode::Success).boxed()
    }
}

pub(super) fn pub_rel_reason(level: ProtocolVersion) -> BoxedStrategy<PubRelReasonCode> {
    if level.is_v5() {
        select(PubRelReasonCode::ALL).boxed()
    } else {
        Just(PubRelReasonCode::Success).boxed()
    }
}

pub(super) fn ack<R: AckReason + 'static>(
    level: ProtocolVersion,
    reason: BoxedStrategy<R>,
) -> impl Strategy<Value = Ack<R>> {
    (pid(), reason, props_for(level, ack_properties())).prop_map(|(pid, reason, properties)| Ack {
        pid,
        reason,
        properties,
    })
}

pub(super) fn subscribe(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
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

pub(super) fn suback(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
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

pub(super) fn unsubscribe(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
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

pub(super) fn unsuback(level: ProtocolVersion) -> impl Strategy<Value = Packet> {
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

pub(super) fn disconnect(level: ProtocolVersion) -> BoxedStrategy<Packet> {
    if level.is_v5() {
        (select(DisconnectReasonCode::ALL), disconnect_properties())
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed()
    } else {
        Just(Packet::Disconnect(Disconnect::default())).boxed()
    }
}

pub(super) fn auth() -> impl Strategy<Value = Packet> {
    (select(AuthReasonCode::ALL), auth_properties())
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any valid packet of `level`: every type, AUTH only at 5.0.
pub(super) fn packet(level: ProtocolVersion) -> BoxedStrategy<Packet> {
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
pub(super) fn level_and_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    any_level().prop_flat_map(|level| (Just(level), packet(level)))
}
