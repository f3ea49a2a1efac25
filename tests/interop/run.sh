#!/usr/bin/env bash
# Interoperability scenarios against a real Vane: builds the release binary,
# starts it on a free loopback port, waits until it accepts connections,
# runs tests/interop/test_scenarios.py with pytest, and stops it.
#
# Needs: cargo, python3 with paho-mqtt 2.x and pytest, and mosquitto_pub /
# mosquitto_sub (Debian package mosquitto-clients). See README.md here.
# Extra arguments go to pytest (e.g. -k retained -x). SKIP_BUILD=1 uses the
# binary already built.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bin vane
fi
VANE=target/release/vane
CORES=$(( $(nproc) < 2 ? 1 : 2 ))
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
LOG=$(mktemp "${TMPDIR:-/tmp}/vane-interop.XXXXXX")

"$VANE" --config tests/interop/vane-interop.toml --listen "127.0.0.1:$PORT" --cores "$CORES" >"$LOG" 2>&1 &
VANE_PID=$!
stop() {
  status=$?
  kill "$VANE_PID" 2>/dev/null || true
  wait "$VANE_PID" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "--- last lines of the broker log ($LOG)" >&2
    tail -n 40 "$LOG" >&2 || true
  else
    rm -f "$LOG"
  fi
}
trap stop EXIT

# Wait (up to 30 s) until the broker accepts a TCP connection.
python3 - "$PORT" "$VANE_PID" <<'PY'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("vane exited before accepting connections")
        if time.monotonic() > deadline:
            sys.exit("vane did not accept connections within 30 s")
        time.sleep(0.05)
PY

echo "vane (pid $VANE_PID) on 127.0.0.1:$PORT with $CORES cores"
VANE_HOST=127.0.0.1 VANE_PORT=$PORT python3 -m pytest -q -p no:cacheprovider tests/interop "$@"
