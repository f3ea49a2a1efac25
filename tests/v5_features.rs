//! MQTT 5.0 features: Message Expiry, Topic Alias, Maximum Packet Size,
//! Subscription Identifiers, No Local, shared subscriptions, property
//! pass-through and enhanced authentication.
#![cfg(feature = "runtime")]

mod common;

use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use vane::codec::{
    ConnectReasonCode, DisconnectReasonCode, Packet, PayloadFormat, QoS, SubscriptionId,
    SubscriptionOptions, UserProperty,
};

/// A 5.0 PUBLISH (QoS 1 when `id` > 0, else QoS 0) with an empty topic
/// and a Topic Alias, as raw bytes (the codec's TopicName cannot be empty).
fn aliased_publish(id: u16, alias: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    if id > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(&[3, 0x23]);
    body.extend_from_slice(&alias.to_be_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![if id > 0 { 0x32 } else { 0x30 }, body.len() as u8];
    out.extend(body);
    out
}

fn persistent(id: &str) -> vane::codec::Connect {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    c
}

/// 5.0 [MQTT-3.3.2-6]: the Message Expiry Interval sent to a subscriber is
/// what is left of it; a message queued for an offline session counts
/// down, and once expired it is not delivered ([MQTT-3.3.2-5]).
#[test]
fn message_expiry_counts_down_and_expired_messages_are_dropped() {
    let broker = Broker::start();
    let t = unique("exp/t");
    let id = unique("exps");
    let (mut s, _) = Raw::connected(broker.addr, persistent(&id));
    s.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    // Live: the interval is passed on.
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("expp")));
    let mut live = publish(&t, b"live", QoS::AtLeastOnce, 1);
    live.properties.message_expiry_interval = Some(100);
    p.publish_acked(live);
    let got = s.expect_publish_acked();
    let left = got
        .properties
        .message_expiry_interval
        .expect("expiry passed on");
    assert!((99..=100).contains(&left), "{left}");
    s.disconnect();

    let mut long = publish(&t, b"long", QoS::AtLeastOnce, 2);
    long.properties.message_expiry_interval = Some(10);
    let mut short = publish(&t, b"short", QoS::AtLeastOnce, 3);
    short.properties.message_expiry_interval = Some(1);
    p.publish_acked(short);
    p.publish_acked(long);
    let queued_at = Instant::now();
    // Expiry is about time passing: wait until the short one is past due.
    std::thread::sleep(Duration::from_millis(1600));
    let (mut s, ack) = Raw::connected(broker.addr, persistent(&id));
    assert!(ack.session_present);
    let got = s.expect_publish_acked();
    assert_eq!(
        &got.payload[..],
        b"long",
        "the expired message was delivered"
    );
    let left = got.properties.message_expiry_interval.expect("expiry");
    let waited = queued_at.elapsed().as_secs() as u32;
    assert!(
        left <= 10 - waited.max(1),
        "not counted down: {left} after {waited}s"
    );
    assert!(left >= 1);
    assert!(s.ping().is_empty());
}

/// 5.0 §3.3.2.3.4: a Topic Alias set by the client maps later PUBLISHes
/// with an empty topic to the aliased topic; subscribers see the full name.
#[test]
fn inbound_topic_alias() {
    let broker = Broker::start();
    let t = unique("alias/t");
    let (mut s, _) = Raw::connected(broker.addr, connect(V5, &unique("as")));
    s.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, ack) = Raw::connected(broker.addr, connect(V5, &unique("ap")));
    assert!(ack.properties.topic_alias_maximum.unwrap_or(0) >= 1);
    let mut first = publish(&t, b"1", QoS::AtLeastOnce, 1);
    first.properties.topic_alias = NonZeroU16::new(1);
    p.publish_acked(first);
    p.send_bytes(&aliased_publish(2, 1, b"2"));
    assert!(matches!(p.expect(), Packet::PubAck(a) if a.pid.get() == 2));
    for payload in [b"1", b"2"] {
        let m = s.expect_publish_acked();
        assert_eq!(m.topic.as_str(), t);
        assert_eq!(&m.payload[..], payload);
        assert_eq!(
            m.properties.topic_alias, None,
            "no alias towards the subscriber"
        );
    }
}

/// 5.0 [MQTT-3.3.2-9]: a Topic Alias above the advertised maximum gets
/// DISCONNECT 0x94; an alias used before it was set gets 0x82 (5.0
/// §3.3.2.3.4).
#[test]
fn topic_alias_violations() {
    let broker = Broker::with(|c| c.limits.topic_alias_maximum = 5);
    let (mut p, ack) = Raw::connected(broker.addr, connect(V5, &unique("tav")));
    assert_eq!(ack.properties.topic_alias_maximum, Some(5));
    let mut bad = publish("a/b", b"x", QoS::AtMostOnce, 1);
    bad.properties.topic_alias = NonZeroU16::new(6);
    p.publish(bad);
    p.expect_disconnect(DisconnectReasonCode::TopicAliasInvalid);

    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("tav2")));
    p.send_bytes(&aliased_publish(0, 2, b"x"));
    p.expect_disconnect(DisconnectReasonCode::ProtocolError);
}

/// 5.0 [MQTT-3.1.2-24]/[MQTT-3.1.2-25]: the broker never sends a packet
/// larger than the client's Maximum Packet Size; the message is dropped
/// for that client only.
#[test]
fn client_maximum_packet_size_is_respected() {
    let broker = Broker::start();
    let t = unique("mps/t");
    let mut c = connect(V5, &unique("small"));
    c.properties.maximum_packet_size = NonZeroU32::new(128);
    let (mut small, _) = Raw::connected(broker.addr, c);
    small.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut big, _) = Raw::connected(broker.addr, connect(V5, &unique("big")));
    big.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("mpsp")));
    p.publish_acked(publish(&t, &[7u8; 500], QoS::AtLeastOnce, 1));
    p.publish_acked(publish(&t, b"fits", QoS::AtLeastOnce, 2));
    assert_eq!(big.expect_publish_acked().payload.len(), 500);
    assert_eq!(&big.expect_publish_acked().payload[..], b"fits");
    let m = small.expect_publish_acked();
    assert_eq!(&m.payload[..], b"fits", "an oversized PUBLISH was sent");
    // Also for retained messages sent on SUBSCRIBE.
    let mut r = publish(&format!("{t}/r"), &[1u8; 400], QoS::AtLeastOnce, 3);
    r.retain = true;
    p.publish_acked(r);
    small.subscribe(subscribe(2, &format!("{t}/r"), QoS::AtLeastOnce));
    assert!(
        small.ping().is_empty(),
        "an oversized retained PUBLISH was sent"
    );
}

/// 5.0 §3.8.2.1.2 / [MQTT-3.3.4-3]: a delivery carries the Subscription
/// Identifier of each matching subscription; one without an identifier
/// adds none.
#[test]
fn subscription_identifiers() {
    let broker = Broker::start();
    let base = unique("sid");
    let (mut s, _) = Raw::connected(broker.addr, connect(V5, &unique("sids")));
    let mut a = subscribe(1, &format!("{base}/+"), QoS::AtLeastOnce);
    a.properties.subscription_identifier = SubscriptionId::new(7);
    s.subscribe(a);
    let mut b = subscribe(2, &format!("{base}/#"), QoS::AtLeastOnce);
    b.properties.subscription_identifier = SubscriptionId::new(300);
    s.subscribe(b);
    s.subscribe(subscribe(3, &format!("{base}/x/#"), QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("sidp")));
    p.publish_acked(publish(&format!("{base}/x"), b"both", QoS::AtLeastOnce, 1));
    let m = s.expect_publish_acked();
    let mut ids: Vec<u32> = m
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort();
    assert_eq!(ids, [7, 300]);
    p.publish_acked(publish(&format!("{base}/y/z"), b"one", QoS::AtLeastOnce, 2));
    let m = s.expect_publish_acked();
    let ids: Vec<u32> = m
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [300]);
}

/// 5.0 [MQTT-3.8.3-3]: with No Local a client does not get its own
/// messages; others' still arrive.
#[test]
fn no_local() {
    let broker = Broker::start();
    let t = unique("nl/t");
    let (mut me, _) = Raw::connected(broker.addr, connect(V5, &unique("nl")));
    me.subscribe(subscribe_with(
        1,
        &[(
            t.as_str(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                ..Default::default()
            },
        )],
    ));
    let own = me.publish_acked(publish(&t, b"mine", QoS::AtLeastOnce, 1));
    assert!(own.is_empty(), "own message delivered: {own:?}");
    let (mut other, _) = Raw::connected(broker.addr, connect(V5, &unique("nlo")));
    other.publish_acked(publish(&t, b"theirs", QoS::AtLeastOnce, 1));
    assert_eq!(&me.expect_publish_acked().payload[..], b"theirs");
}

/// 5.0 §4.8.2: a shared subscription delivers each message to exactly one
/// member of the group; members on both cores all get a share; an ordinary
/// subscriber to the same topic gets every message.
#[test]
fn shared_subscriptions_balance_across_members_and_cores() {
    let broker = Broker::start();
    let t = unique("shared/t");
    let group = format!("$share/g/{t}");
    let mut members = Vec::new();
    for _ in 0..2 {
        let [(a, _), (b, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
        members.push(a);
        members.push(b);
    }
    for m in &mut members {
        m.subscribe(subscribe(1, &group, QoS::AtLeastOnce));
    }
    let (mut plain, _) = Raw::connected(broker.addr, connect(V5, &unique("plain")));
    plain.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("sp")));
    const N: u16 = 40;
    for i in 0..N {
        p.publish_acked(publish(&t, &i.to_be_bytes(), QoS::AtLeastOnce, i + 1));
    }
    for _ in 0..N {
        plain.expect_publish_acked();
    }
    let mut seen = Vec::new();
    let mut counts = Vec::new();
    let deadline = Instant::now() + WAIT;
    // Collect until every message has arrived somewhere.
    let mut per_member: Vec<Vec<u16>> = vec![Vec::new(); members.len()];
    while seen.len() < usize::from(N) && Instant::now() < deadline {
        for (k, m) in members.iter_mut().enumerate() {
            if let Next::Packet(Packet::Publish(msg)) = m.recv(Duration::from_millis(20)) {
                m.ack(&msg);
                let i = u16::from_be_bytes([msg.payload[0], msg.payload[1]]);
                seen.push(i);
                per_member[k].push(i);
            }
        }
    }
    for (k, m) in members.iter_mut().enumerate() {
        let extra = m.ping();
        assert!(extra.is_empty(), "member {k} got extra {extra:?}");
        counts.push(per_member[k].len());
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "each message exactly once"
    );
    assert!(
        counts.iter().all(|&c| c >= 2),
        "unbalanced shares: {counts:?}"
    );
}

/// 5.0 §3.3.2.3: Payload Format Indicator, Content Type, Response Topic,
/// Correlation Data and User Properties reach subscribers unchanged
/// ([MQTT-3.3.2-4], [MQTT-3.3.2-15]..[MQTT-3.3.2-20]), order of user
/// properties included.
#[test]
fn publish_properties_pass_through() {
    let broker = Broker::start();
    let t = unique("props/t");
    let (mut s, _) = Raw::connected(broker.addr, connect(V5, &unique("ps")));
    s.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("pp")));
    let mut m = publish(&t, "héllo".as_bytes(), QoS::AtLeastOnce, 1);
    m.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    m.properties.content_type = Some(mstr("text/plain; charset=utf-8"));
    m.properties.response_topic = Some(topic("reply/here"));
    m.properties.correlation_data = Some(Bytes::from_static(&[0, 1, 2, 255]));
    m.properties.user_properties = vec![
        UserProperty {
            key: mstr("k"),
            value: mstr("v1"),
        },
        UserProperty {
            key: mstr("a"),
            value: mstr("b"),
        },
        UserProperty {
            key: mstr("k"),
            value: mstr("v2"),
        },
    ];
    let sent = m.properties.clone();
    p.publish_acked(m);
    let got = s.expect_publish_acked();
    assert_eq!(
        got.properties.payload_format_indicator,
        sent.payload_format_indicator
    );
    assert_eq!(got.properties.content_type, sent.content_type);
    assert_eq!(got.properties.response_topic, sent.response_topic);
    assert_eq!(got.properties.correlation_data, sent.correlation_data);
    assert_eq!(got.properties.user_properties, sent.user_properties);
    assert_eq!(got.payload, "héllo".as_bytes());
}

/// The same through rumqttc v5 on both ends.
#[test]
fn rumqttc_v5_properties_round_trip() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::mqttbytes::QoS as Q;
    let broker = Broker::start();
    let t = unique("rprops/t");
    let sub = Mq5::connect(mq5_options(broker.addr, &unique("rps")));
    sub.subscribe(&t, Q::AtLeastOnce);
    let publisher = Mq5::connect(mq5_options(broker.addr, &unique("rpp")));
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        response_topic: Some("resp/t".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![("x".into(), "1".into()), ("y".into(), "2".into())],
        ..Default::default()
    };
    publisher
        .client
        .try_publish_with_properties(
            t.clone(),
            Q::AtLeastOnce,
            false,
            b"{}".to_vec(),
            props.clone(),
        )
        .expect("queue");
    publisher.wait_published(Q::AtLeastOnce);
    let got = sub.next_publish();
    let gp = got.properties.expect("properties");
    assert_eq!(gp.content_type, props.content_type);
    assert_eq!(gp.response_topic, props.response_topic);
    assert_eq!(gp.correlation_data, props.correlation_data);
    assert_eq!(gp.user_properties, props.user_properties);
    sub.disconnect();
    publisher.disconnect();
}

/// 5.0 §4.12: Vane supports no enhanced authentication method, so a
/// CONNECT with an Authentication Method gets CONNACK 0x8C (Bad
/// authentication method) and a close ([MQTT-4.12.0-... / 3.1.2.11.9]).
#[test]
fn authentication_method_is_refused_with_0x8c() {
    let broker = Broker::start();
    let mut c = connect(V5, &unique("auth"));
    c.properties.authentication_method = Some(mstr("SCRAM-SHA-1"));
    c.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    let (mut raw, ack) = Raw::connect(broker.addr, c);
    assert_eq!(ack.code, ConnectReasonCode::BadAuthenticationMethod);
    assert!(!ack.session_present);
    raw.expect_closed();

    let mut o = mq5_options(broker.addr, &unique("rauth"));
    o.set_authentication_method(Some("SCRAM-SHA-1".into()));
    let err = Mq5::try_connect(o).err().expect("refused");
    assert!(
        err.contains("BadAuthenticationMethod")
            || err.contains("0x8C")
            || err.contains("8c")
            || err.contains("Auth"),
        "{err}"
    );
}

/// 5.0 [MQTT-4.12.0-1]... an AUTH packet without an Authentication Method
/// in CONNECT is a protocol error: DISCONNECT 0x82.
#[test]
fn unexpected_auth_is_a_protocol_error() {
    let broker = Broker::start();
    let (mut raw, _) = Raw::connected(broker.addr, connect(V5, &unique("auth2")));
    // AUTH, reason 0x18 Continue authentication, no properties.
    raw.send_bytes(&[0xF0, 0x02, 0x18, 0x00]);
    raw.expect_disconnect(DisconnectReasonCode::ProtocolError);
}

/// 5.0 §3.8.2.1.2: retained messages sent because of a SUBSCRIBE carry
/// that subscription's identifier.
#[test]
fn subscription_identifier_on_retained_delivery() {
    let broker = Broker::start();
    let t = unique("sidr/t");
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("sidrp")));
    let mut m = publish(&t, b"kept", QoS::AtLeastOnce, 1);
    m.retain = true;
    p.publish_acked(m);
    let (mut s, _) = Raw::connected(broker.addr, connect(V5, &unique("sidrs")));
    let mut sub = subscribe(1, &t, QoS::AtLeastOnce);
    sub.properties.subscription_identifier = SubscriptionId::new(42);
    s.subscribe(sub);
    let got = s.expect_publish_acked();
    assert!(got.retain);
    let ids: Vec<u32> = got
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [42]);
}

/// [MQTT-3.8.4-3]: a SUBSCRIBE that repeats a filter replaces the
/// subscription, Subscription Identifier included: later deliveries carry
/// only the new identifier.
#[test]
fn resubscribe_replaces_the_subscription_identifier() {
    let broker = Broker::start();
    let t = unique("resid/t");
    let (mut s, _) = Raw::connected(broker.addr, connect(V5, &unique("resid")));
    for (n, id) in [(1u16, 5u32), (2, 6)] {
        let mut sub = subscribe(n, &t, QoS::AtLeastOnce);
        sub.properties.subscription_identifier = SubscriptionId::new(id);
        s.subscribe(sub);
    }
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("residp")));
    p.publish_acked(publish(&t, b"x", QoS::AtLeastOnce, 1));
    let got = s.expect_publish_acked();
    let ids: Vec<u32> = got
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [6]);
    assert!(s.ping().is_empty());
}

/// 5.0 §4.8.2: a member that unsubscribes from a shared subscription gets
/// nothing more; the remaining member gets every message.
#[test]
fn shared_subscription_member_leaves() {
    let broker = Broker::start();
    let t = unique("shleave/t");
    let group = format!("$share/grp/{t}");
    let [(mut a, _), (mut b, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    a.subscribe(subscribe(1, &group, QoS::AtLeastOnce));
    b.subscribe(subscribe(1, &group, QoS::AtLeastOnce));
    a.send(&Packet::Unsubscribe(unsubscribe(2, &group)));
    assert!(matches!(a.expect(), Packet::UnsubAck(_)));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("shp")));
    for i in 0..10u8 {
        p.publish_acked(publish(&t, &[i], QoS::AtLeastOnce, u16::from(i) + 1));
    }
    let got: Vec<u8> = (0..10)
        .map(|_| b.expect_publish_acked().payload[0])
        .collect();
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    assert!(a.ping().is_empty(), "a member that left still got messages");
}

/// The Reason String of a broker answer, if any.
fn reason_string(packet: &Packet) -> Option<String> {
    let text = match packet {
        Packet::ConnAck(a) => &a.properties.reason_string,
        Packet::PubAck(a) | Packet::PubRec(a) => &a.properties.reason_string,
        Packet::PubComp(a) => &a.properties.reason_string,
        Packet::SubAck(a) => &a.properties.reason_string,
        Packet::Disconnect(d) => &d.properties.reason_string,
        other => panic!("unexpected {other:?}"),
    };
    text.as_ref().map(|t| t.as_str().to_string())
}

/// What a 5.0 client connected with `adjust` gets for: a QoS 1 and a QoS 2
/// PUBLISH to a `$` topic, a SUBSCRIBE the broker refuses, and a second
/// CONNECT (the last answer is its DISCONNECT 0x82).
fn error_answers(broker: &Broker, adjust: impl FnOnce(&mut vane::codec::Connect)) -> Vec<Packet> {
    let mut c = connect(V5, &unique("why"));
    adjust(&mut c);
    let (mut raw, _) = Raw::connected(broker.addr, c);
    raw.publish(publish("$SYS/mine", b"x", QoS::AtLeastOnce, 1));
    let mut answers = vec![raw.expect()];
    raw.publish(publish("$SYS/mine", b"x", QoS::ExactlyOnce, 2));
    answers.push(raw.expect());
    answers.push(Packet::SubAck(raw.subscribe(subscribe(
        3,
        "denied/t",
        QoS::AtMostOnce,
    ))));
    raw.send(&Packet::Connect(Box::new(connect(V5, &unique("again")))));
    answers.extend(raw.expect_closed());
    answers
}

fn refusing_broker() -> Broker {
    Broker::with(|c| c.deny_subscribe = vec!["denied/t".into()])
}

/// 5.0: every error answer says why in a Reason String (PUBACK/PUBREC
/// 0x87 for a `$` topic, SUBACK 0x80, DISCONNECT 0x82), and the broker
/// sends no User Properties of its own.
#[test]
fn error_answers_carry_reason_strings() {
    let broker = refusing_broker();
    let answers = error_answers(&broker, |_| {});
    assert!(
        matches!(&answers[0], Packet::PubAck(a) if a.reason.as_u8() == 0x87),
        "{answers:?}"
    );
    assert!(matches!(&answers[1], Packet::PubRec(a) if a.reason.as_u8() == 0x87));
    assert!(matches!(&answers[2], Packet::SubAck(a) if a.reason_codes[0].as_u8() == 0x80));
    assert!(
        matches!(&answers[3], Packet::Disconnect(d) if d.reason == DisconnectReasonCode::ProtocolError)
    );
    assert_eq!(answers.len(), 4, "{answers:?}");
    for answer in &answers {
        let text = reason_string(answer);
        assert!(
            text.is_some_and(|t| !t.is_empty()),
            "no Reason String: {answer:?}"
        );
    }
}

/// [MQTT-3.1.2-29]: with Request Problem Information 0 the acknowledgements
/// carry no Reason String (nor User Property); the DISCONNECT still may.
#[test]
fn request_problem_information_0_keeps_reason_strings_off_acks() {
    let broker = refusing_broker();
    let answers = error_answers(&broker, |c| {
        c.properties.request_problem_information = Some(false)
    });
    assert_eq!(answers.len(), 4, "{answers:?}");
    for answer in &answers[..3] {
        assert_eq!(reason_string(answer), None, "[MQTT-3.1.2-29] {answer:?}");
    }
    assert!(reason_string(&answers[3]).is_some(), "{:?}", answers[3]);
}

/// [MQTT-3.4.2-2], [MQTT-3.5.2-2], [MQTT-3.9.2-1], [MQTT-3.14.2-3]: a
/// Reason String that would take an answer past the client's Maximum
/// Packet Size is left out; the answer itself is sent.
#[test]
fn reason_strings_respect_the_client_maximum_packet_size() {
    let broker = refusing_broker();
    let answers = error_answers(&broker, |c| {
        c.properties.maximum_packet_size = NonZeroU32::new(16)
    });
    assert_eq!(answers.len(), 4, "{answers:?}");
    for answer in &answers {
        assert_eq!(reason_string(answer), None, "{answer:?}");
        assert!(encode(answer, V5).len() <= 16);
    }
}

/// A refused CONNECT's CONNACK says why (5.0 §3.2.2.3.7), even with
/// Request Problem Information 0 ([MQTT-3.1.2-29] exempts CONNACK).
#[test]
fn refused_connack_carries_a_reason_string() {
    let broker = Broker::with(|c| c.limits.max_topic_levels = 2);
    let mut c = connect(V5, &unique("wr"));
    c.will = Some(will("a/b/c", "x", QoS::AtMostOnce, false));
    c.properties.request_problem_information = Some(false);
    let (mut raw, ack) = Raw::connect(broker.addr, c);
    assert_eq!(ack.code, ConnectReasonCode::TopicNameInvalid);
    assert!(ack.properties.reason_string.is_some(), "{ack:?}");
    raw.expect_closed();
}

/// [MQTT-3.1.2-28]: the broker returns no Response Information, whether
/// the client asked for it or not.
#[test]
fn no_response_information() {
    let broker = Broker::start();
    for asked in [None, Some(false), Some(true)] {
        let mut c = connect(V5, &unique("ri"));
        c.properties.request_response_information = asked;
        let (raw, ack) = Raw::connected(broker.addr, c);
        assert_eq!(ack.properties.response_information, None, "{asked:?}");
        raw.disconnect();
    }
}

/// [MQTT-4.3.3-9]: after PUBREC 0x87 (a QoS 2 PUBLISH to a `$` topic) the
/// flow is over; the next PUBLISH with that packet id is a new message,
/// routed and delivered.
#[test]
fn packet_id_of_a_refused_qos2_publish_is_free_again() {
    let broker = Broker::start();
    let t = unique("reuse/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("rsub")));
    sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("rpub")));
    p.publish(publish("$SYS/x", b"no", QoS::ExactlyOnce, 9));
    match p.expect() {
        Packet::PubRec(rec) => assert_eq!((rec.pid, rec.reason.as_u8()), (pid(9), 0x87)),
        other => panic!("expected PUBREC 0x87, got {other:?}"),
    }
    p.publish_acked(publish(&t, b"yes", QoS::ExactlyOnce, 9));
    assert_eq!(
        &sub.expect_publish_acked().payload[..],
        b"yes",
        "[MQTT-4.3.3-9] the message with the reused id was not routed"
    );
}

/// A QoS 2 PUBLISH beyond the server's Receive Maximum gets DISCONNECT
/// 0x93 ([MQTT-3.3.4-9]) and is not kept as received: on a persistent
/// session the client resends it after reconnecting ([MQTT-4.4.0-1]) and
/// it is delivered, not taken for a redelivery and lost.
#[test]
fn publish_beyond_receive_maximum_is_delivered_when_resent() {
    let broker = Broker::with(|c| c.limits.receive_maximum = 1);
    let t = unique("rm/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("rmsub")));
    sub.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let id = unique("rmpub");
    let (mut p, _) = Raw::connected(broker.addr, persistent(&id));
    p.publish(publish(&t, b"one", QoS::ExactlyOnce, 1));
    assert!(matches!(p.expect(), Packet::PubRec(rec) if rec.pid == pid(1)));
    p.publish(publish(&t, b"two", QoS::ExactlyOnce, 2));
    p.expect_disconnect(DisconnectReasonCode::ReceiveMaximumExceeded);
    assert_eq!(&sub.expect_publish_acked().payload[..], b"one");

    let (mut p, ack) = Raw::connected(broker.addr, persistent(&id));
    assert!(ack.session_present);
    p.send(&Packet::PubRel(vane::codec::PubRel::new(pid(1))));
    assert!(matches!(p.expect(), Packet::PubComp(comp) if comp.pid == pid(1)));
    let mut again = publish(&t, b"two", QoS::ExactlyOnce, 2);
    again.dup = true;
    p.publish_acked(again);
    assert_eq!(
        &sub.expect_publish_acked().payload[..],
        b"two",
        "the resent PUBLISH was taken for a redelivery and lost"
    );
}
