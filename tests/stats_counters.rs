//! The stats endpoint against a running broker and real clients: counters
//! move by exactly what the clients did, the endpoints answer as they
//! should, latency is sampled, and $SYS topics carry the figures.
#![cfg(feature = "runtime")]

mod common;
mod stats_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{connect, publish, subscribe, Raw, V5};
use rumqttc::QoS;
use stats_support::*;
use vane::codec::QoS as Q;

/// A test publishes an exact number of messages with a real client and the
/// counters move by exactly that much: received and sent by QoS, their
/// bytes, drops for want of a subscriber, connections and disconnects.
#[test]
fn counters_move_by_exactly_what_the_clients_did() {
    let broker = Broker::start(|_| {});
    let topic = unique("stats/exact");
    let empty = unique("stats/nobody");
    let sub = Client::connect(broker.mqtt, &unique("sub"));
    sub.subscribe(&topic, QoS::AtLeastOnce);
    let publisher = Client::connect(broker.mqtt, &unique("pub"));
    poll(|| (broker.metrics().sum("vane_connections_current", &[]) == 2.0).then_some(()))
        .expect("two connections");
    let before = broker.metrics();

    let payload = [7u8; 20];
    for _ in 0..7 {
        publisher
            .client
            .publish(&empty, QoS::AtMostOnce, false, payload.to_vec())
            .unwrap();
    }
    for _ in 0..25 {
        publisher
            .client
            .publish(&topic, QoS::AtLeastOnce, false, payload.to_vec())
            .unwrap();
    }
    for _ in 0..10 {
        publisher
            .client
            .publish(&topic, QoS::AtMostOnce, false, payload.to_vec())
            .unwrap();
    }
    let got = sub.receive(35);
    assert_eq!(got.len(), 35);

    // A 3.1.1 PUBLISH: 2-byte fixed header (short), topic with its length,
    // a packet id at QoS 1, the payload.
    let qos0_packet = 2 + 2 + topic.len() + payload.len();
    let qos1_packet = qos0_packet + 2;
    let empty_packet = 2 + 2 + empty.len() + payload.len();
    let delta = |m: &Metrics, name: &str, labels: &[(&str, &str)]| {
        m.sum(name, labels) - before.sum(name, labels)
    };
    let after = poll(|| {
        let m = broker.metrics();
        (delta(&m, "vane_messages_sent_total", &[]) == 35.0).then_some(m)
    })
    .expect("35 messages counted as sent");
    let expect = [
        ("vane_messages_received_total", "0", 17.0),
        ("vane_messages_received_total", "1", 25.0),
        ("vane_messages_received_total", "2", 0.0),
        ("vane_messages_sent_total", "0", 10.0),
        ("vane_messages_sent_total", "1", 25.0),
        (
            "vane_message_bytes_received_total",
            "0",
            (7 * empty_packet + 10 * qos0_packet) as f64,
        ),
        (
            "vane_message_bytes_received_total",
            "1",
            (25 * qos1_packet) as f64,
        ),
        (
            "vane_message_bytes_sent_total",
            "0",
            (10 * qos0_packet) as f64,
        ),
        (
            "vane_message_bytes_sent_total",
            "1",
            (25 * qos1_packet) as f64,
        ),
    ];
    for (name, qos, want) in expect {
        assert_eq!(
            delta(&after, name, &[("qos", qos)]),
            want,
            "{name}{{qos={qos}}}"
        );
    }
    assert_eq!(
        delta(
            &after,
            "vane_messages_dropped_total",
            &[("cause", "no_subscribers")]
        ),
        7.0
    );
    for cause in ["queue_full", "expired", "too_large", "slow_consumer"] {
        assert_eq!(
            delta(&after, "vane_messages_dropped_total", &[("cause", cause)]),
            0.0,
            "{cause}"
        );
    }

    // A normal DISCONNECT: one disconnect with code 0x00, one connection fewer.
    publisher.disconnect();
    let after = poll(|| {
        let m = broker.metrics();
        (m.sum("vane_connections_current", &[]) == 1.0).then_some(m)
    })
    .expect("one connection left");
    assert_eq!(
        delta(&after, "vane_disconnects_total", &[("code", "0x00")]),
        1.0
    );
    assert_eq!(delta(&after, "vane_protocol_errors_total", &[]), 0.0);
    poll(|| (broker.metrics().sum("vane_sessions_online", &[]) == 1.0).then_some(()))
        .expect("one session online after the gauge refresh");
    assert_eq!(broker.metrics().sum("vane_subscriptions", &[]), 1.0);
    sub.disconnect();
}

/// Refusals are counted by their CONNACK code, protocol violations by
/// their reason code.
#[test]
fn refusals_and_protocol_errors_are_counted_by_reason() {
    let broker = Broker::start(|_| {});
    let before = broker.metrics();

    // 3.1.1 CONNECT with an empty client id and CleanSession=0: refused
    // with return code 0x02 [MQTT-3.1.3-8].
    let mut raw = TcpStream::connect(broker.mqtt).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x00, 0, 60, 0, 0])
        .unwrap();
    let mut connack = [0u8; 4];
    raw.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 2]);
    drop(raw);

    // A connected client that sends a reserved packet type (0).
    let mut raw = TcpStream::connect(broker.mqtt).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let id = unique("bad");
    let mut connect = vec![
        0x10,
        (12 + id.len()) as u8,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0x02,
        0,
        60,
    ];
    connect.extend_from_slice(&(id.len() as u16).to_be_bytes());
    connect.extend_from_slice(id.as_bytes());
    raw.write_all(&connect).unwrap();
    raw.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    raw.write_all(&[0x00, 0x00]).unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);

    let delta = |m: &Metrics, name: &str, labels: &[(&str, &str)]| {
        m.sum(name, labels) - before.sum(name, labels)
    };
    let after = poll(|| {
        let m = broker.metrics();
        (delta(&m, "vane_protocol_errors_total", &[]) == 1.0).then_some(m)
    })
    .expect("one protocol error");
    assert_eq!(
        delta(
            &after,
            "vane_connections_rejected_total",
            &[("reason", "client_identifier_not_valid")]
        ),
        1.0
    );
    assert_eq!(delta(&after, "vane_connections_rejected_total", &[]), 1.0);
    assert_eq!(delta(&after, "vane_disconnects_total", &[]), 1.0);
    assert_eq!(delta(&after, "vane_auth_failures_total", &[]), 0.0);
    assert_eq!(after.sum("vane_connections_current", &[]), 0.0);
}

/// /healthz, /readyz, /stats (JSON with per-core detail), OpenMetrics on
/// request, 404 for unknown paths, and bounded requests.
#[test]
fn endpoints_answer_and_requests_are_bounded() {
    let broker = Broker::start(|_| {});
    let client = Client::connect(broker.mqtt, &unique("json"));
    assert_eq!(broker.get("/healthz").0, 200);
    poll(|| (broker.get("/readyz").0 == 200).then_some(())).expect("ready");
    assert_eq!(broker.get("/nope").0, 404);

    let (status, body) = broker.get("/stats");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["metrics"]["vane_connections_current"]["total"], 1.0);
    assert_eq!(json["cores"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["ready"], true);
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));

    let (status, body) = http_get(
        broker.stats,
        "/metrics",
        &["Accept: application/openmetrics-text;version=1.0.0"],
    );
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE vane_messages_received counter"));

    // A request head over 8 KiB is refused without being read further.
    let long = format!("X-Filler: {}", "a".repeat(9000));
    assert_eq!(http_get(broker.stats, "/metrics", &[&long]).0, 431);
    // A client that sends nothing is dropped after the read timeout, and
    // the listener keeps answering meanwhile (after it).
    let idle = TcpStream::connect(broker.stats).unwrap();
    assert_eq!(broker.get("/healthz").0, 200);
    drop(idle);
    client.disconnect();
}

/// Publish-to-deliver latency is sampled into each core's HDR histogram and
/// exported as a Prometheus histogram and as quantiles.
#[test]
fn latency_is_sampled_and_exported() {
    let broker = Broker::start(|_| {});
    let topic = unique("stats/latency");
    let sub = Client::connect(broker.mqtt, &unique("lsub"));
    sub.subscribe(&topic, QoS::AtMostOnce);
    let publisher = Client::connect(broker.mqtt, &unique("lpub"));
    for i in 0..50u32 {
        publisher
            .client
            .publish(&topic, QoS::AtMostOnce, false, i.to_be_bytes().to_vec())
            .unwrap();
    }
    sub.receive(50);
    // Snapshots reach the endpoint once a second.
    let m = poll(|| {
        let m = broker.metrics();
        (m.sum("vane_publish_latency_seconds_count", &[]) >= 1.0).then_some(m)
    })
    .expect("latency samples");
    assert!(m.sum("vane_publish_latency_seconds_count", &[]) <= 50.0);
    assert_eq!(
        m.sum("vane_publish_latency_seconds_bucket", &[("le", "+Inf")]),
        m.sum("vane_publish_latency_seconds_count", &[])
    );
    let p99 = m.sum(
        "vane_publish_latency_window_seconds",
        &[("quantile", "0.99")],
    );
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99}");
    publisher.disconnect();
    sub.disconnect();
}

/// $SYS topics carry the figures under Mosquitto's names, retained.
#[test]
fn sys_topics_are_published() {
    let broker = Broker::start(|c| c.stats.sys_interval = 1);
    let client = Client::connect(broker.mqtt, &unique("sys"));
    poll(|| (broker.metrics().sum("vane_sessions_online", &[]) == 1.0).then_some(()))
        .expect("gauges refreshed");
    client.subscribe("$SYS/broker/#", QoS::AtMostOnce);
    let mut seen = std::collections::HashMap::new();
    poll(|| {
        let p = client.receive(1).remove(0);
        seen.insert(
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).to_string(),
        );
        // The retained values from before the client connected come first.
        (seen
            .get("$SYS/broker/clients/connected")
            .map(String::as_str)
            == Some("1")
            && seen.contains_key("$SYS/broker/version")
            && seen.contains_key("$SYS/broker/uptime")
            && seen.contains_key("$SYS/broker/load/messages/received/1min"))
        .then_some(())
    })
    .expect("the $SYS topics");
    assert_eq!(seen["$SYS/broker/clients/connected"], "1");
    assert!(seen["$SYS/broker/version"].starts_with("vane version "));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    // The broker's own messages are not counted as received.
    assert_eq!(
        broker.metrics().sum("vane_messages_received_total", &[]),
        0.0
    );
    client.disconnect();
}

/// `[stats] enabled = false`: no listener, the broker serves MQTT as
/// before. A stats address already in use is a start-up error that names it.
#[test]
fn stats_can_be_turned_off_and_a_taken_address_is_an_error() {
    let config = || {
        let mut config = vane::server::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            cores: 2,
            ..Default::default()
        };
        config.executor.pin = false;
        config
    };
    let mut off = config();
    off.stats.enabled = false;
    let server = vane::server::Server::start(off).expect("starts without stats");
    assert!(server.stats_addr().is_none());
    let client = Client::connect(server.local_addr(), &unique("off"));
    client.disconnect();
    server.shutdown().unwrap();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut clash = config();
    clash.stats.listen = taken.local_addr().unwrap();
    let error = vane::server::Server::start(clash)
        .err()
        .expect("the stats address is taken");
    assert!(
        error
            .to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{error}"
    );
}

/// Every drop cause since `before`, polled until each has moved by what
/// `want` says (the others by nothing); panics with the deltas otherwise.
#[track_caller]
fn expect_drops(broker: &Broker, before: &Metrics, want: &[(&str, f64)]) {
    let causes = [
        "queue_full",
        "expired",
        "too_large",
        "slow_consumer",
        "offline",
        "no_subscribers",
    ];
    let deltas = |m: &Metrics| -> Vec<(&str, f64)> {
        causes
            .iter()
            .map(|&cause| {
                let labels = [("cause", cause)];
                let name = "vane_messages_dropped_total";
                (cause, m.sum(name, &labels) - before.sum(name, &labels))
            })
            .collect()
    };
    let expected: Vec<(&str, f64)> = causes
        .iter()
        .map(|&cause| {
            let n = want.iter().find(|(c, _)| *c == cause).map_or(0.0, |w| w.1);
            (cause, n)
        })
        .collect();
    let mut last = Vec::new();
    let reached = poll(|| {
        last = deltas(&broker.metrics());
        (last == expected).then_some(())
    });
    assert!(reached.is_some(), "drops {last:?}, expected {expected:?}");
}

/// A 5.0 CONNECT that keeps its session for a minute.
fn persistent(id: &str) -> vane::codec::Connect {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    c
}

/// [MQTT-3.1.2-25]: a PUBLISH larger than a 5.0 subscriber's Maximum
/// Packet Size is not sent to it; each one is counted as dropped
/// `too_large`, at QoS 0 and QoS 1 alike, and one that fits goes through.
#[test]
fn oversized_messages_are_counted_as_too_large() {
    let broker = Broker::start(|_| {});
    let t = unique("drops/large");
    let mut c = connect(V5, &unique("small"));
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(64);
    let (mut sub, _) = Raw::connected(broker.mqtt, c);
    sub.subscribe(subscribe(1, &t, Q::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.mqtt, connect(V5, &unique("big")));
    let before = broker.metrics();
    for (n, qos) in [
        (1, Q::AtMostOnce),
        (2, Q::AtLeastOnce),
        (3, Q::AtMostOnce),
        (4, Q::AtLeastOnce),
        (5, Q::AtLeastOnce),
    ] {
        p.publish_acked(publish(&t, &[n; 100], qos, u16::from(n)));
    }
    p.publish_acked(publish(&t, b"fits", Q::AtLeastOnce, 9));
    assert_eq!(&sub.expect_publish_acked().payload[..], b"fits");
    expect_drops(&broker, &before, &[("too_large", 5.0)]);
    assert!(sub.ping().is_empty());
}

/// 5.0 §3.3.2.3.3: a message whose Message Expiry Interval runs out while
/// it waits in an offline session's queue is not delivered when the
/// client comes back; each one is counted as dropped `expired`.
#[test]
fn messages_expiring_in_an_offline_queue_are_counted_as_expired() {
    let broker = Broker::start(|_| {});
    let t = unique("drops/expiry");
    let id = unique("expsub");
    let (mut sub, _) = Raw::connected(broker.mqtt, persistent(&id));
    sub.subscribe(subscribe(1, &t, Q::AtLeastOnce));
    sub.disconnect();
    let (mut p, _) = Raw::connected(broker.mqtt, connect(V5, &unique("exppub")));
    let before = broker.metrics();
    for n in 1..=3 {
        let mut m = publish(&t, b"short-lived", Q::AtLeastOnce, n);
        m.properties.message_expiry_interval = Some(1);
        p.publish_acked(m);
    }
    // The broker read them before it acknowledged them, so they expire by
    // one second from now. Time passing is the event: nothing to poll.
    let expired_by = Instant::now() + Duration::from_secs(1);
    p.publish_acked(publish(&t, b"kept", Q::AtLeastOnce, 4));
    std::thread::sleep(expired_by.saturating_duration_since(Instant::now()));
    let (mut sub, ack) = Raw::connected(broker.mqtt, persistent(&id));
    assert!(ack.session_present);
    assert_eq!(&sub.expect_publish_acked().payload[..], b"kept");
    expect_drops(&broker, &before, &[("expired", 3.0)]);
    assert!(sub.ping().is_empty());
}

/// `max_queued` bounds an offline session's queue: with the default
/// DropNewest policy, QoS 1 messages beyond it are refused, each counted
/// as dropped `queue_full`; the first ones are delivered on return.
#[test]
fn an_offline_queue_over_max_queued_counts_queue_full() {
    let broker = Broker::start(|c| c.limits.max_queued = 2);
    let t = unique("drops/full");
    let id = unique("fullsub");
    let (mut sub, _) = Raw::connected(broker.mqtt, persistent(&id));
    sub.subscribe(subscribe(1, &t, Q::AtLeastOnce));
    sub.disconnect();
    let (mut p, _) = Raw::connected(broker.mqtt, connect(V5, &unique("fullpub")));
    let before = broker.metrics();
    for n in 1..=5u8 {
        p.publish_acked(publish(&t, &[n], Q::AtLeastOnce, u16::from(n)));
    }
    expect_drops(&broker, &before, &[("queue_full", 3.0)]);
    let (mut sub, ack) = Raw::connected(broker.mqtt, persistent(&id));
    assert!(ack.session_present);
    let got: Vec<u8> = (0..2)
        .map(|_| sub.expect_publish_acked().payload[0])
        .collect();
    assert_eq!(got, [1, 2]);
    assert!(sub.ping().is_empty());
    expect_drops(&broker, &before, &[("queue_full", 3.0)]);
}

/// QoS 0 for an offline persistent session is not queued (the default
/// `queue_qos0_offline = false`): each one is counted as dropped
/// `offline`, while QoS 1 waits for the client.
#[test]
fn qos0_for_an_offline_session_counts_offline() {
    let broker = Broker::start(|_| {});
    let t = unique("drops/offline");
    let id = unique("offsub");
    let (mut sub, _) = Raw::connected(broker.mqtt, persistent(&id));
    sub.subscribe(subscribe(1, &t, Q::AtLeastOnce));
    sub.disconnect();
    let (mut p, _) = Raw::connected(broker.mqtt, connect(V5, &unique("offpub")));
    let before = broker.metrics();
    for n in 1..=4 {
        p.publish(publish(&t, b"zero", Q::AtMostOnce, n));
    }
    p.publish_acked(publish(&t, b"one", Q::AtLeastOnce, 5));
    let (mut sub, ack) = Raw::connected(broker.mqtt, persistent(&id));
    assert!(ack.session_present);
    assert_eq!(&sub.expect_publish_acked().payload[..], b"one");
    assert!(sub.ping().is_empty());
    expect_drops(&broker, &before, &[("offline", 4.0)]);
}
