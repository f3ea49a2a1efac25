//! Shared helpers for the broker's integration tests: an in-process broker
//! on an ephemeral loopback port and builders for `vane::codec` packets
//! (here), a raw byte-level client over `std::net::TcpStream` (`raw.rs`),
//! and blocking wrappers around rumqttc's 3.1.1 and 5.0 clients
//! (`rumqttc_clients.rs`). Everything is re-exported here, so a test
//! imports `common::*` or names what it uses from `common`.
//!
//! Every wait is bounded by a deadline and polls for the event it wants;
//! nothing sleeps for a fixed time where an event can be awaited.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use vane::codec::{
    ClientId, Connect, MqttStr, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid,
    RetainHandling, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
    Unsubscribe, Will,
};
use vane::server::{Config, Server};

mod raw;
mod rumqttc_clients;

// Each test binary uses a different part of these, as with `dead_code`.
#[allow(unused_imports)]
pub use raw::{core_of_assigned, raw_pair_on_cores, Next, Raw};
#[allow(unused_imports)]
pub use rumqttc_clients::{mq4_options, mq5_options, runtime, Mq4, Mq5, P5};

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
