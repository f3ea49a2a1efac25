#!/usr/bin/env bash
# The whole test suite, as README.md gives it. It installs what the tests
# need (Debian packages, Python packages, cargo-fuzz) when they are missing,
# so it runs on a fresh Linux machine with only a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

step "dependencies"
need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v promtool >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
python3 -c 'import paho.mqtt, pytest' 2>/dev/null ||
  python3 -m pip install -q 'paho-mqtt>=2,<3' pytest

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "unit, property and integration tests"
cargo test --workspace --release

step "interoperability scenarios (paho-mqtt, mosquitto clients)"
if [ -x tests/interop/run.sh ]; then
  tests/interop/run.sh
else
  echo "tests/interop/run.sh missing" >&2
  exit 1
fi

step "fuzz smoke run"
fuzz/ci.sh

step "all passed"
