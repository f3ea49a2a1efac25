//! CONNECT on one connection: the checks that refuse it (with the CONNACK
//! code the client's version expects), the keepalive and session expiry
//! the broker grants, and the CONNACK that accepts it, with the 5.0
//! properties that advertise what the broker supports and its limits.
//!
//! Owns: what a CONNECT is answered with. Does not own: the session it
//! resumes (the caller finds it and passes it to `accept`) or client-id
//! ownership across cores (`crate::server`).

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Instant;

use bytes::BytesMut;

use super::problem::{answer_size_limit, describe};
use super::{Close, ConnectRequest, Connection, Event, Phase};
use crate::broker::message::SessionKey;
use crate::broker::session::{encode_infallible, Peer, SessionState};
use crate::codec::{
    ConnAck, ConnAckProperties, Connect, ConnectReasonCode, DisconnectReasonCode, MqttStr, Packet,
    ProtocolVersion,
};

impl Connection {
    pub(super) fn on_connect(&mut self, connect: Connect, out: &mut BytesMut) -> Event {
        let version = connect.protocol;
        self.decoder.version = version;
        // What the answers may carry, the CONNACK first.
        self.request_problem_information = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        self.answer_size_limit = answer_size_limit(connect.properties.maximum_packet_size);
        let refuse =
            |this: &mut Self, code: ConnectReasonCode, detail: String, out: &mut BytesMut| {
                this.refusal = Some(code);
                let ack = ConnAck::new(code, false);
                this.write_answer(Packet::ConnAck(Box::new(ack)), &detail, out);
                this.phase = Phase::Closed;
                Event::Close(Close {
                    reason: DisconnectReasonCode::UnspecifiedError,
                    publish_will: false,
                    session_expiry: None,
                    detail,
                })
            };
        if connect.properties.authentication_data.is_some()
            && connect.properties.authentication_method.is_none()
        {
            // 5.0 §3.1.2.11.10: "It is a Protocol Error to include
            // Authentication Data if there is no Authentication Method."
            return refuse(
                self,
                ConnectReasonCode::ProtocolError,
                "Authentication Data without an Authentication Method (5.0 §3.1.2.11.10)".into(),
                out,
            );
        }
        if connect.properties.authentication_method.is_some() {
            return refuse(
                self,
                ConnectReasonCode::BadAuthenticationMethod,
                "enhanced authentication is not supported (5.0 §4.12)".into(),
                out,
            );
        }
        let empty_id = connect.client_id.is_empty();
        if empty_id
            && (version == ProtocolVersion::V3_1 || (!version.is_v5() && !connect.clean_start))
        {
            // [MQTT-3.1.3-8] (3.1.1): an empty id needs CleanSession=1;
            // MQTT 3.1 requires 1 to 23 characters.
            return refuse(
                self,
                ConnectReasonCode::ClientIdentifierNotValid,
                "empty client id without a clean session [MQTT-3.1.3-8]".into(),
                out,
            );
        }
        if version == ProtocolVersion::V3_1 && connect.client_id.as_str().chars().count() > 23 {
            // MQTT 3.1 §3.1: more than 23 characters is "Identifier rejected".
            return refuse(
                self,
                ConnectReasonCode::ClientIdentifierNotValid,
                "MQTT 3.1 client id longer than 23 characters".into(),
                out,
            );
        }
        if let Some(will) = &connect.will {
            if let Err(detail) = self.check_topic(&will.topic) {
                return refuse(self, ConnectReasonCode::TopicNameInvalid, detail, out);
            }
            if will.topic.is_system() {
                // A client cannot publish to `$` topics, nor through its
                // will: 5.0 0x87, 3.x 0x05, both "not authorized".
                return refuse(
                    self,
                    ConnectReasonCode::NotAuthorized,
                    "will topic begins with $: clients cannot publish to $ topics".into(),
                    out,
                );
            }
        }
        let session_expiry = if version.is_v5() {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        }
        .min(self.limits.max_session_expiry);
        let keep_alive = match self.limits.max_keepalive {
            0 => connect.keep_alive,
            max if connect.keep_alive == 0 || connect.keep_alive > max => {
                if !version.is_v5() {
                    // 3.x has no Server Keep Alive to tell the client a
                    // shorter one, and [MQTT-3.1.2-24] is about the value it
                    // sent: refuse instead (as Mosquitto's max_keepalive).
                    return refuse(
                        self,
                        ConnectReasonCode::ClientIdentifierNotValid,
                        format!(
                            "keep alive {} outside 1..={max} (max_keepalive); 3.x has no Server Keep Alive",
                            connect.keep_alive
                        ),
                        out,
                    );
                }
                // [MQTT-3.2.2-21]: the CONNACK says Server Keep Alive.
                max
            }
            _ => connect.keep_alive,
        };
        self.session_expiry = session_expiry;
        self.keep_alive = keep_alive;
        self.will_delay = connect
            .will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .unwrap_or(0);
        Event::Connect(Box::new(ConnectRequest {
            client_id: connect.client_id.as_mqtt_str().clone(),
            assigned_client_id: empty_id,
            session_expiry,
            keep_alive,
            connect,
        }))
    }

    /// Completes a CONNECT: writes the CONNACK and attaches the session,
    /// which resends what was inflight.
    pub fn accept(
        &mut self,
        request: ConnectRequest,
        session: &mut SessionState,
        session_present: bool,
        key: SessionKey,
        now: Instant,
        out: &mut BytesMut,
    ) {
        let connect = request.connect;
        let version = connect.protocol;
        let mut ack = ConnAck::new(ConnectReasonCode::Success, session_present);
        if version.is_v5() {
            ack.properties =
                self.connack_properties(&connect, &request.client_id, request.assigned_client_id);
            if request.session_expiry != connect.properties.session_expiry_interval.unwrap_or(0) {
                ack.properties.session_expiry_interval = Some(request.session_expiry);
            }
        }
        encode_infallible(&Packet::ConnAck(Box::new(ack)), version, out);
        self.will = connect.will.map(Box::new);
        self.session_key = Some(key);
        self.phase = Phase::Connected;
        self.last_received = now;
        let peer = Peer {
            version,
            receive_maximum: connect
                .properties
                .receive_maximum
                .map_or(u16::MAX, NonZeroU16::get),
            maximum_packet_size: connect
                .properties
                .maximum_packet_size
                .map_or(u32::MAX, NonZeroU32::get),
            topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
        };
        session.attach(peer, now, out);
    }

    /// Refuses a CONNECT with `code` and ends the connection.
    pub fn refuse(&mut self, code: ConnectReasonCode, out: &mut BytesMut) {
        self.refusal = Some(code);
        let ack = ConnAck::new(code, false);
        self.write_answer(Packet::ConnAck(Box::new(ack)), &describe(code), out);
        self.phase = Phase::Closed;
    }

    fn connack_properties(
        &self,
        connect: &Connect,
        client_id: &MqttStr,
        assigned: bool,
    ) -> ConnAckProperties {
        let mut props = ConnAckProperties {
            receive_maximum: NonZeroU16::new(self.limits.receive_maximum),
            maximum_packet_size: NonZeroU32::new(self.limits.max_packet_size),
            topic_alias_maximum: Some(self.limits.topic_alias_maximum),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            ..ConnAckProperties::default()
        };
        if assigned {
            props.assigned_client_identifier = Some(crate::codec::ClientId::new(client_id.clone()));
        }
        if self.keep_alive != connect.keep_alive {
            // [MQTT-3.2.2-21]: the client must use the Server Keep Alive.
            props.server_keep_alive = Some(self.keep_alive);
        }
        props
    }
}

/// The protocol level of a CONNECT at the front of `input`, if one is
/// there: used to answer an unacceptable CONNECT in the client's version.
pub(super) fn connect_level(input: &[u8]) -> Option<u8> {
    if input.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while *input.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*input.get(i + 1)?, *input.get(i + 2)?]));
    input.get(i + 3 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::{NonZeroU16, NonZeroU32};
    use crate::broker::session::SessionLimits;
    use crate::codec::ConnectProperties;

    /// [MQTT-3.2.2-21]: with a server maximum, 5.0 clients are told the
    /// Server Keep Alive and it is what the broker enforces.
    #[test]
    fn server_keep_alive_caps_the_client_value() {
        let now = Instant::now();
        let limits = ConnectionLimits {
            max_keepalive: 30,
            ..ConnectionLimits::default()
        };
        let mut conn = Connection::new(limits, now);
        let mut out = BytesMut::new();
        let mut input = bytes_of(&Packet::Connect(Box::new(connect_packet(V5, "c", 0))), V5);
        let Received::Event(Event::Connect(request)) =
            conn.receive(&mut input, None, now, &mut out)
        else {
            panic!()
        };
        assert_eq!(request.keep_alive, 30);
        let mut session = SessionState::new(SessionLimits::default());
        conn.accept(
            *request,
            &mut session,
            false,
            SessionKey {
                core: 0,
                slot: 0,
                generation: 0,
            },
            now,
            &mut out,
        );
        let Packet::ConnAck(ack) = &decode_out(&mut out, V5)[0] else {
            panic!()
        };
        assert_eq!(ack.properties.server_keep_alive, Some(30));
        assert_eq!(
            conn.keepalive_deadline(),
            Some(now + Duration::from_secs(45))
        );
    }

    /// With `max_keepalive` set, a 3.1/3.1.1 CONNECT whose keepalive is 0
    /// or above it is refused with return code 0x02 (no Server Keep Alive
    /// before 5.0, and [MQTT-3.1.2-24] holds for the client's own value);
    /// one within it is kept as it is.
    #[test]
    fn v3_keepalive_outside_max_keepalive_is_refused() {
        let now = Instant::now();
        let limits = ConnectionLimits {
            max_keepalive: 30,
            ..ConnectionLimits::default()
        };
        for version in [ProtocolVersion::V3_1, V4] {
            for keep_alive in [0, 31, u16::MAX] {
                let mut conn = Connection::new(limits, now);
                let connect = connect_packet(version, "k", keep_alive);
                let mut input = bytes_of(&Packet::Connect(Box::new(connect)), version);
                let mut out = BytesMut::new();
                let close = closed_with(conn.receive(&mut input, None, now, &mut out));
                assert_eq!(
                    &out[..],
                    &[0x20, 0x02, 0x00, 0x02],
                    "{version:?} {keep_alive}"
                );
                assert!(close.detail.contains("max_keepalive"));
            }
            for keep_alive in [1, 30] {
                let (conn, _, acks) =
                    connected_with(limits, connect_packet(version, "k", keep_alive), now);
                assert!(
                    matches!(&acks[0], Packet::ConnAck(a) if a.code == ConnectReasonCode::Success)
                );
                let deadline = now + Duration::from_millis(u64::from(keep_alive) * 1500);
                assert_eq!(conn.keepalive_deadline(), Some(deadline), "[MQTT-3.1.2-24]");
            }
        }
    }

    /// [MQTT-3.1.0-1]: anything before CONNECT closes the connection.
    #[test]
    fn first_packet_must_be_connect() {
        let now = Instant::now();
        let mut conn = Connection::new(ConnectionLimits::default(), now);
        let mut input = bytes_of(&Packet::PingReq, V4);
        let close = closed_with(conn.receive(&mut input, None, now, &mut BytesMut::new()));
        assert_eq!(close.reason, DisconnectReasonCode::ProtocolError);
        assert!(!close.publish_will);
    }

    /// [MQTT-3.1.0-2]: a second CONNECT is a protocol error; 5.0 gets
    /// DISCONNECT 0x82 and the will is published.
    #[test]
    fn second_connect_is_a_protocol_error() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V5, "c", 0), now);
        let (received, answers) = send(
            &mut conn,
            &mut session,
            Packet::Connect(Box::new(connect_packet(V5, "c", 0))),
            now,
        );
        let close = closed_with(received);
        assert_eq!(close.reason, DisconnectReasonCode::ProtocolError);
        assert!(close.publish_will);
        let [Packet::Disconnect(disconnect)] = &answers[..] else {
            panic!("{answers:?}")
        };
        assert_eq!(disconnect.reason, DisconnectReasonCode::ProtocolError);
        assert_eq!(
            reason_string_of(&answers[0]),
            Some("second CONNECT [MQTT-3.1.0-2]")
        );
    }

    /// [MQTT-3.1.2-2]: an unsupported level gets CONNACK 0x01 in 3.1.1 form.
    #[test]
    fn unsupported_level_gets_return_code_1() {
        let now = Instant::now();
        let mut conn = Connection::new(ConnectionLimits::default(), now);
        let mut input =
            BytesMut::from(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 0, 0, 0][..]);
        let mut out = BytesMut::new();
        closed_with(conn.receive(&mut input, None, now, &mut out));
        assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x01]);
    }

    /// [MQTT-3.1.3-8]: 3.1.1 with an empty client id and CleanSession=0 is
    /// refused with 0x02; 5.0 gets an assigned id (5.0 §3.1.3.1).
    #[test]
    fn empty_client_id_rules() {
        let now = Instant::now();
        let mut conn = Connection::new(ConnectionLimits::default(), now);
        let mut persistent = connect_packet(V4, "", 0);
        persistent.clean_start = false;
        let mut input = bytes_of(&Packet::Connect(Box::new(persistent)), V4);
        let mut out = BytesMut::new();
        closed_with(conn.receive(&mut input, None, now, &mut out));
        assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x02]);

        let mut conn = Connection::new(ConnectionLimits::default(), now);
        let mut input = bytes_of(&Packet::Connect(Box::new(connect_packet(V5, "", 0))), V5);
        let Received::Event(Event::Connect(request)) =
            conn.receive(&mut input, None, now, &mut out)
        else {
            panic!()
        };
        assert!(request.assigned_client_id);
    }

    /// 5.0 §4.12: until enhanced authentication exists, an authentication
    /// method is refused with 0x8C.
    #[test]
    fn authentication_method_is_refused_with_0x8c() {
        let now = Instant::now();
        let mut connect = connect_packet(V5, "a", 0);
        connect.properties = ConnectProperties {
            authentication_method: Some(MqttStr::try_from("SCRAM-SHA-1").unwrap()),
            ..ConnectProperties::default()
        };
        let mut conn = Connection::new(ConnectionLimits::default(), now);
        let mut input = bytes_of(&Packet::Connect(Box::new(connect)), V5);
        let mut out = BytesMut::new();
        closed_with(conn.receive(&mut input, None, now, &mut out));
        let Packet::ConnAck(ack) = &decode_out(&mut out, V5)[0] else {
            panic!()
        };
        assert_eq!(ack.code, ConnectReasonCode::BadAuthenticationMethod);
    }

    /// Clients cannot publish to `$` topics, so a will on one is refused:
    /// 5.0 CONNACK 0x87 Not authorized (with a Reason String), 3.x return
    /// code 0x05 Not authorized; the connection closes without a will.
    #[test]
    fn will_on_a_dollar_topic_is_refused() {
        for (version, connack) in [(V5, [0x87u8]), (V4, [0x05])] {
            let now = Instant::now();
            let mut connect = connect_packet(version, "w", 0);
            connect.will = Some(Will {
                topic: crate::codec::TopicName::try_from("$SYS/broker/uptime").unwrap(),
                payload: Default::default(),
                qos: crate::codec::QoS::AtLeastOnce,
                retain: true,
                properties: Default::default(),
            });
            let mut conn = Connection::new(ConnectionLimits::default(), now);
            let mut input = bytes_of(&Packet::Connect(Box::new(connect)), version);
            let mut out = BytesMut::new();
            let close = closed_with(conn.receive(&mut input, None, now, &mut out));
            assert!(!close.publish_will);
            assert!(close.detail.contains("will topic begins with $"));
            assert_eq!(conn.refusal(), Some(ConnectReasonCode::NotAuthorized));
            let answers = decode_out(&mut out.clone(), version);
            let Packet::ConnAck(ack) = &answers[0] else {
                panic!("{answers:?}")
            };
            assert_eq!(ack.code, ConnectReasonCode::NotAuthorized);
            assert_eq!(out[3], connack[0], "{version:?}");
            assert_eq!(version.is_v5(), reason_string_of(&answers[0]).is_some());
        }
    }

    /// 5.0 §3.1.2.11.10: Authentication Data without an Authentication
    /// Method is a Protocol Error: CONNACK 0x82, with a Reason String.
    #[test]
    fn authentication_data_without_method_is_a_protocol_error() {
        let now = Instant::now();
        let mut connect = connect_packet(V5, "a", 0);
        connect.properties.authentication_data = Some(bytes::Bytes::from_static(b"secret"));
        let mut conn = Connection::new(ConnectionLimits::default(), now);
        let mut input = bytes_of(&Packet::Connect(Box::new(connect)), V5);
        let mut out = BytesMut::new();
        let close = closed_with(conn.receive(&mut input, None, now, &mut out));
        assert!(!close.publish_will);
        assert_eq!(conn.refusal(), Some(ConnectReasonCode::ProtocolError));
        let answers = decode_out(&mut out, V5);
        let Packet::ConnAck(ack) = &answers[0] else {
            panic!("{answers:?}")
        };
        assert_eq!(ack.code, ConnectReasonCode::ProtocolError);
        assert!(reason_string_of(&answers[0]).is_some_and(|t| t.contains("Authentication Data")));
    }

    /// [MQTT-3.2.2-2]/5.0 §3.2.2.3: CONNACK advertises what the broker
    /// supports and its limits.
    #[test]
    fn connack_advertises_limits() {
        let now = Instant::now();
        let (_, _, acks) = connected(connect_packet(V5, "l", 0), now);
        let Packet::ConnAck(ack) = &acks[0] else {
            panic!()
        };
        let limits = ConnectionLimits::default();
        let p = &ack.properties;
        assert_eq!(
            p.receive_maximum.map(NonZeroU16::get),
            Some(limits.receive_maximum)
        );
        assert_eq!(
            p.maximum_packet_size.map(NonZeroU32::get),
            Some(limits.max_packet_size)
        );
        assert_eq!(p.topic_alias_maximum, Some(limits.topic_alias_maximum));
        assert_eq!(p.shared_subscription_available, Some(true));
        assert_eq!(p.subscription_identifiers_available, Some(true));
        assert_eq!(p.wildcard_subscription_available, Some(true));
    }

    #[test]
    fn connect_level_is_read_from_a_partial_buffer() {
        assert_eq!(
            connect_level(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 5]),
            Some(5)
        );
        assert_eq!(connect_level(&[0x10, 0x0c, 0, 4, b'M']), None);
        assert_eq!(connect_level(&[0x30, 0x00]), None);
    }
}
