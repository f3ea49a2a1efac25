//! The broker's configuration: a TOML file whose every setting has a
//! working default, overridden by command-line flags.
//!
//! Owns: parsing and defaults, and turning settings into the limits the
//! protocol core enforces. Does not own: applying them (the runtime and
//! `crate::broker` do). `deploy/vane.toml` documents every setting.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::broker::connection::ConnectionLimits;
use crate::broker::session::{DropPolicy, SessionLimits};

/// The most executors a broker runs: cross-core delivery names the cores
/// a message goes to in one 64-bit mask.
pub const MAX_CORES: usize = 64;

/// The stats listener's address when none is configured. It is also
/// node_exporter's default port, so binding it may fail without stopping
/// the broker (see [`StatsSettings::listen_is_optional`]).
pub const DEFAULT_STATS_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9100,
));

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read; the I/O error is its source (printed
    /// after a colon by `{:#}`).
    #[error("cannot read the configuration file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type, on one
    /// line: where, and what is wrong (toml's own text spans several).
    #[error("invalid configuration in {path}{at}: {message}")]
    Parse {
        path: String,
        /// `, line L, column C` where toml knows the place, else empty.
        at: String,
        message: String,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Everything `vane` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MQTT listener address.
    pub listen: SocketAddr,
    /// Executors (one pinned thread each), at most [`MAX_CORES`]; 0 means
    /// one per CPU, up to [`MAX_CORES`].
    pub cores: usize,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` wins if set.
    pub log_level: String,
    pub limits: Limits,
    pub executor: ExecutorSettings,
    pub stats: StatsSettings,
    /// Topic filters whose subscription is refused, compared as written:
    /// SUBACK 0x80 in every version.
    pub deny_subscribe: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:1883".parse().expect("valid address"),
            cores: 0,
            log_level: "info".into(),
            limits: Limits::default(),
            executor: ExecutorSettings::default(),
            stats: StatsSettings::default(),
            deny_subscribe: Vec::new(),
        }
    }
}

/// Every protocol and resource limit. See `deploy/vane.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections open at once in all, over every core: an exact count
    /// the cores share (at least 1).
    pub max_connections: usize,
    /// Connections open at once on any one core; 0 means no per-core
    /// limit. Applies together with `max_connections`.
    pub max_connections_per_core: usize,
    pub max_packet_size: u32,
    pub max_inflight: u16,
    pub max_inflight_v5: u16,
    pub max_queued: usize,
    pub queue_qos0_offline: bool,
    pub drop_policy: DropPolicy,
    pub write_buffer_cap: usize,
    pub max_keepalive: u16,
    pub receive_maximum: u16,
    pub topic_alias_maximum: u16,
    pub max_topic_length: usize,
    pub max_topic_levels: usize,
    pub max_subscriptions: usize,
    pub max_session_expiry: u32,
    /// Retained messages the broker stores; 0 means no limit. At the limit
    /// a retained PUBLISH for a new topic is delivered but not stored.
    pub max_retained_messages: usize,
    /// Persistent sessions kept while their client is offline, in all
    /// (each core keeps its share); 0 means no limit. Beyond it the session
    /// offline longest ends.
    pub max_offline_sessions: usize,
    /// Milliseconds a new connection may take to send its CONNECT before
    /// it is closed (at least 1).
    pub connect_timeout_ms: u64,
    /// Milliseconds a subscriber over its back-pressure mark may go without
    /// reading anything before it counts as a slow consumer: no longer
    /// waited for, its QoS 0 overflow dropped (at least 1).
    pub slow_consumer_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let connection = ConnectionLimits::default();
        let session = SessionLimits::default();
        Limits {
            max_connections: 1_000_000,
            max_connections_per_core: 0,
            max_packet_size: connection.max_packet_size,
            max_inflight: session.max_inflight,
            max_inflight_v5: session.max_inflight_v5,
            max_queued: session.max_queued,
            queue_qos0_offline: session.queue_qos0_offline,
            drop_policy: session.drop_policy,
            write_buffer_cap: session.write_buffer_cap,
            max_keepalive: connection.max_keepalive,
            receive_maximum: connection.receive_maximum,
            topic_alias_maximum: connection.topic_alias_maximum,
            max_topic_length: connection.max_topic_length,
            max_topic_levels: connection.max_topic_levels,
            max_subscriptions: connection.max_subscriptions,
            max_session_expiry: connection.max_session_expiry,
            max_retained_messages: 1_000_000,
            max_offline_sessions: 1_000_000,
            connect_timeout_ms: 10_000,
            slow_consumer_grace_ms: 100,
        }
    }
}

impl Limits {
    pub fn connection(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_packet_size: self.max_packet_size,
            max_keepalive: self.max_keepalive,
            receive_maximum: self.receive_maximum,
            topic_alias_maximum: self.topic_alias_maximum,
            max_topic_length: self.max_topic_length,
            max_topic_levels: self.max_topic_levels,
            max_subscriptions: self.max_subscriptions,
            max_session_expiry: self.max_session_expiry,
        }
    }

    pub fn session(&self) -> SessionLimits {
        SessionLimits {
            max_inflight: self.max_inflight,
            max_inflight_v5: self.max_inflight_v5,
            max_queued: self.max_queued,
            queue_qos0_offline: self.queue_qos0_offline,
            drop_policy: self.drop_policy,
            write_buffer_cap: self.write_buffer_cap,
        }
    }

    /// The connection cap of each core: `max_connections_per_core`, or no
    /// cap (`usize::MAX`) when it is 0. The global `max_connections` is not
    /// shared out: the runtime counts it across the cores.
    pub fn per_core_connections(&self) -> usize {
        match self.max_connections_per_core {
            0 => usize::MAX,
            cap => cap,
        }
    }

    /// The offline-session cap of one core out of `cores` (0: no limit).
    pub fn per_core_offline_sessions(&self, cores: usize) -> usize {
        self.max_offline_sessions.div_ceil(cores.max(1))
    }
}

/// How each glommio executor is built.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Locked memory glommio registers per executor for I/O buffers. Vane
    /// does no file I/O, so this stays small: the locked-memory limit
    /// (`ulimit -l`) must cover cores × (io_memory + ring memory).
    pub io_memory: usize,
    /// io_uring submission queue depth.
    pub ring_depth: usize,
    /// Capacity, in batches, of each cross-core mailbox.
    pub mailbox_capacity: usize,
    /// Pin executor threads to CPUs.
    pub pin: bool,
    /// Milliseconds a connection must be idle (nothing read, nothing to
    /// write) before it is parked: its task and stream are dropped and the
    /// core's epoll set watches its socket, so it keeps about 660 bytes of state
    /// instead of about 3 KB (benches/RESULTS.md). 0 never parks.
    pub park_idle_after_ms: u64,
    /// Milliseconds between reviews of which live connections are fed
    /// mostly by one other core: one fed four in five of its messages by
    /// the same other core (with more than two cores, possibly fewer: see
    /// `affinity.rs`) in two reviews in a row moves there, socket
    /// and session, unnoticed by the client (a cross-core hop costs a
    /// wake-up of the other core). 0 turns moving off.
    pub follow_interval_ms: u64,
    /// A connection is reviewed once it received this many messages in an
    /// interval.
    pub follow_min_messages: u16,
    /// Moves happen only while both cores were less busy than this, in
    /// percent of one CPU, over the last two intervals: under load,
    /// connections stay spread over the cores.
    pub follow_max_load_pct: u8,
    /// A connection that received more than this many messages in an
    /// interval does not move: a move holds its new deliveries until
    /// what is already on its way by the old core has arrived, which at a
    /// high rate is a large backlog, and a busy connection's latency is
    /// its queue's, not the wake-up a move saves (at most 65,534).
    pub follow_max_messages: u16,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            io_memory: 64 << 10,
            ring_depth: 256,
            mailbox_capacity: 256,
            pin: true,
            park_idle_after_ms: 200,
            follow_interval_ms: 500,
            follow_min_messages: 64,
            follow_max_load_pct: 50,
            follow_max_messages: 10_000,
        }
    }
}

impl ExecutorSettings {
    /// How cores follow publishers, or None when off (or with more cores
    /// than a connection's tally can name).
    pub fn follow(&self, ncores: usize) -> Option<super::affinity::FollowSettings> {
        (self.follow_interval_ms > 0 && (2..255).contains(&ncores)).then(|| {
            super::affinity::FollowSettings {
                interval: std::time::Duration::from_millis(self.follow_interval_ms),
                min_messages: self.follow_min_messages.max(1),
                max_load_permille: u64::from(self.follow_max_load_pct.min(100)) * 10,
                // The tally saturates at u16::MAX: at most one below it.
                max_messages: self.follow_max_messages.min(u16::MAX - 1),
                max_moves: 64,
            }
        })
    }
}

/// The stats endpoint and `$SYS` topics. See `deploy/vane.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "StatsFile")]
pub struct StatsSettings {
    /// Serve `/metrics`, `/stats`, `/healthz` and `/readyz`, and sample
    /// publish-to-deliver latency. Counters are kept either way.
    pub enabled: bool,
    /// Address of the stats HTTP listener.
    pub listen: SocketAddr,
    /// Whether `listen` was chosen: set when the file names it and by
    /// `--stats-listen`. Only the default address, chosen by no one, may
    /// fail to bind without stopping the broker.
    pub listen_given: bool,
    /// Seconds between `$SYS` publications; 0 turns them off.
    pub sys_interval: u64,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            enabled: true,
            listen: DEFAULT_STATS_LISTEN,
            listen_given: false,
            sys_interval: 10,
        }
    }
}

impl StatsSettings {
    /// True when failing to bind `listen` is only worth a warning: it is
    /// the default address and no one asked for it. Port 9100 is also
    /// node_exporter's, so a plain `vane` on a monitored server would
    /// otherwise not start. An address that was given (in the file, with
    /// `--stats-listen`, or set in code to another address) must bind.
    pub fn listen_is_optional(&self) -> bool {
        !self.listen_given && self.listen == DEFAULT_STATS_LISTEN
    }
}

/// `[stats]` as written in the file: tells a `listen` left out from one
/// given.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StatsFile {
    enabled: bool,
    listen: Option<SocketAddr>,
    sys_interval: u64,
}

impl Default for StatsFile {
    fn default() -> Self {
        let defaults = StatsSettings::default();
        StatsFile {
            enabled: defaults.enabled,
            listen: None,
            sys_interval: defaults.sys_interval,
        }
    }
}

impl From<StatsFile> for StatsSettings {
    fn from(file: StatsFile) -> Self {
        StatsSettings {
            enabled: file.enabled,
            listen: file.listen.unwrap_or(DEFAULT_STATS_LISTEN),
            listen_given: file.listen.is_some(),
            sys_interval: file.sys_interval,
        }
    }
}

impl Config {
    /// Reads a TOML file; settings it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|error| ConfigError::Parse {
            path: path.display().to_string(),
            at: error
                .span()
                .map(|span| {
                    let (line, column) = line_and_column(&text, span.start);
                    format!(", line {line}, column {column}")
                })
                .unwrap_or_default(),
            message: error.message().trim().replace('\n', "; "),
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks settings that would make the broker misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cores > MAX_CORES {
            return Err(ConfigError::Invalid(format!(
                "cores = {} (or --cores {}): at most {MAX_CORES} executors are supported \
                 (cross-core delivery names cores in a 64-bit mask); \
                 use 0 for one per CPU, up to {MAX_CORES}",
                self.cores, self.cores
            )));
        }
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_connections must be at least 1".into(),
            ));
        }
        if l.max_packet_size < 64 {
            return Err(ConfigError::Invalid(
                "limits.max_packet_size must be at least 64".into(),
            ));
        }
        if l.max_packet_size > crate::codec::MAX_PACKET_SIZE_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "limits.max_packet_size must be at most {}",
                crate::codec::MAX_PACKET_SIZE_LIMIT
            )));
        }
        if l.connect_timeout_ms == 0 || l.slow_consumer_grace_ms == 0 {
            return Err(ConfigError::Invalid(
                "limits.connect_timeout_ms and limits.slow_consumer_grace_ms must be at least 1"
                    .into(),
            ));
        }
        if l.max_inflight == 0 || l.max_inflight_v5 == 0 || l.receive_maximum == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_inflight, limits.max_inflight_v5 and limits.receive_maximum must be at least 1".into(),
            ));
        }
        if let Some(bad) = self
            .deny_subscribe
            .iter()
            .find(|f| crate::codec::TopicFilter::try_from(f.as_str()).is_err())
        {
            return Err(ConfigError::Invalid(format!(
                "deny_subscribe: {bad:?} is not a topic filter"
            )));
        }
        if self.executor.mailbox_capacity == 0 {
            return Err(ConfigError::Invalid(
                "executor.mailbox_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The number of executors to start: `cores`, or with 0 one per CPU
    /// this process may use, at most [`MAX_CORES`].
    pub fn effective_cores(&self) -> usize {
        cores_for(self.cores, available_cpus())
    }

    /// With `cores = 0` on a machine of more than [`MAX_CORES`] CPUs: the
    /// number of CPUs, which the broker does not all use.
    pub fn cpus_left_unused(&self) -> Option<usize> {
        let cpus = available_cpus();
        (self.cores == 0 && cpus > MAX_CORES).then_some(cpus)
    }
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Executors for a `cores` setting on a machine of `cpus` CPUs.
fn cores_for(setting: usize, cpus: usize) -> usize {
    match setting {
        0 => cpus.clamp(1, MAX_CORES),
        cores => cores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_working_defaults() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.listen, "0.0.0.0:1883".parse().unwrap());
        assert_eq!(config.cores, 0);
        config.validate().unwrap();
    }

    #[test]
    fn settings_override_defaults_and_unknown_keys_are_rejected() {
        let config = Config::from_toml(
            "listen = \"127.0.0.1:1999\"\n[limits]\nmax_queued = 5\ndrop_policy = \"drop-oldest\"\n",
        )
        .unwrap();
        assert_eq!(config.limits.max_queued, 5);
        assert_eq!(config.limits.drop_policy, DropPolicy::DropOldest);
        assert!(Config::from_toml("[limits]\nmax_qeued = 5\n").is_err());
    }

    /// The per-core cap is a setting of its own: it no longer replaces
    /// `max_connections` (which the runtime counts across the cores), and
    /// 0 means no per-core cap. A global limit of 0, which would refuse
    /// every client, is an error.
    #[test]
    fn per_core_connection_cap_is_its_own_setting() {
        let limits = Limits {
            max_connections: 10,
            ..Limits::default()
        };
        assert_eq!(limits.per_core_connections(), usize::MAX);
        let limits = Limits {
            max_connections_per_core: 2,
            ..limits
        };
        assert_eq!(limits.per_core_connections(), 2);
        assert_eq!(limits.max_connections, 10);
        let config = Config::from_toml("[limits]\nmax_connections = 0\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("limits.max_connections"), "{error}");
    }

    /// More than 64 executors is a configuration error (routing names cores
    /// in a u64); the default takes one per CPU, at most 64.
    #[test]
    fn cores_are_capped_at_64() {
        for ok in [0, 1, 2, MAX_CORES] {
            let config = Config::from_toml(&format!("cores = {ok}\n")).unwrap();
            config.validate().unwrap();
        }
        let config = Config::from_toml("cores = 65\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("cores = 65") && error.contains("at most 64"),
            "{error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
        assert_eq!(cores_for(0, 8), 8);
        assert_eq!(cores_for(0, 64), 64);
        assert_eq!(cores_for(0, 65), 64);
        assert_eq!(cores_for(0, 256), 64);
        assert_eq!(cores_for(0, 0), 1);
        assert_eq!(cores_for(3, 256), 3);
        let default = Config::default();
        assert!((1..=MAX_CORES).contains(&default.effective_cores()));
        assert_eq!(
            default.cpus_left_unused().is_some(),
            available_cpus() > MAX_CORES
        );
    }

    /// The stats address is "given" only when the file names it; only the
    /// default address that no one chose may fail to bind.
    #[test]
    fn stats_listen_is_given_only_when_named() {
        let default = Config::from_toml("[stats]\nsys_interval = 5\n").unwrap();
        assert_eq!(default.stats.listen, DEFAULT_STATS_LISTEN);
        assert_eq!(default.stats.sys_interval, 5);
        assert!(default.stats.enabled);
        assert!(!default.stats.listen_given);
        assert!(default.stats.listen_is_optional());
        assert!(Config::from_toml("").unwrap().stats.listen_is_optional());
        assert!(Config::default().stats.listen_is_optional());
        let named = Config::from_toml("[stats]\nlisten = \"127.0.0.1:9100\"\n").unwrap();
        assert!(named.stats.listen_given);
        assert!(!named.stats.listen_is_optional());
        // Set in code to another address: that address must bind.
        let mut other = Config::default();
        other.stats.listen = "127.0.0.1:0".parse().unwrap();
        assert!(!other.stats.listen_is_optional());
        assert!(Config::from_toml("[stats]\nlisten = 5\n").is_err());
        assert!(Config::from_toml("[stats]\nlisen = \"127.0.0.1:1\"\n").is_err());
    }

    /// A file that cannot be read or parsed gives one line naming the file
    /// and, for a parse error, the line and column.
    #[test]
    fn file_errors_are_one_line() {
        let dir = std::env::temp_dir().join(format!("vane-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let error = Config::from_file(&missing).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
        assert!(error.to_string().contains("missing.toml"), "{error}");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "listen = \"127.0.0.1:0\"\ncores = \"many\"\n").unwrap();
        let error = Config::from_file(&bad).unwrap_err().to_string();
        assert!(
            error.contains("bad.toml, line 2, column 9") && error.contains("usize"),
            "{error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("", 0), (1, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `max_retained_messages` has a finite default; 0 turns it off; it
    /// cannot be negative.
    #[test]
    fn retained_message_cap() {
        assert_eq!(Limits::default().max_retained_messages, 1_000_000);
        let config = Config::from_toml("[limits]\nmax_retained_messages = 0\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.limits.max_retained_messages, 0);
        assert!(Config::from_toml("[limits]\nmax_retained_messages = -1\n").is_err());
    }

    /// `max_offline_sessions` has a finite default, 0 turns it off, and it
    /// is shared out over the cores like the connection cap (rounded up,
    /// so a core's share is never 0 unless there is no limit).
    #[test]
    fn offline_session_cap_is_shared_out_over_the_cores() {
        assert_eq!(Limits::default().max_offline_sessions, 1_000_000);
        let config = Config::from_toml("[limits]\nmax_offline_sessions = 5\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.limits.per_core_offline_sessions(2), 3);
        assert_eq!(config.limits.per_core_offline_sessions(8), 1);
        let unlimited = Limits {
            max_offline_sessions: 0,
            ..Limits::default()
        };
        assert_eq!(unlimited.per_core_offline_sessions(4), 0);
    }

    #[test]
    fn the_example_config_in_deploy_parses() {
        let text = include_str!("../../deploy/vane.toml");
        let config = Config::from_toml(text).unwrap();
        config.validate().unwrap();
    }
}
