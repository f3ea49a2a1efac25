//! Topic filters: wildcards, `$`-topics, SUBACK codes, UNSUBSCRIBE, and
//! overlapping subscriptions.
#![cfg(feature = "runtime")]

mod common;

use common::*;
use vane::codec::{Packet, PubAckReasonCode, QoS, SubAckReasonCode, UnsubAckReasonCode};

/// [MQTT-4.7.1-2]/[MQTT-4.7.1-3]: '#' matches the parent and every level
/// below it; '+' matches exactly one level.
#[test]
fn wildcards_match_per_spec() {
    let broker = Broker::start();
    let base = unique("wc");
    let (mut hash, _) = Raw::connected(broker.addr, connect(V4, &unique("h")));
    hash.subscribe(subscribe(1, &format!("{base}/#"), QoS::AtMostOnce));
    let (mut plus, _) = Raw::connected(broker.addr, connect(V4, &unique("p")));
    plus.subscribe(subscribe(1, &format!("{base}/+/x"), QoS::AtMostOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("pub")));
    for leaf in ["", "/a", "/a/x", "/a/b/x", "/b/x"] {
        p.publish_acked(publish(
            &format!("{base}{leaf}"),
            leaf.as_bytes(),
            QoS::AtLeastOnce,
            1,
        ));
    }
    p.publish_acked(publish(&format!("{base}/end"), b"end", QoS::AtLeastOnce, 1));
    let mut h = Vec::new();
    loop {
        let m = hash.expect_publish();
        if &m.payload[..] == b"end" {
            break;
        }
        h.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    assert_eq!(h, ["", "/a", "/a/x", "/a/b/x", "/b/x"]);
    let got: Vec<_> = plus
        .ping()
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => String::from_utf8(p.payload.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, ["/a/x", "/b/x"]);
}

/// [MQTT-4.7.2-1]: filters starting with a wildcard do not match topics
/// starting with '$'; an explicit `$` filter does. Clients cannot publish to
/// `$` topics: 5.0 PUBACK says 0x87 Not authorized and nothing is delivered.
#[test]
fn dollar_topics() {
    let broker = Broker::start();
    let name = unique("x");
    let (mut all, _) = Raw::connected(broker.addr, connect(V5, &unique("all")));
    all.subscribe(subscribe(1, "#", QoS::AtLeastOnce));
    let (mut plus, _) = Raw::connected(broker.addr, connect(V5, &unique("plus")));
    plus.subscribe(subscribe(1, "+/+", QoS::AtLeastOnce));
    let (mut dollar, _) = Raw::connected(broker.addr, connect(V5, &unique("dollar")));
    dollar.subscribe(subscribe(1, &format!("$test/{name}"), QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("dp")));
    p.publish(publish(
        &format!("$test/{name}"),
        b"sys",
        QoS::AtLeastOnce,
        1,
    ));
    match p.expect() {
        Packet::PubAck(ack) => assert_eq!(ack.reason, PubAckReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // A normal topic as a sentinel for '#' and '+/+'.
    let normal = format!("{name}/n");
    p.publish_acked(publish(&normal, b"normal", QoS::AtLeastOnce, 2));
    assert_eq!(all.expect_publish_on(&normal).topic.as_str(), normal);
    assert_eq!(plus.expect_publish_on(&normal).topic.as_str(), normal);
    assert!(dollar.ping().is_empty(), "a client published to a $ topic");
    // 3.1.1: the PUBLISH is acknowledged and dropped.
    let (mut p4, _) = Raw::connected(broker.addr, connect(V4, &unique("dp4")));
    p4.publish_acked(publish(
        &format!("$test/{name}"),
        b"sys",
        QoS::AtLeastOnce,
        1,
    ));
    assert!(dollar.ping().is_empty());
}

/// Any `$SYS` messages that '#' would see are filtered out: a '#'
/// subscriber never sees a `$` topic ([MQTT-4.7.2-1]).
#[test]
fn hash_never_delivers_dollar_topics() {
    let broker = Broker::start();
    let (mut all, _) = Raw::connected(broker.addr, connect(V4, &unique("all")));
    all.subscribe(subscribe(1, "#", QoS::AtMostOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("p")));
    let t = unique("plain");
    p.publish_acked(publish(&t, b"x", QoS::AtLeastOnce, 1));
    let m = all.expect_publish_on(&t);
    assert!(!m.topic.as_str().starts_with('$'));
    for packet in all.ping() {
        if let Packet::Publish(m) = packet {
            assert!(!m.topic.as_str().starts_with('$'), "{}", m.topic.as_str());
        }
    }
}

/// [MQTT-3.9.3-1]/[MQTT-3.8.4-5]: SUBACK has one code per filter, in
/// order, granting the requested QoS.
#[test]
fn suback_codes_per_filter() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let (mut c, _) = Raw::connected(broker.addr, connect(version, &unique("sa")));
        let ack = c.subscribe(subscribe_with(
            3,
            &[
                ("a/0", opts(QoS::AtMostOnce)),
                ("a/1", opts(QoS::AtLeastOnce)),
                ("a/2", opts(QoS::ExactlyOnce)),
            ],
        ));
        assert_eq!(
            ack.reason_codes,
            [
                SubAckReasonCode::GrantedQoS0,
                SubAckReasonCode::GrantedQoS1,
                SubAckReasonCode::GrantedQoS2
            ]
        );
    }
}

/// [MQTT-3.8.4-3]: a SUBSCRIBE with an existing filter replaces the
/// subscription (new QoS), and a message is delivered once.
#[test]
fn resubscribe_replaces_the_subscription() {
    let broker = Broker::start();
    let t = unique("re/t");
    let (mut s, _) = Raw::connected(broker.addr, connect(V4, &unique("rs")));
    s.subscribe(subscribe(1, &t, QoS::AtMostOnce));
    s.subscribe(subscribe(2, &t, QoS::ExactlyOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("rp")));
    p.publish_acked(publish(&t, b"once", QoS::ExactlyOnce, 1));
    let m = s.expect_publish_acked();
    assert_eq!(m.qos(), QoS::ExactlyOnce);
    assert!(s.ping().is_empty(), "delivered twice");
}

/// [MQTT-3.10.4-1]..[MQTT-3.10.4-5]: UNSUBSCRIBE stops delivery and is
/// answered by UNSUBACK; 5.0 reports 0x11 for a filter that had no
/// subscription.
#[test]
fn unsubscribe_stops_delivery() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("un/t");
        let (mut s, _) = Raw::connected(broker.addr, connect(version, &unique("us")));
        s.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        s.send(&Packet::Unsubscribe(unsubscribe(2, &t)));
        match s.expect() {
            Packet::UnsubAck(ack) => {
                assert_eq!(ack.pid.get(), 2);
                if version == V5 {
                    assert_eq!(ack.reason_codes, [UnsubAckReasonCode::Success]);
                }
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        let (mut p, _) = Raw::connected(broker.addr, connect(version, &unique("up")));
        p.publish_acked(publish(&t, b"x", QoS::AtLeastOnce, 1));
        assert!(
            s.ping().is_empty(),
            "{version:?}: delivered after UNSUBSCRIBE"
        );
        s.send(&Packet::Unsubscribe(unsubscribe(3, &t)));
        match s.expect() {
            Packet::UnsubAck(ack) if version == V5 => {
                assert_eq!(
                    ack.reason_codes,
                    [UnsubAckReasonCode::NoSubscriptionExisted]
                )
            }
            Packet::UnsubAck(_) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }
}

/// 5.0 §3.3.4: overlapping subscriptions of one client give one delivery
/// at the highest granted QoS.
#[test]
fn overlapping_subscriptions_deliver_once() {
    let broker = Broker::start();
    let base = unique("ov");
    let (mut s, _) = Raw::connected(broker.addr, connect(V5, &unique("os")));
    s.subscribe(subscribe_with(
        1,
        &[
            (&format!("{base}/#"), opts(QoS::AtMostOnce)),
            (&format!("{base}/+"), opts(QoS::AtLeastOnce)),
        ],
    ));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("op")));
    p.publish_acked(publish(&format!("{base}/x"), b"x", QoS::ExactlyOnce, 1));
    let m = s.expect_publish_acked();
    assert_eq!(m.qos(), QoS::AtLeastOnce);
    assert!(s.ping().is_empty(), "delivered more than once");
}

/// rumqttc: subscribe_many with several filters, then unsubscribe one.
#[test]
fn rumqttc_subscribe_many_and_unsubscribe() {
    use rumqttc::{QoS as Q, SubscribeFilter};
    let broker = Broker::start();
    let base = unique("many");
    let c = Mq4::connect(mq4_options(broker.addr, &unique("m")));
    c.client
        .try_subscribe_many(vec![
            SubscribeFilter::new(format!("{base}/a"), Q::AtLeastOnce),
            SubscribeFilter::new(format!("{base}/b"), Q::AtLeastOnce),
        ])
        .expect("queue");
    let codes = c.wait_for(|p| match p {
        rumqttc::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    });
    assert_eq!(codes.len(), 2);
    c.client
        .try_unsubscribe(format!("{base}/a"))
        .expect("queue");
    c.wait_for(|p| matches!(p, rumqttc::Packet::UnsubAck(_)).then_some(()));
    c.publish(&format!("{base}/a"), Q::AtLeastOnce, false, b"a");
    c.publish(&format!("{base}/b"), Q::AtLeastOnce, false, b"b");
    assert_eq!(&c.next_publish().payload[..], b"b");
    c.disconnect();
}

/// [MQTT-4.7.2-1] with the broker's own `$SYS` topics (retained, published
/// every second here): an explicit `$SYS/#` subscriber gets them, a `#`
/// or `+/#` subscriber never does, neither live nor retained.
#[test]
fn sys_topics_are_not_matched_by_leading_wildcards() {
    let broker = Broker::with(|c| c.stats.sys_interval = 1);
    let (mut sys, _) = Raw::connected(broker.addr, connect(V4, &unique("sys")));
    sys.subscribe(subscribe(1, "$SYS/#", QoS::AtMostOnce));
    let first = sys.expect_publish();
    assert!(first.topic.as_str().starts_with("$SYS/"));
    let (mut all, _) = Raw::connected(broker.addr, connect(V4, &unique("all")));
    all.subscribe(subscribe(1, "#", QoS::AtMostOnce));
    all.subscribe(subscribe(2, "+/#", QoS::AtMostOnce));
    // Let at least one more $SYS round go out.
    let next = sys.expect_publish();
    assert!(next.topic.as_str().starts_with("$SYS/"));
    for packet in all.ping() {
        if let Packet::Publish(m) = packet {
            assert!(
                !m.topic.as_str().starts_with('$'),
                "'#' got {}",
                m.topic.as_str()
            );
        }
    }
}

/// 5.0 §4.8.2: each message of a shared subscription goes to one member,
/// and while a member is connected, one whose persistent session is
/// offline is not picked (it would drop QoS 0 and hold QoS 1 back). Two
/// members, one per core; one disconnects. Every QoS 0 and QoS 1 message
/// published afterwards, on either core, reaches the connected member, and
/// the offline session has queued none of them when it comes back.
#[test]
fn shared_subscription_skips_a_member_whose_session_is_offline() {
    let broker = Broker::start();
    let t = unique("shoff/t");
    let group = format!("$share/g/{t}");
    let persistent = || {
        let mut c = connect(V5, "");
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(60);
        c
    };
    let [(mut away, away_id), (mut stay, _)] = raw_pair_on_cores(broker.addr, persistent);
    away.subscribe(subscribe(1, &group, QoS::AtLeastOnce));
    stay.subscribe(subscribe(1, &group, QoS::AtLeastOnce));
    let [(mut p0, _), (mut p1, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    away.disconnect();
    // A SUBSCRIBE on core 0 waits until core 1 has applied everything core
    // 0 sent before it, the offline mark included.
    p0.subscribe(subscribe(1, &unique("shoff/barrier"), QoS::AtMostOnce));

    let mut sent = Vec::new();
    for (core, p) in [(0u8, &mut p0), (1, &mut p1)] {
        for n in 0..3u8 {
            for (qos, id) in [(QoS::AtMostOnce, 0), (QoS::AtLeastOnce, u16::from(n) + 1)] {
                let payload = vec![core, n, qos as u8];
                if qos == QoS::AtMostOnce {
                    p.publish(publish(&t, &payload, qos, 1));
                } else {
                    p.publish_acked(publish(&t, &payload, qos, id));
                }
                sent.push(payload);
            }
        }
    }
    let mut got: Vec<Vec<u8>> = (0..sent.len())
        .map(|_| stay.expect_publish_acked().payload.to_vec())
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "every message reaches the connected member");
    assert!(stay.ping().is_empty(), "and each once");

    let mut back = connect(V5, &away_id);
    back.clean_start = false;
    back.properties.session_expiry_interval = Some(60);
    let (mut away, ack) = Raw::connected(broker.addr, back);
    assert!(ack.session_present);
    assert!(
        away.ping().is_empty(),
        "nothing was queued for the offline member"
    );
    away.disconnect();
    stay.disconnect();
}
