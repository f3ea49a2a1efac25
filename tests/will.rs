//! Will messages: when they are published and when not, Will Delay
//! Interval, will retain and will QoS.
#![cfg(feature = "runtime")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use vane::codec::{Connect, Disconnect, DisconnectReasonCode, Packet, ProtocolVersion, QoS};

/// A subscriber to `t` at QoS 2.
fn watcher(broker: &Broker, version: ProtocolVersion, t: &str) -> Raw {
    let (mut w, _) = Raw::connected(broker.addr, connect(version, &unique("watch")));
    w.subscribe(subscribe(1, t, QoS::ExactlyOnce));
    w
}

fn with_will(version: ProtocolVersion, t: &str, payload: &str, qos: QoS) -> Connect {
    let mut c = connect(version, &unique("willer"));
    c.will = Some(will(t, payload, qos, false));
    c
}

/// Publishes a sentinel on `t` from a fresh client; returns once the
/// watcher has it. Anything the watcher got before it is returned.
fn sentinel(broker: &Broker, w: &mut Raw, t: &str) -> Vec<vane::codec::Publish> {
    let (mut p, _) = Raw::connected(broker.addr, connect(V4, &unique("sentinel")));
    p.publish_acked(publish(t, b"sentinel", QoS::AtLeastOnce, 1));
    p.disconnect();
    let mut before = Vec::new();
    loop {
        let got = w.expect_publish_acked();
        if &got.payload[..] == b"sentinel" {
            return before;
        }
        before.push(got);
    }
}

/// [MQTT-3.1.2-8] (3.1.1/5.0): the will is published when the network
/// connection closes without DISCONNECT, at every protocol level.
#[test]
fn will_on_abrupt_close() {
    for version in [V3, V4, V5] {
        let broker = Broker::start();
        let t = unique("will/abrupt");
        let mut w = watcher(&broker, V4, &t);
        let (c, _) = Raw::connected(
            broker.addr,
            with_will(version, &t, "gone", QoS::AtLeastOnce),
        );
        c.drop_abruptly();
        let p = w.expect_publish_acked();
        assert_eq!(&p.payload[..], b"gone", "{version:?}");
        assert_eq!(p.qos(), QoS::AtLeastOnce);
    }
}

/// [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] (5.0): after a normal
/// DISCONNECT the will is discarded, not published.
#[test]
fn no_will_after_normal_disconnect() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("will/normal");
        let mut w = watcher(&broker, V4, &t);
        let (c, _) = Raw::connected(
            broker.addr,
            with_will(version, &t, "should-not", QoS::AtLeastOnce),
        );
        c.disconnect();
        let before = sentinel(&broker, &mut w, &t);
        assert!(before.is_empty(), "{version:?}: will published: {before:?}");
    }
}

/// 5.0 §3.14.2.1: DISCONNECT with 0x04 (Disconnect with Will Message)
/// publishes the will.
#[test]
fn v5_disconnect_with_will_message_publishes_it() {
    let broker = Broker::start();
    let t = unique("will/x04");
    let mut w = watcher(&broker, V5, &t);
    let (mut c, _) = Raw::connected(broker.addr, with_will(V5, &t, "asked", QoS::AtMostOnce));
    c.send(&Packet::Disconnect(Disconnect::new(
        DisconnectReasonCode::DisconnectWithWillMessage,
    )));
    c.expect_closed();
    assert_eq!(&w.expect_publish_acked().payload[..], b"asked");
}

/// [MQTT-3.1.2-8], [MQTT-3.14.4-3]: only a DISCONNECT with 0x00 Normal
/// disconnection discards the will; one with an error reason code (0x80
/// Unspecified error, 0x83 Implementation specific error) publishes it.
#[test]
fn v5_disconnect_with_an_error_code_publishes_the_will() {
    let broker = Broker::start();
    for reason in [
        DisconnectReasonCode::UnspecifiedError,
        DisconnectReasonCode::ImplementationSpecificError,
    ] {
        let t = unique("will/err");
        let mut w = watcher(&broker, V5, &t);
        let (mut c, _) = Raw::connected(broker.addr, with_will(V5, &t, "failed", QoS::AtLeastOnce));
        c.send(&Packet::Disconnect(Disconnect::new(reason)));
        c.expect_closed();
        assert_eq!(&w.expect_publish_acked().payload[..], b"failed", "{reason}");
    }
    let t = unique("will/x00");
    let mut w = watcher(&broker, V5, &t);
    let (mut c, _) = Raw::connected(broker.addr, with_will(V5, &t, "kept", QoS::AtLeastOnce));
    c.send(&Packet::Disconnect(Disconnect::new(
        DisconnectReasonCode::NormalDisconnection,
    )));
    c.expect_closed();
    let before = sentinel(&broker, &mut w, &t);
    assert!(before.is_empty(), "will published after 0x00: {before:?}");
}

/// [MQTT-3.1.2-24]: with keepalive 1 s, a silent client is disconnected
/// after 1.5 s, (5.0: DISCONNECT 0x8D Keep Alive timeout) and its will is
/// published ([MQTT-3.1.2-8]).
#[test]
fn will_on_keepalive_timeout() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("will/ka");
        let mut w = watcher(&broker, V4, &t);
        let mut c = with_will(version, &t, "silent", QoS::AtLeastOnce);
        c.keep_alive = 1;
        let started = Instant::now();
        let (mut silent, _) = Raw::connected(broker.addr, c);
        let packets = silent.expect_closed();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400),
            "{version:?}: closed after {waited:?}, before 1.5 x keepalive"
        );
        assert!(waited < Duration::from_secs(4), "{version:?}: {waited:?}");
        if version == V5 {
            assert!(
                matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason == DisconnectReasonCode::KeepAliveTimeout),
                "{packets:?}"
            );
        }
        assert_eq!(&w.expect_publish_acked().payload[..], b"silent");
    }
}

/// A client that sends PINGREQ within the keepalive stays connected past
/// 1.5 x keepalive ([MQTT-3.1.2-23]).
#[test]
fn pings_keep_a_connection_alive() {
    let broker = Broker::start();
    let mut c = connect(V4, &unique("pinger"));
    c.keep_alive = 1;
    let (mut raw, _) = Raw::connected(broker.addr, c);
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert!(raw.ping().is_empty());
        // Waiting is the point here: the client idles within its keepalive.
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(raw.ping().is_empty(), "still connected");
}

/// [MQTT-4.8.0-1] (5.0 §4.13) / 3.1.1 [MQTT-4.8.0-1]: a protocol error
/// closes the connection and publishes the will.
#[test]
fn will_on_protocol_error() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("will/err");
        let mut w = watcher(&broker, V4, &t);
        let (mut c, _) = Raw::connected(
            broker.addr,
            with_will(version, &t, "broken", QoS::AtMostOnce),
        );
        // A second CONNECT is a protocol error ([MQTT-3.1.0-2]).
        c.send(&Packet::Connect(Box::new(connect(version, "again"))));
        let packets = c.expect_closed();
        if version == V5 {
            assert!(
                matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason == DisconnectReasonCode::ProtocolError),
                "{packets:?}"
            );
        }
        assert_eq!(
            &w.expect_publish_acked().payload[..],
            b"broken",
            "{version:?}"
        );
    }
}

/// The will's QoS and RETAIN flag are honoured ([MQTT-3.1.2-14]..
/// [MQTT-3.1.2-17]): a retained will is stored for later subscribers.
#[test]
fn will_qos_and_retain() {
    let broker = Broker::start();
    let t = unique("will/ret");
    let mut w = watcher(&broker, V5, &t);
    let mut c = connect(V5, &unique("wr"));
    c.will = Some(will(&t, "retained-will", QoS::ExactlyOnce, true));
    let (c, _) = Raw::connected(broker.addr, c);
    c.drop_abruptly();
    let live = w.expect_publish_acked();
    assert_eq!(live.qos(), QoS::ExactlyOnce);
    assert_eq!(&live.payload[..], b"retained-will");
    let (mut late, _) = Raw::connected(broker.addr, connect(V5, &unique("late")));
    late.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
    let p = late.expect_publish_acked();
    assert!(
        p.retain,
        "the will was sent live to a later subscriber: {p:?}"
    );
    assert_eq!(
        p.qos(),
        QoS::AtLeastOnce,
        "min(will QoS 2, subscription QoS 1)"
    );
    assert_eq!(&p.payload[..], b"retained-will");
    assert!(late.ping().is_empty(), "the retained will arrived twice");
}

fn delayed_will_connect(id: &str, t: &str, delay: u32, expiry: u32) -> Connect {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    let mut w = will(t, "delayed", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(delay);
    c.will = Some(w);
    c
}

/// 5.0 [MQTT-3.1.3-9]: with a Will Delay Interval the will is published
/// only once the delay has passed.
#[test]
fn v5_will_delay_interval() {
    let broker = Broker::start();
    let t = unique("will/delay");
    let mut w = watcher(&broker, V5, &t);
    let (c, _) = Raw::connected(broker.addr, delayed_will_connect(&unique("wd"), &t, 2, 60));
    let closed = Instant::now();
    c.drop_abruptly();
    let p = w.expect_publish_acked();
    let after = closed.elapsed();
    assert_eq!(&p.payload[..], b"delayed");
    assert!(
        after >= Duration::from_millis(1900),
        "published after {after:?}"
    );
    assert!(after < Duration::from_secs(4), "published after {after:?}");
}

/// 5.0 [MQTT-3.1.3-9]: a client that reconnects to its session before the
/// delay ends cancels the will.
#[test]
fn v5_will_delay_cancelled_by_reconnect() {
    let broker = Broker::start();
    let t = unique("will/cancel");
    let id = unique("wc");
    let mut w = watcher(&broker, V5, &t);
    let (c, _) = Raw::connected(broker.addr, delayed_will_connect(&id, &t, 2, 60));
    let closed = Instant::now();
    c.drop_abruptly();
    let mut resumed = connect(V5, &id);
    resumed.clean_start = false;
    resumed.properties.session_expiry_interval = Some(60);
    let (again, ack) = Raw::connected(broker.addr, resumed);
    assert!(ack.session_present);
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "reconnected too late to test"
    );
    // The delay has to pass before we can tell the will was cancelled.
    let due = closed + Duration::from_millis(2600);
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
    let before = sentinel(&broker, &mut w, &t);
    assert!(
        before.is_empty(),
        "cancelled will was published: {before:?}"
    );
    again.disconnect();
}

/// 5.0 §3.1.3.2.2: a will whose delay is longer than the session expiry is
/// published when the session ends.
#[test]
fn v5_delayed_will_is_published_when_the_session_ends_first() {
    let broker = Broker::start();
    let t = unique("will/expiry");
    let mut w = watcher(&broker, V5, &t);
    let (c, _) = Raw::connected(broker.addr, delayed_will_connect(&unique("we"), &t, 30, 1));
    let closed = Instant::now();
    c.drop_abruptly();
    let p = w.expect_publish_acked();
    assert_eq!(&p.payload[..], b"delayed");
    assert!(closed.elapsed() < Duration::from_secs(4));
}

/// 5.0 §3.1.4 / [MQTT-3.1.4-3]: a connection closed because its session
/// was taken over ends like any other closed connection: its will (no
/// delay) is published.
#[test]
fn will_on_takeover() {
    for version in [V4, V5] {
        let broker = Broker::start();
        let t = unique("will/take");
        let mut w = watcher(&broker, V4, &t);
        let c = with_will(version, &t, "taken", QoS::AtLeastOnce);
        let id = c.client_id.as_str().to_string();
        let (mut old, _) = Raw::connected(broker.addr, c);
        let (new, _) = Raw::connected(broker.addr, connect(version, &id));
        old.expect_closed();
        assert_eq!(
            &w.expect_publish_acked().payload[..],
            b"taken",
            "{version:?}"
        );
        new.disconnect();
    }
}

/// 5.0 §3.1.3.2.2: a pending delayed will is published when its session
/// ends, which a reconnect with Clean Start = 1 does.
#[test]
fn v5_delayed_will_published_when_clean_start_ends_the_session() {
    let broker = Broker::start();
    let t = unique("will/cleanstart");
    let id = unique("wcs");
    let mut w = watcher(&broker, V5, &t);
    let (c, _) = Raw::connected(broker.addr, delayed_will_connect(&id, &t, 30, 60));
    let closed = Instant::now();
    c.drop_abruptly();
    // Wait for the broker to see the close: the session goes offline and
    // a resume would find it. A clean start instead ends it.
    let (again, ack) = Raw::connected(broker.addr, connect(V5, &id));
    assert!(!ack.session_present);
    assert_eq!(&w.expect_publish_acked().payload[..], b"delayed");
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "not the 30 s delay"
    );
    again.disconnect();
}

/// 5.0 [MQTT-3.1.2-8]/[MQTT-3.1.3-9]: when a live connection is taken
/// over by a CONNECT with Clean Start = 1, its session ends, so its will
/// is published even though its Will Delay Interval has not passed. With
/// Clean Start = 0 the session continues and the delayed will is not
/// published.
#[test]
fn v5_delayed_will_on_takeover_depends_on_clean_start() {
    let broker = Broker::start();
    for clean in [true, false] {
        let t = unique("will/takeover");
        let id = unique("wto");
        let mut w = watcher(&broker, V5, &t);
        let (mut old, _) = Raw::connected(broker.addr, delayed_will_connect(&id, &t, 30, 60));
        let mut c = connect(V5, &id);
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(60);
        let (again, ack) = Raw::connected(broker.addr, c);
        assert_eq!(ack.session_present, !clean);
        old.expect_disconnect(DisconnectReasonCode::SessionTakenOver);
        if clean {
            assert_eq!(&w.expect_publish_acked().payload[..], b"delayed");
        } else {
            let before = sentinel(&broker, &mut w, &t);
            assert!(
                before.is_empty(),
                "will of a continuing session: {before:?}"
            );
        }
        again.disconnect();
    }
}

/// 5.0 §3.1.3.2.2: with Session Expiry 0 the session ends with the
/// connection, so a delayed will is published at once.
#[test]
fn v5_delayed_will_with_session_expiry_zero_is_immediate() {
    let broker = Broker::start();
    let t = unique("will/exp0");
    let mut w = watcher(&broker, V5, &t);
    let (c, _) = Raw::connected(broker.addr, delayed_will_connect(&unique("we0"), &t, 30, 0));
    let closed = Instant::now();
    c.drop_abruptly();
    assert_eq!(&w.expect_publish_acked().payload[..], b"delayed");
    assert!(closed.elapsed() < Duration::from_secs(3));
}

/// 5.0 §3.1.3.2: the will's properties (Content Type, Response Topic,
/// Correlation Data, User Properties, Message Expiry) travel with it.
#[test]
fn v5_will_properties_pass_through() {
    let broker = Broker::start();
    let t = unique("will/props");
    let mut w = watcher(&broker, V5, &t);
    let mut c = connect(V5, &unique("wp"));
    let mut wl = will(&t, "props", QoS::AtLeastOnce, false);
    wl.properties.content_type = Some(mstr("text/plain"));
    wl.properties.response_topic = Some(topic("answer/here"));
    wl.properties.correlation_data = Some(bytes::Bytes::from_static(b"cd"));
    wl.properties.message_expiry_interval = Some(300);
    wl.properties.user_properties = vec![vane::codec::UserProperty {
        key: mstr("k"),
        value: mstr("v"),
    }];
    let sent = wl.properties.clone();
    c.will = Some(wl);
    let (c, _) = Raw::connected(broker.addr, c);
    c.drop_abruptly();
    let got = w.expect_publish_acked();
    assert_eq!(got.properties.content_type, sent.content_type);
    assert_eq!(got.properties.response_topic, sent.response_topic);
    assert_eq!(got.properties.correlation_data, sent.correlation_data);
    assert_eq!(got.properties.user_properties, sent.user_properties);
    let left = got.properties.message_expiry_interval.expect("expiry");
    assert!((299..=300).contains(&left));
}

/// Clients cannot publish to `$` topics, nor through a will: a CONNECT
/// whose will topic begins with `$` is refused, 5.0 with CONNACK 0x87 Not
/// authorized (and a Reason String), 3.1/3.1.1 with return code 0x05, and
/// no will reaches (or is retained on) the topic.
#[test]
fn will_on_a_dollar_topic_is_refused() {
    let broker = Broker::start();
    for (version, code) in [(V3, 0x05), (V4, 0x05), (V5, 0x87)] {
        let t = format!("$SYS/{}", unique("fake"));
        let mut c = connect(version, &unique("dw"));
        c.will = Some(will(&t, "forged", QoS::AtLeastOnce, true));
        let mut raw = Raw::open(broker.addr, version);
        raw.send(&Packet::Connect(Box::new(c)));
        let answers = raw.expect_closed();
        let [Packet::ConnAck(ack)] = &answers[..] else {
            panic!("{version:?}: expected one CONNACK, got {answers:?}")
        };
        let wire = encode(&answers[0], version);
        assert_eq!(wire[3], code, "{version:?}: {ack:?}");
        assert_eq!(ack.code, vane::codec::ConnectReasonCode::NotAuthorized);
        assert_eq!(version == V5, ack.properties.reason_string.is_some());
        // Nothing was published or retained there.
        let (mut w, _) = Raw::connected(broker.addr, connect(V5, &unique("dww")));
        w.subscribe(subscribe(1, &t, QoS::AtLeastOnce));
        assert!(w.ping().is_empty(), "{version:?}: a will reached {t}");
    }
}
