//! The command line: subcommands, options and their parsers.
//!
//! Every subcommand takes the same [`Opts`]; options a scenario has no use
//! for are ignored, and options left out take the scenario's defaults
//! (see `plan.rs`). Durations are written `500ms`, `5s`, `2m` or `1h`
//! (a bare number is seconds).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vane::codec::ProtocolVersion;

/// A thread-per-core MQTT load generator.
#[derive(Parser, Debug, Clone)]
#[command(name = "vane-loadgen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Open N connections at a given rate and hold them.
    Conn(Opts),
    /// Publishers only, at a given rate.
    Pub(Opts),
    /// Subscribers only: measure whatever arrives.
    Sub(Opts),
    /// Publishers and subscribers in one process (exact end-to-end latency).
    Bench(Opts),
    /// Many publishers -> one subscriber on a wildcard.
    FanIn(Opts),
    /// One publisher -> many subscribers.
    FanOut(Opts),
    /// N publisher -> subscriber pairs on distinct topics.
    Pairs(Opts),
    /// Publishers -> one $share group of subscribers.
    Shared(Opts),
    /// Many retained topics, then many wildcard subscribers.
    RetainedStorm(Opts),
    /// One subscriber reads at a fraction of its offered rate; the others are measured.
    SlowConsumer(Opts),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Conn(_) => "conn",
            Command::Pub(_) => "pub",
            Command::Sub(_) => "sub",
            Command::Bench(_) => "bench",
            Command::FanIn(_) => "fan-in",
            Command::FanOut(_) => "fan-out",
            Command::Pairs(_) => "pairs",
            Command::Shared(_) => "shared",
            Command::RetainedStorm(_) => "retained-storm",
            Command::SlowConsumer(_) => "slow-consumer",
        }
    }

    pub fn opts(&self) -> &Opts {
        match self {
            Command::Conn(o)
            | Command::Pub(o)
            | Command::Sub(o)
            | Command::Bench(o)
            | Command::FanIn(o)
            | Command::FanOut(o)
            | Command::Pairs(o)
            | Command::Shared(o)
            | Command::RetainedStorm(o)
            | Command::SlowConsumer(o) => o,
        }
    }

    pub fn opts_mut(&mut self) -> &mut Opts {
        match self {
            Command::Conn(o)
            | Command::Pub(o)
            | Command::Sub(o)
            | Command::Bench(o)
            | Command::FanIn(o)
            | Command::FanOut(o)
            | Command::Pairs(o)
            | Command::Shared(o)
            | Command::RetainedStorm(o)
            | Command::SlowConsumer(o) => o,
        }
    }
}

/// Options shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct Opts {
    /// Broker host (an IP address or a name).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,
    /// Local source addresses, e.g. `127.0.0.2-127.0.0.64,10.0.0.5`; bound
    /// with IP_BIND_ADDRESS_NO_PORT so each gives ~64k connections per port.
    #[arg(long, value_parser = parse_sources)]
    pub source: Option<Sources>,
    /// Executors (pinned threads) to run on.
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    pub no_pin: bool,

    /// Connections to open (`conn`).
    #[arg(short = 'n', long)]
    pub connections: Option<usize>,
    /// Publishers.
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Subscribers.
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// New connections per second, over all cores.
    #[arg(long)]
    pub connect_rate: Option<f64>,
    /// Spread connection opening over this long (overrides --connect-rate).
    #[arg(long, value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// Give up on a connection (TCP + CONNACK) after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Client ids are PREFIX-ROLE-INDEX.
    #[arg(long, default_value = "vlg")]
    pub client_id_prefix: String,
    /// Added to every client index (to split one run across machines).
    #[arg(long, default_value_t = 0)]
    pub id_offset: u64,
    /// Persistent sessions (clean session / clean start off).
    #[arg(long)]
    pub persistent: bool,
    /// Session expiry interval for persistent 5.0 sessions, in seconds.
    #[arg(long, default_value_t = 300)]
    pub session_expiry: u32,
    /// Keep alive, seconds (0 disables).
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// MQTT protocol: 3.1, 3.1.1 (or 4) or 5.
    #[arg(long = "mqtt", default_value = "5", value_parser = parse_version)]
    pub version: ProtocolVersion,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub password: Option<String>,

    /// QoS for publishing and subscribing (0, 1 or 2).
    #[arg(short, long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// Publish with the RETAIN flag.
    #[arg(long)]
    pub retain: bool,
    /// Payload size in bytes (at least 28, the measurement header).
    #[arg(short, long)]
    pub size: Option<usize>,
    /// Publish topic template (%i client index, %c core, %r random, %n sequence).
    #[arg(short, long)]
    pub topic: Option<String>,
    /// Subscription filter template (same placeholders).
    #[arg(short, long)]
    pub filter: Option<String>,
    /// Subscribe as members of this $share group.
    #[arg(long)]
    pub shared_group: Option<String>,
    /// Messages per second per publisher (0: as fast as the window allows).
    #[arg(short, long)]
    pub rate: Option<f64>,
    /// Messages per second over all publishers (overrides --rate).
    #[arg(long)]
    pub total_rate: Option<f64>,
    /// Unacknowledged QoS 1/2 messages allowed per publisher.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// Retained topics to create (`retained-storm`).
    #[arg(long)]
    pub topics: Option<usize>,
    /// The slow subscriber's read rate as a fraction of what it is offered.
    #[arg(long, default_value_t = 0.1)]
    pub slow_fraction: f64,

    /// Publish for this long before measuring latency.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// How long to publish (or hold connections) after the warm-up.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop each publisher after this many messages.
    #[arg(short, long)]
    pub count: Option<u64>,
    /// After publishing stops, wait this long at most for deliveries and
    /// acks (it ends sooner once all arrived or nothing moved for 1s).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain: Duration,
    /// Only count messages from this run id (`sub`; default: any run).
    #[arg(long)]
    pub run_id: Option<u32>,

    /// Print the summary as JSON on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the end-to-end latency histogram (HdrHistogram .hgrm text).
    #[arg(long)]
    pub hdr_out: Option<PathBuf>,
    /// Write a per-second timeline as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write an SVG with the latency distribution and the throughput timeline.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// io_uring registered memory per executor, KiB (glommio io_memory).
    #[arg(long, default_value_t = 256)]
    pub io_memory_kib: usize,
    /// io_uring ring depth per executor.
    #[arg(long, default_value_t = 128)]
    pub ring_depth: usize,
}

impl Default for Opts {
    fn default() -> Self {
        // Parse an empty command line so the defaults live in one place.
        match Cli::parse_from(["vane-loadgen", "bench"]).command {
            Command::Bench(o) => o,
            _ => unreachable!(),
        }
    }
}

/// A list of source addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources(pub Vec<IpAddr>);

/// Parses `500ms`, `5s`, `2m`, `1h`, `250us` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use us, ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `3.1`, `3.1.1`, `4`, `5` or `5.0`.
pub fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "3" | "3.1" => Ok(ProtocolVersion::V3_1),
        "4" | "3.1.1" | "311" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        _ => Err(format!("unknown MQTT version {s:?} (use 3.1, 3.1.1 or 5)")),
    }
}

/// Parses `a,b,c-d`: single addresses and inclusive IPv4 ranges.
pub fn parse_sources(s: &str) -> Result<Sources, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        if let Some((a, b)) = item.split_once('-') {
            let a: std::net::Ipv4Addr = a.parse().map_err(|_| format!("bad address {a:?}"))?;
            let b: std::net::Ipv4Addr = b.parse().map_err(|_| format!("bad address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1 << 20 {
                return Err(format!("bad address range {item:?}"));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
        } else {
            out.push(item.parse().map_err(|_| format!("bad address {item:?}"))?);
        }
    }
    if out.is_empty() {
        return Err("no source addresses".into());
    }
    Ok(Sources(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sources() {
        let s = parse_sources("127.0.0.2-127.0.0.4,10.0.0.1").unwrap();
        assert_eq!(s.0.len(), 4);
        assert_eq!(s.0[0].to_string(), "127.0.0.2");
        assert_eq!(s.0[3].to_string(), "10.0.0.1");
        assert!(parse_sources("127.0.0.4-127.0.0.2").is_err());
        assert!(parse_sources("nope").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("3.1.1").unwrap(), ProtocolVersion::V3_1_1);
        assert_eq!(parse_version("5").unwrap(), ProtocolVersion::V5);
        assert!(parse_version("6").is_err());
    }

    #[test]
    fn every_subcommand_parses_with_defaults() {
        for name in [
            "conn",
            "pub",
            "sub",
            "bench",
            "fan-in",
            "fan-out",
            "pairs",
            "shared",
            "retained-storm",
            "slow-consumer",
        ] {
            let cli = Cli::try_parse_from(["vane-loadgen", name, "--port", "1884"]).unwrap();
            assert_eq!(cli.command.name(), name);
            assert_eq!(cli.command.opts().port, 1884);
        }
    }
}
