//! Reason codes, one enum per family of packets that may carry them
//! (MQTT 5.0 §2.4 and the tables of §3.2.2.2, §3.4.2.1, §3.5.2.1, §3.6.2.1,
//! §3.7.2.1, §3.9.3, §3.11.3, §3.14.2.1, §3.15.2.1), plus the mapping of
//! CONNACK and SUBACK codes onto the 3.1/3.1.1 return codes.
//!
//! Owns: the numbers and which packet may carry which. Does not own: when a
//! broker chooses one (see the error and session modules).

macro_rules! reason_codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every code of this family, in the spec's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            #[inline]
            pub fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $( $value => Some($name::$variant), )+
                    _ => None,
                }
            }

            #[inline]
            pub fn as_u8(self) -> u8 {
                self as u8
            }

            /// True for codes 0x80 and above (5.0 §2.4: failure).
            #[inline]
            pub fn is_error(self) -> bool {
                (self as u8) >= 0x80
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:?} (0x{:02X})", self, *self as u8)
            }
        }
    };
}

reason_codes! {
    /// CONNACK reason codes (5.0 §3.2.2.2).
    pub enum ConnectReasonCode {
        Success = 0x00,
        UnspecifiedError = 0x80,
        MalformedPacket = 0x81,
        ProtocolError = 0x82,
        ImplementationSpecificError = 0x83,
        UnsupportedProtocolVersion = 0x84,
        ClientIdentifierNotValid = 0x85,
        BadUserNameOrPassword = 0x86,
        NotAuthorized = 0x87,
        ServerUnavailable = 0x88,
        ServerBusy = 0x89,
        Banned = 0x8A,
        BadAuthenticationMethod = 0x8C,
        TopicNameInvalid = 0x90,
        PacketTooLarge = 0x95,
        QuotaExceeded = 0x97,
        PayloadFormatInvalid = 0x99,
        RetainNotSupported = 0x9A,
        QoSNotSupported = 0x9B,
        UseAnotherServer = 0x9C,
        ServerMoved = 0x9D,
        ConnectionRateExceeded = 0x9F,
    }
}

impl ConnectReasonCode {
    /// The 3.1/3.1.1 CONNACK return code (3.1.1 §3.2.2.3) that says the same,
    /// or the nearest one: codes 3.x lacks collapse onto "server unavailable"
    /// (transient) or "not authorized" (permanent).
    pub fn to_v3(self) -> u8 {
        use ConnectReasonCode::*;
        match self {
            Success => 0x00,
            UnsupportedProtocolVersion => 0x01,
            ClientIdentifierNotValid => 0x02,
            BadUserNameOrPassword | BadAuthenticationMethod => 0x04,
            NotAuthorized | Banned => 0x05,
            _ => 0x03,
        }
    }

    /// Reads a 3.1/3.1.1 return code; 6..=255 are reserved.
    pub fn from_v3(code: u8) -> Option<Self> {
        use ConnectReasonCode::*;
        Some(match code {
            0x00 => Success,
            0x01 => UnsupportedProtocolVersion,
            0x02 => ClientIdentifierNotValid,
            0x03 => ServerUnavailable,
            0x04 => BadUserNameOrPassword,
            0x05 => NotAuthorized,
            _ => return None,
        })
    }
}

reason_codes! {
    /// PUBACK and PUBREC reason codes (5.0 §3.4.2.1, §3.5.2.1).
    pub enum PubAckReasonCode {
        Success = 0x00,
        NoMatchingSubscribers = 0x10,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicNameInvalid = 0x90,
        PacketIdentifierInUse = 0x91,
        QuotaExceeded = 0x97,
        PayloadFormatInvalid = 0x99,
    }
}

reason_codes! {
    /// PUBREL and PUBCOMP reason codes (5.0 §3.6.2.1, §3.7.2.1).
    pub enum PubRelReasonCode {
        Success = 0x00,
        PacketIdentifierNotFound = 0x92,
    }
}

reason_codes! {
    /// SUBACK reason codes (5.0 §3.9.3); 3.1.1 uses 0x00..0x02 and 0x80.
    pub enum SubAckReasonCode {
        GrantedQoS0 = 0x00,
        GrantedQoS1 = 0x01,
        GrantedQoS2 = 0x02,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicFilterInvalid = 0x8F,
        PacketIdentifierInUse = 0x91,
        QuotaExceeded = 0x97,
        SharedSubscriptionsNotSupported = 0x9E,
        SubscriptionIdentifiersNotSupported = 0xA1,
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

impl SubAckReasonCode {
    /// The granted-QoS code for `qos`.
    pub fn granted(qos: crate::codec::QoS) -> Self {
        match qos {
            crate::codec::QoS::AtMostOnce => SubAckReasonCode::GrantedQoS0,
            crate::codec::QoS::AtLeastOnce => SubAckReasonCode::GrantedQoS1,
            crate::codec::QoS::ExactlyOnce => SubAckReasonCode::GrantedQoS2,
        }
    }

    /// 3.1.1 return codes: granted QoS, or 0x80 for any failure.
    pub fn to_v3(self) -> u8 {
        if self.is_error() {
            0x80
        } else {
            self as u8
        }
    }

    pub fn from_v3(code: u8) -> Option<Self> {
        match code {
            0x00..=0x02 | 0x80 => Self::from_u8(code),
            _ => None,
        }
    }
}

reason_codes! {
    /// UNSUBACK reason codes (5.0 §3.11.3).
    pub enum UnsubAckReasonCode {
        Success = 0x00,
        NoSubscriptionExisted = 0x11,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicFilterInvalid = 0x8F,
        PacketIdentifierInUse = 0x91,
    }
}

reason_codes! {
    /// DISCONNECT reason codes (5.0 §3.14.2.1). The default is what a
    /// DISCONNECT without a reason code means.
    #[derive(Default)]
    pub enum DisconnectReasonCode {
        #[default]
        NormalDisconnection = 0x00,
        DisconnectWithWillMessage = 0x04,
        UnspecifiedError = 0x80,
        MalformedPacket = 0x81,
        ProtocolError = 0x82,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        ServerBusy = 0x89,
        ServerShuttingDown = 0x8B,
        KeepAliveTimeout = 0x8D,
        SessionTakenOver = 0x8E,
        TopicFilterInvalid = 0x8F,
        TopicNameInvalid = 0x90,
        ReceiveMaximumExceeded = 0x93,
        TopicAliasInvalid = 0x94,
        PacketTooLarge = 0x95,
        MessageRateTooHigh = 0x96,
        QuotaExceeded = 0x97,
        AdministrativeAction = 0x98,
        PayloadFormatInvalid = 0x99,
        RetainNotSupported = 0x9A,
        QoSNotSupported = 0x9B,
        UseAnotherServer = 0x9C,
        ServerMoved = 0x9D,
        SharedSubscriptionsNotSupported = 0x9E,
        ConnectionRateExceeded = 0x9F,
        MaximumConnectTime = 0xA0,
        SubscriptionIdentifiersNotSupported = 0xA1,
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

reason_codes! {
    /// AUTH reason codes (5.0 §3.15.2.1).
    pub enum AuthReasonCode {
        Success = 0x00,
        ContinueAuthentication = 0x18,
        ReAuthenticate = 0x19,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_byte() {
        for &code in DisconnectReasonCode::ALL {
            assert_eq!(DisconnectReasonCode::from_u8(code.as_u8()), Some(code));
        }
        for &code in ConnectReasonCode::ALL {
            assert_eq!(ConnectReasonCode::from_u8(code.as_u8()), Some(code));
        }
        assert_eq!(PubAckReasonCode::from_u8(0x01), None);
    }

    /// 3.1.1 §3.2.2.3: the six return codes map both ways.
    #[test]
    fn connack_codes_map_onto_v3_return_codes() {
        for code in 0..=5u8 {
            assert_eq!(ConnectReasonCode::from_v3(code).unwrap().to_v3(), code);
        }
        assert_eq!(ConnectReasonCode::from_v3(6), None);
        assert_eq!(ConnectReasonCode::Banned.to_v3(), 0x05);
        assert_eq!(ConnectReasonCode::ServerBusy.to_v3(), 0x03);
    }

    #[test]
    fn suback_failures_collapse_to_0x80_in_v3() {
        assert_eq!(SubAckReasonCode::QuotaExceeded.to_v3(), 0x80);
        assert_eq!(SubAckReasonCode::GrantedQoS2.to_v3(), 0x02);
        assert_eq!(SubAckReasonCode::from_v3(0x03), None);
    }
}
