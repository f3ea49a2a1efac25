//! The raw client: a byte-level MQTT client over a blocking
//! `std::net::TcpStream`, for exact protocol sequences (malformed bytes,
//! packet orders a library client would not send), and placing two
//! connections on the broker's two cores.
//!
//! Owns: reading and decoding what the broker sends within a deadline,
//! the QoS flows on the client side, and waiting for a close. Does not own:
//! the broker under test or the packet builders (`common/mod.rs`).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use vane::codec::{
    ClientId, ConnAck, Connect, ConnectReasonCode, Decoder, Disconnect, DisconnectReasonCode,
    Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QosPid, SubAck, Subscribe,
    MAX_PACKET_SIZE_LIMIT,
};

use super::{encode, WAIT};

/// What a raw read produced.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a test helper, matched by value
pub enum Next {
    Packet(Packet),
    /// Nothing arrived in time.
    Timeout,
    /// The broker closed the connection (EOF or reset).
    Closed,
}

/// A byte-level MQTT client for exact protocol sequences.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    /// Packets read while waiting for something else, handed out first.
    stash: VecDeque<Packet>,
    pub version: ProtocolVersion,
}

impl Raw {
    /// Opens a TCP connection; nothing is sent.
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: BytesMut::new(),
            stash: VecDeque::new(),
            version,
        }
    }

    /// Sends `connect` and returns the CONNACK (panics on anything else).
    pub fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr, connect.protocol);
        raw.send(&Packet::Connect(Box::new(connect)));
        let ack = raw.expect_connack();
        (raw, ack)
    }

    /// Connects and asserts success.
    pub fn connected(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let (raw, ack) = Raw::connect(addr, connect);
        assert_eq!(ack.code, ConnectReasonCode::Success, "CONNACK {ack:?}");
        (raw, ack)
    }

    /// A clean 5.0 connection with a broker-assigned id; returns the core
    /// it landed on (the assigned id names it) and the id.
    pub fn v5_assigned(addr: SocketAddr, mut c: Connect) -> (Raw, usize, String) {
        c.client_id = ClientId::try_from("").expect("empty id");
        let (raw, ack) = Raw::connected(addr, c);
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("assigned id")
            .as_str()
            .to_string();
        (raw, core_of_assigned(&id), id)
    }

    pub fn send(&mut self, packet: &Packet) {
        let bytes = encode(packet, self.version);
        self.send_bytes(&bytes);
    }

    /// Writes `bytes` as they are; a write error (the broker closed) is ignored.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn publish(&mut self, p: Publish) {
        self.send(&Packet::Publish(p));
    }

    /// Subscribes and returns the SUBACK. PUBLISHes that arrive before it
    /// (the server may start sending before SUBACK, 3.1.1 and 5.0 §3.8.4)
    /// are kept for the next reads.
    pub fn subscribe(&mut self, s: Subscribe) -> SubAck {
        let id = s.pid;
        self.send(&Packet::Subscribe(s));
        let mut early = Vec::new();
        loop {
            match self.expect() {
                Packet::SubAck(ack) => {
                    assert_eq!(ack.pid, id);
                    self.stash.extend(early);
                    return ack;
                }
                p @ Packet::Publish(_) => early.push(p),
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::NormalDisconnection,
        )));
        // Wait for the broker to close, so the session is detached before
        // the caller goes on.
        let _ = self.expect_closed();
    }

    /// Closes the socket without DISCONNECT: an abrupt close.
    pub fn drop_abruptly(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Reads the next packet, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Next {
        if let Some(packet) = self.stash.pop_front() {
            return Next::Packet(packet);
        }
        let deadline = Instant::now() + timeout;
        let decoder = Decoder::new(self.version, MAX_PACKET_SIZE_LIMIT);
        loop {
            match decoder.decode(&mut self.buf) {
                Ok(Some(packet)) => return Next::Packet(packet),
                Ok(None) => {}
                Err(error) => panic!("broker sent a malformed packet: {error}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Timeout;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Next::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Closed,
            }
        }
    }

    /// The next packet; panics on a timeout or a close.
    #[track_caller]
    pub fn expect(&mut self) -> Packet {
        match self.recv(WAIT) {
            Next::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    #[track_caller]
    pub fn expect_connack(&mut self) -> ConnAck {
        match self.expect() {
            Packet::ConnAck(ack) => *ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next PUBLISH, acknowledging nothing.
    #[track_caller]
    pub fn expect_publish(&mut self) -> Publish {
        match self.expect() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, completing its QoS flow (PUBACK, or PUBREC then
    /// PUBREL/PUBCOMP).
    #[track_caller]
    pub fn expect_publish_acked(&mut self) -> Publish {
        let p = self.expect_publish();
        self.ack(&p);
        p
    }

    /// Acknowledges a received PUBLISH per its QoS.
    #[track_caller]
    pub fn ack(&mut self, p: &Publish) {
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(&Packet::PubAck(PubAck::new(id))),
            QosPid::ExactlyOnce(id) => {
                self.send(&Packet::PubRec(PubRec::new(id)));
                let mut other = Vec::new();
                loop {
                    match self.expect() {
                        Packet::PubRel(rel) if rel.pid == id => break,
                        p @ Packet::Publish(_) => other.push(p),
                        p => panic!("expected PUBREL, got {p:?}"),
                    }
                }
                self.stash.extend(other);
                self.send(&Packet::PubComp(PubComp::new(id)));
            }
        }
    }

    /// Publishes at QoS 1 or 2 and completes the flow, returning the PUBACK
    /// or PUBREC reason. Publishes arriving meanwhile are returned too.
    #[track_caller]
    pub fn publish_acked(&mut self, p: Publish) -> Vec<Publish> {
        let qp = p.qos_pid;
        self.publish(p);
        let mut others = Vec::new();
        let id = match qp {
            QosPid::AtMostOnce => return others,
            QosPid::AtLeastOnce(id) | QosPid::ExactlyOnce(id) => id,
        };
        loop {
            match self.expect() {
                Packet::PubAck(ack) if matches!(qp, QosPid::AtLeastOnce(_)) => {
                    assert_eq!(ack.pid, id);
                    return others;
                }
                Packet::PubRec(rec) if matches!(qp, QosPid::ExactlyOnce(_)) => {
                    assert_eq!(rec.pid, id);
                    self.send(&Packet::PubRel(PubRel::new(id)));
                }
                Packet::PubComp(comp) => {
                    assert_eq!(comp.pid, id);
                    return others;
                }
                Packet::Publish(p) => others.push(p),
                other => panic!("unexpected {other:?} while publishing"),
            }
        }
    }

    /// Reads until the broker closes; returns what came before. Panics if
    /// the connection stays open past [`WAIT`].
    #[track_caller]
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Next::Packet(p) => packets.push(p),
                Next::Closed => return packets,
                Next::Timeout => panic!("connection still open; got {packets:?}"),
            }
        }
    }

    /// 5.0: the broker sends DISCONNECT with `reason` and closes.
    #[track_caller]
    pub fn expect_disconnect(&mut self, reason: DisconnectReasonCode) {
        let packets = self.expect_closed();
        let last = packets.iter().rev().find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason),
            _ => None,
        });
        assert_eq!(last, Some(reason), "packets before close: {packets:?}");
    }

    /// Waits for a PUBLISH on `topic_name`, skipping (and acknowledging)
    /// others.
    #[track_caller]
    pub fn expect_publish_on(&mut self, topic_name: &str) -> Publish {
        loop {
            let p = self.expect_publish();
            self.ack(&p);
            if p.topic.as_str() == topic_name {
                return p;
            }
        }
    }

    /// A PINGREQ/PINGRESP round trip: everything the broker wrote before
    /// answering it is returned. Used as a barrier instead of a sleep.
    #[track_caller]
    pub fn ping(&mut self) -> Vec<Packet> {
        self.send(&Packet::PingReq);
        let mut before = Vec::new();
        loop {
            match self.expect() {
                Packet::PingResp => return before,
                other => before.push(other),
            }
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }
}

/// The core an assigned client id names (`vane-<core>-...`).
pub fn core_of_assigned(id: &str) -> usize {
    id.split('-')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("assigned id {id} does not name a core"))
}

/// Raw 5.0 connections, one on each of cores 0 and 1: opens connections
/// with broker-assigned ids until both cores are covered. `make` gives the
/// CONNECT (its client id is replaced).
pub fn raw_pair_on_cores(addr: SocketAddr, make: impl Fn() -> Connect) -> [(Raw, String); 2] {
    let mut slots: [Option<(Raw, String)>; 2] = [None, None];
    for _ in 0..64 {
        let (raw, core, id) = Raw::v5_assigned(addr, make());
        if slots[core].is_none() {
            slots[core] = Some((raw, id));
        } else {
            raw.disconnect();
        }
        if slots.iter().all(Option::is_some) {
            let [a, b] = slots;
            return [a.expect("core 0"), b.expect("core 1")];
        }
    }
    panic!("64 connections all landed on one core");
}
