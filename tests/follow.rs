//! Following publishers: a live connection fed by another core moves
//! there, socket and session, and its client notices nothing: no message
//! lost, repeated or reordered, QoS 1 flows in flight carried over, the
//! client id still taken over correctly afterwards.
//!
//! The clients are rumqttc's 5.0 client with broker-assigned client ids,
//! which name the core that accepted them (`vane-<core>-...`).
#![cfg(feature = "runtime")]

mod common;
mod stats_support;

use common::*;
use rumqttc::v5::mqttbytes::QoS as Q;

/// Reviews every 50 ms, a connection with 8 deliveries is reviewed, and
/// any load allows a move: on a shared test machine the default guard
/// could keep a move from happening at all.
fn following(config: &mut vane::server::Config) {
    config.executor.follow_interval_ms = 50;
    config.executor.follow_min_messages = 8;
    config.executor.follow_max_load_pct = 100;
}

/// A rumqttc 5.0 client with a broker-assigned id: the client, its id and
/// its core.
fn assigned(addr: std::net::SocketAddr) -> (Mq5, String, usize) {
    let mut options = mq5_options(addr, "");
    options.set_clean_start(true);
    let client = Mq5::connect(options);
    let id = client
        .connack
        .properties
        .as_ref()
        .and_then(|p| p.assigned_client_identifier.clone())
        .expect("an assigned client id");
    let core = core_of_assigned(&id);
    (client, id, core)
}

/// A publisher and a subscriber on different cores.
fn split_pair(addr: std::net::SocketAddr) -> ((Mq5, String, usize), (Mq5, String, usize)) {
    let first = assigned(addr);
    for _ in 0..64 {
        let second = assigned(addr);
        if second.2 != first.2 {
            return (first, second);
        }
        second.0.disconnect();
    }
    panic!("64 connections all landed on core {}", first.2);
}

fn moves(broker: &Broker) -> f64 {
    let (_, text) = stats_support::http_get(broker.stats_addr(), "/metrics", &[]);
    stats_support::Metrics(text).sum("vane_connections_moved_total", &[])
}

fn on_core(broker: &Broker, core: usize) -> f64 {
    let (_, text) = stats_support::http_get(broker.stats_addr(), "/metrics", &[]);
    stats_support::Metrics(text).sum(
        "vane_connections_current",
        &[("core", core.to_string().as_str())],
    )
}

/// Queues the next 20 QoS 1 messages of the sequence, numbered from
/// `sent`, without waiting for their PUBACKs.
fn publish_window(publisher: &Mq5, t: &str, sent: &mut u32) {
    for _ in 0..20 {
        publisher
            .client
            .try_publish(t, Q::AtLeastOnce, false, sent.to_be_bytes().to_vec())
            .expect("queue publish");
        *sent += 1;
    }
}

/// Receives the next `n` PUBLISHes on `subscriber` and checks they carry
/// sequence numbers `from..from + n`, in order: none lost, none repeated.
#[track_caller]
fn expect_sequence(subscriber: &Mq5, from: u32, n: u32) {
    for expected in from..from + n {
        let p = subscriber.next_publish();
        let got = u32::from_be_bytes(p.payload[..4].try_into().expect("4 bytes"));
        assert_eq!(got, expected, "lost, repeated or reordered");
    }
}

/// The subscriber moves to the publisher's core while QoS 1 messages are
/// in flight in windows of 20, and receives every message once, in order
/// ([MQTT-4.6.0-6]: an ordered topic; [MQTT-4.3.3-1]: QoS 1 at least
/// once, and no reconnect, so no duplicate). Afterwards both clients are
/// served by that core.
#[test]
fn a_subscriber_moves_to_its_publishers_core_and_misses_nothing() {
    let broker = Broker::with(following);
    let ((publisher, _, pub_core), (subscriber, _, sub_core)) = split_pair(broker.addr);
    let t = unique("follow/t");
    subscriber.subscribe(&t, Q::AtLeastOnce);
    let mut sent = 0u32;
    let mut moved_at = None;
    // Until the move and then 20 more windows; bounded either way.
    while sent < 20_000 && moved_at.is_none_or(|at| sent < at + 400) {
        publish_window(&publisher, &t, &mut sent);
        expect_sequence(&subscriber, sent - 20, 20);
        if moved_at.is_none() && moves(&broker) >= 1.0 {
            moved_at = Some(sent);
        }
    }
    assert!(moved_at.is_some(), "no move after {sent} messages");
    assert_eq!(
        on_core(&broker, pub_core),
        2.0,
        "both on the publisher's core"
    );
    assert_eq!(on_core(&broker, sub_core), 0.0);
    // The moved connection still answers: a ping-free check is a publish
    // from it that the publisher receives.
    publisher.subscribe(&format!("{t}/back"), Q::AtLeastOnce);
    subscriber.publish(&format!("{t}/back"), Q::AtLeastOnce, false, b"back");
    assert_eq!(&publisher.next_publish().payload[..], b"back");
}

/// After a move, a CONNECT with the moved client's id takes the session
/// over as usual ([MQTT-3.1.4-3]): the moved connection gets DISCONNECT
/// 0x8E, the new one the session (Session Present) and its subscription.
/// The moved client is a raw 5.0 one here, to see the exact packets.
#[test]
fn a_moved_session_is_taken_over_like_any_other() {
    let broker = Broker::with(following);
    let (publisher, _, pub_core) = assigned(broker.addr);
    let (mut subscriber, sub_id) = (0..64)
        .find_map(|_| {
            let (raw, core, id) = Raw::v5_assigned(broker.addr, connect(V5, ""));
            if core != pub_core {
                return Some((raw, id));
            }
            raw.disconnect();
            None
        })
        .expect("a subscriber on the other core");
    let t = unique("follow/takeover");
    subscriber.subscribe(subscribe(1, &t, vane::codec::QoS::AtLeastOnce));
    let mut sent = 0u32;
    while moves(&broker) < 1.0 {
        assert!(sent < 20_000, "no move after {sent} messages");
        publish_window(&publisher, &t, &mut sent);
        for expected in sent - 20..sent {
            let p = subscriber.expect_publish_acked();
            assert_eq!(&p.payload[..], &expected.to_be_bytes());
        }
    }
    assert_eq!(on_core(&broker, pub_core), 2.0, "moved");
    let mut options = mq5_options(broker.addr, &sub_id);
    options.set_clean_start(false);
    let successor = Mq5::connect(options);
    assert!(
        successor.connack.session_present,
        "the session moved with it"
    );
    subscriber.expect_disconnect(vane::codec::DisconnectReasonCode::SessionTakenOver);
    publisher.publish(&t, Q::AtLeastOnce, false, &sent.to_be_bytes());
    let p = successor.next_publish();
    assert_eq!(&p.payload[..], &sent.to_be_bytes());
}
