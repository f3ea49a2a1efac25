//! Vane: a thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker.
//!
//! The crate is split along the I/O boundary:
//! - [`codec`] is sans-IO: bytes in, typed packets out, and back. It has no
//!   dependency on glommio, sockets or clocks, so the load generator, the fuzz
//!   targets and the benches all use it directly.
//! - The runtime (feature `runtime`, on by default) owns executors, sockets
//!   and timers, and drives the protocol core.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod broker;
pub mod codec;
#[cfg(feature = "runtime")]
pub mod server;
