//! Taking over a client id while the session is busy: messages published
//! during the takeover reach the new connection, the old connection's
//! buffered input is dropped without harm, and a client id whose old
//! connection closes during the takeover is still handed on.
//!
//! The new connection's core is the kernel's choice, so each test repeats
//! enough rounds that same-core and cross-core takeovers both occur.
#![cfg(feature = "runtime")]

mod common;

use std::collections::BTreeSet;
use std::num::NonZeroU16;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use vane::codec::{Connect, Packet, QoS};

/// A 5.0 CONNECT that resumes (or starts) a session kept for 300 s.
fn resumable(id: &str) -> Connect {
    let mut c = connect(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    c.properties.receive_maximum = NonZeroU16::new(100);
    c
}

fn sequence_number(p: &vane::codec::Publish) -> u32 {
    u32::from_be_bytes(p.payload[..4].try_into().expect("4-byte payload"))
}

/// Publishes `n` QoS 1 messages numbered 0.., in windows of 20 sent before
/// their PUBACKs are awaited, so that some are always in flight.
fn publish_numbered(addr: std::net::SocketAddr, t: String, n: u32) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (mut p, _) = Raw::connected(addr, connect(V5, &unique("tk-pub")));
        let mut next = 0u32;
        while next < n {
            let window = (n - next).min(20);
            for i in 0..window {
                let seq = next + i;
                let id = (seq % 60_000 + 1) as u16;
                p.publish(publish(&t, &seq.to_be_bytes(), QoS::AtLeastOnce, id));
            }
            let mut acked = 0;
            while acked < window {
                match p.expect() {
                    Packet::PubAck(_) => acked += 1,
                    other => panic!("publisher got {other:?}"),
                }
            }
            next += window;
        }
        p.disconnect();
    })
}

/// [MQTT-3.1.4-3] with [MQTT-4.3.2-1]/[MQTT-4.4.0-1]: a persistent
/// session taken over while QoS 1 messages for it are being published
/// loses none of them. Every message the publisher had acknowledged
/// reaches either the old connection (which acknowledged it) or the new
/// one, and what reaches the new one for the first time comes in order
/// ([MQTT-4.6.0-6]); only resends carry DUP.
#[test]
fn messages_published_during_a_takeover_reach_the_new_connection() {
    const N: u32 = 2_000;
    let broker = Broker::start();
    for round in 0..6 {
        let t = unique("tk/t");
        let (mut old, _, id) = Raw::v5_assigned(broker.addr, resumable(""));
        old.subscribe(subscribe(1, &t, QoS::AtLeastOnce));

        // The old connection acknowledges everything it gets until it is
        // closed, and reports what it acknowledged.
        let (started_tx, started) = mpsc::channel();
        let old_reader = thread::spawn(move || {
            let mut acked = BTreeSet::new();
            loop {
                match old.recv(WAIT) {
                    Next::Packet(Packet::Publish(p)) => {
                        old.ack(&p);
                        acked.insert(sequence_number(&p));
                        if acked.len() == 100 {
                            let _ = started_tx.send(());
                        }
                    }
                    Next::Packet(Packet::Disconnect(_)) | Next::Closed => return acked,
                    Next::Packet(other) => panic!("old connection got {other:?}"),
                    Next::Timeout => panic!("old connection neither fed nor closed"),
                }
            }
        });
        let publisher = publish_numbered(broker.addr, t.clone(), N);
        started
            .recv_timeout(WAIT)
            .expect("the old connection receives");

        let (mut new, ack) = Raw::connected(broker.addr, resumable(&id));
        assert!(ack.session_present, "round {round}");
        let acked_by_old = old_reader.join().expect("old connection");

        let mut missing: BTreeSet<u32> = (0..N).filter(|s| !acked_by_old.contains(s)).collect();
        let mut last_first_delivery = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !missing.is_empty() {
            assert!(
                Instant::now() < deadline,
                "round {round}: {} messages never arrived, first {:?}",
                missing.len(),
                missing.iter().next()
            );
            let p = match new.recv(WAIT) {
                Next::Packet(Packet::Publish(p)) => p,
                other => panic!(
                    "round {round}: got {other:?} with {} messages missing, first {:?}; old acknowledged {}",
                    missing.len(),
                    missing.iter().next(),
                    acked_by_old.len()
                ),
            };
            new.ack(&p);
            let seq = sequence_number(&p);
            if !p.dup {
                if let Some(last) = last_first_delivery {
                    assert!(seq > last, "round {round}: {seq} after {last}");
                }
                last_first_delivery = Some(seq);
            }
            missing.remove(&seq);
        }
        publisher.join().expect("publisher");
        // Nothing else is owed: duplicates only for messages in flight at
        // the takeover.
        for packet in new.ping() {
            match packet {
                Packet::Publish(p) => assert!(
                    p.dup || acked_by_old.contains(&sequence_number(&p)),
                    "round {round}: an extra first delivery {p:?}"
                ),
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        new.disconnect();
    }
}

/// The old connection keeps sending while it is taken over: what it had
/// buffered when its session left is dropped with it, without bringing
/// down the core that served it ([MQTT-3.1.4-3]); the broker stays up for
/// every later client.
#[test]
fn a_busy_connection_taken_over_closes_cleanly() {
    let broker = Broker::start();
    for round in 0..20 {
        let t = unique("tk/busy");
        let id = unique("tk-busy");
        let (mut old, _) = Raw::connected(broker.addr, resumable(&id));
        // Many packets in one write, so they are buffered together on the
        // broker while the takeover lands between them.
        let mut burst = Vec::new();
        for i in 0..400u16 {
            let p = publish(&t, b"x", QoS::AtLeastOnce, i % 1000 + 1);
            burst.extend(encode(&Packet::Publish(p), V5));
        }
        old.send_bytes(&burst);
        let (mut new, ack) = Raw::connected(broker.addr, resumable(&id));
        assert!(ack.session_present, "round {round}");
        let _ = old.expect_closed();
        assert!(new.ping().is_empty(), "round {round}");
        new.disconnect();
    }
    // Both cores still serve.
    let [(mut a, _), (mut b, _)] = raw_pair_on_cores(broker.addr, || connect(V5, ""));
    assert!(a.ping().is_empty());
    assert!(b.ping().is_empty());
}

/// A clean connection whose client id is claimed again just as it closes:
/// the new connection gets its CONNACK (the claim is not left waiting for
/// a session that has already ended), and the id stays usable.
#[test]
fn a_claim_racing_the_old_connections_close_completes() {
    let broker = Broker::start();
    for round in 0..40 {
        let id = unique("tk-race");
        let (old, _) = Raw::connected(broker.addr, connect(V5, &id));
        let mut new = Raw::open(broker.addr, V5);
        new.send(&Packet::Connect(Box::new(connect(V5, &id))));
        old.drop_abruptly();
        let ack = new.expect_connack();
        assert_eq!(
            ack.code,
            vane::codec::ConnectReasonCode::Success,
            "round {round}"
        );
        assert!(new.ping().is_empty(), "round {round}");
        new.disconnect();
        // The id is free again.
        let (again, _) = Raw::connected(broker.addr, connect(V5, &id));
        again.disconnect();
    }
}
