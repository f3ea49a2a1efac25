#!/usr/bin/env bash
# Side-by-side: run the same vane-loadgen scenarios against Vane and
# Mosquitto, one after the other, each broker on its own loopback port,
# and write a markdown table (with Vane/Mosquitto ratios) into
# benches/RESULTS.md between the compare.sh markers.
#
# CPU sharing on a small machine: the broker is pinned to BROKER_CPUS and
# the load generator to LOADGEN_CPUS with taskset, so the two never compete
# for a core (defaults: broker on CPU 0, loadgen on CPU 1).
#
# Environment:
#   DURATION      measured time per scenario (default 10s), WARMUP (1s)
#   SCENARIOS     default "fan-in fan-out pairs shared retained-storm slow-consumer conn"
#   QOS           QoS for the message scenarios (default 1)
#   BROKER_CPUS   taskset list for the broker (default 0)
#   LOADGEN_CPUS  taskset list for vane-loadgen (default 1)
#   LOADGEN_CORES executors for vane-loadgen (default: CPUs in LOADGEN_CPUS)
#   VANE_CORES    executors for Vane (default: CPUs in BROKER_CPUS)
#   VANE_CMD      how to start Vane; {PORT} is replaced by the port and
#                 {STATS_PORT} by another free one (default "target/release/vane
#                 --listen 127.0.0.1:{PORT} --cores $VANE_CORES", plus
#                 "--stats-listen 127.0.0.1:{STATS_PORT}" when the binary has it)
#   EXTRA_ARGS    extra vane-loadgen options for every scenario
#   RESULTS       output file (default benches/RESULTS.md); OUT_DIR keeps the JSON
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
SCENARIOS=${SCENARIOS:-"fan-in fan-out pairs shared retained-storm slow-consumer conn"}
QOS=${QOS:-1}
BROKER_CPUS=${BROKER_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
count_cpus() { python3 -c "import sys
n=0
for part in sys.argv[1].split(','):
    a,_,b=part.partition('-'); n+= (int(b)-int(a)+1) if b else 1
print(n)" "$1"; }
LOADGEN_CORES=${LOADGEN_CORES:-$(count_cpus "$LOADGEN_CPUS")}
VANE_CORES=${VANE_CORES:-$(count_cpus "$BROKER_CPUS")}
VANE_BIN_DEFAULT=target/release/vane
if [ -z "${VANE_CMD:-}" ]; then
    VANE_CMD="$VANE_BIN_DEFAULT --listen 127.0.0.1:{PORT} --cores $VANE_CORES"
    # Newer builds also serve stats over HTTP (default port 9100, which may
    # be taken): give them a free port of their own.
    if [ -x "$VANE_BIN_DEFAULT" ] && "$VANE_BIN_DEFAULT" --help 2>/dev/null | grep -q -- --stats-listen; then
        VANE_CMD="$VANE_CMD --stats-listen 127.0.0.1:{STATS_PORT}"
    fi
fi
EXTRA_ARGS=${EXTRA_ARGS:-}
RESULTS=${RESULTS:-benches/RESULTS.md}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/vane-compare.XXXXXX)}
LOADGEN=target/release/vane-loadgen

say() { echo "compare.sh: $*" >&2; }

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    say "installing mosquitto from Debian packages"
    apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

say "building vane-loadgen (release)"
cargo build --release -q -p vane-loadgen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    return 1
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Per-scenario load, the same for both brokers.
scenario_args() {
    case "$1" in
        fan-in)         echo "--publishers 50 --total-rate 10000 --qos $QOS" ;;
        fan-out)        echo "--subscribers 50 --total-rate 400 --qos $QOS" ;;
        pairs)          echo "--publishers 50 --total-rate 10000 --qos $QOS" ;;
        shared)         echo "--publishers 10 --subscribers 10 --total-rate 10000 --qos $QOS" ;;
        retained-storm) echo "--topics 2000 --subscribers 50" ;;
        slow-consumer)  echo "--publishers 10 --subscribers 10 --total-rate 2000 --qos $QOS" ;;
        conn)           echo "-n 5000 --connect-rate 5000" ;;
        *)              echo "" ;;
    esac
}

BROKER_PID=""
stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
trap stop_broker EXIT

# start_broker NAME PORT: starts a fresh broker, pinned to BROKER_CPUS.
start_broker() {
    local name=$1 port=$2
    case "$name" in
        mosquitto)
            cat >"$OUT_DIR/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
persistence false
max_queued_messages 100000
CONF
            taskset -c "$BROKER_CPUS" "$MOSQUITTO" -c "$OUT_DIR/mosquitto.conf" >"$OUT_DIR/mosquitto.log" 2>&1 &
            ;;
        vane)
            local cmd=${VANE_CMD//\{PORT\}/$port}
            cmd=${cmd//\{STATS_PORT\}/$(free_port)}
            # shellcheck disable=SC2086
            taskset -c "$BROKER_CPUS" $cmd >"$OUT_DIR/vane.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    if ! wait_port "$port"; then
        say "$name did not start listening on $port (see $OUT_DIR/$name.log)"
        stop_broker
        return 1
    fi
}

BROKERS="vane mosquitto"
VANE_BIN=$(echo "$VANE_CMD" | awk '{print $1}')
if [ ! -x "$VANE_BIN" ]; then
    say "SKIPPING Vane: $VANE_BIN does not exist yet (build it with cargo build --release, or set VANE_CMD)"
    BROKERS="mosquitto"
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for broker in $BROKERS; do
    for sc in $SCENARIOS; do
        port=$(free_port)
        start_broker "$broker" "$port" || continue
        t0=$(cpu_ticks "$BROKER_PID")
        say "$broker: $sc"
        # shellcheck disable=SC2046,SC2086
        taskset -c "$LOADGEN_CPUS" "$LOADGEN" "$sc" --port "$port" --cores "$LOADGEN_CORES" \
            --duration "$DURATION" --warmup "$WARMUP" $(scenario_args "$sc") $EXTRA_ARGS \
            --json --quiet >"$OUT_DIR/$broker-$sc.json" 2>"$OUT_DIR/$broker-$sc.txt" || true
        t1=$(cpu_ticks "$BROKER_PID")
        echo $(( t1 - t0 )) >"$OUT_DIR/$broker-$sc.cpu"
        stop_broker
        tail -n 3 "$OUT_DIR/$broker-$sc.txt" >&2 || true
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
say "writing $RESULTS (raw JSON in $OUT_DIR)"
python3 - "$OUT_DIR" "$RESULTS" "$SCENARIOS" "$BROKERS" "$BROKER_CPUS" "$LOADGEN_CPUS" \
    "$LOADGEN_CORES" "$VANE_CORES" "$DURATION" "$QOS" "$(getconf CLK_TCK)" "$VANE_CMD" \
    "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import json, os, re, subprocess, sys, datetime
out, results, scenarios, brokers, bcpus, lcpus, lcores, vcores, duration, qos, tck, vane_cmd, load0, load1 = sys.argv[1:]
scenarios, brokers, tck = scenarios.split(), brokers.split(), int(tck)

def load(broker, sc):
    try:
        with open(f"{out}/{broker}-{sc}.json") as f:
            r = json.load(f)
        with open(f"{out}/{broker}-{sc}.cpu") as f:
            r["_broker_cpu_s"] = int(f.read().strip() or 0) / tck
        return r
    except Exception:
        return None

def metrics(sc, r):
    d, p, c = r["delivery"], r["publish"], r["connections"]
    wall = max(r["run_seconds"], 1e-9)
    m = []
    if sc == "conn":
        m += [("connections established", c["established"], "higher"),
              ("connect rate (/s)", c["achieved_rate"], "higher"),
              ("connect p99 (ms)", c["connect_latency"]["p99_us"] / 1000, "lower")]
    elif sc == "retained-storm":
        rt = r.get("retained") or {}
        cl = rt.get("complete_latency", {})
        done = cl.get("count", 0) > 0
        m += [("retained delivered", rt.get("received", 0), "higher"),
              ("subscribers that got all", cl.get("count", 0), "higher"),
              ("time to all, p50 (ms)", cl["p50_us"] / 1000 if done else None, "lower"),
              ("time to all, max (ms)", cl["max_us"] / 1000 if done else None, "lower")]
    else:
        lat = d["latency"]
        ms = lambda k: lat[k] / 1000 if lat["count"] else None
        m += [("delivered msgs/s", d["achieved_rate"], "higher"),
              ("latency p50 (ms)", ms("p50_us"), "lower"),
              ("latency p99 (ms)", ms("p99_us"), "lower"),
              ("latency p99.9 (ms)", ms("p999_us"), "lower"),
              ("latency max (ms)", ms("max_us"), "lower"),
              ("lost", d["lost"], "lower")]
        if p["qos"] > 0:
            m.append(("ack p99 (ms)", p["ack_latency"]["p99_us"] / 1000, "lower"))
        if sc == "slow-consumer" and r.get("slow_consumer"):
            m.append(("slow sub received", r["slow_consumer"]["received"], "info"))
    m.append(("broker CPU (s)", r["_broker_cpu_s"], "lower"))
    m.append(("loadgen CPU (%)", r["tool"]["cpu_percent"], "info"))
    return m

def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}"

rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = ["<!-- compare.sh:begin -->", "## Vane vs Mosquitto (benches/compare.sh)", "",
         f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC at {rev}, {os.cpu_count()} CPUs, loopback only. "
         f"Each scenario ran {duration} (after warm-up) against a freshly started broker on its own port, "
         f"with the same vane-loadgen options for both (QoS {qos} where it applies; see `scenario_args` in the script).", "",
         f"CPU sharing: the broker was pinned with `taskset -c {bcpus}` (Vane with `--cores {vcores}`; Mosquitto is single-threaded), "
         f"vane-loadgen with `taskset -c {lcpus}` and `--cores {lcores}`, so broker and load generator never shared a core. "
         "Mosquitto ran with `set_tcp_nodelay true` (otherwise Nagle adds milliseconds to its acks) and `max_queued_messages 100000`. "
         "Pinning keeps the two apart but not other processes: "
         f"the load average was {load0} before and {load1} after the runs; with other work on the machine, "
         "treat the latencies as noisy and check the tool-lag warnings below (they say when the load generator itself was late).", ""]
if "vane" not in brokers:
    lines += [f"**Vane was skipped**: `{vane_cmd.split()[0]}` did not exist when this ran.", ""]
lines += ["| scenario | figure | Vane | Mosquitto | Vane/Mosquitto |", "|---|---|---:|---:|---:|"]
notes = []
for sc in scenarios:
    rv, rm = load("vane", sc), load("mosquitto", sc)
    base = rv or rm
    if base is None:
        lines.append(f"| {sc} | (no result) | | | |")
        continue
    names = [n for n, _, _ in metrics(sc, base)]
    mv = {n: v for n, v, _ in metrics(sc, rv)} if rv else {}
    mm = {n: v for n, v, _ in metrics(sc, rm)} if rm else {}
    for n in names:
        a, b = mv.get(n), mm.get(n)
        ratio = f"{a / b:.2f}" if a is not None and b not in (None, 0) else "-"
        lines.append(f"| {sc} | {n} | {fmt(a)} | {fmt(b)} | {ratio} |")
    for name, r in (("Vane", rv), ("Mosquitto", rm)):
        if r and r["problems"]:
            notes.append(f"- {sc} / {name}: " + "; ".join(r["problems"]))
        if r and r["warnings"]:
            notes.append(f"- {sc} / {name}: " + "; ".join(r["warnings"]))
if notes:
    lines += ["", "What the runs reported (problems fail a run; warnings do not):", ""] + notes
lines += ["", "<!-- compare.sh:end -->"]
section = "\n".join(lines) + "\n"
text = open(results).read() if os.path.exists(results) else "# Benchmark results\n"
m = re.search(r"<!-- compare.sh:begin -->.*?<!-- compare.sh:end -->\n?", text, re.S)
if m:
    text = text[:m.start()] + section + text[m.end():]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(results, "w").write(text)
print(section)
PY
