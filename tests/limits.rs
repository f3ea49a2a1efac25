//! Configured limits: subscriptions per client, packet size, connections
//! per core, the session queue and its drop policy, the server's Receive
//! Maximum, topic length/depth, retained messages and offline sessions.
#![cfg(feature = "runtime")]

mod common;
mod stats_support;

use std::time::Duration;

use common::*;
use vane::codec::{DisconnectReasonCode, Packet, PubRel, QoS, SubAckReasonCode};

/// 5.0 §3.9.3: beyond `max_subscriptions` a filter gets SUBACK 0x97
/// (Quota exceeded); 3.1.1 gets 0x80 (Failure, [MQTT-3.9.3-2]). Replacing
/// an existing subscription at the cap is still granted.
#[test]
fn max_subscriptions_per_client() {
    let broker = Broker::with(|c| c.limits.max_subscriptions = 3);
    for version in [V4, V5] {
        let (mut c, _) = Raw::connected(broker.addr, connect(version, &unique("ms")));
        let base = unique("ms");
        let filters: Vec<String> = (0..4).map(|i| format!("{base}/{i}")).collect();
        let subs: Vec<_> = filters
            .iter()
            .map(|f| (f.as_str(), opts(QoS::AtLeastOnce)))
            .collect();
        let ack = c.subscribe(subscribe_with(1, &subs));
        let refused = if version == V5 {
            SubAckReasonCode::QuotaExceeded
        } else {
            SubAckReasonCode::UnspecifiedError
        };
        assert_eq!(
            ack.reason_codes,
            [
                SubAckReasonCode::GrantedQoS1,
                SubAckReasonCode::GrantedQoS1,
                SubAckReasonCode::GrantedQoS1,
                refused
            ],
            "{version:?}"
        );
        let again = c.subscribe(subscribe(2, &filters[0], QoS::ExactlyOnce));
        assert_eq!(again.reason_codes, [SubAckReasonCode::GrantedQoS2]);
        // The refused filter really has no subscription.
        let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("msp")));
        p.publish_acked(publish(&filters[3], b"x", QoS::AtLeastOnce, 1));
        p.publish_acked(publish(&filters[2], b"y", QoS::AtLeastOnce, 2));
        assert_eq!(&c.expect_publish_acked().payload[..], b"y");
    }
}

/// The Maximum Packet Size the broker advertises (5.0 §3.2.2.3.6) is
/// exact: a packet of exactly that size is accepted, one byte more gets
/// DISCONNECT 0x95.
#[test]
fn max_packet_size_is_exact() {
    const MAX: u32 = 512;
    let broker = Broker::with(|c| c.limits.max_packet_size = MAX);
    let t = unique("mx/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("mxs")));
    sub.subscribe(subscribe(1, &t, QoS::AtMostOnce));
    let sized = |n: usize| {
        // Find the payload length that makes the whole packet n bytes.
        let mut len = n.saturating_sub(t.len() + 8);
        loop {
            let p = Packet::Publish(publish(&t, &vec![b'z'; len], QoS::AtMostOnce, 1));
            let size = p.encoded_len(V5);
            if size == n {
                return encode(&p, V5);
            }
            assert!(size < n, "cannot size a packet to {n}");
            len += 1;
        }
    };
    let (mut c, ack) = Raw::connected(broker.addr, connect(V5, &unique("mx")));
    assert_eq!(
        ack.properties.maximum_packet_size.map(|m| m.get()),
        Some(MAX)
    );
    c.send_bytes(&sized(MAX as usize));
    assert!(
        c.ping().is_empty(),
        "a packet of exactly the maximum was refused"
    );
    assert!(sub.expect_publish().payload.iter().all(|&b| b == b'z'));
    c.send_bytes(&sized(MAX as usize + 1));
    c.expect_disconnect(DisconnectReasonCode::PacketTooLarge);
}

/// `max_connections_per_core`: beyond it a core closes new connections at
/// once. With a cap of 2 on each of 2 cores, exactly 4 of many attempts
/// get a CONNACK; a freed slot is reused.
#[test]
fn max_connections_per_core() {
    let broker = Broker::with(|c| c.limits.max_connections_per_core = 2);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..32 {
        let mut raw = Raw::open(broker.addr, V4);
        raw.send(&Packet::Connect(Box::new(connect(V4, &unique("mc")))));
        match raw.recv(WAIT) {
            Next::Packet(Packet::ConnAck(_)) => accepted.push(raw),
            Next::Closed => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted.len(), 4, "refused {refused}");
    // Free one slot: a later attempt that lands on that core gets in.
    accepted.pop().unwrap().disconnect();
    let got_in = poll_until(WAIT, || {
        let mut raw = Raw::open(broker.addr, V4);
        raw.send(&Packet::Connect(Box::new(connect(V4, &unique("mc2")))));
        match raw.recv(WAIT) {
            Next::Packet(Packet::ConnAck(_)) => Some(raw),
            _ => None,
        }
    });
    assert!(got_in.is_some(), "a freed connection slot was not reused");
    for c in &mut accepted {
        assert!(c.ping().is_empty(), "accepted connections stay up");
    }
}

/// The offline queue holds `max_queued` messages; with the default
/// drop-newest policy the oldest are kept, with drop-oldest the newest.
#[test]
fn offline_queue_limit_and_drop_policy() {
    use vane::broker::session::DropPolicy;
    for (policy, want) in [
        (DropPolicy::DropNewest, [0u8, 1, 2]),
        (DropPolicy::DropOldest, [7u8, 8, 9]),
    ] {
        let broker = Broker::with(|c| {
            c.limits.max_queued = 3;
            c.limits.drop_policy = policy;
        });
        let id = unique("mq");
        let t = unique("mq/t");
        let mut c = connect(V4, &id);
        c.clean_start = false;
        let (mut a, _) = Raw::connected(broker.addr, c.clone());
        a.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        a.disconnect();
        let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("mqp")));
        for i in 0..10u8 {
            p.publish_acked(publish(&t, &[i], QoS::AtLeastOnce, u16::from(i) + 1));
        }
        let (mut b, ack) = Raw::connected(broker.addr, c);
        assert!(ack.session_present);
        let got: Vec<u8> = (0..3)
            .map(|_| b.expect_publish_acked().payload[0])
            .collect();
        assert_eq!(got, want, "{policy:?}");
        assert!(b.ping().is_empty(), "{policy:?}: more than max_queued kept");
    }
}

/// 5.0 [MQTT-3.3.4-9]... the server's Receive Maximum: a client with more
/// unacknowledged inbound QoS 2 PUBLISHes than advertised gets DISCONNECT
/// 0x93 (Receive Maximum exceeded). Completing flows frees the quota.
#[test]
fn server_receive_maximum() {
    let broker = Broker::with(|c| c.limits.receive_maximum = 2);
    let (mut c, ack) = Raw::connected(broker.addr, connect(V5, &unique("rmx")));
    assert_eq!(ack.properties.receive_maximum.map(|r| r.get()), Some(2));
    // Within the quota, with flows completed, any number is fine.
    for i in 1..=5u16 {
        c.publish_acked(publish("rmx/t", b"x", QoS::ExactlyOnce, i));
    }
    for i in 10..13u16 {
        c.publish(publish("rmx/t", b"x", QoS::ExactlyOnce, i));
    }
    c.expect_disconnect(DisconnectReasonCode::ReceiveMaximumExceeded);
    // The quota is per connection: a fresh one is fine.
    let (mut d, _) = Raw::connected(broker.addr, connect(V5, &unique("rmx2")));
    d.publish(publish("rmx/t", b"x", QoS::ExactlyOnce, 1));
    assert!(matches!(d.expect(), Packet::PubRec(_)));
    d.send(&Packet::PubRel(PubRel::new(pid(1))));
    assert!(matches!(d.expect(), Packet::PubComp(_)));
}

/// `max_topic_length` / `max_topic_levels`: a longer or deeper topic gets
/// 5.0 DISCONNECT 0x90 (Topic Name invalid); 3.1.1 is closed.
#[test]
fn topic_length_and_depth_limits() {
    let broker = Broker::with(|c| {
        c.limits.max_topic_length = 32;
        c.limits.max_topic_levels = 4;
    });
    for t in ["a".repeat(33), "a/b/c/d/e".to_string()] {
        for version in [V4, V5] {
            let (mut c, _) = Raw::connected(broker.addr, connect(version, &unique("tl")));
            c.publish(publish(&t, b"x", QoS::AtMostOnce, 1));
            if version == V5 {
                c.expect_disconnect(DisconnectReasonCode::TopicNameInvalid);
            } else {
                c.expect_closed();
            }
        }
    }
    let (mut ok, _) = Raw::connected(broker.addr, connect(V5, &unique("tlok")));
    ok.publish_acked(publish("a/b/c/d", b"x", QoS::AtLeastOnce, 1));
    assert!(ok.ping().is_empty());
}

/// Server Keep Alive (5.0 [MQTT-3.2.2-21]) is enforced: with
/// `max_keepalive` = 1 a client that asked for 60 s and stays silent is
/// disconnected after about 1.5 s with 0x8D.
#[test]
fn server_keep_alive_is_enforced() {
    let broker = Broker::with(|c| c.limits.max_keepalive = 1);
    let started = std::time::Instant::now();
    let (mut c, ack) = Raw::connected(broker.addr, connect(V5, &unique("ska")));
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    c.expect_disconnect(DisconnectReasonCode::KeepAliveTimeout);
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

/// The topic limits apply to a will's topic too: 5.0 CONNACK 0x90 (Topic
/// Name invalid).
#[test]
fn will_topic_limits() {
    let broker = Broker::with(|c| c.limits.max_topic_levels = 3);
    let mut c = connect(V5, &unique("wtl"));
    c.will = Some(will("a/b/c/d", "x", QoS::AtMostOnce, false));
    let (mut raw, ack) = Raw::connect(broker.addr, c);
    assert_eq!(ack.code, vane::codec::ConnectReasonCode::TopicNameInvalid);
    raw.expect_closed();
}

/// A subscriber that stops reading does not stop the others: once its
/// output passes `write_buffer_cap`, QoS 0 deliveries to it are dropped,
/// while the publisher and a healthy QoS 1 subscriber carry on, and the
/// healthy one gets every message, in order.
#[test]
fn stuck_subscriber_does_not_block_others() {
    let broker = Broker::with(|c| c.limits.write_buffer_cap = 64 * 1024);
    let t = unique("stuck/t");
    let (mut stuck, _) = Raw::connected(broker.addr, connect(V4, &unique("stuck")));
    stuck.subscribe(subscribe(1, &t, QoS::AtMostOnce));
    let (mut healthy, _) = Raw::connected(broker.addr, connect(V4, &unique("healthy")));
    healthy.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("flood")));
    const N: u16 = 1000;
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            for i in 0..N {
                let m = healthy.expect_publish_acked();
                assert_eq!(
                    &m.payload[..2],
                    &i.to_be_bytes(),
                    "healthy subscriber lost a message"
                );
            }
            let end = healthy.expect_publish_acked();
            assert_eq!(&end.payload[..], b"end");
        });
        let mut payload = vec![0u8; 16 * 1024];
        for i in 0..N {
            payload[..2].copy_from_slice(&i.to_be_bytes());
            p.publish(publish(&t, &payload, QoS::AtLeastOnce, i + 1));
        }
        for _ in 0..N {
            assert!(matches!(p.expect(), Packet::PubAck(_)));
        }
        p.publish_acked(publish(&t, b"end", QoS::AtLeastOnce, N + 1));
        reader.join().expect("healthy subscriber");
    });
    drop(stuck);
}

/// Many subscribers stop reading at once: whoever feeds them waits one
/// grace period (`limits.slow_consumer_grace_ms`, here 1 s) for all of
/// them together, not one per subscriber (12 s here), so a healthy
/// subscriber of the same flood is never stalled for long: each of its
/// messages arrives within the 5 s the test client waits for a packet.
#[test]
fn many_stuck_subscribers_cost_one_grace_period() {
    let broker = Broker::with(|c| {
        c.limits.write_buffer_cap = 64 * 1024;
        c.limits.slow_consumer_grace_ms = 1_000;
    });
    let t = unique("stuck-many/t");
    let stuck: Vec<Raw> = (0..12)
        .map(|_| {
            let (mut s, _) = Raw::connected(broker.addr, connect(V4, &unique("stuck-n")));
            s.subscribe(subscribe(1, &t, QoS::AtMostOnce));
            s
        })
        .collect();
    let (mut healthy, _) = Raw::connected(broker.addr, connect(V4, &unique("healthy")));
    healthy.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("flood")));
    const N: u16 = 2_000;
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            for i in 0..N {
                let m = healthy.expect_publish_acked();
                assert_eq!(&m.payload[..2], &i.to_be_bytes(), "lost or stalled");
            }
        });
        let mut payload = vec![0u8; 16 * 1024];
        for i in 0..N {
            payload[..2].copy_from_slice(&i.to_be_bytes());
            p.publish(publish(&t, &payload, QoS::AtLeastOnce, i + 1));
        }
        for _ in 0..N {
            assert!(matches!(p.expect(), Packet::PubAck(_)));
        }
        reader.join().expect("healthy subscriber");
    });
    drop(stuck);
}

/// `limits.connect_timeout_ms`: a connection that sends no CONNECT in time
/// is closed ([MQTT-3.1.0-1] makes CONNECT the first packet; the wait for
/// it is the broker's own limit).
#[test]
fn a_connection_without_connect_is_closed_after_the_timeout() {
    let broker = Broker::with(|c| c.limits.connect_timeout_ms = 300);
    let started = std::time::Instant::now();
    let mut silent = Raw::open(broker.addr, V4);
    assert!(silent.expect_closed().is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed early"
    );
}

use rumqttc::v5::mqttbytes::v5::{ConnectProperties, PubAckReason, PubRecReason};
use rumqttc::v5::mqttbytes::QoS as Q5;

/// A rumqttc 5.0 client with a broker-assigned id on core `core` (the id
/// names its core), and that id. `persistent`: Clean Start 0 and a 300 s
/// Session Expiry Interval. Clients that land on the other core stay
/// connected in `spare`, so that they never add an offline session.
fn mq5_on_core(
    addr: std::net::SocketAddr,
    core: usize,
    persistent: bool,
    spare: &mut Vec<Mq5>,
) -> (Mq5, String) {
    for _ in 0..64 {
        let c = Mq5::connect(mq5_persistent(addr, "", persistent));
        let id = c
            .connack
            .properties
            .as_ref()
            .and_then(|p| p.assigned_client_identifier.clone())
            .expect("assigned id");
        if core_of_assigned(&id) == core {
            return (c, id);
        }
        spare.push(c);
    }
    panic!("64 connections and none on core {core}");
}

fn mq5_persistent(
    addr: std::net::SocketAddr,
    id: &str,
    persistent: bool,
) -> rumqttc::v5::MqttOptions {
    let mut o = mq5_options(addr, id);
    if persistent {
        o.set_clean_start(false);
        let mut properties = ConnectProperties::new();
        properties.session_expiry_interval = Some(300);
        o.set_connect_properties(properties);
    }
    o
}

/// Publishes at QoS 1 or 2, completes the flow, and returns whether the
/// PUBACK or PUBREC said Success (0x00) rather than anything else (0x10 No
/// matching subscribers, 0x97 Quota exceeded, ...).
#[track_caller]
fn publish_succeeds(c: &Mq5, topic: &str, qos: Q5, retain: bool, payload: &[u8]) -> bool {
    c.client
        .try_publish(topic, qos, retain, payload.to_vec())
        .expect("queue publish");
    match qos {
        Q5::AtMostOnce => true,
        Q5::AtLeastOnce => c.wait_for(|p| match p {
            P5::PubAck(ack) => Some(ack.reason == PubAckReason::Success),
            _ => None,
        }),
        Q5::ExactlyOnce => {
            let ok = c.wait_for(|p| match p {
                P5::PubRec(rec) => Some(rec.reason == PubRecReason::Success),
                _ => None,
            });
            c.wait_for(|p| matches!(p, P5::PubComp(_)).then_some(()));
            ok
        }
    }
}

/// The retained messages a new subscription to `{base}/#` made on `core`
/// gets, as sorted (topic, payload): what that core's replica holds. A
/// message the subscriber then publishes itself marks the end.
fn retained_on_core(
    addr: std::net::SocketAddr,
    core: usize,
    base: &str,
    spare: &mut Vec<Mq5>,
) -> Vec<(String, String)> {
    let (c, _) = mq5_on_core(addr, core, false, spare);
    c.subscribe(&format!("{base}/#"), Q5::AtLeastOnce);
    let marker = format!("{base}/end-of-retained");
    c.publish(&marker, Q5::AtLeastOnce, false, b"");
    let mut seen = Vec::new();
    loop {
        let p = c.next_publish();
        let topic = String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic");
        if topic == marker {
            break;
        }
        assert!(
            p.retain,
            "{topic}: only retained messages before the marker"
        );
        let name = topic.trim_start_matches(base).trim_start_matches('/');
        seen.push((
            name.to_string(),
            String::from_utf8(p.payload.to_vec()).expect("UTF-8"),
        ));
    }
    c.disconnect();
    seen.sort();
    seen
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect()
}

/// `max_retained_messages`, with rumqttc 5.0 publishers on both cores:
/// once the store holds the limit, a retained PUBLISH for a new topic is
/// still acknowledged with Success (QoS 1 and 2) and delivered to a live
/// subscriber on the other core, but stored on no core; replacing and
/// clearing stored topics still work, and clearing frees room. Both
/// cores' replicas hold the same topics throughout, and each refusal is
/// counted once, by the core that received it.
#[test]
fn retained_limit_refuses_new_topics_on_every_core_but_delivers_them() {
    let broker = Broker::with(|c| c.limits.max_retained_messages = 3);
    let base = unique("rlim");
    let t = |name: &str| format!("{base}/{name}");
    let mut spare = Vec::new();
    let (p0, _) = mq5_on_core(broker.addr, 0, false, &mut spare);
    let (p1, _) = mq5_on_core(broker.addr, 1, false, &mut spare);
    let (live, _) = mq5_on_core(broker.addr, 0, false, &mut spare);
    live.subscribe(&t("#"), Q5::AtLeastOnce);

    assert!(publish_succeeds(&p0, &t("a"), Q5::AtLeastOnce, true, b"a"));
    assert!(publish_succeeds(&p1, &t("b"), Q5::AtLeastOnce, true, b"b"));
    assert!(publish_succeeds(&p0, &t("c"), Q5::ExactlyOnce, true, b"c"));
    for name in ["a", "b", "c"] {
        assert_eq!(live.next_publish().payload, name.as_bytes());
    }
    // Full: new topics are acknowledged and delivered, not stored.
    assert!(publish_succeeds(&p1, &t("d"), Q5::AtLeastOnce, true, b"d"));
    assert_eq!(
        live.next_publish().payload,
        &b"d"[..],
        "delivered across cores"
    );
    assert!(publish_succeeds(&p0, &t("e"), Q5::ExactlyOnce, true, b"e"));
    assert_eq!(live.next_publish().payload, &b"e"[..]);
    p1.publish(&t("f"), Q5::AtMostOnce, true, b"f");
    assert_eq!(live.next_publish().payload, &b"f"[..]);
    let stored = pairs(&[("a", "a"), ("b", "b"), ("c", "c")]);
    for core in [0, 1] {
        assert_eq!(
            retained_on_core(broker.addr, core, &base, &mut spare),
            stored,
            "core {core}'s replica"
        );
    }

    // Replacing at the limit works; clearing frees room for a new topic.
    assert!(publish_succeeds(&p1, &t("a"), Q5::AtLeastOnce, true, b"a2"));
    assert!(publish_succeeds(&p0, &t("b"), Q5::AtLeastOnce, true, b""));
    assert!(publish_succeeds(&p1, &t("d"), Q5::AtLeastOnce, true, b"d"));
    let stored = pairs(&[("a", "a2"), ("c", "c"), ("d", "d")]);
    for core in [0, 1] {
        assert_eq!(
            retained_on_core(broker.addr, core, &base, &mut spare),
            stored,
            "core {core}'s replica"
        );
    }

    let metrics =
        stats_support::Metrics(stats_support::http_get(broker.stats_addr(), "/metrics", &[]).1);
    let refused = |core: &str| metrics.sum("vane_retained_refused_total", &[("core", core)]);
    assert_eq!(
        (refused("0"), refused("1")),
        (1.0, 2.0),
        "e on 0; d, f on 1"
    );
    let (status, body) = stats_support::http_get(broker.stats_addr(), "/stats", &[]);
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["metrics"]["vane_retained_refused_total"]["total"], 3.0);
}

/// `max_offline_sessions` = 4 on 2 cores, 2 per core, with rumqttc 5.0
/// persistent sessions: the third session to go offline on core 0 ends
/// the one offline longest there, while core 1's two offline sessions
/// stay. The evicted session's subscription goes from every replica (a
/// publisher on core 1 soon gets 0x10 No matching subscribers where it got
/// 0x00 while the session was kept), its client finds no session when it
/// comes back, the others resume theirs, and the eviction is counted once.
#[test]
fn offline_session_limit_evicts_the_longest_offline_on_its_core() {
    let broker = Broker::with(|c| c.limits.max_offline_sessions = 4);
    let t = unique("olim/t");
    let mut spare = Vec::new();
    let mut on = |core| mq5_on_core(broker.addr, core, true, &mut spare);
    let (a1, id_a1) = on(0);
    let (a2, id_a2) = on(0);
    let (a3, id_a3) = on(0);
    let (b1, id_b1) = on(1);
    let (b2, id_b2) = on(1);
    let (publisher, _) = mq5_on_core(broker.addr, 1, false, &mut spare);

    a1.subscribe(&t, Q5::AtLeastOnce);
    a1.disconnect();
    assert!(
        publish_succeeds(&publisher, &t, Q5::AtLeastOnce, false, b"kept"),
        "queued for the offline session"
    );
    a2.disconnect();
    b1.disconnect();
    b2.disconnect();
    a3.disconnect();
    let evicted = poll_until(WAIT, || {
        (!publish_succeeds(&publisher, &t, Q5::AtLeastOnce, false, b"gone")).then_some(())
    });
    assert!(
        evicted.is_some(),
        "the evicted session's subscription is still on core 1"
    );

    let metrics =
        stats_support::Metrics(stats_support::http_get(broker.stats_addr(), "/metrics", &[]).1);
    let evicted = |core: &str| metrics.sum("vane_sessions_evicted_total", &[("core", core)]);
    assert_eq!((evicted("0"), evicted("1")), (1.0, 0.0));
    let (_, body) = stats_support::http_get(broker.stats_addr(), "/stats", &[]);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["metrics"]["vane_sessions_evicted_total"]["total"], 1.0);

    let mut back = Vec::new();
    for (id, present) in [
        (&id_a1, false),
        (&id_a2, true),
        (&id_a3, true),
        (&id_b1, true),
        (&id_b2, true),
    ] {
        let c = Mq5::connect(mq5_persistent(broker.addr, id, true));
        assert_eq!(c.connack.session_present, present, "{id}");
        back.push(c);
    }
}
