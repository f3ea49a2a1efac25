//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5.0 §3.4–§3.7, 3.1.1 §3.4–§3.7):
//! one layout, a packet id then, in 5.0, an optional reason code and
//! optional properties.
//!
//! Owns: that layout and its shortest encoding (5.0 §3.4.2.1: the reason
//! code and property length may be omitted when they are Success and
//! empty). Does not own: the QoS flows that send them.

use std::num::NonZeroU16;

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::AckProperties;
use super::reason::{PubAckReasonCode, PubRelReasonCode};
use super::types::{PacketId, ProtocolVersion};
use super::wire::Reader;
use super::PacketType;

/// A reason-code family that an acknowledgement can carry.
pub trait AckReason: Copy + Eq + std::fmt::Debug {
    const SUCCESS: Self;
    fn from_u8(value: u8) -> Option<Self>;
    fn as_u8(self) -> u8;
}

impl AckReason for PubAckReasonCode {
    const SUCCESS: Self = PubAckReasonCode::Success;
    fn from_u8(value: u8) -> Option<Self> {
        PubAckReasonCode::from_u8(value)
    }
    fn as_u8(self) -> u8 {
        self as u8
    }
}

impl AckReason for PubRelReasonCode {
    const SUCCESS: Self = PubRelReasonCode::Success;
    fn from_u8(value: u8) -> Option<Self> {
        PubRelReasonCode::from_u8(value)
    }
    fn as_u8(self) -> u8 {
        self as u8
    }
}

/// An acknowledgement in a QoS 1 or QoS 2 flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack<R> {
    pub pid: PacketId,
    /// Always Success in 3.x, which has no reason codes.
    pub reason: R,
    /// Empty unless the protocol is 5.0.
    pub properties: AckProperties,
}

/// PUBACK: the QoS 1 acknowledgement.
pub type PubAck = Ack<PubAckReasonCode>;
/// PUBREC: the first QoS 2 acknowledgement.
pub type PubRec = Ack<PubAckReasonCode>;
/// PUBREL: the QoS 2 release.
pub type PubRel = Ack<PubRelReasonCode>;
/// PUBCOMP: the QoS 2 completion.
pub type PubComp = Ack<PubRelReasonCode>;

impl<R: AckReason> Ack<R> {
    /// A successful acknowledgement without properties.
    pub fn new(pid: PacketId) -> Self {
        Ack {
            pid,
            reason: R::SUCCESS,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(
        packet: PacketType,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let pid = NonZeroU16::new(r.u16("packet identifier")?)
            .ok_or(DecodeError::ZeroPacketId { packet })?;
        let mut ack = Ack::new(pid);
        if version.is_v5() && !r.is_empty() {
            let code = r.u8("reason code")?;
            ack.reason = R::from_u8(code).ok_or(DecodeError::InvalidReasonCode { packet, code })?;
            if !r.is_empty() {
                ack.properties = AckProperties::decode(r, packet)?;
            }
        }
        r.finish(packet)?;
        Ok(ack)
    }

    /// 5.0 omits what is Success and empty; 3.x has only the packet id.
    fn tail(&self, version: ProtocolVersion) -> AckTail {
        if !version.is_v5() {
            AckTail::None
        } else if !self.properties.is_empty() {
            AckTail::ReasonAndProperties
        } else if self.reason != R::SUCCESS {
            AckTail::Reason
        } else {
            AckTail::None
        }
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        match self.tail(version) {
            AckTail::None => 2,
            AckTail::Reason => 3,
            AckTail::ReasonAndProperties => 3 + self.properties.encoded_len(),
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        buf.put_u16(self.pid.get());
        let tail = self.tail(version);
        if tail != AckTail::None {
            buf.put_u8(self.reason.as_u8());
        }
        if tail == AckTail::ReasonAndProperties {
            self.properties.encode(buf);
        }
    }
}

#[derive(PartialEq, Eq)]
enum AckTail {
    None,
    Reason,
    ReasonAndProperties,
}
