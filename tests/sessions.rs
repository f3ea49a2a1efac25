//! Sessions: clean session / clean start, Session Present, the offline
//! queue, and Session Expiry.
#![cfg(feature = "runtime")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use vane::codec::{
    Connect, Disconnect, DisconnectReasonCode, Packet, ProtocolVersion, PubAck, PubAckReasonCode,
    Publish, QoS,
};

fn persistent(version: ProtocolVersion, id: &str, expiry: u32) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    if version == V5 {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// [MQTT-3.1.2-6] (3.1.1 CleanSession=1) / [MQTT-3.1.2-4] (5.0 Clean
/// Start): a clean connection starts a new session (Session Present 0,
/// [MQTT-3.2.2-1]/[MQTT-3.2.2-2]) and the old subscriptions are gone.
#[test]
fn clean_session_discards_state() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let id = unique("clean");
        let t = unique("clean/t");
        let (mut a, ack) = Raw::connected(broker.addr, persistent(version, &id, 60));
        assert!(!ack.session_present);
        a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        a.disconnect();
        let (mut b, ack) = Raw::connected(broker.addr, connect(version, &id));
        assert!(
            !ack.session_present,
            "{version:?}: clean start has no session"
        );
        let (mut p, _) = Raw::connected(broker.addr, connect(version, &unique("cp")));
        p.publish_acked(publish(&t, b"x", QoS::AtLeastOnce, 1));
        assert!(
            b.ping().is_empty(),
            "{version:?}: old subscription survived"
        );
        b.disconnect();
    }
}

/// [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.2.2-3] (5.0): resuming a session gives
/// Session Present 1; its subscriptions survive, and QoS 1/2 messages
/// published while it was offline are delivered on reconnect
/// ([MQTT-3.1.2-5] 3.1.1, [MQTT-4.5.0-1]); QoS 0 messages are not queued
/// by default.
#[test]
fn persistent_session_queues_offline_messages() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let id = unique("persist");
        let t = unique("persist/t");
        let (mut a, _) = Raw::connected(broker.addr, persistent(version, &id, 60));
        a.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
        a.disconnect();
        let (mut p, _) = Raw::connected(broker.addr, connect(version, &unique("pp")));
        p.publish_acked(publish(&t, b"q0", QoS::AtMostOnce, 1));
        p.publish_acked(publish(&t, b"q1", QoS::AtLeastOnce, 2));
        p.publish_acked(publish(&t, b"q2", QoS::ExactlyOnce, 3));
        p.ping();
        let (mut b, ack) = Raw::connected(broker.addr, persistent(version, &id, 60));
        assert!(ack.session_present, "{version:?}");
        let got: Vec<Vec<u8>> = (0..2)
            .map(|_| b.expect_publish_acked().payload.to_vec())
            .collect();
        assert_eq!(got, [b"q1".to_vec(), b"q2".to_vec()], "{version:?}");
        // The subscription is still there, and QoS 0 was not queued: the
        // next live message is the next thing to arrive.
        p.publish_acked(publish(&t, b"live", QoS::AtLeastOnce, 4));
        assert_eq!(&b.expect_publish_acked().payload[..], b"live");
        b.disconnect();
    }
}

/// With `queue_qos0_offline`, QoS 0 messages are queued for offline
/// sessions too.
#[test]
fn qos0_offline_queueing_when_configured() {
    let broker = Broker::with(|c| c.limits.queue_qos0_offline = true);
    let id = unique("q0");
    let t = unique("q0/t");
    let (mut a, _) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    a.subscribe(subscribe(1, &t, QoS::AtMostOnce));
    a.disconnect();
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("q0p")));
    p.publish(publish(&t, b"zero", QoS::AtMostOnce, 1));
    p.ping();
    let (mut b, ack) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    assert!(ack.session_present);
    assert_eq!(&b.expect_publish().payload[..], b"zero");
}

/// rumqttc 3.1.1 with clean_session = false: Session Present and queued
/// messages.
#[test]
fn v311_persistent_session_with_rumqttc() {
    use rumqttc::QoS as Q;
    let broker = Broker::start();
    let id = unique("rq");
    let t = unique("rq/t");
    let mut o = mq4_options(broker.addr, &id);
    o.set_clean_session(false);
    let sub = Mq4::connect(o.clone());
    sub.subscribe(&t, Q::AtLeastOnce);
    sub.disconnect();
    let publisher = Mq4::connect(mq4_options(broker.addr, &unique("rqp")));
    publisher.publish(&t, Q::AtLeastOnce, false, b"while-away");
    let sub = Mq4::connect(o);
    assert!(sub.connack.session_present);
    assert_eq!(&sub.next_publish().payload[..], b"while-away");
    sub.disconnect();
    publisher.disconnect();
}

/// 5.0 §3.1.2.11.2: with Session Expiry Interval 1, the session ends about
/// a second after the connection closes: its subscription stops matching
/// (PUBACK 0x10 No matching subscribers) and a later resume finds no
/// session.
#[test]
fn v5_session_expires_after_its_interval() {
    let broker = Broker::start();
    let id = unique("exp");
    let t = unique("exp/t");
    let (mut a, _) = Raw::connected(broker.addr, persistent(V5, &id, 1));
    a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    a.disconnect();
    let closed = Instant::now();
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("expp")));
    let mut n = 0u16;
    let gone = poll_until(Duration::from_secs(5), || {
        n += 1;
        p.publish(publish(&t, b"probe", QoS::AtLeastOnce, n));
        match p.expect() {
            Packet::PubAck(ack) => {
                (ack.reason == PubAckReasonCode::NoMatchingSubscribers).then(Instant::now)
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    })
    .expect("the session never expired");
    let lived = gone - closed;
    assert!(
        lived >= Duration::from_millis(900),
        "expired after {lived:?}"
    );
    let (b, ack) = Raw::connected(broker.addr, persistent(V5, &id, 1));
    assert!(!ack.session_present, "expired session resumed");
    b.disconnect();
}

/// 5.0: Session Expiry Interval 0 (or absent) ends the session with the
/// connection ([MQTT-3.1.2-... §3.1.2.11.2]).
#[test]
fn v5_expiry_zero_ends_with_the_connection() {
    let broker = Broker::start();
    let id = unique("exp0");
    let (a, _) = Raw::connected(broker.addr, persistent(V5, &id, 0));
    a.disconnect();
    let (b, ack) = Raw::connected(broker.addr, persistent(V5, &id, 0));
    assert!(!ack.session_present);
    b.disconnect();
}

/// 5.0 [MQTT-3.14.2-2]: a DISCONNECT may not set a non-zero Session
/// Expiry Interval when CONNECT set 0: DISCONNECT 0x82 from the broker.
/// Changing a non-zero one is allowed and takes effect.
#[test]
fn v5_disconnect_session_expiry_rules() {
    let broker = Broker::start();
    let (mut a, _) = Raw::connected(broker.addr, persistent(V5, &unique("de0"), 0));
    let mut d = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    d.properties.session_expiry_interval = Some(30);
    a.send(&Packet::Disconnect(d));
    a.expect_disconnect(DisconnectReasonCode::ProtocolError);

    // Non-zero to zero: the session ends at once.
    let id = unique("de1");
    let (mut b, _) = Raw::connected(broker.addr, persistent(V5, &id, 60));
    let mut d = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    d.properties.session_expiry_interval = Some(0);
    b.send(&Packet::Disconnect(d));
    b.expect_closed();
    let (c, ack) = Raw::connected(broker.addr, persistent(V5, &id, 60));
    assert!(
        !ack.session_present,
        "DISCONNECT expiry 0 should end the session"
    );
    c.disconnect();
}

/// 3.1.1 [MQTT-3.1.2-4]: a persistent session outlives several
/// reconnects, each with Session Present 1.
#[test]
fn v311_session_survives_repeated_reconnects() {
    let broker = Broker::start();
    let id = unique("rep");
    let t = unique("rep/t");
    let (mut a, ack) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    assert!(!ack.session_present);
    a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    a.disconnect();
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("repp")));
    for round in 0..5u16 {
        let (mut b, ack) = Raw::connected(broker.addr, persistent(V4, &id, 0));
        assert!(ack.session_present, "round {round}");
        p.publish_acked(publish(
            &t,
            &round.to_be_bytes(),
            QoS::AtLeastOnce,
            round + 1,
        ));
        assert_eq!(&b.expect_publish_acked().payload[..], &round.to_be_bytes());
        b.disconnect();
    }
}

/// A session made by a 3.1.1 client can be resumed by the same client id
/// at 5.0 (and the other way round): Session Present, subscriptions and
/// queued messages carry over.
#[test]
fn session_resumes_across_protocol_versions() {
    let broker = Broker::start();
    let id = unique("xver");
    let t = unique("xver/t");
    let (mut a, _) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    a.disconnect();
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("xvp")));
    p.publish_acked(publish(&t, b"for-v5", QoS::AtLeastOnce, 1));
    let (mut b, ack) = Raw::connected(broker.addr, persistent(V5, &id, 60));
    assert!(ack.session_present);
    let m = b.expect_publish_acked();
    assert_eq!(&m.payload[..], b"for-v5");
    b.disconnect();
    p.publish_acked(publish(&t, b"for-v4", QoS::AtLeastOnce, 2));
    let (mut c, ack) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    assert!(ack.session_present);
    assert_eq!(&c.expect_publish_acked().payload[..], b"for-v4");
    c.disconnect();
}

/// 5.0 §3.2.2.3.2: a Session Expiry Interval above the broker's maximum is
/// lowered, and CONNACK says so.
#[test]
fn v5_session_expiry_is_capped_and_reported() {
    let broker = Broker::with(|c| c.limits.max_session_expiry = 100);
    let (a, ack) = Raw::connected(broker.addr, persistent(V5, &unique("cap"), 1000));
    assert_eq!(ack.properties.session_expiry_interval, Some(100));
    a.disconnect();
    let (b, ack) = Raw::connected(broker.addr, persistent(V5, &unique("cap2"), 50));
    assert_eq!(ack.properties.session_expiry_interval, None, "not changed");
    b.disconnect();
}

/// A 3.1.1 persistent session (CleanSession = 0) is kept for
/// `max_session_expiry` seconds once offline, then discarded: a 5.0
/// publisher's PUBACK turns to 0x10 and a resume finds no session.
#[test]
fn v311_persistent_session_is_kept_for_max_session_expiry() {
    let broker = Broker::with(|c| c.limits.max_session_expiry = 1);
    let id = unique("e311");
    let t = unique("e311/t");
    let (mut a, _) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    a.disconnect();
    let closed = Instant::now();
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("e311p")));
    let mut n = 0u16;
    let gone = poll_until(Duration::from_secs(5), || {
        n += 1;
        p.publish(publish(&t, b"probe", QoS::AtLeastOnce, n));
        match p.expect() {
            Packet::PubAck(ack) => {
                (ack.reason == PubAckReasonCode::NoMatchingSubscribers).then(Instant::now)
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    })
    .expect("the 3.1.1 session never expired");
    assert!(gone - closed >= Duration::from_millis(900));
    let (b, ack) = Raw::connected(broker.addr, persistent(V4, &id, 0));
    assert!(!ack.session_present);
    b.disconnect();
}

/// [MQTT-3.3.4-9] with [MQTT-4.4.0-1]: a 5.0 client that leaves five QoS 1
/// PUBLISHes unacknowledged and resumes with Receive Maximum 2 gets two of
/// them again at once (DUP set, original ids), and each PUBACK lets the
/// next one out, in order and with its original id; the message published
/// while it was away comes last, with a new id. Never more than two are
/// unacknowledged on the new connection.
#[test]
fn resume_resends_only_up_to_the_new_receive_maximum() {
    let broker = Broker::start();
    let id = unique("rmax");
    let t = unique("rmax/t");
    let (mut a, _) = Raw::connected(broker.addr, persistent(V5, &id, 60));
    a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V5, &unique("rmaxp")));
    for n in 0..5u8 {
        p.publish_acked(publish(&t, &[n], QoS::AtLeastOnce, u16::from(n) + 1));
    }
    let first: Vec<Publish> = (0..5).map(|_| a.expect_publish()).collect();
    a.disconnect();
    p.publish_acked(publish(&t, b"later", QoS::AtLeastOnce, 6));
    p.ping();

    let mut c = persistent(V5, &id, 60);
    c.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let (mut b, ack) = Raw::connected(broker.addr, c);
    assert!(ack.session_present);
    let resent = |b: &mut Raw, i: usize| {
        let got = b.expect_publish();
        assert!(got.dup, "[MQTT-4.4.0-1]: resent with DUP");
        assert_eq!(got.pid(), first[i].pid(), "[MQTT-4.4.0-1]: original id");
        assert_eq!(got.payload, first[i].payload, "in the original order");
    };
    resent(&mut b, 0);
    resent(&mut b, 1);
    assert!(b.ping().is_empty(), "[MQTT-3.3.4-9]: two unacknowledged");
    let mut later = None;
    for i in 0..5 {
        b.send(&Packet::PubAck(PubAck::new(first[i].pid().unwrap())));
        if i + 2 < 5 {
            resent(&mut b, i + 2);
        } else if i + 2 == 5 {
            let got = b.expect_publish();
            assert!(!got.dup);
            assert_eq!(&got.payload[..], b"later");
            assert!(first.iter().all(|f| f.pid() != got.pid()), "a new id");
            later = Some(got);
        }
        assert!(b.ping().is_empty(), "one out for each PUBACK, no more");
    }
    b.ack(&later.expect("the message queued while away"));
    assert!(b.ping().is_empty());
    b.disconnect();
}
