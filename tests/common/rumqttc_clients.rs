//! Blocking wrappers around rumqttc's 3.1.1 ([`Mq4`]) and 5.0 ([`Mq5`])
//! clients, driven from plain tests: each client's event loop runs on one
//! shared tokio runtime and hands its events over a channel.
//!
//! Owns: connecting (waiting for the CONNACK), waiting for a packet within
//! [`WAIT`] and keeping the others for later reads, and the publish and
//! subscribe round trips. Does not own: the broker under test
//! (`common/mod.rs`) or byte-level sequences (`raw.rs`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::WAIT;

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
