//! Wire primitives shared by every packet: the Variable Byte Integer, Two and
//! Four Byte Integers, UTF-8 Encoded Strings and Binary Data (MQTT 5.0 §1.5,
//! 3.1.1 §1.5).
//!
//! Owns: reading those fields out of a frame that is already whole in memory
//! ([`Reader`]), and writing them into a `BytesMut` whose capacity the caller
//! has reserved. Does not own: framing (see [`super::frame`]) or what a field
//! means.

use bytes::{Buf, Bytes, BytesMut};

use super::error::DecodeError;
use super::types::MqttStr;

/// The largest value a Variable Byte Integer can hold (MQTT 5.0 §1.5.5).
pub const VARINT_MAX: u32 = 268_435_455;

/// Number of bytes `value` takes as a Variable Byte Integer.
#[inline]
pub const fn varint_len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Writes `value` as a Variable Byte Integer. `value` must be at most
/// [`VARINT_MAX`]; callers check sizes before they encode.
#[inline]
pub fn put_varint(buf: &mut BytesMut, value: usize) {
    debug_assert!(value <= VARINT_MAX as usize);
    let mut value = value;
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.extend_from_slice(&[byte]);
        if value == 0 {
            break;
        }
    }
}

/// Writes a fixed header (`first` and the remaining length) and the Two
/// Byte Integer after it; for remaining lengths under 16,384 as one write.
#[inline]
pub fn put_fixed_header_u16(buf: &mut BytesMut, first: u8, remaining: usize, next: u16) {
    let [hi, lo] = next.to_be_bytes();
    if remaining < 128 {
        buf.extend_from_slice(&[first, remaining as u8, hi, lo]);
    } else if remaining < 16_384 {
        let low = (remaining & 0x7f) as u8 | 0x80;
        buf.extend_from_slice(&[first, low, (remaining >> 7) as u8, hi, lo]);
    } else {
        buf.extend_from_slice(&[first]);
        put_varint(buf, remaining);
        buf.extend_from_slice(&u16::to_be_bytes(next));
    }
}

/// Result of parsing a Variable Byte Integer from the front of a slice.
pub enum VarintParse {
    /// The value and how many bytes it used.
    Done(u32, usize),
    /// The slice ends before the integer does.
    Incomplete,
}

/// Parses a Variable Byte Integer at the front of `bytes`.
///
/// Rejects more than four bytes (5.0 §1.5.5, 3.1.1 §2.2.3) and any
/// non-minimal encoding: "The encoded value MUST use the minimum number of
/// bytes necessary to represent the value" [MQTT-1.5.5-1] (5.0; 3.1.1 has
/// no such statement, and the stricter check is kept for it too).
#[inline]
pub fn parse_varint(bytes: &[u8]) -> Result<VarintParse, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A continuation byte followed by a zero final byte means the
            // encoder used more bytes than needed.
            if i > 0 && byte == 0 {
                return Err(DecodeError::NonMinimalVarint);
            }
            return Ok(VarintParse::Done(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::VarintTooLong)
    } else {
        Ok(VarintParse::Incomplete)
    }
}

/// Cursor over the body of one whole packet. Every read that runs past the
/// end is a Malformed Packet: the remaining length promised more than the
/// fields hold.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated { field })
        } else {
            Ok(())
        }
    }

    /// Consumes the next byte if it is zero and says whether it did: the
    /// one-byte encoding of a zero Variable Byte Integer, such as an empty
    /// property length.
    #[inline]
    pub fn skip_zero_byte(&mut self) -> bool {
        if self.buf.first() == Some(&0) {
            self.buf.get_u8();
            true
        } else {
            false
        }
    }

    #[inline]
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    #[inline]
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    #[inline]
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    #[inline]
    pub fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf)? {
            VarintParse::Done(value, used) => {
                self.buf.advance(used);
                Ok(value)
            }
            VarintParse::Incomplete => Err(DecodeError::Truncated { field }),
        }
    }

    /// Takes the next `n` bytes without copying.
    #[inline]
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Takes everything that is left without copying.
    #[inline]
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary Data: a Two Byte Integer length followed by that many bytes.
    #[inline]
    pub fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)? as usize;
        self.take(len, field)
    }

    /// UTF-8 Encoded String, validated per [MQTT-1.5.4-1] and [MQTT-1.5.4-2]
    /// (5.0) / [MQTT-1.5.3-1] and [MQTT-1.5.3-2] (3.1.1).
    ///
    /// Always inlined: returned through memory, the result is read back
    /// with wider loads than it was written with, which stalls.
    #[inline(always)]
    pub fn string(&mut self, field: &'static str) -> Result<MqttStr, DecodeError> {
        let raw = self.binary(field)?;
        MqttStr::from_bytes(raw).map_err(|error| DecodeError::InvalidString { field, error })
    }

    /// Fails unless every byte of the body was consumed.
    pub fn finish(&self, packet: super::PacketType) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet,
                count: self.buf.len(),
            })
        }
    }
}

/// Writes a UTF-8 Encoded String (its length fits a u16 by construction).
#[inline]
pub fn put_str(buf: &mut BytesMut, s: &MqttStr) {
    put_binary(buf, s.as_bytes());
}

/// Writes Binary Data. The length must fit a u16; every type that reaches
/// here was checked when it was built.
#[inline]
pub fn put_binary(buf: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= u16::MAX as usize);
    buf.extend_from_slice(&u16::to_be_bytes(bytes.len() as u16));
    buf.extend_from_slice(bytes);
}

/// Encoded size of a UTF-8 string or Binary Data field.
#[inline]
pub const fn prefixed_len(len: usize) -> usize {
    2 + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: usize) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, value);
        buf.to_vec()
    }

    /// The boundary values of MQTT 5.0 §1.5.5, Table 1-1 (3.1.1 Table 2.4).
    #[test]
    fn varint_boundaries_match_the_spec_table() {
        let table: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for &(value, bytes) in table {
            assert_eq!(encode(value), bytes, "encode {value}");
            assert_eq!(varint_len(value), bytes.len());
            match parse_varint(bytes).unwrap() {
                VarintParse::Done(v, used) => {
                    assert_eq!(v as usize, value);
                    assert_eq!(used, bytes.len());
                }
                VarintParse::Incomplete => panic!("{value} parsed as incomplete"),
            }
        }
    }

    /// 5.0 §1.5.5, 3.1.1 §2.2.3: a fifth byte is never valid.
    #[test]
    fn varint_of_five_bytes_is_malformed() {
        let err = parse_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]).err().unwrap();
        assert_eq!(err, DecodeError::VarintTooLong);
    }

    /// [MQTT-1.5.5-1] (5.0): the minimum number of bytes must be used.
    #[test]
    fn non_minimal_varint_is_malformed() {
        let err = parse_varint(&[0x80, 0x00]).err().unwrap();
        assert_eq!(err, DecodeError::NonMinimalVarint);
    }

    #[test]
    fn varint_split_across_reads_is_incomplete_not_an_error() {
        assert!(matches!(
            parse_varint(&[0x80, 0x80]).unwrap(),
            VarintParse::Incomplete
        ));
        assert!(matches!(
            parse_varint(&[]).unwrap(),
            VarintParse::Incomplete
        ));
    }

    #[test]
    fn reader_reports_truncation_with_the_field_name() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert_eq!(
            r.binary("topic").unwrap_err(),
            DecodeError::Truncated { field: "topic" }
        );
    }
}
