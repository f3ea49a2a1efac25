//! The `/metrics` exposition against Prometheus' own tools (Debian's
//! `prometheus` package): `promtool check metrics` passes on it, and a real
//! Prometheus server scraping a running broker every second answers a query
//! for the connection count with the number of connected clients.
//!
//! Both tests fail, saying what to install, if the tools are missing.
#![cfg(feature = "runtime")]

mod stats_support;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use stats_support::*;

const INSTALL: &str = "install Debian's prometheus package (apt-get install -y prometheus), \
                       which provides promtool and prometheus";

/// A broker with some traffic behind it, so that every family (the latency
/// histogram included) has samples.
fn busy_broker() -> (Broker, Vec<Client>) {
    let broker = Broker::start(|_| {});
    let topic = unique("prom/t");
    let sub = Client::connect(broker.mqtt, &unique("prom-sub"));
    sub.subscribe(&topic, QoS::AtLeastOnce);
    let publisher = Client::connect(broker.mqtt, &unique("prom-pub"));
    for _ in 0..20 {
        publisher
            .client
            .publish(&topic, QoS::AtLeastOnce, false, b"x".to_vec())
            .unwrap();
    }
    sub.receive(20);
    poll(|| {
        (broker
            .metrics()
            .sum("vane_publish_latency_seconds_count", &[])
            > 0.0)
            .then_some(())
    })
    .expect("latency samples");
    (broker, vec![sub, publisher])
}

#[test]
fn promtool_check_metrics_passes() {
    let (broker, clients) = busy_broker();
    let body = broker.metrics().0;
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!("cannot run promtool ({error}): {INSTALL}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- /metrics ---\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for client in clients {
        client.disconnect();
    }
}

/// A Prometheus server, killed (and its data removed) when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `target` every
    /// second.
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(unique("vane-prometheus"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: vane\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = match Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => panic!("cannot run prometheus ({error}): {INSTALL}"),
        };
        Prometheus { child, dir, addr }
    }

    /// The value of an instant query's first result, if it has one.
    fn query(&self, promql: &str) -> Option<String> {
        let json = self.query_json(promql)?;
        json["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    }

    /// The whole answer to an instant query (errors included).
    fn query_json(&self, promql: &str) -> Option<serde_json::Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let addr = self.addr.parse().unwrap();
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        drop(stream);
        let (_, body) = http_get(addr, &format!("/api/v1/query?query={encoded}"), &[]);
        let json = &body[body.find('{')?..=body.rfind('}')?];
        serde_json::from_str(json).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_scrapes_the_connection_count() {
    let broker = Broker::start(|_| {});
    let clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(broker.mqtt, &unique("scraped")))
        .collect();
    let prometheus = Prometheus::start(broker.stats);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    while Instant::now() < deadline {
        last = prometheus.query("sum(vane_connections_current)");
        if last.as_deref() == Some("3") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        last.as_deref(),
        Some("3"),
        "Prometheus did not report 3 connections; its log:\n{}",
        prometheus.log()
    );
    assert_eq!(prometheus.query("up{job=\"vane\"}").as_deref(), Some("1"));

    // Every query of the Grafana dashboard in deploy/ is valid PromQL over
    // these metrics.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../deploy/grafana-dashboard.json")).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$instance", ".*")
                .replace("$__rate_interval", "5s");
            let answer = prometheus.query_json(&expr).expect("an answer");
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
            queries += 1;
        }
    }
    assert!(queries > 20);
    for client in clients {
        client.disconnect();
    }
}
