//! Shared harness for the codec fuzz targets: an allocation-tracking global
//! allocator, streaming decode loops and the round-trip oracle.
//!
//! The rules every target enforces:
//! - decoding never panics;
//! - no single heap allocation made inside a `Decoder::decode` call is larger
//!   than [`alloc_limit`] allows for the bytes that call consumed (see there);
//! - every decoded packet re-encodes at the decoder's level into at most the
//!   bytes it came from, decodes back to the same packet and re-encodes to
//!   identical bytes;
//! - feeding the input in two chunks yields exactly what feeding it whole does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use vane::codec::{DecodeError, Decoder, Packet, ProtocolVersion, MAX_PACKET_SIZE_LIMIT};

/// Wraps the system allocator and records the largest single allocation
/// (or reallocation target) made on this thread while tracking is on.
pub struct TrackingAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // A const-initialised Cell has no destructor and never allocates, so it
    // is safe to touch from inside the allocator.
    static TRACKING: Cell<bool> = const { Cell::new(false) };
}

#[inline]
fn note(size: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Runs `f` with allocation tracking on and returns its result with the
/// largest single allocation it made.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.load(Ordering::Relaxed))
}

/// Fixed allowance for allocations whose size does not depend on the input:
/// the boxed `Connect`/`ConnAck`, `Bytes`' shared header, an error's message.
pub const FIXED_ALLOWANCE: usize = 1024;

/// Decoded bytes may grow by this factor: a 5-byte empty User Property on the
/// wire is a 64-byte `UserProperty` in a `Vec` that may have doubled, a
/// 4-byte SUBSCRIBE entry a 40-byte `Subscription`, and so on.
pub const AMPLIFICATION: usize = 32;

/// The largest single allocation allowed in a decode call that consumed
/// `consumed` bytes.
///
/// The literal rule "nothing larger than the maximum packet size" cannot
/// hold for tiny maximums (a 64-byte limit is smaller than `Box<Connect>`),
/// so the bound is relative to what was actually received instead: an
/// allocation sized from a length field that the bytes do not back (a
/// `with_capacity(remaining_length)` before the body is there, a
/// `Vec::with_capacity(u16 count)`) is caught, because a call that consumed
/// nothing may allocate at most [`FIXED_ALLOWANCE`]. Since a decode never
/// consumes more than the maximum packet size, for every maximum of at least
/// `FIXED_ALLOWANCE + AMPLIFICATION * consumed` this is also stricter than
/// the literal rule.
pub fn alloc_limit(consumed: usize) -> usize {
    FIXED_ALLOWANCE + AMPLIFICATION * consumed
}

/// Maximum packet sizes the first input byte chooses from.
pub const MAX_SIZES: [u32; 4] = [64, 1024, 65_536, MAX_PACKET_SIZE_LIMIT];

/// Picks a decoder from a configuration byte: bits 0-1 the protocol level
/// (3, 4, 5, and 5 again), bits 2-3 the maximum packet size.
pub fn decoder_from(config: u8) -> Decoder {
    let version = match config & 0x03 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    Decoder::new(version, MAX_SIZES[usize::from((config >> 2) & 0x03)])
}

/// What decoding a whole input produced: its packets, then the error that
/// stopped it (if any), and how many input bytes were not consumed.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub packets: Vec<Packet>,
    pub error: Option<DecodeError>,
    pub leftover: usize,
}

/// Feeds `chunks` one after another into one buffer, pre-sized to their
/// total so the harness itself never grows it, and decodes every packet
/// that becomes complete. Checks the allocation bound after every decode
/// call and round-trips every packet.
pub fn decode_stream(decoder: &Decoder, chunks: &[&[u8]]) -> Outcome {
    let total = chunks.iter().map(|c| c.len()).sum();
    let mut buf = BytesMut::with_capacity(total);
    let mut out = Outcome {
        packets: Vec::new(),
        error: None,
        leftover: 0,
    };
    let mut consumed_total = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let (result, largest) = measure(|| decoder.decode(&mut buf));
            let consumed = before - buf.len();
            consumed_total += consumed;
            assert!(
                largest <= alloc_limit(consumed),
                "decode allocated {largest} bytes at once after consuming {consumed} \
                 (limit {}, max packet size {}): {result:?}",
                alloc_limit(consumed),
                decoder.max_packet_size,
            );
            match result {
                Ok(Some(packet)) => {
                    assert!(consumed > 0 && consumed <= decoder.max_packet_size as usize);
                    check_round_trip(decoder.version, &packet, consumed);
                    out.packets.push(packet);
                }
                Ok(None) => {
                    assert_eq!(consumed, 0, "Ok(None) must not consume");
                    break;
                }
                Err(error) => {
                    out.error = Some(error);
                    out.leftover = total - consumed_total;
                    return out;
                }
            }
        }
    }
    out.leftover = total - consumed_total;
    out
}

/// A decoded packet re-encodes into at most `consumed` bytes (the encoder
/// writes the shortest form), decodes back to itself, and encodes again to
/// the very same bytes.
pub fn check_round_trip(version: ProtocolVersion, packet: &Packet, consumed: usize) {
    let mut first = BytesMut::new();
    packet
        .encode(version, &mut first)
        .unwrap_or_else(|e| panic!("decoded packet does not encode: {e}: {packet:?}"));
    assert_eq!(first.len(), packet.encoded_len(version), "{packet:?}");
    assert!(
        first.len() <= consumed,
        "re-encoding grew from {consumed} to {} bytes: {packet:?}",
        first.len()
    );
    let mut again = first.clone();
    let decoded = Decoder::new(version, MAX_PACKET_SIZE_LIMIT)
        .decode(&mut again)
        .unwrap_or_else(|e| panic!("re-encoded packet does not decode: {e}: {packet:?}"))
        .expect("re-encoded packet is incomplete");
    assert!(again.is_empty(), "re-encoded packet has trailing bytes");
    assert_eq!(&decoded, packet, "round trip changed the packet");
    let mut second = BytesMut::new();
    decoded.encode(version, &mut second).unwrap();
    assert_eq!(first, second, "second encoding differs: {packet:?}");
}
