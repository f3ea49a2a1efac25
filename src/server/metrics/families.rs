//! The model both expositions are made from (a family: name, help, kind
//! and samples) and the catalogue of every figure the broker exports,
//! gathered from each core's counters, the latest latency snapshots and
//! the process's own figures.
//!
//! Owns: the names, help texts, kinds and labels of the exported figures.
//! Does not own: the counters (`stats.rs`) or how families are written out
//! (`exposition.rs`).

use super::{core_ready, CoreSnapshot, StatsHub, LATENCY_BUCKETS, QUANTILES};
use crate::codec::DisconnectReasonCode;
use crate::server::stats::{snake_case, CoreStats, Counter, DropCause, Reject};

/// A metric family's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// Quantiles with a sum and a count. prometheus-client has no summary
    /// type, so `exposition.rs` writes these families by hand.
    Summary,
}

/// One sample's value.
#[derive(Debug, Clone)]
pub enum Value {
    Int(u64),
    Float(f64),
    /// Sum, count and per-bucket (not cumulative) counts, `+Inf` last.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
    /// Sum, count and `(quantile, value)` pairs.
    Summary {
        sum: f64,
        count: u64,
        quantiles: Vec<(f64, f64)>,
    },
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// One metric family. Counter names end in `_total`.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

struct Builder {
    families: Vec<Family>,
}

impl Builder {
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        self.families.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        self.families.last_mut().expect("just pushed")
    }

    /// One sample per core of a plain per-core figure.
    fn per_core(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        get: impl Fn(&CoreStats) -> u64,
    ) {
        let family = self.family(name, help, kind);
        for (id, stats) in hub.cores.iter().enumerate() {
            family.samples.push(Sample {
                labels: vec![("core", id.to_string())],
                value: Value::Int(get(stats)),
            });
        }
    }

    /// A per-core figure scaled to a float (nanoseconds to seconds).
    fn per_core_seconds(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        get: impl Fn(&CoreStats) -> u64,
    ) {
        let family = self.family(name, help, Kind::Gauge);
        for (id, stats) in hub.cores.iter().enumerate() {
            family.samples.push(Sample {
                labels: vec![("core", id.to_string())],
                value: Value::Float(get(stats) as f64 / 1e9),
            });
        }
    }

    fn by_qos(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        get: impl Fn(&CoreStats) -> &[Counter; 3],
    ) {
        let family = self.family(name, help, Kind::Counter);
        for (id, stats) in hub.cores.iter().enumerate() {
            for (qos, counter) in get(stats).iter().enumerate() {
                family.samples.push(Sample {
                    labels: vec![("core", id.to_string()), ("qos", qos.to_string())],
                    value: Value::Int(counter.get()),
                });
            }
        }
    }

    /// Per core and reason code, only the codes that occurred.
    fn by_code(
        &mut self,
        hub: &StatsHub,
        name: &'static str,
        help: &'static str,
        get: impl Fn(&CoreStats) -> &[Counter; 256],
    ) {
        let family = self.family(name, help, Kind::Counter);
        for (id, stats) in hub.cores.iter().enumerate() {
            for (code, counter) in get(stats).iter().enumerate() {
                let n = counter.get();
                if n == 0 {
                    continue;
                }
                let reason = DisconnectReasonCode::from_u8(code as u8)
                    .map_or_else(|| "unknown".to_string(), |r| snake_case(&format!("{r:?}")));
                family.samples.push(Sample {
                    labels: vec![
                        ("core", id.to_string()),
                        ("code", format!("0x{code:02X}")),
                        ("reason", reason),
                    ],
                    value: Value::Int(n),
                });
            }
        }
    }

    fn single(&mut self, name: &'static str, help: &'static str, kind: Kind, value: Value) {
        self.family(name, help, kind).samples.push(Sample {
            labels: Vec::new(),
            value,
        });
    }
}

/// The latest latency snapshot of each core, as the HTTP thread keeps it.
pub type Latest = Vec<Option<CoreSnapshot>>;

/// Every figure, from the counters now and the latest latency snapshots.
pub fn collect(hub: &StatsHub, latest: &Latest) -> Vec<Family> {
    let mut b = Builder {
        families: Vec::new(),
    };
    b.per_core(
        hub,
        "vane_connections_current",
        "Open client connections.",
        Kind::Gauge,
        |s| s.connections_current.get(),
    );
    b.per_core(
        hub,
        "vane_connections_moved_total",
        "Live connections this core handed, with their sessions, to the core that publishes to them (executor.follow_interval_ms).",
        Kind::Counter,
        |s| s.connections_moved_out.get(),
    );
    b.per_core(
        hub,
        "vane_connections_move_declined_total",
        "Moves a follow review wanted but did not make: this core or the target was at or above executor.follow_max_load_pct busy, the connection received more than executor.follow_max_messages in the interval, or the target was at limits.max_connections_per_core.",
        Kind::Counter,
        |s| s.moves_declined.get(),
    );
    b.per_core(
        hub,
        "vane_core_busy_permille",
        "Thousandths of a CPU the core was busy, the higher of its last two follow intervals (0 when following is off).",
        Kind::Gauge,
        |s| s.busy_permille.get(),
    );
    b.per_core(
        hub,
        "vane_connections_accepted_total",
        "TCP connections accepted.",
        Kind::Counter,
        |s| s.connections_accepted.get(),
    );
    {
        let family = b.family(
            "vane_connections_rejected_total",
            "Connections closed before they were accepted, by reason (a CONNACK refusal code, the connection limit, the connect timeout, or a close before CONNECT).",
            Kind::Counter,
        );
        for (id, stats) in hub.cores.iter().enumerate() {
            for (index, counter) in stats.rejected.iter().enumerate() {
                let n = counter.get();
                if n == 0 {
                    continue;
                }
                if let Some(reason) = Reject::from_index(index) {
                    family.samples.push(Sample {
                        labels: vec![("core", id.to_string()), ("reason", reason.label())],
                        value: Value::Int(n),
                    });
                }
            }
        }
    }
    b.per_core(
        hub,
        "vane_connects_total",
        "CONNECTs accepted (CONNACK success).",
        Kind::Counter,
        |s| s.connects.get(),
    );
    b.by_code(
        hub,
        "vane_disconnects_total",
        "Connected clients that went away, by the reason code the connection ended with (0x80 also covers a lost connection).",
        |s| &s.disconnects,
    );
    b.by_code(
        hub,
        "vane_protocol_errors_total",
        "Connections ended for a protocol violation, by reason code.",
        |s| &s.protocol_errors_by,
    );
    b.per_core(
        hub,
        "vane_auth_failures_total",
        "CONNECTs refused for their credentials or authentication method.",
        Kind::Counter,
        |s| s.auth_failures.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_online",
        "Sessions with a live connection.",
        Kind::Gauge,
        |s| s.sessions_online.get(),
    );
    b.per_core(
        hub,
        "vane_connections_parked",
        "Idle connections parked: no task, their socket watched by the core's epoll set.",
        Kind::Gauge,
        |s| s.connections_parked.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_offline",
        "Persistent sessions without a connection.",
        Kind::Gauge,
        |s| s.sessions_offline.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_expired_total",
        "Offline sessions that expired.",
        Kind::Counter,
        |s| s.sessions_expired.get(),
    );
    b.per_core(
        hub,
        "vane_sessions_evicted_total",
        "Offline sessions ended early, offline longest first, because the core held its share of max_offline_sessions.",
        Kind::Counter,
        |s| s.sessions_evicted.get(),
    );
    b.per_core(
        hub,
        "vane_subscriptions",
        "Subscriptions of the core's sessions.",
        Kind::Gauge,
        |s| s.subscriptions.get(),
    );
    b.per_core(
        hub,
        "vane_shared_subscriptions",
        "Shared subscriptions ($share/...) of the core's sessions.",
        Kind::Gauge,
        |s| s.shared_subscriptions.get(),
    );
    b.single(
        "vane_retained_messages",
        "Retained messages (every core holds a replica of all of them).",
        Kind::Gauge,
        Value::Int(
            hub.cores
                .iter()
                .map(|s| s.retained_messages.get())
                .max()
                .unwrap_or(0),
        ),
    );
    b.per_core(
        hub,
        "vane_retained_refused_total",
        "Retained messages for a new topic not stored because max_retained_messages was reached (they were still delivered), by the core that received them.",
        Kind::Counter,
        |s| s.retained_refused.get(),
    );
    b.by_qos(
        hub,
        "vane_messages_received_total",
        "PUBLISH packets received from clients, by QoS.",
        |s| &s.received_by_qos,
    );
    b.by_qos(
        hub,
        "vane_message_bytes_received_total",
        "Bytes of the PUBLISH packets received from clients, by QoS.",
        |s| &s.received_bytes_by_qos,
    );
    b.by_qos(
        hub,
        "vane_messages_sent_total",
        "PUBLISH packets written to clients, by QoS.",
        |s| &s.sent_by_qos,
    );
    b.by_qos(
        hub,
        "vane_message_bytes_sent_total",
        "Bytes of the PUBLISH packets written to clients, by QoS.",
        |s| &s.sent_bytes_by_qos,
    );
    b.per_core(
        hub,
        "vane_network_bytes_received_total",
        "Bytes read from client sockets.",
        Kind::Counter,
        |s| s.bytes_received.get(),
    );
    b.per_core(
        hub,
        "vane_network_bytes_sent_total",
        "Bytes written to client sockets.",
        Kind::Counter,
        |s| s.bytes_sent.get(),
    );
    {
        let family = b.family(
            "vane_messages_dropped_total",
            "Messages not delivered, by cause.",
            Kind::Counter,
        );
        for (id, stats) in hub.cores.iter().enumerate() {
            for cause in DropCause::ALL {
                family.samples.push(Sample {
                    labels: vec![("core", id.to_string()), ("cause", cause.label().into())],
                    value: Value::Int(stats.drops[cause as usize].get()),
                });
            }
        }
    }
    b.per_core(
        hub,
        "vane_wills_published_total",
        "Will messages published.",
        Kind::Counter,
        |s| s.wills_published.get(),
    );
    b.per_core(
        hub,
        "vane_inflight_messages",
        "Outbound QoS 1 and 2 messages awaiting acknowledgement.",
        Kind::Gauge,
        |s| s.inflight.get(),
    );
    b.per_core(
        hub,
        "vane_queued_messages",
        "Messages queued in sessions beyond the inflight window.",
        Kind::Gauge,
        |s| s.queued.get(),
    );
    b.per_core(
        hub,
        "vane_mailbox_messages_total",
        "Messages sent to other cores.",
        Kind::Counter,
        |s| s.mailbox_messages.get(),
    );
    b.per_core(
        hub,
        "vane_mailbox_batches_total",
        "Batches received from other cores.",
        Kind::Counter,
        |s| s.mailbox_batches.get(),
    );
    b.per_core(
        hub,
        "vane_mailbox_full_total",
        "Times a publisher waited because a mailbox to another core was full.",
        Kind::Counter,
        |s| s.mailbox_full.get(),
    );
    b.per_core_seconds(
        hub,
        "vane_executor_lag_seconds",
        "How late the core's 100 ms tick last woke.",
        |s| s.loop_lag_ns.get(),
    );
    b.per_core_seconds(
        hub,
        "vane_executor_lag_max_seconds",
        "The most the core's tick woke late in the last 10 to 20 seconds.",
        |s| s.loop_lag_max_ns.get(),
    );
    let now_ms = hub.started.elapsed().as_millis() as u64;
    b.per_core(
        hub,
        "vane_core_ready",
        "1 while the core accepts connections and its executor ticks.",
        Kind::Gauge,
        |s| u64::from(core_ready(s, now_ms)),
    );
    if hub.enabled {
        latency_families(&mut b, latest);
    }
    process_families(&mut b, hub);
    b.families
}

fn latency_families(b: &mut Builder, latest: &Latest) {
    {
        let family = b.family(
            "vane_publish_latency_seconds",
            "Publish-to-deliver latency inside the broker: PUBLISH decoded to its bytes written to a subscriber (sampled).",
            Kind::Histogram,
        );
        for snap in latest.iter().flatten() {
            let h = &snap.total;
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
            let mut below = 0;
            for le in LATENCY_BUCKETS {
                let upto = h.count_between(0, (le * 1e9) as u64);
                buckets.push((le, upto.saturating_sub(below)));
                below = upto;
            }
            buckets.push((f64::INFINITY, h.len().saturating_sub(below)));
            family.samples.push(Sample {
                labels: vec![("core", snap.core.to_string())],
                value: Value::Histogram {
                    sum: h.mean() * h.len() as f64 / 1e9,
                    count: h.len(),
                    buckets,
                },
            });
        }
    }
    let family = b.family(
        "vane_publish_latency_window_seconds",
        "Quantiles of publish-to-deliver latency over the last 10 to 20 seconds (HDR histogram, sampled).",
        Kind::Summary,
    );
    for snap in latest.iter().flatten() {
        let w = &snap.window;
        family.samples.push(Sample {
            labels: vec![("core", snap.core.to_string())],
            value: Value::Summary {
                sum: w.mean() * w.len() as f64 / 1e9,
                count: w.len(),
                quantiles: QUANTILES
                    .iter()
                    .map(|&q| (q, w.value_at_quantile(q) as f64 / 1e9))
                    .collect(),
            },
        });
    }
}

/// CPU, memory, descriptors and start time of this process, from /proc.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl ProcessFigures {
    pub fn read() -> ProcessFigures {
        // SAFETY: sysconf and getrlimit only read or write what they are given.
        let (ticks, page, max_fds) = unsafe {
            let mut limit: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur
            } else {
                0
            };
            (
                libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
                libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
                max,
            )
        };
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // Fields after the parenthesised command name; utime and
                // stime are the 14th and 15th fields of the whole line.
                let rest = &stat[stat.rfind(')')? + 2..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = fields.get(11)?.parse().ok()?;
                let stime: f64 = fields.get(12)?.parse().ok()?;
                Some((utime + stime) / ticks)
            })
            .unwrap_or(0.0);
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        ProcessFigures {
            cpu_seconds,
            rss_bytes,
            open_fds,
            max_fds,
        }
    }
}

fn process_families(b: &mut Builder, hub: &StatsHub) {
    let p = ProcessFigures::read();
    b.single(
        "process_cpu_seconds_total",
        "User and system CPU time of the process.",
        Kind::Counter,
        Value::Float(p.cpu_seconds),
    );
    b.single(
        "process_resident_memory_bytes",
        "Resident memory of the process.",
        Kind::Gauge,
        Value::Int(p.rss_bytes),
    );
    b.single(
        "process_open_fds",
        "Open file descriptors.",
        Kind::Gauge,
        Value::Int(p.open_fds),
    );
    b.single(
        "process_max_fds",
        "The open-files limit.",
        Kind::Gauge,
        Value::Int(p.max_fds),
    );
    b.single(
        "process_start_time_seconds",
        "When the broker started (Unix time).",
        Kind::Gauge,
        Value::Float(hub.started_unix),
    );
    b.single(
        "vane_uptime_seconds",
        "Seconds since the broker started.",
        Kind::Gauge,
        Value::Float(hub.started.elapsed().as_secs_f64()),
    );
    b.family(
        "vane_build_info",
        "The broker's version (the value is always 1).",
        Kind::Gauge,
    )
    .samples
    .push(Sample {
        labels: vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        value: Value::Int(1),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::metrics::LatencyRecorder;

    #[test]
    fn latency_histogram_buckets_add_up_to_the_count() {
        let mut recorder = LatencyRecorder::new();
        for micros in [5u64, 20, 80, 400, 3_000, 20_000_000] {
            recorder.record(micros * 1_000);
        }
        let snap = recorder.snapshot(0);
        let hub = StatsHub::new(1, true);
        let families = collect(&hub, &vec![Some(snap)]);
        let hist = families
            .iter()
            .find(|f| f.name == "vane_publish_latency_seconds")
            .unwrap();
        let Value::Histogram { count, buckets, .. } = &hist.samples[0].value else {
            panic!("a histogram")
        };
        assert_eq!(*count, 6);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 6);
        assert_eq!(buckets.last().unwrap().1, 1, "20 s is above the last bound");
    }
}
