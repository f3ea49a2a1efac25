//! PUBLISH from a client: the topic checks, inbound Topic Aliases, the
//! QoS 2 receive state and the acknowledgement owed once the message is
//! routed.
//!
//! Owns: what an inbound PUBLISH is answered with and whether it is routed.
//! Does not own: where it goes (`crate::server`) or the session's QoS 2
//! state itself ([`SessionState`]).

use std::time::Instant;

use bytes::BytesMut;

use super::problem::describe;
use super::{Connection, Event, PendingAck};
use crate::broker::message::Message;
use crate::broker::session::{encode_infallible, SessionState};
use crate::codec::{
    DisconnectReasonCode, Packet, PubAck, PubAckReasonCode, PubRec, Publish, QoS, TopicName,
};

impl Connection {
    pub(super) fn check_topic(&self, topic: &TopicName) -> Result<(), String> {
        if topic.len() > self.limits.max_topic_length {
            return Err(format!(
                "topic longer than {} bytes",
                self.limits.max_topic_length
            ));
        }
        if topic.levels().count() > self.limits.max_topic_levels {
            return Err(format!(
                "topic deeper than {} levels",
                self.limits.max_topic_levels
            ));
        }
        Ok(())
    }

    pub(super) fn on_publish(
        &mut self,
        mut publish: Publish,
        session: &mut SessionState,
        now: Instant,
        out: &mut BytesMut,
    ) -> Option<Event> {
        let version = self.version();
        if version.is_v5() {
            if !publish.properties.subscription_identifiers.is_empty() {
                return Some(self.fail(
                    DisconnectReasonCode::ProtocolError,
                    "PUBLISH from a client with a Subscription Identifier [MQTT-3.3.4-6]".into(),
                    out,
                ));
            }
            if let Some(failure) = self.resolve_topic_alias(&mut publish, out) {
                return Some(failure);
            }
        }
        if let Err(detail) = self.check_topic(&publish.topic) {
            return Some(self.fail(DisconnectReasonCode::TopicNameInvalid, detail, out));
        }
        if publish.topic.is_system() {
            // Clients cannot publish to `$` topics here: acknowledge (5.0
            // with "not authorized") and drop. Before any QoS 2 state is
            // kept: after a PUBREC of 0x80 or more the flow is over, and the
            // next PUBLISH with that id is a new message ([MQTT-4.3.3-9]).
            let ack = match publish.qos_pid.pid() {
                None => PendingAck::None,
                Some(pid) if publish.qos() == QoS::AtLeastOnce => PendingAck::PubAck(pid),
                Some(pid) => PendingAck::PubRec(pid),
            };
            let text = "topics beginning with $ are the broker's: clients cannot publish to them";
            self.acknowledge(ack, PubAckReasonCode::NotAuthorized, text, out);
            return None;
        }
        let ack = match publish.qos_pid.pid() {
            None => PendingAck::None,
            Some(pid) if publish.qos() == QoS::AtLeastOnce => PendingAck::PubAck(pid),
            Some(pid) => {
                if !session.on_inbound_qos2(pid) {
                    // Redelivered before PUBREL: acknowledge, don't route again.
                    encode_infallible(&Packet::PubRec(PubRec::new(pid)), version, out);
                    return None;
                }
                if session.inbound_qos2_len() > usize::from(self.limits.receive_maximum) {
                    // Not accepted, so not kept: a persistent session's
                    // client resends it after reconnecting ([MQTT-4.4.0-1]),
                    // and that must be a new message, not a redelivery.
                    session.on_pubrel(pid);
                    return Some(self.fail(
                        DisconnectReasonCode::ReceiveMaximumExceeded,
                        "more unacknowledged QoS 2 PUBLISHes than Receive Maximum [MQTT-3.3.4-9]".into(),
                        out,
                    ));
                }
                PendingAck::PubRec(pid)
            }
        };
        let message = Message::from_publish(&publish, self.session_key, now);
        Some(Event::Publish { message, ack })
    }

    /// Replaces an inbound Topic Alias by its topic. Returns the closing
    /// event when the alias is invalid.
    fn resolve_topic_alias(&mut self, publish: &mut Publish, out: &mut BytesMut) -> Option<Event> {
        let alias = publish.properties.topic_alias.take()?;
        if alias.get() > self.limits.topic_alias_maximum {
            // [MQTT-3.3.2-9]: above the advertised Topic Alias Maximum.
            return Some(self.fail(
                DisconnectReasonCode::TopicAliasInvalid,
                format!("topic alias {alias} above the maximum [MQTT-3.3.2-9]"),
                out,
            ));
        }
        let index = usize::from(alias.get() - 1);
        if publish.topic.is_empty() {
            let known = self
                .topic_aliases
                .as_ref()
                .and_then(|aliases| aliases.get(index));
            match known.cloned().flatten() {
                Some(topic) => publish.topic = topic,
                None => {
                    return Some(self.fail(
                        DisconnectReasonCode::ProtocolError,
                        format!("topic alias {alias} used before it was set (5.0 §3.3.2.3.4)"),
                        out,
                    ));
                }
            }
        } else {
            let aliases = self.topic_aliases.get_or_insert_with(Default::default);
            if aliases.len() <= index {
                aliases.resize(index + 1, None);
            }
            aliases[index] = Some(publish.topic.clone());
        }
        None
    }

    /// Writes the acknowledgement owed for a routed PUBLISH. 5.0 reports
    /// "no matching subscribers" (0x10) when `reason` says so.
    pub fn publish_routed(
        &mut self,
        ack: PendingAck,
        reason: Option<PubAckReasonCode>,
        out: &mut BytesMut,
    ) {
        let reason = reason.unwrap_or(PubAckReasonCode::Success);
        let text = if reason.is_error() {
            describe(reason)
        } else {
            String::new()
        };
        self.acknowledge(ack, reason, &text, out);
    }

    /// Writes a PUBACK or PUBREC with `reason` (Success for 3.x) and, for
    /// a failure, `text` as its Reason String.
    fn acknowledge(
        &self,
        ack: PendingAck,
        reason: PubAckReasonCode,
        text: &str,
        out: &mut BytesMut,
    ) {
        let reason = if self.version().is_v5() {
            reason
        } else {
            PubAckReasonCode::Success
        };
        let packet = match ack {
            PendingAck::None => return,
            PendingAck::PubAck(pid) => Packet::PubAck(PubAck {
                reason,
                ..PubAck::new(pid)
            }),
            PendingAck::PubRec(pid) => Packet::PubRec(PubRec {
                reason,
                ..PubRec::new(pid)
            }),
        };
        self.write_answer(packet, text, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use crate::codec::{PubAckReasonCode, PubRec, Publish, PublishProperties, QosPid, TopicName};
    use bytes::Bytes;
    use std::num::NonZeroU16;

    fn publish_with_alias(topic: &str, alias: u16) -> Packet {
        let topic = if topic.is_empty() {
            // Decode an empty-topic PUBLISH to get the alias placeholder.
            TopicName::try_from("x").unwrap()
        } else {
            TopicName::try_from(topic).unwrap()
        };
        let mut publish = Publish::new(topic, Bytes::from_static(b"p"));
        publish.properties = PublishProperties {
            topic_alias: NonZeroU16::new(alias),
            ..PublishProperties::default()
        };
        Packet::Publish(publish)
    }

    /// 5.0 §3.3.2.3.4: an alias set with a topic is resolved later; one
    /// above the maximum is DISCONNECT 0x94 ([MQTT-3.3.2-9]).
    #[test]
    fn topic_aliases_resolve_and_are_bounded() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V5, "t", 0), now);
        let (received, _) = send(&mut conn, &mut session, publish_with_alias("a/b", 3), now);
        let Received::Event(Event::Publish { message, .. }) = received else {
            panic!()
        };
        assert_eq!(message.template.topic().as_str(), "a/b");
        // The same alias with an empty topic, as raw bytes: 0x30, len, 0x00 0x00
        // (empty topic), properties: len 3, 0x23 0x00 0x03, payload "q".
        let mut input = BytesMut::from(&[0x30, 0x07, 0, 0, 3, 0x23, 0, 3, b'q'][..]);
        let mut out = BytesMut::new();
        let Received::Event(Event::Publish { message, .. }) =
            conn.receive(&mut input, Some(&mut session), now, &mut out)
        else {
            panic!()
        };
        assert_eq!(message.template.topic().as_str(), "a/b");
        assert_eq!(&message.template.payload()[..], b"q");
        let (received, answers) = send(&mut conn, &mut session, publish_with_alias("c", 65), now);
        assert_eq!(
            closed_with(received).reason,
            DisconnectReasonCode::TopicAliasInvalid
        );
        let [Packet::Disconnect(disconnect)] = &answers[..] else {
            panic!("{answers:?}")
        };
        assert_eq!(disconnect.reason, DisconnectReasonCode::TopicAliasInvalid);
        assert!(reason_string_of(&answers[0]).is_some_and(|t| t.contains("topic alias 65")));
    }

    /// [MQTT-3.3.4-6]: a client may not send a Subscription Identifier.
    #[test]
    fn subscription_identifier_from_a_client_is_a_protocol_error() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V5, "s", 0), now);
        let mut publish = Publish::new(TopicName::try_from("a").unwrap(), Bytes::new());
        publish
            .properties
            .subscription_identifiers
            .push(crate::codec::SubscriptionId::new(4).unwrap());
        let (received, _) = send(&mut conn, &mut session, Packet::Publish(publish), now);
        assert_eq!(
            closed_with(received).reason,
            DisconnectReasonCode::ProtocolError
        );
    }

    /// QoS 2 inbound: the first PUBLISH is routed with a PUBREC owed; a
    /// redelivery before PUBREL only gets PUBREC ([MQTT-4.3.3-10]).
    #[test]
    fn qos2_redelivery_is_acknowledged_but_not_routed() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V4, "q", 0), now);
        let pid = PacketId::new(7).unwrap();
        let mut publish = Publish::new(TopicName::try_from("a").unwrap(), Bytes::from_static(b"x"));
        publish.qos_pid = QosPid::ExactlyOnce(pid);
        let (received, _) = send(
            &mut conn,
            &mut session,
            Packet::Publish(publish.clone()),
            now,
        );
        assert!(
            matches!(received, Received::Event(Event::Publish { ack: PendingAck::PubRec(p), .. }) if p == pid)
        );
        publish.dup = true;
        let (received, answers) = send(&mut conn, &mut session, Packet::Publish(publish), now);
        assert!(matches!(received, Received::Handled));
        assert_eq!(answers, [Packet::PubRec(PubRec::new(pid))]);
        let (_, answers) = send(
            &mut conn,
            &mut session,
            Packet::PubRel(crate::codec::PubRel::new(pid)),
            now,
        );
        assert_eq!(answers, [Packet::PubComp(PubComp::new(pid))]);
    }

    /// [MQTT-4.3.3-9]: a QoS 2 PUBLISH refused with PUBREC 0x87 (a `$`
    /// topic) keeps no state: the next PUBLISH with its packet id is a new
    /// message, routed, not taken for a redelivery.
    #[test]
    fn refused_qos2_publish_leaves_its_packet_id_free() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V5, "r", 0), now);
        let pid = PacketId::new(9).unwrap();
        let mut publish = Publish::new(TopicName::try_from("$SYS/x").unwrap(), Bytes::new());
        publish.qos_pid = QosPid::ExactlyOnce(pid);
        let (received, answers) = send(&mut conn, &mut session, Packet::Publish(publish), now);
        assert!(matches!(received, Received::Handled));
        assert!(
            matches!(&answers[..], [Packet::PubRec(r)] if r.reason == PubAckReasonCode::NotAuthorized)
        );
        assert_eq!(session.inbound_qos2_len(), 0);
        let mut publish = Publish::new(TopicName::try_from("a").unwrap(), Bytes::new());
        publish.qos_pid = QosPid::ExactlyOnce(pid);
        let (received, answers) = send(&mut conn, &mut session, Packet::Publish(publish), now);
        assert!(answers.is_empty(), "{answers:?}");
        assert!(
            matches!(received, Received::Event(Event::Publish { ack: PendingAck::PubRec(p), .. }) if p == pid),
            "[MQTT-4.3.3-9] the reused id was taken for a redelivery"
        );
    }

    /// A QoS 2 PUBLISH beyond the server's Receive Maximum ends the
    /// connection with 0x93 ([MQTT-3.3.4-9]) and is not kept: resent on
    /// the same session after the client's PUBREL for the one before
    /// ([MQTT-4.4.0-1]), it is routed as a new message.
    #[test]
    fn publish_beyond_receive_maximum_is_not_kept() {
        let now = Instant::now();
        let limits = ConnectionLimits {
            receive_maximum: 1,
            ..ConnectionLimits::default()
        };
        let connect = connect_packet(V5, "m", 0);
        let (mut conn, mut session, _) = connected_with(limits, connect.clone(), now);
        let qos2 = |id: u16, dup: bool| {
            let mut publish = Publish::new(TopicName::try_from("a").unwrap(), Bytes::new());
            publish.qos_pid = QosPid::ExactlyOnce(PacketId::new(id).unwrap());
            publish.dup = dup;
            Packet::Publish(publish)
        };
        let (received, _) = send(&mut conn, &mut session, qos2(1, false), now);
        assert!(matches!(received, Received::Event(Event::Publish { .. })));
        let (received, _) = send(&mut conn, &mut session, qos2(2, false), now);
        assert_eq!(
            closed_with(received).reason,
            DisconnectReasonCode::ReceiveMaximumExceeded
        );
        assert_eq!(
            session.inbound_qos2_len(),
            1,
            "only the accepted id is kept"
        );

        // The client reconnects to the session: PUBREL for 1, then 2 again.
        let (mut conn, _, _) = connected_with(limits, connect, now);
        let release = Packet::PubRel(crate::codec::PubRel::new(PacketId::new(1).unwrap()));
        let (_, answers) = send(&mut conn, &mut session, release, now);
        assert_eq!(
            answers,
            [Packet::PubComp(PubComp::new(PacketId::new(1).unwrap()))]
        );
        let (received, answers) = send(&mut conn, &mut session, qos2(2, true), now);
        assert!(answers.is_empty(), "{answers:?}");
        assert!(
            matches!(received, Received::Event(Event::Publish { .. })),
            "the resent PUBLISH was taken for a redelivery and lost"
        );
    }

    /// Clients cannot publish to `$` topics: acknowledged (5.0: 0x87 with
    /// a Reason String), not routed.
    #[test]
    fn publishing_to_dollar_topics_is_refused() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V5, "d", 0), now);
        let pid = PacketId::new(1).unwrap();
        let mut publish = Publish::new(TopicName::try_from("$SYS/x").unwrap(), Bytes::new());
        publish.qos_pid = QosPid::AtLeastOnce(pid);
        let (received, answers) = send(&mut conn, &mut session, Packet::Publish(publish), now);
        assert!(matches!(received, Received::Handled));
        let [Packet::PubAck(ack)] = &answers[..] else {
            panic!("{answers:?}")
        };
        assert_eq!(
            (ack.pid, ack.reason),
            (pid, PubAckReasonCode::NotAuthorized)
        );
        assert!(reason_string_of(&answers[0]).is_some_and(|t| t.contains('$')));
    }
}
