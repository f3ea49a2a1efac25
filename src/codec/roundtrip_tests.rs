//! Property tests for the whole codec: the properties every packet and every
//! byte string must have, run on arbitrary valid packets of each protocol
//! level (built by the strategies in `roundtrip_tests/strategies.rs`).
//!
//! (a) A valid packet encodes to exactly `encoded_len` bytes and decodes back
//!     to itself, consuming all of them, at every level.
//! (b) Whatever decodes (random bytes, mutated valid streams) re-encodes into
//!     bytes that decode to the same packet and encode to the same bytes.
//! (c) Decoding never panics, whatever the input and the size limit.
//! (d) Every `PublishTemplate` delivery decodes to the PUBLISH it stands for.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use smallvec::SmallVec;

use super::*;

mod strategies;

use strategies::*;

// ---------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------

fn encode(packet: &Packet, level: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(level, &mut buf)
        .expect("valid packet encodes");
    buf
}

/// (b): a decoded packet re-encodes, decodes to itself and encodes to the
/// same bytes again; the shortest form never grows past what was received.
fn check_stable(
    level: ProtocolVersion,
    packet: &Packet,
    consumed: usize,
) -> Result<(), TestCaseError> {
    let mut first = BytesMut::new();
    prop_assert!(packet.encode(level, &mut first).is_ok(), "{packet:?}");
    prop_assert_eq!(first.len(), packet.encoded_len(level));
    prop_assert!(first.len() <= consumed, "re-encoding grew: {:?}", packet);
    let mut again = first.clone();
    let decoded = Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut again);
    prop_assert_eq!(decoded.as_ref(), Ok(&Some(packet.clone())));
    prop_assert!(again.is_empty());
    let second = encode(&decoded.unwrap().unwrap(), level);
    prop_assert_eq!(first, second);
    Ok(())
}

/// Decodes every packet at the front of `bytes` and checks each one with
/// [`check_stable`]; stops at the first error or incomplete packet.
fn decode_all_stable(decoder: Decoder, bytes: &[u8]) -> Result<usize, TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    let mut count = 0;
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                check_stable(decoder.version, &packet, before - buf.len())?;
                count += 1;
            }
            Ok(None) | Err(_) => return Ok(count),
        }
    }
}

/// Bytes that look like a packet more often than uniform noise does: a
/// plausible first byte, a remaining length that matches the body, and a
/// body of mostly small numbers and topic characters.
fn framed_noise() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![Just(0u8), Just(2u8), 0..16u8];
    let byte = prop_oneof![
        3 => 0..4u8,
        1 => select(&[b'a', b'/', b'+', b'#', 0x26, 0x80, 0xFF][..]),
        2 => any::<u8>(),
    ];
    let body = prop_oneof![2 => vec(byte.clone(), 0..5), 1 => vec(byte, 0..24)];
    (1..16u8, flags, body).prop_map(|(kind, flags, body)| {
        let mut out = vec![kind << 4 | flags, body.len() as u8];
        out.extend(body);
        out
    })
}

fn max_packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![
        select(&[2, 5, 64, 1024, 65_536, MAX_PACKET_SIZE_LIMIT][..]),
        2..512u32,
    ]
}

/// One change to a byte stream.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match *m {
        Mutation::Set(i, b) => {
            let i = at(i);
            bytes[i] = b;
        }
        Mutation::Flip(i, bit) => {
            let i = at(i);
            bytes[i] ^= 1 << bit;
        }
        Mutation::Insert(i, b) => {
            let i = at(i);
            bytes.insert(i, b);
        }
        Mutation::Remove(i) => {
            let i = at(i);
            bytes.remove(i);
        }
        Mutation::Truncate(i) => {
            let i = at(i);
            bytes.truncate(i);
        }
    }
}

/// What `template` should decode to when delivered as `d` at `level`.
fn expected_delivery(original: &Publish, level: ProtocolVersion, d: &Delivery<'_>) -> Publish {
    let properties = if level.is_v5() {
        let p = &original.properties;
        PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: d.message_expiry_interval,
            topic_alias: d.topic_alias,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            content_type: p.content_type.clone(),
            subscription_identifiers: SmallVec::from_slice(d.subscription_identifiers),
            user_properties: p.user_properties.clone(),
        }
    } else {
        PublishProperties::default()
    };
    Publish {
        dup: d.dup && d.qos_pid != QosPid::AtMostOnce,
        qos_pid: d.qos_pid,
        retain: d.retain,
        topic: if d.send_topic {
            original.topic.clone()
        } else {
            TopicName::empty_for_alias()
        },
        properties,
        payload: original.payload.clone(),
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) encode -> decode is the identity, and consumes exactly
    /// `encoded_len` bytes.
    #[test]
    fn valid_packets_round_trip((level, packet) in level_and_packet()) {
        let bytes = encode(&packet, level);
        prop_assert_eq!(bytes.len(), packet.encoded_len(level));
        let mut buf = bytes.clone();
        // Trailing bytes of a next packet must stay in the buffer.
        buf.extend_from_slice(&[0xC0, 0x00]);
        let decoded = Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        prop_assert_eq!(&buf[..], &[0xC0, 0x00][..]);
        // The encoding is canonical: encoding the decoded packet again
        // gives the same bytes.
        check_stable(level, &packet, bytes.len())?;
    }

    /// (a) The size limit is inclusive: a packet of exactly the maximum
    /// decodes, one byte less is rejected before the body is needed.
    #[test]
    fn maximum_packet_size_is_exact((level, packet) in level_and_packet()) {
        let bytes = encode(&packet, level);
        let len = bytes.len() as u32;
        let mut buf = bytes.clone();
        prop_assert_eq!(Decoder::new(level, len).decode(&mut buf), Ok(Some(packet)));
        let header_only = &bytes[..bytes.len().min(5)];
        let mut buf = BytesMut::from(header_only);
        let err = Decoder::new(level, len - 1).decode(&mut buf);
        prop_assert!(
            matches!(err, Err(DecodeError::PacketTooLarge { size, max })
                if size == bytes.len() && max == len - 1),
            "{:?}", err
        );
    }

    /// (a) Streaming: a stream of valid packets fed in two arbitrary chunks
    /// decodes to the same packets.
    #[test]
    fn streams_decode_across_chunk_boundaries(
        (level, packets) in any_level().prop_flat_map(|l| (Just(l), vec(packet(l), 1..5))),
        split in any::<prop::sample::Index>(),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(level, &mut stream).unwrap();
        }
        let at = split.index(stream.len() + 1);
        let decoder = Decoder::new(level, MAX_PACKET_SIZE_LIMIT);
        let mut buf = BytesMut::from(&stream[..at]);
        let mut out = Vec::new();
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            out.push(p);
        }
        buf.extend_from_slice(&stream[at..]);
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            out.push(p);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, packets);
    }

    /// (b), (c) Random bytes: decoding never panics and whatever decodes is
    /// stable.
    #[test]
    fn random_bytes_decode_stably(
        level in any_level(),
        max in max_packet_size(),
        bytes in prop_oneof![1 => vec(any::<u8>(), 0..128), 3 => framed_noise()],
    ) {
        decode_all_stable(Decoder::new(level, max), &bytes)?;
    }

    /// (b), (c) Valid streams with a few bytes changed, inserted, removed or
    /// cut off.
    #[test]
    fn mutated_encodings_decode_stably(
        (level, packets) in any_level().prop_flat_map(|l| (Just(l), vec(packet(l), 1..4))),
        mutations in vec(mutation(), 1..4),
        max in max_packet_size(),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(level, &mut stream).unwrap();
        }
        let mut bytes = stream.to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_all_stable(Decoder::new(level, max), &bytes)?;
        decode_all_stable(Decoder::new(level, MAX_PACKET_SIZE_LIMIT), &bytes)?;
        // The same bytes read at another level must not panic either.
        for other in LEVELS {
            decode_all_stable(Decoder::new(other, MAX_PACKET_SIZE_LIMIT), &bytes)?;
        }
    }

    /// (d) Every delivery of a template decodes to the PUBLISH it stands for,
    /// and is exactly `delivery_len` bytes; header + payload is the whole.
    #[test]
    fn template_deliveries_decode_to_the_expected_publish(
        level in any_level(),
        original in publish(ProtocolVersion::V5),
        plain_topic in topic_name(),
        qos_pid in qos_pid(),
        dup in any::<bool>(),
        retain in any::<bool>(),
        expiry in option::of(any::<u32>()),
        sids in vec(subscription_id(), 0..4),
        alias in option::of(nonzero_u16()),
        send_topic in any::<bool>(),
    ) {
        // The message as received may have used an alias; the template
        // holds the resolved topic name.
        let original = Publish {
            topic: if original.topic.is_empty() { plain_topic } else { original.topic },
            ..original
        };
        let template = PublishTemplate::new(&original);
        let v5 = level.is_v5();
        let d = Delivery {
            qos_pid,
            dup,
            retain,
            message_expiry_interval: expiry.filter(|_| v5),
            subscription_identifiers: if v5 { &sids } else { &[] },
            topic_alias: alias.filter(|_| v5),
            // The name may only be left out when an alias stands for it.
            send_topic: send_topic || !v5 || alias.is_none(),
        };
        let mut whole = BytesMut::new();
        template.encode(level, &d, &mut whole).unwrap();
        prop_assert_eq!(whole.len(), template.delivery_len(level, &d));
        let mut split = BytesMut::new();
        template.encode_header(level, &d, &mut split).unwrap();
        split.extend_from_slice(template.payload());
        prop_assert_eq!(&split, &whole);

        let expected = expected_delivery(&original, level, &d);
        let decoded = Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut whole);
        prop_assert_eq!(decoded, Ok(Some(Packet::Publish(expected.clone()))));
        prop_assert!(whole.is_empty());

        // A bare template is the same message without 5.0 properties.
        let bare = PublishTemplate::bare(original.topic.clone(), original.payload.clone());
        let mut buf = BytesMut::new();
        bare.encode(level, &d, &mut buf).unwrap();
        let want = Publish {
            properties: PublishProperties {
                payload_format_indicator: None,
                response_topic: None,
                correlation_data: None,
                content_type: None,
                user_properties: Vec::new(),
                ..expected.properties
            },
            ..expected
        };
        prop_assert_eq!(
            Decoder::new(level, MAX_PACKET_SIZE_LIMIT).decode(&mut buf),
            Ok(Some(Packet::Publish(want)))
        );
    }
}

/// The strategies do produce every packet type at every level, so the
/// properties above are not vacuous for any of them.
#[test]
fn strategies_cover_every_packet_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::HashSet;

    let mut runner = TestRunner::deterministic();
    for level in LEVELS {
        let strategy = packet(level);
        let mut seen = HashSet::new();
        for _ in 0..2_000 {
            seen.insert(
                strategy
                    .new_tree(&mut runner)
                    .unwrap()
                    .current()
                    .packet_type(),
            );
        }
        let expected = if level.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{level:?}: {seen:?}");
    }
}
