//! SUBSCRIBE and UNSUBSCRIBE on one connection: the per-filter limits
//! checked before the broker sees a SUBSCRIBE, and the SUBACK and UNSUBACK
//! that answer them.
//!
//! Owns: refusing a filter beyond `max_topic_length` or `max_topic_levels`
//! (SUBACK 0x97 Quota exceeded; 0x80 in 3.x), so that no client can put
//! arbitrarily long or deep filters into every core's subscription
//! replica, and the Reason String of a SUBACK or UNSUBACK with failures.
//! Does not own: registering subscriptions, the subscription count limit or
//! `deny_subscribe` (`crate::server`).

use bytes::BytesMut;

use super::problem::describe;
use super::{Connection, Event};
use crate::codec::{
    Packet, PacketId, SubAck, SubAckReasonCode, Subscribe, TopicFilter, UnsubAck,
    UnsubAckReasonCode,
};

/// Filters of a SUBSCRIBE that the connection refused itself, each with
/// its place in the SUBSCRIBE, its code and why; handed back to
/// [`Connection::subscribed`], which puts them in the SUBACK.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refused(Vec<(usize, SubAckReasonCode, String)>);

impl Refused {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Connection {
    /// Checks each filter of a SUBSCRIBE against the topic limits. The
    /// others go to the broker; if none is left the SUBACK is written now.
    pub(super) fn on_subscribe(
        &mut self,
        mut subscribe: Subscribe,
        out: &mut BytesMut,
    ) -> Option<Event> {
        let mut refused = Refused::default();
        let mut index = 0;
        subscribe.subscriptions.retain(|sub| {
            let place = index;
            index += 1;
            match self.check_filter(&sub.filter) {
                Ok(()) => true,
                Err(detail) => {
                    tracing::debug!(filter = %sub.filter, %detail, "subscription refused");
                    refused
                        .0
                        .push((place, SubAckReasonCode::QuotaExceeded, detail));
                    false
                }
            }
        });
        if subscribe.subscriptions.is_empty() {
            self.subscribed(subscribe.pid, refused, Vec::new(), out);
            return None;
        }
        Some(Event::Subscribe(subscribe, refused))
    }

    /// The limits a topic name has, for the part of `filter` matched
    /// against topic names; a shared subscription's share name is bounded
    /// by the length limit too.
    fn check_filter(&self, filter: &TopicFilter) -> Result<(), String> {
        let max_length = self.limits.max_topic_length;
        let max_levels = self.limits.max_topic_levels;
        let pattern = filter.pattern();
        if pattern.len() > max_length {
            return Err(format!("topic filter longer than {max_length} bytes"));
        }
        if filter
            .shared()
            .is_some_and(|(group, _)| group.len() > max_length)
        {
            return Err(format!("share name longer than {max_length} bytes"));
        }
        if pattern.split('/').count() > max_levels {
            return Err(format!("topic filter deeper than {max_levels} levels"));
        }
        Ok(())
    }

    /// Writes the SUBACK for a handled SUBSCRIBE: `reason_codes` for the
    /// filters the broker handled, in order, with the `refused` ones put
    /// back in their places ([MQTT-3.9.3-1]).
    pub fn subscribed(
        &mut self,
        pid: PacketId,
        refused: Refused,
        reason_codes: Vec<SubAckReasonCode>,
        out: &mut BytesMut,
    ) {
        let total = reason_codes.len() + refused.0.len();
        let mut all = Vec::with_capacity(total);
        let mut why = Vec::new();
        // Both in SUBSCRIBE order: merged in one pass.
        let mut refused = refused.0.into_iter().peekable();
        let mut handled = reason_codes.into_iter();
        for place in 0..total {
            let (code, detail) = match refused.next_if(|(at, ..)| *at == place) {
                Some((_, code, detail)) => (code, Some(detail)),
                None => match handled.next() {
                    Some(code) => (code, code.is_error().then(|| describe(code))),
                    // Fewer codes than filters handled: a caller's bug.
                    None => break,
                },
            };
            why.extend(detail.map(|detail| (place, detail)));
            all.push(code);
        }
        let ack = SubAck {
            pid,
            properties: Default::default(),
            reason_codes: all,
        };
        self.write_answer(Packet::SubAck(ack), &failures(why), out);
    }

    /// Writes the UNSUBACK for a handled UNSUBSCRIBE.
    pub fn unsubscribed(
        &mut self,
        pid: PacketId,
        reason_codes: Vec<UnsubAckReasonCode>,
        out: &mut BytesMut,
    ) {
        let why = (reason_codes.iter().enumerate())
            .filter(|(_, code)| code.is_error())
            .map(|(place, code)| (place, describe(code)))
            .collect();
        let ack = UnsubAck {
            pid,
            properties: Default::default(),
            reason_codes,
        };
        self.write_answer(Packet::UnsubAck(ack), &failures(why), out);
    }
}

/// The Reason String of a SUBACK or UNSUBACK: which filters failed (by
/// their place, from 1) and why, e.g. "filter 2: quota exceeded"; empty
/// when none did.
fn failures(why: Vec<(usize, String)>) -> String {
    let parts: Vec<String> = why
        .into_iter()
        .map(|(place, detail)| format!("filter {}: {detail}", place + 1))
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use crate::codec::{
        SubAckReasonCode, Subscription, SubscriptionOptions, TopicFilter, Unsubscribe,
    };
    use std::time::Instant;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_topic_length: 10,
            max_topic_levels: 3,
            ..ConnectionLimits::default()
        }
    }

    fn subscribe(filters: &[&str]) -> Packet {
        Packet::Subscribe(Subscribe {
            pid: PacketId::new(7).unwrap(),
            properties: Default::default(),
            subscriptions: filters
                .iter()
                .map(|f| Subscription {
                    filter: TopicFilter::try_from(*f).unwrap(),
                    options: SubscriptionOptions::default(),
                })
                .collect(),
        })
    }

    /// A filter beyond `max_topic_length` or `max_topic_levels` (the part
    /// matched against topic names; a share name counts for the length)
    /// is refused with 0x97 Quota exceeded; the others of the same
    /// SUBSCRIBE go to the broker, and the SUBACK has every code in the
    /// SUBSCRIBE's order ([MQTT-3.9.3-1], [MQTT-3.8.4-5]) and says why.
    #[test]
    fn filters_beyond_the_topic_limits_are_refused_alone() {
        let now = Instant::now();
        let connect = connect_packet(V5, "s", 0);
        let (mut conn, mut session, _) = connected_with(limits(), connect, now);
        let filters = [
            "a/b/+",
            "a/b/c/#",
            "abcdefghijk",
            "$share/g/a/b/c",
            "$share/abcdefghijk/a",
        ];
        let (received, answers) = send(&mut conn, &mut session, subscribe(&filters), now);
        assert!(answers.is_empty());
        let Received::Event(Event::Subscribe(subscribe, refused)) = received else {
            panic!("{received:?}")
        };
        let left: Vec<_> = (subscribe.subscriptions.iter())
            .map(|s| s.filter.as_str())
            .collect();
        assert_eq!(left, ["a/b/+", "$share/g/a/b/c"]);
        let mut out = BytesMut::new();
        let handled = vec![SubAckReasonCode::GrantedQoS0, SubAckReasonCode::GrantedQoS1];
        conn.subscribed(subscribe.pid, refused, handled, &mut out);
        let answers = decode_out(&mut out, V5);
        let Packet::SubAck(ack) = &answers[0] else {
            panic!("{answers:?}")
        };
        use SubAckReasonCode::*;
        assert_eq!(
            ack.reason_codes,
            [
                GrantedQoS0,
                QuotaExceeded,
                QuotaExceeded,
                GrantedQoS1,
                QuotaExceeded
            ]
        );
        assert_eq!(
            reason_string_of(&answers[0]),
            Some(
                "filter 2: topic filter deeper than 3 levels; \
                 filter 3: topic filter longer than 10 bytes; \
                 filter 5: share name longer than 10 bytes"
            )
        );
    }

    /// 3.x: the refusal is return code 0x80; a SUBSCRIBE with nothing left
    /// is answered at once, without the broker.
    #[test]
    fn v3_refusals_are_0x80_and_need_no_broker() {
        let now = Instant::now();
        let connect = connect_packet(V4, "s", 0);
        let (mut conn, mut session, _) = connected_with(limits(), connect, now);
        let mut input = bytes_of(&subscribe(&["a/b/c/d", "abcdefghijk"]), V4);
        let mut out = BytesMut::new();
        let received = conn.receive(&mut input, Some(&mut session), now, &mut out);
        assert!(matches!(received, Received::Handled));
        assert_eq!(&out[..], &[0x90, 0x04, 0x00, 0x07, 0x80, 0x80]);
    }

    /// UNSUBSCRIBE needs no check: removing a subscription costs nothing.
    #[test]
    fn unsubscribe_is_not_checked() {
        let now = Instant::now();
        let connect = connect_packet(V5, "u", 0);
        let (mut conn, mut session, _) = connected_with(limits(), connect, now);
        let unsubscribe = Packet::Unsubscribe(Unsubscribe {
            pid: PacketId::new(3).unwrap(),
            properties: Default::default(),
            filters: vec![TopicFilter::try_from("a/b/c/d/e/f").unwrap()],
        });
        let (received, _) = send(&mut conn, &mut session, unsubscribe, now);
        assert!(matches!(received, Received::Event(Event::Unsubscribe(_))));
    }

    /// The broker's own failures (say, the subscription count) and the
    /// connection's merge into one SUBACK and one Reason String.
    #[test]
    fn broker_and_connection_refusals_merge() {
        let now = Instant::now();
        let connect = connect_packet(V5, "m", 0);
        let (mut conn, mut session, _) = connected_with(limits(), connect, now);
        let (received, _) = send(&mut conn, &mut session, subscribe(&["x/y/z/w", "x"]), now);
        let Received::Event(Event::Subscribe(subscribe, refused)) = received else {
            panic!("{received:?}")
        };
        let mut out = BytesMut::new();
        let handled = vec![SubAckReasonCode::QuotaExceeded];
        conn.subscribed(subscribe.pid, refused, handled, &mut out);
        let answers = decode_out(&mut out, V5);
        assert_eq!(
            reason_string_of(&answers[0]),
            Some("filter 1: topic filter deeper than 3 levels; filter 2: quota exceeded")
        );
    }
}
