//! A broker that refuses, drops or vanishes must give a clear report and a
//! non-zero exit, never a panic or a hang.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, run, start_broker, TempDir};

/// Accepts connections, reads a CONNECT, answers CONNACK (3.1.1,
/// accepted) and closes, for as long as the test runs.
fn fake_dropping_broker() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 512];
                if matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                    std::thread::sleep(Duration::from_millis(300));
                }
                // Dropping the stream closes the connection mid-run.
            });
        }
    });
    port
}

#[test]
fn broker_dropping_the_connection_is_reported() {
    let port = fake_dropping_broker().to_string();
    let began = Instant::now();
    let r = run(&[
        "pub",
        "--port",
        &port,
        "--mqtt",
        "3.1.1",
        "--publishers",
        "2",
        "--qos",
        "1",
        "--rate",
        "100",
        "--duration",
        "5s",
    ]);
    assert!(began.elapsed() < Duration::from_secs(15));
    assert!(!r.passed());
    assert_ne!(r.exit_code(), 0);
    let dropped: u64 = r.disconnects.values().sum();
    assert_eq!(dropped, 2, "{:?}", r.disconnects);
    assert!(
        r.disconnects
            .keys()
            .all(|k| k.contains("closed by broker") || k.contains("reset")),
        "{:?}",
        r.disconnects
    );
    assert!(
        r.problems.iter().any(|p| p.contains("lost mid-run")),
        "{:?}",
        r.problems
    );
}

#[test]
fn the_binary_exits_non_zero_with_a_clear_message_when_dropped() {
    let port = fake_dropping_broker().to_string();
    let _guard = common::serial();
    let out = Command::new(env!("CARGO_BIN_EXE_vane-loadgen"))
        .args([
            "pub",
            "--port",
            &port,
            "--mqtt",
            "3.1.1",
            "--publishers",
            "1",
            "--rate",
            "50",
            "--duration",
            "3s",
            "--quiet",
        ])
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FAILED: 1 connections lost mid-run"),
        "{stderr}"
    );
}

#[test]
fn refused_connections_are_counted_by_reason() {
    let port = free_port().to_string(); // nothing listens here
    let began = Instant::now();
    let r = run(&["conn", "--port", &port, "-n", "5", "--duration", "1s"]);
    assert!(began.elapsed() < Duration::from_secs(15));
    assert_eq!(r.connections.established, 0);
    assert_eq!(r.connections.failures.get("connection refused"), Some(&5));
    assert!(!r.passed());
}

#[test]
fn connack_refusal_is_reported_with_its_reason_code() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            // 3.1.1 return code 5: not authorized.
            let _ = s.write_all(&[0x20, 0x02, 0x00, 0x05]);
        }
    });
    let port = port.to_string();
    let r = run(&[
        "conn",
        "--port",
        &port,
        "--mqtt",
        "3.1.1",
        "-n",
        "3",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.connections.failed, 3);
    let (reason, n) = r.connections.failures.iter().next().unwrap();
    assert_eq!(*n, 3);
    assert!(reason.starts_with("CONNACK refused"), "{reason}");
    assert!(!r.passed());
}

#[test]
fn silent_broker_times_out_without_hanging() {
    // Accepts TCP but never answers CONNECT.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let began = Instant::now();
    let r = run(&[
        "conn",
        "--port",
        &port,
        "-n",
        "2",
        "--connect-timeout",
        "500ms",
        "--duration",
        "1s",
    ]);
    drop(listener);
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(r.connections.failures.get("connect timeout"), Some(&2));
}

#[test]
fn output_files_are_written() {
    let b = start_broker();
    let dir = TempDir::new("outputs");
    let json = dir.0.join("out.json");
    let csv = dir.0.join("out.csv");
    let hgrm = dir.0.join("out.hgrm");
    let svg = dir.0.join("out.svg");
    let _guard = common::serial();
    let out = Command::new(env!("CARGO_BIN_EXE_vane-loadgen"))
        .args([
            "fan-in",
            "--port",
            &b.port.to_string(),
            "--publishers",
            "2",
            "--rate",
            "200",
        ])
        .args(["--duration", "2s", "--warmup", "0s", "--json", "--quiet"])
        .arg("--csv")
        .arg(&csv)
        .arg("--hdr-out")
        .arg(&hgrm)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    std::fs::write(&json, &out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["scenario"], "fan-in");
    assert!(v["delivery"]["received"].as_u64().unwrap() > 0);
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("t_s,phase,"));
    assert!(csv.lines().count() >= 2, "{csv}");
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .contains("Percentile"));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

/// A 3.1.1 broker that answers CONNACK, then stalls for `stall` before
/// acknowledging every QoS 1 PUBLISH it reads.
fn fake_stalling_broker(stall: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut connected = false;
                loop {
                    // Take whole packets off the front of `buf`.
                    while let Some((first, body, len)) = frame(&buf) {
                        let kind = first >> 4;
                        if kind == 1 && !connected {
                            connected = true;
                            let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                            std::thread::sleep(stall);
                        } else if kind == 3 && (first >> 1) & 3 == 1 {
                            let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                            let pid = &body[2 + topic_len..4 + topic_len];
                            let _ = s.write_all(&[0x40, 0x02, pid[0], pid[1]]);
                        }
                        buf.drain(..len);
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

/// Splits one MQTT packet off `buf`: (first byte, body, total length).
fn frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let first = *buf.first()?;
    let (mut len, mut shift, mut i) = (0usize, 0, 1);
    loop {
        let b = *buf.get(i)?;
        len |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let total = i + len;
    (buf.len() >= total).then(|| (first, &buf[i..total], total))
}

#[test]
fn a_stall_shows_up_as_latency_not_as_less_load() {
    // Open-loop: during a 600 ms stall with an inflight window of 1, the
    // schedule keeps running; the messages due meanwhile go out late and
    // their latency counts from when they were due.
    let port = fake_stalling_broker(Duration::from_millis(600)).to_string();
    let r = run(&[
        "pub",
        "--port",
        &port,
        "--mqtt",
        "3.1.1",
        "--publishers",
        "1",
        "--qos",
        "1",
        "--inflight",
        "1",
        "--rate",
        "100",
        "--count",
        "150",
        "--warmup",
        "0s",
        "--duration",
        "10s",
    ]);
    assert!(r.passed(), "{:?}", r.problems);
    assert_eq!(r.publish.sent, 150);
    assert_eq!(r.publish.acked, 150);
    let ack = &r.publish.ack_latency;
    assert!(ack.max_us >= 500_000, "{ack:?}");
    // About 60 messages fell due during the stall: well over 10% of them
    // waited more than 100 ms.
    assert!(ack.p90_us >= 100_000, "{ack:?}");
    // The run still took about 1.5 s of schedule, not 0.6 s + 150 round trips.
    assert!(r.run_seconds < 3.0, "{}", r.run_seconds);
    assert!(r.publish.schedule_lag.max_us >= 500_000);
}
