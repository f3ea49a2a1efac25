//! Helpers for the stats endpoint's tests: an in-process broker with its
//! MQTT and stats listeners on ephemeral loopback ports, a blocking HTTP
//! GET, a reader for the Prometheus text format, and a small rumqttc
//! client. Every wait polls with a deadline.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vane::server::{Config, Server};

/// How long any expected event may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker with two cores; MQTT and stats on 127.0.0.1, ephemeral ports.
pub struct Broker {
    server: Option<Server>,
    pub mqtt: SocketAddr,
    pub stats: SocketAddr,
}

impl Broker {
    pub fn start(adjust: impl FnOnce(&mut Config)) -> Broker {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            cores: 2,
            ..Config::default()
        };
        config.executor.pin = false;
        config.stats.listen = "127.0.0.1:0".parse().unwrap();
        config.stats.sys_interval = 0;
        adjust(&mut config);
        let server = Server::start(config).expect("broker starts");
        let mqtt = server.local_addr();
        let stats = server.stats_addr().expect("stats enabled");
        Broker {
            server: Some(server),
            mqtt,
            stats,
        }
    }

    /// `GET path` on the stats listener: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.stats, path, &[])
    }

    /// The `/metrics` body, asserting a 200.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Metrics(body)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown();
        }
    }
}

/// A bounded HTTP/1.1 GET over a fresh connection.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to stats");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// A `/metrics` body in the Prometheus text format.
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of every sample of `name` that has all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for line in self.0.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                continue;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
            if matches {
                total += value.parse::<f64>().expect("a number");
            }
        }
        total
    }
}

/// Polls `check` until it returns `Some` or [`WAIT`] passes.
pub fn poll<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test-unique name.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A rumqttc 3.1.1 client driven on its own thread; incoming packets
/// arrive on a channel.
pub struct Client {
    pub client: rumqttc::Client,
    incoming: mpsc::Receiver<Result<rumqttc::Packet, String>>,
}

impl Client {
    pub fn connect(addr: SocketAddr, id: &str) -> Client {
        let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = rumqttc::Client::new(options, 1000);
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let sent = match event {
                    Ok(rumqttc::Event::Incoming(packet)) => tx.send(Ok(packet)),
                    Ok(rumqttc::Event::Outgoing(_)) => Ok(()),
                    Err(error) => {
                        let _ = tx.send(Err(error.to_string()));
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        let c = Client { client, incoming };
        c.wait_for(|p| matches!(p, rumqttc::Packet::ConnAck(_)));
        c
    }

    /// Waits for an incoming packet matching `pick`, dropping others.
    #[track_caller]
    pub fn wait_for(&self, mut pick: impl FnMut(&rumqttc::Packet) -> bool) -> rumqttc::Packet {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(Ok(p)) if pick(&p) => return p,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("client error: {e}"),
                Err(_) => panic!("timed out waiting for a packet"),
            }
        }
    }

    #[track_caller]
    pub fn subscribe(&self, filter: &str, qos: rumqttc::QoS) {
        self.client.subscribe(filter, qos).unwrap();
        self.wait_for(|p| matches!(p, rumqttc::Packet::SubAck(_)));
    }

    /// Waits for `n` PUBLISH packets; returns their payloads.
    #[track_caller]
    pub fn receive(&self, n: usize) -> Vec<rumqttc::Publish> {
        (0..n)
            .map(
                |_| match self.wait_for(|p| matches!(p, rumqttc::Packet::Publish(_))) {
                    rumqttc::Packet::Publish(p) => p,
                    _ => unreachable!(),
                },
            )
            .collect()
    }

    pub fn disconnect(self) {
        let _ = self.client.disconnect();
        let deadline = Instant::now() + WAIT;
        while let Ok(event) = self
            .incoming
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if event.is_err() {
                break;
            }
        }
    }
}
