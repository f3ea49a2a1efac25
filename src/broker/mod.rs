//! The broker's sans-IO core: the subscription index, the retained-message
//! store and the per-client session and QoS state machines. Everything here
//! takes events and `Instant`s and returns actions; nothing here touches a
//! socket, a timer or glommio. The runtime (`crate::server`) drives it.

pub mod connection;
pub mod inflight;
pub mod message;
pub mod retained;
pub mod session;
pub mod trie;
