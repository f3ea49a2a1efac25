#!/usr/bin/env bash
# Maximum-throughput rows of the broker issue's performance table, run
# against Vane and Mosquitto in one go with the same loadgen settings:
#   fan-in   8 publishers -> 1 subscriber on t/#, QoS 0
#   fan-out  1 publisher  -> 16 subscribers, QoS 0
#   pairs    16 publisher -> subscriber pairs, QoS 0 and QoS 1
# Publishers send as fast as their window allows (--rate 0). The broker is
# pinned to BROKER_CPUS and loadgen to LOADGEN_CPUS (taskset), so on a
# 2-core machine each gets one core. Prints one markdown table row per
# scenario with delivered msg/s for each broker and the Vane/Mosquitto ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
BROKER_CPUS=${BROKER_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
LG=target/release/vane-loadgen
command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 500); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.01; done; return 1; }

start_vane() { taskset -c "$BROKER_CPUS" target/release/vane --listen 127.0.0.1:$1 --cores 1 --stats-listen 127.0.0.1:$(free_port) >/dev/null 2>&1 & echo $!; }
start_mosquitto() {
  local conf; conf=$(mktemp); printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\n' "$1" > "$conf"
  taskset -c "$BROKER_CPUS" mosquitto -c "$conf" >/dev/null 2>&1 & echo $!; }

rate() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["delivery"]; print("%.0f %d" % (d["achieved_rate"], d["lost"] or 0))' "$1"; }

declare -A ARGS=(
  [fan-in-q0]="fan-in --publishers 8 --qos 0"
  [fan-out-q0]="fan-out --subscribers 16 --qos 0"
  [pairs-q0]="pairs --publishers 16 --qos 0"
  [pairs-q1]="pairs --publishers 16 --qos 1"
)
echo "| scenario | Vane msg/s delivered (lost) | Mosquitto msg/s delivered (lost) | Vane/Mosquitto |"
echo "|---|---|---|---|"
for name in fan-in-q0 fan-out-q0 pairs-q0 pairs-q1; do
  out=()
  for broker in vane mosquitto; do
    port=$(free_port); pid=$(start_$broker "$port"); wait_port "$port"
    json=$(mktemp)
    taskset -c "$LOADGEN_CPUS" $LG ${ARGS[$name]} --port "$port" --rate 0 --cores 1 \
      --warmup 1s --duration "$DURATION" --drain 3s --quiet --json >"$json" 2>/dev/null || true
    out+=("$(rate "$json")")
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  read -r v vl <<<"${out[0]}"; read -r m ml <<<"${out[1]}"
  echo "| $name | $v ($vl) | $m ($ml) | $(python3 -c "print(f'{$v/max($m,1):.2f}')") |"
done
