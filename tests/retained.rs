//! Retained messages: storing, replacing, clearing, delivery on SUBSCRIBE,
//! Retain Handling, Retain As Published, and retained messages across
//! cores.
#![cfg(feature = "runtime")]

mod common;

use common::*;
use vane::codec::{Packet, QoS, RetainHandling, SubscriptionOptions};

fn retained(t: &str, payload: &[u8], qos: QoS, id: u16) -> vane::codec::Publish {
    let mut p = publish(t, payload, qos, id);
    p.retain = true;
    p
}

/// [MQTT-3.3.1-5] (3.1.1) / [MQTT-3.3.1-5] (5.0): a retained message is
/// stored and sent to later subscribers with RETAIN=1 ([MQTT-3.3.1-6]
/// 3.1.1, [MQTT-3.3.1-9] 5.0); a new one replaces it; an empty payload
/// clears it ([MQTT-3.3.1-10]/[MQTT-3.3.1-11] 3.1.1, [MQTT-3.3.1-6]/
/// [MQTT-3.3.1-7] 5.0).
#[test]
fn retained_is_stored_replaced_and_cleared() {
    for version in [V3, V4, V5] {
        let broker = Broker::start();
        let t = unique("ret/a");
        let (mut publisher, _) = Raw::connected(broker.addr, connect(version, &unique("rp")));
        publisher.publish_acked(retained(&t, b"one", QoS::AtLeastOnce, 1));
        let (mut s1, _) = Raw::connected(broker.addr, connect(version, &unique("r1")));
        s1.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let p = s1.expect_publish_acked();
        assert!(p.retain, "{version:?}");
        assert_eq!(&p.payload[..], b"one");

        publisher.publish_acked(retained(&t, b"two", QoS::AtLeastOnce, 2));
        // A live delivery to an existing subscriber has RETAIN=0
        // ([MQTT-3.3.1-9] 3.1.1, [MQTT-3.3.1-12] 5.0).
        let live = s1.expect_publish_acked();
        assert!(!live.retain, "{version:?}: live delivery keeps RETAIN=0");
        let (mut s2, _) = Raw::connected(broker.addr, connect(version, &unique("r2")));
        s2.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let p = s2.expect_publish_acked();
        assert_eq!(&p.payload[..], b"two", "{version:?}: replaced");
        assert!(
            s2.ping().is_empty(),
            "{version:?}: one retained message per topic"
        );

        publisher.publish_acked(retained(&t, b"", QoS::AtLeastOnce, 3));
        let (mut s3, _) = Raw::connected(broker.addr, connect(version, &unique("r3")));
        s3.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        assert!(s3.ping().is_empty(), "{version:?}: cleared");
    }
}

/// A QoS 0 retained message is retained too, and a wildcard subscription
/// gets every matching retained message.
#[test]
fn wildcard_subscription_gets_all_matching_retained() {
    let broker = Broker::start();
    let base = unique("wild");
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V4, &unique("wp")));
    for leaf in ["a", "b", "c/d"] {
        publisher.publish_acked(retained(
            &format!("{base}/{leaf}"),
            leaf.as_bytes(),
            QoS::AtLeastOnce,
            1,
        ));
    }
    publisher.publish(retained(&format!("{base}/zero"), b"z", QoS::AtMostOnce, 1));
    // The QoS 0 retained message is stored once a ping round trip is done
    // and the subscriber's SUBSCRIBE barrier has passed.
    publisher.ping();
    let (mut sub, _) = Raw::connected(broker.addr, connect(V4, &unique("ws")));
    sub.subscribe(subscribe(1, &format!("{base}/#"), QoS::AtLeastOnce));
    let mut got: Vec<String> = (0..4)
        .map(|_| {
            let p = sub.expect_publish_acked();
            assert!(p.retain);
            p.topic.as_str().to_string()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = ["a", "b", "c/d", "zero"]
        .iter()
        .map(|l| format!("{base}/{l}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let (mut plus, _) = Raw::connected(broker.addr, connect(V4, &unique("wp2")));
    plus.subscribe(subscribe(1, &format!("{base}/+"), QoS::AtLeastOnce));
    let mut got: Vec<String> = (0..3)
        .map(|_| plus.expect_publish_acked().topic.as_str().to_string())
        .collect();
    got.sort();
    assert_eq!(got.len(), 3);
    assert!(plus.ping().is_empty(), "'+' matches one level only");
}

/// 5.0 §3.8.3.1 Retain Handling: 0 sends retained messages on every
/// SUBSCRIBE ([MQTT-3.3.1-9]), 1 only when the subscription is new
/// ([MQTT-3.3.1-10]), 2 never ([MQTT-3.3.1-11]).
#[test]
fn v5_retain_handling_0_1_2() {
    let broker = Broker::start();
    let t = unique("rh/t");
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V5, &unique("rhp")));
    publisher.publish_acked(retained(&t, b"kept", QoS::AtLeastOnce, 1));
    let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("rhs")));
    let rh = |h| [(t.as_str(), with_retain_handling(QoS::AtLeastOnce, h))];

    // 0: on the first and on a repeated SUBSCRIBE.
    for n in 0..2 {
        sub.subscribe(subscribe_with(1 + n, &rh(RetainHandling::SendAtSubscribe)));
        let p = sub.expect_publish_acked();
        assert!(p.retain && &p.payload[..] == b"kept");
    }
    // 1: not for an existing subscription...
    sub.subscribe(subscribe_with(5, &rh(RetainHandling::SendAtNewSubscribe)));
    assert!(sub.ping().is_empty(), "RH=1 on an existing subscription");
    // ...but for a new one.
    sub.send(&Packet::Unsubscribe(unsubscribe(6, &t)));
    assert!(matches!(sub.expect(), Packet::UnsubAck(_)));
    sub.subscribe(subscribe_with(7, &rh(RetainHandling::SendAtNewSubscribe)));
    assert!(sub.expect_publish_acked().retain);
    // 2: never.
    let (mut other, _) = Raw::connected(broker.addr, connect(V5, &unique("rh2")));
    other.subscribe(subscribe_with(
        1,
        &[(
            t.as_str(),
            with_retain_handling(QoS::AtLeastOnce, RetainHandling::DoNotSend),
        )],
    ));
    assert!(other.ping().is_empty(), "RH=2 sent a retained message");
    // ...yet live messages flow.
    publisher.publish_acked(publish(&t, b"live", QoS::AtLeastOnce, 2));
    assert_eq!(&other.expect_publish_acked().payload[..], b"live");
}

/// 5.0 §3.8.3.1 Retain As Published: with RAP=1 a live delivery keeps the
/// RETAIN flag it was published with ([MQTT-3.3.1-13]); with RAP=0 it is
/// cleared ([MQTT-3.3.1-12]).
#[test]
fn v5_retain_as_published() {
    let broker = Broker::start();
    let t = unique("rap/t");
    let (mut rap, _) = Raw::connected(broker.addr, connect(V5, &unique("rap1")));
    rap.subscribe(subscribe_with(
        1,
        &[(
            t.as_str(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                retain_as_published: true,
                ..Default::default()
            },
        )],
    ));
    let (mut plain, _) = Raw::connected(broker.addr, connect(V5, &unique("rap0")));
    plain.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V5, &unique("rapp")));
    publisher.publish_acked(retained(&t, b"r", QoS::AtLeastOnce, 1));
    publisher.publish_acked(publish(&t, b"n", QoS::AtLeastOnce, 2));
    let a = rap.expect_publish_acked();
    let b = rap.expect_publish_acked();
    assert!(a.retain, "RAP=1 keeps RETAIN=1");
    assert!(!b.retain, "RAP=1 keeps RETAIN=0");
    assert!(!plain.expect_publish_acked().retain, "RAP=0 clears RETAIN");
    assert!(!plain.expect_publish_acked().retain);
}

/// A retained message published on one core is delivered to a subscriber
/// on the other core, and clearing it there clears it everywhere (the
/// retained store is replicated before PUBACK; see `src/server/core.rs`).
#[test]
fn retained_across_cores() {
    let broker = Broker::start();
    for round in 0..4 {
        let t = unique("xret/t");
        let [(mut a, _), (mut b, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
        let (publisher, subscriber) = if round % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        publisher.publish_acked(retained(&t, b"x-core", QoS::AtLeastOnce, 1));
        subscriber.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let p = subscriber.expect_publish_acked();
        assert!(p.retain);
        assert_eq!(&p.payload[..], b"x-core");
        publisher.publish_acked(retained(&t, b"", QoS::AtLeastOnce, 2));
        // The live (empty) delivery of the clearing message.
        let cleared = subscriber.expect_publish_acked();
        assert!(cleared.payload.is_empty());
        subscriber.send(&Packet::Unsubscribe(unsubscribe(2, &t)));
        assert!(matches!(subscriber.expect(), Packet::UnsubAck(_)));
        subscriber.subscribe(subscribe(3, &t, QoS::AtLeastOnce));
        assert!(
            subscriber.ping().is_empty(),
            "cleared on the other core too"
        );
    }
}

/// rumqttc 3.1.1: a retained message reaches a subscriber that connects
/// later, with the retain flag set.
#[test]
fn v311_retained_with_rumqttc() {
    let broker = Broker::start();
    let t = unique("rr/t");
    let publisher = Mq4::connect(mq4_options(broker.addr, &unique("rrp")));
    publisher.publish(&t, rumqttc::QoS::AtLeastOnce, true, b"status");
    let sub = Mq4::connect(mq4_options(broker.addr, &unique("rrs")));
    sub.subscribe(&t, rumqttc::QoS::AtLeastOnce);
    let p = sub.next_publish();
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"status");
    publisher.disconnect();
    sub.disconnect();
}

/// 5.0 §3.3.2.3.3: a retained message whose Message Expiry Interval has
/// passed is no longer sent to new subscribers; before that, it carries
/// what is left of its interval.
#[test]
fn v5_retained_message_expires() {
    let broker = Broker::start();
    let t = unique("rexp/t");
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("rexp")));
    let mut m = retained(&t, b"brief", QoS::AtLeastOnce, 1);
    m.properties.message_expiry_interval = Some(1);
    p.publish_acked(m);
    let stored = std::time::Instant::now();
    let (mut early, _) = Raw::connected(broker.addr, connect(V5, &unique("early")));
    early.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let got = early.expect_publish_acked();
    assert_eq!(got.properties.message_expiry_interval, Some(1));
    // Expiry is about time passing.
    std::thread::sleep(std::time::Duration::from_millis(1200).saturating_sub(stored.elapsed()));
    let (mut late, _) = Raw::connected(broker.addr, connect(V5, &unique("late")));
    late.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    assert!(
        late.ping().is_empty(),
        "an expired retained message was sent"
    );
}

/// A retained QoS 2 message published just before a SUBSCRIBE (its PUBREC
/// already received) reaches the new subscriber once: as the retained
/// copy with RETAIN=1 ([MQTT-3.3.1-9]), not also as a live message that
/// was routed before the subscription existed. Repeated over both cores.
#[test]
fn retained_message_reaches_a_new_subscriber_once() {
    let broker = Broker::start();
    let [(mut c0, _), (mut c1, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    for round in 0..20u16 {
        let t = unique("once/t");
        let (publisher, sub) = if round % 2 == 0 {
            (&mut c0, &mut c1)
        } else {
            (&mut c1, &mut c0)
        };
        publisher.publish_acked(retained(&t, b"only-once", QoS::ExactlyOnce, round + 1));
        sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
        let p = sub.expect_publish_acked();
        assert!(
            p.retain,
            "round {round}: delivered live, before the subscription: {p:?}"
        );
        let extra = sub.ping();
        assert!(
            extra.is_empty(),
            "round {round}: delivered twice: {extra:?}"
        );
    }
}
