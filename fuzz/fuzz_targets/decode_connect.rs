//! CONNECT bodies across protocol levels.
//!
//! Input: byte 0 picks the maximum packet size (bits 2-3, as in `decode`),
//! the rest is a CONNECT body. It is framed (`0x10`, remaining length) and
//! decoded by decoders at levels 3, 4 and 5: CONNECT carries its own level,
//! so all three must give the same result, and a decoded CONNECT must round
//! trip at every level.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use vane_fuzz::{decode_stream, decoder_from, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

fuzz_target!(|data: &[u8]| {
    let [config, body @ ..] = data else {
        return;
    };
    let mut framed = BytesMut::with_capacity(body.len() + 5);
    framed.put_u8(0x10);
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            framed.put_u8(byte);
            break;
        }
        framed.put_u8(byte | 0x80);
    }
    framed.extend_from_slice(body);
    let config = config & 0x0C;
    let outcomes: Vec<_> = (0..3)
        .map(|level| decode_stream(&decoder_from(config | level), &[&framed]))
        .collect();
    assert_eq!(outcomes[0], outcomes[1], "levels 3 and 4 disagree");
    assert_eq!(outcomes[1], outcomes[2], "levels 4 and 5 disagree");
});
