//! Parking for idle connections: a connection that has had nothing to do
//! for a while gives up its task, its glommio stream and the stream's
//! poll registration, and waits here as a small record in a per-core slab
//! while the kernel watches its socket through one epoll set per core.
//!
//! Why: an idle connection served by a task costs the task's future, the
//! glommio stream and its pending `POLL_ADD` source (several hundred bytes
//! each), and a timer. Most of a large broker's connections are idle
//! devices that send a PINGREQ a minute; parked, each costs its
//! [`Connection`] state and a slab entry.
//!
//! ```text
//!   conn task ── idle for park_idle_after ──► park(): dup fd, drop stream,
//!       ▲                                      epoll_ctl(ADD), task ends
//!       │                                            │
//!   resume(): new stream on the fd  ◄── unpark ◄─────┤ socket readable/closed
//!                                         ▲          │ (poller: epoll_wait on
//!                                         │          │  the blocking thread)
//!                        Core::wake/kill ─┘          │ keepalive due (sweep)
//! ```
//!
//! Owns: the slab of parked connections, the epoll set, and the poller
//! task that waits on it (on glommio's blocking thread, so the executor
//! never blocks) and sweeps parked keepalive deadlines. Does not own: when
//! a connection parks (`conn.rs`) or what a resumed connection does.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::broker::connection::Connection;

use super::core::Core;
use super::sessions::ConnLink;

/// How often the poller returns from `epoll_wait` to sweep keepalive
/// deadlines and notice shutdown: the most a parked connection's keepalive
/// timeout can be late by.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Parked connections added since the last trim that make the poller
/// return freed memory to the kernel.
const TRIM_AFTER_PARKED: usize = 1024;
/// Parked connections added since the last trim that make the poller trim
/// once parking has settled (none added over one wait), so the memory of
/// the last connections of a burst is returned too.
const TRIM_AFTER_SETTLED: usize = 64;
/// Readiness events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

/// Where a parked connection sits: slab index and generation, so a stale
/// id (an event for a connection already resumed) reaches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkId {
    index: u32,
    generation: u32,
}

impl ParkId {
    fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    fn from_u64(value: u64) -> Self {
        ParkId {
            index: value as u32,
            generation: (value >> 32) as u32,
        }
    }
}

/// What a connection keeps while parked: its socket and its protocol
/// state. Everything else is rebuilt on resume.
pub struct Parked {
    pub fd: OwnedFd,
    pub conn: Connection,
    /// The link made for it while it waits to be resumed (a delivery or a
    /// kill came first); `None` while it is idle.
    pub link: Option<Rc<ConnLink>>,
}

struct Slot {
    generation: u32,
    parked: Option<Parked>,
}

/// One core's parked connections and the epoll set watching their sockets.
pub struct ParkingLot {
    /// `None` when no epoll set could be made: nothing parks then.
    epoll: Option<OwnedFd>,
    slots: Vec<Slot>,
    /// Each slot's keepalive deadline in nanoseconds since `epoch`
    /// ([`NO_DEADLINE`] for an empty slot or a connection without one),
    /// kept apart so that the sweep reads 8 bytes per slot, not the parked
    /// connection. A parked connection's deadline cannot change: any input
    /// resumes it first.
    deadlines: Vec<u64>,
    epoch: Instant,
    free: Vec<u32>,
    len: usize,
}

/// A slot with no keepalive deadline to sweep.
const NO_DEADLINE: u64 = u64::MAX;

impl ParkingLot {
    /// A lot with its epoll set. Without one (the open-files limit
    /// reached at start-up) connections are never parked, and a warning
    /// says so.
    pub fn new() -> Self {
        // SAFETY: epoll_create1 has no memory preconditions; the result is
        // checked before it is owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        let epoll = if fd < 0 {
            let error = io::Error::last_os_error();
            tracing::warn!(%error, "cannot create an epoll set; idle connections will not be parked");
            None
        } else {
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        ParkingLot {
            epoll,
            slots: Vec::new(),
            deadlines: Vec::new(),
            epoch: Instant::now(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// `at` in nanoseconds since the lot's epoch (0 before it).
    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch)
            .as_nanos()
            .try_into()
            .unwrap_or(NO_DEADLINE - 1)
    }

    /// How many connections are parked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Parks a connection: its socket joins the epoll set. On failure the
    /// connection is handed back, to be served by a task again.
    // The large error hands the connection back on a rare path; boxing it
    // would allocate for nothing.
    #[allow(clippy::result_large_err)]
    pub fn park(&mut self, parked: Parked) -> Result<ParkId, (Parked, io::Error)> {
        let Some(epoll) = self.epoll.as_ref().map(AsRawFd::as_raw_fd) else {
            return Err((parked, io::ErrorKind::Unsupported.into()));
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    parked: None,
                });
                self.deadlines.push(NO_DEADLINE);
                (self.slots.len() - 1) as u32
            }
        };
        let id = ParkId {
            index,
            generation: self.slots[index as usize].generation,
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: id.to_u64(),
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        let rc = unsafe {
            libc::epoll_ctl(
                epoll,
                libc::EPOLL_CTL_ADD,
                parked.fd.as_raw_fd(),
                &mut event,
            )
        };
        if rc < 0 {
            self.free.push(index);
            return Err((parked, io::Error::last_os_error()));
        }
        self.deadlines[index as usize] = parked
            .conn
            .keepalive_deadline()
            .map_or(NO_DEADLINE, |at| self.since_epoch(at));
        self.slots[index as usize].parked = Some(parked);
        self.len += 1;
        Ok(id)
    }

    /// Gives a parked connection the link its session now writes to, for
    /// the task that resumes it. False for a stale id.
    pub fn attach(&mut self, id: ParkId, link: Rc<ConnLink>) -> bool {
        match self.slots.get_mut(id.index as usize) {
            Some(slot) if slot.generation == id.generation => match &mut slot.parked {
                Some(parked) => {
                    parked.link = Some(link);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Takes a parked connection out (to resume it); `None` for a stale id.
    pub fn take(&mut self, id: ParkId) -> Option<Parked> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let parked = slot.parked.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.deadlines[id.index as usize] = NO_DEADLINE;
        self.free.push(id.index);
        self.len -= 1;
        if let Some(epoll) = &self.epoll {
            // SAFETY: both descriptors are open. Failure leaves nothing to
            // undo: the descriptor is about to leave the set or be closed.
            unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    parked.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                );
            }
        }
        Some(parked)
    }

    /// Parked connections whose keepalive deadline has passed.
    pub fn due(&self, now: Instant) -> Vec<ParkId> {
        let now = self.since_epoch(now);
        self.deadlines
            .iter()
            .enumerate()
            .filter(|&(_, &deadline)| deadline <= now)
            .map(|(index, _)| ParkId {
                index: index as u32,
                generation: self.slots[index].generation,
            })
            .collect()
    }

    fn epoll_fd(&self) -> Option<RawFd> {
        self.epoll.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Waits up to `timeout` for parked sockets to become readable (or closed)
/// and returns their ids. Blocks: runs on glommio's blocking thread.
fn wait_ready(epoll: RawFd, timeout: Duration) -> Vec<ParkId> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
    // SAFETY: `events` is valid for EVENTS_PER_WAIT entries. A closed
    // `epoll` (at shutdown) makes the call fail, which returns nothing.
    let n = unsafe {
        libc::epoll_wait(
            epoll,
            events.as_mut_ptr(),
            EVENTS_PER_WAIT as i32,
            timeout.as_millis() as i32,
        )
    };
    let n = usize::try_from(n).unwrap_or(0);
    events[..n]
        .iter()
        .map(|event| ParkId::from_u64(event.u64))
        .collect()
}

/// Returns the allocator's free pages to the kernel (glibc keeps them).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The poller: resumes parked connections whose socket has something to
/// read (or was closed) and those whose keepalive deadline passed. Runs
/// until the core stops.
pub async fn run(core: Rc<Core>) {
    let Some(epoll) = core.parking.borrow().epoll_fd() else {
        return;
    };
    let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
    let mut parked_at_trim = 0usize;
    let mut parked_before = 0usize;
    let mut quiet_wait = false;
    while !core.is_shutting_down() {
        // Connections that parked freed their tasks and streams, but the
        // allocator keeps freed pages: hand them back once many have
        // parked, and once a burst of parking has settled (on the blocking
        // thread, as malloc_trim walks every heap).
        let parked = core.parking.borrow().len();
        let settled =
            quiet_wait && parked == parked_before && parked >= parked_at_trim + TRIM_AFTER_SETTLED;
        let trim = settled || parked >= parked_at_trim + TRIM_AFTER_PARKED;
        if trim || parked < parked_at_trim {
            parked_at_trim = parked;
        }
        parked_before = parked;
        let ready = glommio::executor()
            .spawn_blocking(move || {
                if trim {
                    release_freed_memory();
                }
                wait_ready(epoll, SWEEP_INTERVAL)
            })
            .await;
        quiet_wait = ready.is_empty();
        for id in ready {
            core.resume_parked(id);
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP_INTERVAL;
            let due = core.parking.borrow().due(now);
            for id in due {
                core.resume_parked(id);
            }
        }
    }
}

/// Serves the connections queued by [`Core::resume_parked`] again, each
/// in a new task.
pub async fn resume_queued(core: Rc<Core>) {
    loop {
        core.resume_ready.notified().await;
        let adopted = std::mem::take(&mut core.migrations.borrow_mut().to_serve);
        for moved in adopted {
            glommio::spawn_local(super::conn::serve_adopted(core.clone(), moved)).detach();
        }
        let ids = std::mem::take(&mut *core.to_resume.borrow_mut());
        for id in ids {
            let parked = core.parking.borrow_mut().take(id);
            if let Some(parked) = parked {
                let link = core.link_for_resumed(id, &parked);
                glommio::spawn_local(super::conn::resume(core.clone(), parked, link)).detach();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::connection::ConnectionLimits;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn parked(fd: OwnedFd) -> Parked {
        Parked {
            fd,
            conn: Connection::new(ConnectionLimits::default(), Instant::now()),
            link: None,
        }
    }

    /// A parked socket that becomes readable is reported by its id; once
    /// taken, its id is stale and its slot is reused under a new one.
    #[test]
    fn readable_sockets_are_reported_and_ids_go_stale() {
        let mut lot = ParkingLot::new();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let id = lot.park(parked(OwnedFd::from(ours))).ok().unwrap();
        assert_eq!(lot.len(), 1);
        assert!(wait_ready(lot.epoll_fd().unwrap(), Duration::ZERO).is_empty());
        theirs.write_all(b"x").unwrap();
        assert_eq!(
            wait_ready(lot.epoll_fd().unwrap(), Duration::from_secs(5)),
            [id]
        );
        assert!(lot.take(id).is_some());
        assert!(lot.take(id).is_none(), "a taken id is stale");
        assert_eq!(lot.len(), 0);
        let (again, _peer) = UnixStream::pair().unwrap();
        let reused = lot.park(parked(OwnedFd::from(again))).ok().unwrap();
        assert_ne!(reused, id);
        assert_eq!(lot.len(), 1);
    }

    /// A parked connection is kept without a link; one attached to it (by
    /// a delivery or a kill) comes out with it, and a stale id takes none.
    #[test]
    fn an_attached_link_comes_out_with_the_connection() {
        let mut lot = ParkingLot::new();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let id = lot.park(parked(OwnedFd::from(ours))).ok().unwrap();
        let link = Rc::new(ConnLink::default());
        assert!(lot.attach(id, link.clone()));
        let taken = lot.take(id).unwrap();
        assert!(Rc::ptr_eq(taken.link.as_ref().unwrap(), &link));
        assert!(!lot.attach(id, link), "a taken id is stale");
    }

    /// A peer closing its end wakes the parked connection (so its will is
    /// published at once, not at the next keepalive).
    #[test]
    fn a_closed_peer_is_reported() {
        let mut lot = ParkingLot::new();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let id = lot.park(parked(OwnedFd::from(ours))).ok().unwrap();
        drop(theirs);
        assert_eq!(
            wait_ready(lot.epoll_fd().unwrap(), Duration::from_secs(5)),
            [id]
        );
    }

    /// A connection parked after CONNECT with keepalive 10 s is due 15 s
    /// after its last packet ([MQTT-3.1.2-24]), not before; one without a
    /// session yet has no keepalive and is never due, nor is one taken
    /// out again. Simulated time.
    #[test]
    fn only_expired_keepalives_are_due() {
        use crate::broker::connection::tests::connected;
        use crate::codec::{ClientId, Connect, ProtocolVersion};

        let t0 = Instant::now();
        let connect = Connect::new(ProtocolVersion::V5, ClientId::try_from("k").unwrap(), 10);
        let (conn, _session, _connack) = connected(connect, t0);

        let mut lot = ParkingLot::new();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let keepalive = lot
            .park(Parked {
                fd: OwnedFd::from(ours),
                conn,
                link: None,
            })
            .ok()
            .unwrap();
        let (other, _peer) = UnixStream::pair().unwrap();
        lot.park(parked(OwnedFd::from(other))).ok().unwrap();
        assert!(lot.due(t0 + Duration::from_millis(14_999)).is_empty());
        assert_eq!(lot.due(t0 + Duration::from_secs(15)), [keepalive]);
        assert_eq!(lot.due(t0 + Duration::from_secs(1 << 20)), [keepalive]);
        // Resumed, it is no longer swept; its slot's next tenant has no
        // keepalive.
        assert!(lot.take(keepalive).is_some());
        assert!(lot.due(t0 + Duration::from_secs(1 << 20)).is_empty());
        let (again, _peer2) = UnixStream::pair().unwrap();
        lot.park(parked(OwnedFd::from(again))).ok().unwrap();
        assert!(lot.due(t0 + Duration::from_secs(1 << 20)).is_empty());
    }
}
