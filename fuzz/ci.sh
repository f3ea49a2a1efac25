#!/usr/bin/env bash
# Smoke-runs the codec fuzz targets: builds them and fuzzes each for a few
# seconds (FUZZ_SECONDS, default 20) from the committed seeds plus whatever
# corpus is already on the machine. Exits non-zero on any crash, panic,
# failed assertion, leak or timeout that libFuzzer reports.
#
# Needs cargo-fuzz (installed here if missing). The stable toolchain is
# used with RUSTC_BOOTSTRAP=1 for the -Z flags cargo-fuzz passes.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

# -s none: the code under test is safe Rust, so AddressSanitizer adds cost
# and no findings; debug assertions and overflow checks stay on (cargo-fuzz's
# default without -O).
cargo fuzz build -s none

status=0
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target" "seeds/$target"
    echo "fuzz/ci.sh: fuzzing $target for ${seconds}s"
    if ! cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
        -dict=mqtt.dict -max_total_time="$seconds" -print_final_stats=1; then
        echo "fuzz/ci.sh: $target FAILED; the input is under fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
