//! Malformed and protocol-violating input: each gets the right 5.0 reason
//! code (DISCONNECT or CONNACK) or a plain close for 3.x, and other
//! clients of the broker carry on unaffected. Also input beyond the
//! broker's limits that is refused without closing (SUBSCRIBE filters).
#![cfg(feature = "runtime")]

mod common;

use common::*;
use vane::codec::{
    ConnectReasonCode, DisconnectReasonCode, Packet, ProtocolVersion, QoS, SubscriptionId,
};

/// Two healthy clients that keep exchanging messages while bad ones come
/// and go.
struct Bystanders {
    sub: Raw,
    publisher: Raw,
    topic: String,
    n: u16,
}

impl Bystanders {
    fn new(broker: &Broker) -> Bystanders {
        let topic = unique("bystander/t");
        let (mut sub, _) = Raw::connected(broker.addr, connect(V5, &unique("bs")));
        sub.subscribe(subscribe(1, &topic, QoS::AtLeastOnce));
        let (publisher, _) = Raw::connected(broker.addr, connect(V4, &unique("bp")));
        Bystanders {
            sub,
            publisher,
            topic,
            n: 0,
        }
    }

    /// A message goes from the publisher to the subscriber.
    #[track_caller]
    fn check(&mut self) {
        self.n += 1;
        let payload = self.n.to_be_bytes();
        self.publisher
            .publish_acked(publish(&self.topic, &payload, QoS::AtLeastOnce, self.n));
        let got = self.sub.expect_publish_acked();
        assert_eq!(&got.payload[..], &payload, "bystanders disturbed");
    }
}

/// A connected client at `version`.
fn client(broker: &Broker, version: ProtocolVersion) -> Raw {
    Raw::connected(broker.addr, connect(version, &unique("bad"))).0
}

/// Sends `bytes` on a connected client at each version and checks the
/// outcome: 5.0 gets DISCONNECT `reason`, 3.x a close without DISCONNECT.
#[track_caller]
fn violate(broker: &Broker, by: &mut Bystanders, bytes: &[u8], reason: DisconnectReasonCode) {
    violate_with(broker, by, |_| bytes.to_vec(), reason)
}

/// [`violate`] with bytes made for each protocol level.
#[track_caller]
fn violate_with(
    broker: &Broker,
    by: &mut Bystanders,
    bytes: impl Fn(ProtocolVersion) -> Vec<u8>,
    reason: DisconnectReasonCode,
) {
    for version in [V3, V4, V5] {
        let mut c = client(broker, version);
        c.send_bytes(&bytes(version));
        if version == V5 {
            c.expect_disconnect(reason);
        } else {
            let packets = c.expect_closed();
            assert!(
                packets.iter().all(|p| !matches!(p, Packet::Disconnect(_))),
                "{version:?}: {packets:?}"
            );
        }
        by.check();
    }
}

/// [MQTT-3.1.0-1]: the first packet must be CONNECT; otherwise the
/// connection is closed without CONNACK.
#[test]
fn first_packet_not_connect() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let firsts: [&[u8]; 4] = [
        &[0xC0, 0x00],                                     // PINGREQ
        &[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i'],       // PUBLISH
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], // SUBSCRIBE
        &[0xE0, 0x00],                                     // DISCONNECT
    ];
    for bytes in firsts {
        let mut raw = Raw::open(broker.addr, V4);
        raw.send_bytes(bytes);
        let packets = raw.expect_closed();
        assert!(packets.is_empty(), "answered {packets:?}");
        by.check();
    }
}

/// [MQTT-3.1.0-2]: a second CONNECT is a protocol error: 5.0 DISCONNECT
/// 0x82, 3.x close.
#[test]
fn second_connect() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    for version in [V3, V4, V5] {
        let mut c = client(&broker, version);
        c.send(&Packet::Connect(Box::new(connect(version, "second"))));
        if version == V5 {
            c.expect_disconnect(DisconnectReasonCode::ProtocolError);
        } else {
            c.expect_closed();
        }
        by.check();
    }
}

/// [MQTT-3.1.2-2]: unsupported protocol level: CONNACK 0x01 (3.1.1 form)
/// and close; bystanders unaffected. (5.0's 0x84 is in connect.rs.)
#[test]
fn unsupported_protocol_level_leaves_others_alone() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let mut raw = Raw::open(broker.addr, V4);
    raw.send_bytes(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 9, 0x02, 0, 60, 0, 1, b'x',
    ]);
    match raw.expect_closed().as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.code.to_v3(), 0x01),
        other => panic!("{other:?}"),
    }
    by.check();
}

/// 5.0 [MQTT-3.2.2-... §3.1.2.11.4] / Maximum Packet Size: a packet larger
/// than the broker's maximum gets DISCONNECT 0x95 (Packet too large); 3.x
/// is closed. A CONNECT that is too large gets CONNACK 0x95.
#[test]
fn oversized_packet() {
    let broker = Broker::with(|c| c.limits.max_packet_size = 1024);
    let mut by = Bystanders::new(&broker);
    let big = {
        let mut b = Vec::new();
        let p = Packet::Publish(publish("big/t", &[0u8; 2000], QoS::AtMostOnce, 1));
        b.extend(encode(&p, V4));
        b
    };
    violate(&broker, &mut by, &big, DisconnectReasonCode::PacketTooLarge);
    // Only the header is needed to reject it: the body never comes.
    violate(
        &broker,
        &mut by,
        &big[..4],
        DisconnectReasonCode::PacketTooLarge,
    );

    let mut c = connect(V5, &unique("bigc"));
    c.will = Some(will("w", &"x".repeat(2000), QoS::AtMostOnce, false));
    let (mut raw, ack) = Raw::connect(broker.addr, c);
    assert_eq!(ack.code, ConnectReasonCode::PacketTooLarge);
    raw.expect_closed();
    by.check();
}

/// Fixed-header flags that are reserved ([MQTT-2.2.2-1]/[MQTT-2.2.2-2]
/// 3.1.1, [MQTT-2.1.3-1] 5.0), and PUBLISH QoS 3 ([MQTT-3.3.1-4]), are
/// malformed: 5.0 DISCONNECT 0x81, 3.x close.
#[test]
fn reserved_flags() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    // SUBSCRIBE with flags 0000 instead of 0010.
    violate(
        &broker,
        &mut by,
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        DisconnectReasonCode::MalformedPacket,
    );
    // PINGREQ with a flag set.
    violate(
        &broker,
        &mut by,
        &[0xC1, 0x00],
        DisconnectReasonCode::MalformedPacket,
    );
    // PUBLISH with QoS 3.
    violate(
        &broker,
        &mut by,
        &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01],
        DisconnectReasonCode::MalformedPacket,
    );
    // Packet type 0 is reserved.
    violate(
        &broker,
        &mut by,
        &[0x00, 0x00],
        DisconnectReasonCode::MalformedPacket,
    );
}

/// [MQTT-3.1.2-3]: the CONNECT reserved flag must be 0: 5.0 CONNACK 0x81
/// Malformed Packet; 3.1.1 close.
#[test]
fn connect_reserved_flag() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let mut raw = Raw::open(broker.addr, V5);
    raw.send_bytes(&[
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x03, 0, 60, 0, 0, 1, b'x',
    ]);
    match raw.expect_closed().as_slice() {
        [Packet::ConnAck(ack)] => assert_eq!(ack.code, ConnectReasonCode::MalformedPacket),
        other => panic!("{other:?}"),
    }
    let mut raw = Raw::open(broker.addr, V4);
    raw.send_bytes(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 60, 0, 1, b'x',
    ]);
    let rest = raw.expect_closed();
    assert!(rest
        .iter()
        .all(|p| !matches!(p, Packet::ConnAck(a) if a.code == ConnectReasonCode::Success)));
    by.check();
}

/// [MQTT-3.3.2-2]: a Topic Name must not contain wildcards: 5.0
/// DISCONNECT 0x90 (Topic Name invalid), 3.x close.
#[test]
fn topic_name_with_wildcard() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    for t in [&b"a/+"[..], b"a/#", b"+"] {
        let bytes = |version: ProtocolVersion| {
            let props: &[u8] = if version == V5 { &[0] } else { &[] };
            let mut v = vec![
                0x30,
                (2 + t.len() + props.len() + 1) as u8,
                0,
                t.len() as u8,
            ];
            v.extend_from_slice(t);
            v.extend_from_slice(props);
            v.push(b'x');
            v
        };
        violate_with(
            &broker,
            &mut by,
            bytes,
            DisconnectReasonCode::TopicNameInvalid,
        );
    }
}

/// 5.0 [MQTT-3.3.4-6]: a PUBLISH from a client must not carry a
/// Subscription Identifier: DISCONNECT 0x82.
#[test]
fn subscription_identifier_in_client_publish() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let mut c = client(&broker, V5);
    let mut p = publish("sid/t", b"x", QoS::AtLeastOnce, 1);
    p.properties.subscription_identifiers = [SubscriptionId::new(5).unwrap()].into_iter().collect();
    c.publish(p);
    c.expect_disconnect(DisconnectReasonCode::ProtocolError);
    by.check();
}

/// 5.0 [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol
/// error: DISCONNECT 0x82.
#[test]
fn no_local_on_shared_subscription() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let mut c = client(&broker, V5);
    c.send(&Packet::Subscribe(subscribe_with(
        1,
        &[(
            "$share/g/t",
            vane::codec::SubscriptionOptions {
                qos: QoS::AtMostOnce,
                no_local: true,
                ..Default::default()
            },
        )],
    )));
    c.expect_disconnect(DisconnectReasonCode::ProtocolError);
    by.check();
}

/// Framing errors: a five-byte Remaining Length, and a PUBLISH whose topic
/// is not valid UTF-8 ([MQTT-1.5.4-1] 5.0 / [MQTT-1.5.3-1] 3.1.1): 5.0
/// DISCONNECT 0x81, 3.x close.
#[test]
fn framing_and_utf8_errors() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    violate(
        &broker,
        &mut by,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        DisconnectReasonCode::MalformedPacket,
    );
    violate(
        &broker,
        &mut by,
        &[0x30, 0x06, 0x00, 0x02, 0xC3, 0x28, 0x00, b'x'],
        DisconnectReasonCode::MalformedPacket,
    );
}

/// A SUBSCRIBE with no topic filter ([MQTT-3.8.3-3] 3.1.1, [MQTT-3.8.3-2]
/// 5.0) is a protocol error: 5.0 DISCONNECT 0x82, 3.x close.
#[test]
fn empty_subscribe() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    for version in [V4, V5] {
        let mut c = client(&broker, version);
        if version == V5 {
            c.send_bytes(&[0x82, 0x03, 0x00, 0x01, 0x00]);
            c.expect_disconnect(DisconnectReasonCode::ProtocolError);
        } else {
            c.send_bytes(&[0x82, 0x02, 0x00, 0x01]);
            c.expect_closed();
        }
        by.check();
    }
}

/// A client that connects and then sends garbage mid-stream does not stop
/// the broker from serving a fresh connection with the same client id.
#[test]
fn garbage_then_reconnect_with_same_id() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let id = unique("garbage");
    let (mut c, _) = Raw::connected(broker.addr, connect(V5, &id));
    c.send_bytes(&[0xFF; 16]);
    c.expect_closed();
    let (again, ack) = Raw::connected(broker.addr, connect(V5, &id));
    assert_eq!(ack.code, ConnectReasonCode::Success);
    again.disconnect();
    by.check();
}

/// A SUBSCRIBE asking for QoS 3 ([MQTT-3.8.3-4] 3.1.1; 5.0 §3.8.3.1
/// "a Protocol Error"): 5.0 DISCONNECT 0x82, 3.x close.
#[test]
fn subscribe_with_qos_3() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    violate_with(
        &broker,
        &mut by,
        |version| {
            if version == V5 {
                vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03]
            } else {
                vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]
            }
        },
        DisconnectReasonCode::ProtocolError,
    );
}

/// 5.0 §3.1.2.11.3/§3.1.2.11.4: Receive Maximum 0 and Maximum Packet Size
/// 0 in CONNECT are protocol errors: CONNACK 0x82 and close.
#[test]
fn connect_properties_with_zero_values() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    for prop in [[0x21u8, 0, 0, 0, 0], [0x27, 0, 0, 0, 0]] {
        let len = if prop[0] == 0x21 { 3 } else { 5 };
        let mut v = vec![
            0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, len as u8,
        ];
        v.extend_from_slice(&prop[..len]);
        v.extend_from_slice(&[0, 1, b'x']);
        v[1] = (v.len() - 2) as u8;
        let mut raw = Raw::open(broker.addr, V5);
        raw.send_bytes(&v);
        match raw.expect_closed().as_slice() {
            [Packet::ConnAck(ack)] => assert_eq!(ack.code, ConnectReasonCode::ProtocolError),
            other => panic!("{other:?}"),
        }
        by.check();
    }
}

/// A SUBSCRIBE filter beyond `max_topic_length` or `max_topic_levels` is
/// refused on its own, 5.0 with 0x97 Quota exceeded (and a Reason String),
/// 3.x with 0x80; the other filters of the same SUBSCRIBE are granted and
/// work, and the connection stays open.
#[test]
fn subscribe_filters_beyond_the_topic_limits() {
    let broker = Broker::with(|c| {
        c.limits.max_topic_levels = 4;
        c.limits.max_topic_length = 40;
    });
    let mut by = Bystanders::new(&broker);
    for (version, refused) in [(V3, 0x80), (V4, 0x80), (V5, 0x97)] {
        let t = unique("lim");
        let (mut c, _) = Raw::connected(broker.addr, connect(version, &unique("lim")));
        let deep = format!("{t}/a/b/c/d");
        let long = format!("{t}/{}", "x".repeat(40));
        let ack = c.subscribe(subscribe_with(
            1,
            &[
                (&deep, opts(QoS::AtMostOnce)),
                (&t, opts(QoS::AtLeastOnce)),
                (&long, opts(QoS::AtMostOnce)),
                ("+/#", opts(QoS::AtMostOnce)),
            ],
        ));
        // The codes are the SUBACK's last bytes, in 3.x form for 3.x.
        let wire = encode(&Packet::SubAck(ack.clone()), version);
        assert_eq!(ack.reason_codes.len(), 4, "{version:?}");
        assert_eq!(
            wire[wire.len() - 4..],
            [refused, 0x01, refused, 0x00],
            "{version:?}"
        );
        assert_eq!(version == V5, ack.properties.reason_string.is_some());
        let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("limp")));
        p.publish_acked(publish(&t, b"granted", QoS::AtLeastOnce, 1));
        let got = c.expect_publish_acked();
        assert_eq!(&got.payload[..], b"granted", "{version:?}");
        assert!(c.ping().iter().all(|p| matches!(p, Packet::Publish(_))));
        by.check();
    }
}

/// 5.0 §3.1.2.11.10: "It is a Protocol Error to include Authentication
/// Data if there is no Authentication Method": CONNACK 0x82 and close.
#[test]
fn authentication_data_without_method() {
    let broker = Broker::start();
    let mut by = Bystanders::new(&broker);
    let mut c = connect(V5, &unique("ad"));
    c.properties.authentication_data = Some(bytes::Bytes::from_static(b"token"));
    let mut raw = Raw::open(broker.addr, V5);
    raw.send(&Packet::Connect(Box::new(c)));
    match raw.expect_closed().as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ConnectReasonCode::ProtocolError);
            assert!(ack.properties.reason_string.is_some(), "{ack:?}");
        }
        other => panic!("{other:?}"),
    }
    by.check();
}
