//! Turns a command line into a [`Plan`]: which clients to open, what each
//! does, and what a correct run should deliver.
//!
//! Scenario defaults live here. They are sized for a small machine (a few
//! thousand messages per second); every one can be raised from the command
//! line.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use vane::codec::{ProtocolVersion, QoS};

use crate::config::{Command, Opts};
use crate::payload::HEADER_LEN;
use crate::template::{Template, Vars};

/// What a group of clients does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connect and hold (keep-alive only).
    Idle,
    Publisher,
    Subscriber,
    /// Publishes retained messages before subscribers connect, then clears them.
    Seeder,
}

/// A set of clients that behave alike.
#[derive(Debug, Clone)]
pub struct Group {
    pub role: Role,
    /// Client ids are `{prefix}-{label}-{index}`.
    pub label: &'static str,
    pub count: usize,
    /// Topic (publishers, seeders) or filter (subscribers) template.
    pub topic: Template,
    pub qos: QoS,
    pub retain: bool,
    pub size: usize,
    /// Messages per second per client; 0 means as fast as the window allows.
    pub rate: f64,
    /// Per-client message limit.
    pub limit: Option<u64>,
    /// For a slow subscriber: the messages per second it reads at most.
    pub read_rate: Option<f64>,
    /// Whether its latencies count in the main figures.
    pub measured: bool,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    pub broker: SocketAddr,
    pub sources: Vec<IpAddr>,
    pub cores: usize,
    pub pin: bool,
    pub version: ProtocolVersion,
    pub connect_rate: f64,
    pub connect_timeout: Duration,
    pub client_id_prefix: String,
    pub id_offset: u64,
    pub clean: bool,
    pub session_expiry: u32,
    pub keepalive: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub groups: Vec<Group>,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub inflight: u16,
    pub run_id: u32,
    /// Subscribers accept messages from any run (standalone `sub`).
    pub any_run: bool,
    pub io_memory: usize,
    pub ring_depth: usize,
    pub quiet: bool,
}

fn or<T>(v: Option<T>, default: T) -> T {
    v.unwrap_or(default)
}

fn qos_of(level: u8) -> QoS {
    QoS::from_bits(level).unwrap_or(QoS::AtMostOnce)
}

impl Plan {
    /// Builds the plan for `cmd`, filling in its scenario's defaults.
    pub fn from_command(cmd: &Command) -> Result<Plan, String> {
        let o = cmd.opts();
        let name = cmd.name();
        let broker = (o.host.as_str(), o.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}:{}: {e}", o.host, o.port))?
            .next()
            .ok_or_else(|| format!("{} has no address", o.host))?;
        if o.cores == 0 {
            return Err("--cores must be at least 1".into());
        }
        let qos = qos_of(or(o.qos, 0));
        let size = or(o.size, 64).max(HEADER_LEN);
        let tpl = |given: &Option<String>, default: &str| -> Result<Template, String> {
            Template::parse(given.as_deref().unwrap_or(default))
        };
        let publishers = |n: usize, rate: f64, topic: Template| Group {
            role: Role::Publisher,
            label: "p",
            count: n,
            topic,
            qos,
            retain: o.retain,
            size,
            rate: per_client_rate(o, n, rate),
            limit: o.count,
            read_rate: None,
            measured: true,
        };
        let subscribers = |n: usize, filter: Template| Group {
            role: Role::Subscriber,
            label: "s",
            count: n,
            topic: filter,
            qos,
            retain: false,
            size,
            rate: 0.0,
            limit: None,
            read_rate: None,
            measured: true,
        };
        let share = |filter: &str| match &o.shared_group {
            Some(g) => format!("$share/{g}/{filter}"),
            None => filter.to_string(),
        };
        let mut warmup = Duration::from_secs(1);
        let groups = match cmd {
            Command::Conn(_) => {
                warmup = Duration::ZERO;
                vec![Group {
                    role: Role::Idle,
                    label: "c",
                    count: or(o.connections, 1000),
                    topic: Template::parse("")?,
                    qos,
                    retain: false,
                    size,
                    rate: 0.0,
                    limit: None,
                    read_rate: None,
                    measured: true,
                }]
            }
            Command::Pub(_) => vec![publishers(
                or(o.publishers, 10),
                100.0,
                tpl(&o.topic, "vlg/%i")?,
            )],
            Command::Sub(_) => {
                warmup = Duration::ZERO;
                let f = share(o.filter.as_deref().unwrap_or("vlg/#"));
                vec![subscribers(or(o.subscribers, 10), Template::parse(&f)?)]
            }
            Command::Bench(_) => {
                let f = share(o.filter.as_deref().unwrap_or("vlg/bench/#"));
                vec![
                    subscribers(or(o.subscribers, 10), Template::parse(&f)?),
                    publishers(or(o.publishers, 10), 100.0, tpl(&o.topic, "vlg/bench/%i")?),
                ]
            }
            Command::FanIn(_) => vec![
                subscribers(or(o.subscribers, 1), tpl(&o.filter, "vlg/fan-in/#")?),
                publishers(or(o.publishers, 50), 100.0, tpl(&o.topic, "vlg/fan-in/%i")?),
            ],
            Command::FanOut(_) => vec![
                subscribers(or(o.subscribers, 50), tpl(&o.filter, "vlg/fan-out")?),
                publishers(or(o.publishers, 1), 100.0, tpl(&o.topic, "vlg/fan-out")?),
            ],
            Command::Pairs(_) => {
                let n = or(o.publishers.or(o.subscribers), 50);
                vec![
                    subscribers(n, tpl(&o.filter, "vlg/pairs/%i")?),
                    publishers(n, 100.0, tpl(&o.topic, "vlg/pairs/%i")?),
                ]
            }
            Command::Shared(_) => {
                let group = o.shared_group.as_deref().unwrap_or("vlg");
                let f = format!(
                    "$share/{group}/{}",
                    o.filter.as_deref().unwrap_or("vlg/shared/#")
                );
                vec![
                    subscribers(or(o.subscribers, 10), Template::parse(&f)?),
                    publishers(or(o.publishers, 10), 500.0, tpl(&o.topic, "vlg/shared/%i")?),
                ]
            }
            Command::RetainedStorm(_) => {
                warmup = Duration::ZERO;
                let topics = or(o.topics, 1000).max(1);
                let seeders = or(o.publishers, 4).clamp(1, topics);
                let per = topics.div_ceil(seeders) as u64;
                vec![
                    Group {
                        role: Role::Seeder,
                        label: "seed",
                        count: seeders,
                        topic: tpl(&o.topic, "vlg/retained/%i/%n")?,
                        qos: qos_of(or(o.qos, 1)),
                        retain: true,
                        size,
                        rate: o.rate.unwrap_or(0.0),
                        limit: Some(per),
                        read_rate: None,
                        measured: false,
                    },
                    Group {
                        qos: qos_of(or(o.qos, 1)),
                        ..subscribers(or(o.subscribers, 50), tpl(&o.filter, "vlg/retained/#")?)
                    },
                ]
            }
            Command::SlowConsumer(_) => {
                let pubs = publishers(or(o.publishers, 10), 100.0, tpl(&o.topic, "vlg/slow/%i")?);
                let offered = pubs.rate * pubs.count as f64;
                let filter = tpl(&o.filter, "vlg/slow/#")?;
                let slow = Group {
                    label: "slow",
                    read_rate: Some((offered * o.slow_fraction).max(1.0)),
                    measured: false,
                    count: 1,
                    ..subscribers(1, filter.clone())
                };
                vec![subscribers(or(o.subscribers, 10), filter), slow, pubs]
            }
        };
        let total: usize = groups.iter().map(|g| g.count).sum();
        let connect_rate = match o.ramp {
            Some(r) if !r.is_zero() => total as f64 / r.as_secs_f64(),
            _ => or(o.connect_rate, 2000.0),
        };
        if connect_rate <= 0.0 {
            return Err("--connect-rate must be positive".into());
        }
        let run_id = (crate::payload::now_ns() ^ (std::process::id() as u64) << 32) as u32 | 1;
        Ok(Plan {
            scenario: name,
            broker,
            sources: o.source.clone().map(|s| s.0).unwrap_or_default(),
            cores: o.cores,
            pin: !o.no_pin,
            version: o.version,
            connect_rate,
            connect_timeout: o.connect_timeout.max(Duration::from_millis(1)),
            client_id_prefix: o.client_id_prefix.clone(),
            id_offset: o.id_offset,
            clean: !o.persistent,
            session_expiry: if o.persistent { o.session_expiry } else { 0 },
            keepalive: o.keepalive,
            username: o.username.clone(),
            password: o.password.clone().map(Bytes::from),
            groups,
            warmup: o.warmup.unwrap_or(warmup),
            duration: o.duration.unwrap_or(Duration::from_secs(10)),
            drain: o.drain,
            inflight: o.inflight.max(1),
            run_id: o.run_id.unwrap_or(run_id),
            any_run: matches!(cmd, Command::Sub(_)) && o.run_id.is_none(),
            io_memory: o.io_memory_kib.max(64) * 1024,
            ring_depth: o.ring_depth.clamp(8, 4096),
            quiet: o.quiet,
        })
    }

    /// The client id of client `i` of `group`.
    pub fn client_id(&self, group: &Group, i: usize) -> String {
        format!(
            "{}-{}-{}",
            self.client_id_prefix,
            group.label,
            self.id_offset + i as u64
        )
    }

    /// Which core client `i` of group `g` runs on.
    pub fn core_of(&self, g: usize, i: usize) -> usize {
        let before: usize = self.groups[..g].iter().map(|x| x.count).sum();
        (before + i) % self.cores
    }

    /// The largest number of messages any publisher will send, if bounded.
    pub fn has_publishers(&self) -> bool {
        self.groups.iter().any(|g| g.role == Role::Publisher)
    }

    /// Which measured subscriptions exist, for counting expected deliveries.
    pub fn copies(&self) -> Copies {
        let mut c = Copies::default();
        let mut shares = std::collections::HashSet::new();
        for (gi, g) in self.groups.iter().enumerate() {
            if g.role != Role::Subscriber || !g.measured {
                continue;
            }
            c.any_subscribers = true;
            for j in 0..g.count {
                let vars = Vars {
                    index: self.id_offset + j as u64,
                    core: self.core_of(gi, j),
                    ..Vars::default()
                };
                let filter = g.topic.render(&vars);
                let (share, pattern) = split_share(&filter);
                if let Some(name) = share {
                    // A share group receives each message once.
                    if !shares.insert((name.to_string(), pattern.to_string())) {
                        continue;
                    }
                }
                let has_wildcard = pattern.split('/').any(|l| l == "+" || l == "#");
                if has_wildcard {
                    *c.wild.entry(pattern.to_string()).or_default() += 1;
                } else {
                    *c.exact.entry(pattern.to_string()).or_default() += 1;
                }
            }
        }
        for (gi, g) in self.groups.iter().enumerate() {
            if g.role != Role::Publisher {
                continue;
            }
            for i in 0..g.count {
                let n = if g.topic.per_message() || !c.any_subscribers {
                    None
                } else {
                    let vars = Vars {
                        index: self.id_offset + i as u64,
                        core: self.core_of(gi, i),
                        ..Vars::default()
                    };
                    Some(c.count(&g.topic.render(&vars)))
                };
                c.per_publisher.insert(self.id_offset + i as u64, n);
            }
        }
        c
    }
}

/// Expected deliveries per message, by publisher.
#[derive(Debug, Default)]
pub struct Copies {
    any_subscribers: bool,
    exact: std::collections::HashMap<String, u64>,
    wild: std::collections::HashMap<String, u64>,
    /// Publisher id -> deliveries per message (`None`: unknown).
    pub per_publisher: std::collections::HashMap<u64, Option<u64>>,
}

impl Copies {
    fn count(&self, topic: &str) -> u64 {
        self.exact.get(topic).copied().unwrap_or(0)
            + self
                .wild
                .iter()
                .filter(|(f, _)| topic_matches(f, topic))
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    /// Deliveries per message of publisher `id`, if known.
    pub fn of(&self, id: u64) -> Option<u64> {
        self.per_publisher.get(&id).copied().flatten()
    }

    /// The number when every publisher has the same one.
    pub fn uniform(&self) -> Option<u64> {
        let mut it = self.per_publisher.values();
        let first = (*it.next()?)?;
        it.all(|v| *v == Some(first)).then_some(first)
    }
}

fn per_client_rate(o: &Opts, n: usize, default: f64) -> f64 {
    match o.total_rate {
        Some(total) if n > 0 => total / n as f64,
        _ => o.rate.unwrap_or(default).max(0.0),
    }
}

/// Splits `$share/group/filter` into the group and the filter.
pub fn split_share(filter: &str) -> (Option<&str>, &str) {
    if let Some(rest) = filter.strip_prefix("$share/") {
        if let Some((group, pattern)) = rest.split_once('/') {
            return (Some(group), pattern);
        }
    }
    (None, filter)
}

/// MQTT topic matching (`+`, `#`, and `$` topics unmatched by leading wildcards).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
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

    #[test]
    fn matching() {
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert_eq!(split_share("$share/g/a/#"), (Some("g"), "a/#"));
        assert_eq!(split_share("a/#"), (None, "a/#"));
    }

    #[test]
    fn scenario_copies() {
        let c = plan(&["fan-out", "--subscribers", "7"]).copies();
        assert_eq!(c.of(0), Some(7));
        assert_eq!(c.uniform(), Some(7));
        let c = plan(&["pairs", "--publishers", "5"]).copies();
        for i in 0..5 {
            assert_eq!(c.of(i), Some(1));
        }
        assert_eq!(c.of(5), None);
        let c = plan(&["shared"]).copies();
        assert_eq!(c.of(3), Some(1));
        let c = plan(&["slow-consumer", "--subscribers", "3"]).copies();
        assert_eq!(c.of(0), Some(3));
        let c = plan(&["pub"]).copies();
        assert_eq!(c.uniform(), None);
        let c = plan(&["pairs", "--publishers", "3", "--id-offset", "100"]).copies();
        assert_eq!(c.of(101), Some(1));
    }

    #[test]
    fn copies_scale_to_many_pairs() {
        let started = std::time::Instant::now();
        let c = plan(&["pairs", "--publishers", "50000"]).copies();
        assert_eq!(c.uniform(), Some(1));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn total_rate_is_split() {
        let p = plan(&["fan-in", "--publishers", "4", "--total-rate", "1000"]);
        let pubs = p.groups.iter().find(|g| g.role == Role::Publisher).unwrap();
        assert_eq!(pubs.rate, 250.0);
    }

    #[test]
    fn ramp_sets_connect_rate() {
        let p = plan(&["conn", "-n", "100", "--ramp", "2s"]);
        assert_eq!(p.connect_rate, 50.0);
    }
}
