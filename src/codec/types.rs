//! Validated value types that packets are built from: protocol levels, QoS,
//! packet identifiers, MQTT strings, topic names, topic filters and client
//! identifiers.
//!
//! Owns: the rules that make a value valid on its own (UTF-8 per §1.5.4,
//! wildcard placement per §4.7). A value of one of these types is valid by
//! construction, so encoders never re-check it. Does not own: rules that
//! depend on the session (topic aliases, authorisation, `$`-topic policy).

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use thiserror::Error;

/// A packet identifier. Zero is never valid where one is required
/// ([MQTT-2.3.1-1] in 3.1.1, [MQTT-2.2.1-3] in 5.0), so the type cannot hold it.
pub type PacketId = NonZeroU16;

/// The protocol level from CONNECT's variable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V3_1_1 = 4,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5 = 5,
}

impl ProtocolVersion {
    #[inline]
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }

    /// The protocol name CONNECT carries for this level.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    pub fn level(self) -> u8 {
        self as u8
    }
}

/// Quality of service. QoS 3 is not representable ([MQTT-3.3.1-4]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    #[inline]
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A PUBLISH's QoS together with its packet identifier: QoS 0 has none, QoS 1
/// and 2 always have one. No id at QoS 0: [MQTT-2.2.1-2] (5.0) /
/// [MQTT-2.3.1-5] (3.1.1); a non-zero one above it: [MQTT-2.2.1-3] (5.0) /
/// [MQTT-2.3.1-1] (3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosPid {
    AtMostOnce,
    AtLeastOnce(PacketId),
    ExactlyOnce(PacketId),
}

impl QosPid {
    #[inline]
    pub fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    #[inline]
    pub fn pid(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(pid) | QosPid::ExactlyOnce(pid) => Some(pid),
        }
    }

    /// Builds the pair from a QoS and, for QoS 1 and 2, a packet id.
    /// Returns `None` when QoS > 0 and no id was given.
    #[inline]
    pub fn new(qos: QoS, pid: Option<PacketId>) -> Option<QosPid> {
        match (qos, pid) {
            (QoS::AtMostOnce, _) => Some(QosPid::AtMostOnce),
            (QoS::AtLeastOnce, Some(pid)) => Some(QosPid::AtLeastOnce(pid)),
            (QoS::ExactlyOnce, Some(pid)) => Some(QosPid::ExactlyOnce(pid)),
            _ => None,
        }
    }
}

/// Why a string is not a valid MQTT UTF-8 Encoded String.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StrError {
    /// Ill-formed UTF-8, which includes encoded surrogates U+D800..U+DFFF:
    /// [MQTT-1.5.4-1] (5.0), [MQTT-1.5.3-1] (3.1.1).
    #[error(
        "ill-formed UTF-8 or a surrogate code point [MQTT-1.5.4-1] (5.0) / [MQTT-1.5.3-1] (3.1.1)"
    )]
    InvalidUtf8,
    /// U+0000: [MQTT-1.5.4-2] (5.0), [MQTT-1.5.3-2] (3.1.1).
    #[error("contains U+0000 [MQTT-1.5.4-2] (5.0) / [MQTT-1.5.3-2] (3.1.1)")]
    NullCharacter,
    /// Longer than the Two Byte Integer length prefix can express (§1.5.4).
    #[error("longer than 65535 bytes")]
    TooLong,
}

/// Word-at-a-time scans for the common case of short ASCII strings.
mod scan {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// Non-zero iff some byte of `word` is zero (exact as a boolean).
    #[inline(always)]
    fn zero_byte(word: u64) -> u64 {
        word.wrapping_sub(LO) & !word & HI
    }

    /// Non-zero iff some byte of `word` equals `byte`.
    #[inline(always)]
    fn byte_eq(word: u64, byte: u8) -> u64 {
        zero_byte(word ^ (LO * u64::from(byte)))
    }

    #[inline(always)]
    fn plain_word(word: u64, wildcards: bool) -> bool {
        let mut bad = (word & HI) | zero_byte(word);
        if wildcards {
            bad |= byte_eq(word, b'+') | byte_eq(word, b'#');
        }
        bad == 0
    }

    /// True when every byte is ASCII and not NUL (and, with `wildcards`,
    /// neither `+` nor `#`). `false` only means "look closer": the caller
    /// then runs the exact checks.
    #[inline]
    pub(super) fn plain_ascii(bytes: &[u8], wildcards: bool) -> bool {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if !plain_word(word, wildcards) {
                return false;
            }
        }
        let tail = chunks.remainder();
        if tail.is_empty() {
            return true;
        }
        if bytes.len() >= 8 {
            // The last eight bytes, overlapping bytes already checked.
            let last = &bytes[bytes.len() - 8..];
            return plain_word(
                u64::from_le_bytes(last.try_into().expect("8 bytes")),
                wildcards,
            );
        }
        tail.iter()
            .all(|&b| b != 0 && b < 0x80 && !(wildcards && (b == b'+' || b == b'#')))
    }

    #[cfg(test)]
    mod tests {
        use super::plain_ascii;

        fn naive(bytes: &[u8], wildcards: bool) -> bool {
            bytes
                .iter()
                .all(|&b| b != 0 && b < 0x80 && !(wildcards && (b == b'+' || b == b'#')))
        }

        /// Agrees with a byte-by-byte check for every length up to three
        /// words, every position and every byte class.
        #[test]
        fn word_scan_matches_the_byte_scan() {
            let probes = [
                0u8, 1, b'"', b'#', b'$', b'*', b'+', b',', b'a', 0x7f, 0x80, 0xc3, 0xff,
            ];
            for len in 0..=24 {
                for pos in 0..len {
                    for &probe in &probes {
                        for &fill in &[b'a', b'/', 0x7f] {
                            let mut bytes = vec![fill; len];
                            bytes[pos] = probe;
                            for wildcards in [false, true] {
                                assert_eq!(
                                    plain_ascii(&bytes, wildcards),
                                    naive(&bytes, wildcards),
                                    "{bytes:?} wildcards={wildcards}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A UTF-8 Encoded String as MQTT defines it: well-formed UTF-8 without
/// surrogates or U+0000, at most 65,535 bytes. It shares the bytes of the
/// frame it was decoded from; a BOM is kept, never stripped ([MQTT-1.5.4-3]
/// (5.0), [MQTT-1.5.3-3] (3.1.1)).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttStr(Bytes);

impl MqttStr {
    /// Validates `bytes` and wraps them without copying.
    #[inline]
    pub fn from_bytes(bytes: Bytes) -> Result<Self, StrError> {
        if bytes.len() > u16::MAX as usize {
            return Err(StrError::TooLong);
        }
        // Plain ASCII without NUL is valid UTF-8 and passes [MQTT-1.5.4-2];
        // anything else gets the exact checks, which also name the error.
        if !scan::plain_ascii(&bytes, false) {
            // std's validator rejects surrogates, overlong forms and
            // out-of-range code points, which is what [MQTT-1.5.4-1] (5.0) /
            // [MQTT-1.5.3-1] (3.1.1) ask.
            let text = std::str::from_utf8(&bytes).map_err(|_| StrError::InvalidUtf8)?;
            if text.as_bytes().contains(&0) {
                return Err(StrError::NullCharacter);
            }
        }
        Ok(MqttStr(bytes))
    }

    /// An MQTT string from a static `&str`, checked at runtime.
    pub fn from_static(text: &'static str) -> Result<Self, StrError> {
        Self::from_bytes(Bytes::from_static(text.as_bytes()))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validated the bytes as UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer behind the string.
    #[inline]
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<&str> for MqttStr {
    type Error = StrError;
    fn try_from(text: &str) -> Result<Self, StrError> {
        Self::from_bytes(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<String> for MqttStr {
    type Error = StrError;
    fn try_from(text: String) -> Result<Self, StrError> {
        Self::from_bytes(Bytes::from(text))
    }
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a topic name or topic filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error(transparent)]
    Str(#[from] StrError),
    /// "All Topic Names and Topic Filters MUST be at least one character
    /// long" [MQTT-4.7.3-1].
    #[error("empty topic [MQTT-4.7.3-1]")]
    Empty,
    /// "The Topic Name in the PUBLISH packet MUST NOT contain wildcard
    /// characters" [MQTT-3.3.2-2] (both versions); wildcards never appear
    /// in a Topic Name ([MQTT-4.7.0-1] (5.0) / [MQTT-4.7.1-1] (3.1.1)),
    /// which covers the Will Topic; Response Topic: [MQTT-3.3.2-14] (5.0).
    #[error("wildcard in a topic name [MQTT-3.3.2-2]")]
    WildcardInName,
    /// `#` not alone in its level or not last ([MQTT-4.7.1-1] 5.0,
    /// [MQTT-4.7.1-2] 3.1.1).
    #[error(
        "'#' must be a whole level and the last one [MQTT-4.7.1-1] (5.0) / [MQTT-4.7.1-2] (3.1.1)"
    )]
    MisplacedMultiLevelWildcard,
    /// `+` sharing its level with other characters ([MQTT-4.7.1-2] 5.0,
    /// [MQTT-4.7.1-3] 3.1.1).
    #[error("'+' must occupy a whole level [MQTT-4.7.1-2] (5.0) / [MQTT-4.7.1-3] (3.1.1)")]
    MisplacedSingleLevelWildcard,
    /// `$share/{group}/{filter}` (5.0 only) with an empty group
    /// ([MQTT-4.8.2-1]), a group holding `+` or `#`, or no `/` and filter
    /// after the group ([MQTT-4.8.2-2]).
    #[error("malformed shared subscription [MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0)")]
    BadSharedSubscription,
}

/// A topic name: a non-empty MQTT string without wildcards. The one
/// exception, an empty name in a 5.0 PUBLISH that carries a Topic Alias
/// (§3.3.2.3.4), is only built by the decoder and reported by
/// [`TopicName::is_empty`]; the session replaces it before anyone routes it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(MqttStr);

impl TopicName {
    pub fn new(name: MqttStr) -> Result<Self, TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        let bytes = name.as_bytes();
        if !scan::plain_ascii(bytes, true) && bytes.iter().any(|&b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(name))
    }

    /// A decoder's fast path: a non-empty name of plain ASCII without NUL,
    /// `+` or `#`, which every check of [`MqttStr::from_bytes`] and
    /// [`TopicName::new`] accepts, becomes a name after one scan. Anything
    /// else comes back untouched for the full checks.
    #[inline]
    pub(crate) fn from_plain_ascii(bytes: Bytes) -> Result<Self, Bytes> {
        if !bytes.is_empty() && scan::plain_ascii(&bytes, true) {
            Ok(TopicName(MqttStr(bytes)))
        } else {
            Err(bytes)
        }
    }

    /// The placeholder for "use the topic alias" in a 5.0 PUBLISH.
    pub(crate) fn empty_for_alias() -> Self {
        TopicName(MqttStr::default())
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    #[inline]
    pub fn as_mqtt_str(&self) -> &MqttStr {
        &self.0
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True only for the alias placeholder.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Topics starting with `$` are not matched by filters starting with a
    /// wildcard ([MQTT-4.7.2-1], both versions), and clients may not
    /// publish to them here.
    #[inline]
    pub fn is_system(&self) -> bool {
        self.0.as_bytes().first() == Some(&b'$')
    }

    /// The topic's levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(text: &str) -> Result<Self, TopicError> {
        TopicName::new(MqttStr::try_from(text)?)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A topic filter: non-empty, `+` alone in its level, `#` alone in the last
/// level, and a well-formed `$share/{group}/{filter}` when shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(MqttStr);

const SHARE_PREFIX: &str = "$share/";

impl TopicFilter {
    pub fn new(filter: MqttStr) -> Result<Self, TopicError> {
        let text = filter.as_str();
        if text.is_empty() {
            return Err(TopicError::Empty);
        }
        let pattern = match text.strip_prefix(SHARE_PREFIX) {
            Some(rest) => {
                let (group, pattern) = rest
                    .split_once('/')
                    .ok_or(TopicError::BadSharedSubscription)?;
                if group.is_empty() || group.contains(['+', '#']) || pattern.is_empty() {
                    return Err(TopicError::BadSharedSubscription);
                }
                pattern
            }
            None => text,
        };
        validate_filter_levels(pattern)?;
        Ok(TopicFilter(filter))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    #[inline]
    pub fn as_mqtt_str(&self) -> &MqttStr {
        &self.0
    }

    /// For `$share/{group}/{filter}`, the group and the filter.
    pub fn shared(&self) -> Option<(&str, &str)> {
        self.as_str()
            .strip_prefix(SHARE_PREFIX)
            .and_then(|rest| rest.split_once('/'))
    }

    /// The filter that is matched against topic names: without the
    /// `$share/{group}/` prefix.
    pub fn pattern(&self) -> &str {
        self.shared().map_or(self.as_str(), |(_, pattern)| pattern)
    }

    pub fn has_wildcards(&self) -> bool {
        self.pattern().contains(['+', '#'])
    }
}

fn validate_filter_levels(pattern: &str) -> Result<(), TopicError> {
    let mut levels = pattern.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(text: &str) -> Result<Self, TopicError> {
        TopicFilter::new(MqttStr::try_from(text)?)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A client identifier. It may be empty on the wire (the server then assigns
/// one, or rejects it: [MQTT-3.1.3-8] in both versions, with 0x85 in 5.0 and
/// return code 0x02 in 3.1.1); which lengths and characters a
/// server accepts beyond the UTF-8 rules is broker policy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientId(MqttStr);

impl ClientId {
    pub fn new(id: MqttStr) -> Self {
        ClientId(id)
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    #[inline]
    pub fn as_mqtt_str(&self) -> &MqttStr {
        &self.0
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<&str> for ClientId {
    type Error = StrError;
    fn try_from(text: &str) -> Result<Self, StrError> {
        Ok(ClientId(MqttStr::try_from(text)?))
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A Subscription Identifier: 1 to 268,435,455 (5.0 §3.8.2.1.2; zero is a
/// Protocol Error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    pub fn new(value: u32) -> Option<Self> {
        if value > super::wire::VARINT_MAX {
            return None;
        }
        NonZeroU32::new(value).map(SubscriptionId)
    }

    #[inline]
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// Payload Format Indicator (5.0 §3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PayloadFormat {
    #[default]
    Unspecified = 0,
    Utf8 = 1,
}

/// Maximum QoS in CONNACK: only 0 or 1 may be sent (5.0 §3.2.2.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaximumQoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
}

/// A User Property: a UTF-8 string pair (5.0 §1.5.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    pub key: MqttStr,
    pub value: MqttStr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_err(bytes: &'static [u8]) -> StrError {
        MqttStr::from_bytes(Bytes::from_static(bytes)).unwrap_err()
    }

    /// [MQTT-1.5.4-1] (5.0) / [MQTT-1.5.3-1] (3.1.1): ill-formed UTF-8 is rejected.
    #[test]
    fn ill_formed_utf8_is_rejected() {
        assert_eq!(str_err(&[0xc3, 0x28]), StrError::InvalidUtf8);
        // Overlong encoding of '/'.
        assert_eq!(str_err(&[0xc0, 0xaf]), StrError::InvalidUtf8);
    }

    /// [MQTT-1.5.4-1] (5.0) / [MQTT-1.5.3-1] (3.1.1): UTF-16 surrogates
    /// U+D800..U+DFFF are not allowed.
    #[test]
    fn encoded_surrogates_are_rejected() {
        assert_eq!(str_err(&[0xed, 0xa0, 0x80]), StrError::InvalidUtf8);
        assert_eq!(str_err(&[0xed, 0xbf, 0xbf]), StrError::InvalidUtf8);
    }

    /// [MQTT-1.5.4-2] (5.0) / [MQTT-1.5.3-2] (3.1.1): U+0000 is not allowed.
    #[test]
    fn null_character_is_rejected() {
        assert_eq!(str_err(b"a\0b"), StrError::NullCharacter);
    }

    /// [MQTT-1.5.4-3] (5.0) / [MQTT-1.5.3-3] (3.1.1): a BOM is kept, not stripped.
    #[test]
    fn byte_order_mark_is_preserved() {
        let s = MqttStr::from_bytes(Bytes::from_static(b"\xef\xbb\xbfa")).unwrap();
        assert_eq!(s.as_bytes(), b"\xef\xbb\xbfa");
    }

    #[test]
    fn strings_longer_than_the_length_prefix_are_rejected() {
        let long = "x".repeat(65_536);
        assert_eq!(MqttStr::try_from(long).unwrap_err(), StrError::TooLong);
    }

    /// [MQTT-3.3.2-2]: topic names carry no wildcards.
    #[test]
    fn topic_names_reject_wildcards() {
        assert_eq!(
            TopicName::try_from("a/+/b").unwrap_err(),
            TopicError::WildcardInName
        );
        assert_eq!(
            TopicName::try_from("a/#").unwrap_err(),
            TopicError::WildcardInName
        );
        assert!(TopicName::try_from("a/b c/$d").is_ok());
    }

    /// [MQTT-4.7.3-1]: names and filters are at least one character long.
    #[test]
    fn empty_topics_are_rejected() {
        assert_eq!(TopicName::try_from("").unwrap_err(), TopicError::Empty);
        assert_eq!(TopicFilter::try_from("").unwrap_err(), TopicError::Empty);
    }

    /// [MQTT-4.7.1-1] (5.0) / [MQTT-4.7.1-2] (3.1.1): '#' is a whole level
    /// and the last one.
    #[test]
    fn misplaced_multi_level_wildcards_are_rejected() {
        for bad in ["a/#/b", "a#", "#/", "a/b#", "##"] {
            assert_eq!(
                TopicFilter::try_from(bad).unwrap_err(),
                TopicError::MisplacedMultiLevelWildcard,
                "{bad}"
            );
        }
        for good in ["#", "a/#", "/#", "+/#"] {
            assert!(TopicFilter::try_from(good).is_ok(), "{good}");
        }
    }

    /// [MQTT-4.7.1-2] (5.0) / [MQTT-4.7.1-3] (3.1.1): '+' occupies a whole level.
    #[test]
    fn misplaced_single_level_wildcards_are_rejected() {
        for bad in ["a+", "+a", "a/b+/c", "++"] {
            assert_eq!(
                TopicFilter::try_from(bad).unwrap_err(),
                TopicError::MisplacedSingleLevelWildcard,
                "{bad}"
            );
        }
        for good in ["+", "+/+", "/+", "a/+/b", "+/"] {
            assert!(TopicFilter::try_from(good).is_ok(), "{good}");
        }
    }

    /// [MQTT-4.8.2-1], [MQTT-4.8.2-2] (5.0): shared subscription syntax.
    #[test]
    fn shared_subscriptions_are_parsed_and_checked() {
        let f = TopicFilter::try_from("$share/g1/a/+").unwrap();
        assert_eq!(f.shared(), Some(("g1", "a/+")));
        assert_eq!(f.pattern(), "a/+");
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share/g#/a",
        ] {
            assert_eq!(
                TopicFilter::try_from(bad).unwrap_err(),
                TopicError::BadSharedSubscription,
                "{bad}"
            );
        }
        assert_eq!(
            TopicFilter::try_from("$share/g/a#").unwrap_err(),
            TopicError::MisplacedMultiLevelWildcard
        );
    }

    #[test]
    fn qos_pid_pairs_require_an_id_above_qos0() {
        let pid = PacketId::new(7).unwrap();
        assert_eq!(
            QosPid::new(QoS::AtMostOnce, Some(pid)),
            Some(QosPid::AtMostOnce)
        );
        assert_eq!(QosPid::new(QoS::AtLeastOnce, None), None);
        assert_eq!(
            QosPid::new(QoS::ExactlyOnce, Some(pid)).unwrap().pid(),
            Some(pid)
        );
        assert_eq!(QoS::from_bits(3), None);
    }

    #[test]
    fn subscription_ids_are_bounded() {
        assert!(SubscriptionId::new(0).is_none());
        assert!(SubscriptionId::new(268_435_455).is_some());
        assert!(SubscriptionId::new(268_435_456).is_none());
    }
}
