//! `vane`: the broker binary. Parses flags and the config file, sets up
//! logging and signals, and runs the server until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use vane::server::{Config, Server};

/// Vane: a thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see deploy/vane.toml); every setting has a default.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// MQTT listener address, overriding the config (default 0.0.0.0:1883).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Number of executors (pinned threads), overriding the config: at most
    /// 64; 0 = one per CPU, up to 64.
    #[arg(long)]
    cores: Option<usize>,
    /// Stats HTTP listener address (/metrics, /stats, /healthz, /readyz),
    /// overriding the config; it must bind. Left unset, the default
    /// 127.0.0.1:9100 is tried and, if taken, skipped with a warning.
    #[arg(long, value_name = "ADDR:PORT")]
    stats_listen: Option<std::net::SocketAddr>,
}

fn main() {
    if let Err(error) = run() {
        // One line: the error and its causes, each after a colon.
        eprintln!("vane: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(cores) = args.cores {
        config.cores = cores;
    }
    if let Some(addr) = args.stats_listen {
        config.stats.listen = addr;
        config.stats.listen_given = true;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        // Its message alone: the error repeats it as its source.
        .map_err(|error| anyhow::anyhow!("invalid log_level {:?}: {error}", config.log_level))?;
    // Colours only for a terminal: a journal or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    // Handlers go in before the cores start, so that a signal during
    // start-up shuts down gracefully too. A second signal while shutting
    // down exits at once, with status 1.
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone())
            .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
            .context("cannot install signal handler")?;
    }
    let server = Server::start_with_shutdown(config, flag.clone())?;
    // Tests and scripts read the bound address from this line.
    tracing::info!(addr = %server.local_addr(), stats = ?server.stats_addr(), "vane is listening");
    let result = server.join();
    if flag.load(Ordering::Relaxed) {
        tracing::info!("shut down");
    }
    result?;
    Ok(())
}
