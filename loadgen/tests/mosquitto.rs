//! End-to-end runs against Mosquitto, started per test on an ephemeral
//! loopback port: counts must be exact.

mod common;

use common::run;

scenario_tests!(common::start_broker);
