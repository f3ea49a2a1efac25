//! The run's summary: what the user reads at the end (human text on
//! stderr) and what scripts read (`--json`), and the verdict that decides
//! the exit code.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use vane::codec::QoS;

use crate::plan::{Plan, Role};
use crate::stats::{CoreStats, Percentiles, PublisherStats};

/// One second of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Second {
    /// Seconds since the run began (connecting included).
    pub t: f64,
    pub phase: &'static str,
    pub open: u64,
    pub sent_per_s: u64,
    pub received_per_s: u64,
    pub acked_per_s: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub errors: u64,
    /// The tool's own CPU use, percent of one core.
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Connections {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub connect_latency: Percentiles,
    pub subscribe_latency: Percentiles,
    /// Established connections per second of connecting.
    pub achieved_rate: f64,
    pub target_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Publishing {
    pub publishers: usize,
    pub qos: u8,
    pub payload_bytes: usize,
    pub sent: u64,
    pub acked: u64,
    /// QoS 1/2 messages never acknowledged.
    pub unacked: u64,
    pub ack_failures: BTreeMap<String, u64>,
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) latency, from the intended send time.
    pub ack_latency: Percentiles,
    /// How late messages left compared with their schedule, for any reason
    /// (the tool, or the broker's backpressure: a full inflight window or
    /// socket).
    pub schedule_lag: Percentiles,
    /// How late the tool itself got to each message, before any wait for
    /// the broker: timer wake-up and CPU. High means the tool is the limit.
    pub tool_lag: Percentiles,
    /// Messages the schedule called for that were never sent.
    pub behind_schedule: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivery {
    pub subscribers: usize,
    pub received: u64,
    /// Deliveries a correct broker makes, where this process knows.
    pub expected: Option<u64>,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Expected deliveries that had not arrived when the drain ended
    /// (dropped, or still queued in the broker).
    pub lost: u64,
    pub foreign: u64,
    pub achieved_rate: f64,
    /// End-to-end latency from the intended send time.
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowConsumer {
    pub read_rate: f64,
    pub received: u64,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Retained {
    pub topics: u64,
    pub subscribers: usize,
    pub received: u64,
    pub expected: u64,
    /// From SUBSCRIBE to the last retained message, per subscriber.
    pub complete_latency: Percentiles,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tool {
    pub cores: usize,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    /// Percent of the cores it ran on.
    pub cpu_percent: f64,
    /// True when the tool, not the broker, may have been the limit.
    pub saturated: bool,
}

/// The whole summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub broker: String,
    pub mqtt: String,
    pub run_id: u32,
    /// Seconds of publishing (warm-up included) or holding.
    pub run_seconds: f64,
    pub connections: Connections,
    pub publish: Publishing,
    pub delivery: Delivery,
    pub slow_consumer: Option<SlowConsumer>,
    pub retained: Option<Retained>,
    /// Connections lost after they were established, by reason.
    pub disconnects: BTreeMap<String, u64>,
    pub tool: Tool,
    /// Why the run failed (empty when it passed).
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub per_publisher: Vec<PublisherStats>,
    pub timeline: Vec<Second>,
}

/// Inputs the runtime measured around the cores.
pub struct Outline {
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub connect_seconds: f64,
    pub run_seconds: f64,
    pub timeline: Vec<Second>,
}

fn qos_num(q: QoS) -> u8 {
    q as u8
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

impl Report {
    pub fn build(plan: &Plan, s: &CoreStats, o: Outline) -> Report {
        let count = |role: Role, measured: bool| -> usize {
            plan.groups
                .iter()
                .filter(|g| g.role == role && (g.measured || !measured))
                .map(|g| g.count)
                .sum()
        };
        let pub_group = plan.groups.iter().find(|g| g.role == Role::Publisher);
        let seed_group = plan.groups.iter().find(|g| g.role == Role::Seeder);
        let main_pub = pub_group.or(seed_group);
        let qos = main_pub
            .map(|g| g.qos)
            .or_else(|| plan.groups.first().map(|g| g.qos))
            .unwrap_or(QoS::AtMostOnce);
        let confirmed = |p: &PublisherStats| {
            if qos == QoS::AtMostOnce {
                p.sent
            } else {
                p.acked
            }
        };

        // Per-publisher loss against what a correct broker delivers.
        let mut per_publisher: Vec<PublisherStats> = s.publishers.values().cloned().collect();
        per_publisher.sort_by_key(|p| p.publisher);
        let table = plan.copies();
        let mut expected_total: Option<u64> = Some(0);
        for p in &mut per_publisher {
            let copies = (p.sent > 0).then(|| table.of(p.publisher as u64)).flatten();
            match copies {
                Some(c) => {
                    let expected = c * confirmed(p);
                    p.lost = expected.saturating_sub(p.unique);
                    expected_total = expected_total.map(|t| t + expected);
                }
                None => {
                    p.lost = p.gaps;
                    expected_total = None;
                }
            }
        }
        if pub_group.is_none() || count(Role::Subscriber, true) == 0 || seed_group.is_some() {
            expected_total = None;
        }
        let sum = |f: fn(&PublisherStats) -> u64| per_publisher.iter().map(f).sum::<u64>();
        let target_rate = pub_group.map(|g| g.rate * g.count as f64).unwrap_or(0.0);
        let run = o.run_seconds.max(1e-9);
        let scheduled = pub_group
            .map(|g| {
                let by_time = if g.rate > 0.0 {
                    (g.rate * run) as u64
                } else {
                    0
                };
                let per = g.limit.map_or(by_time, |l| l.min(by_time));
                per * g.count as u64
            })
            .unwrap_or(0);
        let publishing_sent = if pub_group.is_some() { s.sent } else { 0 };

        let connections = Connections {
            attempted: s.attempted,
            established: s.connected,
            failed: s.connect_failures.values().sum(),
            failures: s.connect_failures.clone(),
            connect_latency: Percentiles::of(&s.connect),
            subscribe_latency: Percentiles::of(&s.subscribe),
            achieved_rate: per_sec(
                s.connected,
                if s.last_connected_ns > s.first_attempt_ns {
                    (s.last_connected_ns - s.first_attempt_ns) as f64 / 1e9
                } else {
                    o.connect_seconds
                },
            ),
            target_rate: plan.connect_rate,
        };
        let publish = Publishing {
            publishers: count(Role::Publisher, false) + count(Role::Seeder, false),
            qos: qos_num(qos),
            payload_bytes: main_pub.map(|g| g.size).unwrap_or(0),
            sent: s.sent,
            acked: s.acked,
            unacked: s.unacked,
            ack_failures: s.ack_failures.clone(),
            target_rate,
            achieved_rate: per_sec(publishing_sent, run),
            ack_latency: Percentiles::of(&s.ack),
            schedule_lag: Percentiles::of(&s.lag),
            tool_lag: Percentiles::of(&s.tool_lag),
            behind_schedule: scheduled.saturating_sub(publishing_sent),
        };
        let delivery = Delivery {
            subscribers: count(Role::Subscriber, true),
            received: s.received,
            expected: expected_total,
            unique: sum(|p| p.unique),
            duplicates: sum(|p| p.duplicates),
            reordered: sum(|p| p.reordered),
            lost: sum(|p| p.lost),
            foreign: s.foreign,
            achieved_rate: per_sec(s.received, run),
            latency: Percentiles::of(&s.e2e),
        };
        let slow_consumer =
            plan.groups
                .iter()
                .find(|g| g.read_rate.is_some())
                .map(|g| SlowConsumer {
                    read_rate: g.read_rate.unwrap_or(0.0),
                    received: s.slow_received,
                    latency: Percentiles::of(&s.slow_e2e),
                });
        let retained = seed_group.map(|g| {
            let topics = g.count as u64 * g.limit.unwrap_or(0);
            let subscribers = count(Role::Subscriber, true);
            Retained {
                topics,
                subscribers,
                received: s.retained_received,
                expected: topics * subscribers as u64,
                complete_latency: Percentiles::of(&s.retained_done),
            }
        });
        let cores_cpu = plan.cores as f64;
        let cpu_percent = if o.wall_seconds > 0.0 {
            (o.cpu_seconds / o.wall_seconds / cores_cpu * 1000.0).round() / 10.0
        } else {
            0.0
        };

        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        if connections.failed > 0 {
            problems.push(format!(
                "{} of {} connections failed: {}",
                connections.failed,
                connections.attempted,
                tally(&connections.failures)
            ));
        }
        if connections.attempted > 0 && connections.established == 0 {
            problems.push("no connection was established".into());
        }
        let dropped: u64 = s.disconnects.values().sum();
        if dropped > 0 {
            problems.push(format!(
                "{dropped} connections lost mid-run: {}",
                tally(&s.disconnects)
            ));
        }
        if !publish.ack_failures.is_empty() {
            problems.push(format!("acks refused: {}", tally(&publish.ack_failures)));
        }
        if qos != QoS::AtMostOnce && publish.unacked > 0 {
            problems.push(format!("{} messages never acknowledged", publish.unacked));
        }
        if delivery.lost > 0 {
            let msg = format!("{} messages lost", delivery.lost);
            if qos == QoS::AtMostOnce {
                warnings.push(format!("{msg} (QoS 0)"));
            } else {
                problems.push(format!("{msg} at QoS {}", qos_num(qos)));
            }
        }
        if qos == QoS::ExactlyOnce && delivery.duplicates > 0 {
            problems.push(format!("{} duplicates at QoS 2", delivery.duplicates));
        }
        if let Some(r) = &retained {
            if r.received < r.expected {
                problems.push(format!(
                    "retained: {} of {} expected messages arrived",
                    r.received, r.expected
                ));
            }
        }
        if delivery.subscribers > 0 && publishing_sent > 0 && delivery.received == 0 {
            warnings
                .push("no message reached the subscribers: do --topic and --filter match?".into());
        }
        if delivery.foreign > 0 {
            warnings.push(format!(
                "{} messages from other clients or runs were ignored",
                delivery.foreign
            ));
        }
        let mut saturated = false;
        if cpu_percent >= 90.0 {
            saturated = true;
            warnings.push(format!(
                "loadgen used {cpu_percent}% of its {} core(s): it may be the bottleneck (add --cores)",
                plan.cores
            ));
        }
        let interval_us = pub_group
            .filter(|g| g.rate > 0.0)
            .map(|g| (1e6 / g.rate) as u64)
            .unwrap_or(0);
        let limit = 1000.max(interval_us);
        let tool_p99 = publish.tool_lag.p99_us;
        let lag_p99 = publish.schedule_lag.p99_us;
        if tool_p99 > limit {
            saturated = true;
            warnings.push(format!(
                "loadgen got to its messages late (p99 {} behind schedule before any broker wait): \
                 the tool or this machine's CPU is a bottleneck; latencies include that delay",
                fmt_us(tool_p99)
            ));
        } else if lag_p99 > limit {
            warnings.push(format!(
                "the broker's backpressure (inflight window or full socket) delayed sends: p99 {} behind schedule",
                fmt_us(lag_p99)
            ));
        }
        if scheduled > 0 && publish.behind_schedule * 100 > scheduled {
            warnings.push(format!(
                "{} of {} scheduled messages were never sent",
                publish.behind_schedule, scheduled
            ));
        }
        let per_publisher = if per_publisher.len() <= 10_000 {
            per_publisher
        } else {
            Vec::new()
        };
        Report {
            scenario: plan.scenario.to_string(),
            broker: plan.broker.to_string(),
            mqtt: match plan.version {
                vane::codec::ProtocolVersion::V3_1 => "3.1".into(),
                vane::codec::ProtocolVersion::V3_1_1 => "3.1.1".into(),
                vane::codec::ProtocolVersion::V5 => "5.0".into(),
            },
            run_id: plan.run_id,
            run_seconds: (o.run_seconds * 1000.0).round() / 1000.0,
            connections,
            publish,
            delivery,
            slow_consumer,
            retained,
            disconnects: s.disconnects.clone(),
            tool: Tool {
                cores: plan.cores,
                wall_seconds: (o.wall_seconds * 1000.0).round() / 1000.0,
                cpu_seconds: (o.cpu_seconds * 1000.0).round() / 1000.0,
                cpu_percent,
                saturated,
            },
            problems,
            warnings,
            per_publisher,
            timeline: o.timeline,
        }
    }

    /// True when the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// 0 when the run passed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.passed())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The human-readable summary.
    pub fn human(&self) -> String {
        let mut o = String::new();
        let c = &self.connections;
        let p = &self.publish;
        let d = &self.delivery;
        let _ = writeln!(
            o,
            "== {} against {} (MQTT {}, {} core(s), run {:08x}) ==",
            self.scenario, self.broker, self.mqtt, self.tool.cores, self.run_id
        );
        let _ = writeln!(
            o,
            "connections  {} established / {} attempted, {} failed; {}/s (target {}/s)",
            c.established, c.attempted, c.failed, c.achieved_rate, c.target_rate
        );
        let _ = writeln!(o, "  connect    {}", fmt_pct(&c.connect_latency));
        if c.subscribe_latency.count > 0 {
            let _ = writeln!(o, "  subscribe  {}", fmt_pct(&c.subscribe_latency));
        }
        if let (Some(r), true) = (&self.retained, p.sent > 0) {
            let _ = writeln!(
                o,
                "seed         {} retained messages on {} topics by {} seeder(s) at QoS {}, {} acked",
                p.sent, r.topics, p.publishers, p.qos, p.acked
            );
        } else if p.sent > 0 {
            let _ = writeln!(
                o,
                "publish      {} sent by {} publisher(s) at QoS {}, {} B: {}/s (target {}/s) over {:.2}s",
                p.sent, p.publishers, p.qos, p.payload_bytes, p.achieved_rate, p.target_rate, self.run_seconds
            );
            if p.qos > 0 {
                let _ = writeln!(
                    o,
                    "  acked      {} ({} unacked)  {} latency {}",
                    p.acked,
                    p.unacked,
                    if p.qos == 1 { "PUBACK" } else { "PUBCOMP" },
                    fmt_pct(&p.ack_latency)
                );
            }
            let _ = writeln!(
                o,
                "  lag        {} ({} scheduled messages not sent)",
                fmt_pct(&p.schedule_lag),
                p.behind_schedule
            );
            let _ = writeln!(o, "  tool lag   {}", fmt_pct(&p.tool_lag));
        }
        if d.subscribers > 0 && self.retained.is_none() {
            let expected = d
                .expected
                .map_or_else(|| "unknown".to_string(), |e| e.to_string());
            let _ = writeln!(
                o,
                "deliver      {} received by {} subscriber(s), expected {}: {}/s",
                d.received, d.subscribers, expected, d.achieved_rate
            );
            let _ = writeln!(
                o,
                "  integrity  lost {}  duplicates {}  reordered {}  foreign {}",
                d.lost, d.duplicates, d.reordered, d.foreign
            );
            let _ = writeln!(o, "  latency    {}", fmt_pct(&d.latency));
        }
        if let Some(s) = &self.slow_consumer {
            let _ = writeln!(
                o,
                "slow sub     reads {:.0} msg/s: received {}, latency {}",
                s.read_rate,
                s.received,
                fmt_pct(&s.latency)
            );
        }
        if let Some(r) = &self.retained {
            let _ = writeln!(
                o,
                "retained     {} topics -> {} subscriber(s): {} of {} delivered; time to all {}",
                r.topics,
                r.subscribers,
                r.received,
                r.expected,
                fmt_pct(&r.complete_latency)
            );
        }
        let _ = writeln!(
            o,
            "tool         cpu {:.1}% of {} core(s) ({:.2}s cpu in {:.2}s){}",
            self.tool.cpu_percent,
            self.tool.cores,
            self.tool.cpu_seconds,
            self.tool.wall_seconds,
            if self.tool.saturated {
                "  SATURATED"
            } else {
                ""
            }
        );
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        if self.problems.is_empty() {
            let _ = writeln!(o, "result: OK");
        } else {
            for pr in &self.problems {
                let _ = writeln!(o, "FAILED: {pr}");
            }
        }
        o
    }
}

fn tally(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Formats microseconds as µs, ms or s.
pub fn fmt_us(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

fn fmt_pct(p: &Percentiles) -> String {
    if p.count == 0 {
        return "(none)".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        fmt_us(p.p50_us),
        fmt_us(p.p90_us),
        fmt_us(p.p99_us),
        fmt_us(p.p999_us),
        fmt_us(p.max_us),
        p.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let mut v = vec!["vane-loadgen"];
        v.extend_from_slice(args);
        Plan::from_command(&Cli::parse_from(v).command).unwrap()
    }

    fn outline() -> Outline {
        Outline {
            wall_seconds: 2.0,
            cpu_seconds: 0.5,
            connect_seconds: 0.1,
            run_seconds: 1.0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn loss_is_counted_against_copies() {
        let p = plan(&["fan-out", "--subscribers", "2", "--qos", "1"]);
        let mut s = CoreStats {
            sent: 10,
            acked: 10,
            received: 19,
            ..CoreStats::default()
        };
        let ps = s.publisher(0);
        ps.sent = 10;
        ps.acked = 10;
        ps.received = 19;
        ps.unique = 19;
        let r = Report::build(&p, &s, outline());
        assert_eq!(r.delivery.expected, Some(20));
        assert_eq!(r.delivery.lost, 1);
        assert!(!r.passed());
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn clean_run_passes_and_serializes() {
        let p = plan(&["pairs", "--publishers", "1"]);
        let mut s = CoreStats {
            attempted: 2,
            connected: 2,
            ..CoreStats::default()
        };
        let ps = s.publisher(0);
        ps.sent = 5;
        ps.unique = 5;
        ps.received = 5;
        let r = Report::build(&p, &s, outline());
        assert!(r.passed(), "{:?}", r.problems);
        assert!(r.to_json().contains("\"scenario\": \"pairs\""));
        assert!(r.human().contains("result: OK"));
    }

    #[test]
    fn formats_units() {
        assert_eq!(fmt_us(999), "999us");
        assert_eq!(fmt_us(1500), "1.50ms");
        assert_eq!(fmt_us(2_500_000), "2.50s");
    }
}
