//! CONNECT / CONNACK for every protocol level, client identifiers, the
//! limits CONNACK advertises, and graceful shutdown.
#![cfg(feature = "runtime")]

mod common;

use std::time::Duration;

use common::*;
use vane::codec::{ConnectReasonCode, DisconnectReasonCode, Packet, QoS};

/// [MQTT-3.1.0-1] / [MQTT-3.2.0-1]: a 3.1.1 client (rumqttc) connects and
/// gets CONNACK 0 with Session Present 0 for a clean session
/// ([MQTT-3.2.2-1]), then exchanges messages.
#[test]
fn v311_connects_and_exchanges_messages() {
    let broker = Broker::start();
    let id = unique("c311");
    let client = Mq4::connect(mq4_options(broker.addr, &id));
    assert_eq!(client.connack.code, rumqttc::ConnectReturnCode::Success);
    assert!(!client.connack.session_present);
    let t = unique("t/c311");
    client.subscribe(&t, rumqttc::QoS::AtLeastOnce);
    client.publish(&t, rumqttc::QoS::AtLeastOnce, false, b"hello");
    let p = client.next_publish();
    assert_eq!(&p.payload[..], b"hello");
    client.disconnect();
}

/// 5.0 §3.2: a 5.0 client (rumqttc) connects with reason code Success.
#[test]
fn v5_connects_and_exchanges_messages() {
    let broker = Broker::start();
    let client = Mq5::connect(mq5_options(broker.addr, &unique("c5")));
    assert_eq!(
        client.connack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    let t = unique("t/c5");
    client.subscribe(&t, rumqttc::v5::mqttbytes::QoS::ExactlyOnce);
    client.publish(&t, rumqttc::v5::mqttbytes::QoS::ExactlyOnce, false, b"hi");
    assert_eq!(&client.next_publish().payload[..], b"hi");
    client.disconnect();
}

/// MQTT 3.1 ('MQIsdp', level 3): CONNECT is accepted with return code 0
/// and a subscriber at level 3 receives a message at QoS 0, 1 and 2.
#[test]
fn v31_mqisdp_connect_subscribe_publish() {
    let broker = Broker::start();
    let (mut sub, ack) = Raw::connect(broker.addr, connect(V3, &unique("c31s")));
    assert_eq!(ack.code, ConnectReasonCode::Success);
    let t = unique("t/c31");
    let ack = sub.subscribe(subscribe(1, &t, QoS::ExactlyOnce));
    assert_eq!(ack.reason_codes.len(), 1);
    let (mut publisher, _) = Raw::connected(broker.addr, connect(V3, &unique("c31p")));
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publisher.publish_acked(publish(&t, format!("m{i}").as_bytes(), qos, i as u16 + 1));
        let p = sub.expect_publish_acked();
        assert_eq!(p.payload, format!("m{i}").as_bytes());
        assert_eq!(p.qos(), qos);
    }
    publisher.disconnect();
    sub.disconnect();
}

/// MQTT 3.1 requires a client id of 1 to 23 characters: an empty one is
/// refused with return code 0x02 (Identifier rejected) and the connection
/// is closed.
#[test]
fn v31_empty_client_id_is_rejected() {
    let broker = Broker::start();
    let (mut raw, ack) = Raw::connect(broker.addr, connect(V3, ""));
    assert_eq!(ack.code.to_v3(), 0x02);
    raw.expect_closed();
}

/// [MQTT-3.1.3-6] (3.1.1): an empty client id with CleanSession=1 is
/// accepted; the broker assigns one.
#[test]
fn v311_empty_client_id_with_clean_session_is_accepted() {
    let broker = Broker::start();
    let (mut raw, ack) = Raw::connect(broker.addr, connect(V4, ""));
    assert_eq!(ack.code, ConnectReasonCode::Success);
    assert!(!ack.session_present);
    assert!(raw.ping().is_empty());
    raw.disconnect();
}

/// [MQTT-3.1.3-8] (3.1.1): an empty client id with CleanSession=0 gets
/// CONNACK 0x02 (Identifier rejected) and the connection is closed
/// ([MQTT-3.2.2-5]).
#[test]
fn v311_empty_client_id_without_clean_session_is_rejected() {
    let broker = Broker::start();
    let mut c = connect(V4, "");
    c.clean_start = false;
    let (mut raw, ack) = Raw::connect(broker.addr, c);
    assert_eq!(ack.code.to_v3(), 0x02);
    assert!(!ack.session_present, "[MQTT-3.2.2-4]");
    raw.expect_closed();
}

/// 5.0 [MQTT-3.1.3-6]/[MQTT-3.2.2-16]: an empty client id is replaced by
/// one the server assigns and returns in Assigned Client Identifier; two
/// such clients get different ids.
#[test]
fn v5_empty_client_id_gets_an_assigned_identifier() {
    let broker = Broker::start();
    let (a, _, id_a) = Raw::v5_assigned(broker.addr, connect(V5, ""));
    let (b, _, id_b) = Raw::v5_assigned(broker.addr, connect(V5, ""));
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b);
    a.disconnect();
    b.disconnect();
    // rumqttc sees it too.
    let client = Mq5::connect(mq5_options(broker.addr, ""));
    let props = client.connack.properties.clone().expect("properties");
    assert!(props.assigned_client_identifier.is_some());
    client.disconnect();
}

/// 5.0 §3.2.2.3: CONNACK advertises the broker's limits: Receive Maximum,
/// Maximum Packet Size, Topic Alias Maximum, Retain/Wildcard/Subscription
/// Identifier/Shared Subscription available; values are the configured ones.
#[test]
fn v5_connack_advertises_limits() {
    let broker = Broker::with(|c| {
        c.limits.receive_maximum = 77;
        c.limits.max_packet_size = 4096;
        c.limits.topic_alias_maximum = 9;
    });
    let (raw, ack) = Raw::connected(broker.addr, connect(V5, &unique("lim")));
    let p = &ack.properties;
    assert_eq!(p.receive_maximum.map(|v| v.get()), Some(77));
    assert_eq!(p.maximum_packet_size.map(|v| v.get()), Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(9));
    assert_ne!(p.retain_available, Some(false));
    assert_ne!(p.wildcard_subscription_available, Some(false));
    assert_ne!(p.subscription_identifiers_available, Some(false));
    assert_ne!(p.shared_subscription_available, Some(false));
    raw.disconnect();
}

/// [MQTT-3.2.2-21]/[MQTT-3.1.2-21]: with a keepalive cap, a 5.0 client
/// asking for more is told Server Keep Alive.
#[test]
fn v5_server_keep_alive_caps_the_clients() {
    let broker = Broker::with(|c| c.limits.max_keepalive = 30);
    let mut c = connect(V5, &unique("ka"));
    c.keep_alive = 600;
    let (raw, ack) = Raw::connected(broker.addr, c);
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    raw.disconnect();
}

/// 3.1/3.1.1 have no Server Keep Alive: with `max_keepalive` set, a 3.x
/// CONNECT with keepalive 0 or above it is refused with return code 0x02
/// (as Mosquitto does), rather than being cut off at 1.5 times a value it
/// never heard of ([MQTT-3.1.2-24] is about the keepalive the client sent).
/// One within the bound is accepted and kept; a 5.0 client is still told
/// Server Keep Alive, even for keepalive 0.
#[test]
fn v3_keepalive_outside_max_keepalive_is_refused() {
    let broker = Broker::with(|c| c.limits.max_keepalive = 30);
    for version in [V3, V4] {
        for keep_alive in [0, 31, 600] {
            let mut c = connect(version, &unique("ka3"));
            c.keep_alive = keep_alive;
            let mut raw = Raw::open(broker.addr, version);
            raw.send(&Packet::Connect(Box::new(c)));
            let answers = raw.expect_closed();
            let [Packet::ConnAck(ack)] = &answers[..] else {
                panic!("{version:?} keepalive {keep_alive}: {answers:?}")
            };
            assert_eq!(ack.code, ConnectReasonCode::ClientIdentifierNotValid);
            assert_eq!(encode(&answers[0], version), [0x20, 0x02, 0x00, 0x02]);
        }
        let mut c = connect(version, &unique("ka3"));
        c.keep_alive = 30;
        let (mut raw, _) = Raw::connected(broker.addr, c);
        assert!(raw.ping().is_empty());
        raw.disconnect();
    }
    let mut c = connect(V5, &unique("ka5"));
    c.keep_alive = 0;
    let (raw, ack) = Raw::connected(broker.addr, c);
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(30),
        "[MQTT-3.2.2-21]"
    );
    raw.disconnect();
}

/// [MQTT-3.1.2-2] (3.1.1): an unsupported protocol level gets CONNACK
/// return code 0x01 and the connection is closed. Vane answers an unknown
/// level in the 3.1.1 layout (the oldest one a client can parse).
#[test]
fn unsupported_protocol_level_gets_0x01() {
    let broker = Broker::start();
    for level in [6u8, 2, 0x7f] {
        let mut raw = Raw::open(broker.addr, V4);
        // CONNECT "MQTT" level N, clean, keepalive 60, client id "x".
        raw.send_bytes(&[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60, 0, 1, b'x',
        ]);
        let packets = raw.expect_closed();
        match packets.as_slice() {
            [Packet::ConnAck(ack)] => {
                assert_eq!(ack.code.to_v3(), 0x01, "level {level}");
                assert!(!ack.session_present);
            }
            other => panic!("level {level}: expected CONNACK 0x01, got {other:?}"),
        }
    }
}

/// 5.0 [MQTT-3.1.2-2]: a CONNECT with protocol level 5 but an
/// unsupported protocol name/level pair ('MQIsdp' at level 5) gets a 5.0
/// CONNACK 0x84 (Unsupported Protocol Version) and a close.
#[test]
fn v5_unsupported_protocol_version_gets_0x84() {
    let broker = Broker::start();
    let mut raw = Raw::open(broker.addr, V5);
    // "MQIsdp" level 5, clean, keepalive 60, properties length 0, id "x".
    raw.send_bytes(&[
        0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 5, 0x02, 0, 60, 0, 0, 1, b'x',
    ]);
    let packets = raw.expect_closed();
    match packets.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ConnectReasonCode::UnsupportedProtocolVersion)
        }
        other => panic!("expected CONNACK 0x84, got {other:?}"),
    }
}

/// 5.0 §4.13 / Server::shutdown: every 5.0 client gets DISCONNECT 0x8B
/// (Server shutting down) and is closed; 3.1.1 clients are closed.
#[test]
fn graceful_shutdown_sends_0x8b() {
    let broker = Broker::start();
    let mut v5s: Vec<Raw> = (0..4)
        .map(|i| Raw::connected(broker.addr, connect(V5, &unique(&format!("sd{i}")))).0)
        .collect();
    let (mut v4, _) = Raw::connected(broker.addr, connect(V4, &unique("sd4")));
    for raw in &mut v5s {
        assert!(raw.ping().is_empty());
    }
    let stopper = std::thread::spawn(move || broker.shutdown());
    for raw in &mut v5s {
        raw.expect_disconnect(DisconnectReasonCode::ServerShuttingDown);
    }
    let rest = v4.expect_closed();
    assert!(
        rest.iter().all(|p| !matches!(p, Packet::Disconnect(_))),
        "3.1.1 has no server DISCONNECT: {rest:?}"
    );
    stopper.join().expect("shutdown thread");
}

/// Shutdown with an idle client connected finishes well within its 5 s
/// drain deadline, the client is closed, and once shut down the port no
/// longer accepts connections: every core's listener is closed.
#[test]
fn shutdown_completes_quickly_with_idle_clients() {
    let broker = Broker::start();
    let addr = broker.addr;
    let (mut idle, _) = Raw::connected(addr, connect(V4, &unique("idle")));
    assert!(idle.ping().is_empty());
    let started = std::time::Instant::now();
    broker.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    let rest = idle.expect_closed();
    assert!(rest.is_empty(), "3.1.1 gets no DISCONNECT: {rest:?}");
    // Several tries: with SO_REUSEPORT each lands on one of the listeners.
    for _ in 0..8 {
        let refused = std::net::TcpStream::connect(addr).map(|_| ()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}

/// MQTT 3.1 §3.1: the Client Identifier is 1 to 23 characters; a longer
/// one gets CONNACK return code 2 (Identifier rejected).
#[test]
fn v31_client_id_longer_than_23_is_rejected() {
    let broker = Broker::start();
    let (ok, ack) = Raw::connect(broker.addr, connect(V3, &"c".repeat(23)));
    assert_eq!(ack.code, ConnectReasonCode::Success);
    ok.disconnect();
    let (mut raw, ack) = Raw::connect(broker.addr, connect(V3, &"c".repeat(24)));
    assert_eq!(ack.code.to_v3(), 0x02);
    raw.expect_closed();
}

/// User name and password are accepted (Vane does no authentication) at
/// every level; 3.1.1 sends them with rumqttc.
#[test]
fn credentials_are_accepted() {
    let broker = Broker::start();
    for version in [V3, V4, V5] {
        let mut c = connect(version, &unique("cred"));
        c.username = Some(mstr("user"));
        c.password = Some(bytes::Bytes::from_static(b"secret"));
        let (raw, _) = Raw::connected(broker.addr, c);
        raw.disconnect();
    }
    let mut o = mq4_options(broker.addr, &unique("rcred"));
    o.set_credentials("user", "secret");
    Mq4::connect(o).disconnect();
}

/// A client may send packets right after CONNECT without waiting for
/// CONNACK (3.1.1 §3.1.4, 5.0 §3.1.4): CONNECT, SUBSCRIBE and PUBLISH in
/// one write are handled in order.
#[test]
fn pipelined_packets_after_connect() {
    let broker = Broker::start();
    for version in [V3, V4, V5] {
        let t = unique("pipe/t");
        let mut bytes = encode(
            &Packet::Connect(Box::new(connect(version, &unique("pipe")))),
            version,
        );
        bytes.extend(encode(
            &Packet::Subscribe(subscribe(1, &t, QoS::AtLeastOnce)),
            version,
        ));
        bytes.extend(encode(
            &Packet::Publish(publish(&t, b"to-myself", QoS::AtLeastOnce, 2)),
            version,
        ));
        let mut raw = Raw::open(broker.addr, version);
        raw.send_bytes(&bytes);
        assert!(matches!(raw.expect(), Packet::ConnAck(a) if a.code == ConnectReasonCode::Success));
        assert!(matches!(raw.expect(), Packet::SubAck(_)));
        let mut got_ack = false;
        let mut got_msg = false;
        while !(got_ack && got_msg) {
            match raw.expect() {
                Packet::PubAck(a) => {
                    assert_eq!(a.pid.get(), 2);
                    got_ack = true;
                }
                Packet::Publish(p) => {
                    assert_eq!(&p.payload[..], b"to-myself");
                    raw.ack(&p);
                    got_msg = true;
                }
                other => panic!("{version:?}: {other:?}"),
            }
        }
    }
}

/// A packet may arrive in pieces: CONNECT and PUBLISH written one byte at
/// a time are reassembled.
#[test]
fn packets_split_into_single_bytes() {
    let broker = Broker::start();
    let t = unique("split/t");
    let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("splits")));
    sub.subscribe(subscribe(1, &t, QoS::AtMostOnce));
    let mut raw = Raw::open(broker.addr, V5);
    for b in encode(
        &Packet::Connect(Box::new(connect(V5, &unique("split")))),
        V5,
    ) {
        raw.send_bytes(&[b]);
    }
    assert!(matches!(raw.expect(), Packet::ConnAck(_)));
    for b in encode(
        &Packet::Publish(publish(&t, &[9u8; 300], QoS::AtMostOnce, 1)),
        V5,
    ) {
        raw.send_bytes(&[b]);
    }
    assert_eq!(sub.expect_publish().payload.len(), 300);
}
