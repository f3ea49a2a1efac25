//! Parked connections (idle ones whose task was dropped while the core's
//! epoll set watches their socket; see `src/server/parking.rs`) behave
//! like any other: they get deliveries from either core, answer PINGREQ,
//! time out on keepalive, are closed by a takeover, publish their will when
//! the client vanishes, and get DISCONNECT 0x8B at shutdown.
//!
//! Each test parks after 50 ms of idleness and waits on the
//! `vane_connections_parked` gauge (refreshed once a second) to be sure
//! the connection it then uses really was parked.
#![cfg(feature = "runtime")]

mod common;
mod stats_support;

use std::time::Duration;

use common::*;
use vane::codec::{DisconnectReasonCode, QoS};

fn parking_broker() -> Broker {
    Broker::with(|c| c.executor.park_idle_after_ms = 50)
}

fn parked(broker: &Broker) -> f64 {
    let (_, text) = stats_support::http_get(broker.stats_addr(), "/metrics", &[]);
    stats_support::Metrics(text).sum("vane_connections_parked", &[])
}

/// Waits until exactly `n` connections are parked.
#[track_caller]
fn wait_parked(broker: &Broker, n: usize) {
    let seen = poll_until(Duration::from_secs(10), || {
        (parked(broker) == n as f64).then_some(())
    });
    assert!(
        seen.is_some(),
        "expected {n} parked connections, have {}",
        parked(broker)
    );
}

/// [MQTT-3.3.4-1] holds for parked subscribers: a delivery resumes the
/// subscriber's connection, whichever core the publisher is on, and the
/// publisher's own connection resumes when its PUBLISH arrives.
#[test]
fn parked_subscribers_get_messages_from_either_core() {
    let broker = parking_broker();
    let [(mut a, _), (mut b, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    let (ta, tb) = (unique("park/a"), unique("park/b"));
    a.subscribe(subscribe(1, &ta, QoS::AtLeastOnce));
    b.subscribe(subscribe(1, &tb, QoS::AtLeastOnce));
    for round in 0..3u8 {
        wait_parked(&broker, 2);
        b.publish_acked(publish(
            &ta,
            &[round],
            QoS::AtLeastOnce,
            10 + u16::from(round),
        ));
        assert_eq!(a.expect_publish_acked().payload[..], [round]);
        wait_parked(&broker, 2);
        a.publish_acked(publish(
            &tb,
            &[round],
            QoS::AtLeastOnce,
            20 + u16::from(round),
        ));
        assert_eq!(b.expect_publish_acked().payload[..], [round]);
    }
}

/// A parked connection answers PINGREQ ([MQTT-3.12.4-1]) and keeps its
/// subscriptions.
#[test]
fn a_parked_connection_answers_pings() {
    let broker = parking_broker();
    let (mut c, _) = Raw::connected(broker.addr, connect(V4, &unique("pping")));
    for _ in 0..3 {
        wait_parked(&broker, 1);
        assert!(c.ping().is_empty());
    }
}

/// [MQTT-3.1.2-24]: a parked connection silent for 1.5 × keepalive is
/// closed (5.0: DISCONNECT 0x8D) and its will is published.
#[test]
fn a_parked_connection_times_out_and_publishes_its_will() {
    let broker = parking_broker();
    let will_topic = unique("park/will");
    let (mut watcher, _) = Raw::connected(broker.addr, connect(V4, &unique("pwatch")));
    watcher.subscribe(subscribe(1, &will_topic, QoS::AtMostOnce));
    let mut c = connect(V5, &unique("pka"));
    c.keep_alive = 1;
    c.will = Some(will(&will_topic, "gone", QoS::AtMostOnce, false));
    let (mut silent, _) = Raw::connected(broker.addr, c);
    wait_parked(&broker, 2);
    silent.expect_disconnect(DisconnectReasonCode::KeepAliveTimeout);
    assert_eq!(&watcher.expect_publish_on(&will_topic).payload[..], b"gone");
}

/// [MQTT-3.1.4-3]: a takeover closes the parked connection that held the
/// client id (5.0: DISCONNECT 0x8E) and the new one gets the session.
#[test]
fn a_takeover_closes_a_parked_connection() {
    let broker = parking_broker();
    let id = unique("ptake");
    let mut first = connect(V5, &id);
    first.clean_start = false;
    first.properties.session_expiry_interval = Some(60);
    let (mut old, _) = Raw::connected(broker.addr, first.clone());
    wait_parked(&broker, 1);
    let (mut new, ack) = Raw::connected(broker.addr, first);
    assert!(ack.session_present);
    old.expect_disconnect(DisconnectReasonCode::SessionTakenOver);
    assert!(new.ping().is_empty());
}

/// [MQTT-3.1.2-8]: a client that vanishes while parked has its will
/// published as soon as the socket closes, not at the keepalive timeout.
#[test]
fn a_client_that_vanishes_while_parked_publishes_its_will() {
    let broker = parking_broker();
    let will_topic = unique("park/gone");
    let (mut watcher, _) = Raw::connected(broker.addr, connect(V4, &unique("pw")));
    watcher.subscribe(subscribe(1, &will_topic, QoS::AtMostOnce));
    let mut c = connect(V4, &unique("pv"));
    c.will = Some(will(&will_topic, "lost", QoS::AtMostOnce, false));
    let (gone, _) = Raw::connected(broker.addr, c);
    wait_parked(&broker, 2);
    gone.drop_abruptly();
    assert_eq!(&watcher.expect_publish_on(&will_topic).payload[..], b"lost");
}

/// Graceful shutdown reaches parked 5.0 clients with DISCONNECT 0x8B.
#[test]
fn shutdown_disconnects_parked_connections() {
    let broker = parking_broker();
    let mut clients: Vec<Raw> = (0..4)
        .map(|i| Raw::connected(broker.addr, connect(V5, &unique(&format!("psd{i}")))).0)
        .collect();
    wait_parked(&broker, 4);
    let stopper = std::thread::spawn(move || broker.shutdown());
    for c in &mut clients {
        c.expect_disconnect(DisconnectReasonCode::ServerShuttingDown);
    }
    stopper.join().expect("shutdown thread");
}
