//! The `vane` binary, run as an operator would: flags, the config file,
//! start-up errors, logging, and signals. Each test starts the real binary
//! (`CARGO_BIN_EXE_vane`) on loopback with an ephemeral port, learns the
//! port from the "vane is listening" log line, and waits on lines and
//! exits with a deadline, never a fixed sleep.
#![cfg(feature = "runtime")]

mod common;

use common::*;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the binary may take to start or to exit.
const START: Duration = Duration::from_secs(20);

/// A running `vane` whose stdout and stderr are read, line by line, by two
/// threads.
struct Vane {
    child: Child,
    lines: mpsc::Receiver<Option<String>>,
    /// Every line read so far, stdout and stderr interleaved.
    seen: Vec<String>,
    /// How many of the two streams have ended.
    closed: usize,
}

/// Flags every test passes: loopback, an ephemeral MQTT port and an
/// ephemeral stats port (the default 9100 could be taken).
const LOOPBACK: [&str; 4] = ["--listen", "127.0.0.1:0", "--stats-listen", "127.0.0.1:0"];

/// Runs `vane args...`; `setup` adjusts the command (environment,
/// `pre_exec`). RUST_LOG is cleared unless `setup` sets it.
fn spawn(args: &[&str], setup: impl FnOnce(&mut Command)) -> Vane {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vane"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    setup(&mut command);
    let mut child = command.spawn().expect("vane starts");
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    for stream in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err) as Box<dyn std::io::Read + Send>,
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(Some(line));
            }
            let _ = tx.send(None);
        });
    }
    Vane {
        child,
        lines,
        seen: Vec::new(),
        closed: 0,
    }
}

impl Vane {
    /// Waits for a line containing `needle`; None if the output ends or
    /// `timeout` passes first.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        while self.closed < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) => {
                    let hit = line.contains(needle);
                    self.seen.push(line.clone());
                    if hit {
                        return Some(line);
                    }
                }
                Ok(None) => self.closed += 1,
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits for the "vane is listening" line and returns the MQTT address.
    #[track_caller]
    fn listening(&mut self) -> SocketAddr {
        let line = self
            .wait_line("vane is listening", START)
            .unwrap_or_else(|| panic!("vane did not start; output: {:#?}", self.seen));
        field(&line, "addr")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr= in {line:?}"))
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Sends SIGTERM and expects a clean exit (status 0).
    #[track_caller]
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.exit();
        assert_eq!(status.code(), Some(0), "output {:#?}", self.seen);
    }

    /// Lines seen so far that contain `needle`.
    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Reads the output to its end and waits for the exit, within `START`;
    /// kills the process and panics if it outlives that.
    #[track_caller]
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + START;
        while self.closed < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => self.closed += 1,
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("vane did not exit; output: {:#?}", self.seen);
                }
            }
        }
        self.child.wait().expect("wait for vane")
    }

    /// Runs to its exit and expects failure with exactly one line of
    /// output, which it returns.
    #[track_caller]
    fn fails_with_one_line(&mut self) -> String {
        let status = self.exit();
        assert!(
            !status.success(),
            "exit {status:?}; output {:#?}",
            self.seen
        );
        assert_eq!(status.code(), Some(1), "output {:#?}", self.seen);
        assert_eq!(self.seen.len(), 1, "one line, got {:#?}", self.seen);
        let line = self.seen[0].clone();
        assert!(line.starts_with("vane: "), "{line}");
        assert!(!line.contains("panicked"), "{line}");
        line
    }
}

impl Drop for Vane {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `name=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// In the child, before exec: `io_uring_setup` fails with `errno`, as in a
/// container whose seccomp profile blocks io_uring (no privilege needed:
/// no_new_privs is set first).
fn deny_io_uring_setup(command: &mut Command, errno: u32) {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let step = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // Load seccomp_data.nr; io_uring_setup -> ERRNO(errno); else allow.
    let filter = [
        step(BPF_LD_W_ABS, 0, 0, 0),
        step(BPF_JMP_JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32),
        step(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno),
        step(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the closure only makes two prctl calls (async-signal-safe)
    // on data it owns.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Without io_uring (ENOSYS: no such system call; EPERM: refused, as
/// container seccomp profiles do) `vane` exits 1 with one line saying what
/// is missing and how to fix it, instead of a panic in each core thread.
#[test]
fn missing_io_uring_is_one_clear_line() {
    for (errno, says) in [(libc::ENOSYS, "CONFIG_IO_URING"), (libc::EPERM, "seccomp")] {
        let mut vane = spawn(
            &[
                "--listen",
                "127.0.0.1:0",
                "--cores",
                "2",
                "--stats-listen",
                "127.0.0.1:0",
            ],
            |c| deny_io_uring_setup(c, errno as u32),
        );
        let line = vane.fails_with_one_line();
        assert!(line.contains("io_uring") && line.contains(says), "{line}");
        assert!(line.contains("Linux 5.8"), "{line}");
    }
}

/// `--cores` above 64 (cross-core delivery names cores in a 64-bit mask)
/// is a configuration error: one line, exit 1, before anything starts.
#[test]
fn more_than_64_cores_is_refused() {
    let mut vane = spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "65",
            "--stats-listen",
            "127.0.0.1:0",
        ],
        |_| {},
    );
    let line = vane.fails_with_one_line();
    assert!(
        line.contains("--cores 65") && line.contains("at most 64"),
        "{line}"
    );
}

/// A plain `vane` where the stats endpoint's default port (127.0.0.1:9100,
/// node_exporter's too) is taken: one warning, and the broker runs on
/// without the endpoint. Asked for explicitly (flag or file), the same
/// address is an error: one line, exit 1.
#[test]
fn stats_port_taken() {
    // Hold 9100 for the whole test, unless something else already does.
    let hold = std::net::TcpListener::bind("127.0.0.1:9100");
    if let Err(error) = &hold {
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
    }

    let mut vane = spawn(&["--listen", "127.0.0.1:0", "--cores", "1"], |_| {});
    let warning = vane
        .wait_line("stats endpoint not started", START)
        .unwrap_or_else(|| panic!("no warning; output {:#?}", vane.seen));
    assert!(
        warning.contains("WARN") && warning.contains("127.0.0.1:9100"),
        "{warning}"
    );
    let addr = vane.listening();
    let listening = vane.wait_line("vane is listening", START).unwrap();
    assert_eq!(field(&listening, "stats"), Some("None"), "{listening}");
    let (raw, _) = Raw::connected(addr, connect(V4, &unique("stats-off")));
    raw.disconnect();
    vane.stop();

    // RUST_LOG=warn keeps the warning and drops every info line.
    let mut quiet = spawn(&["--listen", "127.0.0.1:0", "--cores", "1"], |c| {
        c.env("RUST_LOG", "warn");
    });
    assert!(quiet
        .wait_line("stats endpoint not started", START)
        .is_some());
    quiet.stop();
    assert_eq!(quiet.count("INFO"), 0, "{:#?}", quiet.seen);
    assert_eq!(quiet.seen.len(), 1, "{:#?}", quiet.seen);

    let mut flag = spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--stats-listen",
            "127.0.0.1:9100",
        ],
        |_| {},
    );
    let line = flag.fails_with_one_line();
    assert!(
        line.contains("127.0.0.1:9100") && line.contains("stats endpoint"),
        "{line}"
    );

    let dir = TempDir::new("stats");
    let file = dir.write("vane.toml", "[stats]\nlisten = \"127.0.0.1:9100\"\n");
    let mut named = spawn(
        &["--config", &file, "--listen", "127.0.0.1:0", "--cores", "1"],
        |_| {},
    );
    let line = named.fails_with_one_line();
    assert!(line.contains("127.0.0.1:9100"), "{line}");
    drop(hold);
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("vane-binary-{name}")));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--listen`, `--cores 2` and `--stats-listen` are honoured: the broker
/// says where it listens, two cores each log their listener and serve
/// clients (broker-assigned ids name the core), and the stats endpoint
/// answers on its address. At the default level (info) no debug line is
/// written.
#[test]
fn flags_are_honoured() {
    let mut args = LOOPBACK.to_vec();
    args.extend(["--cores", "2"]);
    let mut vane = spawn(&args, |_| {});
    let addr = vane.listening();
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "--listen");
    for core in ["core=0", "core=1"] {
        let line = vane.wait_line(&format!("core listening {core}"), START);
        assert!(line.is_some(), "{core}: {:#?}", vane.seen);
    }
    let [(a, _), (b, _)] = raw_pair_on_cores(addr, || connect(V5, "x"));
    a.disconnect();
    b.disconnect();

    let listening = vane.wait_line("vane is listening", START).unwrap();
    let stats: SocketAddr = field(&listening, "stats")
        .and_then(|s| s.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .unwrap_or_else(|| panic!("no stats address in {listening:?}"));
    assert_eq!(stats.ip().to_string(), "127.0.0.1", "--stats-listen");
    assert_ne!(stats.port(), 9100, "--stats-listen");
    assert!(http_get(stats, "/healthz").starts_with("HTTP/1.1 200"));

    vane.stop();
    assert_eq!(vane.count("core listening"), 2, "{:#?}", vane.seen);
    assert_eq!(vane.count("DEBUG"), 0, "{:#?}", vane.seen);
    assert!(vane.count("shut down") == 1, "{:#?}", vane.seen);
}

/// `GET path` over HTTP/1.1; the whole response.
fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("stats connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// `--config FILE` is honoured: its listener, core count and
/// `deny_subscribe` apply (SUBACK 0x80, 5.0 §3.9.3), its `[stats]
/// enabled = false` leaves the endpoint off; a flag overrides the file.
#[test]
fn config_file_is_honoured() {
    let dir = TempDir::new("config");
    let file = dir.write(
        "vane.toml",
        "listen = \"127.0.0.1:0\"\ncores = 1\ndeny_subscribe = [\"binary/denied\"]\n\
         [executor]\npin = false\n[stats]\nenabled = false\n",
    );
    let mut vane = spawn(&["--config", &file], |_| {});
    let addr = vane.listening();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let listening = vane.wait_line("vane is listening", START).unwrap();
    assert_eq!(field(&listening, "stats"), Some("None"), "{listening}");
    let (mut raw, _) = Raw::connected(addr, connect(V5, &unique("cfg")));
    let ack = raw.subscribe(subscribe(1, "binary/denied", vane::codec::QoS::AtMostOnce));
    assert_eq!(
        ack.reason_codes,
        [vane::codec::SubAckReasonCode::UnspecifiedError],
        "deny_subscribe from the file"
    );
    raw.disconnect();
    vane.stop();
    assert_eq!(
        vane.count("core listening"),
        1,
        "cores = 1: {:#?}",
        vane.seen
    );

    let mut flagged = spawn(&["--config", &file, "--cores", "2"], |_| {});
    flagged.listening();
    assert!(flagged.wait_line("core listening core=1", START).is_some());
    flagged.stop();
    assert_eq!(flagged.count("core listening"), 2, "{:#?}", flagged.seen);
}

/// A configuration file that cannot be read, or holds a bad value, stops
/// `vane` with exit status 1 and one line naming the file and the fault.
#[test]
fn bad_configuration_is_one_line() {
    let dir = TempDir::new("bad");
    let missing = dir.0.join("missing.toml").display().to_string();
    let line = spawn(&["--config", &missing], |_| {}).fails_with_one_line();
    assert!(
        line.contains("cannot read the configuration file") && line.contains("missing.toml"),
        "{line}"
    );
    assert!(line.contains("No such file"), "{line}");
    let directory = dir.0.display().to_string();
    let line = spawn(&["--config", &directory], |_| {}).fails_with_one_line();
    assert!(
        line.contains("cannot read the configuration file"),
        "{line}"
    );

    for (text, says) in [
        ("cores = \"many\"\n", "line 1, column 9"),
        ("listen = \"nowhere\"\n", "line 1"),
        ("[limits]\nmax_qeued = 5\n", "max_qeued"),
        ("[limits]\nmax_packet_size = 10\n", "max_packet_size"),
        ("[limits]\nmax_connections = 0\n", "max_connections"),
        ("cores = 100\n", "at most 64"),
        ("log_level = \"vane=[\"\n", "invalid log_level \"vane=[\""),
    ] {
        let file = dir.write("bad.toml", text);
        let mut args = vec!["--config", file.as_str()];
        args.extend(LOOPBACK);
        let line = spawn(&args, |_| {}).fails_with_one_line();
        assert!(line.contains(says), "{text:?}: {line}");
        let last = line.rsplit(": ").next().unwrap_or_default();
        assert_eq!(line.matches(last).count(), 1, "said twice: {line}");
    }
}

/// SIGTERM and SIGINT shut down gracefully: a connected 5.0 client gets
/// DISCONNECT 0x8B Server shutting down (5.0 §3.14.2.1) and is closed, a
/// 3.1.1 client is closed (3.1.1 has no server DISCONNECT), the port stops
/// accepting, and `vane` exits 0.
#[test]
fn sigterm_and_sigint_shut_down_gracefully() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut args = LOOPBACK.to_vec();
        args.extend(["--cores", "2"]);
        let mut vane = spawn(&args, |_| {});
        let addr = vane.listening();
        let (mut v5, _) = Raw::connected(addr, connect(V5, &unique("sig5")));
        let (mut v4, _) = Raw::connected(addr, connect(V4, &unique("sig4")));
        assert!(v5.ping().is_empty() && v4.ping().is_empty());
        vane.signal(signal);
        v5.expect_disconnect(vane::codec::DisconnectReasonCode::ServerShuttingDown);
        let rest = v4.expect_closed();
        assert!(rest.is_empty(), "3.1.1 gets no DISCONNECT: {rest:?}");
        let status = vane.exit();
        assert_eq!(status.code(), Some(0), "signal {signal}: {:#?}", vane.seen);
        assert_eq!(vane.count("shut down"), 1, "{:#?}", vane.seen);
        let refused = std::net::TcpStream::connect(addr).map(|_| ()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}

/// A locked-memory limit too low for the cores asked for (lowered in the
/// child: lowering needs no privilege) stops `vane` with one line that
/// says what to raise, exit status 1, and no panic.
#[test]
fn locked_memory_too_low_is_one_line() {
    let mut args = LOOPBACK.to_vec();
    args.extend(["--cores", "2"]);
    let mut vane = spawn(&args, |command| {
        // SAFETY: setrlimit is async-signal-safe; the struct is ours.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 64 * 1024,
                    rlim_max: 64 * 1024,
                };
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let line = vane.fails_with_one_line();
    assert!(
        line.contains("locked-memory limit is 64 KiB") && line.contains("2 cores"),
        "{line}"
    );
    assert!(
        line.contains("ulimit -l") && line.contains("LimitMEMLOCK"),
        "{line}"
    );
}

/// RUST_LOG sets the log level and wins over the file's `log_level`:
/// with RUST_LOG=debug a client's connection is logged (a debug line of
/// `vane::clients`), which the file's "warn" alone would hide along with
/// the info lines.
#[test]
fn rust_log_sets_the_level() {
    let dir = TempDir::new("log");
    let file = dir.write("vane.toml", "log_level = \"warn\"\n");
    let mut args = vec!["--config", file.as_str(), "--cores", "1"];
    args.extend(LOOPBACK);
    let mut vane = spawn(&args, |c| {
        c.env("RUST_LOG", "debug");
    });
    let addr = vane.listening();
    let id = unique("logged");
    let (raw, _) = Raw::connected(addr, connect(V4, &id));
    let line = vane.wait_line("client connected", START);
    let line = line.unwrap_or_else(|| panic!("no debug line: {:#?}", vane.seen));
    assert!(line.contains("DEBUG") && line.contains(&id), "{line}");
    raw.disconnect();
    vane.stop();
}
