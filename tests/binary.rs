//! The `vane` binary, run as an operator would: flags, the config file,
//! start-up errors, logging, and signals. Each test starts the real binary
//! (`CARGO_BIN_EXE_vane`) on loopback with an ephemeral port, learns the
//! port from the "vane is listening" log line, and waits on lines and
//! exits with a deadline, never a fixed sleep.

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
    drop(vane);

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
