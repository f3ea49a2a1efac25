//! What Vane needs from the kernel, checked before any executor is built so
//! that a missing piece is one clear line saying what to change, not a
//! panic in a core thread.
//!
//! Owns: probing io_uring (a ring of one entry is set up and closed again,
//! and the operations glommio uses are looked up), comparing the
//! locked-memory limit with what the cores need, and the wording of every
//! kernel-related start-up error. Does not own: building the executors
//! (`mod.rs`).
//!
//! glommio 0.9 asserts that io_uring is recent enough before it builds a
//! ring (its probe returns NULL when the ring cannot be set up), so an
//! error from `LocalExecutorBuilder::make` never says that io_uring is
//! missing: each core thread panics instead. Hence the probe here.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// io_uring operations glommio 0.9 requires (its `GLOMMIO_URING_OPS`), by
/// opcode: NOP, READV, WRITEV, FSYNC, READ_FIXED, WRITE_FIXED, POLL_ADD,
/// POLL_REMOVE, SENDMSG, RECVMSG, TIMEOUT, TIMEOUT_REMOVE, ACCEPT,
/// LINK_TIMEOUT, CONNECT, FALLOCATE, OPENAT, CLOSE, STATX, READ, WRITE,
/// SEND, RECV. All are in Linux 5.6; glommio asks for 5.8.
const GLOMMIO_OPS: [u8; 23] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 21, 22, 23, 26, 27,
];
/// `io_uring_register` opcode that fills a `struct io_uring_probe`.
const IORING_REGISTER_PROBE: libc::c_uint = 8;
/// Entries in the probe buffer (liburing asks for 256 as well).
const PROBE_OPS: usize = 256;
/// `IO_URING_OP_SUPPORTED` in `struct io_uring_probe_op.flags`.
const IO_URING_OP_SUPPORTED: u16 = 1;
/// `struct io_uring_params` is 120 bytes; zeroed, it asks for nothing.
const PARAMS_WORDS: usize = 30;
/// Where the kernel says whether io_uring may be used (Linux 6.6+).
const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// Why io_uring cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoUringProblem {
    /// `io_uring_setup` failed with this errno.
    Setup(i32),
    /// The ring works but the kernel cannot list its operations (before 5.6).
    NoProbe(i32),
    /// The kernel lacks these operations.
    MissingOps(Vec<u8>),
}

/// Sets up an io_uring of one entry, checks that the kernel has every
/// operation glommio uses, and closes it again.
pub fn probe_io_uring() -> Result<(), IoUringProblem> {
    let mut params = [0u32; PARAMS_WORDS];
    // SAFETY: io_uring_setup reads and writes `struct io_uring_params`, 120
    // bytes, which `params` provides; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(IoUringProblem::Setup(last_errno()));
    }
    // SAFETY: a non-negative result is a new descriptor nothing else owns;
    // dropping it closes the ring.
    let ring = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // struct io_uring_probe: a 16-byte header (last_op, ops_len, ...) then
    // 8-byte entries (op, resv, flags: u16, resv2: u32). Must be zeroed.
    let mut probe = vec![0u8; 16 + PROBE_OPS * 8];
    // SAFETY: the buffer holds the header and PROBE_OPS entries; the
    // kernel writes no more than that.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            std::os::fd::AsRawFd::as_raw_fd(&ring),
            IORING_REGISTER_PROBE,
            probe.as_mut_ptr(),
            PROBE_OPS as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(IoUringProblem::NoProbe(last_errno()));
    }
    drop(ring);
    let ops_len = usize::from(probe[1]);
    let supported = |op: u8| {
        let at = 16 + usize::from(op) * 8;
        usize::from(op) < ops_len
            && u16::from_ne_bytes([probe[at + 2], probe[at + 3]]) & IO_URING_OP_SUPPORTED != 0
    };
    let missing: Vec<u8> = GLOMMIO_OPS
        .iter()
        .copied()
        .filter(|&op| !supported(op))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(IoUringProblem::MissingOps(missing))
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The `kernel.io_uring_disabled` sysctl (0, 1 or 2), where the kernel has
/// it.
fn io_uring_disabled_sysctl() -> Option<u32> {
    std::fs::read_to_string(IO_URING_DISABLED)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The kernel's release, for messages.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Probes io_uring; on failure, the one line that says what is missing.
pub fn check_io_uring() -> Result<(), String> {
    probe_io_uring().map_err(|problem| {
        explain_io_uring(&problem, io_uring_disabled_sysctl(), &kernel_release())
    })
}

/// One line saying why io_uring is unusable and how to fix it, given the
/// `kernel.io_uring_disabled` sysctl (None where the kernel has none) and
/// the kernel release.
pub fn explain_io_uring(problem: &IoUringProblem, disabled: Option<u32>, release: &str) -> String {
    const NEEDS: &str = "Vane needs io_uring (Linux 5.8 or newer)";
    match *problem {
        IoUringProblem::Setup(libc::ENOSYS) => format!(
            "io_uring is not available: the kernel ({release}) has no io_uring_setup system call \
             (ENOSYS). {NEEDS}, built with CONFIG_IO_URING=y; in a container, a seccomp profile \
             may also hide it: allow io_uring_setup, io_uring_enter and io_uring_register"
        ),
        IoUringProblem::Setup(errno @ (libc::EPERM | libc::EACCES)) => {
            let name = if errno == libc::EPERM {
                "EPERM"
            } else {
                "EACCES"
            };
            match disabled {
                Some(2) => format!(
                    "io_uring is disabled on this machine (sysctl kernel.io_uring_disabled = 2, \
                     {name}). {NEEDS}: run sysctl -w kernel.io_uring_disabled=0 (and set it in \
                     /etc/sysctl.d to keep it)"
                ),
                Some(1) => format!(
                    "io_uring is restricted on this machine (sysctl kernel.io_uring_disabled = 1) \
                     and this user may not use it ({name}). {NEEDS}: run vane as a member of the \
                     group named by sysctl kernel.io_uring_group, or set \
                     sysctl -w kernel.io_uring_disabled=0"
                ),
                _ => format!(
                    "io_uring_setup was refused ({name}): a seccomp profile (Docker and other \
                     container runtimes block io_uring by default) or a security module \
                     (SELinux, AppArmor) forbids it. {NEEDS}: allow io_uring_setup, \
                     io_uring_enter and io_uring_register for vane"
                ),
            }
        }
        IoUringProblem::Setup(libc::ENOMEM) => {
            "io_uring setup failed for lack of locked memory (ENOMEM): raise the locked-memory \
             limit (ulimit -l, or LimitMEMLOCK= in the systemd unit) or start fewer cores \
             (--cores N)"
                .into()
        }
        IoUringProblem::Setup(errno) => format!(
            "io_uring_setup failed: {}. {NEEDS}",
            io::Error::from_raw_os_error(errno)
        ),
        IoUringProblem::NoProbe(errno) => format!(
            "the kernel ({release}) is too old for Vane: io_uring cannot list its operations \
             ({}). {NEEDS}",
            io::Error::from_raw_os_error(errno)
        ),
        IoUringProblem::MissingOps(ref ops) => format!(
            "the kernel ({release}) is too old for Vane: its io_uring lacks operations \
             {ops:?}. {NEEDS}"
        ),
    }
}

/// Checks that the locked-memory limit covers `cores` executors needing
/// `per_core` bytes each.
pub fn check_memlock(cores: usize, per_core: u64) -> Result<(), String> {
    // SAFETY: getrlimit only writes the struct it is given.
    let limit = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return Ok(());
        }
        limit.rlim_cur
    };
    let needed = per_core.saturating_mul(cores as u64);
    if limit != libc::RLIM_INFINITY && limit < needed {
        return Err(format!(
            "locked-memory limit is {} KiB but {cores} cores need about {} KiB; \
             raise it (ulimit -l {}, or LimitMEMLOCK= in the systemd unit) or start fewer cores (--cores N)",
            limit / 1024,
            needed / 1024,
            needed / 1024
        ));
    }
    Ok(())
}

/// One line for an error building an executor (after the probe passed).
pub fn explain_executor_error(error: &str) -> String {
    let lower = error.to_lowercase();
    if lower.contains("cannot allocate memory") || lower.contains("enomem") {
        format!("io_uring setup failed for lack of locked memory ({error}); raise the locked-memory limit (ulimit -l, LimitMEMLOCK=) or start fewer cores (--cores N)")
    } else if lower.contains("function not implemented")
        || lower.contains("operation not permitted")
    {
        format!("io_uring is not available ({error}); Vane needs Linux 5.8+ with io_uring enabled (sysctl kernel.io_uring_disabled=0)")
    } else {
        format!("cannot start an executor: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_line(message: &str) {
        assert!(!message.contains('\n'), "one line: {message}");
    }

    /// Each errno of `io_uring_setup` names its cause and its fix.
    #[test]
    fn errno_maps_to_a_cause_and_a_fix() {
        let enosys = explain_io_uring(&IoUringProblem::Setup(libc::ENOSYS), None, "4.4.0");
        assert!(
            enosys.contains("ENOSYS") && enosys.contains("4.4.0"),
            "{enosys}"
        );
        assert!(
            enosys.contains("Linux 5.8") && enosys.contains("CONFIG_IO_URING"),
            "{enosys}"
        );

        for errno in [libc::EPERM, libc::EACCES] {
            let off = explain_io_uring(&IoUringProblem::Setup(errno), Some(2), "6.6.0");
            assert!(off.contains("kernel.io_uring_disabled = 2"), "{off}");
            assert!(
                off.contains("sysctl -w kernel.io_uring_disabled=0"),
                "{off}"
            );
            let group = explain_io_uring(&IoUringProblem::Setup(errno), Some(1), "6.6.0");
            assert!(group.contains("kernel.io_uring_group"), "{group}");
            for sysctl in [None, Some(0)] {
                let seccomp = explain_io_uring(&IoUringProblem::Setup(errno), sysctl, "6.1.0");
                assert!(seccomp.contains("seccomp"), "{seccomp}");
                assert!(seccomp.contains("io_uring_setup"), "{seccomp}");
            }
            let name = if errno == libc::EPERM {
                "EPERM"
            } else {
                "EACCES"
            };
            assert!(
                off.contains(name) && group.contains(name),
                "{off} / {group}"
            );
            one_line(&off);
            one_line(&group);
        }

        let enomem = explain_io_uring(&IoUringProblem::Setup(libc::ENOMEM), Some(0), "5.10");
        assert!(
            enomem.contains("ulimit -l") && enomem.contains("LimitMEMLOCK"),
            "{enomem}"
        );
        let other = explain_io_uring(&IoUringProblem::Setup(libc::EINVAL), None, "5.10");
        assert!(
            other.contains("Invalid argument") && other.contains("5.8"),
            "{other}"
        );
        let old = explain_io_uring(&IoUringProblem::NoProbe(libc::EINVAL), None, "5.4.0");
        assert!(old.contains("too old") && old.contains("5.4.0"), "{old}");
        let ops = explain_io_uring(&IoUringProblem::MissingOps(vec![26, 27]), None, "5.5.0");
        assert!(ops.contains("[26, 27]") && ops.contains("5.8"), "{ops}");
        for message in [enosys, enomem, other, old, ops] {
            one_line(&message);
        }
    }

    /// The tests of this crate build glommio executors, so where they run
    /// the probe must pass, with every operation glommio asks for.
    #[test]
    fn the_probe_passes_where_executors_run() {
        assert_eq!(probe_io_uring(), Ok(()));
        assert_eq!(check_io_uring(), Ok(()));
    }

    /// Asking for more than any finite limit fails with one line naming
    /// the fix; asking for nothing passes.
    #[test]
    fn memlock_shortfall_is_one_line_with_the_fix() {
        assert_eq!(check_memlock(0, 1 << 20), Ok(()));
        // SAFETY: getrlimit only writes the struct it is given.
        let unlimited = unsafe {
            let mut limit: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit);
            limit.rlim_cur == libc::RLIM_INFINITY
        };
        match check_memlock(1 << 20, 1 << 40) {
            Ok(()) => assert!(unlimited, "2^60 bytes fit a finite limit"),
            Err(error) => {
                assert!(error.contains("1048576 cores"), "{error}");
                assert!(
                    error.contains("ulimit -l") && error.contains("--cores N"),
                    "{error}"
                );
                one_line(&error);
            }
        }
    }
}
