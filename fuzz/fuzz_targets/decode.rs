//! Streaming decode of arbitrary bytes.
//!
//! Input: byte 0 picks the protocol level and the maximum packet size (see
//! `vane_fuzz::decoder_from`), byte 1 where the rest is split in two chunks,
//! and the rest is the byte stream. The whole stream is decoded packet by
//! packet, then decoded again fed in two chunks; both runs must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vane_fuzz::{decode_stream, decoder_from, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

fuzz_target!(|data: &[u8]| {
    let [config, split, stream @ ..] = data else {
        return;
    };
    let decoder = decoder_from(*config);
    let whole = decode_stream(&decoder, &[stream]);
    let at = usize::from(*split) * (stream.len() + 1) / 256;
    let (head, tail) = stream.split_at(at);
    let chunked = decode_stream(&decoder, &[head, tail]);
    assert_eq!(whole, chunked, "chunked at {at} differs from whole");
});
