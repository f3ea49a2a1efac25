//! Codec benches: Vane's codec against rumqttc's (`mqttbytes`) on the same
//! packets, in the same run.
//!
//! Every group has a `vane` and a `rumqttc` function over identical bytes:
//! - decode takes one whole packet off a `BytesMut` that holds exactly that
//!   packet (refilled from a prepared buffer outside the timed section, for
//!   both libraries alike) and drops the decoded packet inside it, so the
//!   time covers the packet's whole life (allocations made by the decoder
//!   are freed) and no harness copy of a large output value is timed;
//! - encode appends one packet to a cleared, reused `BytesMut`.
//!
//! Before anything is timed, `check_equivalence` asserts that both codecs
//! produce the same bytes and decode each other's output into the expected
//! packet, so both sides really do the same work.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use rumqttc::mqttbytes::v4 as r4;
use rumqttc::v5::mqttbytes as r5q;
use rumqttc::v5::mqttbytes::v5 as r5;

use vane::codec::{
    ClientId, ConnectProperties, Decoder, MqttStr, Packet, PacketId, PayloadFormat,
    ProtocolVersion, Publish, PublishProperties, QoS, QosPid, TopicName, UserProperty, Will,
    WillProperties, MAX_PACKET_SIZE_LIMIT,
};

const TOPIC: &str = "sensors/device-123/temperature";
const PID: u16 = 10;
const MAX: usize = 1 << 20;

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn mqtt_str(s: &str) -> MqttStr {
    MqttStr::try_from(s).unwrap()
}

// ---------------------------------------------------------------- PUBLISH

/// One PUBLISH case, built for both libraries and both protocol levels.
struct PublishCase {
    name: &'static str,
    vane: Packet,
    r4: r4::Publish,
    r5: r5::Publish,
}

fn publish_case(name: &'static str, qos: QoS, len: usize) -> PublishCase {
    let body = payload(len);
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(PacketId::new(PID).unwrap()),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(PacketId::new(PID).unwrap()),
    };
    let vane = Packet::Publish(Publish {
        dup: false,
        qos_pid,
        retain: false,
        topic: TopicName::try_from(TOPIC).unwrap(),
        properties: PublishProperties::default(),
        payload: body.clone(),
    });
    let pkid = if qos == QoS::AtMostOnce { 0 } else { PID };
    let mut r4p = r4::Publish::from_bytes(TOPIC, r4_qos(qos), body.clone());
    r4p.pkid = pkid;
    let mut r5p = r5::Publish::new(TOPIC, r5_qos(qos), body, None);
    r5p.pkid = pkid;
    PublishCase {
        name,
        vane,
        r4: r4p,
        r5: r5p,
    }
}

fn r4_qos(qos: QoS) -> rumqttc::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}

fn r5_qos(qos: QoS) -> r5q::QoS {
    match qos {
        QoS::AtMostOnce => r5q::QoS::AtMostOnce,
        QoS::AtLeastOnce => r5q::QoS::AtLeastOnce,
        QoS::ExactlyOnce => r5q::QoS::ExactlyOnce,
    }
}

// ---------------------------------------------------------------- CONNECT

/// A 5.0 CONNECT with connect properties, a will with will properties, a
/// user name and a password.
struct ConnectCase {
    vane: Packet,
    r5: (r5::Connect, Option<r5::LastWill>, Option<r5::Login>),
}

fn connect_case() -> ConnectCase {
    let user_props = [("region", "eu-west-1"), ("firmware", "2.4.1")];
    let vane = Packet::Connect(Box::new(vane::codec::Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: NonZeroU16::new(100),
            maximum_packet_size: NonZeroU32::new(MAX as u32),
            topic_alias_maximum: Some(16),
            user_properties: user_props
                .iter()
                .map(|(k, v)| UserProperty {
                    key: mqtt_str(k),
                    value: mqtt_str(v),
                })
                .collect(),
            ..ConnectProperties::default()
        },
        client_id: ClientId::try_from("device-123").unwrap(),
        will: Some(Will {
            topic: TopicName::try_from("sensors/device-123/status").unwrap(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(600),
                content_type: Some(mqtt_str("text/plain")),
                ..WillProperties::default()
            },
        }),
        username: Some(mqtt_str("sensor-user")),
        password: Some(Bytes::from_static(b"s3cr3t-passw0rd")),
    }));
    let connect = r5::Connect {
        keep_alive: 60,
        client_id: "device-123".into(),
        clean_start: true,
        properties: Some(r5::ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(100),
            max_packet_size: Some(MAX as u32),
            topic_alias_max: Some(16),
            user_properties: user_props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..r5::ConnectProperties::new()
        }),
    };
    let will = r5::LastWill {
        topic: Bytes::from_static(b"sensors/device-123/status"),
        message: Bytes::from_static(b"offline"),
        qos: r5q::QoS::AtLeastOnce,
        retain: true,
        properties: Some(r5::LastWillProperties {
            delay_interval: Some(30),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(600),
            content_type: Some("text/plain".into()),
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    };
    let login = r5::Login::new("sensor-user", "s3cr3t-passw0rd");
    ConnectCase {
        vane,
        r5: (connect, Some(will), Some(login)),
    }
}

// ---------------------------------------------------- equivalence checks

fn vane_encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).unwrap();
    buf
}

fn vane_decode(wire: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(wire);
    let packet = Decoder::new(version, MAX_PACKET_SIZE_LIMIT)
        .decode(&mut buf)
        .unwrap()
        .expect("a whole packet");
    assert!(buf.is_empty(), "decoder left bytes behind");
    packet
}

/// Both codecs write the same bytes for each case and decode each other's
/// bytes into the packet the other side started from.
fn check_equivalence(publishes: &[PublishCase], connect: &ConnectCase) {
    for case in publishes {
        // 3.1.1
        let vane = vane_encode(&case.vane, ProtocolVersion::V3_1_1);
        let mut theirs = BytesMut::new();
        case.r4.write(&mut theirs).unwrap();
        assert_eq!(vane, theirs, "{}: 3.1.1 bytes differ", case.name);
        assert_eq!(vane_decode(&theirs, ProtocolVersion::V3_1_1), case.vane);
        match r4::read(&mut vane.clone(), MAX).unwrap() {
            r4::Packet::Publish(p) => assert_eq!(p, case.r4, "{}", case.name),
            other => panic!("rumqttc decoded {other:?}"),
        }
        // 5.0
        let vane = vane_encode(&case.vane, ProtocolVersion::V5);
        let mut theirs = BytesMut::new();
        case.r5.write(&mut theirs).unwrap();
        assert_eq!(vane, theirs, "{}: 5.0 bytes differ", case.name);
        assert_eq!(vane_decode(&theirs, ProtocolVersion::V5), case.vane);
        match r5::Packet::read(&mut vane.clone(), Some(MAX)).unwrap() {
            r5::Packet::Publish(p) => assert_eq!(p, case.r5, "{}", case.name),
            other => panic!("rumqttc decoded {other:?}"),
        }
    }
    let vane = vane_encode(&connect.vane, ProtocolVersion::V5);
    let (c, w, l) = &connect.r5;
    let mut theirs = BytesMut::new();
    c.write(w, l, &mut theirs).unwrap();
    assert_eq!(vane, theirs, "CONNECT bytes differ");
    assert_eq!(vane_decode(&theirs, ProtocolVersion::V5), connect.vane);
    match r5::Packet::read(&mut vane.clone(), Some(MAX)).unwrap() {
        r5::Packet::Connect(c2, w2, l2) => {
            assert_eq!((&c2, &w2, &l2), (c, w, l));
        }
        other => panic!("rumqttc decoded {other:?}"),
    }
}

// ---------------------------------------------------------------- benches

fn bench_publish(c: &mut Criterion, case: &PublishCase, version: ProtocolVersion) {
    let level = if version.is_v5() { "v5" } else { "v311" };
    let wire = vane_encode(&case.vane, version).freeze();
    let size = wire.len() as u64;
    let decoder = Decoder::new(version, MAX_PACKET_SIZE_LIMIT);

    let mut g = c.benchmark_group(format!("decode/{}/{level}", case.name));
    g.throughput(Throughput::Bytes(size));
    g.bench_function("vane", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| drop(black_box(decoder.decode(black_box(buf)).unwrap().unwrap())),
            BatchSize::SmallInput,
        )
    });
    if version.is_v5() {
        g.bench_function("rumqttc", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| {
                    drop(black_box(
                        r5::Packet::read(black_box(buf), Some(MAX)).unwrap(),
                    ))
                },
                BatchSize::SmallInput,
            )
        });
    } else {
        g.bench_function("rumqttc", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| drop(black_box(r4::read(black_box(buf), MAX).unwrap())),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("encode/{}/{level}", case.name));
    g.throughput(Throughput::Bytes(size));
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("vane", |b| {
        b.iter(|| {
            out.clear();
            black_box(&case.vane)
                .encode(black_box(version), &mut out)
                .unwrap();
            black_box(&out);
        })
    });
    if version.is_v5() {
        g.bench_function("rumqttc", |b| {
            b.iter(|| {
                out.clear();
                black_box(&case.r5).write(&mut out).unwrap();
                black_box(&out);
            })
        });
    } else {
        g.bench_function("rumqttc", |b| {
            b.iter(|| {
                out.clear();
                black_box(&case.r4).write(&mut out).unwrap();
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn bench_connect(c: &mut Criterion, case: &ConnectCase) {
    let wire = vane_encode(&case.vane, ProtocolVersion::V5).freeze();
    let size = wire.len() as u64;
    let decoder = Decoder::new(ProtocolVersion::V5, MAX_PACKET_SIZE_LIMIT);

    let mut g = c.benchmark_group("decode/connect/v5");
    g.throughput(Throughput::Bytes(size));
    g.bench_function("vane", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| drop(black_box(decoder.decode(black_box(buf)).unwrap().unwrap())),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rumqttc", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                drop(black_box(
                    r5::Packet::read(black_box(buf), Some(MAX)).unwrap(),
                ))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("encode/connect/v5");
    g.throughput(Throughput::Bytes(size));
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("vane", |b| {
        b.iter(|| {
            out.clear();
            black_box(&case.vane)
                .encode(black_box(ProtocolVersion::V5), &mut out)
                .unwrap();
            black_box(&out);
        })
    });
    let (connect, will, login) = &case.r5;
    g.bench_function("rumqttc", |b| {
        b.iter(|| {
            out.clear();
            black_box(connect)
                .write(black_box(will), black_box(login), &mut out)
                .unwrap();
            black_box(&out);
        })
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let publishes = [
        publish_case("publish_qos0_64b", QoS::AtMostOnce, 64),
        publish_case("publish_qos1_1k", QoS::AtLeastOnce, 1024),
    ];
    let connect = connect_case();
    check_equivalence(&publishes, &connect);

    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for case in &publishes {
            bench_publish(c, case, version);
        }
    }
    bench_connect(c, &connect);
}

criterion_group!(benches, codec);
criterion_main!(benches);
