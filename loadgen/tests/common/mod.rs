//! Test harness: start a broker on an ephemeral loopback port, run the
//! load generator in-process, and keep runs from overlapping.
//!
//! [`start_broker`] starts Mosquitto (and fails loudly when it is missing);
//! [`start_vane`] starts Vane in-process. The scenario suite in
//! `scenarios.rs` runs against both.

#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Parser;
use vane_loadgen::{Cli, Report};

#[macro_use]
pub mod scenarios;

/// A running broker, stopped when dropped.
pub struct Broker {
    pub port: u16,
    process: BrokerProcess,
}

enum BrokerProcess {
    Mosquitto {
        child: Child,
        _dir: TempDir,
    },
    /// Dropping the server shuts it down.
    Vane(Option<vane::server::Server>),
}

impl Drop for Broker {
    fn drop(&mut self) {
        match &mut self.process {
            BrokerProcess::Mosquitto { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            BrokerProcess::Vane(server) => {
                if let Some(server) = server.take() {
                    server.shutdown().expect("vane shuts down cleanly");
                }
            }
        }
    }
}

/// Starts Vane in-process with two cores on a fresh loopback port; it
/// accepts as soon as this returns.
pub fn start_vane() -> Broker {
    let mut config = vane::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        cores: 2,
        ..vane::server::Config::default()
    };
    config.stats.enabled = false;
    let server = vane::server::Server::start(config).expect("vane starts");
    Broker {
        port: server.local_addr().port(),
        process: BrokerProcess::Vane(Some(server)),
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "vlg-test-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Starts Mosquitto on a fresh loopback port and waits until it accepts.
pub fn start_broker() -> Broker {
    let dir = TempDir::new("mosquitto");
    let port = free_port();
    let conf = dir.0.join("mosquitto.conf");
    let mut f = std::fs::File::create(&conf).expect("write mosquitto.conf");
    writeln!(
        f,
        "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nmax_queued_messages 100000"
    )
    .unwrap();
    drop(f);
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start mosquitto ({e}): these tests need it; install it with \
                 `apt-get update && apt-get install -y mosquitto`"
            )
        });
    let broker = Broker {
        port,
        process: BrokerProcess::Mosquitto { child, _dir: dir },
    };
    wait_for_port(port, Duration::from_secs(10));
    broker
}

/// Polls until something accepts on `port` (no fixed sleeps).
pub fn wait_for_port(port: u16, limit: Duration) {
    let until = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "nothing accepted on 127.0.0.1:{port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

static RUNS: Mutex<()> = Mutex::new(());

/// One load-generator run at a time: the machine is small and each run
/// pins executors and locks io_uring memory.
pub fn serial() -> MutexGuard<'static, ()> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `vane-loadgen ARGS...` in-process.
pub fn run(args: &[&str]) -> Report {
    let _guard = serial();
    let mut argv = vec!["vane-loadgen"];
    argv.extend_from_slice(args);
    argv.push("--quiet");
    let cli = Cli::try_parse_from(&argv).expect("valid arguments");
    let began = Instant::now();
    let report = vane_loadgen::run(&cli.command).expect("the run completes");
    eprintln!("{} (in {:?})", report.human(), began.elapsed());
    report
}
