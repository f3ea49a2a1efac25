//! Shared helpers for the broker's integration tests: an in-process broker
//! on an ephemeral loopback port, a raw byte-level client over
//! `std::net::TcpStream`, and blocking wrappers around rumqttc's 3.1.1 and
//! 5.0 clients.
//!
//! Every wait is bounded by a deadline and polls for the event it wants;
//! nothing sleeps for a fixed time where an event can be awaited.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use vane::codec::{
    ClientId, ConnAck, Connect, ConnectReasonCode, Decoder, Disconnect, DisconnectReasonCode,
    MqttStr, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS,
    QosPid, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
    TopicName, Unsubscribe, Will, MAX_PACKET_SIZE_LIMIT,
};
use vane::server::{Config, Server};

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub const V3: ProtocolVersion = ProtocolVersion::V3_1;
pub const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------

/// An in-process broker with two cores on 127.0.0.1 and an ephemeral port.
pub struct Broker {
    server: Option<Server>,
    pub addr: SocketAddr,
}

/// The configuration every test starts from.
pub fn test_config() -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        cores: 2,
        ..Config::default()
    };
    // The test machine is shared: do not pin, and keep locked memory small.
    config.executor.pin = false;
    // Tests run in parallel: the stats listener takes an ephemeral port too.
    config.stats.listen = "127.0.0.1:0".parse().expect("address");
    // No $SYS noise; tests that want $SYS turn it on.
    config.stats.sys_interval = 0;
    config
}

impl Broker {
    pub fn start() -> Broker {
        Broker::with(|_| {})
    }

    /// Starts a broker after `adjust` has changed the test configuration.
    pub fn with(adjust: impl FnOnce(&mut Config)) -> Broker {
        let mut config = test_config();
        adjust(&mut config);
        let server = Server::start(config).expect("broker starts");
        let addr = server.local_addr();
        Broker {
            server: Some(server),
            addr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The stats endpoint's address (ephemeral, on loopback).
    pub fn stats_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(Server::stats_addr)
            .expect("stats enabled")
    }

    /// Graceful shutdown, waiting for the cores.
    pub fn shutdown(mut self) {
        let server = self.server.take().expect("running");
        server.shutdown().expect("clean shutdown");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown();
        }
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A test-unique name, so parallel tests never share topics or client ids.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// Packet builders (vane::codec)
// ---------------------------------------------------------------------------

pub fn mstr(s: &str) -> MqttStr {
    MqttStr::try_from(s).expect("valid string")
}

pub fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).expect("valid topic name")
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::try_from(s).expect("valid topic filter")
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// A clean CONNECT at `version` with keepalive 60.
pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(
        version,
        ClientId::try_from(client_id).expect("valid id"),
        60,
    )
}

/// A will message at `qos`.
pub fn will(topic_name: &str, payload: &str, qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic(topic_name),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Default::default(),
    }
}

/// A PUBLISH; `id` is used for QoS 1 and 2.
pub fn publish(topic_name: &str, payload: &[u8], qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(topic(topic_name), Bytes::copy_from_slice(payload));
    p.qos_pid = QosPid::new(qos, Some(pid(id))).expect("qos and id");
    p
}

pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// A SUBSCRIBE of each (filter, options).
pub fn subscribe_with(id: u16, subs: &[(&str, SubscriptionOptions)]) -> Subscribe {
    Subscribe {
        pid: pid(id),
        properties: Default::default(),
        subscriptions: subs
            .iter()
            .map(|(f, o)| Subscription {
                filter: filter(f),
                options: *o,
            })
            .collect(),
    }
}

pub fn subscribe(id: u16, f: &str, qos: QoS) -> Subscribe {
    subscribe_with(id, &[(f, opts(qos))])
}

pub fn unsubscribe(id: u16, f: &str) -> Unsubscribe {
    Unsubscribe {
        pid: pid(id),
        properties: Default::default(),
        filters: vec![filter(f)],
    }
}

/// Retain Handling as a subscription option.
pub fn with_retain_handling(qos: QoS, rh: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        retain_handling: rh,
        ..SubscriptionOptions::default()
    }
}

/// Encodes `packet` at `version`.
pub fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).expect("encodable");
    buf.to_vec()
}

// ---------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// rumqttc clients, driven from plain (blocking) tests
// ---------------------------------------------------------------------------

/// One tokio runtime for every rumqttc event loop in the test binary.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A rumqttc 3.1.1 client whose event loop runs on [`runtime`]; its events
/// arrive on a channel. The loop stops at the first error, so it never
/// reconnects behind the test's back.
pub struct Mq4 {
    pub client: rumqttc::AsyncClient,
    events: mpsc::Receiver<Result<rumqttc::Event, String>>,
    /// Packets received while waiting for something else.
    backlog: RefCell<VecDeque<rumqttc::Packet>>,
    pub connack: rumqttc::ConnAck,
}

pub fn mq4_options(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl Mq4 {
    /// Connects and waits for the CONNACK (panics if refused).
    pub fn connect(options: rumqttc::MqttOptions) -> Mq4 {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
        let (tx, events) = mpsc::channel();
        runtime().spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = tx.send(Err(error.to_string()));
                        return;
                    }
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(connack)))) => {
                    return Mq4 {
                        client,
                        events,
                        backlog: RefCell::default(),
                        connack,
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("rumqttc connect failed: {e}"),
                Err(_) => panic!("no CONNACK in time"),
            }
        }
    }

    /// The next incoming packet (outgoing events are skipped); `None` on a
    /// timeout; panics on an error unless `allow_error`.
    pub fn next_incoming(&self, timeout: Duration) -> Option<Result<rumqttc::Packet, String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(rumqttc::Event::Incoming(p))) => return Some(Ok(p)),
                Ok(Ok(rumqttc::Event::Outgoing(_))) => {}
                Ok(Err(e)) => return Some(Err(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Err("event loop ended".into()))
                }
            }
        }
    }

    /// Waits for an incoming packet for which `pick` returns `Some`.
    #[track_caller]
    pub fn wait_for<T>(&self, mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>) -> T {
        {
            let mut backlog = self.backlog.borrow_mut();
            for i in 0..backlog.len() {
                if let Some(v) = pick(&backlog[i]) {
                    backlog.remove(i);
                    return v;
                }
            }
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left) {
                Some(Ok(p)) => {
                    if let Some(v) = pick(&p) {
                        return v;
                    }
                    self.backlog.borrow_mut().push_back(p);
                }
                Some(Err(e)) => panic!("connection error while waiting: {e}"),
                None => panic!("timed out waiting"),
            }
        }
    }

    #[track_caller]
    pub fn subscribe(&self, f: &str, qos: rumqttc::QoS) {
        self.client.try_subscribe(f, qos).expect("queue subscribe");
        self.wait_for(|p| matches!(p, rumqttc::Packet::SubAck(_)).then_some(()));
    }

    #[track_caller]
    pub fn next_publish(&self) -> rumqttc::Publish {
        self.wait_for(|p| match p {
            rumqttc::Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
    }

    /// Publishes and, for QoS 1/2, waits for the flow to complete.
    #[track_caller]
    pub fn publish(&self, t: &str, qos: rumqttc::QoS, retain: bool, payload: &[u8]) {
        self.client
            .try_publish(t, qos, retain, payload.to_vec())
            .expect("queue publish");
        match qos {
            rumqttc::QoS::AtMostOnce => {}
            rumqttc::QoS::AtLeastOnce => {
                self.wait_for(|p| matches!(p, rumqttc::Packet::PubAck(_)).then_some(()))
            }
            rumqttc::QoS::ExactlyOnce => {
                self.wait_for(|p| matches!(p, rumqttc::Packet::PubComp(_)).then_some(()))
            }
        }
    }

    /// DISCONNECT and wait for the event loop to see the close.
    pub fn disconnect(self) {
        let _ = self.client.try_disconnect();
        let deadline = Instant::now() + WAIT;
        while let Ok(event) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if event.is_err() {
                break;
            }
        }
    }
}

/// A rumqttc 5.0 client; see [`Mq4`].
pub struct Mq5 {
    pub client: rumqttc::v5::AsyncClient,
    events: mpsc::Receiver<Result<rumqttc::v5::Event, String>>,
    backlog: RefCell<VecDeque<P5>>,
    pub connack: rumqttc::v5::mqttbytes::v5::ConnAck,
}

pub type P5 = rumqttc::v5::mqttbytes::v5::Packet;

pub fn mq5_options(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl Mq5 {
    /// Connects and returns the client or the CONNACK error text.
    pub fn try_connect(options: rumqttc::v5::MqttOptions) -> Result<Mq5, String> {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 1000);
        let (tx, events) = mpsc::channel();
        runtime().spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = tx.send(Err(format!("{error:?}")));
                        return;
                    }
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(Ok(rumqttc::v5::Event::Incoming(P5::ConnAck(connack)))) => {
                    return Ok(Mq5 {
                        client,
                        events,
                        backlog: RefCell::default(),
                        connack,
                    })
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("no CONNACK in time".into()),
            }
        }
    }

    #[track_caller]
    pub fn connect(options: rumqttc::v5::MqttOptions) -> Mq5 {
        Mq5::try_connect(options).unwrap_or_else(|e| panic!("rumqttc v5 connect failed: {e}"))
    }

    pub fn next_incoming(&self, timeout: Duration) -> Option<Result<P5, String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(rumqttc::v5::Event::Incoming(p))) => return Some(Ok(p)),
                Ok(Ok(rumqttc::v5::Event::Outgoing(_))) => {}
                Ok(Err(e)) => return Some(Err(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Err("event loop ended".into()))
                }
            }
        }
    }

    #[track_caller]
    pub fn wait_for<T>(&self, mut pick: impl FnMut(&P5) -> Option<T>) -> T {
        {
            let mut backlog = self.backlog.borrow_mut();
            for i in 0..backlog.len() {
                if let Some(v) = pick(&backlog[i]) {
                    backlog.remove(i);
                    return v;
                }
            }
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_incoming(left) {
                Some(Ok(p)) => {
                    if let Some(v) = pick(&p) {
                        return v;
                    }
                    self.backlog.borrow_mut().push_back(p);
                }
                Some(Err(e)) => panic!("connection error while waiting: {e}"),
                None => panic!("timed out waiting"),
            }
        }
    }

    #[track_caller]
    pub fn subscribe(&self, f: &str, qos: rumqttc::v5::mqttbytes::QoS) {
        self.client.try_subscribe(f, qos).expect("queue subscribe");
        self.wait_for(|p| matches!(p, P5::SubAck(_)).then_some(()));
    }

    #[track_caller]
    pub fn next_publish(&self) -> rumqttc::v5::mqttbytes::v5::Publish {
        self.wait_for(|p| match p {
            P5::Publish(p) => Some(p.clone()),
            _ => None,
        })
    }

    #[track_caller]
    pub fn publish(&self, t: &str, qos: rumqttc::v5::mqttbytes::QoS, retain: bool, payload: &[u8]) {
        self.client
            .try_publish(t, qos, retain, payload.to_vec())
            .expect("queue publish");
        self.wait_published(qos);
    }

    #[track_caller]
    pub fn wait_published(&self, qos: rumqttc::v5::mqttbytes::QoS) {
        use rumqttc::v5::mqttbytes::QoS as Q;
        match qos {
            Q::AtMostOnce => {}
            Q::AtLeastOnce => self.wait_for(|p| matches!(p, P5::PubAck(_)).then_some(())),
            Q::ExactlyOnce => self.wait_for(|p| matches!(p, P5::PubComp(_)).then_some(())),
        }
    }

    pub fn disconnect(self) {
        let _ = self.client.try_disconnect();
        let deadline = Instant::now() + WAIT;
        while let Ok(event) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if event.is_err() {
                break;
            }
        }
    }
}
