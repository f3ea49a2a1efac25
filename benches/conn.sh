#!/usr/bin/env bash
# Holds as many connections as this machine allows against Vane and then
# Mosquitto, split over two vane-loadgen processes (distinct --id-offset and
# source-address ranges) to show that several processes can share one run.
# Prints each broker's resident memory before and with the connections
# held, memory per connection, and each loadgen's connect rate.
# Two figures per broker: "held" is the RSS halfway through the hold, when
# every connection has been idle for seconds (what an idle connection
# costs); "peak" is the highest RSS seen, which for Vane includes the
# connections still active during the connect ramp (they park after
# executor.park_idle_after_ms).
#   N=9500 per loadgen process (default; two processes), RATE=4000/s each.
#   VANE_CONFIG=file.toml starts Vane with that configuration (for example
#   another executor.park_idle_after_ms).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-9500}
RATE=${RATE:-4000}
HOLD=${HOLD:-6s}
LG=target/release/vane-loadgen
command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.01; done; return 1; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
# The broker's RSS once start-up has finished touching memory: the same
# figure for 0.3 s (at most 5 s).
settled_rss_kib() {
  local last=-1 same=0 r
  for _ in $(seq 1 50); do
    r=$(rss_kib "$1")
    if [ "$r" = "$last" ]; then same=$((same + 1)); else same=0; last=$r; fi
    [ "$same" -ge 3 ] && break
    sleep 0.1
  done
  echo "$last"
}

run_broker() {
  local name=$1 port=$2 pid=$3
  wait_port "$port"
  local before; before=$(settled_rss_kib "$pid")
  local a b; a=$(mktemp); b=$(mktemp)
  $LG conn --port "$port" -n "$N" --connect-rate "$RATE" --duration "$HOLD" --warmup 0s --cores 1 \
      --source 127.0.0.2-127.0.0.9 --client-id-prefix lgA --id-offset 0 --quiet --json >"$a" 2>/dev/null &
  local pa=$!
  $LG conn --port "$port" -n "$N" --connect-rate "$RATE" --duration "$HOLD" --warmup 0s --cores 1 \
      --source 127.0.0.10-127.0.0.17 --client-id-prefix lgB --id-offset "$N" --quiet --json >"$b" 2>/dev/null &
  local pb=$!
  # Sample the broker's memory while both processes hold their connections:
  # the peak, and the sample nearest the middle of the hold (the ramp
  # takes N/RATE seconds, then each loadgen holds for HOLD).
  local peak=0 fds=0 held=0 start; start=$(date +%s%N)
  local mid_ms; mid_ms=$(python3 -c "print(int(1000 * ($N / $RATE + ${HOLD%s} / 2)))")
  while kill -0 $pa 2>/dev/null || kill -0 $pb 2>/dev/null; do
    local r; r=$(rss_kib "$pid"); [ "$r" -gt "$peak" ] && peak=$r
    local now_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$now_ms" -le "$mid_ms" ] && held=$r
    local f; f=$(ls /proc/$pid/fd | wc -l); [ "$f" -gt "$fds" ] && fds=$f
    sleep 0.25
  done
  wait $pa || true; wait $pb || true
  python3 - "$name" "$before" "$held" "$peak" "$fds" "$a" "$b" <<'PY'
import json, sys
name, before, held, peak, fds, a, b = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6], sys.argv[7]
ra, rb = json.load(open(a)), json.load(open(b))
est = ra["connections"]["established"] + rb["connections"]["established"]
failed = ra["connections"]["failed"] + rb["connections"]["failed"]
rate = ra["connections"]["achieved_rate"] + rb["connections"]["achieved_rate"]
per = lambda rss: (rss - before) * 1024 / max(est, 1)
print(f"| {name} | {est} ({failed} failed) | {fds} | {before/1024:.1f} MiB | {held/1024:.1f} MiB | {per(held):,.0f} B | {peak/1024:.1f} MiB | {per(peak):,.0f} B | {rate:,.0f}/s |")
PY
}

echo "| broker | connections held (failed) | broker open fds | RSS before | RSS held (mid-hold) | per idle connection | RSS peak | per connection at peak | connect rate (2 processes) |"
echo "|---|---|---|---|---|---|---|---|---|"
port=$(free_port)
target/release/vane ${VANE_CONFIG:+--config "$VANE_CONFIG"} --listen 127.0.0.1:$port --cores 2 --stats-listen 127.0.0.1:$(free_port) >/dev/null 2>&1 &
vp=$!; run_broker "Vane (2 cores)" "$port" "$vp"; kill $vp; wait $vp 2>/dev/null || true
port=$(free_port); conf=$(mktemp)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$conf"
mosquitto -c "$conf" >/dev/null 2>&1 &
mp=$!; run_broker "Mosquitto 2.0" "$port" "$mp"; kill $mp; wait $mp 2>/dev/null || true
