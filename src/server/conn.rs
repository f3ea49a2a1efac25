//! The task that serves one client connection on its core: read, hand
//! packets to the sans-IO [`Connection`], carry out the events it returns,
//! and write whatever the session produced in one write per wake-up.
//!
//! Owns: the socket, the read buffer, the keepalive and connect timers, and
//! the order of the steps around an event (claim before CONNACK, barrier
//! before SUBACK, routing before PUBACK). Does not own: protocol decisions
//! (`crate::broker`) or routing (`core.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::broker::connection::{Close, Connection, Event, PendingAck, Received};
use crate::broker::message::{DeliveryPlan, SessionKey, SubscriptionEntry};
use crate::broker::session::SessionState;
use crate::codec::{
    DisconnectReasonCode, MqttStr, PubAckReasonCode, QoS, RetainHandling, SubAckReasonCode,
    TopicFilter, UnsubAckReasonCode,
};

use super::core::Core;
use super::parking::Parked;
use super::sessions::{will_fate, ConnLink, Presence, StoredId, WillFate};

/// Bytes read from the socket per read call, into the core's scratch
/// buffer.
pub const READ_CHUNK: usize = 16 * 1024;
/// An emptied buffer keeps its allocation only up to this size.
const KEEP_CAPACITY: usize = 0;
/// How long a connection the broker ends is drained before it is closed
/// (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);

enum Wake {
    Read(io::Result<usize>),
    Notified,
    Timeout,
}

/// A connection's state across wake-ups, apart from its socket.
struct ConnTask {
    conn: Connection,
    link: Rc<ConnLink>,
    input: BytesMut,
    peer: SocketAddr,
    accepted_at: Instant,
    /// Set once CONNACK 0 is sent.
    client_id: Option<StoredId>,
}

/// How a connection's task ended.
enum Ended {
    Closed,
    /// Idle: handed to the core's parking lot, to be resumed by a new task.
    Parked,
    /// Quiet and asked to move: to be handed to this core.
    Moving(usize),
}

/// Serves an accepted `stream` until it closes or parks. (Not `async`: the
/// set-up runs here, so the task's future is only [`run`]'s.)
pub fn serve(core: Rc<Core>, stream: TcpStream, peer: SocketAddr) -> impl Future<Output = ()> {
    let _ = stream.set_nodelay(true);
    let accepted_at = Instant::now();
    let task = ConnTask {
        conn: Connection::new(core.connection_limits, accepted_at),
        link: Rc::new(ConnLink::default()),
        input: BytesMut::new(),
        peer,
        accepted_at,
        client_id: None,
    };
    run(core, stream, task)
}

/// Serves a parked connection again, from where it left off.
pub fn resume(core: Rc<Core>, parked: Parked, link: Rc<ConnLink>) -> impl Future<Output = ()> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor is a connected TCP socket the lot owned;
    // ownership moves to the stream.
    let stream = unsafe { TcpStream::from_raw_fd(parked.fd.into_raw_fd()) };
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let client_id = parked.conn.session_key.and_then(|key| {
        let mut sessions = core.sessions.borrow_mut();
        sessions.get_mut(key).map(|slot| slot.client_id.clone())
    });
    let task = ConnTask {
        conn: parked.conn,
        link,
        input: BytesMut::new(),
        peer,
        // Only a connection that has sent CONNECT parks, so the connect
        // timeout no longer applies.
        accepted_at: Instant::now(),
        client_id,
    };
    run(core, stream, task)
}

/// Serves a connection that moved here from another core, with the
/// session already installed under `key`.
pub fn serve_adopted(core: Rc<Core>, moved: super::migrate::ToServe) -> impl Future<Output = ()> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let super::migrate::ToServe { adoption, link, .. } = moved;
    let adoption = *adoption;
    // SAFETY: the descriptor is the connected TCP socket the old core
    // handed over; ownership moves to the stream.
    let stream = unsafe { TcpStream::from_raw_fd(adoption.fd.into_raw_fd()) };
    let task = ConnTask {
        conn: adoption.conn,
        link,
        input: adoption.input,
        peer: adoption.peer,
        // Only a connected client moves: the connect timeout is over.
        accepted_at: Instant::now(),
        client_id: Some(adoption.client_id),
    };
    run(core, stream, task)
}

async fn run(core: Rc<Core>, mut stream: TcpStream, mut task: ConnTask) {
    match serve_until_closed_or_idle(&core, &mut stream, &mut task).await {
        Ended::Closed => {
            core.connection_ended();
            super::connection_closed();
        }
        Ended::Parked => park(&core, stream, task),
        Ended::Moving(target) => move_away(&core, stream, task, target),
    }
}

/// Hands a quiet connection to core `target` (see `migrate.rs`): the
/// socket (a duplicate descriptor), the protocol state and the session
/// go; this task's stream is dropped. If that cannot be done the
/// connection is served on here by a new task.
fn move_away(core: &Rc<Core>, stream: TcpStream, task: ConnTask, target: usize) {
    task.link.cancel_move();
    // Nothing awaits from here to `send_away`, so a session present now
    // is still there when it is handed over.
    let present = task
        .conn
        .session_key
        .is_some_and(|key| core.sessions.borrow_mut().get_mut(key).is_some());
    if !present {
        glommio::spawn_local(run(core.clone(), stream, task)).detach();
        return;
    }
    let Some((fd, task)) = release_socket(core, stream, task) else {
        return;
    };
    super::migrate::send_away(core, fd, task.conn, task.input, task.peer, target);
    task.link.release_buffers();
}

/// Keeps a duplicate of the stream's socket and drops the stream (and its
/// poll registration). If the socket cannot be duplicated the connection
/// is served on by a new task and None is returned.
fn release_socket(
    core: &Rc<Core>,
    stream: TcpStream,
    task: ConnTask,
) -> Option<(std::os::fd::OwnedFd, ConnTask)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: dup has no memory preconditions; the result is checked.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        glommio::spawn_local(run(core.clone(), stream, task)).detach();
        return None;
    }
    drop(stream);
    // SAFETY: `fd` is a new descriptor nothing else owns.
    Some((unsafe { OwnedFd::from_raw_fd(fd) }, task))
}

/// Moves an idle connection into the core's parking lot: the socket is
/// kept (a duplicate descriptor) and the task, stream and its poll
/// registration are dropped. If parking fails the connection is simply
/// served by a new task.
fn park(core: &Rc<Core>, stream: TcpStream, task: ConnTask) {
    let Some((fd, task)) = release_socket(core, stream, task) else {
        return;
    };
    let key = task.conn.session_key;
    let parked = Parked {
        fd,
        conn: task.conn,
        link: None,
    };
    let result = core.parking.borrow_mut().park(parked);
    match result {
        Ok(id) => {
            // The session forgets the link: nothing of the connection's
            // own stays on the heap while it is idle.
            let mut sessions = core.sessions.borrow_mut();
            if let Some(slot) = key.and_then(|key| sessions.get_mut(key)) {
                slot.presence = Presence::Parked(id);
            }
            drop(sessions);
            task.link.release_buffers();
        }
        Err((parked, error)) => {
            tracing::debug!(core = core.id, %error, "cannot park an idle connection");
            glommio::spawn_local(resume(core.clone(), parked, task.link)).detach();
        }
    }
}

async fn serve_until_closed_or_idle(
    core: &Rc<Core>,
    stream: &mut TcpStream,
    task: &mut ConnTask,
) -> Ended {
    let ConnTask {
        conn,
        link,
        input,
        peer,
        accepted_at,
        client_id,
    } = task;
    let (peer, accepted_at) = (*peer, *accepted_at);
    let mut key = conn.session_key;
    // Whether the client's side is closed (EOF or a read error).
    let mut peer_gone = false;
    let mut last_active = Instant::now();

    let close: Close = 'serve: loop {
        // Everything already buffered, packet by packet. Nothing but the
        // boxed rare wait and `now` is held across an await, so the
        // connection's future stays small. One clock reading per chunk
        // read, not per packet: its packets arrived together (read again
        // after a rare wait).
        let mut now = Instant::now();
        loop {
            if link.killed().is_some() {
                // Taken over (or shut down) during an await below: the
                // session is gone, so what is still buffered is not read.
                break;
            }
            let outcome = {
                let rare = {
                    let buffered = input.len();
                    let received = {
                        let mut out = link.out.borrow_mut();
                        let mut sessions = core.sessions.borrow_mut();
                        let session = key.and_then(|k| sessions.get_mut(k)).map(|s| &mut s.state);
                        conn.receive(input, session, now, &mut out)
                    };
                    let event = match received {
                        Received::NeedMore => break,
                        Received::Handled => continue,
                        Received::Event(event) => event,
                    };
                    if let Event::Publish { message, .. } = &event {
                        core.stats.received(message.qos, buffered - input.len());
                    }
                    dispatch(core, link, conn, &mut key, event)
                };
                match rare {
                    Some(rare) => {
                        let outcome = rare.await;
                        now = Instant::now();
                        outcome
                    }
                    None => None,
                }
            };
            if let Some(close) = outcome {
                break 'serve close;
            }
            if client_id.is_none() {
                *client_id = key.and_then(|k| {
                    let mut sessions = core.sessions.borrow_mut();
                    sessions.get_mut(k).map(|s| s.client_id.clone())
                });
                if let Some(id) = client_id {
                    super::metrics::client_connected(core, id.as_str(), peer);
                }
            }
        }
        if let Some(reason) = link.killed() {
            let publish_will = reason == DisconnectReasonCode::SessionTakenOver;
            break conn.server_disconnect(reason, publish_will, &mut link.out.borrow_mut());
        }
        if has_output(core, link, key) {
            if let Err(error) = Box::pin(flush(core, stream, link, key)).await {
                break lost(conn, &error.to_string());
            }
        }
        if let Some(target) = link.move_requested() {
            // Quiet: every whole packet read is handled and everything
            // produced is written; what is in flight is session state.
            if key.is_some() && link.killed().is_none() && !has_output(core, link, key) {
                return Ended::Moving(target);
            }
            if link.killed().is_some() {
                link.cancel_move();
            }
        }
        release_if_empty(input);
        let keepalive = if conn.is_connected() {
            conn.keepalive_deadline()
        } else {
            Some(accepted_at + core.connect_timeout)
        };
        let park_at = core
            .park_after
            .filter(|_| conn.is_connected() && input.is_empty())
            .map(|after| last_active + after);
        let deadline = match (keepalive, park_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match wait(core, stream, input, link, deadline).await {
            Wake::Read(Ok(0)) => {
                peer_gone = true;
                break lost(conn, "connection closed by the client");
            }
            Wake::Read(Ok(_)) => {
                last_active = Instant::now();
                // glommio's read succeeds without yielding while the socket
                // has data, so a busy publisher would never let this core's
                // writers run: give them their turn after every chunk.
                future::yield_now().await;
            }
            Wake::Read(Err(error)) => {
                peer_gone = true;
                break lost(conn, &error.to_string());
            }
            Wake::Notified => last_active = Instant::now(),
            Wake::Timeout if keepalive.is_some_and(|at| Instant::now() >= at) => {
                if !conn.is_connected() {
                    break lost(conn, "no CONNECT within the connect timeout");
                }
                // [MQTT-3.1.2-24]: 1.5 × keepalive without a packet.
                let out = &mut link.out.borrow_mut();
                break conn.server_disconnect(DisconnectReasonCode::KeepAliveTimeout, true, out);
            }
            Wake::Timeout => {
                if is_idle(core, link, key, input) {
                    return Ended::Parked;
                }
                // Busy after all: try again a full idle period from now.
                last_active = Instant::now();
            }
        }
    };

    let _ = Box::pin(future::or(flush(core, stream, link, None), async {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        Ok(())
    }))
    .await;
    super::metrics::connection_closed(
        core,
        &close,
        client_id.is_some(),
        conn.refusal(),
        !conn.is_connected() && accepted_at.elapsed() >= core.connect_timeout,
        client_id.as_ref().map(StoredId::as_str),
        peer,
    );
    finish(core, conn, key, close, link.session_ended.get());
    if !peer_gone {
        Box::pin(linger(stream)).await;
    }
    let _ = Box::pin(stream.close()).await;
    Ended::Closed
}

/// A wait that handling an event needs, boxed: rare, and too large to
/// keep inline in every connection's future.
type RareWait<'a> = Pin<Box<dyn Future<Output = Option<Close>> + 'a>>;

/// Carries out an event: a PUBLISH at once (routed and acknowledged), and
/// anything that must wait (a retained message's barrier, back-pressure,
/// every other event) as a boxed future for the caller to await.
fn dispatch<'a>(
    core: &'a Rc<Core>,
    link: &'a Rc<ConnLink>,
    conn: &'a mut Connection,
    key: &'a mut Option<SessionKey>,
    event: Event,
) -> Option<RareWait<'a>> {
    match event {
        Event::Publish { message, ack } => {
            let retained_ack = publish(core, link, conn, &message, ack);
            drop(message);
            match retained_ack {
                Some(ack) => Some(Box::pin(async move {
                    acknowledge_retained(core, link, conn, ack).await;
                    if core.must_wait() {
                        core.backpressure().await;
                    }
                    None
                })),
                None if core.must_wait() => Some(Box::pin(async move {
                    core.backpressure().await;
                    None
                })),
                None => None,
            }
        }
        other => Some(Box::pin(handle_event(core, link, conn, key, other))),
    }
}

/// Whether a connection has nothing in progress and can park: connected,
/// no partial packet, nothing to write, nothing queued, not being closed.
fn is_idle(core: &Core, link: &ConnLink, key: Option<SessionKey>, input: &BytesMut) -> bool {
    key.is_some()
        && input.is_empty()
        && link.killed().is_none()
        && !has_output(core, link, key)
        && link.is_quiet()
}

/// Half-closes a connection the broker ends and reads (and discards) what
/// the client still sends until it closes its side or [`LINGER`] passes.
/// Closing at once with unread input would reset the connection, and a
/// client still acknowledging what it had received (PUBRELs for the PUBRECs
/// before a DISCONNECT 0x93, say) would get a broken pipe before it could
/// read the DISCONNECT and its reason code.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let mut discard = [0u8; 512];
    let drain = async { while let Ok(1..) = stream.read(&mut discard).await {} };
    future::or(drain, glommio::timer::sleep(LINGER)).await;
}

fn lost(conn: &Connection, detail: &str) -> Close {
    Close {
        reason: DisconnectReasonCode::UnspecifiedError,
        publish_will: conn.is_connected(),
        session_expiry: None,
        detail: detail.to_string(),
    }
}

/// Waits for input, output to write, or the deadline. Input is read into
/// the core's scratch buffer, borrowed only inside one poll (glommio's
/// `poll_read` keeps no reference to it once it returns), and only the
/// bytes received are copied into `input`: an idle connection holds no
/// read buffer at all.
async fn wait(
    core: &Core,
    stream: &mut TcpStream,
    input: &mut BytesMut,
    link: &ConnLink,
    deadline: Option<Instant>,
) -> Wake {
    let read = std::future::poll_fn(|cx| {
        let mut scratch = core.read_scratch.borrow_mut();
        match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
            std::task::Poll::Ready(Ok(n)) => {
                input.extend_from_slice(&scratch[..n]);
                core.stats.bytes_received.add(n as u64);
                std::task::Poll::Ready(Wake::Read(Ok(n)))
            }
            std::task::Poll::Ready(Err(error)) => std::task::Poll::Ready(Wake::Read(Err(error))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    });
    let notified = async {
        link.notify.notified().await;
        Wake::Notified
    };
    let timer = async {
        match deadline {
            Some(at) => {
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                Wake::Timeout
            }
            None => future::pending().await,
        }
    };
    future::or(read, future::or(notified, timer)).await
}

/// Gives an emptied buffer's memory back, so idle connections hold none.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = BytesMut::new();
    }
}

/// Writes everything the connection has produced, refilling from the
/// session's queue as the write buffer drains.
async fn flush(
    core: &Core,
    stream: &mut TcpStream,
    link: &ConnLink,
    key: Option<SessionKey>,
) -> io::Result<()> {
    loop {
        let (chunk, stamps) = {
            let mut out = link.out.borrow_mut();
            let mut queued = 0;
            if let Some(key) = key {
                if let Some(slot) = core.sessions.borrow_mut().get_mut(key) {
                    if out.is_empty() {
                        slot.state.pump(Instant::now(), &mut out);
                    }
                    queued = slot.state.queued_len();
                }
            }
            link.update_backlog(out.len(), queued, core.marks);
            if out.is_empty() {
                release_if_empty(&mut out);
                return Ok(());
            }
            (out.split(), link.stamps.take())
        };
        // Written piece by piece so that a consumer's progress is seen
        // while a large chunk drains (see `Core::wait_for_consumers`).
        let mut written = 0;
        while written < chunk.len() {
            let n = stream.write(&chunk[written..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            written += n;
            link.wrote(n);
        }
        super::metrics::count_sent(&core.stats, &chunk);
        core.telemetry.written(&stamps);
    }
}

/// Whether the connection has output to write, or queued messages that
/// could now be written.
fn has_output(core: &Core, link: &ConnLink, key: Option<SessionKey>) -> bool {
    if !link.out.borrow().is_empty() {
        return true;
    }
    key.is_some_and(|key| {
        core.sessions
            .borrow_mut()
            .get_mut(key)
            .is_some_and(|slot| slot.state.queued_len() > 0)
    })
}

/// Routes an accepted PUBLISH and acknowledges it. A retained QoS 1/2
/// message is acknowledged only once every replica has it: then the owed
/// acknowledgement and its reason are returned for [`acknowledge_retained`].
fn publish(
    core: &Core,
    link: &ConnLink,
    conn: &mut Connection,
    message: &crate::broker::message::Message,
    ack: PendingAck,
) -> Option<(PendingAck, Option<PubAckReasonCode>)> {
    // Routed in the same instant it was read (see `serve_until_closed_or_idle`).
    let matched = core.route(message, message.received_at);
    let reason = (!matched).then_some(PubAckReasonCode::NoMatchingSubscribers);
    if message.retain && message.qos != QoS::AtMostOnce {
        return Some((ack, reason));
    }
    conn.publish_routed(ack, reason, &mut link.out.borrow_mut());
    None
}

async fn acknowledge_retained(
    core: &Core,
    link: &ConnLink,
    conn: &mut Connection,
    (ack, reason): (PendingAck, Option<PubAckReasonCode>),
) {
    core.barrier().await;
    conn.publish_routed(ack, reason, &mut link.out.borrow_mut());
}

async fn handle_event(
    core: &Rc<Core>,
    link: &Rc<ConnLink>,
    conn: &mut Connection,
    key: &mut Option<SessionKey>,
    event: Event,
) -> Option<Close> {
    match event {
        Event::Connect(request) => {
            let mut request = *request;
            if core.is_shutting_down() {
                conn.refuse(
                    crate::codec::ConnectReasonCode::ServerUnavailable,
                    &mut link.out.borrow_mut(),
                );
                return Some(lost(conn, "refused: shutting down"));
            }
            if request.assigned_client_id {
                request.client_id = assign_client_id(core);
            }
            let clean_start = request.connect.clean_start;
            let (claimant, transfer) = core.claim(&request.client_id, clean_start).await;
            // A session handed over keeps its subscriptions in every
            // replica throughout (see `Core::evict`): no barrier is needed
            // before CONNACK.
            let (state, old_key) = match transfer {
                Some(transfer) => (transfer.state, Some(transfer.old_key)),
                None => (SessionState::new(core.session_limits), None),
            };
            let session_present = old_key.is_some();
            let new_key = core.install_session(
                request.client_id.clone(),
                claimant,
                state,
                old_key,
                link.clone(),
            );
            let now = Instant::now();
            let mut sessions = core.sessions.borrow_mut();
            let Some(slot) = sessions.get_mut(new_key) else {
                // Taken over by a later CONNECT while this one waited.
                return Some(lost(conn, "taken over before CONNACK"));
            };
            slot.expiry = request.session_expiry;
            tracing::trace!(target: "vane::clients", client_id = %request.client_id, core = core.id, session_present, "session attached");
            conn.accept(
                request,
                &mut slot.state,
                session_present,
                new_key,
                now,
                &mut link.out.borrow_mut(),
            );
            *key = Some(new_key);
            None
        }
        Event::Publish { message, ack } => {
            if let Some(ack) = publish(core, link, conn, &message, ack) {
                acknowledge_retained(core, link, conn, ack).await;
            }
            core.backpressure().await;
            None
        }
        Event::Subscribe(subscribe, refused) => {
            let received_at = Instant::now();
            let session_key = (*key)?;
            let mut codes = Vec::with_capacity(subscribe.subscriptions.len());
            let mut retained_for = Vec::new();
            for sub in subscribe.subscriptions {
                if core.deny_subscribe.contains(&sub.filter) {
                    // Refused by configuration: 0x80 ([MQTT-3.9.3-2]).
                    codes.push(SubAckReasonCode::UnspecifiedError);
                    continue;
                }
                let entry = SubscriptionEntry {
                    options: sub.options,
                    identifier: subscribe.properties.subscription_identifier,
                };
                let existed = {
                    let mut sessions = core.sessions.borrow_mut();
                    let slot = sessions.get_mut(session_key)?;
                    let subs = &mut slot.state.subscriptions;
                    if !subs.contains_key(&sub.filter)
                        && subs.len() >= core.connection_limits.max_subscriptions
                    {
                        codes.push(SubAckReasonCode::QuotaExceeded);
                        continue;
                    }
                    subs.insert(sub.filter.clone(), entry).is_some()
                };
                core.add_new_subscription(session_key, &sub.filter, entry, received_at);
                codes.push(SubAckReasonCode::granted(sub.options.qos));
                let wants_retained = match sub.options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendAtNewSubscribe => !existed,
                    RetainHandling::DoNotSend => false,
                };
                // Shared subscriptions get no retained messages (5.0 §4.8.2).
                if wants_retained && sub.filter.shared().is_none() {
                    retained_for.push((sub.filter, entry));
                }
            }
            core.barrier().await;
            conn.subscribed(subscribe.pid, refused, codes, &mut link.out.borrow_mut());
            deliver_retained(core, session_key, retained_for);
            None
        }
        Event::Unsubscribe(unsubscribe) => {
            let session_key = (*key)?;
            let mut codes = Vec::with_capacity(unsubscribe.filters.len());
            for filter in &unsubscribe.filters {
                let existed = {
                    let mut sessions = core.sessions.borrow_mut();
                    let slot = sessions.get_mut(session_key)?;
                    slot.state.subscriptions.remove(filter).is_some()
                };
                if existed {
                    core.remove_subscription(session_key, filter);
                    codes.push(UnsubAckReasonCode::Success);
                } else {
                    codes.push(UnsubAckReasonCode::NoSubscriptionExisted);
                }
            }
            // Every replica drops the subscriptions before UNSUBACK, so no
            // core routes a later PUBLISH to them ([MQTT-3.10.4-2]); a
            // shared group's share then goes to a member still in it.
            core.barrier().await;
            conn.unsubscribed(unsubscribe.pid, codes, &mut link.out.borrow_mut());
            None
        }
        Event::Close(close) => Some(close),
    }
}

/// Retained messages matching new subscriptions, sent after the SUBACK
/// with RETAIN set ([MQTT-3.3.1-9]).
fn deliver_retained(core: &Core, key: SessionKey, filters: Vec<(TopicFilter, SubscriptionEntry)>) {
    let now = Instant::now();
    for (filter, entry) in filters {
        let mut messages = Vec::new();
        core.retained
            .borrow()
            .for_each_match(filter.pattern(), |_, message| {
                messages.push(message.clone())
            });
        for message in messages {
            if !message.is_expired(now) {
                let plan = DeliveryPlan::new(&message, &entry, true);
                core.deliver_retained_to(key, &message, plan, now);
            }
        }
    }
}

/// A client id for a client that sent none (5.0 §3.1.3.1, 3.1.1
/// [MQTT-3.1.3-6]): unique across cores and restarts.
fn assign_client_id(core: &Core) -> MqttStr {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    MqttStr::try_from(format!("vane-{}-{nanos:x}-{n}", core.id)).expect("ASCII id")
}

/// Detaches the session, publishes or schedules the will, and ends the
/// session if it does not outlive its connection.
fn finish(
    core: &Core,
    conn: &mut Connection,
    key: Option<SessionKey>,
    close: Close,
    session_ended: bool,
) {
    let Some(key) = key else { return };
    let now = Instant::now();
    let will = if close.publish_will {
        conn.take_will()
    } else {
        None
    };
    let expiry = conn.session_expiry();
    let still_ours = {
        let mut sessions = core.sessions.borrow_mut();
        match sessions.get_mut(key) {
            Some(slot) => {
                slot.expiry = expiry;
                sessions.detach(key, now);
                true
            }
            None => false,
        }
    };
    if still_ours && expiry != 0 {
        // Before the will is routed: a group picks connected members.
        core.shared_member_offline(key);
    }
    if let Some((will, delay)) = will {
        match will_fate(delay, expiry, still_ours, session_ended, now) {
            WillFate::PublishNow => core.publish_will(will, now),
            WillFate::DueAt(at) => {
                if let Some(slot) = core.sessions.borrow_mut().get_mut(key) {
                    slot.pending_will = Some(Box::new((will, at)));
                }
            }
            WillFate::Cancelled => {}
        }
    }
    if still_ours && expiry == 0 {
        core.end_session(key);
    }
    core.evict_offline_sessions(now);
}
