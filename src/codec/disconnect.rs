//! DISCONNECT (MQTT 5.0 §3.14, 3.1.1 §3.14) and AUTH (5.0 §3.15): a
//! reason code and properties, both omitted when they are the default.
//!
//! Owns: their byte layout. AUTH does not exist before 5.0; the framing
//! layer rejects packet type 15 for 3.x. Does not own: when either is sent.

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::properties::{AuthProperties, DisconnectProperties};
use super::reason::{AuthReasonCode, DisconnectReasonCode};
use super::types::ProtocolVersion;
use super::wire::Reader;
use super::PacketType;

/// A DISCONNECT packet. 3.x has no body, so only the default reason and
/// empty properties survive a 3.x round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason: DisconnectReasonCode,
    pub properties: DisconnectProperties,
}

impl Default for DisconnectReasonCode {
    fn default() -> Self {
        DisconnectReasonCode::NormalDisconnection
    }
}

impl Disconnect {
    pub fn new(reason: DisconnectReasonCode) -> Self {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut out = Disconnect::default();
        if version.is_v5() && !r.is_empty() {
            let code = r.u8("reason code")?;
            out.reason =
                DisconnectReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                })?;
            if !r.is_empty() {
                out.properties = DisconnectProperties::decode(r, PacketType::Disconnect)?;
            }
        }
        r.finish(PacketType::Disconnect)?;
        Ok(out)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            0
        } else if !self.properties.is_empty() {
            1 + self.properties.encoded_len()
        } else if self.reason != DisconnectReasonCode::NormalDisconnection {
            1
        } else {
            0
        }
    }

    pub(crate) fn encode_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        let len = self.body_len(version);
        if len >= 1 {
            buf.put_u8(self.reason.as_u8());
        }
        if len > 1 {
            self.properties.encode(buf);
        }
    }
}

/// An AUTH packet (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: AuthReasonCode,
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut out = Auth {
            reason: AuthReasonCode::Success,
            properties: AuthProperties::default(),
        };
        if !r.is_empty() {
            let code = r.u8("reason code")?;
            out.reason = AuthReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code,
            })?;
            if !r.is_empty() {
                out.properties = AuthProperties::decode(r, PacketType::Auth)?;
            }
        }
        r.finish(PacketType::Auth)?;
        Ok(out)
    }

    pub(crate) fn body_len(&self) -> usize {
        if !self.properties.is_empty() {
            1 + self.properties.encoded_len()
        } else if self.reason != AuthReasonCode::Success {
            1
        } else {
            0
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        let len = self.body_len();
        if len >= 1 {
            buf.put_u8(self.reason.as_u8());
        }
        if len > 1 {
            self.properties.encode(buf);
        }
    }
}
