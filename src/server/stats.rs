//! Per-core counters. Each core writes only its own (plain `Cell`s, no
//! atomics, no shared cache lines); a scrape copies them out on the core.
//!
//! Owns: the counters' names and meaning. Does not own: aggregation across
//! cores or exposition (the stats endpoint's job).

use std::cell::Cell;

macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident { $( $(#[$fmeta:meta])* $field:ident, )* }) => {
        $(#[$meta])*
        #[derive(Default, Debug)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: Cell<u64>, )*
        }

        impl $name {
            /// A copy of every counter, by name.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($field), self.$field.get()), )*]
            }
        }
    };
}

counters! {
    /// What one core has done since it started.
    pub struct CoreStats {
        connections_accepted,
        connections_rejected,
        connections_closed,
        protocol_errors,
        messages_received,
        messages_sent,
        wills_published,
        sessions_expired,
        mailbox_messages,
        mailbox_batches,
    }
}
