//! One MQTT client connection on a glommio executor.
//!
//! [`open`] does the TCP connect and the CONNECT/CONNACK exchange under a
//! timeout. After that a connection runs two tasks: a reader that decodes
//! packets and answers the QoS flows, and a writer that flushes the
//! connection's outbox (everything queued since its last write goes out in
//! one `send`) and keeps the connection alive. Publishers and the reader
//! only append to the outbox; nothing blocks.
//!
//! A connection that the broker refuses, resets or closes is marked closed
//! with a reason, which is tallied; nothing panics and every wait is
//! bounded by the caller.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future::{or, poll_fn};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use vane::codec::{
    Ack, ClientId, ConnAck, Connect, Decoder, Disconnect, DisconnectReasonCode, MqttStr, Packet,
    PacketId, ProtocolVersion, QoS, MAX_PACKET_SIZE_LIMIT,
};

use crate::net;
use crate::payload::{now_ns, Header};
use crate::plan::Plan;
use crate::stats::{record_ns, CoreStats, Live, Stream};
use hdrhistogram::Histogram;
use std::sync::Arc;

/// A one-waiter wake-up flag.
#[derive(Default)]
pub struct Event {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Event {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for a notification or `dur`, whichever comes first.
    pub async fn wait_for(&self, dur: Duration) {
        or(self.wait(), glommio::timer::sleep(dur)).await
    }
}

/// Per-core state every connection on that core shares.
pub struct Ctx {
    pub plan: Arc<Plan>,
    pub core: usize,
    pub stats: RefCell<CoreStats>,
    /// End-to-end latencies since the last push to [`Live`].
    pub interval: RefCell<Histogram<u64>>,
    pub live: Arc<Live>,
    /// Latencies count only for messages meant to be sent from here on.
    pub measure_from_ns: Cell<u64>,
    /// Retained messages each retained-storm subscriber should receive.
    pub retained_expected: Cell<u64>,
    /// Set when the run is shutting down: closes are then not errors.
    pub stopping: Cell<bool>,
    /// Connections currently open on this core.
    pub open: Cell<u64>,
    /// The read buffer all connections on this core share.
    pub scratch: RefCell<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closing,
    Closed,
}

/// A QoS 1/2 message waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
struct Inflight {
    intended_ns: u64,
    publisher: u32,
    /// QoS 2: PUBREC received, waiting for PUBCOMP.
    released: bool,
}

/// What a subscriber connection measures.
#[derive(Default)]
pub struct SubState {
    pub streams: RefCell<HashMap<u32, Stream>>,
    /// QoS 2 packet ids received and not yet released.
    pub qos2: RefCell<HashSet<u16>>,
    pub measured: bool,
    /// Messages per second this subscriber reads at most (slow consumer).
    pub read_rate: Option<f64>,
    /// Retained-storm: when SUBSCRIBE was sent, and retained messages seen.
    pub retained_since: Cell<Option<Instant>>,
    pub retained_seen: Cell<u64>,
}

/// One open MQTT connection.
pub struct Conn {
    pub version: ProtocolVersion,
    pub out: RefCell<BytesMut>,
    writer: Event,
    /// Notified when acks arrive, the outbox drains or the connection closes.
    pub progress: Event,
    suback: Event,
    suback_result: RefCell<Option<Result<(), String>>>,
    state: Cell<State>,
    pub reason: RefCell<Option<String>>,
    inflight: RefCell<HashMap<u16, Inflight>>,
    next_pid: Cell<u16>,
    /// Broker's Receive Maximum (5.0), capping our inflight window.
    pub broker_receive_max: u16,
    ping_sent: Cell<Option<Instant>>,
    /// Ours, or the broker's Server Keep Alive (5.0) when it sets one.
    keepalive: Duration,
    pub sub: Option<SubState>,
}

impl Conn {
    pub fn is_closed(&self) -> bool {
        self.state.get() == State::Closed
    }

    pub fn is_open(&self) -> bool {
        self.state.get() == State::Open
    }

    pub fn inflight_len(&self) -> usize {
        self.inflight.borrow().len()
    }

    /// Queues a packet and wakes the writer.
    pub fn send(&self, packet: &Packet) {
        if self.is_closed() {
            return;
        }
        packet
            .encode(self.version, &mut self.out.borrow_mut())
            .expect("loadgen packets are within MQTT limits");
        self.writer.notify();
    }

    /// Allocates a packet id that is not in flight and records the message.
    pub fn begin_publish(&self, intended_ns: u64, publisher: u32) -> PacketId {
        let mut inflight = self.inflight.borrow_mut();
        loop {
            let pid = self.next_pid.get();
            self.next_pid.set(if pid == u16::MAX { 1 } else { pid + 1 });
            if let std::collections::hash_map::Entry::Vacant(e) = inflight.entry(pid) {
                e.insert(Inflight {
                    intended_ns,
                    publisher,
                    released: false,
                });
                return PacketId::new(pid).expect("pid is never 0");
            }
        }
    }

    /// Marks the connection closed. The first reason wins; it is tallied as
    /// an error unless the run is shutting down.
    pub fn close(&self, ctx: &Ctx, reason: impl Into<String>) {
        let was = self.state.replace(State::Closed);
        if was == State::Closed {
            return;
        }
        ctx.open.set(ctx.open.get().saturating_sub(1));
        ctx.live
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if was == State::Open && !ctx.stopping.get() {
            let reason = reason.into();
            CoreStats::count(&mut ctx.stats.borrow_mut().disconnects, reason.clone());
            Live::add(&ctx.live.errors, 1);
            *self.reason.borrow_mut() = Some(reason);
        }
        self.writer.notify();
        self.progress.notify();
        self.suback.notify();
    }

    /// Sends DISCONNECT and lets the writer flush and shut the socket.
    pub fn disconnect(&self) {
        if self.is_open() {
            self.send(&Packet::Disconnect(Disconnect::new(
                DisconnectReasonCode::NormalDisconnection,
            )));
            self.state.set(State::Closing);
            self.writer.notify();
        }
    }

    /// Sends a SUBSCRIBE and waits for its SUBACK (bounded by `timeout`).
    pub async fn subscribe(
        &self,
        sub: vane::codec::Subscribe,
        timeout: Duration,
    ) -> Result<(), String> {
        *self.suback_result.borrow_mut() = None;
        self.send(&Packet::Subscribe(sub));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.suback_result.borrow_mut().take() {
                return r;
            }
            if self.is_closed() {
                let why = self.reason.borrow().clone();
                return Err(why.unwrap_or_else(|| "closed before SUBACK".into()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("SUBACK timeout".into());
            }
            self.suback.wait_for(deadline - now).await;
        }
    }
}

type Shared = Rc<RefCell<TcpStream>>;

async fn write_all(stream: &Shared, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads once into the core's scratch buffer and appends what came to
/// `rx`. The scratch is borrowed only inside `poll`, so every connection on
/// a core shares one buffer instead of holding 64 KiB each.
async fn read_into(
    stream: &Shared,
    scratch: &RefCell<Vec<u8>>,
    cap: usize,
    rx: &mut BytesMut,
) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut buf = scratch.borrow_mut();
        let cap = cap.min(buf.len());
        match Pin::new(&mut *stream.borrow_mut()).poll_read(cx, &mut buf[..cap]) {
            Poll::Ready(Ok(n)) => {
                rx.extend_from_slice(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    })
    .await
}

/// How one client identifies itself.
pub struct Hello {
    pub client_id: String,
    pub source: Option<std::net::IpAddr>,
    pub sub: Option<SubState>,
}

/// Connects, sends CONNECT and waits for CONNACK, all within the plan's
/// connect timeout. On success the reader and writer tasks are running.
pub async fn open(ctx: &Rc<Ctx>, hello: Hello) -> Result<Rc<Conn>, String> {
    let plan = ctx.plan.clone();
    let timeout = plan.connect_timeout;
    let handshake = async {
        let stream = net::start_connect(plan.broker, hello.source).map_err(|e| net::reason(&e))?;
        let stream = Rc::new(RefCell::new(stream));
        let mut connect = Connect::new(
            plan.version,
            ClientId::new(MqttStr::try_from(hello.client_id.as_str()).map_err(|e| e.to_string())?),
            plan.keepalive,
        );
        connect.clean_start = plan.clean;
        if plan.version.is_v5() && plan.session_expiry > 0 {
            connect.properties.session_expiry_interval = Some(plan.session_expiry);
        }
        if let Some(user) = &plan.username {
            connect.username = Some(MqttStr::try_from(user.as_str()).map_err(|e| e.to_string())?);
        }
        connect.password = plan.password.clone();
        let mut buf = BytesMut::new();
        Packet::Connect(Box::new(connect))
            .encode(plan.version, &mut buf)
            .map_err(|e| e.to_string())?;
        write_all(&stream, &buf)
            .await
            .map_err(|e| net::reason(&e))?;
        let decoder = Decoder::new(plan.version, MAX_PACKET_SIZE_LIMIT);
        let mut rx = BytesMut::new();
        let connack: ConnAck = loop {
            match decoder.decode(&mut rx) {
                Ok(Some(Packet::ConnAck(ack))) => break *ack,
                Ok(Some(other)) => {
                    return Err(format!("expected CONNACK, got {:?}", other.packet_type()))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad CONNACK: {e}")),
            }
            let n = read_into(&stream, &ctx.scratch, usize::MAX, &mut rx)
                .await
                .map_err(|e| net::reason(&e))?;
            if n == 0 {
                return Err("closed by broker before CONNACK".into());
            }
        };
        if connack.code.is_error() {
            return Err(format!(
                "CONNACK refused: {} (0x{:02x})",
                connack.code,
                connack.code.as_u8()
            ));
        }
        Ok((stream, rx, connack))
    };
    let timed_out = async {
        glommio::timer::sleep(timeout).await;
        Err("connect timeout".to_string())
    };
    let (stream, rx, connack) = or(handshake, timed_out).await?;
    let receive_max = connack
        .properties
        .receive_maximum
        .map(|r| r.get())
        .unwrap_or(u16::MAX);
    let conn = Rc::new(Conn {
        version: plan.version,
        out: RefCell::new(BytesMut::new()),
        writer: Event::default(),
        progress: Event::default(),
        suback: Event::default(),
        suback_result: RefCell::new(None),
        state: Cell::new(State::Open),
        reason: RefCell::new(None),
        inflight: RefCell::new(HashMap::new()),
        next_pid: Cell::new(1),
        broker_receive_max: receive_max,
        ping_sent: Cell::new(None),
        keepalive: Duration::from_secs(
            connack
                .properties
                .server_keep_alive
                .unwrap_or(plan.keepalive) as u64,
        ),
        sub: hello.sub,
    });
    ctx.open.set(ctx.open.get() + 1);
    Live::add(&ctx.live.open, 1);
    glommio::spawn_local(reader(ctx.clone(), conn.clone(), stream.clone(), rx)).detach();
    glommio::spawn_local(writer(ctx.clone(), conn.clone(), stream)).detach();
    Ok(conn)
}

/// Flushes the outbox; sends PINGREQ when idle and notices a silent broker.
async fn writer(ctx: Rc<Ctx>, conn: Rc<Conn>, stream: Shared) {
    let keepalive = conn.keepalive;
    let mut spare = BytesMut::new();
    loop {
        if conn.is_closed() {
            break;
        }
        if conn.out.borrow().is_empty() {
            if conn.state.get() == State::Closing {
                shutdown_write(&stream.borrow());
                conn.state.set(State::Closed);
                break;
            }
            if keepalive.is_zero() {
                conn.writer.wait().await;
            } else {
                let before = Instant::now();
                conn.writer.wait_for(keepalive / 2).await;
                if conn.out.borrow().is_empty() && before.elapsed() >= keepalive / 2 {
                    if let Some(sent) = conn.ping_sent.get() {
                        if sent.elapsed() >= keepalive {
                            conn.close(&ctx, "keepalive timeout (no PINGRESP)");
                            break;
                        }
                    } else {
                        conn.ping_sent.set(Some(Instant::now()));
                        conn.send(&Packet::PingReq);
                    }
                }
            }
            continue;
        }
        std::mem::swap(&mut *conn.out.borrow_mut(), &mut spare);
        let result = write_all(&stream, &spare).await;
        spare.clear();
        if let Err(e) = result {
            conn.close(&ctx, net::reason(&e));
            break;
        }
        conn.progress.notify();
    }
}

/// Half-closes the socket after our DISCONNECT (synchronous, so no borrow
/// is held across an await).
fn shutdown_write(stream: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: shutdown(2) on a socket fd the stream owns and keeps open.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
}

/// Decodes and handles everything the broker sends.
async fn reader(ctx: Rc<Ctx>, conn: Rc<Conn>, stream: Shared, mut rx: BytesMut) {
    let decoder = Decoder::new(conn.version, MAX_PACKET_SIZE_LIMIT);
    let mut next_read_ns = now_ns();
    loop {
        loop {
            match decoder.decode(&mut rx) {
                Ok(Some(packet)) => {
                    let is_publish = matches!(packet, Packet::Publish(_));
                    handle(&ctx, &conn, packet);
                    if conn.is_closed() {
                        return;
                    }
                    if let (true, Some(rate)) =
                        (is_publish, conn.sub.as_ref().and_then(|s| s.read_rate))
                    {
                        // A slow consumer: hold off reading to stay under its rate.
                        next_read_ns += (1e9 / rate) as u64;
                        let now = now_ns();
                        if next_read_ns > now {
                            glommio::timer::sleep(Duration::from_nanos(next_read_ns - now)).await;
                        } else {
                            next_read_ns = now;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    conn.close(&ctx, format!("protocol error from broker: {e}"));
                    return;
                }
            }
        }
        if conn.is_closed() {
            return;
        }
        let cap = if conn.sub.as_ref().is_some_and(|s| s.read_rate.is_some()) {
            1024 // a slow consumer reads in small bites
        } else {
            usize::MAX
        };
        match read_into(&stream, &ctx.scratch, cap, &mut rx).await {
            Ok(0) => {
                conn.close(&ctx, "connection closed by broker");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                conn.close(&ctx, net::reason(&e));
                return;
            }
        }
    }
}

fn handle(ctx: &Ctx, conn: &Conn, packet: Packet) {
    match packet {
        Packet::Publish(p) => {
            let Some(sub) = &conn.sub else {
                conn.close(
                    ctx,
                    "protocol error: PUBLISH to a client that did not subscribe",
                );
                return;
            };
            match p.qos_pid.pid() {
                Some(pid) if p.qos() == QoS::ExactlyOnce => {
                    if sub.qos2.borrow_mut().insert(pid.get()) {
                        on_message(ctx, sub, &p.payload, p.retain);
                    }
                    conn.send(&Packet::PubRec(Ack::new(pid)));
                }
                Some(pid) => {
                    on_message(ctx, sub, &p.payload, p.retain);
                    conn.send(&Packet::PubAck(Ack::new(pid)));
                }
                None => on_message(ctx, sub, &p.payload, p.retain),
            }
        }
        Packet::PubRel(ack) => {
            if let Some(sub) = &conn.sub {
                sub.qos2.borrow_mut().remove(&ack.pid.get());
            }
            conn.send(&Packet::PubComp(Ack::new(ack.pid)));
        }
        Packet::PubAck(ack) => {
            let done = conn.inflight.borrow_mut().remove(&ack.pid.get());
            match done {
                Some(_) if ack.reason.is_error() => {
                    ack_failed(ctx, "PUBACK", ack.reason, ack.reason.as_u8())
                }
                Some(m) => acked(ctx, m),
                None => conn.close(ctx, "protocol error: PUBACK for an unknown packet id"),
            }
            conn.progress.notify();
        }
        Packet::PubRec(ack) => {
            let error = ack.reason.is_error();
            let entry = {
                let mut inflight = conn.inflight.borrow_mut();
                if error {
                    inflight.remove(&ack.pid.get())
                } else {
                    if let Some(m) = inflight.get_mut(&ack.pid.get()) {
                        m.released = true;
                    }
                    None
                }
            };
            if entry.is_some() {
                ack_failed(ctx, "PUBREC", ack.reason, ack.reason.as_u8());
                conn.progress.notify();
            } else {
                conn.send(&Packet::PubRel(Ack::new(ack.pid)));
            }
        }
        Packet::PubComp(ack) => {
            let done = conn.inflight.borrow_mut().remove(&ack.pid.get());
            if let Some(m) = done {
                if !m.released {
                    conn.close(ctx, "protocol error: PUBCOMP before PUBREC");
                    return;
                }
                acked(ctx, m);
            }
            conn.progress.notify();
        }
        Packet::SubAck(ack) => {
            let refused: Vec<String> = ack
                .reason_codes
                .iter()
                .filter(|c| c.is_error())
                .map(|c| format!("{c} (0x{:02x})", c.as_u8()))
                .collect();
            let result = if refused.is_empty() {
                Ok(())
            } else {
                Err(format!("SUBACK refused: {}", refused.join(", ")))
            };
            *conn.suback_result.borrow_mut() = Some(result);
            conn.suback.notify();
        }
        Packet::UnsubAck(_) => {}
        Packet::PingResp => conn.ping_sent.set(None),
        Packet::Disconnect(d) => conn.close(
            ctx,
            format!(
                "DISCONNECT from broker: {} (0x{:02x})",
                d.reason,
                d.reason.as_u8()
            ),
        ),
        other => conn.close(
            ctx,
            format!(
                "protocol error: unexpected {:?} from broker",
                other.packet_type()
            ),
        ),
    }
}

fn acked(ctx: &Ctx, m: Inflight) {
    let mut stats = ctx.stats.borrow_mut();
    stats.acked += 1;
    stats.publisher(m.publisher).acked += 1;
    if m.intended_ns >= ctx.measure_from_ns.get() {
        record_ns(&mut stats.ack, now_ns().saturating_sub(m.intended_ns));
    }
    Live::add(&ctx.live.acked, 1);
}

fn ack_failed(ctx: &Ctx, what: &str, reason: impl std::fmt::Display, code: u8) {
    let reason = format!("{what} {reason} (0x{code:02x})");
    CoreStats::count(&mut ctx.stats.borrow_mut().ack_failures, reason);
    Live::add(&ctx.live.errors, 1);
}

fn on_message(ctx: &Ctx, sub: &SubState, payload: &[u8], retain: bool) {
    if ctx.stopping.get() {
        return;
    }
    let Some(h) = Header::decode(payload) else {
        ctx.stats.borrow_mut().foreign += 1;
        return;
    };
    if !ctx.plan.any_run && h.run != ctx.plan.run_id {
        ctx.stats.borrow_mut().foreign += 1;
        return;
    }
    let now = now_ns();
    let latency = now.saturating_sub(h.sent_ns);
    sub.streams
        .borrow_mut()
        .entry(h.publisher)
        .or_default()
        .observe(h.seq);
    let mut stats = ctx.stats.borrow_mut();
    if let Some(since) = sub.retained_since.get() {
        if retain {
            stats.retained_received += 1;
            let seen = sub.retained_seen.get() + 1;
            sub.retained_seen.set(seen);
            if seen == ctx.retained_expected.get() {
                record_ns(&mut stats.retained_done, since.elapsed().as_nanos() as u64);
            }
        }
        Live::add(&ctx.live.received, 1);
        return;
    }
    let measure = h.sent_ns >= ctx.measure_from_ns.get();
    if sub.measured {
        stats.received += 1;
        Live::add(&ctx.live.received, 1);
        if measure {
            record_ns(&mut stats.e2e, latency);
            record_ns(&mut ctx.interval.borrow_mut(), latency);
        }
    } else {
        // The slow consumer reads a backlog of old messages: all count.
        stats.slow_received += 1;
        record_ns(&mut stats.slow_e2e, latency);
    }
}

/// Runs `fut` but gives up at `deadline`; returns `None` on timeout.
pub async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    or(async { Some(fut.await) }, async {
        glommio::timer::sleep(left).await;
        None
    })
    .await
}
