//! QoS 0/1/2 in both directions, the outbound inflight window, DUP
//! retransmission on session resumption, and inbound QoS 2 deduplication.
#![cfg(feature = "runtime")]

mod common;

use common::*;
use vane::codec::{ConnectProperties, Packet, PubAck, PubComp, PubRec, PubRel, QoS, QosPid};

/// [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0): a message is delivered
/// at the minimum of its QoS and the subscription's; QoS 1 gets PUBACK
/// ([MQTT-4.3.2-2]), QoS 2 gets PUBREC/PUBCOMP ([MQTT-4.3.3-2]). rumqttc at
/// 3.1.1 on both ends.
#[test]
fn v311_qos_matrix_with_rumqttc() {
    use rumqttc::QoS as Q;
    let broker = Broker::start();
    let sub = Mq4::connect(mq4_options(broker.addr, &unique("qs")));
    let publisher = Mq4::connect(mq4_options(broker.addr, &unique("qp")));
    for (sub_qos, pub_qos, expect) in [
        (Q::AtMostOnce, Q::ExactlyOnce, Q::AtMostOnce),
        (Q::AtLeastOnce, Q::AtLeastOnce, Q::AtLeastOnce),
        (Q::ExactlyOnce, Q::ExactlyOnce, Q::ExactlyOnce),
        (Q::ExactlyOnce, Q::AtMostOnce, Q::AtMostOnce),
        (Q::AtLeastOnce, Q::ExactlyOnce, Q::AtLeastOnce),
    ] {
        let t = unique("qm/t");
        sub.subscribe(&t, sub_qos);
        publisher.publish(&t, pub_qos, false, b"payload");
        let p = sub.next_publish();
        assert_eq!(p.qos, expect, "sub {sub_qos:?} pub {pub_qos:?}");
        assert_eq!(&p.payload[..], b"payload");
        assert!(!p.retain);
    }
    sub.disconnect();
    publisher.disconnect();
}

/// The same matrix for 5.0 clients (rumqttc v5).
#[test]
fn v5_qos_matrix_with_rumqttc() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    let broker = Broker::start();
    let sub = Mq5::connect(mq5_options(broker.addr, &unique("qs5")));
    let publisher = Mq5::connect(mq5_options(broker.addr, &unique("qp5")));
    for (sub_qos, pub_qos, expect) in [
        (Q::AtMostOnce, Q::ExactlyOnce, Q::AtMostOnce),
        (Q::AtLeastOnce, Q::AtLeastOnce, Q::AtLeastOnce),
        (Q::ExactlyOnce, Q::ExactlyOnce, Q::ExactlyOnce),
        (Q::AtLeastOnce, Q::ExactlyOnce, Q::AtLeastOnce),
    ] {
        let t = unique("qm5/t");
        sub.subscribe(&t, sub_qos);
        publisher.publish(&t, pub_qos, false, b"p5");
        let p = sub.next_publish();
        assert_eq!(p.qos, expect);
        assert_eq!(&p.payload[..], b"p5");
    }
    sub.disconnect();
    publisher.disconnect();
}

/// Exact QoS 2 sequences both ways at 3.1.1 ([MQTT-4.3.3-1]..[MQTT-4.3.3-3]):
/// inbound PUBLISH -> PUBREC, PUBREL -> PUBCOMP; outbound PUBLISH(QoS 2,
/// DUP=0) -> client PUBREC -> broker PUBREL -> client PUBCOMP.
#[test]
fn v311_qos2_exact_sequences() {
    let broker = Broker::start();
    let t = unique("q2/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V4, &unique("q2s")));
    sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V4, &unique("q2p")));
    publisher.publish(publish(&t, b"two", QoS::ExactlyOnce, 7));
    match publisher.expect() {
        Packet::PubRec(rec) => assert_eq!(rec.pid.get(), 7),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(&Packet::PubRel(PubRel::new(pid(7))));
    match publisher.expect() {
        Packet::PubComp(c) => assert_eq!(c.pid.get(), 7),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let p = sub.expect_publish();
    assert_eq!(p.qos(), QoS::ExactlyOnce);
    assert!(!p.dup, "[MQTT-4.3.3-1] first delivery has DUP=0");
    let id = p.pid().expect("pid");
    sub.send(&Packet::PubRec(PubRec::new(id)));
    match sub.expect() {
        Packet::PubRel(rel) => assert_eq!(rel.pid, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send(&Packet::PubComp(PubComp::new(id)));
    assert!(sub.ping().is_empty(), "nothing after PUBCOMP");
}

/// 5.0 [MQTT-4.3.3-10] / 3.1.1 [MQTT-4.3.3-2] (method B): a QoS 2 PUBLISH
/// resent with DUP before PUBREL is acknowledged again but delivered once.
#[test]
fn qos2_inbound_duplicate_is_delivered_once() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("dup/t");
        let (mut sub, _) = Raw::connected(broker.addr, connect(version, &unique("ds")));
        sub.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let (mut publisher, _) = Raw::connected(broker.addr, connect(version, &unique("dp")));
        let first = publish(&t, b"once", QoS::ExactlyOnce, 9);
        let mut again = first.clone();
        again.dup = true;
        publisher.publish(first);
        assert!(matches!(publisher.expect(), Packet::PubRec(_)));
        publisher.publish(again);
        assert!(matches!(publisher.expect(), Packet::PubRec(_)));
        publisher.send(&Packet::PubRel(PubRel::new(pid(9))));
        assert!(matches!(publisher.expect(), Packet::PubComp(_)));
        // A sentinel after the duplicate: the subscriber must see exactly
        // one "once" before it.
        publisher.publish_acked(publish(&t, b"sentinel", QoS::AtLeastOnce, 10));
        let a = sub.expect_publish_acked();
        assert_eq!(&a.payload[..], b"once");
        let b = sub.expect_publish_acked();
        assert_eq!(
            &b.payload[..],
            b"sentinel",
            "{version:?}: duplicate delivered"
        );
    }
}

/// 5.0 [MQTT-3.3.4-9]: the broker never has more unacknowledged QoS 1/2
/// PUBLISHes to a client than its Receive Maximum; each PUBACK releases
/// exactly one more ([MQTT-4.9.0-2]).
#[test]
fn v5_receive_maximum_bounds_unacked_publishes() {
    let broker = Broker::start();
    let t = unique("rm/t");
    let mut c = connect(V5, &unique("rm"));
    c.properties = ConnectProperties {
        receive_maximum: std::num::NonZeroU16::new(3),
        ..Default::default()
    };
    let (mut sub, _) = Raw::connected(broker.addr, c);
    sub.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V5, &unique("rmp")));
    for i in 0..10u16 {
        publisher.publish_acked(publish(&t, &[i as u8], QoS::AtLeastOnce, i + 1));
    }
    // Three arrive; the ping answer proves nothing else is on its way.
    let mut window: std::collections::VecDeque<_> = (0..3).map(|_| sub.expect_publish()).collect();
    assert!(
        sub.ping().is_empty(),
        "a fourth unacknowledged PUBLISH was sent"
    );
    let mut order = Vec::new();
    while let Some(p) = window.pop_front() {
        order.push(p.payload[0]);
        sub.send(&Packet::PubAck(PubAck::new(p.pid().expect("pid"))));
        if order.len() + window.len() < 10 {
            window.push_back(sub.expect_publish());
        }
        let extra = sub.ping();
        assert!(extra.is_empty(), "window exceeded: {extra:?}");
    }
    assert_eq!(
        order,
        (0..10).collect::<Vec<u8>>(),
        "in order [MQTT-4.6.0-2]"
    );
}

/// 5.0: the window is the client's Receive Maximum even above the 3.x
/// `max_inflight`; `max_inflight_v5` caps it, also for a client that sends
/// no Receive Maximum (65,535).
#[test]
fn v5_window_is_receive_maximum_up_to_max_inflight_v5() {
    // Publishes 60 QoS 1 messages to a fresh subscriber that acknowledges
    // none: exactly `window` arrive, and the ping answer proves nothing
    // else is on its way.
    let check = |broker: &Broker, receive_maximum: Option<u16>, window: usize| {
        let t = unique("w5/t");
        let mut c = connect(V5, &unique("w5"));
        c.properties = ConnectProperties {
            receive_maximum: receive_maximum.and_then(std::num::NonZeroU16::new),
            ..Default::default()
        };
        let (mut sub, _) = Raw::connected(broker.addr, c);
        sub.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let (mut publisher, _) = Raw::connected(broker.addr, connect(V5, &unique("w5p")));
        for i in 0..60u16 {
            publisher.publish_acked(publish(&t, &[i as u8], QoS::AtLeastOnce, i + 1));
        }
        for i in 0..window {
            assert_eq!(sub.expect_publish().payload[0], i as u8);
        }
        let extra = sub.ping();
        assert!(extra.is_empty(), "window {window} exceeded: {extra:?}");
    };
    let broker = Broker::with(|c| c.limits.max_inflight = 2);
    check(&broker, Some(40), 40);
    let capped = Broker::with(|c| c.limits.max_inflight_v5 = 4);
    check(&capped, None, 4);
    check(&capped, Some(3), 3);
}

/// 3.1.1: the configured inflight window (max_inflight) bounds
/// unacknowledged deliveries the same way.
#[test]
fn v311_inflight_window_from_config() {
    let broker = Broker::with(|c| c.limits.max_inflight = 2);
    let t = unique("win/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V4, &unique("ws")));
    sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V4, &unique("wp")));
    for i in 0..4u16 {
        publisher.publish_acked(publish(&t, &[i as u8], QoS::AtLeastOnce, i + 1));
    }
    let a = sub.expect_publish();
    let b = sub.expect_publish();
    assert!(
        sub.ping().is_empty(),
        "a third unacknowledged PUBLISH was sent"
    );
    sub.ack(&a);
    let c = sub.expect_publish();
    assert!(sub.ping().is_empty());
    sub.ack(&b);
    sub.ack(&c);
    let d = sub.expect_publish_acked();
    assert_eq!(
        [a.payload[0], b.payload[0], c.payload[0], d.payload[0]],
        [0, 1, 2, 3]
    );
}

/// [MQTT-4.4.0-1] (5.0) / [MQTT-4.4.0-1] (3.1.1): when a client resumes a
/// session, unacknowledged QoS 1/2 PUBLISHes are resent with DUP=1 and
/// their original packet ids ([MQTT-3.3.1-1]); a PUBREL whose PUBCOMP was
/// missing is resent too.
#[test]
fn unacked_publishes_are_resent_with_dup_on_resume() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("re/t");
        let id = unique("re");
        let persistent = || {
            let mut c = connect(version, &id);
            c.clean_start = false;
            if version == V5 {
                c.properties.session_expiry_interval = Some(60);
            }
            c
        };
        let (mut sub, _) = Raw::connected(broker.addr, persistent());
        sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
        let (mut publisher, _) = Raw::connected(broker.addr, connect(version, &unique("rp")));
        publisher.publish_acked(publish(&t, b"q1", QoS::AtLeastOnce, 1));
        publisher.publish_acked(publish(&t, b"q2", QoS::ExactlyOnce, 2));
        publisher.publish_acked(publish(&t, b"q2b", QoS::ExactlyOnce, 3));
        let first = sub.expect_publish();
        let second = sub.expect_publish();
        let third = sub.expect_publish();
        assert!(!first.dup && !second.dup && !third.dup);
        // PUBREC the third: the broker answers PUBREL, which we never complete.
        let third_id = third.pid().expect("pid");
        sub.send(&Packet::PubRec(PubRec::new(third_id)));
        assert!(matches!(sub.expect(), Packet::PubRel(_)));
        sub.drop_abruptly();

        let (mut again, ack) = Raw::connected(broker.addr, persistent());
        assert!(ack.session_present, "{version:?}: [MQTT-3.2.2-2]");
        let r1 = again.expect_publish();
        let r2 = again.expect_publish();
        assert!(r1.dup && r2.dup, "{version:?}: DUP set on resend");
        assert_eq!(r1.pid(), first.pid());
        assert_eq!(r2.pid(), second.pid());
        assert_eq!((&r1.payload[..], &r2.payload[..]), (&b"q1"[..], &b"q2"[..]));
        assert_eq!(r2.qos_pid, QosPid::ExactlyOnce(second.pid().unwrap()));
        match again.expect() {
            Packet::PubRel(rel) => assert_eq!(rel.pid, third_id),
            other => panic!("expected the PUBREL again, got {other:?}"),
        }
        again.ack(&r1);
        again.ack(&r2);
        again.send(&Packet::PubComp(PubComp::new(third_id)));
        assert!(again.ping().is_empty(), "nothing delivered twice");
        again.disconnect();
    }
}

/// [MQTT-4.6.0-5] (5.0) / [MQTT-4.6.0-6] (3.1.1): messages from one
/// publisher on one topic arrive in the order sent, per QoS (messages of
/// different QoS may overtake each other: a QoS 0 message is not held
/// behind a full inflight window).
#[test]
fn ordering_is_preserved_per_publisher_and_qos() {
    let broker = Broker::start();
    let t = unique("ord/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("os")));
    sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V5, &unique("op")));
    let qos_of = |i: u16| [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(i % 3)];
    for i in 0..60u16 {
        publisher.publish_acked(publish(&t, &i.to_be_bytes(), qos_of(i), i + 1));
    }
    let mut seen: [Vec<u16>; 3] = Default::default();
    for _ in 0..60 {
        let p = sub.expect_publish_acked();
        let i = u16::from_be_bytes([p.payload[0], p.payload[1]]);
        assert_eq!(p.qos(), qos_of(i));
        seen[usize::from(i % 3)].push(i);
    }
    for (q, got) in seen.iter().enumerate() {
        let want: Vec<u16> = (0..60).filter(|i| usize::from(i % 3) == q).collect();
        assert_eq!(got, &want, "QoS {q} order");
    }
}

/// [MQTT-4.3.3-10] across a reconnect: the inbound QoS 2 state is part of
/// the session ([MQTT-4.1.0-1]), so a PUBLISH resent with DUP after the
/// client reconnected (it had the PUBREC but not sent PUBREL) is not
/// delivered again; PUBREL then completes the flow.
#[test]
fn qos2_inbound_state_survives_a_reconnect() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("q2r/t");
        let id = unique("q2r");
        let resume = || {
            let mut c = connect(version, &id);
            c.clean_start = false;
            if version == V5 {
                c.properties.session_expiry_interval = Some(60);
            }
            c
        };
        let (mut sub, _) = Raw::connected(broker.addr, connect(version, &unique("q2rs")));
        sub.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let (mut p, _) = Raw::connected(broker.addr, resume());
        let m = publish(&t, b"exactly", QoS::ExactlyOnce, 42);
        p.publish(m.clone());
        assert!(matches!(p.expect(), Packet::PubRec(r) if r.pid.get() == 42));
        p.drop_abruptly();
        let (mut p, ack) = Raw::connected(broker.addr, resume());
        assert!(ack.session_present);
        let mut again = m;
        again.dup = true;
        p.publish(again);
        assert!(matches!(p.expect(), Packet::PubRec(r) if r.pid.get() == 42));
        p.send(&Packet::PubRel(PubRel::new(pid(42))));
        assert!(matches!(p.expect(), Packet::PubComp(c) if c.pid.get() == 42));
        p.publish_acked(publish(&t, b"sentinel", QoS::AtLeastOnce, 43));
        assert_eq!(&sub.expect_publish_acked().payload[..], b"exactly");
        assert_eq!(
            &sub.expect_publish_acked().payload[..],
            b"sentinel",
            "{version:?}: QoS 2 message delivered twice"
        );
    }
}

/// Acknowledgements for packet ids that are not in flight are ignored
/// (the client may ack something already dropped): the connection stays
/// up and later flows work.
#[test]
fn stray_acknowledgements_are_ignored() {
    let broker = Broker::start();
    let t = unique("stray/t");
    let (mut c, _) = Raw::connected(broker.addr, connect(V4, &unique("stray")));
    c.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    c.send(&Packet::PubAck(PubAck::new(pid(77))));
    c.send(&Packet::PubComp(PubComp::new(pid(78))));
    assert!(c.ping().is_empty());
    let others = c.publish_acked(publish(&t, b"still-ok", QoS::AtLeastOnce, 1));
    let got = match others.into_iter().next() {
        Some(p) => {
            c.ack(&p);
            p
        }
        None => c.expect_publish_acked(),
    };
    assert_eq!(&got.payload[..], b"still-ok");
}

/// A burst through real clients: 300 messages at QoS 1 and 2 from a
/// rumqttc 3.1.1 publisher (inflight 10) to a rumqttc 5.0 subscriber with
/// Receive Maximum 5; every message arrives once, in order per QoS.
#[test]
fn burst_between_rumqttc_clients() {
    use rumqttc::v5::mqttbytes::QoS as Q5;
    let broker = Broker::start();
    let t = unique("burst/t");
    let mut so = mq5_options(broker.addr, &unique("bs"));
    so.set_receive_maximum(Some(5));
    let sub = Mq5::connect(so);
    sub.subscribe(&t, Q5::ExactlyOnce);
    let mut po = mq4_options(broker.addr, &unique("bp"));
    po.set_inflight(10);
    let publisher = Mq4::connect(po);
    const N: u16 = 300;
    for i in 0..N {
        let qos = if i % 2 == 0 {
            rumqttc::QoS::AtLeastOnce
        } else {
            rumqttc::QoS::ExactlyOnce
        };
        // The request channel holds 1000: no need to wait per message.
        publisher
            .client
            .try_publish(t.clone(), qos, false, i.to_be_bytes().to_vec())
            .expect("queue publish");
    }
    let mut seen = [Vec::new(), Vec::new()];
    for _ in 0..N {
        let p = sub.next_publish();
        let i = u16::from_be_bytes([p.payload[0], p.payload[1]]);
        seen[usize::from(i % 2)].push(i);
    }
    for (q, got) in seen.iter().enumerate() {
        let want: Vec<u16> = (0..N).filter(|i| usize::from(i % 2) == q).collect();
        assert_eq!(got, &want);
    }
    publisher.disconnect();
    sub.disconnect();
}

/// 5.0 §4.3.3: a PUBREC with a failure reason code (>= 0x80) ends the QoS 2
/// flow: no PUBREL follows and the inflight slot is free again
/// ([MQTT-4.9.0-2] counts only flows not ended that way).
#[test]
fn v5_pubrec_failure_ends_the_flow() {
    let broker = Broker::start();
    let t = unique("recfail/t");
    let mut c = connect(V5, &unique("rf"));
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (mut sub, _) = Raw::connected(broker.addr, c);
    sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("rfp")));
    p.publish_acked(publish(&t, b"first", QoS::ExactlyOnce, 1));
    p.publish_acked(publish(&t, b"second", QoS::ExactlyOnce, 2));
    let first = sub.expect_publish();
    assert_eq!(&first.payload[..], b"first");
    let mut rec = PubRec::new(first.pid().unwrap());
    rec.reason = vane::codec::PubAckReasonCode::UnspecifiedError;
    sub.send(&Packet::PubRec(rec));
    let next = sub.expect();
    match next {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"second"),
        other => panic!("expected the next PUBLISH, not {other:?}"),
    }
}
