//! The measurement payload and the clock it is stamped with.
//!
//! Every PUBLISH the load generator sends starts with a fixed 28-byte
//! header: a magic number, the run id, the publisher id, a sequence number
//! and the *intended* send time in nanoseconds. The rest of the payload is
//! filler up to the requested size. Subscribers parse the header to measure
//! end-to-end latency and to detect loss, duplicates and reordering per
//! publisher.
//!
//! The clock is monotonic (`Instant`) but anchored once to the Unix epoch,
//! so stamps from one process are exact relative to each other and stamps
//! from two processes on one host are comparable to within the wall
//! clock's precision.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// "VLG1" in ASCII, little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VLG1");
/// Size of the header at the front of every payload.
pub const HEADER_LEN: usize = 28;

/// What a payload header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run: u32,
    pub publisher: u32,
    pub seq: u64,
    /// Intended send time, nanoseconds since the Unix epoch.
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header and `size - HEADER_LEN` filler bytes (at least the
    /// header). The filler is a fixed pattern, not zeroes, so brokers that
    /// compress cannot cheat much.
    pub fn encode(&self, size: usize, buf: &mut BytesMut) {
        buf.reserve(size.max(HEADER_LEN));
        buf.put_u32_le(MAGIC);
        buf.put_u32_le(self.run);
        buf.put_u32_le(self.publisher);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.sent_ns);
        let mut left = size.saturating_sub(HEADER_LEN);
        const FILL: &[u8; 16] = b"vane-loadgen-pad";
        while left > 0 {
            let n = left.min(FILL.len());
            buf.put_slice(&FILL[..n]);
            left -= n;
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self, size: usize) -> Bytes {
        let mut buf = BytesMut::with_capacity(size.max(HEADER_LEN));
        self.encode(size, &mut buf);
        buf.freeze()
    }

    /// Parses a payload, or returns `None` if it does not carry our header
    /// (another client's message, an empty retained-clear, ...).
    pub fn decode(payload: &[u8]) -> Option<Header> {
        if payload.len() < HEADER_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(payload[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().unwrap());
        if u32_at(0) != MAGIC {
            return None;
        }
        Some(Header {
            run: u32_at(4),
            publisher: u32_at(8),
            seq: u64_at(12),
            sent_ns: u64_at(20),
        })
    }
}

struct Anchor {
    instant: Instant,
    unix_ns: u64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    })
}

/// Monotonic nanoseconds since the Unix epoch (anchored once per process).
#[inline]
pub fn now_ns() -> u64 {
    let a = anchor();
    a.unix_ns + a.instant.elapsed().as_nanos() as u64
}

/// The `Instant` that corresponds to a [`now_ns`] stamp, for sleeping until it.
pub fn instant_at(ns: u64) -> Instant {
    let a = anchor();
    if ns >= a.unix_ns {
        a.instant + Duration::from_nanos(ns - a.unix_ns)
    } else {
        a.instant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_with_padding() {
        let h = Header {
            run: 7,
            publisher: 42,
            seq: 1 << 40,
            sent_ns: 123_456_789,
        };
        for size in [0, HEADER_LEN, 29, 100, 1024] {
            let bytes = h.to_bytes(size);
            assert_eq!(bytes.len(), size.max(HEADER_LEN));
            assert_eq!(Header::decode(&bytes), Some(h));
        }
    }

    #[test]
    fn foreign_payloads_are_rejected() {
        assert_eq!(Header::decode(b""), None);
        assert_eq!(Header::decode(&[0u8; 64]), None);
    }

    #[test]
    fn clock_is_monotonic_and_maps_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let at = instant_at(b + 1_000_000);
        assert!(at > Instant::now());
    }
}
