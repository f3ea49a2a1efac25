//! The runtime: one pinned glommio executor per core, each with its own
//! SO_REUSEPORT listener, its own sessions and replicas, and mesh channels
//! to every other core.
//!
//! Owns: starting and stopping executors, binding listeners, the per-core
//! background tasks (accept loop, mailbox senders and receivers, the
//! sweeper). Does not own: protocol logic (`crate::broker`), routing
//! (`core.rs`), or checking what the kernel must provide (`kernel.rs`, run
//! before any executor is built).

mod affinity;
pub mod config;
mod conn;
mod core;
mod http;
mod kernel;
mod mailbox;
mod metrics;
mod migrate;
mod notify;
mod parking;
mod sessions;
mod stats;
mod sys_topics;

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::codec::DisconnectReasonCode;
pub use config::Config;

use self::core::Core;
use self::mailbox::CoreMsg;

/// A batch of cross-core messages: the unit a mesh channel carries.
type Batch = Vec<CoreMsg>;

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The stats address that was asked for cannot be bound (the default
    /// one only gets a warning).
    #[error("cannot listen on {addr} for the stats endpoint ([stats] listen, --stats-listen)")]
    StatsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// io_uring or locked memory is missing: the message says what to raise.
    #[error("{0}")]
    Kernel(String),
    #[error("core {core} stopped: {detail}")]
    Core { core: usize, detail: String },
}

/// A running broker.
pub struct Server {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<(), String>>>,
    stats: Option<http::StatsServer>,
}

impl Server {
    /// Starts every core and returns once all of them are listening.
    pub fn start(config: Config) -> Result<Server, ServerError> {
        Self::start_with_shutdown(config, Arc::new(AtomicBool::new(false)))
    }

    /// [`Server::start`] with the flag that shuts it down (see
    /// [`Server::shutdown_flag`]) made by the caller, so that signal
    /// handlers can be set before the cores start: a signal that arrives
    /// while they start still shuts the broker down gracefully.
    pub fn start_with_shutdown(
        config: Config,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Server, ServerError> {
        config.validate()?;
        let cores = config.effective_cores();
        if let Some(cpus) = config.cpus_left_unused() {
            tracing::info!(
                cpus,
                cores,
                "starting {cores} cores, the most Vane supports, not one per CPU"
            );
        }
        kernel::check_io_uring().map_err(ServerError::Kernel)?;
        kernel::check_memlock(cores, memlock_per_core(&config)).map_err(ServerError::Kernel)?;
        let listeners = bind_listeners(config.listen, cores)?;
        let addr = listeners[0]
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let cpus = allowed_cpus();
        let mesh: MeshBuilder<Batch, Full> =
            MeshBuilder::full(cores, config.executor.mailbox_capacity);
        let stats_listener = match config.stats.enabled {
            true => bind_stats(&config.stats)?,
            false => None,
        };
        // Latency is sampled only for an endpoint that serves it.
        let hub = metrics::StatsHub::new(cores, stats_listener.is_some());
        let stats = stats_listener
            .map(|listener| http::StatsServer::start(listener, hub.clone(), shutdown.clone()))
            .transpose()
            .map_err(|source| ServerError::StatsBind {
                addr: config.stats.listen,
                source,
            })?;
        let gate = Arc::new(ConnectionGate {
            open: AtomicUsize::new(0),
            max: config.limits.max_connections,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut threads = Vec::with_capacity(cores);
        for (id, listener) in listeners.into_iter().enumerate() {
            let placement = if config.executor.pin && !cpus.is_empty() {
                Placement::Fixed(cpus[id % cpus.len()])
            } else {
                Placement::Unbound
            };
            let builder = LocalExecutorBuilder::new(placement)
                .name(&format!("vane-core-{id}"))
                .io_memory(config.executor.io_memory)
                .ring_depth(config.executor.ring_depth);
            let (config, mesh, shutdown, ready) = (
                config.clone(),
                mesh.clone(),
                shutdown.clone(),
                ready_tx.clone(),
            );
            let hub = hub.clone();
            let gate = gate.clone();
            let fd = listener.into_raw_fd();
            let thread = std::thread::Builder::new()
                .name(format!("vane-core-{id}"))
                .spawn(move || -> Result<(), String> {
                    GATE.with(|slot| *slot.borrow_mut() = Some(gate));
                    let executor = match builder.make() {
                        Ok(executor) => executor,
                        Err(error) => {
                            let message = kernel::explain_executor_error(&error.to_string());
                            let _ = ready.send(Err(message.clone()));
                            return Err(message);
                        }
                    };
                    executor.run(async move {
                        // SAFETY: `fd` is a listening socket this thread owns.
                        let listener = unsafe { TcpListener::from_raw_fd(fd) };
                        run_core(id, config, listener, mesh, shutdown, ready, hub).await
                    })
                })
                .map_err(|e| ServerError::Kernel(format!("cannot start a core thread: {e}")))?;
            threads.push(thread);
        }
        drop(ready_tx);
        let mut server = Server {
            addr,
            shutdown,
            threads,
            stats,
        };
        for _ in 0..cores {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    server.stop_now();
                    return Err(ServerError::Kernel(message));
                }
                Err(_) => {
                    server.stop_now();
                    return Err(ServerError::Kernel("a core stopped while starting".into()));
                }
            }
        }
        Ok(server)
    }

    /// The address the MQTT listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the stats listener is bound to, if it is enabled.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats.as_ref().map(http::StatsServer::local_addr)
    }

    /// A flag that, once set, shuts the broker down (used by signals).
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    fn stop_now(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(stats) = &mut self.stats {
            stats.join();
        }
    }

    /// Waits for every core to finish (after the shutdown flag is set).
    pub fn join(mut self) -> Result<(), ServerError> {
        let mut result = Ok(());
        for (core, thread) in self.threads.drain(..).enumerate() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(detail)) => result = Err(ServerError::Core { core, detail }),
                Err(_) => {
                    result = Err(ServerError::Core {
                        core,
                        detail: "panicked".into(),
                    })
                }
            }
        }
        result
    }

    /// Graceful shutdown: stop accepting, DISCONNECT 0x8B to 5.0 clients,
    /// flush, and wait for the cores.
    pub fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.store(true, Ordering::Relaxed);
        self.join()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

async fn run_core(
    id: usize,
    config: Config,
    listener: TcpListener,
    mesh: MeshBuilder<Batch, Full>,
    shutdown: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    hub: Arc<metrics::StatsHub>,
) -> Result<(), String> {
    let ncores = hub.cores.len();
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| "cannot join the core mesh".to_string())?;
    // The mesh numbers its peers by executor id, in whatever order the
    // threads built their executors, not by spawn index: a core's id must
    // be its mesh peer id, or `send_to(peer)` reaches the wrong core (or
    // itself) and cross-core messages are lost.
    let _ = id;
    let id = senders.peer_id();
    let mut core = Core::new(id, ncores, &config, shutdown);
    core.stats = hub.cores[id].clone();
    core.telemetry = hub.telemetry(id);
    let core = Rc::new(core);
    let mut tasks = Vec::new();
    // Awaited, not cancelled, at shutdown: its wait on the blocking thread
    // must return before the executor goes (see `parking::run`).
    let poller = glommio::spawn_local(parking::run(core.clone()));
    tasks.push(glommio::spawn_local(parking::resume_queued(core.clone())));
    tasks.push(glommio::spawn_local(dispatch_self(core.clone())));
    let senders = Rc::new(senders);
    for peer in (0..ncores).filter(|&p| p != id) {
        tasks.push(glommio::spawn_local(send_to_peer(
            core.clone(),
            senders.clone(),
            peer,
        )));
    }
    for (peer, receiver) in receivers.streams() {
        let core = core.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(batch) = receiver.recv().await {
                let now = Instant::now();
                core.stats
                    .mailbox_batches
                    .set(core.stats.mailbox_batches.get() + 1);
                for msg in batch {
                    core.dispatch(msg, now);
                }
                // Not reading the next batch while local subscribers catch
                // up fills the mesh channel, which stops the sending core's
                // publishers: back-pressure across cores.
                core.wait_for_consumers().await;
            }
            tracing::trace!(core = core.id, peer, "mesh channel closed");
        }));
    }
    if let Some(follow) = core.follow {
        tasks.push(glommio::spawn_local(affinity::run(
            core.clone(),
            hub.cores.clone(),
            follow,
        )));
    }
    let sweeper = glommio::spawn_local(sweep(core.clone()));
    if id == 0 && config.stats.sys_interval > 0 {
        let interval = Duration::from_secs(config.stats.sys_interval);
        tasks.push(glommio::spawn_local(sys_topics::run(
            core.clone(),
            hub.clone(),
            interval,
        )));
    }
    let _ = ready.send(Ok(()));
    tracing::info!(core = id, addr = ?listener.local_addr().ok(), "core listening");
    core.stats.accepting.set(1);
    accept_loop(core.clone(), listener).await;
    core.stats.accepting.set(0);

    // Shutdown: every connection gets DISCONNECT 0x8B and closes.
    core.kill_all(DisconnectReasonCode::ServerShuttingDown);
    let deadline = Instant::now() + Duration::from_secs(5);
    while core.sessions.borrow().online() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    sweeper.cancel().await;
    poller.await;
    tracing::debug!(core = id, stats = ?core.stats.snapshot(), "core stopped");
    senders.close();
    for task in tasks {
        task.cancel().await;
    }
    Ok(())
}

async fn accept_loop(core: Rc<Core>, listener: TcpListener) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            core.stopping.notified().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE and friends: say so, back off briefly, carry on.
                tracing::warn!(core = core.id, %error, "accept failed (check the open-files limit, ulimit -n)");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The core's own cap first: it costs nothing to check and takes
        // nothing to undo. Then a slot of the global count.
        if core.open_connections.get() >= core.max_connections || !admit_connection() {
            core.stats.reject(stats::Reject::ConnectionLimit);
            tracing::debug!(
                core = core.id,
                "connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        }
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        core.stats
            .connections_accepted
            .set(core.stats.connections_accepted.get() + 1);
        core.stats.connections_current.inc();
        core.open_connections.set(core.open_connections.get() + 1);
        glommio::spawn_local(conn::serve(core.clone(), stream, peer)).detach();
    }
}

/// `limits.max_connections`: connections open at once over all the cores,
/// counted exactly in one atomic that the accept loops increment and the
/// end of a connection decrements. It is touched once per accept and once
/// per close, never per message; parking a connection or moving it to
/// another core leaves it counted.
struct ConnectionGate {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionGate {
    /// Takes a slot if one is free.
    fn try_admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                open.checked_sub(1)
            });
    }
}

thread_local! {
    /// The connection gate of the broker whose executor runs on this
    /// thread (one executor per thread, set before it is built). A
    /// thread-local rather than a `Core` field so that the connection's
    /// end in `conn.rs` reaches it with one call.
    static GATE: RefCell<Option<Arc<ConnectionGate>>> = const { RefCell::new(None) };
}

/// Takes a slot of `max_connections` for a new connection on this core's
/// thread; false when all are taken.
fn admit_connection() -> bool {
    GATE.with(|slot| slot.borrow().as_ref().map_or(true, |gate| gate.try_admit()))
}

/// A connection ended for good (closed: not parked, not moved to another
/// core): its slot of `max_connections` is free again.
pub(crate) fn connection_closed() {
    GATE.with(|slot| {
        if let Some(gate) = slot.borrow().as_ref() {
            gate.release();
        }
    });
}

async fn dispatch_self(core: Rc<Core>) {
    loop {
        core.self_ready.notified().await;
        let now = Instant::now();
        for msg in core.take_self_messages() {
            core.dispatch(msg, now);
        }
    }
}

async fn send_to_peer(core: Rc<Core>, senders: Rc<Senders<Batch>>, peer: usize) {
    let outbox = &core.outboxes[peer];
    loop {
        outbox.ready.notified().await;
        loop {
            let batch = outbox.take_batch();
            if batch.is_empty() {
                break;
            }
            if senders.send_to(peer, batch).await.is_err() {
                return;
            }
            outbox.relieve();
        }
    }
}

async fn sweep(core: Rc<Core>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        if core.is_shutting_down() {
            core.stopping.notify();
        }
        core.sweep(Instant::now());
        metrics::tick(&core);
    }
}

/// Binds one SO_REUSEPORT listener per core on `addr`. With port 0 the
/// first picks a port and the others join it.
fn bind_listeners(addr: SocketAddr, cores: usize) -> Result<Vec<StdListener>, ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut listeners = Vec::with_capacity(cores);
    let mut bound = addr;
    for _ in 0..cores {
        let make = || -> std::io::Result<StdListener> {
            let socket = Socket::new(
                Domain::for_address(bound),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&bound.into())?;
            socket.listen(4096)?;
            Ok(socket.into())
        };
        let listener = make().map_err(|source| ServerError::Bind { addr, source })?;
        bound = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds the stats listener. Where the address is the default one and
/// nobody asked for it (it is node_exporter's port too), failing is one
/// warning and the broker runs without the endpoint; an address that was
/// asked for must bind.
fn bind_stats(settings: &config::StatsSettings) -> Result<Option<StdListener>, ServerError> {
    match http::bind(settings.listen) {
        Ok(listener) => Ok(Some(listener)),
        Err(error) if settings.listen_is_optional() => {
            tracing::warn!(
                addr = %settings.listen,
                %error,
                "stats endpoint not started: its default address cannot be bound; \
                 set [stats] listen or --stats-listen to a free address, or [stats] enabled = false"
            );
            Ok(None)
        }
        Err(source) => Err(ServerError::StatsBind {
            addr: settings.listen,
            source,
        }),
    }
}

/// CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Locked memory one executor needs: its registered I/O buffer plus the
/// io_uring rings (about 512 KiB in all with the default settings).
fn memlock_per_core(config: &Config) -> u64 {
    config.executor.io_memory as u64 + 448 * 1024
}
