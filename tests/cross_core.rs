//! Behaviour across the broker's two cores: routing, the SUBACK barrier,
//! takeover of a client id, and racing CONNECTs.
//!
//! Clients learn their core from a broker-assigned client id
//! (`vane-<core>-...`); see `raw_pair_on_cores`. Where a test needs a
//! chosen client id, whose connection lands on a core the kernel picks, it
//! repeats enough times that both same-core and cross-core cases occur.
#![cfg(feature = "runtime")]

mod common;
mod stats_support;

use std::num::NonZeroU16;
use std::time::Instant;

use common::*;
use vane::codec::{Connect, DisconnectReasonCode, Packet, ProtocolVersion, QoS};

/// A subscriber on one core receives what a publisher on the other core
/// sends, at every QoS, in both directions.
#[test]
fn publish_across_cores_at_every_qos() {
    let broker = Broker::start();
    let [(mut c0, _), (mut c1, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    for (from_0, qos) in [
        (true, QoS::AtMostOnce),
        (true, QoS::AtLeastOnce),
        (true, QoS::ExactlyOnce),
        (false, QoS::AtMostOnce),
        (false, QoS::AtLeastOnce),
        (false, QoS::ExactlyOnce),
    ] {
        let t = unique("xc/t");
        let (publisher, sub) = if from_0 {
            (&mut c0, &mut c1)
        } else {
            (&mut c1, &mut c0)
        };
        sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
        publisher.publish_acked(publish(&t, b"across", qos, 1));
        let p = sub.expect_publish_acked();
        assert_eq!(&p.payload[..], b"across");
        assert_eq!(p.qos(), qos);
    }
}

/// The SUBACK barrier (see `src/server/core.rs`): a PUBLISH sent on the
/// other core after the subscriber got its SUBACK always matches the new
/// subscription ([MQTT-3.8.4-1]: the subscription is in effect once
/// acknowledged). Repeated to catch the race.
#[test]
fn publish_after_suback_always_arrives() {
    let broker = Broker::start();
    let [(mut c0, _), (mut c1, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    for round in 0..200u16 {
        let t = unique("race/t");
        let (publisher, sub) = if round % 2 == 0 {
            (&mut c0, &mut c1)
        } else {
            (&mut c1, &mut c0)
        };
        sub.subscribe(subscribe(1, &t, QoS::AtMostOnce));
        publisher.publish(publish(&t, &round.to_be_bytes(), QoS::AtMostOnce, 1));
        let p = sub.expect_publish();
        assert_eq!(&p.payload[..], &round.to_be_bytes(), "round {round}");
    }
}

/// The same race with rumqttc 3.1.1 clients (cores chosen by the kernel):
/// subscribe, wait for SUBACK, publish from another connection.
#[test]
fn rumqttc_subscribe_then_publish_race() {
    use rumqttc::QoS as Q;
    let broker = Broker::start();
    for round in 0..20 {
        let sub = Mq4::connect(mq4_options(broker.addr, &unique("rs")));
        let publisher = Mq4::connect(mq4_options(broker.addr, &unique("rp")));
        let t = unique("rrace/t");
        sub.subscribe(&t, Q::AtMostOnce);
        publisher.publish(&t, Q::AtMostOnce, false, b"now");
        assert_eq!(&sub.next_publish().payload[..], b"now", "round {round}");
        sub.disconnect();
        publisher.disconnect();
    }
}

fn resumable(id: &str, receive_maximum: u16) -> Connect {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    c.properties.receive_maximum = NonZeroU16::new(receive_maximum);
    c
}

/// [MQTT-3.1.4-3]: a CONNECT with a client id that is in use takes the
/// session over: the old connection gets DISCONNECT 0x8E (Session taken
/// over) and is closed; the session moves to the new connection with
/// Session Present 1 ([MQTT-3.2.2-3]), its subscriptions, its unacknowledged
/// message (resent with DUP, [MQTT-4.4.0-1]) and its queued ones.
/// The old connection's core is known; repeated so the new one lands on
/// either core.
#[test]
fn takeover_moves_the_session() {
    let broker = Broker::start();
    let mut cores_seen = [false; 2];
    for round in 0..10u16 {
        let t = unique("take/t");
        // The old connection has an assigned id, which names its core.
        let (mut old, core, id) = Raw::v5_assigned(broker.addr, resumable("", 1));
        cores_seen[core] = true;
        old.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("tp")));
        for i in 0..3u8 {
            p.publish_acked(publish(&t, &[i], QoS::AtLeastOnce, u16::from(i) + 1));
        }
        let unacked = old.expect_publish();
        assert_eq!(&unacked.payload[..], &[0]);
        assert!(old.ping().is_empty(), "receive maximum 1");

        let (mut new, ack) = Raw::connected(broker.addr, resumable(&id, 10));
        assert!(ack.session_present, "round {round}");
        old.expect_disconnect(DisconnectReasonCode::SessionTakenOver);
        let resent = new.expect_publish_acked();
        assert!(resent.dup, "round {round}: resent without DUP");
        assert_eq!(resent.pid(), unacked.pid());
        let rest: Vec<u8> = (0..2)
            .map(|_| new.expect_publish_acked().payload[0])
            .collect();
        assert_eq!(rest, [1, 2], "round {round}: queued messages lost");
        // The subscription moved too.
        p.publish_acked(publish(&t, b"after", QoS::AtLeastOnce, 9));
        assert_eq!(&new.expect_publish_acked().payload[..], b"after");
        assert!(new.ping().is_empty());
        new.disconnect();
    }
    assert!(
        cores_seen.iter().all(|&c| c),
        "old connections on one core only"
    );
}

/// 3.1.1 [MQTT-3.1.4-2]: the existing client is disconnected (closed, no
/// DISCONNECT in 3.1.1) when a new one connects with its id.
#[test]
fn v311_takeover_closes_the_old_connection() {
    let broker = Broker::start();
    for round in 0..8 {
        let id = unique("t311");
        let mut c = connect(V4, &id);
        c.clean_start = false;
        let (mut old, _) = Raw::connected(broker.addr, c.clone());
        let (mut new, ack) = Raw::connected(broker.addr, c);
        assert!(ack.session_present, "round {round}");
        let rest = old.expect_closed();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(new.ping().is_empty());
    }
}

/// Two CONNECTs with the same client id sent at the same moment end with
/// exactly one live connection: the other is closed (after CONNACK with a
/// DISCONNECT 0x8E, or before its CONNACK).
#[test]
fn simultaneous_connects_leave_exactly_one_session() {
    let broker = Broker::start();
    for version in [V4, V5] {
        for round in 0..20 {
            let id = unique("twin");
            let mut a = Raw::open(broker.addr, version);
            let mut b = Raw::open(broker.addr, version);
            let bytes = encode(&Packet::Connect(Box::new(connect(version, &id))), version);
            a.send_bytes(&bytes);
            b.send_bytes(&bytes);
            let mut live = Vec::new();
            let mut closed = 0;
            let deadline = Instant::now() + WAIT;
            let mut conns = vec![a, b];
            // Wait until one is closed; then the other must be healthy.
            while closed == 0 && Instant::now() < deadline {
                let mut still = Vec::new();
                for mut c in conns.drain(..) {
                    match c.recv(std::time::Duration::from_millis(20)) {
                        Next::Closed => closed += 1,
                        Next::Packet(Packet::Disconnect(d)) => {
                            assert_eq!(d.reason, DisconnectReasonCode::SessionTakenOver);
                            still.push(c);
                        }
                        _ => still.push(c),
                    }
                }
                conns = still;
            }
            assert_eq!(
                closed, 1,
                "{version:?} round {round}: one of the twins must close"
            );
            for mut c in conns {
                let before = c.ping();
                assert!(
                    before.iter().all(|p| matches!(p, Packet::ConnAck(_))),
                    "{version:?} round {round}: {before:?}"
                );
                live.push(c);
            }
            assert_eq!(live.len(), 1);
            // The survivor owns the id: a third connection takes it over.
            let (third, ack) = Raw::connected(broker.addr, connect(version, &id));
            assert!(!ack.session_present);
            let rest = live.pop().unwrap().expect_closed();
            if version == V5 {
                assert!(
                    rest.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == DisconnectReasonCode::SessionTakenOver)),
                    "{rest:?}"
                );
            }
            third.disconnect();
        }
    }
}

/// A will published by a client on one core reaches a subscriber on the
/// other.
#[test]
fn will_across_cores() {
    let broker = Broker::start();
    for round in 0..4 {
        let t = unique("xwill/t");
        let with_will = || {
            let mut c = connect(V5, "");
            c.will = Some(will(&t, "bye", QoS::AtLeastOnce, false));
            c
        };
        let [(a, _), (b, _)] = raw_pair_on_cores(broker.addr, with_will);
        let (mut sub, gone) = if round % 2 == 0 { (a, b) } else { (b, a) };
        sub.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        gone.drop_abruptly();
        assert_eq!(&sub.expect_publish_acked().payload[..], b"bye");
        sub.disconnect();
    }
}

/// A persistent session whose client reconnects on the other core keeps
/// its offline queue.
#[test]
fn offline_queue_survives_a_move_between_cores() {
    let broker = Broker::start();
    let persistent = |id: &str, version: ProtocolVersion| {
        let mut c = connect(version, id);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(300);
        c
    };
    for round in 0..6u8 {
        let t = unique("move/t");
        let (mut first, _, id) = Raw::v5_assigned(broker.addr, persistent("", V5));
        first.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        first.disconnect();
        let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("mp")));
        p.publish_acked(publish(&t, &[round], QoS::AtLeastOnce, 1));
        let (mut again, ack) = Raw::connected(broker.addr, persistent(&id, V5));
        assert!(ack.session_present);
        assert_eq!(&again.expect_publish_acked().payload[..], &[round]);
        again.disconnect();
    }
}

/// [MQTT-3.10.4-2]: after UNSUBACK no new message is delivered for the
/// filter, even from a publisher on the other core.
#[test]
fn unsubscribe_across_cores() {
    let broker = Broker::start();
    let [(mut c0, _), (mut c1, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    for round in 0..50u16 {
        let t = unique("xunsub/t");
        let (publisher, sub) = if round % 2 == 0 {
            (&mut c0, &mut c1)
        } else {
            (&mut c1, &mut c0)
        };
        sub.subscribe(subscribe(1, &t, QoS::AtMostOnce));
        sub.send(&Packet::Unsubscribe(unsubscribe(2, &t)));
        assert!(matches!(sub.expect(), Packet::UnsubAck(_)));
        publisher.publish(publish(&t, b"late", QoS::AtMostOnce, 1));
        // A second topic the subscriber still has, as a sentinel.
        let s2 = format!("{t}/still");
        sub.subscribe(subscribe(3, &s2, QoS::AtMostOnce));
        publisher.publish(publish(&s2, b"sentinel", QoS::AtMostOnce, 1));
        let got = sub.expect_publish();
        assert_eq!(
            &got.payload[..],
            b"sentinel",
            "round {round}: delivered after UNSUBACK"
        );
    }
}

/// Fan-out: twenty subscribers spread over both cores by the kernel each
/// get every message once, in order.
#[test]
fn fan_out_to_many_subscribers_on_both_cores() {
    let broker = Broker::start();
    let t = unique("fan/t");
    let mut subs: Vec<Raw> = Vec::new();
    let mut cores = [0usize; 2];
    for _ in 0..20 {
        let (mut s, core, _) = Raw::v5_assigned(broker.addr, connect(V5, ""));
        cores[core] += 1;
        s.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        subs.push(s);
    }
    assert!(
        cores.iter().all(|&n| n > 0),
        "all subscribers on one core: {cores:?}"
    );
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("fanp")));
    for i in 0..10u8 {
        p.publish_acked(publish(&t, &[i], QoS::AtLeastOnce, u16::from(i) + 1));
    }
    for (k, s) in subs.iter_mut().enumerate() {
        let got: Vec<u8> = (0..10)
            .map(|_| s.expect_publish_acked().payload[0])
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<u8>>(), "subscriber {k}");
        assert!(s.ping().is_empty(), "subscriber {k} got a duplicate");
    }
}

/// [MQTT-3.1.2-4]: a live session taken over by a CONNECT with Clean
/// Start = 1 is discarded: none of its subscriptions deliver to the new
/// connection, on either core.
#[test]
fn clean_takeover_discards_subscriptions() {
    let broker = Broker::start();
    for round in 0..8u16 {
        let t = unique("cleantake/t");
        let (mut old, _, id) = Raw::v5_assigned(broker.addr, resumable("", 10));
        old.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        let (mut new, ack) = Raw::connected(broker.addr, connect(V5, &id));
        assert!(!ack.session_present);
        old.expect_disconnect(DisconnectReasonCode::SessionTakenOver);
        let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("ctp")));
        let m = publish(&t, b"x", QoS::AtLeastOnce, 1);
        p.publish(m);
        match p.expect() {
            Packet::PubAck(ack) => assert_eq!(
                ack.reason,
                vane::codec::PubAckReasonCode::NoMatchingSubscribers,
                "round {round}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(new.ping().is_empty(), "round {round}");
        new.disconnect();
    }
}

/// Nothing acknowledged is lost: a burst of QoS 1 PUBLISHes far larger
/// than the session queue (`max_queued` 10), sent to a subscriber on the
/// other core that reads them all, arrives complete and in order, and
/// nothing is counted as dropped. The burst crosses the cores in mailbox
/// batches bigger than the queue; only back-pressure may hold it, not the
/// queue bound (that applies to QoS 0, slow consumers and offline
/// sessions).
#[test]
fn a_qos1_burst_across_cores_larger_than_the_queue_is_not_dropped() {
    let broker = Broker::with(|c| {
        c.limits.max_queued = 10;
        c.limits.max_inflight_v5 = 5;
    });
    let [(mut s, _), (mut p, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    let t = unique("burst/t");
    s.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    const N: u16 = 500;
    for i in 1..=N {
        p.send(&Packet::Publish(publish(
            &t,
            &i.to_be_bytes(),
            QoS::AtLeastOnce,
            i,
        )));
    }
    let got: Vec<u16> = (0..N)
        .map(|_| {
            let m = s.expect_publish_acked();
            u16::from_be_bytes([m.payload[0], m.payload[1]])
        })
        .collect();
    assert_eq!(got, (1..=N).collect::<Vec<u16>>());
    for _ in 0..N {
        assert!(matches!(p.expect(), Packet::PubAck(_)));
    }
    let (_, text) = stats_support::http_get(broker.stats_addr(), "/metrics", &[]);
    let dropped = stats_support::Metrics(text).sum("vane_messages_dropped_total", &[]);
    assert_eq!(dropped, 0.0, "QoS 1 messages were dropped");
}
