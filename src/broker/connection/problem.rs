//! Reason Strings on the broker's error answers to a 5.0 client: every
//! CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK and DISCONNECT with a
//! failure code carries a short human text saying why.
//!
//! Owns: whether a Reason String may go on a packet and how long it may
//! make it. A client that set Request Problem Information to 0 gets one
//! only on CONNACK and DISCONNECT ([MQTT-3.1.2-29]; PUBLISH is never an
//! answer). A Reason String is left out rather than make the packet exceed
//! the client's Maximum Packet Size: [MQTT-3.2.2-19] (CONNACK),
//! [MQTT-3.4.2-2] (PUBACK), [MQTT-3.5.2-2] (PUBREC), [MQTT-3.7.2-2]
//! (PUBCOMP), [MQTT-3.9.2-1] (SUBACK), [MQTT-3.11.2-1] (UNSUBACK),
//! [MQTT-3.14.2-3] (DISCONNECT). The broker sends no User Properties on its
//! answers, so their twins ([MQTT-3.2.2-20], [MQTT-3.4.2-3], ...) hold
//! trivially. Does not own: the texts, which the code that chooses the
//! reason code writes.

use bytes::BytesMut;

use super::Connection;
use crate::broker::session::encode_infallible;
use crate::codec::{MqttStr, Packet};

/// Longest Reason String sent, in bytes: a diagnostic, not a report.
const MAX_REASON_STRING: usize = 160;

impl Connection {
    /// Writes `packet`, an answer to this client, with `text` as its Reason
    /// String when the client is 5.0, allows one on this packet, and the
    /// packet still fits its Maximum Packet Size. 3.x gets `packet` as it
    /// is, and so does an empty `text`.
    pub(super) fn write_answer(&self, mut packet: Packet, text: &str, out: &mut BytesMut) {
        let version = self.version();
        if version.is_v5() && !text.is_empty() && self.may_explain(&packet) {
            set_reason_string(&mut packet, reason_string(text));
            if packet.encoded_len(version) > usize::from(self.answer_size_limit) {
                set_reason_string(&mut packet, None);
            }
        }
        encode_infallible(&packet, version, out);
    }

    /// Whether a Reason String may go on `packet` ([MQTT-3.1.2-29]).
    fn may_explain(&self, packet: &Packet) -> bool {
        matches!(packet, Packet::ConnAck(_) | Packet::Disconnect(_))
            || self.may_send_problem_information()
    }
}

/// The client's Maximum Packet Size as kept by a connection: saturated at
/// 65,535 bytes. Every answer with a Reason String is far smaller, and
/// leaving one out is always allowed, so the saturation costs nothing but
/// keeps an idle connection's record small.
pub(super) fn answer_size_limit(maximum_packet_size: Option<std::num::NonZeroU32>) -> u16 {
    maximum_packet_size.map_or(u16::MAX, |max| u16::try_from(max.get()).unwrap_or(u16::MAX))
}

/// Sets the Reason String of `packet`, one of the packets the broker
/// answers with (others have none).
fn set_reason_string(packet: &mut Packet, text: Option<MqttStr>) {
    let slot = match packet {
        Packet::ConnAck(ack) => &mut ack.properties.reason_string,
        Packet::PubAck(ack) | Packet::PubRec(ack) => &mut ack.properties.reason_string,
        Packet::PubRel(ack) | Packet::PubComp(ack) => &mut ack.properties.reason_string,
        Packet::SubAck(ack) => &mut ack.properties.reason_string,
        Packet::UnsubAck(ack) => &mut ack.properties.reason_string,
        Packet::Disconnect(disconnect) => &mut disconnect.properties.reason_string,
        _ => return,
    };
    *slot = text;
}

/// `text` cut to [`MAX_REASON_STRING`] bytes at a character boundary; None
/// if it is not a valid UTF-8 Encoded String (a NUL from client data).
fn reason_string(text: &str) -> Option<MqttStr> {
    let mut end = text.len().min(MAX_REASON_STRING);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    MqttStr::try_from(&text[..end]).ok()
}

/// A reason code in words, from its name: `QuotaExceeded` is "quota
/// exceeded". For answers whose reason the caller gives only as a code.
pub(super) fn describe(code: impl std::fmt::Debug) -> String {
    let name = format!("{code:?}");
    let mut words = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                words.push(' ');
            }
            words.push(c.to_ascii_lowercase());
        } else {
            words.push(c);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;
    use crate::codec::{
        ConnectProperties, PubAckReasonCode, PubRel, Publish, QosPid, SubAckReasonCode, TopicName,
        UnsubAckReasonCode, WillProperties,
    };
    use std::num::NonZeroU32;

    fn v5_connect(id: &str, properties: ConnectProperties) -> Connect {
        let mut connect = connect_packet(V5, id, 0);
        connect.properties = properties;
        connect
    }

    fn dollar_publish(qos_pid: QosPid) -> Packet {
        let mut publish = Publish::new(TopicName::try_from("$x").unwrap(), Default::default());
        publish.qos_pid = qos_pid;
        Packet::Publish(publish)
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    /// The answers a client gets to `$` PUBLISHes at QoS 1 and 2, a PUBREL
    /// for an unknown id and a SUBACK with a failure, then a second
    /// CONNECT's DISCONNECT 0x82.
    fn error_answers(connect: Connect) -> Vec<Packet> {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect, now);
        let mut answers = Vec::new();
        for packet in [
            dollar_publish(QosPid::AtLeastOnce(pid(1))),
            dollar_publish(QosPid::ExactlyOnce(pid(2))),
            Packet::PubRel(PubRel::new(pid(3))),
        ] {
            answers.extend(send(&mut conn, &mut session, packet, now).1);
        }
        let mut out = BytesMut::new();
        let codes = vec![
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::QuotaExceeded,
        ];
        conn.subscribed(pid(4), Refused::default(), codes, &mut out);
        let codes = vec![UnsubAckReasonCode::NotAuthorized];
        conn.unsubscribed(pid(5), codes, &mut out);
        answers.extend(decode_out(&mut out, V5));
        let second = Packet::Connect(Box::new(connect_packet(V5, "again", 0)));
        answers.extend(send(&mut conn, &mut session, second, now).1);
        answers
    }

    /// Every error answer carries a Reason String (5.0 §3.4.2.2.2,
    /// §3.5.2.2.2, §3.7.2.2.2, §3.9.2.1.2, §3.11.2.1.2, §3.14.2.2.3), and
    /// only error answers do.
    #[test]
    fn error_answers_carry_a_reason_string() {
        let now = Instant::now();
        let (mut conn, mut session, acks) = connected(connect_packet(V5, "ok", 0), now);
        let mut publish = Publish::new(TopicName::try_from("a").unwrap(), Default::default());
        publish.qos_pid = QosPid::ExactlyOnce(pid(1));
        let (received, mut answers) = send(&mut conn, &mut session, Packet::Publish(publish), now);
        let Received::Event(Event::Publish { ack, .. }) = received else {
            panic!("{received:?}")
        };
        let mut out = BytesMut::new();
        conn.publish_routed(ack, None, &mut out);
        conn.subscribed(
            pid(2),
            Refused::default(),
            vec![SubAckReasonCode::GrantedQoS0],
            &mut out,
        );
        conn.unsubscribed(pid(3), vec![UnsubAckReasonCode::Success], &mut out);
        answers.extend(decode_out(&mut out, V5));
        let release = Packet::PubRel(PubRel::new(pid(1)));
        answers.extend(send(&mut conn, &mut session, release, now).1);
        assert_eq!(answers.len(), 4, "{answers:?}");
        for answer in acks.iter().chain(&answers) {
            assert_eq!(reason_string_of(answer), None, "{answer:?}");
        }

        let answers = error_answers(v5_connect("r", ConnectProperties::default()));
        let texts: Vec<_> = answers.iter().map(reason_string_of).collect();
        assert_eq!(answers.len(), 6, "{answers:?}");
        assert!(
            matches!(&answers[0], Packet::PubAck(a) if a.reason == PubAckReasonCode::NotAuthorized)
        );
        assert!(
            matches!(&answers[1], Packet::PubRec(a) if a.reason == PubAckReasonCode::NotAuthorized)
        );
        assert!(
            matches!(&answers[2], Packet::PubComp(a) if a.reason == PubRelReasonCode::PacketIdentifierNotFound)
        );
        assert!(texts.iter().all(Option::is_some), "{answers:?}");
        assert_eq!(texts[3], Some("filter 2: quota exceeded"));
        assert_eq!(texts[4], Some("filter 1: not authorized"));
        assert_eq!(texts[5], Some("second CONNECT [MQTT-3.1.0-2]"));
    }

    /// [MQTT-3.1.2-29]: with Request Problem Information 0, no Reason
    /// String or User Property on anything but PUBLISH, CONNACK and
    /// DISCONNECT; the DISCONNECT still has one.
    #[test]
    fn request_problem_information_0_keeps_them_off_acknowledgements() {
        let properties = ConnectProperties {
            request_problem_information: Some(false),
            ..ConnectProperties::default()
        };
        let answers = error_answers(v5_connect("p", properties));
        assert_eq!(answers.len(), 6, "{answers:?}");
        for answer in &answers[..5] {
            assert_eq!(reason_string_of(answer), None, "[MQTT-3.1.2-29] {answer:?}");
            let user_properties = match answer {
                Packet::PubAck(a) | Packet::PubRec(a) => a.properties.user_properties.len(),
                Packet::PubComp(a) => a.properties.user_properties.len(),
                Packet::SubAck(a) => a.properties.user_properties.len(),
                Packet::UnsubAck(a) => a.properties.user_properties.len(),
                other => panic!("{other:?}"),
            };
            assert_eq!(user_properties, 0, "[MQTT-3.1.2-29] {answer:?}");
        }
        assert!(reason_string_of(&answers[5]).is_some());
    }

    /// [MQTT-3.4.2-2], [MQTT-3.5.2-2], [MQTT-3.7.2-2], [MQTT-3.9.2-1],
    /// [MQTT-3.11.2-1], [MQTT-3.14.2-3]: the Reason String is left out
    /// rather than make the packet exceed the client's Maximum Packet Size;
    /// at exactly its size it stays.
    #[test]
    fn reason_string_is_left_out_rather_than_exceed_maximum_packet_size() {
        let with_max = |max: u32| {
            let properties = ConnectProperties {
                maximum_packet_size: NonZeroU32::new(max),
                ..ConnectProperties::default()
            };
            error_answers(v5_connect("m", properties))
        };
        let full = with_max(u32::MAX);
        for (i, answer) in full.iter().enumerate() {
            let size = answer.encoded_len(V5) as u32;
            let fits = with_max(size);
            assert_eq!(fits[i], *answer, "{size} bytes allowed");
            let tight = with_max(size - 1);
            assert_eq!(
                reason_string_of(&tight[i]),
                None,
                "{size} - 1 bytes allowed"
            );
            assert!(tight[i].encoded_len(V5) < size as usize);
        }
    }

    /// A refused CONNECT's CONNACK explains itself, with Request Problem
    /// Information 0 too ([MQTT-3.1.2-29] exempts CONNACK), but not past
    /// the client's Maximum Packet Size ([MQTT-3.2.2-19]).
    #[test]
    fn refused_connack_carries_a_reason_string() {
        let refusal = |properties: ConnectProperties| {
            let mut connect = v5_connect("w", properties);
            connect.will = Some(Will {
                topic: TopicName::try_from("a/".repeat(40).as_str()).unwrap(),
                payload: Default::default(),
                qos: crate::codec::QoS::AtMostOnce,
                retain: false,
                properties: WillProperties::default(),
            });
            let now = Instant::now();
            let mut conn = Connection::new(ConnectionLimits::default(), now);
            let mut input = bytes_of(&Packet::Connect(Box::new(connect)), V5);
            let mut out = BytesMut::new();
            closed_with(conn.receive(&mut input, None, now, &mut out));
            decode_out(&mut out, V5).remove(0)
        };
        let ack = refusal(ConnectProperties {
            request_problem_information: Some(false),
            ..ConnectProperties::default()
        });
        assert!(
            matches!(&ack, Packet::ConnAck(a) if a.code == ConnectReasonCode::TopicNameInvalid)
        );
        assert_eq!(reason_string_of(&ack), Some("topic deeper than 32 levels"));
        let ack = refusal(ConnectProperties {
            maximum_packet_size: NonZeroU32::new(ack.encoded_len(V5) as u32 - 1),
            ..ConnectProperties::default()
        });
        assert_eq!(reason_string_of(&ack), None, "[MQTT-3.2.2-19]");
    }

    /// [MQTT-3.1.2-28]: the broker sends no Response Information, whether
    /// or not the client asked for it.
    #[test]
    fn no_response_information_asked_or_not() {
        for asked in [None, Some(false), Some(true)] {
            let properties = ConnectProperties {
                request_response_information: asked,
                ..ConnectProperties::default()
            };
            let (_, _, acks) = connected(v5_connect("i", properties), Instant::now());
            let Packet::ConnAck(ack) = &acks[0] else {
                panic!("{acks:?}")
            };
            assert_eq!(ack.properties.response_information, None, "{asked:?}");
        }
    }

    /// The broker's own DISCONNECTs say why; 3.x gets none (it has no
    /// DISCONNECT from the server).
    #[test]
    fn server_disconnect_says_why() {
        let now = Instant::now();
        let (mut conn, _, _) = connected(connect_packet(V5, "k", 10), now);
        let mut out = BytesMut::new();
        let close = conn.server_disconnect(DisconnectReasonCode::KeepAliveTimeout, true, &mut out);
        let answers = decode_out(&mut out, V5);
        assert_eq!(
            reason_string_of(&answers[0]),
            Some("no packet within 1.5 times the keep alive of 10 s")
        );
        assert!(close.detail.contains("keep alive of 10 s"));
        let (mut conn, _, _) = connected(connect_packet(V4, "k", 10), now);
        conn.server_disconnect(DisconnectReasonCode::KeepAliveTimeout, true, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn reason_strings_are_short_valid_strings() {
        assert_eq!(describe(SubAckReasonCode::QuotaExceeded), "quota exceeded");
        assert_eq!(describe(DisconnectReasonCode::ServerBusy), "server busy");
        let long = "é".repeat(MAX_REASON_STRING);
        let cut = reason_string(&long).unwrap();
        assert!(cut.len() <= MAX_REASON_STRING && cut.len() >= MAX_REASON_STRING - 1);
        assert_eq!(reason_string("a\0b"), None, "[MQTT-1.5.4-2]");
    }

    /// 3.x answers have no properties: the same calls write the bare
    /// packets.
    #[test]
    fn v3_answers_are_unchanged() {
        let now = Instant::now();
        let (mut conn, mut session, _) = connected(connect_packet(V4, "3", 0), now);
        let (_, answers) = send(
            &mut conn,
            &mut session,
            dollar_publish(QosPid::AtLeastOnce(pid(1))),
            now,
        );
        assert_eq!(answers, [Packet::PubAck(crate::codec::PubAck::new(pid(1)))]);
        let mut out = BytesMut::new();
        conn.subscribed(
            pid(2),
            Refused::default(),
            vec![SubAckReasonCode::QuotaExceeded],
            &mut out,
        );
        assert_eq!(&out[..], &[0x90, 0x03, 0x00, 0x02, 0x80]);
    }
}
