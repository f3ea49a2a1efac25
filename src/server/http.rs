//! The stats endpoint: a tiny HTTP/1.1 server on its own std thread (never
//! an executor), serving `GET /metrics` (Prometheus), `GET /stats` (JSON),
//! `GET /healthz` and `GET /readyz`; anything else is a 404.
//!
//! Owns: the listener, request parsing with bounds (a request head of at
//! most [`MAX_REQUEST`] bytes, read and write timeouts, a deadline per
//! request), and keeping the latest latency snapshot of each core (drained
//! from the cores' channel between requests). Does not own: the figures
//! (`metrics.rs`).
//!
//! One request is served at a time, and each connection is closed after
//! its answer. The thread only reads the cores' counters, so nothing it
//! does can stall an MQTT executor.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metrics::{self, Latest, StatsHub};

/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Read and write timeout of each socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole request must arrive within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long the thread waits for a latency snapshot between polls of the
/// listener (it is also the most a new connection waits to be accepted).
const POLL: Duration = Duration::from_millis(20);

/// The running stats listener.
pub struct StatsServer {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// Binds the stats listener on `addr` (non-blocking, as [`StatsServer`]
/// polls it).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl StatsServer {
    /// Serves `listener` (from [`bind`]) on a thread of its own; it stops
    /// once `shutdown` is set.
    pub fn start(
        listener: TcpListener,
        hub: Arc<StatsHub>,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<StatsServer> {
        let addr = listener.local_addr()?;
        let thread = std::thread::Builder::new()
            .name("vane-stats".into())
            .spawn(move || serve(listener, hub, shutdown))?;
        Ok(StatsServer {
            addr,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the thread (after the shutdown flag is set).
    pub fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, hub: Arc<StatsHub>, shutdown: Arc<AtomicBool>) {
    let snapshots = hub.snapshots();
    let mut latest: Latest = vec![None; hub.cores.len()];
    while !shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // Keep the latency snapshots current before answering.
                while let Ok(snap) = snapshots.try_recv() {
                    let core = snap.core;
                    latest[core] = Some(snap);
                }
                if let Err(error) = answer(stream, &hub, &latest) {
                    tracing::debug!(%error, "stats request failed");
                }
                continue;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => {
                tracing::warn!(%error, "stats listener: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Ok(snap) = snapshots.recv_timeout(POLL) {
            let core = snap.core;
            latest[core] = Some(snap);
        }
    }
}

/// A parsed request: its method, path and whether it accepts OpenMetrics.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub openmetrics: bool,
}

/// Why a request is not answered normally.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRequest {
    TooLarge,
    Malformed,
}

/// Parses a request head (everything up to the blank line).
pub fn parse(head: &[u8]) -> Result<Request, BadRequest> {
    let text = std::str::from_utf8(head).map_err(|_| BadRequest::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or(BadRequest::Malformed)?.split(' ');
    let method = first.next().ok_or(BadRequest::Malformed)?.to_string();
    let target = first.next().ok_or(BadRequest::Malformed)?;
    if !first.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(BadRequest::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    let openmetrics = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("accept") && value.contains("application/openmetrics-text")
        })
    });
    Ok(Request {
        method,
        path,
        openmetrics,
    })
}

/// Reads a request head of at most [`MAX_REQUEST`] bytes.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, BadRequest> {
    let started = Instant::now();
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() >= MAX_REQUEST {
            return Err(BadRequest::TooLarge);
        }
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(BadRequest::Malformed);
        }
        let want = buf.len().min(MAX_REQUEST + 4 - head.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return Err(BadRequest::Malformed),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

fn answer(mut stream: TcpStream, hub: &StatsHub, latest: &Latest) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let response = match read_head(&mut stream).and_then(|head| parse(&head)) {
        Err(BadRequest::TooLarge) => plain(431, "Request Header Fields Too Large", "too large\n"),
        Err(BadRequest::Malformed) => plain(400, "Bad Request", "bad request\n"),
        Ok(request) => route(&request, hub, latest),
    };
    stream.write_all(&response)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn route(request: &Request, hub: &StatsHub, latest: &Latest) -> Vec<u8> {
    if request.method != "GET" && request.method != "HEAD" {
        return plain(405, "Method Not Allowed", "only GET\n");
    }
    let response = match request.path.as_str() {
        "/metrics" => {
            let families = metrics::collect(hub, latest);
            if request.openmetrics {
                respond(
                    200,
                    "OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics::openmetrics(families).as_bytes(),
                )
            } else {
                respond(
                    200,
                    "OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::prometheus_text(families).as_bytes(),
                )
            }
        }
        "/stats" => {
            let families = metrics::collect(hub, latest);
            let body = metrics::json(hub, &families, latest).to_string();
            respond(200, "OK", "application/json", body.as_bytes())
        }
        "/healthz" => plain(200, "OK", "ok\n"),
        "/readyz" if hub.ready() => plain(200, "OK", "ready\n"),
        "/readyz" => plain(503, "Service Unavailable", "not ready\n"),
        _ => plain(404, "Not Found", "not found\n"),
    };
    if request.method == "HEAD" {
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        return response[..end].to_vec();
    }
    response
}

fn plain(status: u16, reason: &str, body: &str) -> Vec<u8> {
    respond(status, reason, "text/plain; charset=utf-8", body.as_bytes())
}

fn respond(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_request_line_and_the_accept_header() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text;version=1.0.0").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert!(r.openmetrics);
        let r = parse(b"GET /stats HTTP/1.0").unwrap();
        assert!(!r.openmetrics);
        assert_eq!(parse(b"nonsense"), Err(BadRequest::Malformed));
        assert_eq!(parse(b"GET / SMTP"), Err(BadRequest::Malformed));
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let hub = StatsHub::new(1, false);
        let latest = vec![None];
        let get = |path: &str| Request {
            method: "GET".into(),
            path: path.into(),
            openmetrics: false,
        };
        assert!(route(&get("/nope"), &hub, &latest).starts_with(b"HTTP/1.1 404"));
        assert!(route(&get("/healthz"), &hub, &latest).starts_with(b"HTTP/1.1 200"));
        // No core has started accepting.
        assert!(route(&get("/readyz"), &hub, &latest).starts_with(b"HTTP/1.1 503"));
        let post = Request {
            method: "POST".into(),
            ..get("/metrics")
        };
        assert!(route(&post, &hub, &latest).starts_with(b"HTTP/1.1 405"));
    }
}
