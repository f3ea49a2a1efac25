//! `vane-loadgen`: a thread-per-core MQTT load generator that can saturate
//! a broker and measure it honestly. It speaks MQTT 3.1, 3.1.1 and 5.0 at
//! QoS 0, 1 and 2 to any broker, using Vane's sans-IO codec on pinned
//! glommio executors (one per `--cores`).
//!
//! [`run`] executes one subcommand in-process and returns its [`Report`];
//! the binary is a thin wrapper that prints it and sets the exit code.
//!
//! How it measures: publishers follow an open-loop schedule and stamp each
//! payload with its publisher id, sequence number and *intended* send time
//! ([`payload`]), so a stalled broker shows up as latency rather than as a
//! quietly lower load; subscribers record end-to-end latency in HDR
//! histograms and track every publisher's sequence for loss, duplicates and
//! reordering ([`stats`]). The tool reports its own CPU use and schedule
//! lag so a saturated load generator is not mistaken for a slow broker.

pub mod client;
pub mod config;
pub mod net;
pub mod output;
pub mod payload;
pub mod plan;
pub mod report;
pub mod stats;
pub mod template;
pub mod worker;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

pub use config::{Cli, Command, Opts};
pub use plan::Plan;
pub use report::Report;

use client::Ctx;
use plan::Role;
use report::{Outline, Second};
use stats::{new_hist, CoreStats, Percentiles};
use worker::{Sync, PHASES};

/// Why a run could not be carried out at all. (A run that went badly still
/// returns a [`Report`], with its problems listed.)
#[derive(Debug)]
pub enum RunError {
    /// The options do not make a runnable plan.
    Plan(String),
    /// An executor could not start (io_uring, locked memory, CPU pinning).
    Executor(String),
    /// The cores did not finish by the run's hard deadline.
    Hung(String),
    /// Writing an output file failed.
    Output(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Plan(m) => write!(f, "bad options: {m}"),
            RunError::Executor(m) => write!(f, "cannot start executors: {m}"),
            RunError::Hung(m) => write!(f, "run did not finish: {m}"),
            RunError::Output(m) => write!(f, "cannot write output: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs one subcommand and writes the outputs its options ask for
/// (`--hdr-out`, `--csv`, `--plot`).
pub fn run(cmd: &Command) -> Result<Report, RunError> {
    let plan = Plan::from_command(cmd).map_err(RunError::Plan)?;
    let (report, latency) = run_plan(plan)?;
    let o = cmd.opts();
    if let Some(path) = &o.hdr_out {
        output::write_hgrm(path, &latency).map_err(|e| RunError::Output(e.to_string()))?;
    }
    if let Some(path) = &o.csv {
        output::write_csv(path, &report.timeline).map_err(|e| RunError::Output(e.to_string()))?;
    }
    if let Some(path) = &o.plot {
        output::write_svg(path, &report, &latency).map_err(|e| RunError::Output(e.to_string()))?;
    }
    Ok(report)
}

/// Runs a plan; returns the report and the end-to-end latency histogram.
pub fn run_plan(plan: Plan) -> Result<(Report, hdrhistogram::Histogram<u64>), RunError> {
    let plan = Arc::new(plan);
    let began = Instant::now();
    let cpu_before = cpu_seconds();
    let per_phase = |role: Role| -> f64 {
        let n: usize = plan
            .groups
            .iter()
            .filter(|g| g.role == role)
            .map(|g| g.count)
            .sum();
        if n == 0 {
            0.0
        } else {
            n as f64 / plan.connect_rate + 2.0 * plan.connect_timeout.as_secs_f64()
        }
    };
    let seeding = if plan.groups.iter().any(|g| g.role == Role::Seeder) {
        plan.duration.as_secs_f64() + plan.drain.as_secs_f64()
    } else {
        0.0
    };
    let budget = per_phase(Role::Seeder)
        + per_phase(Role::Subscriber)
        + per_phase(Role::Publisher)
        + per_phase(Role::Idle)
        + seeding
        + (plan.warmup + plan.duration + plan.drain * 2).as_secs_f64()
        + 5.0;
    let deadline = began + Duration::from_secs_f64(budget);
    let copies = plan.copies().uniform();
    let sync = Arc::new(Sync::new(plan.cores, deadline, copies));
    let cpus = allowed_cpus();

    let (tx, rx) = mpsc::channel::<Result<(usize, CoreStats), String>>();
    for core in 0..plan.cores {
        let plan = plan.clone();
        let sync = sync.clone();
        let tx = tx.clone();
        let placement = if plan.pin && !cpus.is_empty() {
            Placement::Fixed(cpus[core % cpus.len()])
        } else {
            Placement::Unbound
        };
        let abort = sync.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vlg-{core}"))
            .spawn(move || {
                let builder = LocalExecutorBuilder::new(placement)
                    .name(&format!("vlg-{core}"))
                    .io_memory(plan.io_memory)
                    .ring_depth(plan.ring_depth);
                let ex = match builder.make() {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = tx.send(Err(explain_executor_error(&e.to_string(), &plan)));
                        return;
                    }
                };
                let live = sync.lives[core].clone();
                let stats = ex.run(async move {
                    let ctx = Rc::new(Ctx {
                        plan: plan.clone(),
                        core,
                        stats: RefCell::new(CoreStats::default()),
                        interval: RefCell::new(new_hist()),
                        live,
                        measure_from_ns: Cell::new(0),
                        retained_expected: Cell::new(0),
                        stopping: Cell::new(false),
                        open: Cell::new(0),
                        scratch: RefCell::new(vec![0; 64 * 1024]),
                    });
                    worker::core_main(ctx, sync).await
                });
                let _ = tx.send(Ok((core, stats)));
            });
        if let Err(e) = spawned {
            abort.abort.store(true, Ordering::Relaxed);
            return Err(RunError::Executor(format!("cannot spawn a thread: {e}")));
        }
    }
    drop(tx);

    let mut merged = CoreStats::default();
    let mut done = 0;
    let mut failure: Option<String> = None;
    let mut timeline = Vec::new();
    let mut progress = Progress::new(&plan, began);
    let mut connect_seconds = 0.0;
    let mut next_tick = began + Duration::from_secs(1);
    let hard_stop = deadline + Duration::from_secs(5);
    while done < plan.cores {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Ok((_, stats))) => {
                merged.merge(&stats);
                done += 1;
            }
            Ok(Err(msg)) => {
                sync.abort.store(true, Ordering::Relaxed);
                failure.get_or_insert(msg);
                done += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failure.get_or_insert_with(|| "an executor thread died".into());
                break;
            }
        }
        let phase = sync.phase.load(Ordering::Relaxed);
        if phase >= 4 && connect_seconds == 0.0 {
            connect_seconds = began.elapsed().as_secs_f64();
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            timeline.push(progress.tick(&sync, phase));
        }
        if Instant::now() >= hard_stop {
            sync.abort.store(true, Ordering::Relaxed);
            progress.finish();
            return Err(RunError::Hung(format!(
                "{} of {} cores still running after the {budget:.0}s budget",
                plan.cores - done,
                plan.cores
            )));
        }
    }
    progress.finish();
    if let Some(msg) = failure {
        return Err(RunError::Executor(msg));
    }
    let start_ns = sync.start_ns.load(Ordering::Relaxed);
    let end_ns = sync.run_end_ns.load(Ordering::Relaxed);
    let run_seconds = if start_ns > 0 && end_ns > start_ns {
        (end_ns - start_ns) as f64 / 1e9
    } else {
        0.0
    };
    if connect_seconds == 0.0 {
        connect_seconds = began.elapsed().as_secs_f64();
    }
    let outline = Outline {
        wall_seconds: began.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu_before,
        connect_seconds,
        run_seconds,
        timeline,
    };
    let latency = merged.e2e.clone();
    Ok((Report::build(&plan, &merged, outline), latency))
}

fn explain_executor_error(e: &str, plan: &Plan) -> String {
    let lower = e.to_lowercase();
    if lower.contains("memlock") || lower.contains("locked memory") {
        format!(
            "glommio needs more locked memory ({e}); raise `ulimit -l` (each executor needs \
             at least 512 KiB plus --io-memory-kib, now {} KiB) or use fewer --cores",
            plan.io_memory / 1024
        )
    } else if lower.contains("function not implemented")
        || lower.contains("operation not permitted")
    {
        format!(
            "io_uring is not available here ({e}); glommio needs Linux 5.8+ with io_uring enabled"
        )
    } else {
        format!("glommio executor failed to start: {e}")
    }
}

/// CPUs this process may run on (respects `taskset`).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// User plus system CPU time of this process, in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data and getrusage only writes into it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The once-a-second progress line.
struct Progress {
    began: Instant,
    quiet: bool,
    tty: bool,
    last: (u64, u64, u64),
    last_cpu: f64,
    last_at: Instant,
    printed: bool,
}

impl Progress {
    fn new(plan: &Plan, began: Instant) -> Progress {
        Progress {
            began,
            quiet: plan.quiet,
            tty: std::io::stderr().is_terminal(),
            last: (0, 0, 0),
            last_cpu: cpu_seconds(),
            last_at: began,
            printed: false,
        }
    }

    fn tick(&mut self, sync: &Sync, phase: usize) -> Second {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        self.last_at = now;
        let sent = sync.total(|l| &l.sent);
        let received = sync.total(|l| &l.received);
        let acked = sync.total(|l| &l.acked);
        let open = sync.total(|l| &l.open);
        let errors = sync.total(|l| &l.errors) + sync.total(|l| &l.connect_failed);
        let mut h = new_hist();
        for live in &sync.lives {
            if let Some(x) = live.take_interval() {
                let _ = h.add(&x);
            }
        }
        let p = Percentiles::of(&h);
        let cpu = cpu_seconds();
        let cpu_percent = ((cpu - self.last_cpu) / dt * 1000.0).round() / 10.0;
        self.last_cpu = cpu;
        let rate = |a: u64, b: u64| ((a - b) as f64 / dt).round() as u64;
        let second = Second {
            t: (now.duration_since(self.began).as_secs_f64() * 10.0).round() / 10.0,
            phase: PHASES.get(phase).copied().unwrap_or("?"),
            open,
            sent_per_s: rate(sent, self.last.0),
            received_per_s: rate(received, self.last.1),
            acked_per_s: rate(acked, self.last.2),
            p50_us: p.p50_us,
            p99_us: p.p99_us,
            max_us: p.max_us,
            errors,
            cpu_percent,
        };
        self.last = (sent, received, acked);
        if !self.quiet {
            let line = format!(
                "[{:>5.1}s] {:<18} conns {:>7}  out {:>8}/s  in {:>8}/s  p99 {:>9}  errors {}  cpu {:.0}%",
                second.t,
                second.phase,
                open,
                second.sent_per_s,
                second.received_per_s,
                report::fmt_us(p.p99_us),
                errors,
                cpu_percent
            );
            let mut err = std::io::stderr().lock();
            if self.tty {
                let _ = write!(err, "\r\x1b[K{line}");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
            self.printed = true;
        }
        second
    }

    fn finish(&mut self) {
        if self.printed && self.tty {
            eprintln!();
        }
        self.printed = false;
    }
}
