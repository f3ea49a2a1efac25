//! End-to-end runs against Vane, started in-process per test (two cores)
//! on an ephemeral loopback port: counts must be exact.

mod common;

use common::run;

scenario_tests!(common::start_vane);
