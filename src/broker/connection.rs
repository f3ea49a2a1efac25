//! The per-connection protocol handler: it turns decoded packets into
//! answers (written straight into the connection's output buffer) and into
//! [`Event`]s that need the rest of the broker (routing, subscriptions,
//! session lookup).
//!
//! Sans-IO: packets, `Instant`s and a `BytesMut` in; bytes and events out.
//! Owns: the connection lifecycle (CONNECT first and once, keepalive, will,
//! DISCONNECT), inbound topic aliases, the per-connection limits, and the
//! choice of reason code for every protocol violation. Does not own: the
//! session's QoS state (it drives [`SessionState`]), the socket, or where
//! messages go. What a CONNECT is answered with (its checks, the granted
//! keepalive and expiry, the CONNACK) is in `connection/connect.rs`.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::message::{Message, SessionKey};
use super::session::{encode_infallible, AckError, SessionState};
use crate::codec::{
    ConnAck, Connect, ConnectReasonCode, DecodeError, Decoder, Disconnect, DisconnectReasonCode,
    MqttStr, Packet, PacketId, ProtocolVersion, PubComp, PubRelReasonCode, Subscribe, TopicName,
    Unsubscribe, Will,
};

mod connect;
mod problem;
mod publish;
mod subscribe;

pub use subscribe::Refused;

use connect::connect_level;

/// Limits a connection enforces, from the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Largest packet accepted from a client, fixed header included.
    pub max_packet_size: u32,
    /// Upper bound on keepalive; 0 means "take the client's". A 5.0
    /// client beyond it (or at 0) is given it as Server Keep Alive; a 3.x
    /// CONNECT beyond it (or at 0) is refused with return code 0x02.
    pub max_keepalive: u16,
    /// Inbound QoS 2 messages awaiting PUBREL (5.0 Receive Maximum).
    pub receive_maximum: u16,
    pub topic_alias_maximum: u16,
    pub max_topic_length: usize,
    pub max_topic_levels: usize,
    pub max_subscriptions: usize,
    /// Cap on Session Expiry Interval in seconds (and for 3.x persistent sessions).
    pub max_session_expiry: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_packet_size: 1 << 20,
            max_keepalive: 0,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_topic_length: 1024,
            max_topic_levels: 32,
            max_subscriptions: 1024,
            max_session_expiry: 7 * 24 * 3600,
        }
    }
}

/// What the broker has to do for this connection beyond writing an answer.
#[derive(Debug)]
pub enum Event {
    /// A valid CONNECT: find or create the session, then call
    /// [`Connection::accept`] or [`Connection::refuse`].
    Connect(Box<ConnectRequest>),
    /// Route `message`; then call [`Connection::publish_routed`] with `ack`.
    Publish { message: Message, ack: PendingAck },
    /// Register the subscriptions, then call [`Connection::subscribed`]
    /// with the [`Refused`] filters (already taken out of the SUBSCRIBE).
    Subscribe(Subscribe, Refused),
    /// Remove the subscriptions, then call [`Connection::unsubscribed`].
    Unsubscribe(Unsubscribe),
    /// The connection ends. A DISCONNECT, if any, is already written.
    Close(Close),
}

/// The result of [`Connection::receive`].
#[derive(Debug)]
pub enum Received {
    /// No whole packet is buffered yet.
    NeedMore,
    /// A packet was handled; its answer, if any, is written.
    Handled,
    /// A packet needs the broker.
    Event(Event),
}

/// A QoS 1 or 2 acknowledgement owed once the message is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAck {
    None,
    PubAck(PacketId),
    PubRec(PacketId),
}

/// Why and how a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub reason: DisconnectReasonCode,
    /// Whether the will is to be published ([MQTT-3.1.2-8]; not after a
    /// DISCONNECT with 0x00, [MQTT-3.1.2-10], [MQTT-3.14.4-3]).
    pub publish_will: bool,
    /// A 5.0 DISCONNECT may change the Session Expiry Interval.
    pub session_expiry: Option<u32>,
    /// A line for the debug log; a protocol violation's is also the
    /// Reason String of the DISCONNECT (or CONNACK) that reports it.
    pub detail: String,
}

/// A validated CONNECT, ready for session lookup.
#[derive(Debug)]
pub struct ConnectRequest {
    pub connect: Connect,
    /// The client id to use: the client's, or one the broker assigned.
    pub client_id: MqttStr,
    pub assigned_client_id: bool,
    /// Effective Session Expiry Interval (3.x: 0 for a clean session,
    /// the configured maximum otherwise).
    pub session_expiry: u32,
    pub keep_alive: u16,
}

#[derive(Debug)]
enum Phase {
    AwaitConnect,
    Connected,
    Closed,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    decoder: Decoder,
    limits: ConnectionLimits,
    keep_alive: u16,
    last_received: Instant,
    /// Boxed: most clients have none, and an idle connection should be small.
    will: Option<Box<Will>>,
    will_delay: u32,
    session_expiry: u32,
    request_problem_information: bool,
    /// The client's Maximum Packet Size, saturated (see
    /// `problem::answer_size_limit`): how long a Reason String may make an
    /// answer.
    answer_size_limit: u16,
    /// Inbound Topic Alias -> Topic Name (5.0 §3.3.2.3.4), index alias-1.
    /// Boxed on first use: most clients set none, and a parked connection
    /// should be small.
    // A boxed Vec on purpose: one pointer (8 bytes) in every connection,
    // against the Vec's 24 or a boxed slice's 16; the extra indirection is
    // paid only by clients that use aliases.
    #[allow(clippy::box_collection)]
    topic_aliases: Option<Box<Vec<Option<TopicName>>>>,
    pub session_key: Option<SessionKey>,
    /// Why the CONNECT was refused, if it was (for the stats).
    refusal: Option<ConnectReasonCode>,
}

impl Connection {
    pub fn new(limits: ConnectionLimits, now: Instant) -> Self {
        Connection {
            phase: Phase::AwaitConnect,
            decoder: Decoder::new(ProtocolVersion::V5, limits.max_packet_size),
            limits,
            keep_alive: 0,
            last_received: now,
            will: None,
            will_delay: 0,
            session_expiry: 0,
            request_problem_information: true,
            answer_size_limit: u16::MAX,
            topic_aliases: None,
            session_key: None,
            refusal: None,
        }
    }

    /// The CONNACK code a refused CONNECT got (or would have got, for a
    /// 3.x CONNECT closed without one).
    pub fn refusal(&self) -> Option<ConnectReasonCode> {
        self.refusal
    }

    pub fn version(&self) -> ProtocolVersion {
        self.decoder.version
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected)
    }

    /// When the connection is to be dropped for silence: one and a half
    /// keepalive periods after the last packet ([MQTT-3.1.2-24]).
    pub fn keepalive_deadline(&self) -> Option<Instant> {
        (self.keep_alive > 0 && self.is_connected())
            .then(|| self.last_received + Duration::from_millis(u64::from(self.keep_alive) * 1500))
    }

    /// The will and its delay, taken when it is to be published.
    pub fn take_will(&mut self) -> Option<(Will, u32)> {
        self.will.take().map(|w| (*w, self.will_delay))
    }

    pub fn session_expiry(&self) -> u32 {
        self.session_expiry
    }

    /// Decodes the next packet from `input` and handles it.
    pub fn receive(
        &mut self,
        input: &mut BytesMut,
        session: Option<&mut SessionState>,
        now: Instant,
        out: &mut BytesMut,
    ) -> Received {
        if matches!(self.phase, Phase::Closed) {
            input.clear();
            return Received::NeedMore;
        }
        let level = connect_level(input);
        match self.decoder.decode(input) {
            Ok(None) => Received::NeedMore,
            Ok(Some(packet)) => {
                self.last_received = now;
                match self.handle(packet, session, now, out) {
                    Some(event) => Received::Event(event),
                    None => Received::Handled,
                }
            }
            Err(error) => Received::Event(self.decode_failed(error, level, out)),
        }
    }

    fn decode_failed(
        &mut self,
        error: DecodeError,
        level: Option<u8>,
        out: &mut BytesMut,
    ) -> Event {
        if matches!(self.phase, Phase::AwaitConnect) {
            // A CONNECT we cannot accept: 5.0 answers with a CONNACK reason
            // code, 3.x with a return code where one fits
            // ([MQTT-3.1.2-2] 0x01 for an unsupported level).
            let code = error.connack_code();
            self.refusal = Some(code);
            let version = match level {
                Some(5) => Some(ProtocolVersion::V5),
                Some(4) | Some(3) => Some(ProtocolVersion::V3_1_1),
                _ if code == ConnectReasonCode::UnsupportedProtocolVersion => {
                    Some(ProtocolVersion::V3_1_1)
                }
                _ => None,
            };
            // No Reason String: the client's Maximum Packet Size, which
            // bounds it ([MQTT-3.2.2-19]), is in the CONNECT not decoded.
            if let Some(version) = version {
                if version.is_v5() || code == ConnectReasonCode::UnsupportedProtocolVersion {
                    let ack = ConnAck::new(code, false);
                    encode_infallible(&Packet::ConnAck(Box::new(ack)), version, out);
                }
            }
            self.phase = Phase::Closed;
            return Event::Close(Close {
                reason: error.reason_code(),
                publish_will: false,
                session_expiry: None,
                detail: error.to_string(),
            });
        }
        self.fail(error.reason_code(), error.to_string(), out)
    }

    /// Ends the connection for a protocol violation: 5.0 gets a DISCONNECT
    /// with `reason` ([MQTT-4.13.1-1]), 3.x is closed. The will is published.
    pub fn fail(
        &mut self,
        reason: DisconnectReasonCode,
        detail: String,
        out: &mut BytesMut,
    ) -> Event {
        if self.is_connected() && self.version().is_v5() {
            self.write_answer(Packet::Disconnect(Disconnect::new(reason)), &detail, out);
        }
        let publish_will = self.is_connected();
        self.phase = Phase::Closed;
        Event::Close(Close {
            reason,
            publish_will,
            session_expiry: None,
            detail,
        })
    }

    fn handle(
        &mut self,
        packet: Packet,
        session: Option<&mut SessionState>,
        now: Instant,
        out: &mut BytesMut,
    ) -> Option<Event> {
        let Phase::Connected = self.phase else {
            return Some(match packet {
                Packet::Connect(connect) => self.on_connect(*connect, out),
                other => {
                    // [MQTT-3.1.0-1]: the first packet must be CONNECT.
                    self.phase = Phase::Closed;
                    Event::Close(Close {
                        reason: DisconnectReasonCode::ProtocolError,
                        publish_will: false,
                        session_expiry: None,
                        detail: format!("{:?} before CONNECT [MQTT-3.1.0-1]", other.packet_type()),
                    })
                }
            });
        };
        let version = self.version();
        let Some(session) = session else {
            // The session ended under the connection (taken over on another
            // core): nothing more of its input is handled.
            self.phase = Phase::Closed;
            return Some(Event::Close(Close {
                reason: DisconnectReasonCode::SessionTakenOver,
                publish_will: false,
                session_expiry: None,
                detail: "the session was taken over".into(),
            }));
        };
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, session, now, out),
            Packet::PubAck(ack) => self.ack_result(session.on_puback(ack.pid, now, out)),
            Packet::PubRec(rec) => {
                let failed = rec.reason.is_error();
                self.ack_result(session.on_pubrec(rec.pid, failed, now, out))
            }
            Packet::PubComp(comp) => self.ack_result(session.on_pubcomp(comp.pid, now, out)),
            Packet::PubRel(rel) => {
                let mut comp = PubComp::new(rel.pid);
                let mut text = "";
                if !session.on_pubrel(rel.pid) && version.is_v5() {
                    comp.reason = PubRelReasonCode::PacketIdentifierNotFound;
                    text = "no QoS 2 message awaits PUBREL with this packet identifier";
                }
                self.write_answer(Packet::PubComp(comp), text, out);
                None
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, out),
            Packet::Unsubscribe(unsubscribe) => Some(Event::Unsubscribe(unsubscribe)),
            Packet::PingReq => {
                encode_infallible(&Packet::PingResp, version, out);
                None
            }
            Packet::Disconnect(disconnect) => Some(self.on_disconnect(disconnect, out)),
            Packet::Connect(_) => Some(self.fail(
                DisconnectReasonCode::ProtocolError,
                "second CONNECT [MQTT-3.1.0-2]".into(),
                out,
            )),
            Packet::Auth(_) => Some(self.fail(
                DisconnectReasonCode::ProtocolError,
                "AUTH without an authentication method in CONNECT [MQTT-4.12.0-1]".into(),
                out,
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Some(self.fail(
                    DisconnectReasonCode::ProtocolError,
                    format!("{:?} is sent only by servers", packet.packet_type()),
                    out,
                ))
            }
        }
    }

    fn ack_result(&mut self, result: Result<(), AckError>) -> Option<Event> {
        if let Err(error) = result {
            // An acknowledgement for an unknown id is not fatal: the client
            // may be acknowledging a message the broker already dropped.
            tracing::debug!(%error, "ignored acknowledgement");
        }
        None
    }

    fn on_disconnect(&mut self, disconnect: Disconnect, out: &mut BytesMut) -> Event {
        let expiry = disconnect.properties.session_expiry_interval;
        if expiry.is_some_and(|e| e > 0) && self.session_expiry == 0 {
            // [MQTT-3.14.2-2]: a session that was to end on close cannot be
            // extended at DISCONNECT.
            return self.fail(
                DisconnectReasonCode::ProtocolError,
                "DISCONNECT sets a Session Expiry Interval after CONNECT set 0 [MQTT-3.14.2-2]"
                    .into(),
                out,
            );
        }
        self.phase = Phase::Closed;
        if let Some(expiry) = expiry {
            self.session_expiry = expiry.min(self.limits.max_session_expiry);
        }
        Event::Close(Close {
            // Only 0x00 Normal disconnection discards the will
            // ([MQTT-3.14.4-3], [MQTT-3.1.2-8]); 0x04 asks for it, and any
            // error code means the client did not end normally.
            publish_will: disconnect.reason != DisconnectReasonCode::NormalDisconnection,
            reason: disconnect.reason,
            session_expiry: expiry,
            detail: "client sent DISCONNECT".into(),
        })
    }

    /// Ends the connection from the server's side (shutdown, takeover,
    /// keepalive). 5.0 clients get a DISCONNECT with `reason`.
    pub fn server_disconnect(
        &mut self,
        reason: DisconnectReasonCode,
        publish_will: bool,
        out: &mut BytesMut,
    ) -> Close {
        let text = match reason {
            DisconnectReasonCode::KeepAliveTimeout => format!(
                "no packet within 1.5 times the keep alive of {} s",
                self.keep_alive
            ),
            DisconnectReasonCode::SessionTakenOver => {
                "another connection took over the session".into()
            }
            DisconnectReasonCode::ServerShuttingDown => "the broker is shutting down".into(),
            other => problem::describe(other),
        };
        if self.is_connected() && self.version().is_v5() {
            self.write_answer(Packet::Disconnect(Disconnect::new(reason)), &text, out);
        }
        self.phase = Phase::Closed;
        Close {
            reason,
            publish_will,
            session_expiry: None,
            detail: format!("server disconnect: {reason}: {text}"),
        }
    }

    /// Whether reason strings and user properties may be sent on packets
    /// other than PUBLISH, CONNACK and DISCONNECT ([MQTT-3.1.2-29]).
    pub fn may_send_problem_information(&self) -> bool {
        self.request_problem_information
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::broker::session::SessionLimits;
    use crate::codec::{ClientId, QoS, WillProperties};
    use bytes::Bytes;

    pub(super) const V5: ProtocolVersion = ProtocolVersion::V5;
    pub(super) const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

    pub(super) fn bytes_of(packet: &Packet, version: ProtocolVersion) -> BytesMut {
        let mut buf = BytesMut::new();
        packet.encode(version, &mut buf).unwrap();
        buf
    }

    pub(super) fn connect_packet(version: ProtocolVersion, id: &str, keep_alive: u16) -> Connect {
        Connect::new(version, ClientId::try_from(id).unwrap(), keep_alive)
    }

    pub(super) fn decode_out(out: &mut BytesMut, version: ProtocolVersion) -> Vec<Packet> {
        let decoder = Decoder::new(version, u32::MAX);
        let mut packets = Vec::new();
        while let Some(p) = decoder.decode(out).unwrap() {
            packets.push(p);
        }
        packets
    }

    /// Drives a connection through CONNECT and accept; returns it with its
    /// session and the CONNACK it wrote.
    pub(crate) fn connected(
        connect: Connect,
        now: Instant,
    ) -> (Connection, SessionState, Vec<Packet>) {
        connected_with(ConnectionLimits::default(), connect, now)
    }

    /// [`connected`] under `limits`.
    pub(super) fn connected_with(
        limits: ConnectionLimits,
        connect: Connect,
        now: Instant,
    ) -> (Connection, SessionState, Vec<Packet>) {
        let version = connect.protocol;
        let mut conn = Connection::new(limits, now);
        let mut out = BytesMut::new();
        let mut input = bytes_of(&Packet::Connect(Box::new(connect)), version);
        let Received::Event(Event::Connect(request)) =
            conn.receive(&mut input, None, now, &mut out)
        else {
            panic!("CONNECT did not produce a Connect event");
        };
        let mut session = SessionState::new(SessionLimits::default());
        let key = SessionKey {
            core: 0,
            slot: 0,
            generation: 0,
        };
        conn.accept(*request, &mut session, false, key, now, &mut out);
        let acks = decode_out(&mut out, version);
        (conn, session, acks)
    }

    pub(super) fn send(
        conn: &mut Connection,
        session: &mut SessionState,
        packet: Packet,
        now: Instant,
    ) -> (Received, Vec<Packet>) {
        let version = conn.version();
        let mut input = bytes_of(&packet, version);
        let mut out = BytesMut::new();
        let received = conn.receive(&mut input, Some(session), now, &mut out);
        (received, decode_out(&mut out, version))
    }

    /// The Reason String of an answer, if it has one.
    pub(super) fn reason_string_of(packet: &Packet) -> Option<&str> {
        let text = match packet {
            Packet::ConnAck(ack) => &ack.properties.reason_string,
            Packet::PubAck(ack) | Packet::PubRec(ack) => &ack.properties.reason_string,
            Packet::PubRel(ack) | Packet::PubComp(ack) => &ack.properties.reason_string,
            Packet::SubAck(ack) => &ack.properties.reason_string,
            Packet::UnsubAck(ack) => &ack.properties.reason_string,
            Packet::Disconnect(d) => &d.properties.reason_string,
            other => panic!("{other:?} is not an answer"),
        };
        text.as_ref().map(MqttStr::as_str)
    }

    pub(super) fn closed_with(received: Received) -> Close {
        match received {
            Received::Event(Event::Close(close)) => close,
            other => panic!("expected Close, got {other:?}"),
        }
    }

    /// [MQTT-3.1.2-24]: the deadline is 1.5 × keepalive after the last
    /// packet, and any packet moves it.
    #[test]
    fn keepalive_deadline_is_one_and_a_half_periods_after_the_last_packet() {
        let t0 = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V4, "k", 10), t0);
        assert_eq!(
            conn.keepalive_deadline(),
            Some(t0 + Duration::from_secs(15))
        );
        let t1 = t0 + Duration::from_secs(12);
        let (_, answers) = send(&mut conn, &mut session, Packet::PingReq, t1);
        assert_eq!(answers, [Packet::PingResp]);
        assert_eq!(
            conn.keepalive_deadline(),
            Some(t1 + Duration::from_secs(15))
        );
        let (conn, _, _) = connected(connect_packet(V4, "z", 0), t0);
        assert_eq!(
            conn.keepalive_deadline(),
            None,
            "keepalive 0 disables the timer"
        );
    }

    /// [MQTT-3.1.2-10] / [MQTT-3.14.4-3] no will after a DISCONNECT with
    /// 0x00; 5.0 reason 0x04 asks for it, and an error code publishes it
    /// too ([MQTT-3.1.2-8]); [MQTT-3.14.2-2] expiry cannot go from 0 to
    /// non-zero.
    #[test]
    fn disconnect_decides_the_will_and_guards_session_expiry() {
        let now = Instant::now();
        let mut connect = connect_packet(V5, "w", 0);
        connect.will = Some(Will {
            topic: TopicName::try_from("will").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties::default(),
        });
        let (mut conn, mut session, _) = connected(connect.clone(), now);
        let (received, _) = send(
            &mut conn,
            &mut session,
            Packet::Disconnect(Disconnect::default()),
            now,
        );
        assert!(!closed_with(received).publish_will);

        for reason in [
            DisconnectReasonCode::DisconnectWithWillMessage,
            DisconnectReasonCode::UnspecifiedError,
            DisconnectReasonCode::ProtocolError,
            DisconnectReasonCode::MessageRateTooHigh,
        ] {
            let (mut conn, mut session, _) = connected(connect.clone(), now);
            let disconnect = Disconnect::new(reason);
            let (received, _) = send(&mut conn, &mut session, Packet::Disconnect(disconnect), now);
            assert!(closed_with(received).publish_will, "{reason}");
            assert!(conn.take_will().is_some());
        }

        let (mut conn, mut session, _) = connected(connect, now);
        let mut disconnect = Disconnect::default();
        disconnect.properties.session_expiry_interval = Some(60);
        let (received, _) = send(&mut conn, &mut session, Packet::Disconnect(disconnect), now);
        assert_eq!(
            closed_with(received).reason,
            DisconnectReasonCode::ProtocolError
        );
    }
}
